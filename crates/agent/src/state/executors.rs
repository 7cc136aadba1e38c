//! Executors' lives: subscription, their updates and messages, disconnection,
//! exit, and what is forgotten when one is gone.

use std::time::Duration;

use agora_core::{ExecutorId, FrameworkId, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{AgentMessage, agent_message, master_message};
use agora_proto::v1::executor as exec;

use crate::checkpoint::Checkpoint;

use super::{AgentState, Effect, ExecutorConn, kill_event, launch_event};

impl AgentState {
    /// Checkpoints an executor's removal, and its framework's once nothing
    /// of it is left here.
    pub(super) fn executor_removed(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::Checkpoint(Checkpoint::RemoveExecutor {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
        }));
        self.forget_framework_if_unused(framework_id, out);
    }

    pub(super) fn forget_framework_if_unused(
        &mut self,
        framework_id: &FrameworkId,
        out: &mut Vec<Effect>,
    ) {
        // Both maps are ordered by framework first: the first key at or
        // after the framework's smallest says whether it has any (a scan of
        // every executor and task per removal was O(n) each, O(n^2) when
        // thousands of executors end).
        let used = self
            .executors
            .range((framework_id.clone(), ExecutorId::new(""))..)
            .next()
            .is_some_and(|((f, _), _)| f == framework_id)
            || self
                .tasks
                .range((framework_id.clone(), TaskId::new(""))..)
                .next()
                .is_some_and(|((f, _), _)| f == framework_id);
        if !used && self.frameworks.remove(framework_id).is_some() {
            out.push(Effect::Checkpoint(Checkpoint::RemoveFramework(
                framework_id.clone(),
            )));
        }
    }

    /// The supervisor that hosts this executor re-attached after an agent
    /// restart and listed its run: the executor is alive, and its
    /// subscription follows as soon as it gets through. The re-registration
    /// deadline (for an executor that is gone or hung) no longer applies:
    /// with 10,000 executors re-subscribing on a loaded machine it ran out
    /// for thousands that were alive, and killed their tasks. If the
    /// executor ends instead, its supervisor reports that.
    pub fn on_executor_vouched_for(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) {
        if let Some(executor) = self
            .executors
            .get_mut(&(framework_id.clone(), executor_id.clone()))
        {
            executor.reregister_deadline = None;
        }
    }

    /// An executor subscribed on stream `conn`. `held` lists the tasks it
    /// already holds (from its subscription): those are not launched again,
    /// whether it reconnects to this agent run or to a restarted agent.
    /// Every other live task of the executor is launched now.
    #[allow(clippy::too_many_arguments)]
    pub fn on_executor_subscribe(
        &mut self,
        now: Duration,
        conn: ExecutorConn,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        held: &[TaskId],
        unacknowledged: Vec<pb::TaskStatus>,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let key = (framework_id.clone(), executor_id.clone());
        let Some(executor) = self.executors.get_mut(&key) else {
            return Err(format!(
                "executor {executor_id} of framework {framework_id} is not known to this agent"
            ));
        };
        executor.conn = Some(conn);
        executor.reregister_deadline = None;
        executor.delivered = held
            .iter()
            .filter(|t| executor.tasks.contains(t))
            .cloned()
            .collect();
        let kill = executor.kill_requested.clone();
        let info = executor.info.clone();
        let first_task = executor.task_id.clone();
        let framework = self
            .frameworks
            .get(framework_id)
            .cloned()
            .unwrap_or_default();
        let mut executor_info = info.clone().unwrap_or_default();
        executor_info.executor_id = executor_id.to_field();
        executor_info.framework_id = framework_id.to_field();
        out.push(Effect::ToExecutor {
            conn,
            event: exec::Event {
                r#type: exec::event::Type::Subscribed as i32,
                subscribed: Some(exec::event::Subscribed {
                    executor_info: Some(executor_info),
                    framework_info: Some(framework),
                    agent_info: Some(self.agent_info()),
                }),
                ..Default::default()
            },
        });
        for status in unacknowledged {
            self.on_executor_update(now, conn, framework_id, executor_id, status, out);
        }
        self.deliver_tasks(&key, out);
        match (kill, info.is_some()) {
            (Some(_), true) => out.push(Effect::ToExecutor {
                conn,
                event: exec::Event {
                    r#type: exec::event::Type::Shutdown as i32,
                    ..Default::default()
                },
            }),
            (Some(order), false) => out.push(Effect::ToExecutor {
                conn,
                event: kill_event(&first_task, order),
            }),
            (None, _) => {}
        }
        Ok(())
    }

    /// Sends LAUNCH for every live task the executor does not hold yet
    /// (see [`Self::deliver_task`]).
    pub(super) fn deliver_tasks(&mut self, key: &(FrameworkId, ExecutorId), out: &mut Vec<Effect>) {
        let Some(executor) = self.executors.get(key) else {
            return;
        };
        let undelivered: Vec<TaskId> = executor
            .tasks
            .iter()
            .filter(|t| !executor.delivered.contains(*t))
            .cloned()
            .collect();
        for task_id in undelivered {
            self.deliver_task(key, task_id, out);
        }
    }

    /// Sends LAUNCH for a live task the executor does not hold yet, when
    /// it is subscribed, not being killed, and its run's process is
    /// recorded ([`ExecutorRecord::started`]); otherwise the task waits
    /// for the missing one of those.
    pub(super) fn deliver_task(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        task_id: TaskId,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self.executors.get_mut(key) else {
            return;
        };
        let Some(conn) = executor.conn else {
            return;
        };
        if executor.kill_requested.is_some()
            || !executor.started()
            || executor.delivered.contains(&task_id)
        {
            return;
        }
        let Some(task) = self.tasks.get(&(key.0.clone(), task_id.clone())) else {
            return;
        };
        if agora_core::task::is_terminal(task.state) {
            return;
        }
        executor.delivered.insert(task_id);
        out.push(Effect::ToExecutor {
            conn,
            event: launch_event(task.info.clone()),
        });
    }

    /// An executor reports a status; it is queued, then acknowledged to the executor.
    pub fn on_executor_update(
        &mut self,
        now: Duration,
        conn: ExecutorConn,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        status: pb::TaskStatus,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
        else {
            return;
        };
        let Some(task_id) = TaskId::from_field(&status.task_id)
            .ok()
            .filter(|t| executor.tasks.contains(t))
        else {
            tracing::warn!(executor_id = %executor_id, "executor reported a task it does not run");
            return;
        };
        let Some(uuid) = status.uuid.clone().filter(|u| u.len() == 16) else {
            tracing::warn!(executor_id = %executor_id, "executor update without a valid uuid dropped");
            return;
        };
        let retired = !self
            .tasks
            .contains_key(&(framework_id.clone(), task_id.clone()));
        let task_id = status.task_id.clone();
        let mut status = status;
        // Bounded before it is checkpointed, acknowledged or forwarded: the
        // same uuid always yields the same bounded update.
        if let Some(cut) = crate::status_bound::bound_status(&mut status) {
            tracing::warn!(executor_id = %executor_id, task_id = ?status.task_id.as_ref().map(|t| t.value.as_str()), cut = %cut, "oversized status update from an executor cut down");
        }
        status.source = Some(pb::task_status::Source::Executor as i32);
        status.executor_id = executor_id.to_field();
        if retired {
            // The task's final update was delivered already (the executor
            // missed our ack, e.g. across an agent restart): it may forget it.
            tracing::debug!(executor_id = %executor_id, "update for a retired task acknowledged");
        }
        if retired || self.enqueue(now, framework_id, status, out) {
            out.push(Effect::ToExecutor {
                conn,
                event: exec::Event {
                    r#type: exec::event::Type::Acknowledged as i32,
                    acknowledged: Some(exec::event::Acknowledged { task_id, uuid }),
                    ..Default::default()
                },
            });
        }
    }

    /// A framework's message for one of its executors (Mesos'
    /// `FrameworkToExecutorMessage`): best effort and unacknowledged, so it
    /// goes out as a MESSAGE event only on the executor's live stream and is
    /// dropped otherwise (not subscribed, or shutting down), as in Mesos.
    pub fn on_framework_message(
        &self,
        message: master_message::FrameworkMessage,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(executor_id)) = (
            FrameworkId::from_field(&message.framework_id),
            ExecutorId::from_field(&message.executor_id),
        ) else {
            tracing::warn!("framework message with an invalid framework or executor id dropped");
            return;
        };
        let Some(executor) = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
        else {
            tracing::info!(framework_id = %framework_id, executor_id = %executor_id, "framework message for an unknown executor dropped");
            return;
        };
        let Some(conn) = executor.conn.filter(|_| executor.kill_requested.is_none()) else {
            tracing::info!(framework_id = %framework_id, executor_id = %executor_id, "framework message for an executor that is not running dropped");
            return;
        };
        let event = exec::Event {
            r#type: exec::event::Type::Message as i32,
            message: Some(exec::event::Message { data: message.data }),
            ..Default::default()
        };
        // The master bounds what it forwards, and the event is smaller than
        // that; checked anyway, since an event the executor cannot decode
        // would end its stream.
        let size = prost::Message::encoded_len(&event);
        if size > agora_net::MAX_MESSAGE_BYTES {
            tracing::warn!(framework_id = %framework_id, executor_id = %executor_id, size, limit = agora_net::MAX_MESSAGE_BYTES, "framework message too large for an executor dropped");
            return;
        }
        out.push(Effect::ToExecutor { conn, event });
    }

    /// An executor's message for its scheduler (Mesos'
    /// `ExecutorToFrameworkMessage`): best effort and unacknowledged, passed
    /// to the master, which sends the framework a MESSAGE event. Dropped
    /// when it does not come from the executor's live stream, or while no
    /// master is there to take it; refused when the master's message or
    /// the framework's event would exceed the gRPC message size (either
    /// peer would fail to decode it and lose its stream).
    pub fn on_executor_message(
        &self,
        conn: ExecutorConn,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        data: Vec<u8>,
        out: &mut Vec<Effect>,
    ) {
        let live = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
            .is_some_and(|e| e.conn == Some(conn));
        if !live {
            tracing::debug!(executor_id = %executor_id, "message from a stale executor stream dropped");
            return;
        }
        let Some(agent_id) = self.agent_id.as_ref().filter(|_| self.registered) else {
            tracing::info!(framework_id = %framework_id, executor_id = %executor_id, "executor message dropped: not registered with a master");
            return;
        };
        // What the master will make of it, measured here so that an
        // oversized message is refused where it enters, with a reason.
        let event = agora_proto::v1::scheduler::Event {
            r#type: agora_proto::v1::scheduler::event::Type::Message as i32,
            message: Some(agora_proto::v1::scheduler::event::Message {
                agent_id: agent_id.to_field(),
                executor_id: executor_id.to_field(),
                data,
            }),
            ..Default::default()
        };
        let event_size = prost::Message::encoded_len(&event);
        let data = event.message.map(|m| m.data).unwrap_or_default();
        let message = AgentMessage {
            kind: Some(agent_message::Kind::ExecutorMessage(
                agent_message::ExecutorMessage {
                    framework_id: framework_id.to_field(),
                    executor_id: executor_id.to_field(),
                    data,
                },
            )),
        };
        let size = prost::Message::encoded_len(&message).max(event_size);
        if size > agora_net::MAX_MESSAGE_BYTES {
            tracing::warn!(framework_id = %framework_id, executor_id = %executor_id, size, limit = agora_net::MAX_MESSAGE_BYTES, "executor message too large for its scheduler refused");
            return;
        }
        out.push(Effect::ToMaster(message));
    }

    /// An executor's stream ended (it may reconnect).
    pub fn on_executor_disconnected(&mut self, conn: ExecutorConn) {
        for executor in self.executors.values_mut() {
            if executor.conn == Some(conn) {
                executor.conn = None;
            }
        }
    }

    /// The executor process exited. A task it left non-terminal failed with it.
    pub fn on_executor_exited(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        description: String,
        limitation: Option<pb::task_status::Reason>,
        out: &mut Vec<Effect>,
    ) {
        let killed = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
            .is_some_and(|e| e.kill_requested.is_some());
        let (state, reason, message) = match limitation {
            Some(reason) => (pb::TaskState::TaskFailed, reason, description),
            None if killed => (
                pb::TaskState::TaskKilled,
                pb::task_status::Reason::ExecutorTerminated,
                format!("executor exited before the task ended: {description}"),
            ),
            None => (
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ExecutorTerminated,
                format!("executor exited before the task ended: {description}"),
            ),
        };
        self.executor_gone(now, framework_id, executor_id, state, reason, message, out);
    }

    /// Kills an executor's process and drops it; its non-terminal tasks end in `state`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn destroy_executor(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::DestroyExecutor {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
        });
        self.executor_gone(now, framework_id, executor_id, state, reason, message, out);
    }

    /// Drops an executor; a task it left non-terminal ends in `state`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn executor_gone(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self
            .executors
            .remove(&(framework_id.clone(), executor_id.clone()))
        else {
            return;
        };
        for task_id in &executor.tasks {
            let live = self
                .tasks
                .get(&(framework_id.clone(), task_id.clone()))
                .is_some_and(|t| !agora_core::task::is_terminal(t.state));
            if live {
                self.agent_update(
                    now,
                    framework_id,
                    task_id,
                    state,
                    reason,
                    message.clone(),
                    out,
                );
            }
        }
        self.executor_removed(framework_id, executor_id, out);
    }
}
