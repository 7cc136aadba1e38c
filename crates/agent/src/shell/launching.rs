//! Starting an executor off the event loop.
//!
//! Everything a launch does that can block (the task user's lookup through
//! NSS, which may wait seconds on LDAP; creating and chowning the sandbox
//! on a hung disk; creating the container's cgroups; spawning the process)
//! runs on a worker. The loop only gathers what the launch needs and later
//! takes the result as an [`AgentCommand::ExecutorLaunched`], so it goes on
//! answering the master's pings meanwhile.
//!
//! *Invariants:*
//! - a launch starts only once the records of its batch (the executor and
//!   its task) are on disk, as before: the `LaunchExecutor` effect waits in
//!   the checkpoint pipeline; the executor's pid is checkpointed when its
//!   result arrives (a crash in between is the known "started, pid not yet
//!   written" case that recovery already handles);
//! - at most one launch per executor is current (`Actor::launches`). A
//!   `DestroyExecutor` (a KILL, a framework shutdown) while it is in flight
//!   makes it stale: the state machine has already reported the tasks, and
//!   when a stale launch's result comes, whatever it started (process,
//!   container) is destroyed without another report;
//! - if the loop is gone (agent shutdown), the worker destroys what it
//!   started itself: nothing is left that no checkpoint accounts for.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use agora_core::{ExecutorId, FrameworkId, Resources};
use agora_isolation::Container;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{Actor, AgentCommand, ProcessRef};
use crate::checkpoint::{self, ExecutorRun};
use crate::containers::CreateJob;
use crate::executor::{
    ENV_AGENT_ENDPOINT, ENV_AGENT_ID, ENV_EXECUTOR_ID, ENV_FRAMEWORK_ID, ENV_SANDBOX, sandbox_path,
};
use crate::executor_auth::ENV_EXECUTOR_TOKEN;
use crate::launch::{self, LaunchConfig};

/// One launch's identity: the executor and which launch of it.
#[derive(Debug, Clone)]
pub(super) struct LaunchId {
    pub key: (FrameworkId, ExecutorId),
    pub seq: u64,
    pub run_id: String,
    pub sandbox: PathBuf,
    /// What the container was sized for when the launch began.
    pub resources: Resources,
}

/// An executor process a worker started, with its container.
pub(super) struct Started {
    child: Child,
    process: ProcessRef,
    container: Container,
}

/// What a worker reports of a launch.
pub(super) type LaunchOutcome = Result<Started, String>;

/// Everything a launch needs, gathered on the loop without I/O.
struct LaunchJob {
    id: LaunchId,
    /// The task user's name, looked up on the worker.
    user: Option<String>,
    config: LaunchConfig,
    container: CreateJob,
    program: PathBuf,
    endpoint: String,
    agent_id: String,
    /// The run's executor token (`executor_auth`).
    token: String,
    /// How the executor verifies the agent (`executor::tls_environment`).
    tls_env: Vec<(&'static str, String)>,
    /// Where the agent's end of the executor's first connection goes to be
    /// served (`executor::local`); `None`: the executor dials the endpoint.
    local: Option<mpsc::UnboundedSender<std::os::unix::net::UnixStream>>,
}

impl LaunchJob {
    /// The blocking part of a launch. A failure after the container exists
    /// destroys it here: the loop only adopts containers of started executors.
    fn run(self) -> LaunchOutcome {
        self.container.before();
        let LaunchJob {
            id,
            user,
            mut config,
            container,
            program,
            endpoint,
            agent_id,
            token,
            tls_env,
            local,
        } = self;
        config.user = user
            .map(|name| launch::lookup_user(&name))
            .transpose()
            .map_err(|e| format!("cannot run the task: {e}"))?;
        prepare_sandbox(&id.sandbox, &config)?;
        let (container, cgroups) = container
            .run(&id.run_id)
            .map_err(|e| format!("cannot create the container: {e}"))?;
        config.cgroups = cgroups;
        // The executor's first connection: a socket pair, its end as the
        // executor's standard input. Without one (no server, or no pair
        // to be had) it dials the endpoint, as after an agent restart.
        let pair = local.as_ref().and_then(|_| {
            std::os::unix::net::UnixStream::pair()
                .inspect_err(
                    |e| tracing::warn!(error = %e, "cannot make a socket pair for an executor"),
                )
                .ok()
        });
        let (ours, stdin, connection) = match pair {
            Some((ours, theirs)) => (
                Some(ours),
                std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)),
                crate::executor::local::FROM_STDIN,
            ),
            None => (None, std::process::Stdio::null(), ""),
        };
        let spawned = open_log(&id.sandbox).and_then(|(out, err)| {
            Command::new(&program)
                .arg("executor")
                .env(crate::executor::local::ENV_AGENT_CONNECTION, connection)
                .env(ENV_AGENT_ENDPOINT, endpoint)
                .env(ENV_FRAMEWORK_ID, id.key.0.as_str())
                .env(ENV_EXECUTOR_ID, id.key.1.as_str())
                .env(ENV_AGENT_ID, agent_id)
                .env(ENV_EXECUTOR_TOKEN, token)
                .env(ENV_SANDBOX, &id.sandbox)
                .env(launch::ENV_LAUNCH, config.to_json())
                .envs(tls_env)
                .current_dir(&id.sandbox)
                .stdin(stdin)
                .stdout(out)
                .stderr(err)
                .kill_on_drop(false)
                .spawn()
                .map_err(|e| format!("cannot start the executor: {e}"))
        });
        let child = match spawned {
            Ok(child) => child,
            Err(message) => {
                if let Err(e) = container.destroy() {
                    tracing::warn!(executor_id = %id.key.1, error = %e, "cannot destroy the container");
                }
                return Err(message);
            }
        };
        if let (Some(ours), Some(local)) = (ours, local)
            && local.send(ours).is_err()
        {
            tracing::debug!(executor_id = %id.key.1, "agent stopping: the executor will dial the endpoint");
        }
        let Some(pid) = child.id() else {
            // Only a child already waited for has no pid; ours is not.
            return Err("the executor exited before it could be watched".into());
        };
        // Our child is not reaped before we wait for it, so its start time
        // is readable now.
        let start_time = checkpoint::process_start_time(pid);
        Ok(Started {
            child,
            process: ProcessRef { pid, start_time },
            container,
        })
    }
}

/// The sandbox, owned by the task user.
fn prepare_sandbox(sandbox: &Path, config: &LaunchConfig) -> Result<(), String> {
    std::fs::create_dir_all(sandbox)
        .map_err(|e| format!("cannot create the sandbox {}: {e}", sandbox.display()))?;
    if let Some(user) = &config.user {
        std::os::unix::fs::chown(sandbox, Some(user.uid), Some(user.gid))
            .map_err(|e| format!("cannot give the sandbox to user '{}': {e}", user.name))?;
    }
    Ok(())
}

/// The executor's stdout and stderr: `executor.log` in its sandbox.
fn open_log(sandbox: &Path) -> Result<(File, File), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sandbox.join("executor.log"))
        .map_err(|e| format!("cannot open the executor log: {e}"))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot open the executor log: {e}"))?;
    Ok((log, err))
}

/// Kills a started executor nobody will account for and destroys its
/// container (blocking), then reaps it.
fn destroy_started(executor_id: &ExecutorId, started: Started) {
    let Started {
        mut child,
        process,
        container,
    } = started;
    process.kill();
    if let Err(e) = container.destroy() {
        tracing::warn!(executor_id = %executor_id, error = %e, "cannot destroy the container");
    }
    if let Err(e) = child.start_kill() {
        tracing::debug!(executor_id = %executor_id, error = %e, "executor already gone");
    }
    // Dropped unwaited: tokio reaps it in the background, so no zombie stays.
    drop(child);
}

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
    /// Starts `agora executor` for an executor, on a worker.
    pub(super) fn launch_executor(&mut self, framework_id: FrameworkId, executor_id: ExecutorId) {
        let agent_id = self
            .state
            .agent_id
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let run_id = uuid::Uuid::new_v4().to_string();
        let sandbox = sandbox_path(
            &self.options.work_dir,
            &agent_id,
            framework_id.as_str(),
            executor_id.as_str(),
            &run_id,
        );
        let key = (framework_id, executor_id);
        self.sandboxes.insert(key.clone(), sandbox.clone());
        self.next_launch += 1;
        let resources = self.state.container_resources(&key.0, &key.1);
        let id = LaunchId {
            key,
            seq: self.next_launch,
            run_id,
            sandbox,
            resources,
        };
        match self.launch_job(id.clone(), agent_id) {
            Ok(job) => {
                self.launches.insert(id.key.clone(), id.seq);
                self.launching_runs
                    .insert(id.key.clone(), id.run_id.clone());
                spawn_launch(job, self.commands.clone());
            }
            Err(message) => self.executor_launch_failed(&id.key, message),
        }
    }

    /// What a launch needs, from the state machine and the options: which
    /// user (looked up later), the executor's command, the container.
    fn launch_job(&self, id: LaunchId, agent_id: String) -> Result<LaunchJob, String> {
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
        })
    }

    /// A worker finished a launch. A stale one (its executor was killed
    /// meanwhile, and its tasks already reported) is destroyed silently.
    pub(super) fn executor_launch_finished(&mut self, id: LaunchId, outcome: LaunchOutcome) {
        let current = self.launches.get(&id.key) == Some(&id.seq)
            && self.state.executors.contains_key(&id.key);
        if self.launches.get(&id.key) == Some(&id.seq) {
            self.launches.remove(&id.key);
        }
        // From here the state machine knows the run (or the launch failed).
        if self.launching_runs.get(&id.key) == Some(&id.run_id) {
            self.launching_runs.remove(&id.key);
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
        let Started {
            mut child,
            process,
            container,
        } = started;
        tracing::debug!(executor_id = %id.key.1, sandbox = %id.sandbox.display(), "executor started");
        self.containers.adopt(id.key.clone(), container);
        // Tasks given to (or killed in) a custom executor while it started
        // changed what its container must hold.
        let resources = self.state.container_resources(&id.key.0, &id.key.1);
        if resources != id.resources {
            self.containers.update(&id.key, &resources);
        }
        self.processes.insert(id.key.clone(), process);
        let mut out = Vec::new();
        self.state.on_executor_launched(
            &id.key.0,
            &id.key.1,
            ExecutorRun {
                run_id: id.run_id,
                sandbox: id.sandbox,
                pid: process.pid,
                start_time: process.start_time.unwrap_or(0),
            },
            &mut out,
        );
        self.execute(out);
        let commands = self.commands.clone();
        let (framework_id, executor_id) = id.key;
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

    /// The executor could not be started: its tasks fail.
    fn executor_launch_failed(&mut self, key: &(FrameworkId, ExecutorId), message: String) {
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
