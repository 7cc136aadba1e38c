//! The actor's side of starting an executor: it gathers what a launch
//! needs without I/O, hands it to a worker (`launching.rs`), and adopts or
//! destroys what the worker reports (see `launching.rs` for the
//! invariants).

use std::time::SystemTime;

use agora_core::{ExecutorId, FrameworkId};
use tokio::sync::mpsc;

use super::Actor;
use crate::checkpoint::ExecutorRun;
use crate::launch::{self, LaunchConfig};
use crate::shell::command::AgentCommand;
use crate::shell::launching::{
    LaunchId, LaunchJob, LaunchOutcome, Running, Started, destroy_started,
};
use crate::shell::processes::{ExecutorProcess, ProcessRef};
use agora_isolation::Container;

/// Runs `job` on a worker and reports it to the loop; destroys what it
/// started when the loop is gone.
fn spawn_launch(job: LaunchJob, commands: mpsc::Sender<AgentCommand>) {
    tokio::task::spawn_blocking(move || {
        let id = job.id.clone();
        if commands.is_closed() {
            return; // the agent is shutting down: nothing is started
        }
        let outcome = job.run();
        let done = AgentCommand::ExecutorLaunched { id, outcome };
        if let Err(mpsc::error::SendError(AgentCommand::ExecutorLaunched { id, outcome })) =
            commands.blocking_send(done)
            && let Ok(started) = outcome
        {
            tracing::info!(executor_id = %id.key.1, "agent stopping: destroying an executor it had just started");
            destroy_started(&id.key.1, started);
        }
    });
}

impl Actor {
    /// Starts the executor's current run, recorded (with no process) in
    /// the batch whose records are now on disk: its container and process
    /// are created on a worker. `record_failed`: the run could not be
    /// recorded, so it is not started (a crash would leave what it created
    /// unfound): the launch fails.
    pub(in crate::shell) fn launch_executor(
        &mut self,
        key: (FrameworkId, ExecutorId),
        record_failed: bool,
    ) {
        let Some(run) = self
            .state
            .executors
            .get(&key)
            .and_then(|e| e.run.clone())
            .filter(|r| r.pid.is_none())
        else {
            return;
        };
        self.sandboxes.insert(key.clone(), run.sandbox.clone());
        crate::test_faults::exit_if_asked(crate::test_faults::ExitPoint::BeforeExecutorStart);
        if record_failed {
            self.executor_launch_failed(
                &key,
                "the executor's run could not be recorded in the agent's checkpoint".into(),
            );
            return;
        }
        self.next_launch += 1;
        let resources = self.state.container_resources(&key.0, &key.1);
        let id = LaunchId {
            key,
            seq: self.next_launch,
            run_id: run.run_id,
            sandbox: run.sandbox,
            resources,
        };
        let agent_id = self
            .state
            .agent_id
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        match self.launch_job(id.clone(), agent_id) {
            Ok(job) => {
                self.launches.insert(id.key.clone(), id.seq);
                spawn_launch(job, self.commands.clone());
            }
            Err(message) => self.executor_launch_failed(&id.key, message),
        }
    }

    /// What a launch needs, from the state machine and the options: which
    /// user (looked up later), the executor's command, the container.
    pub(in crate::shell) fn launch_job(
        &self,
        id: LaunchId,
        agent_id: String,
    ) -> Result<LaunchJob, String> {
        let key = &id.key;
        let executor = self
            .state
            .executors
            .get(key)
            .ok_or("the executor is gone")?;
        let command_user = match &executor.info {
            Some(info) => info.command.as_ref().and_then(|c| c.user.clone()),
            None => self
                .state
                .tasks
                .get(&(key.0.clone(), executor.task_id.clone()))
                .and_then(|t| t.info.command.as_ref())
                .and_then(|c| c.user.clone()),
        };
        let framework_user = self
            .state
            .frameworks
            .get(&key.0)
            .map(|f| f.user.clone())
            .unwrap_or_default();
        let options = &self.options.containers;
        let user = launch::task_user_name(
            options.switch_user,
            rustix::process::geteuid().is_root(),
            command_user.as_deref(),
            &framework_user,
        );
        let mut config = LaunchConfig {
            cgroups: None,
            fetcher: options.fetcher.clone(),
            user: None,
            environment: options.executor_environment.clone(),
            disk_check_interval_secs: self
                .containers
                .checks_disk()
                .then_some(options.disk_watch_interval_secs),
            custom_command: None,
        };
        if let Some(info) = &executor.info {
            config.set_custom_command(&info.command.clone().unwrap_or_default());
        }
        // Command executors run in the supervisor; a framework's own
        // executor is its own program, in a process of its own.
        let hosted = options.hosted_executors && executor.info.is_none();
        let token = crate::executor_auth::mint(&self.token_key, &key.0, &key.1, &id.run_id);
        Ok(LaunchJob {
            token,
            container: self.containers.create_job(&id.resources),
            id,
            user,
            config,
            program: self.options.executor_program.clone(),
            endpoint: crate::executor::agent_endpoint(
                self.options.advertise,
                self.options.tls.serves_tls(),
            ),
            agent_id,
            tls_env: crate::executor::tls_environment(&self.options.tls),
            local: self.executor_connections.clone(),
            hosted,
        })
    }

    /// A worker finished a launch. A stale one (its executor was killed
    /// meanwhile, and its tasks already reported) is destroyed silently.
    pub(in crate::shell) fn executor_launch_finished(
        &mut self,
        id: LaunchId,
        outcome: LaunchOutcome,
    ) {
        let current = self.launches.get(&id.key) == Some(&id.seq)
            && self.state.executors.contains_key(&id.key);
        if self.launches.get(&id.key) == Some(&id.seq) {
            self.launches.remove(&id.key);
        }
        let started = match outcome {
            Ok(started) => started,
            Err(message) if current => {
                self.executor_launch_failed(&id.key, message);
                return;
            }
            Err(message) => {
                tracing::debug!(executor_id = %id.key.1, error = %message, "a given-up launch failed");
                self.gc.schedule(id.sandbox, SystemTime::now());
                return;
            }
        };
        if !current {
            tracing::info!(executor_id = %id.key.1, "executor started after it was killed: destroying it");
            self.gc.schedule(id.sandbox, SystemTime::now());
            let executor_id = id.key.1;
            tokio::task::spawn_blocking(move || destroy_started(&executor_id, started));
            return;
        }
        let Started { running, container } = started;
        let (mut child, process) = match running {
            Running::Process {
                child,
                process,
                start_gate,
            } => {
                // Opened once the run is recorded with this process
                // (`Effect::ExecutorRecorded`).
                if let Some(gate) = start_gate {
                    self.start_gates.insert(id.key.clone(), gate);
                }
                (child, process)
            }
            Running::Hosted(host) => {
                self.host_executor(id, host, container);
                return;
            }
        };
        tracing::debug!(executor_id = %id.key.1, sandbox = %id.sandbox.display(), "executor started");
        let key = id.key.clone();
        self.adopt_run(id, container, ExecutorProcess::Own(process), process);
        let commands = self.commands.clone();
        let (framework_id, executor_id) = key;
        tokio::spawn(async move {
            let description = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = commands
                .send(AgentCommand::ExecutorExited {
                    framework_id,
                    executor_id,
                    description,
                })
                .await;
        });
    }

    /// A started run becomes the state machine's: its container adopted
    /// (and resized if its tasks changed while it started), what runs it
    /// recorded, and the run checkpointed with `process` (the executor's
    /// own, or its supervisor's).
    pub(in crate::shell) fn adopt_run(
        &mut self,
        id: LaunchId,
        container: Container,
        running: ExecutorProcess,
        process: ProcessRef,
    ) {
        crate::test_faults::exit_if_asked(crate::test_faults::ExitPoint::BeforeExecutorRecorded);
        self.containers.adopt(id.key.clone(), container);
        // Tasks given to (or killed in) a custom executor while it started
        // changed what its container must hold.
        let resources = self.state.container_resources(&id.key.0, &id.key.1);
        if resources != id.resources {
            self.update_container(&id.key, &resources);
        }
        let hosted = matches!(running, ExecutorProcess::Hosted { .. });
        self.processes.insert(id.key.clone(), running);
        let mut out = Vec::new();
        self.state.on_executor_launched(
            &id.key.0,
            &id.key.1,
            ExecutorRun {
                run_id: id.run_id,
                sandbox: id.sandbox,
                pid: Some(process.pid),
                start_time: process.start_time.unwrap_or(0),
                hosted,
            },
            &mut out,
        );
        self.execute(out);
    }

    /// The executor could not be started: its tasks fail.
    pub(in crate::shell) fn executor_launch_failed(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        message: String,
    ) {
        tracing::warn!(executor_id = %key.1, error = %message, "cannot start executor");
        self.destroy_later(key, None);
        self.schedule_gc(key);
        let mut out = Vec::new();
        let now = self.now();
        self.state
            .on_executor_launch_failed(now, &key.0, &key.1, message, &mut out);
        self.execute(out);
    }
}
