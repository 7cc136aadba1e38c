//! A restarted agent's books rebuilt from its checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_core::{AgentId, ExecutorId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;

use crate::checkpoint::Recovered;

use super::{
    AgentState, EXECUTOR_REREGISTER_TIMEOUT, Effect, ExecutorRecord, TaskRecord, retry_backoff,
};

impl AgentState {
    /// Restores what a previous run of the agent checkpointed (same boot).
    /// Executors get [`EXECUTOR_REREGISTER_TIMEOUT`] to re-subscribe; the
    /// shell reports those whose process is gone through
    /// [`Self::on_executor_exited`]. Executors whose process was never
    /// recorded are launched again (their tasks never reached them).
    /// Tasks left without an executor fail. Their undelivered updates go
    /// out once the master accepts us.
    pub fn recover(&mut self, now: Duration, recovered: Recovered, out: &mut Vec<Effect>) {
        self.agent_id = recovered.agent_id;
        for framework in recovered.frameworks {
            if let Ok(id) = FrameworkId::from_field(&framework.id) {
                self.frameworks.insert(id, framework);
            }
        }
        // Records whose resources cannot be read: their containers cannot
        // be sized, so their executors are destroyed and their tasks failed
        // with the reason, never run on as if they held nothing.
        let mut unreadable: BTreeMap<(FrameworkId, ExecutorId), String> = BTreeMap::new();
        for task in recovered.tasks {
            let Ok(task_id) = TaskId::from_field(&task.info.task_id) else {
                continue;
            };
            let resources = match Resources::from_proto(&task.info.resources) {
                Ok(resources) => resources,
                Err(e) => {
                    unreadable
                        .entry((task.framework_id.clone(), task.executor_id.clone()))
                        .or_insert_with(|| {
                            format!(
                                "the checkpointed resources of task {task_id} cannot be parsed: {e}"
                            )
                        });
                    Resources::default()
                }
            };
            self.frameworks
                .entry(task.framework_id.clone())
                .or_insert_with(|| pb::FrameworkInfo {
                    id: task.framework_id.to_field(),
                    ..Default::default()
                });
            self.tasks.insert(
                (task.framework_id.clone(), task_id),
                TaskRecord {
                    info: task.info,
                    framework_id: task.framework_id,
                    executor_id: task.executor_id,
                    resources,
                    state: task.state,
                    pending: task.pending.into(),
                    received: task.received.into(),
                    next_retry: None,
                    backoff: retry_backoff(),
                },
            );
        }
        // Each executor's tasks, gathered in one pass (a scan of every task
        // per executor was quadratic: 10^8 comparisons at 10,000 executors).
        let mut tasks_of: BTreeMap<(FrameworkId, ExecutorId), BTreeSet<TaskId>> = BTreeMap::new();
        for ((framework_id, task_id), task) in &self.tasks {
            tasks_of
                .entry((framework_id.clone(), task.executor_id.clone()))
                .or_default()
                .insert(task_id.clone());
        }
        for executor in recovered.executors {
            let mut tasks = tasks_of
                .remove(&(executor.framework_id.clone(), executor.executor_id.clone()))
                .unwrap_or_default();
            tasks.insert(executor.task_id.clone());
            let key = (executor.framework_id.clone(), executor.executor_id.clone());
            let resources = match executor
                .info
                .as_ref()
                .map(|i| Resources::from_proto(&i.resources))
                .transpose()
            {
                Ok(resources) => resources.unwrap_or_default(),
                Err(e) => {
                    unreadable.entry(key.clone()).or_insert_with(|| {
                        format!(
                            "the checkpointed resources of executor {} cannot be parsed: {e}",
                            executor.executor_id
                        )
                    });
                    Resources::default()
                }
            };
            self.executors.insert(
                (executor.framework_id.clone(), executor.executor_id.clone()),
                ExecutorRecord {
                    framework_id: executor.framework_id,
                    executor_id: executor.executor_id,
                    task_id: executor.task_id,
                    info: executor.info,
                    resources,
                    tasks,
                    delivered: BTreeSet::new(),
                    conn: None,
                    kill_requested: None,
                    shutdown_deadline: None,
                    run: executor.run,
                    reregister_deadline: Some(now + EXECUTOR_REREGISTER_TIMEOUT),
                },
            );
        }
        for ((framework_id, executor_id), message) in unreadable {
            tracing::error!(
                framework_id = %framework_id,
                executor_id = %executor_id,
                reason = %message,
                "unreadable checkpoint record; destroying its executor"
            );
            if self
                .executors
                .contains_key(&(framework_id.clone(), executor_id.clone()))
            {
                self.destroy_executor(
                    now,
                    &framework_id,
                    &executor_id,
                    pb::TaskState::TaskFailed,
                    pb::task_status::Reason::ExecutorTerminated,
                    message,
                    out,
                );
                continue;
            }
            // No executor record: fail its live tasks here with the reason
            // (the orphan pass below would give a vaguer one).
            let live: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|((f, _), t)| {
                    f == &framework_id
                        && t.executor_id == executor_id
                        && !agora_core::task::is_terminal(t.state)
                })
                .map(|((_, t), _)| t.clone())
                .collect();
            for task_id in live {
                self.agent_update(
                    now,
                    &framework_id,
                    &task_id,
                    pb::TaskState::TaskFailed,
                    pb::task_status::Reason::ExecutorTerminated,
                    message.clone(),
                    out,
                );
            }
        }
        let orphans: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| !agora_core::task::is_terminal(t.state))
            .filter(|(k, t)| {
                !self
                    .executors
                    .contains_key(&(k.0.clone(), t.executor_id.clone()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (framework_id, task_id) in orphans {
            self.agent_update(
                now,
                &framework_id,
                &task_id,
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ExecutorTerminated,
                "the task's executor was lost while the agent was down".into(),
                out,
            );
        }
        self.relaunch_unstarted(out);
        let unused: Vec<_> = self.frameworks.keys().cloned().collect();
        for framework_id in unused {
            self.forget_framework_if_unused(&framework_id, out);
        }
        tracing::info!(
            agent_id = ?self.agent_id.as_ref().map(AgentId::as_str),
            frameworks = self.frameworks.len(),
            executors = self.executors.len(),
            tasks = self.tasks.len(),
            pending_updates = self.tasks.values().map(|t| t.pending.len()).sum::<usize>(),
            "recovered from the checkpoint"
        );
    }

    /// Executors whose run's process was never recorded: the agent stopped
    /// while launching them. None of their tasks was delivered (tasks go
    /// only to a recorded process), so none ran: they are launched again
    /// as new runs (each recorded before it starts), never failed for a
    /// crash of ours. The shell destroys what the unrecorded run left
    /// (found by its id).
    fn relaunch_unstarted(&mut self, out: &mut Vec<Effect>) {
        let mut unstarted = Vec::new();
        for (key, executor) in &mut self.executors {
            if executor.started() {
                continue;
            }
            executor.run = None;
            let live = executor.tasks.iter().any(|t| {
                self.tasks
                    .get(&(key.0.clone(), t.clone()))
                    .is_some_and(|r| !agora_core::task::is_terminal(r.state))
            });
            if live {
                executor.reregister_deadline = None;
                unstarted.push(key.clone());
            }
        }
        for (framework_id, executor_id) in unstarted {
            tracing::info!(
                framework_id = %framework_id,
                executor_id = %executor_id,
                "launching again an executor the agent stopped while starting"
            );
            let run = self.new_run(&framework_id, &executor_id);
            let Some(executor) = self
                .executors
                .get_mut(&(framework_id.clone(), executor_id.clone()))
            else {
                continue;
            };
            executor.run = Some(run);
            out.push(Effect::Checkpoint(executor.record()));
            out.push(Effect::LaunchExecutor {
                framework_id,
                executor_id,
            });
        }
    }
}
