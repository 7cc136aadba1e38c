//! What an executor must remember across connections to its agent, as
//! Mesos' executor driver does: the updates the agent has not acknowledged
//! (sent again, in order, in the next SUBSCRIBE) and the tasks it holds (so
//! that a re-subscription does not have the agent launch them again).
//!
//! Pure: owned by the session task, no lock, no I/O.

use agora_proto::v1;
use agora_proto::v1::executor::call;

/// The unacknowledged updates and the tasks held, in arrival order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Books {
    /// Updates sent and not yet acknowledged, oldest first; each has a uuid.
    updates: Vec<v1::TaskStatus>,
    /// Tasks launched here whose terminal update the agent has not yet
    /// acknowledged, oldest first.
    tasks: Vec<v1::TaskInfo>,
}

impl Books {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// A task arrived (LAUNCH). A task launched again (the agent did not
    /// know we held it) replaces the earlier copy.
    pub fn launched(&mut self, task: v1::TaskInfo) {
        let id = task_key(task.task_id.as_ref());
        self.tasks.retain(|t| task_key(t.task_id.as_ref()) != id);
        self.tasks.push(task);
    }

    /// An update is being sent; kept until acknowledged. An update without
    /// a uuid cannot be acknowledged and is not kept (the driver always
    /// gives one).
    pub fn sent(&mut self, update: v1::TaskStatus) {
        if update.uuid.as_ref().is_some_and(|u| !u.is_empty()) {
            self.updates.push(update);
        }
    }

    /// The agent acknowledged the update with this uuid. Returns whether it
    /// was known. A terminal update's acknowledgement also releases its
    /// task: the agent will never launch it again.
    pub fn acknowledged(&mut self, uuid: &[u8]) -> bool {
        let Some(at) = self
            .updates
            .iter()
            .position(|u| u.uuid.as_deref() == Some(uuid))
        else {
            return false;
        };
        let update = self.updates.remove(at);
        let state = v1::TaskState::try_from(update.state.unwrap_or_default())
            .unwrap_or(v1::TaskState::TaskUnknown);
        if agora_core::task::is_terminal(state) {
            let id = task_key(update.task_id.as_ref());
            self.tasks.retain(|t| task_key(t.task_id.as_ref()) != id);
        }
        true
    }

    /// The SUBSCRIBE body: everything unacknowledged, oldest first.
    pub fn subscribe(&self) -> call::Subscribe {
        call::Subscribe {
            unacknowledged_tasks: self.tasks.clone(),
            unacknowledged_updates: self
                .updates
                .iter()
                .map(|u| call::Update {
                    status: Some(u.clone()),
                })
                .collect(),
        }
    }

    /// Whether every update sent has been acknowledged.
    pub fn all_acknowledged(&self) -> bool {
        self.updates.is_empty()
    }

    /// The unacknowledged updates, oldest first.
    pub fn updates(&self) -> &[v1::TaskStatus] {
        &self.updates
    }

    /// The tasks held, oldest first.
    pub fn tasks(&self) -> &[v1::TaskInfo] {
        &self.tasks
    }
}

fn task_key(id: Option<&v1::TaskId>) -> &str {
    id.map(|t| t.value.as_str()).unwrap_or_default()
}
