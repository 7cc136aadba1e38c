//! The pure functions that compute the UI's shapes from a snapshot (no
//! clock, no I/O: the handlers pass the time in).

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};

use super::MAX_LIMIT;
use super::shapes::{
    AgentRow, FrameworkRow, MasterInfo, OfferRow, OfferStatusRow, RESOURCE_NAMES, Res, RoleRow,
    TaskRow, Usage,
};
use crate::snapshot::{
    AgentView, FrameworkView, OfferStatusView, OfferView, SharedList, StateSnapshot, TaskView,
};

/// Whether `haystack` holds `needle` (already lower-cased), ignoring case.
pub(super) fn contains(haystack: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        // Without allocating: this runs once per task on a 100k-task search.
        let needle = needle.as_bytes();
        return needle.is_empty()
            || haystack
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle));
    }
    haystack.to_lowercase().contains(needle)
}

/// At most this many executors are listed on an agent's page.
const MAX_EXECUTORS: usize = 500;

// ---------------------------------------------------------------------------
// Views (pure: a snapshot in, a shape out)
// ---------------------------------------------------------------------------

pub(super) fn master_info(s: &StateSnapshot, now: f64) -> MasterInfo {
    MasterInfo {
        id: s.id.clone(),
        version: s.version.clone(),
        hostname: s.hostname.clone(),
        cluster: cluster_name(&s.hostname, machine_name()),
        leader: s.leader.clone(),
        elected: s.elected,
        epoch: s.epoch,
        start_time: s.start_time,
        uptime_secs: (s.elected && s.start_time > 0.0).then(|| (now - s.start_time).max(0.0)),
        snapshot_time: s.snapshot_time,
        recovering_agents: s.recovering_agents,
    }
}

/// The name the UI shows for the cluster. No cluster name is configured,
/// so the master's hostname stands in; where that is an IP address (a
/// master started with `--ip 127.0.0.1`, as `agora dev` does), the name of
/// the machine it runs on says more than the address, which the UI shows
/// beside it as the leader's `host:port` anyway.
pub(super) fn cluster_name(hostname: &str, machine: Option<&str>) -> String {
    match machine {
        Some(machine) if hostname.parse::<std::net::IpAddr>().is_ok() => machine.to_string(),
        _ => hostname.to_string(),
    }
}

/// This machine's name (Linux: `/proc/sys/kernel/hostname`), read once.
fn machine_name() -> Option<&'static str> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
    })
    .as_deref()
}

pub(super) fn usage(s: &StateSnapshot) -> BTreeMap<&'static str, Usage> {
    let (mut total, mut allocated, mut offered) = (Res::default(), Res::default(), Res::default());
    // What agents that are away hold is not idle: nothing of it can be offered.
    let (mut away, mut away_used) = (Res::default(), Res::default());
    for agent in &s.agents {
        total.add(&Res::from_summary(&agent.resources));
        allocated.add(&Res::from_summary(&agent.used));
        if !agent.active {
            away.add(&Res::from_summary(&agent.resources));
            away_used.add(&Res::from_summary(&agent.used));
        }
    }
    for offer in &s.offers {
        offered.add(&Res::from_summary(&offer.resources));
    }
    RESOURCE_NAMES
        .iter()
        .map(|name| {
            let (t, a, o) = (total.get(name), allocated.get(name), offered.get(name));
            let u = (away.get(name) - away_used.get(name)).max(0.0);
            let usage = Usage {
                total: t,
                allocated: a,
                offered: o,
                unavailable: u,
                idle: (t - a - o - u).max(0.0),
            };
            (*name, usage)
        })
        .collect()
}

pub(super) fn all_frameworks(s: &StateSnapshot) -> impl Iterator<Item = (&FrameworkView, bool)> {
    s.frameworks
        .iter()
        .map(|f| (f, false))
        .chain(s.completed_frameworks.iter().map(|f| (f, true)))
}

/// Every task with its framework, active ones of each framework first.
pub(super) fn all_tasks(s: &StateSnapshot) -> impl Iterator<Item = (&TaskView, &FrameworkView)> {
    all_frameworks(s).flat_map(|(f, _)| {
        f.tasks
            .iter()
            .chain(&f.completed_tasks)
            .map(move |t| (t, f))
    })
}

pub(super) fn overview_json(s: &StateSnapshot, now: f64) -> serde_json::Value {
    let agents_in = |status: &str| s.agents.iter().filter(|a| a.status == status).count();
    let active_frameworks = s.frameworks.iter().filter(|f| f.active).count();
    let mut tasks: BTreeMap<&str, usize> = [
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_KILLING",
        "TASK_UNREACHABLE",
        "TASK_FINISHED",
        "TASK_KILLED",
        "TASK_FAILED",
        "TASK_LOST",
    ]
    .into_iter()
    .map(|state| (state, 0))
    .collect();
    for (task, _) in all_tasks(s) {
        *tasks.entry(task.state).or_default() += 1;
    }
    serde_json::json!({
        "master": master_info(s, now),
        "agents": {
            "active": agents_in("active"),
            "inactive": agents_in("disconnected"),
            "unreachable": agents_in("unreachable"),
        },
        "frameworks": {
            "active": active_frameworks,
            "inactive": s.frameworks.len() - active_frameworks,
            "completed": s.completed_frameworks.len(),
        },
        "tasks": tasks,
        "resources": usage(s),
        "outstanding_offers": s.offers.len(),
        "roles": s.roles.len(),
    })
}

/// Indexes built once per request, so that a page of rows costs one pass
/// over the snapshot rather than one per row (10k agents, 100k tasks).
pub(super) struct Lookup<'a> {
    /// Agents by id: the snapshot's list, kept in id order (a binary
    /// search, no map built per request).
    agents: &'a SharedList<AgentView>,
    framework_names: HashMap<&'a str, &'a str>,
    offers: &'a SharedList<OfferView>,
    /// What is offered per agent and per framework, summed over every
    /// outstanding offer when a row first needs it (task rows never do).
    offered: OnceCell<Offered<'a>>,
}

/// Outstanding offers summed by agent and by framework.
#[derive(Default)]
struct Offered<'a> {
    by_agent: HashMap<&'a str, Res>,
    by_framework: HashMap<&'a str, Res>,
}

impl<'a> Lookup<'a> {
    pub(super) fn new(s: &'a StateSnapshot) -> Self {
        Lookup {
            agents: &s.agents,
            framework_names: all_frameworks(s)
                .map(|(f, _)| (f.id.as_str(), f.name.as_str()))
                .collect(),
            offers: &s.offers,
            offered: OnceCell::new(),
        }
    }

    fn offered(&self) -> &Offered<'a> {
        self.offered.get_or_init(|| {
            let mut offered = Offered::default();
            for offer in self.offers {
                let resources = Res::from_summary(&offer.resources);
                offered
                    .by_agent
                    .entry(offer.agent_id.as_str())
                    .or_default()
                    .add(&resources);
                offered
                    .by_framework
                    .entry(offer.framework_id.as_str())
                    .or_default()
                    .add(&resources);
            }
            offered
        })
    }

    fn hostname(&self, agent_id: &str) -> String {
        self.agents
            .get_key(agent_id)
            .map_or_else(String::new, |a| a.hostname.clone())
    }

    /// The agent's `hostname:port` (what tells two agents on one host
    /// apart), empty for an agent the master no longer knows.
    fn address(&self, agent_id: &str) -> String {
        self.address_of(agent_id).to_owned()
    }

    /// `active`, `disconnected`, `unreachable`, or `unknown` for an agent
    /// the master no longer knows.
    fn status(&self, agent_id: &str) -> &'static str {
        self.agents
            .get_key(agent_id)
            .map_or("unknown", |a| a.status)
    }

    pub(super) fn address_of(&self, agent_id: &str) -> &'a str {
        self.agents
            .get_key(agent_id)
            .map_or("", |a| a.address.as_str())
    }

    pub(super) fn framework_name_of(&self, framework_id: &str) -> &'a str {
        self.framework_names
            .get(framework_id)
            .copied()
            .unwrap_or_default()
    }

    fn framework_name(&self, framework_id: &str) -> String {
        self.framework_names
            .get(framework_id)
            .map_or_else(String::new, |n| (*n).to_string())
    }
}

/// Active tasks per agent, in one pass.
pub(super) fn active_tasks_by_agent(s: &StateSnapshot) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for task in s.frameworks.iter().flat_map(|f| &f.tasks) {
        *counts.entry(task.agent_id.as_str()).or_default() += 1;
    }
    counts
}

pub(super) fn agent_row(
    agent: &AgentView,
    lookup: &Lookup<'_>,
    tasks: &HashMap<&str, usize>,
) -> AgentRow {
    let offered = lookup
        .offered()
        .by_agent
        .get(agent.id.as_str())
        .copied()
        .unwrap_or_default();
    let tasks = tasks.get(agent.id.as_str()).copied().unwrap_or(0);
    AgentRow {
        id: agent.id.clone(),
        hostname: agent.hostname.clone(),
        address: agent.address.clone(),
        status: agent.status,
        active: agent.active,
        registered_time: agent.registered_time,
        unreachable_since: agent.unreachable_since,
        attributes: agent.attributes.clone(),
        total: Res::from_summary(&agent.resources),
        used: Res::from_summary(&agent.used),
        offered,
        tasks,
    }
}

pub(super) fn framework_row(
    f: &FrameworkView,
    completed: bool,
    lookup: &Lookup<'_>,
) -> FrameworkRow {
    let mut used = Res::default();
    for task in &f.tasks {
        used.add(&Res::from_summary(&task.resources));
    }
    let offered = lookup
        .offered()
        .by_framework
        .get(f.id.as_str())
        .copied()
        .unwrap_or_default();
    FrameworkRow {
        id: f.id.clone(),
        name: f.name.clone(),
        user: f.user.clone(),
        principal: f.principal.clone(),
        hostname: f.framework_hostname.clone(),
        roles: f.roles.clone(),
        status: match (completed, f.active) {
            (true, _) => "completed",
            (false, true) => "active",
            (false, false) => "inactive",
        },
        registered_time: f.registered_time,
        reregistered_time: f.reregistered_time,
        unregistered_time: f.unregistered_time,
        failover_timeout: f.failover_timeout,
        active_tasks: f.tasks.len(),
        completed_tasks: f.completed_tasks.len(),
        used,
        offered,
        outstanding_offers: f.outstanding_offers,
    }
}

pub(super) fn task_row(t: &TaskView, f: &FrameworkView, lookup: &Lookup<'_>) -> TaskRow {
    TaskRow {
        id: t.id.to_string(),
        name: t.name.to_string(),
        state: t.state,
        framework_id: t.framework_id.to_string(),
        framework_name: f.name.clone(),
        agent_id: t.agent_id.to_string(),
        agent_hostname: lookup.hostname(t.agent_id.as_str()),
        agent_address: lookup.address(t.agent_id.as_str()),
        agent_status: lookup.status(t.agent_id.as_str()),
        executor_id: t.executor_id.to_string(),
        role: t.role.to_string(),
        resources: Res::from_summary(&t.resources),
        message: t.message.clone(),
        status_time: t.status_time,
        healthy: t.healthy,
        sandbox: format!(
            "/frameworks/{}/executors/{}/runs/latest",
            t.framework_id, t.executor_id
        ),
    }
}

pub(super) fn offer_row(o: &OfferView, lookup: &Lookup<'_>) -> OfferRow {
    OfferRow {
        id: o.id.clone(),
        framework_id: o.framework_id.clone(),
        framework_name: lookup.framework_name(&o.framework_id),
        agent_id: o.agent_id.clone(),
        agent_hostname: lookup.hostname(&o.agent_id),
        agent_address: lookup.address(&o.agent_id),
        role: o.role.clone(),
        resources: Res::from_summary(&o.resources),
    }
}

/// What a "why no offer?" reason means, for the framework page.
pub(super) fn explanation(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "inactive" => "the scheduler is disconnected; nothing is offered until it re-subscribes",
        "suppressed" => "the framework suppressed offers for this role (it must REVIVE)",
        "quota_limit" => "the role is at its quota limit",
        "filtered" => {
            "it declined every agent that has free resources; its filters have not expired yet"
        }
        "outranked" => {
            "roles or frameworks with a smaller dominant share are offered the free resources first"
        }
        "no_resources" => "no agent has free resources this role can use",
        _ => return None,
    })
}

pub(super) fn offer_status_row(status: &OfferStatusView) -> OfferStatusRow {
    OfferStatusRow {
        role: status.role.clone(),
        last_offered_secs_ago: status.last_offered_secs_ago,
        reason: status.reason,
        explanation: status.reason.and_then(explanation),
        filtered_agents: status.filtered_agents,
    }
}

pub(super) fn task_counts<'a>(
    tasks: impl Iterator<Item = &'a TaskView>,
) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for task in tasks {
        *counts.entry(task.state).or_default() += 1;
    }
    counts
}

pub(super) fn agent_detail(s: &StateSnapshot, agent_id: &str) -> Option<serde_json::Value> {
    let agent = s.agents.iter().find(|a| a.id == agent_id)?;
    let mut frameworks = Vec::new();
    let mut executors = Vec::new();
    let mut executors_total = 0;
    for (f, completed) in all_frameworks(s) {
        let here: Vec<&TaskView> = f
            .tasks
            .iter()
            .filter(|t| t.agent_id.as_str() == agent_id)
            .collect();
        if here.is_empty() {
            continue;
        }
        let mut used = Res::default();
        for task in &here {
            used.add(&Res::from_summary(&task.resources));
        }
        frameworks.push(serde_json::json!({
            "id": f.id,
            "name": f.name,
            "status": if completed { "completed" } else if f.active { "active" } else { "inactive" },
            "active_tasks": here.len(),
            "used": used,
        }));
        for task in here {
            executors_total += 1;
            if executors.len() < MAX_EXECUTORS {
                executors.push(serde_json::json!({
                    "id": task.executor_id,
                    "framework_id": f.id,
                    "task_id": task.id,
                    "task_name": task.name,
                    "state": task.state,
                    "resources": Res::from_summary(&task.resources),
                    "sandbox": format!(
                        "/frameworks/{}/executors/{}/runs/latest",
                        f.id, task.executor_id
                    ),
                }));
            }
        }
    }
    let counts = task_counts(
        all_frameworks(s)
            .flat_map(|(f, _)| f.tasks.iter().chain(&f.completed_tasks))
            .filter(|t| t.agent_id.as_str() == agent_id),
    );
    Some(serde_json::json!({
        "agent": agent_row(agent, &Lookup::new(s), &active_tasks_by_agent(s)),
        "frameworks": frameworks,
        "executors": executors,
        "executors_total": executors_total,
        "task_counts": counts,
    }))
}

pub(super) fn framework_detail(s: &StateSnapshot, framework_id: &str) -> Option<serde_json::Value> {
    let (f, completed) = all_frameworks(s).find(|(f, _)| f.id == framework_id)?;
    let lookup = Lookup::new(s);
    let offers: Vec<OfferRow> = s
        .offers
        .iter()
        .filter(|o| o.framework_id == framework_id)
        .take(MAX_LIMIT)
        .map(|o| offer_row(o, &lookup))
        .collect();
    let offer_status: Vec<OfferStatusRow> = f.offer_status.iter().map(offer_status_row).collect();
    Some(serde_json::json!({
        "framework": framework_row(f, completed, &lookup),
        "task_counts": task_counts(f.tasks.iter().chain(&f.completed_tasks)),
        "offers": offers,
        "offer_status": offer_status,
    }))
}

pub(super) fn task_detail(s: &StateSnapshot, framework_id: &str, task_id: &str) -> Option<TaskRow> {
    all_tasks(s)
        .find(|(t, f)| f.id == framework_id && t.id.as_str() == task_id)
        .map(|(t, f)| task_row(t, f, &Lookup::new(s)))
}

pub(super) fn role_rows(s: &StateSnapshot) -> Vec<RoleRow> {
    s.roles
        .iter()
        .map(|r| RoleRow {
            name: r.name.clone(),
            weight: r.weight,
            frameworks: r.frameworks.clone(),
            allocated: Res::from_scalars(&r.allocated),
            offered: Res::from_scalars(&r.offered),
            reserved: Res::from_scalars(&r.reserved),
            consumed: Res::from_scalars(&r.consumed),
            guarantee: r.quota.as_ref().map(|q| Res::from_scalars(&q.guarantee)),
            limit: r.quota.as_ref().map(|q| Res::from_scalars(&q.limit)),
        })
        .collect()
}
