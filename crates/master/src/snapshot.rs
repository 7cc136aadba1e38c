//! What readers see of the master: a snapshot the state machine's owner
//! publishes, so that `/state`, `/metrics` and the UI never touch live state.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_core::resources::SummaryValue;
use agora_core::{AgentId, ExecutorId, FrameworkId, SmallText, TaskId};
use serde::Serialize;

use crate::state::Counters;

mod build;
pub mod kept_json;
mod list;
mod read_model;
pub mod state_body;
#[cfg(test)]
pub(crate) mod test_views;

pub use agora_core::time::mesos_duration;
pub use list::{Keyed, ListItem, SharedList};
pub use read_model::ReadModel;

/// What readers see. Its lists are [`SharedList`]s, shared with the
/// snapshots before and after it: the actor's read model (`read_model.rs`)
/// makes each snapshot from the previous one and what changed, and
/// [`Master::snapshot`] makes one from scratch (the reference it must equal).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
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
    #[serde(serialize_with = "kept_json::list")]
    pub agents: SharedList<AgentView>,
    pub frameworks: SharedList<FrameworkView>,
    pub completed_frameworks: SharedList<FrameworkView>,
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
    pub offers: SharedList<OfferView>,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorDetails {
    /// This master (GET_MASTER).
    pub master_info: agora_proto::v1::MasterInfo,
    /// Agents, frameworks, executors and tasks (GET_STATE and its parts).
    pub state: agora_proto::v1::master::response::GetState,
}

/// Details only Mesos' endpoints (`crate::mesos_v0`) show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MesosDetails {
    /// This master's libprocess-style pid, `master@ip:port` (empty on a
    /// follower's snapshot).
    pub pid: String,
    /// This master's settings by Mesos flag name.
    pub flags: BTreeMap<String, String>,
    /// Each agent's total resources, reservations kept, by agent id.
    pub agent_resources: SharedList<AgentResources>,
    /// Framework details by framework id, live and completed.
    pub frameworks: BTreeMap<String, MesosFramework>,
}

/// An agent's total resources, reservations kept (Mesos' full form).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentResources {
    pub id: String,
    pub resources: agora_core::Resources,
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
#[derive(Debug, Clone, Serialize, PartialEq)]
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

#[derive(Debug, Clone, Serialize, PartialEq)]
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

#[derive(Debug, Clone, Serialize, PartialEq)]
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
    #[serde(serialize_with = "kept_json::list")]
    pub tasks: SharedList<TaskView>,
    #[serde(serialize_with = "kept_json::list")]
    pub completed_tasks: SharedList<TaskView>,
}

/// A task's row: what each status update changes, around the part fixed
/// at its launch ([`TaskFixed`]), which its successive views share. A
/// task's views differ mostly in their state, so a body after a status
/// update writes that and copies the rest's JSON, made once.
///
/// It reads as its fixed part too (`Deref`): `task.id` is `task.fixed.id`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub fixed: Arc<TaskFixed>,
    pub state: &'static str,
    pub message: Option<String>,
    /// When its latest status was generated (wall-clock seconds), if known.
    pub status_time: Option<f64>,
    /// The latest health check verdict, if it has a health check.
    pub healthy: Option<bool>,
}

/// What a task's view keeps while the task's launch fields stay as they
/// are: the read model gives a task's next view the same `Arc` when these
/// fields would be equal (`build::task_view`), a new one otherwise.
///
/// *Invariant:* never edited once made: a body copies the beginning of a
/// task's row (these fields' JSON) from the row an earlier body wrote for
/// a view sharing the same `Arc` (`kept_json`). While any row of it is
/// kept the `Arc` is shared, so `Arc::make_mut` would copy it, not edit it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFixed {
    pub id: TaskId,
    pub name: SmallText,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    /// The executor running it (for command tasks, the task id): its
    /// sandbox is `/frameworks/<framework_id>/executors/<executor_id>/runs/latest`.
    pub executor_id: ExecutorId,
    /// The role whose resources it runs on.
    pub role: SmallText,
    /// Shared by the tasks whose views were made together with the same
    /// resources (`build::RecentSummary`): a framework launches many alike.
    pub resources: Arc<BTreeMap<String, SummaryValue>>,
    /// The OS user it runs as, when not its framework's.
    pub user: Option<String>,
}

impl std::ops::Deref for TaskView {
    type Target = TaskFixed;

    fn deref(&self) -> &TaskFixed {
        &self.fixed
    }
}

/// A task's JSON: the fixed part's fields, then the changing ones (the
/// order `kept_json::write` writes them in). `user` only when it is set.
impl Serialize for TaskView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fixed = &self.fixed;
        let fields = if fixed.user.is_some() { 12 } else { 11 };
        let mut row = serializer.serialize_struct("TaskView", fields)?;
        row.serialize_field("id", &fixed.id)?;
        row.serialize_field("name", &fixed.name)?;
        row.serialize_field("framework_id", &fixed.framework_id)?;
        row.serialize_field("agent_id", &fixed.agent_id)?;
        row.serialize_field("executor_id", &fixed.executor_id)?;
        row.serialize_field("role", &fixed.role)?;
        row.serialize_field("resources", fixed.resources.as_ref())?;
        if let Some(user) = &fixed.user {
            row.serialize_field("user", user)?;
        }
        row.serialize_field("state", self.state)?;
        row.serialize_field("message", &self.message)?;
        row.serialize_field("status_time", &self.status_time)?;
        row.serialize_field("healthy", &self.healthy)?;
        row.end()
    }
}

impl Keyed for AgentView {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for FrameworkView {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for TaskView {
    fn key(&self) -> &str {
        self.id.as_str()
    }
}

impl Keyed for OfferView {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for AgentResources {
    fn key(&self) -> &str {
        &self.id
    }
}

impl ListItem for TaskView {
    fn date(&self) -> Option<f64> {
        self.status_time
    }
}

impl ListItem for AgentView {
    /// Tasks land on agents all over the list: with 64 agents to a chunk,
    /// the hundred-odd agents a placement changes between two polls of
    /// `/state` touched four chunks in ten, and each body made (and
    /// gzipped) again that much of the agents' JSON.
    const CHUNK: usize = 16;
}
impl ListItem for FrameworkView {}
impl ListItem for OfferView {}
impl ListItem for AgentResources {}

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
