//! `agora executor`: the per-task supervisor.
//!
//! The agent starts one per task, in its own session (so that agent restarts
//! do not touch it), with its ids and the agent's endpoint in the
//! environment. It subscribes to the agent, receives the task (LAUNCH),
//! starts the task's command in its own process group with its output in the
//! sandbox, and reports TASK_STARTING, TASK_RUNNING and a terminal state.
//! Every update carries a uuid and is re-sent until the agent acknowledges
//! it; the executor exits once its terminal update is acknowledged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agora_proto::v1 as pb;
use agora_proto::v1::executor::executor_client::ExecutorClient;
use agora_proto::v1::executor::{self as exec, Call, Event, call, event};
use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Grace period between SIGTERM and SIGKILL when the kill policy names none.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);
/// How long the executor waits for its agent to come back before it kills
/// its task and exits (Mesos' `--recovery_timeout`).
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The environment variables the agent passes to `agora executor`.
pub const ENV_AGENT_ENDPOINT: &str = "AGORA_AGENT_ENDPOINT";
pub const ENV_FRAMEWORK_ID: &str = "AGORA_FRAMEWORK_ID";
pub const ENV_EXECUTOR_ID: &str = "AGORA_EXECUTOR_ID";
pub const ENV_AGENT_ID: &str = "AGORA_AGENT_ID";
pub const ENV_SANDBOX: &str = "AGORA_SANDBOX";

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("environment variable {0} is missing")]
    MissingEnv(&'static str),
    #[error("could not reach the agent within the recovery timeout")]
    AgentGone,
    #[error("the agent refused the executor: {0}")]
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct ExecutorEnv {
    pub agent_endpoint: String,
    pub framework_id: String,
    pub executor_id: String,
    pub agent_id: String,
    pub sandbox: PathBuf,
}

impl ExecutorEnv {
    pub fn from_env() -> Result<Self, ExecutorError> {
        let get =
            |name: &'static str| std::env::var(name).map_err(|_| ExecutorError::MissingEnv(name));
        Ok(Self {
            agent_endpoint: get(ENV_AGENT_ENDPOINT)?,
            framework_id: get(ENV_FRAMEWORK_ID)?,
            executor_id: get(ENV_EXECUTOR_ID)?,
            agent_id: get(ENV_AGENT_ID).unwrap_or_default(),
            sandbox: PathBuf::from(get(ENV_SANDBOX)?),
        })
    }
}

/// What happened to the task's process.
fn describe_exit(status: std::process::ExitStatus, killed: bool) -> (pb::TaskState, String) {
    use std::os::unix::process::ExitStatusExt;
    if killed {
        return (
            pb::TaskState::TaskKilled,
            "command was killed on request".into(),
        );
    }
    match (status.code(), status.signal()) {
        (Some(0), _) => (
            pb::TaskState::TaskFinished,
            "command exited with status 0".into(),
        ),
        (Some(code), _) => (
            pb::TaskState::TaskFailed,
            format!("command exited with status {code}"),
        ),
        (None, Some(signal)) => (
            pb::TaskState::TaskFailed,
            format!("command terminated by signal {signal}"),
        ),
        (None, None) => (
            pb::TaskState::TaskFailed,
            "command ended in an unknown way".into(),
        ),
    }
}

/// Builds the task's process: `sh -c VALUE` (shell, the default) or VALUE
/// with ARGUMENTS, in the sandbox, in its own process group, output to the
/// sandbox's `stdout` and `stderr`.
fn task_command(env: &ExecutorEnv, task: &pb::TaskInfo) -> Result<Command, String> {
    let command = task.command.clone().unwrap_or_default();
    let value = command.value.clone().unwrap_or_default();
    let mut process = if command.shell.unwrap_or(true) {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(&value);
        c
    } else {
        let mut c = Command::new(&value);
        c.args(command.arguments.iter().skip(1));
        c
    };
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.sandbox.join(name))
            .map_err(|e| format!("cannot open sandbox file {name}: {e}"))
    };
    let task_id = task
        .task_id
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_default();
    let sandbox = env.sandbox.display().to_string();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in [
        ("AGORA_SANDBOX", sandbox.as_str()),
        ("MESOS_SANDBOX", sandbox.as_str()),
        ("MESOS_DIRECTORY", sandbox.as_str()),
        ("AGORA_TASK_ID", task_id.as_str()),
        ("MESOS_TASK_ID", task_id.as_str()),
        ("AGORA_AGENT_ID", env.agent_id.as_str()),
        ("MESOS_AGENT_ID", env.agent_id.as_str()),
        ("AGORA_FRAMEWORK_ID", env.framework_id.as_str()),
        ("MESOS_FRAMEWORK_ID", env.framework_id.as_str()),
        ("AGORA_EXECUTOR_ID", env.executor_id.as_str()),
        ("MESOS_EXECUTOR_ID", env.executor_id.as_str()),
    ] {
        vars.insert(name.to_string(), value.to_string());
    }
    if let Some(environment) = &command.environment {
        for variable in &environment.variables {
            vars.insert(
                variable.name.clone(),
                variable.value.clone().unwrap_or_default(),
            );
        }
    }
    process
        .current_dir(&env.sandbox)
        .env_remove(ENV_AGENT_ENDPOINT)
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(open("stdout")?)
        .stderr(open("stderr")?)
        .process_group(0)
        .kill_on_drop(false);
    Ok(process)
}

fn signal_group(pgid: Option<u32>, signal: Signal) {
    let Some(pid) = pgid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, signal) {
        tracing::debug!(error = %e, "signalling the task's process group failed");
    }
}

struct Supervisor {
    env: ExecutorEnv,
    task: Option<pb::TaskInfo>,
    child: Option<Child>,
    pgid: Option<u32>,
    kill_requested: bool,
    kill_deadline: Option<Instant>,
    /// Updates sent but not yet acknowledged by the agent, by uuid.
    unacknowledged: Vec<pb::TaskStatus>,
    terminal_sent: bool,
}

impl Supervisor {
    fn update(&mut self, state: pb::TaskState, message: impl Into<String>) -> pb::TaskStatus {
        let task_id = self.task.as_ref().and_then(|t| t.task_id.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let status = pb::TaskStatus {
            task_id,
            state: state as i32,
            message: Some(message.into()),
            source: Some(pb::task_status::Source::Executor as i32),
            timestamp: Some(now),
            uuid: Some(uuid::Uuid::new_v4().as_bytes().to_vec()),
            ..Default::default()
        };
        if agora_core::task::is_terminal(state) {
            self.terminal_sent = true;
        }
        self.unacknowledged.push(status.clone());
        status
    }

    fn launch(&mut self, task: pb::TaskInfo) -> Vec<pb::TaskStatus> {
        if self.task.is_some() {
            return Vec::new();
        }
        self.task = Some(task.clone());
        let mut updates = vec![self.update(pb::TaskState::TaskStarting, "starting the command")];
        match task_command(&self.env, &task).and_then(|mut c| {
            c.spawn()
                .map_err(|e| format!("cannot start the command: {e}"))
        }) {
            Ok(child) => {
                self.pgid = child.id();
                self.child = Some(child);
                updates.push(self.update(pb::TaskState::TaskRunning, "command is running"));
            }
            Err(message) => {
                tracing::warn!(error = %message, "task failed to start");
                updates.push(self.update(pb::TaskState::TaskFailed, message));
            }
        }
        updates
    }

    fn kill(&mut self, policy: Option<pb::KillPolicy>) -> Vec<pb::TaskStatus> {
        if self.kill_requested || self.terminal_sent {
            return Vec::new();
        }
        self.kill_requested = true;
        if self.child.is_none() {
            return vec![self.update(pb::TaskState::TaskKilled, "killed before it started")];
        }
        let grace = policy
            .and_then(|p| p.grace_period)
            .and_then(|g| u64::try_from(g.nanoseconds).ok())
            .map(Duration::from_nanos)
            .unwrap_or(DEFAULT_KILL_GRACE);
        signal_group(self.pgid, Signal::TERM);
        self.kill_deadline = Some(Instant::now() + grace);
        Vec::new()
    }
}

fn call(env: &ExecutorEnv, kind: call::Type) -> Call {
    Call {
        executor_id: Some(pb::ExecutorId {
            value: env.executor_id.clone(),
        }),
        framework_id: Some(pb::FrameworkId {
            value: env.framework_id.clone(),
        }),
        r#type: kind as i32,
        ..Default::default()
    }
}

fn update_call(env: &ExecutorEnv, status: pb::TaskStatus) -> Call {
    let mut c = call(env, call::Type::Update);
    c.update = Some(call::Update {
        status: Some(status),
    });
    c
}

/// Runs the executor until its task is over and reported.
pub async fn run_executor(env: ExecutorEnv) -> Result<(), ExecutorError> {
    // A session of our own: the agent's process group and terminal do not
    // reach us. Fails only if we already lead a group, which is harmless.
    let _ = rustix::process::setsid();
    let mut supervisor = Supervisor {
        env: env.clone(),
        task: None,
        child: None,
        pgid: None,
        kill_requested: false,
        kill_deadline: None,
        unacknowledged: Vec::new(),
        terminal_sent: false,
    };
    let mut disconnected_since = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        if supervisor.terminal_sent && supervisor.unacknowledged.is_empty() {
            return Ok(());
        }
        if disconnected_since.elapsed() > RECOVERY_TIMEOUT {
            signal_group(supervisor.pgid, Signal::KILL);
            return Err(ExecutorError::AgentGone);
        }
        match session(&env, &mut supervisor).await {
            Ok(SessionEnd::Done) => return Ok(()),
            Ok(SessionEnd::Lost) => {
                disconnected_since = Instant::now();
                backoff = Duration::from_millis(50);
            }
            Err(SessionError::Refused(m)) => {
                signal_group(supervisor.pgid, Signal::KILL);
                return Err(ExecutorError::Refused(m));
            }
            Err(SessionError::Unreachable) => {}
        }
        // Keep reaping the task while the agent is away.
        if let Some(child) = supervisor.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let (state, message) = describe_exit(status, supervisor.kill_requested);
            supervisor.child = None;
            signal_group(supervisor.pgid, Signal::KILL);
            supervisor.update(state, message);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

enum SessionEnd {
    Done,
    Lost,
}

enum SessionError {
    Unreachable,
    Refused(String),
}

async fn session(
    env: &ExecutorEnv,
    supervisor: &mut Supervisor,
) -> Result<SessionEnd, SessionError> {
    let mut client = ExecutorClient::connect(env.agent_endpoint.clone())
        .await
        .map_err(|_| SessionError::Unreachable)?;
    let (tx, rx) = mpsc::channel::<Call>(64);
    let mut subscribe = call(env, call::Type::Subscribe);
    subscribe.subscribe = Some(call::Subscribe {
        unacknowledged_tasks: supervisor.task.iter().cloned().collect(),
        unacknowledged_updates: supervisor
            .unacknowledged
            .iter()
            .map(|s| call::Update {
                status: Some(s.clone()),
            })
            .collect(),
    });
    let _ = tx.send(subscribe).await;
    let response = client
        .open(ReceiverStream::new(rx))
        .await
        .map_err(|status| {
            if status.code() == tonic::Code::NotFound
                || status.code() == tonic::Code::InvalidArgument
            {
                SessionError::Refused(status.message().to_string())
            } else {
                SessionError::Unreachable
            }
        })?;
    let mut events = response.into_inner();
    let send = |status: pb::TaskStatus| {
        let tx = tx.clone();
        let c = update_call(env, status);
        async move { tx.send(c).await.is_ok() }
    };
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retry.tick().await;
    loop {
        if supervisor.terminal_sent && supervisor.unacknowledged.is_empty() {
            return Ok(SessionEnd::Done);
        }
        let kill_deadline = supervisor.kill_deadline;
        tokio::select! {
            event = events.message() => {
                let Ok(Some(event)) = event else { return Ok(SessionEnd::Lost) };
                for status in handle_event(supervisor, event) {
                    if !send(status).await { return Ok(SessionEnd::Lost) }
                }
            }
            exit = wait_child(supervisor.child.as_mut()) => {
                let (state, message) = match exit {
                    Ok(status) => describe_exit(status, supervisor.kill_requested),
                    Err(e) => (pb::TaskState::TaskFailed, format!("lost track of the command: {e}")),
                };
                supervisor.child = None;
                supervisor.kill_deadline = None;
                // Nothing the task started may outlive it.
                signal_group(supervisor.pgid, Signal::KILL);
                let status = supervisor.update(state, message);
                if !send(status).await { return Ok(SessionEnd::Lost) }
            }
            _ = sleep_until(kill_deadline) => {
                signal_group(supervisor.pgid, Signal::KILL);
                supervisor.kill_deadline = None;
            }
            _ = retry.tick() => {
                for status in supervisor.unacknowledged.clone() {
                    if !send(status).await { return Ok(SessionEnd::Lost) }
                }
            }
        }
    }
}

async fn wait_child(child: Option<&mut Child>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn handle_event(supervisor: &mut Supervisor, event: Event) -> Vec<pb::TaskStatus> {
    match event::Type::try_from(event.r#type).unwrap_or(event::Type::Unknown) {
        event::Type::Launch => match event.launch.and_then(|l| l.task) {
            Some(task) => supervisor.launch(task),
            None => Vec::new(),
        },
        event::Type::Kill => supervisor.kill(event.kill.and_then(|k| k.kill_policy)),
        event::Type::Acknowledged => {
            if let Some(ack) = event.acknowledged {
                supervisor
                    .unacknowledged
                    .retain(|s| s.uuid.as_deref() != Some(ack.uuid.as_slice()));
            }
            Vec::new()
        }
        event::Type::Shutdown => supervisor.kill(None),
        event::Type::Error => {
            if let Some(error) = event.error {
                tracing::warn!(message = %error.message, "agent reported an error");
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// The path of a sandbox for one executor run, Mesos' layout.
pub fn sandbox_path(
    work_dir: &Path,
    agent_id: &str,
    framework_id: &str,
    executor_id: &str,
    run_id: &str,
) -> PathBuf {
    work_dir
        .join("slaves")
        .join(agent_id)
        .join("frameworks")
        .join(framework_id)
        .join("executors")
        .join(executor_id)
        .join("runs")
        .join(run_id)
}

#[doc(hidden)]
pub use exec::Event as ExecutorEvent;
