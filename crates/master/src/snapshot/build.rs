//! Views of the master's books: each entity's row, and the snapshot built
//! from scratch ([`Master::snapshot`]), which the incremental read model
//! (`read_model.rs`) must always equal.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_allocator::RoleSummary;
use agora_core::resources::SummaryValue;
use agora_core::{ExecutorId, SmallText};

#[cfg(doc)]
use super::ReadModel;
use super::{
    AgentResources, AgentView, FrameworkView, MesosDetails, MesosFramework, OfferStatusView,
    OfferView, OperatorDetails, QuotaBody, QuotaView, RoleOfferStatus, RoleView, SharedList,
    StateSnapshot, TaskFixed, TaskView, WeightView,
};
use crate::state::{Agent, Framework, Master, Now, OfferStatusEntry, Task};

/// One task's view made from scratch (what a rebuild makes, for tests).
#[cfg(test)]
pub(super) fn task_view(task: &Task) -> TaskView {
    next_task_view(task, None, &RecentSummary::default())
}

/// A list of `tasks`' views made from scratch, in order; the views made one
/// after another share their resources summary where equal, as the
/// incremental read model's do.
pub(super) fn task_views<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> SharedList<TaskView> {
    let recent = RecentSummary::default();
    tasks
        .into_iter()
        .map(|task| next_task_view(task, None, &recent))
        .collect()
}

/// The resources summary of the last fixed part made, offered to the next
/// one made: tasks launched together mostly ask for the same resources, so
/// their views share one summary instead of each making its own (two maps
/// of owned names per task, made on the actor and read cold by the bodies).
#[derive(Default)]
pub(super) struct RecentSummary(std::cell::Cell<Option<Arc<BTreeMap<String, SummaryValue>>>>);

impl RecentSummary {
    /// `resources`' summary: the recent one when equal, else a new one,
    /// which becomes the recent one.
    fn of(&self, resources: &agora_core::Resources) -> Arc<BTreeMap<String, SummaryValue>> {
        let summary = match self.0.take() {
            Some(recent) if resources.summary_is(&recent) => recent,
            _ => Arc::new(resources.summary()),
        };
        self.0.set(Some(summary.clone()));
        summary
    }
}

/// `task`'s view, sharing `previous`'s fixed part (and the JSON it keeps)
/// when the task's launch fields would make an equal one: a status update
/// changes only the view's own fields. A new fixed part shares `recent`'s
/// summary when it can.
pub(super) fn next_task_view(
    task: &Task,
    previous: Option<&TaskView>,
    recent: &RecentSummary,
) -> TaskView {
    let executor_id = task
        .last_status
        .as_ref()
        .and_then(|s| s.executor_id.as_ref())
        .map(|e| e.value.as_str())
        .filter(|e| !e.is_empty());
    let executor_id = executor_id.unwrap_or(task.id.as_str());
    let fixed = match previous {
        Some(previous) if same_fixed(&previous.fixed, task, executor_id) => previous.fixed.clone(),
        _ => Arc::new(TaskFixed {
            id: task.id.clone(),
            name: SmallText::new(&task.name),
            framework_id: task.framework_id.clone(),
            agent_id: task.agent_id.clone(),
            executor_id: if executor_id == task.id.as_str() {
                ExecutorId::from(task.id.text().clone())
            } else {
                ExecutorId::new(executor_id)
            },
            role: SmallText::new(&task.role),
            resources: recent.of(&task.resources),
            user: task.user.clone(),
        }),
    };
    TaskView {
        fixed,
        state: agora_core::task::name(task.state),
        // The message belongs to the status that carried it: while the
        // agent's latest state runs ahead of the update being delivered
        // (RUNNING arrives after the task already failed), that update's
        // message would describe a state the task is no longer in.
        message: task
            .last_status
            .as_ref()
            .filter(|s| s.state == Some(task.state as i32))
            .and_then(|s| s.message.clone()),
        status_time: task.last_status.as_ref().and_then(|s| s.timestamp),
        healthy: task.last_status.as_ref().and_then(|s| s.healthy),
    }
}

/// Whether `fixed` is what `task`'s launch fields would make: every field
/// compared, none assumed (the resources with the summary `fixed` kept).
fn same_fixed(fixed: &TaskFixed, task: &Task, executor_id: &str) -> bool {
    fixed.id == task.id
        && *fixed.name == *task.name
        && fixed.framework_id == task.framework_id
        && fixed.agent_id == task.agent_id
        && fixed.executor_id.as_str() == executor_id
        && *fixed.role == *task.role
        && fixed.user == task.user
        && task.resources.summary_is(&fixed.resources)
}

pub(super) fn mesos_framework(framework: &Framework) -> (String, MesosFramework) {
    let details = MesosFramework {
        capabilities: framework
            .info
            .capabilities
            .iter()
            .filter_map(|c| c.r#type)
            .filter_map(|t| agora_proto::v1::framework_info::capability::Type::try_from(t).ok())
            .map(|t| t.as_str_name())
            .collect(),
        checkpoint: framework.info.checkpoint.unwrap_or(false),
        webui_url: framework.info.webui_url.clone().filter(|u| !u.is_empty()),
    };
    (framework.id.to_string(), details)
}

/// A framework's row, around task lists made by the caller (from scratch,
/// or the previous row's lists with what changed).
pub(super) fn framework_view(
    framework: &Framework,
    offer_status: Vec<OfferStatusView>,
    tasks: SharedList<TaskView>,
    completed_tasks: SharedList<TaskView>,
) -> FrameworkView {
    FrameworkView {
        id: framework.id.to_string(),
        name: framework.info.name.clone(),
        user: framework.info.user.clone(),
        principal: framework.info.principal.clone().filter(|p| !p.is_empty()),
        framework_hostname: framework.info.hostname.clone().filter(|h| !h.is_empty()),
        failover_timeout: framework.info.failover_timeout,
        roles: framework.roles.iter().cloned().collect(),
        active: framework.active(),
        registered_time: framework.registered_at,
        reregistered_time: framework.reregistered_at,
        unregistered_time: framework.disconnected_at,
        outstanding_offers: framework.offers.len(),
        offer_status,
        tasks,
        completed_tasks,
    }
}

fn attribute_text(attribute: &agora_proto::v1::Attribute) -> String {
    if let Some(text) = &attribute.text {
        return text.value.clone();
    }
    if let Some(scalar) = &attribute.scalar {
        return scalar.value.to_string();
    }
    if let Some(set) = &attribute.set {
        return format!("{{{}}}", set.item.join(","));
    }
    if let Some(ranges) = &attribute.ranges {
        let parts: Vec<String> = ranges
            .range
            .iter()
            .map(|r| format!("{}-{}", r.begin, r.end))
            .collect();
        return format!("[{}]", parts.join(","));
    }
    String::new()
}

pub(super) fn agent_view(agent: &Agent, free: Option<&agora_core::Resources>) -> AgentView {
    let port = agent.info.port.unwrap_or(5051);
    AgentView {
        id: agent.id.to_string(),
        hostname: agent.info.hostname.clone(),
        address: format!("{}:{port}", agent.info.hostname),
        resources: agent.total.summary(),
        used: agent.used.summary(),
        free: free.map(agora_core::Resources::summary).unwrap_or_default(),
        attributes: agent
            .info
            .attributes
            .iter()
            .map(|a| (a.name.clone(), attribute_text(a)))
            .collect(),
        active: agent.conn.is_some() && agent.unreachable_since.is_none(),
        status: match (agent.conn.is_some(), agent.unreachable_since.is_some()) {
            (_, true) => "unreachable",
            (true, false) => "active",
            (false, false) => "disconnected",
        },
        unreachable_since: agent.unreachable_since,
        registered_time: agent.registered_at,
    }
}

impl Master {
    /// Builds the snapshot readers see from scratch: O(everything), the
    /// reference the actor's [`ReadModel`] must equal (it is what a new
    /// read model starts from). `start_time` and `now_wall` are wall clock
    /// seconds given by the shell.
    pub fn snapshot(&self, start_time: f64, now_wall: f64) -> StateSnapshot {
        let free = self.free_resources();
        let mut snapshot = self.snapshot_small_parts(start_time, now_wall, &self.offered_by_role());
        snapshot.agents = self
            .agents
            .values()
            .map(|a| agent_view(a, free.get(&a.id)))
            .collect();
        snapshot.frameworks = self
            .frameworks
            .values()
            .map(|f| {
                let tasks = task_views(f.tasks.values());
                let completed = task_views(f.completed_tasks.iter());
                framework_view(f, self.offer_status_views(f, now_wall), tasks, completed)
            })
            .collect();
        snapshot.completed_frameworks = self
            .completed_frameworks
            .iter()
            .map(|f| {
                let tasks = task_views(f.tasks.values());
                let completed = task_views(f.completed_tasks.iter());
                framework_view(f, Vec::new(), tasks, completed)
            })
            .collect();
        snapshot.offers = self.offers.values().map(offer_view).collect();
        snapshot.mesos.agent_resources = self.agents.values().map(agent_resources).collect();
        snapshot
    }

    /// Everything of a snapshot but its lists (agents, frameworks, offers,
    /// agents' resources): O(frameworks + roles), built whole each time.
    /// `offered` is what outstanding offers hold, by role.
    pub(super) fn snapshot_small_parts(
        &self,
        start_time: f64,
        now_wall: f64,
        offered: &BTreeMap<String, agora_core::Resources>,
    ) -> StateSnapshot {
        let info = &self.config().master_info;
        let summaries = self.role_summaries();
        StateSnapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            id: info.id.clone(),
            leader: format!(
                "{}:{}",
                info.hostname.clone().unwrap_or_default(),
                info.port
            ),
            elected: true,
            epoch: self.epoch(),
            recovering_agents: self.recovering_agents(),
            hostname: info.hostname.clone().unwrap_or_default(),
            start_time,
            snapshot_time: now_wall,
            agents: SharedList::new(),
            frameworks: SharedList::new(),
            completed_frameworks: SharedList::new(),
            outstanding_offers: self.offers.len(),
            roles: self.role_views(&summaries, offered, now_wall),
            quotas: self.quota_views(&summaries),
            weights: self
                .weights()
                .into_iter()
                .map(|(role, weight)| WeightView { role, weight })
                .collect(),
            counters: self.counters.clone(),
            offers: SharedList::new(),
            mesos: MesosDetails {
                pid: info.pid.clone().unwrap_or_default(),
                flags: flags(self.config()),
                agent_resources: SharedList::new(),
                frameworks: self
                    .frameworks
                    .values()
                    .chain(&self.completed_frameworks)
                    .map(mesos_framework)
                    .collect(),
            },
            operator: None,
            acls: self.config().acls.clone(),
        }
    }

    /// What outstanding offers hold, by role.
    fn offered_by_role(&self) -> BTreeMap<String, agora_core::Resources> {
        let mut offered: BTreeMap<String, agora_core::Resources> = BTreeMap::new();
        for offer in self.offers.values() {
            offered
                .entry(offer.role.clone())
                .or_default()
                .add(&offer.resources);
        }
        offered
    }

    /// "Why no offer?" for each of a live framework's roles, as of `now_wall`.
    pub(super) fn offer_status_views(&self, f: &Framework, now_wall: f64) -> Vec<OfferStatusView> {
        let (statuses, at) = self.offer_status();
        f.roles
            .iter()
            .filter_map(|role| {
                let entry = statuses.get(&(f.id.clone(), role.clone()))?;
                let (ago, reason, filtered) = status_fields(entry, at, now_wall);
                Some(OfferStatusView {
                    role: role.clone(),
                    last_offered_secs_ago: ago,
                    reason,
                    filtered_agents: filtered,
                })
            })
            .collect()
    }
}

pub(super) fn offer_view(o: &crate::state::Offer) -> OfferView {
    OfferView {
        id: o.id.to_string(),
        framework_id: o.framework_id.to_string(),
        agent_id: o.agent_id.to_string(),
        role: o.role.clone(),
        resources: o.resources.summary(),
    }
}

pub(super) fn agent_resources(a: &Agent) -> AgentResources {
    AgentResources {
        id: a.id.to_string(),
        resources: a.total.clone(),
    }
}

impl Master {
    /// The snapshot's operator view ([`StateSnapshot::operator`]).
    pub fn operator_details(&self) -> OperatorDetails {
        OperatorDetails {
            master_info: self.config().master_info.clone(),
            state: self.operator_state(),
        }
    }
}

/// The master's settings under Mesos' flag names (Agora's own where Mesos
/// has none), durations as Mesos prints them (`15secs`, `100ms`).
fn flags(config: &crate::state::MasterConfig) -> BTreeMap<String, String> {
    let info = &config.master_info;
    let mut flags = BTreeMap::new();
    let mut set = |name: &str, value: String| {
        flags.insert(name.to_string(), value);
    };
    set("hostname", info.hostname.clone().unwrap_or_default());
    set("port", info.port.to_string());
    if let Some(ip) = info.address.as_ref().and_then(|a| a.ip.clone()) {
        set("ip", ip);
    }
    set(
        "agent_ping_timeout",
        agora_core::time::mesos_duration(config.agent_ping_timeout),
    );
    set(
        "max_agent_ping_timeouts",
        config.max_agent_ping_timeouts.to_string(),
    );
    set(
        "agent_removal_timeout",
        agora_core::time::mesos_duration(config.agent_removal_timeout),
    );
    if let Some(timeout) = config.offer_timeout {
        set("offer_timeout", agora_core::time::mesos_duration(timeout));
    }
    set(
        "max_completed_frameworks",
        config.max_completed_frameworks.to_string(),
    );
    set(
        "max_completed_tasks_per_framework",
        config.max_completed_tasks_per_framework.to_string(),
    );
    set(
        "registry_max_agent_age",
        agora_core::time::mesos_duration(config.registry_max_agent_age),
    );
    set(
        "registry_max_agent_count",
        config.registry_max_agent_count.to_string(),
    );
    set(
        "registry_gc_interval",
        agora_core::time::mesos_duration(config.registry_gc_interval),
    );
    set(
        "heartbeat_interval",
        agora_core::time::mesos_duration(config.heartbeat_interval),
    );
    set(
        "adopted_framework_grace",
        agora_core::time::mesos_duration(config.adopted_framework_grace),
    );
    set(
        "max_operator_event_stream_subscribers",
        crate::options::MAX_OPERATOR_SUBSCRIBERS.to_string(),
    );
    for (name, value) in &config.shell_flags {
        set(name, value.clone());
    }
    flags
}

/// Seconds since last offered, reason and filtered agents of a status
/// computed at `at`, as seen at `now_wall`.
fn status_fields(
    entry: &OfferStatusEntry,
    at: Option<Now>,
    now_wall: f64,
) -> (Option<f64>, Option<&'static str>, usize) {
    let ago = match (entry.last_offered, at) {
        (Some(last), Some(at)) => {
            let then = at.monotonic.saturating_sub(last).as_secs_f64();
            Some((then + (now_wall - at.wall).max(0.0)).max(0.0))
        }
        _ => None,
    };
    (ago, entry.reason, entry.filtered_agents)
}

fn scalars(resources: &agora_core::Resources) -> BTreeMap<String, f64> {
    resources
        .names()
        .into_iter()
        .map(|name| (name.to_string(), resources.scalar_value(name)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

impl Master {
    /// `GET /roles`: the allocator's summaries, with the outstanding offers
    /// per role from the master's own books and "why no offer?".
    fn role_views(
        &self,
        summaries: &[RoleSummary],
        offered: &BTreeMap<String, agora_core::Resources>,
        now_wall: f64,
    ) -> Vec<RoleView> {
        let (statuses, at) = self.offer_status();
        summaries
            .iter()
            .cloned()
            .map(|summary| {
                let offer_status = summary
                    .frameworks
                    .iter()
                    .filter_map(|framework_id| {
                        let entry = statuses.get(&(framework_id.clone(), summary.role.clone()))?;
                        let (ago, reason, filtered) = status_fields(entry, at, now_wall);
                        Some(RoleOfferStatus {
                            framework_id: framework_id.to_string(),
                            last_offered_secs_ago: ago,
                            reason,
                            filtered_agents: filtered,
                        })
                    })
                    .collect();
                RoleView {
                    offered: offered
                        .get(summary.role.as_str())
                        .map(scalars)
                        .unwrap_or_default(),
                    name: summary.role,
                    weight: summary.weight,
                    quota: summary.quota.map(|q| QuotaBody {
                        guarantee: scalars(&q.guarantee),
                        limit: scalars(&q.limit),
                    }),
                    allocated: summary.allocated,
                    reserved: summary.reserved,
                    consumed: summary.consumed,
                    frameworks: summary.frameworks.iter().map(|f| f.to_string()).collect(),
                    offer_status,
                }
            })
            .collect()
    }

    /// `GET /quota`: every role with a quota.
    fn quota_views(&self, summaries: &[RoleSummary]) -> Vec<QuotaView> {
        let consumed: BTreeMap<&str, &BTreeMap<String, f64>> = summaries
            .iter()
            .map(|s| (s.role.as_str(), &s.consumed))
            .collect();
        self.quotas()
            .into_iter()
            .map(|(role, q)| QuotaView {
                consumed: consumed
                    .get(role.as_str())
                    .map(|c| (*c).clone())
                    .unwrap_or_default(),
                role,
                guarantee: scalars(&q.guarantee),
                limit: scalars(&q.limit),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
