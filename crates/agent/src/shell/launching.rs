//! Starting an executor off the event loop.
//!
//! Everything a launch does that can block (the task user's lookup through
//! NSS, which may wait seconds on LDAP; creating and chowning the sandbox
//! on a hung disk; creating the container's cgroups; spawning the process)
//! runs on a worker. The loop only gathers what the launch needs and later
//! takes the result as an `AgentCommand::ExecutorLaunched`, so it goes on
//! answering the master's pings meanwhile.
//!
//! *Invariants:*
//! - a launch starts only once its run is on disk: the executor's record,
//!   with its task and its run (id, sandbox, no process yet, drawn by the
//!   state machine), is written before the `LaunchExecutor` effect that
//!   hands the launch to a worker; the process is recorded when the
//!   worker's result arrives, and the executor gets its tasks only after
//!   that record (`AgentState::deliver_tasks`). So a crash at any point
//!   leaves either a recorded process, or a run that never had a task:
//!   recovery destroys what such a run created (found by its id) and
//!   launches the executor again;
//! - at most one launch per executor is current (`Actor::launches`,
//!   `actor/launches.rs`). A
//!   `DestroyExecutor` (a KILL, a framework shutdown) while it is in flight
//!   makes it stale: the state machine has already reported the tasks, and
//!   when a stale launch's result comes, whatever it started (process,
//!   container) is destroyed without another report;
//! - if the loop is gone (agent shutdown), the worker destroys what it
//!   started itself: nothing is left that no checkpoint accounts for.

use std::fs::File;
use std::path::{Path, PathBuf};

use agora_core::{ExecutorId, FrameworkId, Resources};
use agora_isolation::Container;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::processes::ProcessRef;
use crate::containers::CreateJob;
use crate::executor::{
    ENV_AGENT_ENDPOINT, ENV_AGENT_ID, ENV_EXECUTOR_ID, ENV_FRAMEWORK_ID, ENV_SANDBOX,
};
use crate::executor_auth::ENV_EXECUTOR_TOKEN;
use crate::launch::{self, LaunchConfig};
use crate::procfs;

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

/// What a worker started for an executor: its container, and its own
/// process or, for a hosted one, the order that has the supervisor host it.
pub(super) struct Started {
    pub running: Running,
    pub container: Container,
}

pub(super) enum Running {
    Process {
        child: Child,
        process: ProcessRef,
        /// A custom executor's start gate (`executor::custom`): the agent's
        /// end of the pair on the executor's standard input. The program
        /// starts once a byte is written to it, after the process is
        /// recorded; closed unwritten, the executor exits without running
        /// anything of the framework's.
        start_gate: Option<std::os::unix::net::UnixStream>,
    },
    /// Nothing runs yet: the actor sends the order to the supervisor.
    Hosted(agora_proto::v1::supervisor::Host),
}

/// What a worker reports of a launch.
pub(super) type LaunchOutcome = Result<Started, String>;

/// Everything a launch needs, gathered on the loop without I/O.
pub(super) struct LaunchJob {
    pub id: LaunchId,
    /// The task user's name, looked up on the worker.
    pub user: Option<String>,
    pub config: LaunchConfig,
    pub container: CreateJob,
    pub program: PathBuf,
    pub endpoint: String,
    pub agent_id: String,
    /// The run's executor token (`executor_auth`).
    pub token: String,
    /// How the executor verifies the agent (`executor::tls_environment`).
    pub tls_env: Vec<(&'static str, String)>,
    /// Where the agent's end of the executor's first connection goes to be
    /// served (`executor::local`); `None`: the executor dials the endpoint.
    pub local: Option<mpsc::UnboundedSender<std::os::unix::net::UnixStream>>,
    /// A command executor the supervisor hosts (`crate::host`): nothing is
    /// spawned here.
    pub hosted: bool,
}

impl LaunchJob {
    /// The blocking part of a launch. A failure after the container exists
    /// destroys it here: the loop only adopts containers of started executors.
    pub(super) fn run(self) -> LaunchOutcome {
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
            hosted,
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
        if hosted {
            return Ok(Started {
                running: Running::Hosted(agora_proto::v1::supervisor::Host {
                    framework_id: id.key.0.as_str().to_string(),
                    executor_id: id.key.1.as_str().to_string(),
                    run_id: id.run_id.clone(),
                    agent_id,
                    sandbox: id.sandbox.display().to_string(),
                    launch: config.to_json(),
                    token,
                }),
                container,
            });
        }
        // A custom executor's program must not run before its process is
        // recorded: the socket pair on its standard input is its start
        // gate, not a connection (its program dials the endpoint).
        let custom = config.custom_command.is_some();
        // The executor's first connection: a socket pair, its end as the
        // executor's standard input. Without one (no server, or no pair
        // to be had) it dials the endpoint, as after an agent restart.
        let pair = if custom || local.is_some() {
            std::os::unix::net::UnixStream::pair()
                .inspect_err(
                    |e| tracing::warn!(error = %e, "cannot make a socket pair for an executor"),
                )
                .ok()
        } else {
            None
        };
        // What the executor's standard input is: its connection, or its gate.
        let (connection, gate) = if custom {
            ("", crate::executor::custom::GATE_ON_STDIN)
        } else {
            (crate::executor::local::FROM_STDIN, "")
        };
        let (ours, stdin, connection, gate) = match pair {
            Some((ours, theirs)) => (
                Some(ours),
                std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)),
                connection,
                gate,
            ),
            None if custom => {
                if let Err(e) = container.destroy() {
                    tracing::warn!(executor_id = %id.key.1, error = %e, "cannot destroy the container");
                }
                return Err("cannot make the custom executor's start gate".into());
            }
            None => (None, std::process::Stdio::null(), "", ""),
        };
        let spawned = open_log(&id.sandbox).and_then(|(out, err)| {
            Command::new(&program)
                .arg("executor")
                .env(crate::executor::local::ENV_AGENT_CONNECTION, connection)
                .env(crate::executor::custom::ENV_START_GATE, gate)
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
        let (start_gate, ours) = if custom { (ours, None) } else { (None, ours) };
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
        let start_time = procfs::process_start_time(pid);
        Ok(Started {
            running: Running::Process {
                child,
                process: ProcessRef { pid, start_time },
                start_gate,
            },
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
pub(super) fn destroy_started(executor_id: &ExecutorId, started: Started) {
    let Started { running, container } = started;
    let child = match running {
        // A start gate dropped unopened: the executor ends without running
        // anything of the framework's (it is killed here anyway).
        Running::Process { child, process, .. } => {
            process.kill();
            Some(child)
        }
        Running::Hosted(_) => None,
    };
    if let Err(e) = container.destroy() {
        tracing::warn!(executor_id = %executor_id, error = %e, "cannot destroy the container");
    }
    if let Some(mut child) = child {
        if let Err(e) = child.start_kill() {
            tracing::debug!(executor_id = %executor_id, error = %e, "executor already gone");
        }
        // Dropped unwaited: tokio reaps it in the background, so no zombie stays.
        drop(child);
    }
}

/// This agent's supervisor process (`crate::host`), started.
pub(super) struct StartedSupervisor {
    pub child: Child,
    pub process: ProcessRef,
}

/// Everything starting the supervisor needs, gathered on the loop.
pub(super) struct SupervisorJob {
    pub program: PathBuf,
    pub work_dir: PathBuf,
    pub endpoint: String,
    pub token: String,
    pub tls_env: Vec<(&'static str, String)>,
    /// Where the agent's end of the supervisor's connection goes to be
    /// served; the supervisor cannot work without it.
    pub local: mpsc::UnboundedSender<std::os::unix::net::UnixStream>,
}

impl SupervisorJob {
    /// Starts `agora supervisor` (blocking: run on a worker), its output
    /// appended to `supervisor.log` in the work dir, its connection a
    /// socket pair on its standard input.
    pub(super) fn run(self) -> Result<StartedSupervisor, String> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| format!("cannot make a socket pair for the supervisor: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work_dir.join("supervisor.log"))
            .map_err(|e| format!("cannot open the supervisor log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot open the supervisor log: {e}"))?;
        let child = Command::new(&self.program)
            .arg("supervisor")
            .env(
                crate::executor::local::ENV_AGENT_CONNECTION,
                crate::executor::local::FROM_STDIN,
            )
            .env(ENV_AGENT_ENDPOINT, &self.endpoint)
            .env(crate::executor::ENV_SUPERVISOR_TOKEN, &self.token)
            .envs(self.tls_env)
            .current_dir(&self.work_dir)
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                theirs,
            )))
            .stdout(log)
            .stderr(err)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("cannot start the supervisor: {e}"))?;
        if self.local.send(ours).is_err() {
            return Err("the agent is stopping".into());
        }
        let pid = child
            .id()
            .ok_or("the supervisor exited before it could be watched")?;
        let start_time = procfs::process_start_time(pid);
        Ok(StartedSupervisor {
            child,
            process: ProcessRef { pid, start_time },
        })
    }
}
