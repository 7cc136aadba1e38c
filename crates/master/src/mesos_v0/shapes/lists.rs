//! The bodies of the list endpoints (`/state-summary`, `/frameworks`,
//! `/slaves`, `/tasks`, `/roles`), from the entries [`super`] shapes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{
    Empty, FrameworkSummary, FullFramework, Offers, Slave, SlaveEntries, SumCache, TaskEntry,
    TaskSums, framework_summary, full_framework, registered_agents, slave, task_entry,
};
use crate::mesos_v0::DEFAULT_TASK_LIMIT;
use crate::snapshot::{FrameworkView, RoleView, StateSnapshot, TaskView};

// ---------------------------------------------------------------------------
// /state-summary
// ---------------------------------------------------------------------------

/// Tasks by state, as `/state-summary` counts them per agent and framework.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct TaskCounts {
    #[serde(rename = "TASK_STAGING")]
    pub staging: usize,
    #[serde(rename = "TASK_STARTING")]
    pub starting: usize,
    #[serde(rename = "TASK_RUNNING")]
    pub running: usize,
    #[serde(rename = "TASK_KILLING")]
    pub killing: usize,
    #[serde(rename = "TASK_FINISHED")]
    pub finished: usize,
    #[serde(rename = "TASK_KILLED")]
    pub killed: usize,
    #[serde(rename = "TASK_FAILED")]
    pub failed: usize,
    #[serde(rename = "TASK_LOST")]
    pub lost: usize,
    #[serde(rename = "TASK_ERROR")]
    pub error: usize,
    #[serde(rename = "TASK_UNREACHABLE")]
    pub unreachable: usize,
}

impl TaskCounts {
    fn count(&mut self, state: &str) {
        let slot = match state {
            "TASK_STAGING" => &mut self.staging,
            "TASK_STARTING" => &mut self.starting,
            "TASK_RUNNING" => &mut self.running,
            "TASK_KILLING" => &mut self.killing,
            "TASK_FINISHED" => &mut self.finished,
            "TASK_KILLED" => &mut self.killed,
            "TASK_FAILED" => &mut self.failed,
            "TASK_LOST" => &mut self.lost,
            "TASK_ERROR" => &mut self.error,
            "TASK_UNREACHABLE" => &mut self.unreachable,
            _ => return,
        };
        *slot += 1;
    }
}

#[derive(Debug, Serialize)]
pub struct SlaveSummary<'a> {
    #[serde(flatten)]
    pub slave: Slave<'a>,
    #[serde(flatten)]
    pub tasks: TaskCounts,
    pub framework_ids: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct FrameworkSummaryEntry<'a> {
    #[serde(flatten)]
    pub framework: FrameworkSummary<'a>,
    #[serde(flatten)]
    pub tasks: TaskCounts,
    pub slave_ids: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct StateSummary<'a> {
    pub hostname: &'a str,
    pub slaves: Vec<SlaveSummary<'a>>,
    pub frameworks: Vec<FrameworkSummaryEntry<'a>>,
}

/// Mesos' `/state-summary`: agents and (live) frameworks with their tasks
/// counted by state, over the live frameworks' tasks, live and completed.
pub fn state_summary(snapshot: &StateSnapshot) -> StateSummary<'_> {
    let offers = Offers::of(snapshot);
    let mut by_agent: HashMap<&str, (TaskCounts, BTreeSet<&str>)> = HashMap::new();
    let mut frameworks = Vec::with_capacity(snapshot.frameworks.len());
    for framework in &snapshot.frameworks {
        let mut counts = TaskCounts::default();
        let mut agents = BTreeSet::new();
        for task in framework.tasks.iter().chain(&framework.completed_tasks) {
            counts.count(task.state);
            agents.insert(task.agent_id.as_str());
            let (agent_counts, agent_frameworks) =
                by_agent.entry(task.agent_id.as_str()).or_default();
            agent_counts.count(task.state);
            agent_frameworks.insert(framework.id.as_str());
        }
        frameworks.push(FrameworkSummaryEntry {
            framework: framework_summary(
                snapshot,
                framework,
                &offers,
                true,
                &TaskSums::of_list(&framework.tasks),
            ),
            tasks: counts,
            slave_ids: agents.into_iter().collect(),
        });
    }
    let slaves = registered_agents(snapshot)
        .map(|agent| {
            let (tasks, framework_ids) = by_agent.remove(agent.id.as_str()).unwrap_or_default();
            SlaveSummary {
                slave: slave(snapshot, agent, &offers, false),
                tasks,
                framework_ids: framework_ids.into_iter().collect(),
            }
        })
        .collect();
    StateSummary {
        hostname: &snapshot.hostname,
        slaves,
        frameworks,
    }
}

// ---------------------------------------------------------------------------
// /frameworks, /slaves
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct Frameworks<'a> {
    pub frameworks: Vec<FullFramework<'a>>,
    pub completed_frameworks: Vec<FullFramework<'a>>,
    pub unregistered_frameworks: Empty,
}

/// Mesos' `/frameworks`, all or the one `framework_id` names; each
/// framework's sums over its tasks come from `sums` (see [`state`]).
pub fn frameworks<'a>(
    snapshot: &'a StateSnapshot,
    framework_id: Option<&str>,
    sums: &mut SumCache,
) -> Frameworks<'a> {
    let offers = Offers::of(snapshot);
    let wanted = |f: &&FrameworkView| framework_id.is_none_or(|id| f.id == id);
    Frameworks {
        frameworks: snapshot
            .frameworks
            .iter()
            .filter(wanted)
            .map(|f| full_framework(snapshot, f, &offers, true, sums))
            .collect(),
        completed_frameworks: snapshot
            .completed_frameworks
            .iter()
            .filter(wanted)
            .map(|f| full_framework(snapshot, f, &offers, false, sums))
            .collect(),
        unregistered_frameworks: [],
    }
}

#[derive(Debug, Serialize)]
pub struct Slaves<'a> {
    pub slaves: Vec<Slave<'a>>,
    pub recovered_slaves: Empty,
}

/// Mesos' `/slaves` of every agent, its entries a hole that
/// `/master/slaves`' body fills per chunk of agents (`state_body`): the
/// same JSON as [`slaves`] with no `slave_id`.
#[derive(Debug, Serialize)]
pub struct AllSlaves<'a> {
    pub slaves: SlaveEntries<'a>,
    pub recovered_slaves: Empty,
}

pub fn all_slaves(snapshot: &StateSnapshot) -> AllSlaves<'_> {
    AllSlaves {
        slaves: SlaveEntries {
            snapshot,
            offers: std::sync::Arc::new(Offers::of(snapshot)),
            full: true,
        },
        recovered_slaves: [],
    }
}

/// Mesos' `/slaves` (with the `*_full` reservations), all or the one
/// `slave_id` names.
pub fn slaves<'a>(snapshot: &'a StateSnapshot, slave_id: Option<&str>) -> Slaves<'a> {
    let offers = Offers::of(snapshot);
    Slaves {
        slaves: registered_agents(snapshot)
            .filter(|a| slave_id.is_none_or(|id| a.id == id))
            .map(|a| slave(snapshot, a, &offers, true))
            .collect(),
        recovered_slaves: [],
    }
}

// ---------------------------------------------------------------------------
// /tasks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOrder {
    Asc,
    Desc,
}

/// `/tasks`' parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TasksQuery {
    pub framework_id: Option<String>,
    pub task_id: Option<String>,
    pub limit: usize,
    pub offset: usize,
    pub order: TaskOrder,
}

impl Default for TasksQuery {
    fn default() -> Self {
        TasksQuery {
            framework_id: None,
            task_id: None,
            limit: DEFAULT_TASK_LIMIT,
            offset: 0,
            order: TaskOrder::Desc,
        }
    }
}

impl TasksQuery {
    /// Reads `framework_id`, `task_id`, `limit` (default 100), `offset`
    /// (default 0) and `order` (`asc` or `desc`, the default). A value that
    /// does not parse is an error (Mesos would silently use the default).
    pub fn parse(query: &HashMap<String, String>) -> Result<Self, String> {
        let number = |name: &str, default: usize| -> Result<usize, String> {
            match query.get(name).map(|v| v.trim()) {
                None => Ok(default),
                Some(value) => value
                    .parse()
                    .map_err(|_| format!("'{name}' must be a non-negative integer, not '{value}'")),
            }
        };
        let order = match query.get("order").map(String::as_str) {
            None | Some("desc") => TaskOrder::Desc,
            Some("asc") => TaskOrder::Asc,
            Some(other) => return Err(format!("'order' must be 'asc' or 'desc', not '{other}'")),
        };
        Ok(TasksQuery {
            framework_id: query.get("framework_id").cloned(),
            task_id: query.get("task_id").cloned(),
            limit: number("limit", DEFAULT_TASK_LIMIT)?,
            offset: number("offset", 0)?,
            order,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Tasks<'a> {
    pub tasks: Vec<TaskEntry<'a>>,
}

/// Mesos' `/tasks`: the tasks of live and completed frameworks (live,
/// unreachable and completed ones) that match, by status time (`asc`:
/// those without one first; `desc`: last), then `offset` and `limit`.
pub fn tasks<'a>(snapshot: &'a StateSnapshot, query: &TasksQuery) -> Tasks<'a> {
    let mut matching: Vec<&TaskView> = snapshot
        .frameworks
        .iter()
        .chain(&snapshot.completed_frameworks)
        .filter(|f| query.framework_id.as_deref().is_none_or(|id| f.id == id))
        .flat_map(|f| f.tasks.iter().chain(&f.completed_tasks))
        .filter(|t| {
            query
                .task_id
                .as_deref()
                .is_none_or(|id| t.id.as_str() == id)
        })
        .collect();
    // Stable: tasks with equal times keep the snapshot's order.
    match query.order {
        TaskOrder::Asc => matching.sort_by(|a, b| match (a.status_time, b.status_time) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        }),
        TaskOrder::Desc => matching.sort_by(|a, b| match (a.status_time, b.status_time) {
            (Some(a), Some(b)) => b.total_cmp(&a),
            (a, b) => b.is_some().cmp(&a.is_some()),
        }),
    }
    Tasks {
        tasks: matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .map(task_entry)
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// /roles
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct RoleQuota<'a> {
    pub role: &'a str,
    pub guarantee: &'a BTreeMap<String, f64>,
    pub limit: &'a BTreeMap<String, f64>,
    pub consumed: &'a BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct RoleEntry<'a> {
    pub name: &'a str,
    pub weight: f64,
    pub quota: RoleQuota<'a>,
    /// Allocated plus offered.
    pub resources: &'a BTreeMap<String, f64>,
    /// Held by tasks (Agora's `allocated` less what is offered).
    pub allocated: BTreeMap<String, f64>,
    pub offered: &'a BTreeMap<String, f64>,
    pub reserved: &'a BTreeMap<String, f64>,
    pub frameworks: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct Roles<'a> {
    pub roles: Vec<RoleEntry<'a>>,
}

static NO_QUANTITIES: BTreeMap<String, f64> = BTreeMap::new();

fn role_entry(role: &RoleView) -> RoleEntry<'_> {
    let allocated = role
        .allocated
        .iter()
        .map(|(name, value)| {
            let offered = role.offered.get(name).copied().unwrap_or(0.0);
            (name.clone(), (value - offered).max(0.0))
        })
        .filter(|(_, value)| *value > 0.0)
        .collect();
    RoleEntry {
        name: &role.name,
        weight: role.weight,
        quota: RoleQuota {
            role: &role.name,
            guarantee: role.quota.as_ref().map_or(&NO_QUANTITIES, |q| &q.guarantee),
            limit: role.quota.as_ref().map_or(&NO_QUANTITIES, |q| &q.limit),
            consumed: &role.consumed,
        },
        resources: &role.allocated,
        allocated,
        offered: &role.offered,
        reserved: &role.reserved,
        frameworks: &role.frameworks,
    }
}

/// Mesos' `/roles`.
pub fn roles(snapshot: &StateSnapshot) -> Roles<'_> {
    Roles {
        roles: snapshot.roles.iter().map(role_entry).collect(),
    }
}
