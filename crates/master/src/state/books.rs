//! What the master keeps about each agent, framework, task and offer, and
//! the counters it exposes: plain records, changed only by [`Master`]'s
//! methods.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use agora_core::{AgentId, FrameworkId, OfferId, Resources, TaskId};
use agora_proto::v1 as pb;

use super::ConnId;
#[cfg(doc)]
use super::Master;
use super::tracked::{History, Tracked};

#[derive(Debug, Clone)]
pub struct Agent {
    pub id: AgentId,
    pub info: pb::AgentInfo,
    pub conn: Option<ConnId>,
    pub total: Resources,
    /// Resources of the agent's non-terminal tasks.
    pub used: Resources,
    pub registered_at: f64,
    pub health: AgentHealth,
    /// Set while the agent is unreachable (wall-clock seconds since when).
    pub unreachable_since: Option<f64>,
    /// While unreachable and not yet removed: when it is removed (monotonic).
    pub removal_deadline: Option<Duration>,
    /// Tasks reported TASK_LOST when it was removed (their frameworks are
    /// not partition-aware and may have replaced them): killed if it returns.
    pub lost_tasks: BTreeSet<(FrameworkId, TaskId)>,
}

/// The master's view of an agent's liveness.
#[derive(Debug, Clone, Default)]
pub struct AgentHealth {
    pub last_ping: Option<Duration>,
    pub awaiting_pong: bool,
    pub missed: u32,
    pub seq: u64,
    /// When the agent's session ended, while it has not come back.
    pub disconnected_at: Option<Duration>,
}

impl AgentHealth {
    /// A fresh session: the first ping is due one period from now.
    pub fn registered_at(now: Duration) -> Self {
        Self {
            last_ping: Some(now),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    /// The role whose offer the task was launched on (the allocator
    /// accounts its resources to this role).
    pub role: String,
    pub name: String,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
    /// The latest state known (what users see).
    pub state: pb::TaskState,
    /// The state of the update being delivered to the framework, which the
    /// latest `state` may be ahead of.
    pub update_state: Option<pb::TaskState>,
    pub last_status: Option<pb::TaskStatus>,
    /// Whether the task's resources were already given back.
    pub resources_released: bool,
    /// The OS user it runs as when its command or executor names one
    /// (None: its framework's user); what `view_tasks` checks.
    pub user: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Framework {
    pub id: FrameworkId,
    pub info: pb::FrameworkInfo,
    pub roles: BTreeSet<String>,
    pub conn: Option<ConnId>,
    pub stream_id: String,
    pub registered_at: f64,
    /// Wall time of the last re-subscription (a scheduler failover), if any.
    pub reregistered_at: Option<f64>,
    /// Wall time its event stream ended, while it is disconnected; for a
    /// removed framework, when it was removed.
    pub disconnected_at: Option<f64>,
    /// When a disconnected framework is removed for good.
    pub failover_deadline: Option<Duration>,
    /// Live tasks; the keys written are marked for the read model.
    pub tasks: Tracked<TaskId, Task>,
    /// The latest completed tasks, at most `max_completed_tasks_per_framework`.
    pub completed_tasks: History<Task>,
    /// How many of `completed_tasks` have each id: asking about a task that
    /// is not there (a reconciliation of 100,000 tasks while their agents
    /// re-register, each status update) costs a lookup, not a pass over the
    /// history. Kept by [`Framework::push_completed`] and
    /// [`Framework::retain_completed`], the only ways the history changes.
    pub completed_ids: HashMap<TaskId, u32>,
    pub offers: BTreeSet<OfferId>,
}

impl Framework {
    /// Adds a task to the completed ones, forgetting the oldest beyond `limit`.
    pub fn push_completed(&mut self, task: Task, limit: usize) {
        *self.completed_ids.entry(task.id.clone()).or_default() += 1;
        self.completed_tasks.push_back(task);
        while self.completed_tasks.len() > limit {
            let Some(old) = self.completed_tasks.pop_front() else {
                break;
            };
            if let Some(count) = self.completed_ids.get_mut(&old.id) {
                *count -= 1;
                if *count == 0 {
                    self.completed_ids.remove(&old.id);
                }
            }
        }
    }

    /// Keeps the completed tasks `keep` says yes to.
    pub fn retain_completed(&mut self, mut keep: impl FnMut(&Task) -> bool) {
        let ids = &mut self.completed_ids;
        self.completed_tasks.retain(|t| {
            let kept = keep(t);
            if !kept && let Some(count) = ids.get_mut(&t.id) {
                *count -= 1;
                if *count == 0 {
                    ids.remove(&t.id);
                }
            }
            kept
        });
    }

    /// The latest completed task with this id.
    pub fn completed_task(&self, id: &TaskId) -> Option<&Task> {
        if !self.completed_ids.contains_key(id) {
            return None;
        }
        self.completed_tasks.iter().rev().find(|t| &t.id == id)
    }

    pub fn active(&self) -> bool {
        self.conn.is_some()
    }

    pub(super) fn partition_aware(&self) -> bool {
        self.info
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(pb::framework_info::capability::Type::PartitionAware as i32))
    }
}

/// The "why no offer?" answer for one (framework, role), as last computed.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferStatusEntry {
    /// When it last got an offer (monotonic), if ever in this term.
    pub last_offered: Option<Duration>,
    /// `None` while nothing holds it back.
    pub reason: Option<&'static str>,
    /// Agents on which it has an unexpired DECLINE filter.
    pub filtered_agents: usize,
}

#[derive(Debug, Clone)]
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub role: String,
    pub resources: Resources,
    /// When it was made (monotonic), for `offer_timeout`.
    pub made_at: Duration,
}

/// Counters exposed as metrics; only ever incremented.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub offers_sent: u64,
    pub offers_declined: u64,
    pub offers_rescinded: u64,
    pub offers_accepted: u64,
    pub tasks_launched: u64,
    pub task_transitions: BTreeMap<&'static str, u64>,
    pub invalid_calls: u64,
    pub agents_marked_unreachable: u64,
    /// Agents admitted with a new id (Mesos' `master/slave_registrations`).
    pub agent_registrations: u64,
    /// Agents admitted again under the id they had (Mesos' `master/slave_reregistrations`).
    pub agent_reregistrations: u64,
    /// Agents removed for good (Mesos' `master/slave_removals`).
    pub agent_removals: u64,
}
