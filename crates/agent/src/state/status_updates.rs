//! The status-update manager: per task, updates reach the master in order,
//! only the head in flight, re-sent with backoff until acknowledged; the
//! state machine's next deadline and what is due at it.

use std::time::Duration;

use agora_core::{AgentId, FrameworkId, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::master_message;

use crate::checkpoint::Checkpoint;

use super::{
    AgentState, EXECUTOR_REREGISTER_TIMEOUT, Effect, MAX_COMPLETED, status_update_message,
};

impl AgentState {
    pub(super) fn send_head(
        &mut self,
        now: Duration,
        key: &(FrameworkId, TaskId),
        out: &mut Vec<Effect>,
    ) {
        let registered = self.registered;
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let Some(head) = task.pending.front() else {
            task.next_retry = None;
            return;
        };
        if registered {
            out.push(Effect::ToMaster(status_update_message(
                &key.0, head, task.state,
            )));
        }
        task.next_retry = Some(now + task.backoff.current());
    }

    /// Checkpoints a task's state and queue as they are now.
    pub(super) fn checkpoint_updates(&self, key: &(FrameworkId, TaskId), out: &mut Vec<Effect>) {
        if let Some(task) = self.tasks.get(key) {
            out.push(Effect::Checkpoint(Checkpoint::TaskUpdates {
                framework_id: key.0.clone(),
                executor_id: task.executor_id.clone(),
                task_id: key.1.clone(),
                state: task.state,
                pending: task.pending.iter().cloned().collect(),
                received: task.received.iter().cloned().collect(),
            }));
        }
    }

    /// Retires a terminal task whose updates were all acknowledged.
    pub(super) fn retire(&mut self, key: &(FrameworkId, TaskId), out: &mut Vec<Effect>) {
        if let Some(done) = self.tasks.remove(key) {
            out.push(Effect::Checkpoint(Checkpoint::RemoveTask {
                framework_id: key.0.clone(),
                executor_id: done.executor_id.clone(),
                task_id: key.1.clone(),
            }));
            self.completed.push_back(done);
            while self.completed.len() > MAX_COMPLETED {
                self.completed.pop_front();
            }
            self.forget_framework_if_unused(&key.0, out);
        }
    }

    /// Queues an update the agent generates itself (no executor to report it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn agent_update(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        let uuid = self.next_uuid();
        let status = pb::TaskStatus {
            task_id: task_id.to_field(),
            state: Some(state as i32),
            message: Some(message),
            source: Some(pb::task_status::Source::Agent as i32),
            reason: Some(reason as i32),
            agent_id: self.agent_id.as_ref().and_then(AgentId::to_field),
            uuid: Some(uuid),
            ..Default::default()
        };
        self.enqueue(now, framework_id, status, out);
    }

    /// Queues an update for delivery; sends it at once if it is the head.
    pub(super) fn enqueue(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        mut status: pb::TaskStatus,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Ok(task_id) = TaskId::from_field(&status.task_id) else {
            return false;
        };
        let key = (framework_id.clone(), task_id);
        let Some(task) = self.tasks.get_mut(&key) else {
            return false;
        };
        if let Some(uuid) = &status.uuid
            && task.received.contains(uuid)
        {
            // A retry of an update taken already: still pending, or
            // acknowledged by the master (whose copy may have been followed
            // by newer ones: queued again it would undo them).
            return true;
        }
        let Ok(state) = agora_core::task::from_i32(status.state.unwrap_or_default()) else {
            return false;
        };
        if agora_core::task::check_transition(task.state, state).is_err() {
            tracing::warn!(task_id = %key.1, "update after a terminal state dropped");
            return true;
        }
        status.agent_id = self.agent_id.as_ref().and_then(AgentId::to_field);
        if let Some(uuid) = &status.uuid {
            task.received.push_back(uuid.clone());
            if task.received.len() > crate::state::RECEIVED_KEPT {
                task.received.pop_front();
            }
        }
        task.state = state;
        task.pending.push_back(status);
        let first = task.pending.len() == 1;
        // Written before anything relies on it (the executor's ack follows).
        self.checkpoint_updates(&key, out);
        if first {
            if let Some(task) = self.tasks.get_mut(&key) {
                task.backoff.reset();
            }
            self.send_head(now, &key, out);
        }
        true
    }

    /// The master relays a framework's acknowledgement.
    pub fn on_status_ack(
        &mut self,
        now: Duration,
        ack: master_message::StatusUpdateAck,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&ack.framework_id),
            TaskId::from_field(&ack.task_id),
        ) else {
            return;
        };
        let key = (framework_id, task_id);
        let Some(task) = self.tasks.get_mut(&key) else {
            return; // duplicate or unexpected: ignored, as in Mesos
        };
        if task.pending.front().and_then(|s| s.uuid.as_deref()) != Some(ack.uuid.as_slice()) {
            return;
        }
        task.pending.pop_front();
        task.backoff.reset();
        if task.pending.is_empty() && agora_core::task::is_terminal(task.state) {
            self.retire(&key, out);
            return;
        }
        self.checkpoint_updates(&key, out);
        self.send_head(now, &key, out);
    }

    /// The earliest time [`Self::on_tick`] has something to do: a status
    /// update to resend, or an executor whose re-subscription time or
    /// shutdown grace runs out. `None`: nothing is waiting on a deadline.
    /// The shell sleeps until it (or until an input comes) instead of
    /// ticking; calling `on_tick` earlier or later changes nothing but when
    /// the due work happens.
    pub fn next_deadline(&self) -> Option<Duration> {
        let retries = self.tasks.values().filter_map(|t| t.next_retry);
        let executors = self
            .executors
            .values()
            .flat_map(|e| [e.reregister_deadline, e.shutdown_deadline])
            .flatten();
        retries.chain(executors).min()
    }

    /// Re-sends heads whose retry time has come, backing off.
    pub fn on_tick(&mut self, now: Duration, out: &mut Vec<Effect>) {
        let due: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.next_retry.is_some_and(|r| r <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(task) = self.tasks.get_mut(&key) {
                // The wait that ran out is spent: the next one doubles.
                task.backoff.next_delay();
            }
            self.send_head(now, &key, out);
        }
        let overdue: Vec<_> = self
            .executors
            .iter()
            .filter(|(_, e)| e.reregister_deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let shut_down: Vec<_> = self
            .executors
            .iter()
            .filter(|(_, e)| e.shutdown_deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for (framework_id, executor_id) in shut_down {
            tracing::info!(executor_id = %executor_id, "executor outlived its shutdown grace period; destroying it");
            self.destroy_executor(
                now,
                &framework_id,
                &executor_id,
                pb::TaskState::TaskKilled,
                pb::task_status::Reason::ExecutorTerminated,
                "the executor was shut down".into(),
                out,
            );
        }
        for (framework_id, executor_id) in overdue {
            tracing::warn!(executor_id = %executor_id, "executor did not re-subscribe after the agent restarted; killing it");
            self.destroy_executor(
                now,
                &framework_id,
                &executor_id,
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ExecutorReregistrationTimeout,
                format!(
                    "the executor did not re-subscribe within {}s of the agent's restart",
                    EXECUTOR_REREGISTER_TIMEOUT.as_secs()
                ),
                out,
            );
        }
    }
}
