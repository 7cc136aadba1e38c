//! Tasks arriving from the master: a task is queued for its executor, which
//! is launched when it is not running yet; a launch's outcome.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use agora_core::{ExecutorId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::master_message;

use crate::checkpoint::{Checkpoint, ExecutorRun};

use super::{AgentState, Effect, ExecutorRecord, TaskRecord, retry_backoff};

impl AgentState {
    /// The master asks us to run a task.
    pub fn on_run_task(
        &mut self,
        now: Duration,
        run: master_message::RunTask,
        out: &mut Vec<Effect>,
    ) {
        let (Some(framework), Some(task)) = (run.framework, run.task) else {
            tracing::warn!("run task without framework or task ignored");
            return;
        };
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&framework.id),
            TaskId::from_field(&task.task_id),
        ) else {
            tracing::warn!("run task with invalid ids ignored");
            return;
        };
        let key = (framework_id.clone(), task_id.clone());
        if self.tasks.contains_key(&key) {
            tracing::warn!(task_id = %task_id, "duplicate run task ignored");
            return;
        }
        let custom = task.executor.clone();
        let executor_id = match &custom {
            Some(info) => match ExecutorId::from_field(&info.executor_id) {
                Ok(id) => id,
                Err(_) => {
                    tracing::warn!(task_id = %task_id, "run task with an invalid executor id ignored");
                    return;
                }
            },
            None => ExecutorId::new(task_id.as_str()),
        };
        if self.frameworks.get(&framework_id) != Some(&framework) {
            out.push(Effect::Checkpoint(Checkpoint::Framework(framework.clone())));
            self.frameworks.insert(framework_id.clone(), framework);
        }
        let executor_key = (framework_id.clone(), executor_id.clone());
        // A task joins a running custom executor of the same id; it cannot
        // join a command executor, nor one that is shutting down.
        let existing = self
            .executors
            .get(&executor_key)
            .map(|e| e.info.is_some() && custom.is_some() && e.kill_requested.is_none());
        // Resources are parsed here, at the edge, once: a task whose
        // resources (or whose new executor's) cannot be read is an error,
        // never a task run with "nothing" as its limits.
        let parsed = Resources::from_proto(&task.resources)
            .map_err(|e| format!("task resources cannot be parsed: {e}"))
            .and_then(|resources| {
                let executor = match (&custom, existing) {
                    (Some(info), None) => Resources::from_proto(&info.resources)
                        .map_err(|e| format!("executor resources cannot be parsed: {e}"))?,
                    _ => Resources::default(),
                };
                Ok((resources, executor))
            });
        let (resources, executor_resources, invalid) = match parsed {
            Ok((task, executor)) => (task, executor, None),
            Err(message) => (Resources::default(), Resources::default(), Some(message)),
        };
        let refusal = match existing {
            _ if invalid.is_some() => Some((
                pb::TaskState::TaskError,
                pb::task_status::Reason::TaskInvalid,
                invalid.unwrap_or_default(),
            )),
            Some(false) => Some((
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::TaskInvalid,
                format!(
                    "executor {executor_id} cannot take this task: it is a command executor, or shutting down"
                ),
            )),
            _ if self.disk_full => Some((
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ContainerLaunchFailed,
                "agent disk full: the agent's work dir has no space left for a sandbox".to_string(),
            )),
            _ => None,
        };
        // A new executor's run is drawn and recorded with it, in the batch
        // that records the task, before anything of the run is created.
        let new_run = (existing.is_none() && refusal.is_none())
            .then(|| self.new_run(&framework_id, &executor_id));
        if let Some(run) = &new_run {
            out.push(Effect::Checkpoint(Checkpoint::Executor {
                framework_id: framework_id.clone(),
                executor_id: executor_id.clone(),
                task_id: task_id.clone(),
                info: custom.clone(),
                run: Some(run.clone()),
            }));
        }
        out.push(Effect::Checkpoint(Checkpoint::Task {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            info: task.clone(),
        }));
        self.tasks.insert(
            key,
            TaskRecord {
                info: task.clone(),
                framework_id: framework_id.clone(),
                executor_id: executor_id.clone(),
                resources,
                state: pb::TaskState::TaskStaging,
                pending: VecDeque::new(),
                received: VecDeque::new(),
                next_retry: None,
                backoff: retry_backoff(),
            },
        );
        if let Some((state, reason, message)) = refusal {
            tracing::warn!(task_id = %task_id, reason = %message, "task refused");
            self.agent_update(now, &framework_id, &task_id, state, reason, message, out);
            return;
        }
        match existing {
            Some(false) => {} // refused above
            Some(true) => {
                let Some(executor) = self.executors.get_mut(&executor_key) else {
                    return;
                };
                executor.tasks.insert(task_id.clone());
                // Now if it can take it; otherwise when it subscribes, or
                // when its run's process is recorded.
                self.deliver_task(&executor_key, task_id, out);
                out.push(Effect::UpdateContainer {
                    framework_id,
                    executor_id,
                });
            }
            None => {
                self.executors.insert(
                    executor_key,
                    ExecutorRecord {
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        task_id: task_id.clone(),
                        info: custom,
                        resources: executor_resources,
                        tasks: BTreeSet::from([task_id]),
                        delivered: BTreeSet::new(),
                        conn: None,
                        kill_requested: None,
                        shutdown_deadline: None,
                        run: new_run,
                        reregister_deadline: None,
                    },
                );
                out.push(Effect::LaunchExecutor {
                    framework_id,
                    executor_id,
                });
            }
        }
    }

    /// The resources a container holds: its executor's own (custom
    /// executors) plus those of its live tasks.
    pub fn container_resources(
        &self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) -> Resources {
        let Some(executor) = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
        else {
            return Resources::default();
        };
        let mut total = executor.resources.clone();
        for task_id in &executor.tasks {
            if let Some(task) = self.tasks.get(&(framework_id.clone(), task_id.clone()))
                && !agora_core::task::is_terminal(task.state)
            {
                total.add(&task.resources);
            }
        }
        total
    }

    /// The executor process for a task could not even be started.
    pub fn on_executor_launch_failed(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        self.executor_gone(
            now,
            framework_id,
            executor_id,
            pb::TaskState::TaskFailed,
            pb::task_status::Reason::ContainerLaunchFailed,
            message,
            out,
        );
    }

    /// The shell started the executor's process: the run is recorded with
    /// it, and then (in the same batch, so after the record is on disk) a
    /// custom executor may start its program, and the executor, if it
    /// subscribed meanwhile, gets its tasks.
    pub fn on_executor_launched(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        run: ExecutorRun,
        out: &mut Vec<Effect>,
    ) {
        let key = (framework_id.clone(), executor_id.clone());
        let Some(executor) = self.executors.get_mut(&key) else {
            return;
        };
        if executor.run.as_ref().map(|r| &r.run_id) != Some(&run.run_id) {
            tracing::warn!(executor_id = %executor_id, run_id = %run.run_id, "a run that is not the executor's current one started; ignored");
            return;
        }
        executor.run = Some(run);
        out.push(Effect::Checkpoint(executor.record()));
        out.push(Effect::ExecutorRecorded {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
        });
        self.deliver_tasks(&key, out);
    }
}
