//! What readers of the agent see: the snapshot the actor publishes for
//! `/state`, `/health`, `/metrics` and the Mesos endpoints, the entries of
//! `/monitor/statistics`, the gauges, and the Mesos view of frameworks,
//! executors and tasks. Plain data: the actor builds it (the shell's
//! `actor/publish.rs`, with `MesosView::build` from [`crate::mesos_v0`] and
//! the gauges of [`crate::metrics`]); the HTTP handlers read it without
//! asking the actor. It imports neither the shell nor the HTTP modules, so those
//! can all import it.

use std::collections::BTreeMap;

use agora_core::resources::SummaryValue;
use agora_core::resources::mesos_json;
use serde::{Serialize, Serializer};

use crate::gc::DiskSpace;

type Summary = BTreeMap<String, SummaryValue>;

/// One entry of `/monitor/statistics`, as Mesos shapes it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatistics {
    pub framework_id: String,
    pub executor_id: String,
    pub executor_name: String,
    pub source: String,
    pub statistics: agora_isolation::ResourceStatistics,
}

/// What `/state` on the agent shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AgentSnapshot {
    pub id: Option<String>,
    pub hostname: String,
    pub master: String,
    pub registered: bool,
    pub resources: Summary,
    pub tasks: Vec<TaskView>,
    pub completed_tasks: Vec<TaskView>,
    /// The work dir's filesystem has no room for new sandboxes: tasks are
    /// refused until it has.
    pub disk_full: bool,
    /// The work dir's filesystem as last measured.
    pub disk: Option<DiskSpace>,
    /// Sandboxes of finished executors waiting for garbage collection.
    pub sandboxes_awaiting_gc: usize,
    /// Why the master refused this agent's registration (e.g. resources
    /// that no longer hold its running tasks), until one accepts it.
    pub refused: Option<String>,
    /// The state machine's gauges at publish time, for `/metrics` (pending
    /// status updates are known only there); `None` before the first publish.
    #[serde(skip)]
    pub gauges: Option<AgentGauges>,
    /// Frameworks, executors and sandboxes as Mesos' endpoints show them
    /// ([`crate::mesos_v0`]).
    #[serde(skip)]
    pub mesos: MesosView,
}

/// A task as `/state` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub framework_id: String,
    pub state: &'static str,
    pub sandbox: Option<String>,
}

/// The agent's own gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentGauges {
    pub registered: bool,
    /// Tasks by Mesos state name (`TASK_RUNNING`, ...), completed ones included.
    pub tasks_by_state: BTreeMap<String, u64>,
    pub executors_running: u64,
    /// Status updates not yet acknowledged by the master; `None` when unknown.
    pub status_updates_pending: Option<u64>,
    /// The work dir's disk is full and tasks are refused.
    pub disk_full: bool,
}

/// An owned summary, shown as Mesos' flat map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatMap(pub Summary);

impl Serialize for FlatMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        mesos_json::serialize_flat(&self.0, serializer)
    }
}

/// One status of a task, as Mesos shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEntry {
    pub state: &'static str,
    pub timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// A launched task, as Mesos' `json(Task)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEntry {
    pub id: String,
    pub name: String,
    pub framework_id: String,
    /// Empty for a command task, as in Mesos.
    pub executor_id: String,
    pub slave_id: String,
    pub state: &'static str,
    pub resources: FlatMap,
    pub role: String,
    pub statuses: Vec<StatusEntry>,
    /// The OS user it runs as when its command (or its executor's) names
    /// one; else its framework's. Not shown: what `view_tasks` checks
    /// (`crate::authz_views`).
    #[serde(skip)]
    pub user: Option<String>,
}

/// A task its executor has not received yet, as Mesos' `json(TaskInfo)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedTaskEntry {
    pub id: String,
    pub name: String,
    pub slave_id: String,
    pub resources: FlatMap,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<String>,
    /// As [`TaskEntry::user`].
    #[serde(skip)]
    pub user: Option<String>,
}

/// An executor with its tasks and sandbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorEntry {
    pub id: String,
    pub name: String,
    pub source: String,
    /// The run (container) id; empty before the executor started.
    pub container: String,
    /// The sandbox, absolute: what `/files/*` takes as `path`.
    pub directory: String,
    /// The executor's own resources and its live tasks'.
    pub resources: FlatMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub tasks: Vec<TaskEntry>,
    pub queued_tasks: Vec<QueuedTaskEntry>,
    pub completed_tasks: Vec<TaskEntry>,
    /// The OS user it runs as when its command (or, for a command
    /// executor, its task's) names one; else its framework's. Not shown:
    /// what `access_sandboxes` checks (`crate::files_authz`).
    #[serde(skip)]
    pub user: Option<String>,
}

/// A framework with its executors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameworkEntry {
    pub id: String,
    pub name: String,
    pub user: String,
    pub failover_timeout: f64,
    pub checkpoint: bool,
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// A multi-role framework's roles; `role` otherwise (as Mesos does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub executors: Vec<ExecutorEntry>,
    pub completed_executors: Vec<ExecutorEntry>,
}

/// What the actor publishes for these endpoints with each snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MesosView {
    /// The hostname of the master this agent registered with last.
    pub master_hostname: Option<String>,
    pub frameworks: Vec<FrameworkEntry>,
    /// Frameworks the agent runs nothing for any more, with what it keeps
    /// of their completed tasks.
    pub completed_frameworks: Vec<FrameworkEntry>,
    /// Resources held by executors and their live tasks.
    pub used: Summary,
    pub executors_registering: usize,
    pub executors_running: usize,
    pub executors_terminating: usize,
}
