//! What readers of the agent see: the snapshot the actor publishes for
//! `/state`, `/health`, `/metrics` and the Mesos endpoints, and the entries
//! of `/monitor/statistics`. Plain data: built by the actor
//! (`actor/publish.rs`), read by the HTTP handlers without asking it.

use serde::Serialize;

use crate::gc::DiskSpace;

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
    pub resources: std::collections::BTreeMap<String, agora_core::resources::SummaryValue>,
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
    pub gauges: Option<crate::metrics::AgentGauges>,
    /// Frameworks, executors and sandboxes as Mesos' endpoints show them
    /// ([`crate::mesos_v0`]).
    #[serde(skip)]
    pub mesos: crate::mesos_v0::MesosView,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub framework_id: String,
    pub state: &'static str,
    pub sandbox: Option<String>,
}
