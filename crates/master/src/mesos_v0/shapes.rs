//! The bodies of Mesos' master read endpoints, built from a snapshot.
//!
//! Field names and nesting follow Mesos 1.11's v0 JSON (`/state`,
//! `/state-summary`, `/frameworks`, `/slaves`, `/tasks`, `/roles`):
//! resources as flat maps with `cpus`, `gpus`, `mem` and `disk` always
//! present, times as float seconds, enums by name. Where Agora knows less
//! than Mesos the field is left out or empty, never guessed:
//! - a task's `statuses` hold its latest status only (Agora's books keep no
//!   history), so `/tasks?order=` sorts by that status' time where Mesos
//!   sorts by the first one's;
//! - a framework's `executors` name the custom executors its live tasks run
//!   under (id, framework, agent), without the command or resources;
//! - an agent's `pid` is `slave(1)@<hostname>:<port>`, the address it
//!   advertises (Mesos' holds the IP);
//! - unreachable agents are not in `slaves` (as in Mesos, where they leave
//!   the registered agents), only counted in `unreachable_slaves`;
//! - `/slaves`' `used_resources_full` and `offered_resources_full` are
//!   absent (the snapshot keeps those as summaries only).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use agora_core::resources::SummaryValue;
use agora_core::resources::mesos_json::{self, Flat, FullResource};
use serde::{Serialize, Serializer};

use super::MESOS_VERSION;
use crate::snapshot::kept_json::{self, Listed, TaskPart};
use crate::snapshot::{
    AgentResources, AgentView, FrameworkView, OfferView, SharedList, StateSnapshot, TaskView,
};

mod lists;
mod sums;

pub use lists::*;
pub use sums::SumCache;
use sums::TaskSums;

type Summary = BTreeMap<String, SummaryValue>;

/// An always-empty JSON array (`orphan_tasks`, `recovered_slaves`, ...).
type Empty = [(); 0];

/// An owned summary, shown as Mesos' flat map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatMap(pub Summary);

impl Serialize for FlatMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        mesos_json::serialize_flat(&self.0, serializer)
    }
}

fn sum<'a>(summaries: impl IntoIterator<Item = &'a Summary>) -> FlatMap {
    let mut total = Summary::new();
    for summary in summaries {
        mesos_json::add_summary(&mut total, summary);
    }
    FlatMap(total)
}

#[derive(Debug, Clone, Serialize)]
pub struct Capability {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// The snapshot's outstanding offers by agent and by framework.
pub(crate) struct Offers<'a> {
    by_agent: HashMap<&'a str, Vec<&'a OfferView>>,
    by_framework: HashMap<&'a str, Vec<&'a OfferView>>,
}

impl<'a> Offers<'a> {
    fn of(snapshot: &'a StateSnapshot) -> Self {
        let mut offers = Offers {
            by_agent: HashMap::new(),
            by_framework: HashMap::new(),
        };
        for offer in &snapshot.offers {
            offers
                .by_agent
                .entry(offer.agent_id.as_str())
                .or_default()
                .push(offer);
            offers
                .by_framework
                .entry(offer.framework_id.as_str())
                .or_default()
                .push(offer);
        }
        offers
    }

    fn on_agent(&self, agent_id: &str) -> FlatMap {
        sum(self
            .by_agent
            .get(agent_id)
            .into_iter()
            .flatten()
            .map(|o| &o.resources))
    }

    fn of_framework(&self, framework_id: &str) -> &[&'a OfferView] {
        self.by_framework
            .get(framework_id)
            .map_or(&[], Vec::as_slice)
    }
}

// ---------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------

/// One agent as Mesos' `/state` and `/slaves` show it.
#[derive(Debug, Serialize)]
pub struct Slave<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub port: u32,
    pub attributes: &'a BTreeMap<String, String>,
    pub pid: String,
    pub registered_time: f64,
    pub resources: Flat<'a>,
    pub used_resources: Flat<'a>,
    pub offered_resources: FlatMap,
    pub reserved_resources: BTreeMap<String, FlatMap>,
    pub unreserved_resources: FlatMap,
    pub active: bool,
    pub deactivated: bool,
    pub version: &'static str,
    pub capabilities: Empty,
    /// `/slaves` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_resources_full: Option<BTreeMap<String, Vec<FullResource>>>,
    /// `/slaves` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreserved_resources_full: Option<Vec<FullResource>>,
}

/// The port of a `host:port` address (0 if it has none).
fn port_of(address: &str) -> u32 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(0)
}

/// The agents Mesos lists as registered: all but the unreachable ones.
fn registered_agents(snapshot: &StateSnapshot) -> impl Iterator<Item = &AgentView> {
    snapshot.agents.iter().filter(|a| is_registered(a))
}

fn is_registered(agent: &AgentView) -> bool {
    agent.status != "unreachable"
}

fn slave<'a>(
    snapshot: &'a StateSnapshot,
    agent: &'a AgentView,
    offers: &Offers<'a>,
    full: bool,
) -> Slave<'a> {
    let total = snapshot
        .mesos
        .agent_resources
        .get_key(&agent.id)
        .map(|a| &a.resources);
    let (reserved, unreserved) = total.map(mesos_json::split_reserved).unwrap_or_default();
    Slave {
        id: &agent.id,
        hostname: &agent.hostname,
        port: port_of(&agent.address),
        attributes: &agent.attributes,
        pid: format!("slave(1)@{}", agent.address),
        registered_time: agent.registered_time,
        resources: Flat(&agent.resources),
        used_resources: Flat(&agent.used),
        offered_resources: offers.on_agent(&agent.id),
        reserved_resources: reserved
            .iter()
            .map(|(role, r)| (role.clone(), FlatMap(r.summary())))
            .collect(),
        unreserved_resources: FlatMap(unreserved.summary()),
        active: agent.status == "active",
        // Mesos' `deactivated` is an operator's doing (maintenance,
        // draining); Agora has no such thing.
        deactivated: false,
        version: MESOS_VERSION,
        capabilities: [],
        reserved_resources_full: full.then(|| {
            reserved
                .iter()
                .map(|(role, r)| (role.clone(), mesos_json::full(r)))
                .collect()
        }),
        unreserved_resources_full: full.then(|| mesos_json::full(&unreserved)),
    }
}

/// The registered agents, as Mesos' `slaves`. In the bodies of
/// `/master/state` and `/master/slaves` a hole, filled per chunk of agents
/// (`state_body`).
pub struct SlaveEntries<'a> {
    snapshot: &'a StateSnapshot,
    offers: Arc<Offers<'a>>,
    /// With the `*_full` reservations, as `/master/slaves` shows them
    /// (`/master/state` does not).
    full: bool,
}

impl<'a> SlaveEntries<'a> {
    /// The offers the entries show, by agent.
    pub(crate) fn offers(&self) -> &Offers<'a> {
        &self.offers
    }

    /// Whether the entries have the `*_full` reservations.
    pub(crate) fn full(&self) -> bool {
        self.full
    }
}

impl std::fmt::Debug for SlaveEntries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlaveEntries")
            .field("agents", &self.snapshot.agents.len())
            .finish_non_exhaustive()
    }
}

impl Serialize for SlaveEntries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        kept_json::list_or_hole(
            serializer,
            || Listed::MesosAgents(self.snapshot.agents.clone()),
            |serializer| {
                serializer.collect_seq(
                    registered_agents(self.snapshot)
                        .map(|a| slave(self.snapshot, a, &self.offers, self.full)),
                )
            },
        )
    }
}

/// What an agent's entry in `/master/state` is made of besides its view:
/// its resources as the books hold them, and what is offered on it. An
/// agent whose view and inputs are the same as before has the same entry.
pub(crate) struct SlaveInputs {
    resources: Option<Arc<AgentResources>>,
    offered: FlatMap,
}

impl SlaveInputs {
    pub(crate) fn of(snapshot: &StateSnapshot, offers: &Offers<'_>, agent: &AgentView) -> Self {
        Self {
            resources: snapshot.mesos.agent_resources.get_arc(&agent.id).cloned(),
            offered: offers.on_agent(&agent.id),
        }
    }

    /// Whether an entry made with `self` is the one `other` makes. The
    /// kept `Arc` keeps its address from being reused, so the same address
    /// is the same resources.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        let resources = match (&self.resources, &other.resources) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (None, None) => true,
            _ => false,
        };
        resources && self.offered == other.offered
    }
}

/// The `slaves` entries of the registered ones among `agents` (a chunk),
/// each preceded by a comma; with the `*_full` reservations if `full`.
pub(crate) fn slave_entries_json<'a>(
    snapshot: &StateSnapshot,
    offers: &Offers<'_>,
    full: bool,
    agents: impl IntoIterator<Item = &'a AgentView>,
) -> serde_json::Result<Vec<u8>> {
    let mut json = Vec::new();
    for agent in agents.into_iter().filter(|a| is_registered(a)) {
        json.push(b',');
        serde_json::to_writer(&mut json, &slave(snapshot, agent, offers, full))?;
    }
    Ok(json)
}

/// What the entries [`slave_entries_json`] makes of `agents` are made of,
/// in the same order.
pub(crate) fn slave_inputs<'a>(
    snapshot: &StateSnapshot,
    offers: &Offers<'_>,
    agents: impl IntoIterator<Item = &'a AgentView>,
) -> Vec<SlaveInputs> {
    agents
        .into_iter()
        .filter(|a| is_registered(a))
        .map(|a| SlaveInputs::of(snapshot, offers, a))
        .collect()
}

// ---------------------------------------------------------------------------
// Tasks, offers, frameworks
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct TaskStatusEntry {
    pub state: &'static str,
    pub timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// One task, as Mesos' `json(Task)`.
#[derive(Debug, Serialize)]
pub struct TaskEntry<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub framework_id: &'a str,
    /// Empty for a command task, as in Mesos (its executor is the agent's
    /// own; Agora names it after the task).
    pub executor_id: &'a str,
    pub slave_id: &'a str,
    pub state: &'static str,
    pub resources: Flat<'a>,
    pub role: &'a str,
    pub statuses: Vec<TaskStatusEntry>,
}

/// Whether a task runs under a framework's own executor (a command task's
/// executor has the task's id).
fn custom_executor(task: &TaskView) -> bool {
    task.executor_id.as_str() != task.id.as_str()
}

fn task_entry(task: &TaskView) -> TaskEntry<'_> {
    TaskEntry {
        id: task.id.as_str(),
        name: &task.name,
        framework_id: task.framework_id.as_str(),
        executor_id: if custom_executor(task) {
            task.executor_id.as_str()
        } else {
            ""
        },
        slave_id: task.agent_id.as_str(),
        state: task.state,
        resources: Flat(&task.resources),
        role: &task.role,
        statuses: task
            .status_time
            .map(|timestamp| TaskStatusEntry {
                state: task.state,
                timestamp,
                healthy: task.healthy,
            })
            .into_iter()
            .collect(),
    }
}

/// A framework's tasks of one part, as Mesos' `json(Task)`s. In
/// `/master/state`'s body (`state_body`) a hole, filled from the JSON of
/// the list's chunks, kept from one body to the next.
#[derive(Debug)]
pub struct TaskEntries<'a> {
    list: &'a SharedList<TaskView>,
    part: TaskPart,
}

impl TaskEntries<'_> {
    /// Its tasks, in the list's order.
    pub fn iter(&self) -> impl Iterator<Item = &TaskView> {
        self.list.iter().filter(|t| self.part.shows(t))
    }
}

impl Serialize for TaskEntries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        kept_json::list_or_hole(
            serializer,
            || Listed::MesosTasks(self.list.clone(), self.part),
            |serializer| serializer.collect_seq(self.iter().map(task_entry)),
        )
    }
}

/// `task`'s row in a hole of `part` (`state_body` fills holes with rows):
/// a comma and its entry, or nothing where `part` does not show it.
pub(crate) fn task_entry_row(
    task: &TaskView,
    part: TaskPart,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    if part.shows(task) {
        out.push(b',');
        serde_json::to_writer(out, &task_entry(task))?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct AllocationInfo<'a> {
    pub role: &'a str,
}

#[derive(Debug, Serialize)]
pub struct OfferEntry<'a> {
    pub id: &'a str,
    pub framework_id: &'a str,
    pub allocation_info: AllocationInfo<'a>,
    pub slave_id: &'a str,
    pub resources: Flat<'a>,
}

fn offer_entry(offer: &OfferView) -> OfferEntry<'_> {
    OfferEntry {
        id: &offer.id,
        framework_id: &offer.framework_id,
        allocation_info: AllocationInfo { role: &offer.role },
        slave_id: &offer.agent_id,
        resources: Flat(&offer.resources),
    }
}

/// A custom executor the master knows of through its tasks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExecutorEntry {
    pub executor_id: String,
    pub framework_id: String,
    pub slave_id: String,
}

/// What Mesos' `Summary<Framework>` shows (`/state-summary`), and the
/// start of every framework entry.
#[derive(Debug, Serialize)]
pub struct FrameworkSummary<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub used_resources: FlatMap,
    pub offered_resources: FlatMap,
    pub capabilities: Vec<Capability>,
    pub hostname: &'a str,
    pub webui_url: &'a str,
    pub active: bool,
    pub connected: bool,
    pub recovered: bool,
}

/// A framework as Mesos' `/state` and `/frameworks` show it.
#[derive(Debug, Serialize)]
pub struct FullFramework<'a> {
    #[serde(flatten)]
    pub summary: FrameworkSummary<'a>,
    pub user: &'a str,
    pub failover_timeout: f64,
    pub checkpoint: bool,
    pub registered_time: f64,
    pub unregistered_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'a str>,
    /// Used plus offered (Mesos keeps it for older clients).
    pub resources: FlatMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<f64>,
    /// A multi-role framework's roles; `role` otherwise (as Mesos does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    pub tasks: TaskEntries<'a>,
    pub unreachable_tasks: TaskEntries<'a>,
    pub completed_tasks: TaskEntries<'a>,
    pub offers: Vec<OfferEntry<'a>>,
    pub executors: Vec<ExecutorEntry>,
}

/// `framework`'s summary; `sums` are its live tasks' (`SumCache::of`).
fn framework_summary<'a>(
    snapshot: &'a StateSnapshot,
    framework: &'a FrameworkView,
    offers: &Offers<'a>,
    live: bool,
    sums: &TaskSums,
) -> FrameworkSummary<'a> {
    let details = snapshot.mesos.frameworks.get(&framework.id);
    FrameworkSummary {
        id: &framework.id,
        name: &framework.name,
        // What its tasks hold; an unreachable task's resources are not in use.
        used_resources: FlatMap(sums.used.to_summary()),
        offered_resources: sum(offers
            .of_framework(&framework.id)
            .iter()
            .map(|o| &o.resources)),
        capabilities: details
            .map(|d| {
                d.capabilities
                    .iter()
                    .map(|kind| Capability { kind })
                    .collect()
            })
            .unwrap_or_default(),
        hostname: framework.framework_hostname.as_deref().unwrap_or(""),
        webui_url: details.and_then(|d| d.webui_url.as_deref()).unwrap_or(""),
        active: live && framework.active,
        connected: live && framework.active,
        recovered: false,
    }
}

fn full_framework<'a>(
    snapshot: &'a StateSnapshot,
    framework: &'a FrameworkView,
    offers: &Offers<'a>,
    live: bool,
    sums: &mut SumCache,
) -> FullFramework<'a> {
    let task_sums = sums.of(&framework.tasks);
    let summary = framework_summary(snapshot, framework, offers, live, &task_sums);
    let details = snapshot.mesos.frameworks.get(&framework.id);
    let multi_role = details.is_some_and(|d| d.capabilities.contains(&"MULTI_ROLE"));
    let roles: Vec<&str> = framework.roles.iter().map(String::as_str).collect();
    let mut resources = summary.used_resources.0.clone();
    mesos_json::add_summary(&mut resources, &summary.offered_resources.0);
    FullFramework {
        user: &framework.user,
        failover_timeout: framework.failover_timeout.unwrap_or(0.0),
        checkpoint: details.is_some_and(|d| d.checkpoint),
        registered_time: framework.registered_time,
        unregistered_time: framework.unregistered_time.unwrap_or(0.0),
        principal: framework.principal.as_deref(),
        resources: FlatMap(resources),
        reregistered_time: framework.reregistered_time,
        role: (!multi_role).then(|| roles.first().copied().unwrap_or("*")),
        roles: multi_role.then_some(roles),
        tasks: TaskEntries {
            list: &framework.tasks,
            part: TaskPart::Reachable,
        },
        unreachable_tasks: TaskEntries {
            list: &framework.tasks,
            part: TaskPart::Unreachable,
        },
        completed_tasks: TaskEntries {
            list: &framework.completed_tasks,
            part: TaskPart::All,
        },
        offers: offers
            .of_framework(&framework.id)
            .iter()
            .map(|o| offer_entry(o))
            .collect(),
        executors: task_sums.executors.into_iter().collect(),
        summary,
    }
}

// ---------------------------------------------------------------------------
// /state
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct LeaderInfo<'a> {
    pub id: &'a str,
    pub pid: String,
    pub port: u32,
    pub hostname: String,
}

/// Mesos' master `/state`.
#[derive(Debug, Serialize)]
pub struct MasterState<'a> {
    pub version: &'static str,
    pub agora_version: &'static str,
    pub build_date: &'static str,
    pub build_time: f64,
    pub build_user: &'static str,
    pub start_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elected_time: Option<f64>,
    pub id: &'a str,
    pub pid: &'a str,
    pub hostname: &'a str,
    pub capabilities: Empty,
    pub activated_slaves: usize,
    pub deactivated_slaves: usize,
    pub unreachable_slaves: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_info: Option<LeaderInfo<'a>>,
    pub flags: &'a BTreeMap<String, String>,
    pub slaves: SlaveEntries<'a>,
    pub recovered_slaves: Empty,
    pub frameworks: Vec<FullFramework<'a>>,
    pub completed_frameworks: Vec<FullFramework<'a>>,
    pub orphan_tasks: Empty,
    pub unregistered_frameworks: Empty,
}

fn agents_in(snapshot: &StateSnapshot, status: &str) -> usize {
    snapshot
        .agents
        .iter()
        .filter(|a| a.status == status)
        .count()
}

/// Who leads, as Mesos' `leader` (a pid) and `leader_info`; `None` while
/// no leader is known.
fn leader(snapshot: &StateSnapshot) -> Option<(String, LeaderInfo<'_>)> {
    if snapshot.leader.is_empty() {
        return None;
    }
    let (host, port) = snapshot
        .leader
        .rsplit_once(':')
        .map_or((snapshot.leader.as_str(), 0), |(host, port)| {
            (host, port.parse().unwrap_or(0))
        });
    // The leader's own pid holds its IP; a follower knows the leader's address only.
    let pid = if snapshot.elected && !snapshot.mesos.pid.is_empty() {
        snapshot.mesos.pid.clone()
    } else {
        format!("master@{}", snapshot.leader)
    };
    let info = LeaderInfo {
        id: if snapshot.elected { &snapshot.id } else { "" },
        pid: pid.clone(),
        port,
        hostname: host.to_string(),
    };
    Some((pid, info))
}

/// Mesos' `/state` of `snapshot`; `started` is when this master started
/// serving (wall-clock seconds). Each framework's sums over its tasks come
/// from `sums`, which keeps them per chunk for the next body.
pub fn state<'a>(
    snapshot: &'a StateSnapshot,
    started: f64,
    sums: &mut SumCache,
) -> MasterState<'a> {
    let offers = Arc::new(Offers::of(snapshot));
    let (leader, leader_info) = leader(snapshot).unzip();
    MasterState {
        version: MESOS_VERSION,
        agora_version: env!("CARGO_PKG_VERSION"),
        build_date: "",
        build_time: 0.0,
        build_user: "",
        start_time: started,
        elected_time: snapshot.elected.then_some(snapshot.start_time),
        id: &snapshot.id,
        pid: &snapshot.mesos.pid,
        hostname: &snapshot.hostname,
        capabilities: [],
        activated_slaves: agents_in(snapshot, "active"),
        deactivated_slaves: agents_in(snapshot, "disconnected"),
        unreachable_slaves: agents_in(snapshot, "unreachable"),
        leader,
        leader_info,
        flags: &snapshot.mesos.flags,
        recovered_slaves: [],
        frameworks: snapshot
            .frameworks
            .iter()
            .map(|f| full_framework(snapshot, f, &offers, true, sums))
            .collect(),
        completed_frameworks: snapshot
            .completed_frameworks
            .iter()
            .map(|f| full_framework(snapshot, f, &offers, false, sums))
            .collect(),
        slaves: SlaveEntries {
            snapshot,
            offers,
            full: false,
        },
        orphan_tasks: [],
        unregistered_frameworks: [],
    }
}
