//! Kills and shutdowns asked by the master: of a task, an executor, a
//! whole framework.

use std::time::Duration;

use agora_core::{ExecutorId, FrameworkId, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::master_message;
use agora_proto::v1::executor as exec;

use super::{AgentState, EXECUTOR_SHUTDOWN_GRACE, Effect, KillOrder, kill_event};

impl AgentState {
    pub fn on_kill_task(
        &mut self,
        now: Duration,
        kill: master_message::KillTask,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&kill.framework_id),
            TaskId::from_field(&kill.task_id),
        ) else {
            return;
        };
        let Some(task) = self.tasks.get(&(framework_id.clone(), task_id.clone())) else {
            tracing::info!(task_id = %task_id, "kill for a task this agent does not run");
            return;
        };
        if agora_core::task::is_terminal(task.state) {
            return;
        }
        let executor_key = (framework_id.clone(), task.executor_id.clone());
        let order = KillOrder {
            policy: kill.kill_policy,
            message: kill.message,
        };
        self.kill_task(now, &executor_key, &task_id, order, out);
    }

    /// The framework's SHUTDOWN: the executor and all its tasks go.
    pub fn on_shutdown_executor(
        &mut self,
        now: Duration,
        shutdown: master_message::ShutdownExecutor,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(executor_id)) = (
            FrameworkId::from_field(&shutdown.framework_id),
            ExecutorId::from_field(&shutdown.executor_id),
        ) else {
            return;
        };
        let key = (framework_id, executor_id);
        if !self.executors.contains_key(&key) {
            tracing::info!(executor_id = %key.1, "shutdown for an executor this agent does not run");
            return;
        }
        let order = KillOrder {
            policy: None,
            message: Some("the framework shut its executor down".into()),
        };
        self.kill_executor(now, &key, order, out);
    }

    /// Kills one task. The command executor goes with its task; a custom
    /// executor is asked to kill it, or, when it does not hold the task yet,
    /// the task is reported killed here.
    pub(super) fn kill_task(
        &mut self,
        now: Duration,
        executor_key: &(FrameworkId, ExecutorId),
        task_id: &TaskId,
        order: KillOrder,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self.executors.get_mut(executor_key) else {
            return;
        };
        if executor.info.is_none() {
            self.kill_executor(now, executor_key, order, out);
            return;
        }
        match executor.conn {
            Some(conn) if executor.delivered.contains(task_id) => out.push(Effect::ToExecutor {
                conn,
                event: kill_event(task_id, order),
            }),
            _ => {
                let (framework_id, _) = executor_key.clone();
                self.agent_update(
                    now,
                    &framework_id,
                    task_id,
                    pb::TaskState::TaskKilled,
                    pb::task_status::Reason::TaskKilledDuringLaunch,
                    "killed before it was delivered to its executor".into(),
                    out,
                );
                out.push(Effect::UpdateContainer {
                    framework_id,
                    executor_id: executor_key.1.clone(),
                });
            }
        }
    }

    /// Stops a whole executor. The command executor is asked to kill its
    /// task (or destroyed when it never got it); a custom executor is sent
    /// SHUTDOWN and destroyed after its grace period.
    pub(super) fn kill_executor(
        &mut self,
        now: Duration,
        executor_key: &(FrameworkId, ExecutorId),
        order: KillOrder,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self.executors.get_mut(executor_key) else {
            return;
        };
        if executor.kill_requested.is_some() {
            return;
        }
        executor.kill_requested = Some(order.clone());
        let launched = executor.delivered.contains(&executor.task_id);
        match (executor.conn, executor.info.is_some(), launched) {
            (Some(conn), true, _) => {
                let grace = executor
                    .info
                    .as_ref()
                    .and_then(|i| i.shutdown_grace_period)
                    .and_then(|g| u64::try_from(g.nanoseconds).ok())
                    .map(Duration::from_nanos)
                    .unwrap_or(EXECUTOR_SHUTDOWN_GRACE);
                executor.shutdown_deadline = Some(now + grace);
                out.push(Effect::ToExecutor {
                    conn,
                    event: exec::Event {
                        r#type: exec::event::Type::Shutdown as i32,
                        ..Default::default()
                    },
                });
            }
            (Some(conn), false, true) => out.push(Effect::ToExecutor {
                conn,
                event: kill_event(&executor.task_id, order),
            }),
            _ => {
                // Nothing started the tasks: no process to signal but the executor's.
                let (framework_id, executor_id) = executor_key.clone();
                self.destroy_executor(
                    now,
                    &framework_id,
                    &executor_id,
                    pb::TaskState::TaskKilled,
                    pb::task_status::Reason::TaskKilledDuringLaunch,
                    "killed before it started".into(),
                    out,
                );
            }
        }
    }

    /// The framework was removed: kill its tasks and drop its undelivered updates.
    pub fn on_shutdown_framework(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        out: &mut Vec<Effect>,
    ) {
        let executors: Vec<_> = self
            .executors
            .keys()
            .filter(|(f, _)| f == framework_id)
            .cloned()
            .collect();
        for key in executors {
            let order = KillOrder {
                policy: None,
                message: Some("killed: its framework was removed".into()),
            };
            self.kill_executor(now, &key, order, out);
        }
        let keys: Vec<_> = self
            .tasks
            .keys()
            .filter(|(f, _)| f == framework_id)
            .cloned()
            .collect();
        for key in keys {
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            // Nobody will acknowledge these any more.
            task.pending.clear();
            task.next_retry = None;
            if agora_core::task::is_terminal(task.state) {
                self.retire(&key, out);
            } else {
                self.checkpoint_updates(&key, out);
            }
        }
    }
}
