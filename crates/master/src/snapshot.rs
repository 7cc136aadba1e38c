//! What readers see of the master: a snapshot the state machine's owner
//! publishes, so that `/state`, `/metrics` and the UI never touch live state.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_allocator::RoleSummary;
use agora_core::resources::SummaryValue;
use serde::Serialize;

use crate::state::{Agent, Counters, Framework, Master, Now, OfferStatusEntry, Task};

#[derive(Debug, Clone, Serialize, Default)]
pub struct StateSnapshot {
    pub version: String,
    pub id: String,
    /// `host:port` of the leading master (this one, until HA arrives).
    pub leader: String,
    /// Whether this master leads (a follower's snapshot holds little else).
    pub elected: bool,
    /// This term's epoch (the leader's ZooKeeper sequence number; 0 without ZooKeeper).
    pub epoch: Option<u64>,
    /// Admitted agents still expected to re-register after a failover.
    pub recovering_agents: usize,
    pub hostname: String,
    pub start_time: f64,
    pub snapshot_time: f64,
    pub agents: Vec<AgentView>,
    pub frameworks: Vec<FrameworkView>,
    pub completed_frameworks: Vec<FrameworkView>,
    pub outstanding_offers: usize,
    /// What `GET /roles` shows (not part of `/state`).
    #[serde(skip)]
    pub roles: Vec<RoleView>,
    /// What `GET /weights` shows (not part of `/state`).
    #[serde(skip)]
    pub weights: Vec<WeightView>,
    /// What `GET /quota` shows (not part of `/state`).
    #[serde(skip)]
    pub quotas: Vec<QuotaView>,
    #[serde(skip)]
    pub counters: Counters,
    /// Outstanding offers, for the UI's offers pages (not part of `/state`).
    #[serde(skip)]
    pub offers: Vec<OfferView>,
    /// What only the Mesos-shaped endpoints show (not part of `/state`).
    #[serde(skip)]
    pub mesos: MesosDetails,
    /// The books in the shapes of Mesos' v1 operator API, which its read
    /// calls and SUBSCRIBED answer from (not part of `/state`). Made only
    /// while operators use that API (it costs about as much again as the
    /// rest of the snapshot): see `actor.rs` and `crate::operator_api`.
    #[serde(skip)]
    pub operator: Option<Arc<OperatorDetails>>,
    /// The ACLs the views are filtered by (`crate::authz_views`); never
    /// shown. A follower's snapshot has the default (it shows no
    /// frameworks).
    #[serde(skip)]
    pub acls: Arc<agora_auth::acl::Acls>,
}

/// What the v1 operator API (`crate::operator_api`) shows, made by the
/// same builders as its events (`state/observe.rs`).
#[derive(Debug, Clone, Default)]
pub struct OperatorDetails {
    /// This master (GET_MASTER).
    pub master_info: agora_proto::v1::MasterInfo,
    /// Agents, frameworks, executors and tasks (GET_STATE and its parts).
    pub state: agora_proto::v1::master::response::GetState,
}

/// Details only Mesos' endpoints (`crate::mesos_v0`) show.
#[derive(Debug, Clone, Default)]
pub struct MesosDetails {
    /// This master's libprocess-style pid, `master@ip:port` (empty on a
    /// follower's snapshot).
    pub pid: String,
    /// This master's settings by Mesos flag name.
    pub flags: BTreeMap<String, String>,
    /// Each agent's total resources, reservations kept, by agent id.
    pub agent_resources: BTreeMap<String, agora_core::Resources>,
    /// Framework details by framework id, live and completed.
    pub frameworks: BTreeMap<String, MesosFramework>,
}

/// What Mesos shows of a framework beyond [`FrameworkView`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MesosFramework {
    /// Capability names (`MULTI_ROLE`, `PARTITION_AWARE`, ...).
    pub capabilities: Vec<&'static str>,
    pub checkpoint: bool,
    pub webui_url: Option<String>,
}

/// One outstanding offer.
#[derive(Debug, Clone, Serialize)]
pub struct OfferView {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    pub role: String,
    pub resources: BTreeMap<String, SummaryValue>,
}

/// One role in `GET /roles`. Scalars by name, in units.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoleView {
    pub name: String,
    pub weight: f64,
    pub quota: Option<QuotaBody>,
    /// Allocated to the role's subtree: offered or used by tasks.
    pub allocated: BTreeMap<String, f64>,
    /// The part of `allocated` held in outstanding offers to exactly this role.
    pub offered: BTreeMap<String, f64>,
    /// Reserved for the role or its descendants, in use or not.
    pub reserved: BTreeMap<String, f64>,
    /// Quota consumption: allocated unreserved plus reserved.
    pub consumed: BTreeMap<String, f64>,
    /// Frameworks subscribed to exactly this role.
    pub frameworks: Vec<String>,
    /// "Why no offer?" for each of those frameworks in this role.
    pub offer_status: Vec<RoleOfferStatus>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuotaBody {
    pub guarantee: BTreeMap<String, f64>,
    pub limit: BTreeMap<String, f64>,
}

/// One explicitly set weight in `GET /weights`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeightView {
    pub role: String,
    pub weight: f64,
}

/// One role's quota in `GET /quota`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuotaView {
    pub role: String,
    pub guarantee: BTreeMap<String, f64>,
    pub limit: BTreeMap<String, f64>,
    pub consumed: BTreeMap<String, f64>,
}

/// "Why no offer?" for one framework in one role (in `/state` under each
/// framework, and in `/roles` under each role).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OfferStatusView {
    pub role: String,
    /// Seconds since it last got an offer in this role (`null`: never,
    /// since this master leads).
    pub last_offered_secs_ago: Option<f64>,
    /// `null` while nothing holds it back; else `inactive`, `suppressed`,
    /// `quota_limit`, `filtered`, `outranked` or `no_resources`.
    pub reason: Option<&'static str>,
    /// Agents on which it has an unexpired DECLINE filter in this role.
    pub filtered_agents: usize,
}

/// As [`OfferStatusView`], naming the framework.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoleOfferStatus {
    pub framework_id: String,
    pub last_offered_secs_ago: Option<f64>,
    pub reason: Option<&'static str>,
    pub filtered_agents: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: String,
    pub hostname: String,
    pub address: String,
    pub resources: BTreeMap<String, SummaryValue>,
    pub used: BTreeMap<String, SummaryValue>,
    pub free: BTreeMap<String, SummaryValue>,
    pub attributes: BTreeMap<String, String>,
    /// Connected and reachable.
    pub active: bool,
    /// `active`, `disconnected` (session down, within its grace) or `unreachable`.
    pub status: &'static str,
    pub unreachable_since: Option<f64>,
    pub registered_time: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkView {
    pub id: String,
    pub name: String,
    pub user: String,
    pub principal: Option<String>,
    /// The host the scheduler runs on, as it said when subscribing.
    pub framework_hostname: Option<String>,
    /// Seconds its tasks survive a disconnected scheduler.
    pub failover_timeout: Option<f64>,
    pub roles: Vec<String>,
    pub active: bool,
    pub registered_time: f64,
    /// The last re-subscription (Mesos' `reregistered_time`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<f64>,
    /// When its scheduler disconnected (Mesos' `unregistered_time`), while
    /// it is; for a completed framework, when it was removed (its end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unregistered_time: Option<f64>,
    pub outstanding_offers: usize,
    /// "Why no offer?" per role, recomputed at most once a second.
    pub offer_status: Vec<OfferStatusView>,
    pub tasks: Vec<TaskView>,
    pub completed_tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub framework_id: String,
    pub agent_id: String,
    /// The executor running it (for command tasks, the task id): its
    /// sandbox is `/frameworks/<framework_id>/executors/<executor_id>/runs/latest`.
    pub executor_id: String,
    /// The role whose resources it runs on.
    pub role: String,
    pub resources: BTreeMap<String, SummaryValue>,
    pub message: Option<String>,
    /// When its latest status was generated (wall-clock seconds), if known.
    pub status_time: Option<f64>,
    /// The latest health check verdict, if it has a health check.
    pub healthy: Option<bool>,
    /// The OS user it runs as, when not its framework's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl StateSnapshot {
    /// Every task the snapshot holds, live and completed.
    pub fn tasks_total(&self) -> usize {
        self.frameworks
            .iter()
            .chain(&self.completed_frameworks)
            .map(|f| f.tasks.len() + f.completed_tasks.len())
            .sum()
    }

    /// What a master that does not lead shows: who leads, if anyone.
    pub fn follower(id: &str, hostname: &str, leader: Option<&str>) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            id: id.to_string(),
            leader: leader.unwrap_or_default().to_string(),
            elected: false,
            hostname: hostname.to_string(),
            ..Self::default()
        }
    }
}

fn task_view(task: &Task) -> TaskView {
    TaskView {
        id: task.id.to_string(),
        name: task.name.clone(),
        state: agora_core::task::name(task.state),
        framework_id: task.framework_id.to_string(),
        agent_id: task.agent_id.to_string(),
        executor_id: task
            .last_status
            .as_ref()
            .and_then(|s| s.executor_id.as_ref())
            .map(|e| e.value.clone())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| task.id.to_string()),
        role: task.role.clone(),
        resources: task.resources.summary(),
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
        user: task.user.clone(),
    }
}

fn mesos_framework(framework: &Framework) -> (String, MesosFramework) {
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

fn framework_view(framework: &Framework, offer_status: Vec<OfferStatusView>) -> FrameworkView {
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
        tasks: framework.tasks.values().map(task_view).collect(),
        completed_tasks: framework.completed_tasks.iter().map(task_view).collect(),
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

fn agent_view(agent: &Agent, free: Option<&agora_core::Resources>) -> AgentView {
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
    /// Builds the snapshot readers see. `start_time` and `now_wall` are wall
    /// clock seconds given by the shell.
    pub fn snapshot(&self, start_time: f64, now_wall: f64) -> StateSnapshot {
        let info = &self.config().master_info;
        let free = self.free_resources();
        let (statuses, at) = self.offer_status();
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
            agents: self
                .agents
                .values()
                .map(|a| agent_view(a, free.get(&a.id)))
                .collect(),
            frameworks: self
                .frameworks
                .values()
                .map(|f| {
                    let status = f
                        .roles
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
                        .collect();
                    framework_view(f, status)
                })
                .collect(),
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|f| framework_view(f, Vec::new()))
                .collect(),
            outstanding_offers: self.offers.len(),
            roles: self.role_views(&summaries, now_wall),
            quotas: self.quota_views(&summaries),
            weights: self
                .weights()
                .into_iter()
                .map(|(role, weight)| WeightView { role, weight })
                .collect(),
            counters: self.counters.clone(),
            offers: self
                .offers
                .values()
                .map(|o| OfferView {
                    id: o.id.to_string(),
                    framework_id: o.framework_id.to_string(),
                    agent_id: o.agent_id.to_string(),
                    role: o.role.clone(),
                    resources: o.resources.summary(),
                })
                .collect(),
            mesos: MesosDetails {
                pid: info.pid.clone().unwrap_or_default(),
                flags: flags(self.config()),
                agent_resources: self
                    .agents
                    .values()
                    .map(|a| (a.id.to_string(), a.total.clone()))
                    .collect(),
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
        mesos_duration(config.agent_ping_timeout),
    );
    set(
        "max_agent_ping_timeouts",
        config.max_agent_ping_timeouts.to_string(),
    );
    set(
        "agent_removal_timeout",
        mesos_duration(config.agent_removal_timeout),
    );
    if let Some(timeout) = config.offer_timeout {
        set("offer_timeout", mesos_duration(timeout));
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
        "heartbeat_interval",
        mesos_duration(config.heartbeat_interval),
    );
    set(
        "adopted_framework_grace",
        mesos_duration(config.adopted_framework_grace),
    );
    set(
        "max_operator_event_stream_subscribers",
        crate::options::MAX_OPERATOR_SUBSCRIBERS.to_string(),
    );
    for (name, value) in &config.authentication_flags {
        set(name, value.clone());
    }
    flags
}

/// A duration as Mesos prints one: a whole number in the largest unit that
/// holds it exactly (`2secs`, `75secs`, `100ms`, `2mins`).
pub fn mesos_duration(duration: std::time::Duration) -> String {
    const UNITS: [(u128, &str); 7] = [
        (86_400_000_000_000, "days"),
        (3_600_000_000_000, "hrs"),
        (60_000_000_000, "mins"),
        (1_000_000_000, "secs"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let nanos = duration.as_nanos();
    UNITS
        .iter()
        .find(|(size, _)| nanos >= *size && nanos.is_multiple_of(*size))
        .map_or_else(
            || "0secs".to_string(),
            |(size, unit)| format!("{}{unit}", nanos / size),
        )
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
    fn role_views(&self, summaries: &[RoleSummary], now_wall: f64) -> Vec<RoleView> {
        let mut offered: BTreeMap<&str, agora_core::Resources> = BTreeMap::new();
        for offer in self.offers.values() {
            offered
                .entry(offer.role.as_str())
                .or_default()
                .add(&offer.resources);
        }
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
