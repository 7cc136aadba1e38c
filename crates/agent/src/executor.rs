//! `agora executor`: the per-task supervisor.
//!
//! The agent starts one per task, in its own session (so that agent restarts
//! do not touch it), with its ids and the agent's endpoint in the
//! environment. It subscribes to the agent, receives the task (LAUNCH),
//! starts the task's command in its own process group with its output in the
//! sandbox, and reports TASK_STARTING, TASK_RUNNING and a terminal state.
//! Every update carries a uuid and is re-sent until the agent acknowledges
//! it; the executor exits once its terminal update is acknowledged.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agora_core::Backoff;
use agora_proto::v1 as pb;
use agora_proto::v1::executor::executor_client::ExecutorClient;
use agora_proto::v1::executor::{self as exec, Call, Event, call, event};
use rustix::process::{Pid, Signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::launch::{ENV_LAUNCH, LaunchConfig};

pub(crate) mod custom;
pub mod local;
pub mod prepare;
mod supervisor;
mod task_process;

pub use task_process::AdoptedTask;
use task_process::TaskProcess;

use supervisor::Supervisor;

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
/// The token the agent starts `agora supervisor` with (`crate::host`).
pub const ENV_SUPERVISOR_TOKEN: &str = "AGORA_SUPERVISOR_TOKEN";

/// Mesos' names for TLS settings, which the agent passes to every executor
/// (its own and custom ones) when it serves TLS, and `agora executor` reads.
pub const ENV_SSL_ENABLED: &str = "LIBPROCESS_SSL_ENABLED";
pub const ENV_SSL_CA_FILE: &str = "LIBPROCESS_SSL_CA_FILE";
pub const ENV_SSL_CERT_FILE: &str = "LIBPROCESS_SSL_CERT_FILE";
pub const ENV_SSL_KEY_FILE: &str = "LIBPROCESS_SSL_KEY_FILE";
pub const ENV_SSL_VERIFY_SERVER_CERT: &str = "LIBPROCESS_SSL_VERIFY_SERVER_CERT";

/// What `agora executor` keeps from every process it starts for its task
/// (the command, its health checks): how to reach the agent, the launch
/// settings, the executor's token (a process that held it could speak for
/// its executor), and where the agent's own key is (mutual TLS: the task's
/// business is not to speak for the agent either).
pub const EXECUTOR_ONLY_ENV: [&str; 7] = [
    ENV_AGENT_ENDPOINT,
    ENV_SUPERVISOR_TOKEN,
    local::ENV_AGENT_CONNECTION,
    ENV_LAUNCH,
    crate::executor_auth::ENV_EXECUTOR_TOKEN,
    ENV_SSL_CERT_FILE,
    ENV_SSL_KEY_FILE,
];

/// The agent's endpoint as its executors are told it.
pub fn agent_endpoint(advertise: std::net::SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{advertise}")
}

/// What an executor needs to verify a TLS agent: the CA (the agent's
/// `--tls-ca`; without one, the agent's own certificate, which then has to
/// be self-signed or a CA), and, when the agent requires client
/// certificates, the agent's certificate and key to present (as Mesos
/// passes its `LIBPROCESS_SSL_*` settings on). Empty when the agent serves
/// plaintext.
pub fn tls_environment(tls: &agora_tls::TlsFiles) -> Vec<(&'static str, String)> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Vec::new();
    };
    let ca = tls.ca.as_ref().unwrap_or(cert);
    let mut env = vec![
        (ENV_SSL_ENABLED, "true".to_string()),
        (ENV_SSL_VERIFY_SERVER_CERT, "true".to_string()),
        (ENV_SSL_CA_FILE, for_executor(ca)),
    ];
    if tls.require_client_cert {
        env.push((ENV_SSL_CERT_FILE, for_executor(cert)));
        env.push((ENV_SSL_KEY_FILE, for_executor(key)));
    }
    env
}

/// A path of the agent's, as an executor must be told it: absolute,
/// since the executor runs in its sandbox, not in the agent's working
/// directory (`--tls-ca ca.pem`, or `agora dev --tls`'s `.agora/tls/`).
fn for_executor(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The TLS client an executor reaches its agent with, from Mesos' variables;
/// `None` when `LIBPROCESS_SSL_ENABLED` is not true.
pub fn tls_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<agora_tls::ClientTls>, agora_tls::TlsError> {
    match agora_tls::TlsFiles::from_libprocess_env(var)? {
        Some(files) => files.client(),
        None => Ok(None),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot set up TLS to the agent: {0}")]
    Tls(#[from] agora_tls::TlsError),
    #[error("environment variable {0} is missing")]
    MissingEnv(&'static str),
    #[error("could not reach the agent within the recovery timeout")]
    AgentGone,
    #[error("the agent refused the executor: {0}")]
    Refused(String),
    #[error("{0}")]
    Launch(String),
    #[error("invalid launch settings from the agent: {0}")]
    Config(#[from] crate::launch::LaunchError),
}

#[derive(Debug, Clone)]
pub struct ExecutorEnv {
    pub agent_endpoint: String,
    pub framework_id: String,
    pub executor_id: String,
    pub agent_id: String,
    pub sandbox: PathBuf,
    /// How to run the container, as the agent decided it.
    pub launch: LaunchConfig,
    /// The token that proves to the agent that this is the executor
    /// (`MESOS_EXECUTOR_AUTHENTICATION_TOKEN`); never given to the task.
    pub token: Option<String>,
    /// TLS to the agent (`LIBPROCESS_SSL_*`), when it serves TLS.
    pub tls: Option<agora_tls::ClientTls>,
    /// The connection the agent handed over at start-up, for the first
    /// session ([`local`]).
    pub local: local::LocalConnection,
    /// Hosted by `agora supervisor` ([`crate::host`]): its connection to
    /// the agent, shared by every executor it hosts, instead of one of
    /// the executor's own.
    pub shared: Option<SharedChannel>,
    /// Told the task's pid once the task has started (the supervisor
    /// reports it to the agent).
    pub on_task_started: Option<OnTaskStarted>,
    /// Shared by the executors of one process (`prepare::IsolatorCache`).
    pub isolators: std::sync::Arc<prepare::IsolatorCache>,
    /// Hosted to take back a task whose supervisor worker died: the
    /// executor holds it from the start instead of waiting for LAUNCH.
    pub adopted: Option<std::sync::Arc<AdoptedTask>>,
}

/// The hosting supervisor's current connection to the agent (`None`
/// while it has none).
pub type SharedChannel = tokio::sync::watch::Receiver<Option<tonic::transport::Channel>>;

/// Called with the task's pid once it has started.
#[derive(Clone)]
pub struct OnTaskStarted(pub std::sync::Arc<dyn Fn(u32) + Send + Sync>);

impl std::fmt::Debug for OnTaskStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnTaskStarted")
    }
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
            launch: match std::env::var(ENV_LAUNCH) {
                Ok(text) => LaunchConfig::from_json(&text)?,
                Err(_) => LaunchConfig::default(),
            },
            token: std::env::var(crate::executor_auth::ENV_EXECUTOR_TOKEN).ok(),
            tls: tls_from_env(|name| std::env::var(name).ok())?,
            local: local::LocalConnection::inherit(
                std::env::var(local::ENV_AGENT_CONNECTION).ok().as_deref(),
            ),
            shared: None,
            on_task_started: None,
            isolators: Default::default(),
            adopted: None,
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

/// Builds the task's process (the program as [`crate::program::program`] decides:
/// `sh -c VALUE`, or a plain command exec'd directly, or VALUE with
/// ARGUMENTS), in the sandbox, in its own process group, output to the
/// sandbox's `stdout` and `stderr`.
fn task_command(env: &ExecutorEnv, task: &pb::TaskInfo) -> Result<Command, String> {
    let command = task.command.clone().unwrap_or_default();
    let vars = prepare::environment(env, &env.launch, &command, Some(task));
    // A std command: tokio's would hold a pidfd of its own for the child
    // besides ours (`task_process`), two descriptors per task.
    let mut process =
        crate::program::program(&command, crate::program::path_of(&vars).as_deref()).std_command();
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.sandbox.join(name))
            .map_err(|e| format!("cannot open sandbox file {name}: {e}"))
    };
    if let Some(user) = &env.launch.user {
        // std drops supplementary groups (setgroups) when it sets the uid.
        // Already that user (the supervisor and its tasks are root's):
        // nothing to switch, as in Mesos, and std can then start the task
        // with posix_spawn (a vfork) instead of fork, which copies the
        // page tables of a process that hosts many executors.
        let same = rustix::process::geteuid().as_raw() == user.uid
            && rustix::process::getegid().as_raw() == user.gid;
        if !same {
            process.uid(user.uid).gid(user.gid);
        }
    }
    for name in EXECUTOR_ONLY_ENV {
        process.env_remove(name);
    }
    process
        .current_dir(&env.sandbox)
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(open("stdout")?)
        .stderr(open("stderr")?)
        .process_group(0);
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

/// Runs the executor until its task is over and reported. For a
/// framework's own executor, prepares its container and becomes it.
pub async fn run_executor(env: ExecutorEnv) -> Result<(), ExecutorError> {
    // A session of our own: the agent's process group and terminal do not
    // reach us. Fails only if we already lead a group, which is harmless.
    let _ = rustix::process::setsid();
    if let Some(command) = env.launch.custom_command()? {
        return Err(custom::become_custom_executor(&env, &env.launch, command).await);
    }
    supervise(env).await
}

/// Runs a command executor hosted by `agora supervisor`: the same as
/// [`run_executor`] for a command task, inside the supervisor's process
/// (its session, its connection). A custom executor is never hosted.
pub async fn run_hosted(env: ExecutorEnv) -> Result<(), ExecutorError> {
    if env.launch.custom_command()?.is_some() {
        return Err(ExecutorError::Launch(
            "a custom executor cannot be hosted by the supervisor".into(),
        ));
    }
    supervise(env).await
}

/// The command executor's life: sessions with the agent until its task is
/// over and reported.
async fn supervise(env: ExecutorEnv) -> Result<(), ExecutorError> {
    let mut supervisor = Supervisor::new(env.clone());
    if let Some(adopted) = &env.adopted {
        supervisor.adopt(adopted);
    }
    let mut disconnected_since = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    // Hosted: the supervisor's connection, each new one seen as it comes.
    let mut shared = env.shared.clone();
    loop {
        if supervisor.terminal_sent && supervisor.unacknowledged.is_empty() {
            return Ok(());
        }
        if disconnected_since.elapsed() > RECOVERY_TIMEOUT {
            supervisor.kill_now();
            return Err(ExecutorError::AgentGone);
        }
        match session(&env, &mut supervisor, shared.as_mut()).await {
            Ok(SessionEnd::Done) => return Ok(()),
            Ok(SessionEnd::Lost) => {
                disconnected_since = Instant::now();
                backoff.reset();
            }
            Err(SessionError::Refused(m)) => {
                supervisor.kill_now();
                return Err(ExecutorError::Refused(m));
            }
            Err(SessionError::Unreachable) => {}
        }
        // Keep reaping the task while the agent is away.
        if let Some(child) = supervisor.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            supervisor.exited(Ok(status));
        }
        let pause = tokio::time::sleep(backoff.next_delay());
        tokio::pin!(pause);
        match shared.as_mut() {
            // A new connection of the supervisor's (after an agent
            // restart) ends the pause at once: ten thousand hosted
            // executors re-subscribe when it is there, not at their next
            // back-off step.
            Some(shared) => {
                tokio::select! {
                    () = &mut pause => {}
                    changed = shared.changed() => {
                        // The supervisor is going: no more news to wait for.
                        if changed.is_err() {
                            pause.await;
                        }
                    }
                }
            }
            None => pause.await,
        }
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
    shared: Option<&mut SharedChannel>,
) -> Result<SessionEnd, SessionError> {
    let shared = shared.map(|s| s.borrow_and_update().clone());
    let channel = match (shared, env.local.take()) {
        (Some(Some(channel)), _) => channel,
        (Some(None), _) => return Err(SessionError::Unreachable),
        (None, Some(stream)) => local::channel(stream).await.map_err(|e| {
            tracing::debug!(error = %e, "cannot use the connection the agent handed over");
            SessionError::Unreachable
        })?,
        (None, None) => {
            let endpoint = tonic::transport::Endpoint::from_shared(env.agent_endpoint.clone())
                .map_err(|_| SessionError::Unreachable)?;
            agora_tls::connect_channel(endpoint, env.tls.as_ref())
                .await
                .map_err(|e| {
                    tracing::debug!(error = %e, "cannot reach the agent");
                    SessionError::Unreachable
                })?
        }
    };
    let mut client = ExecutorClient::new(channel);
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
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &env.token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    let response = client.open(request).await.map_err(|status| {
        if status.code() == tonic::Code::NotFound
            || status.code() == tonic::Code::InvalidArgument
            || status.code() == tonic::Code::Unauthenticated
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
        let next_health_check = supervisor.next_health_check();
        let next_disk_check = supervisor.next_disk_check;
        tokio::select! {
            event = events.message() => {
                let Ok(Some(event)) = event else { return Ok(SessionEnd::Lost) };
                for status in handle_event(supervisor, event) {
                    if !send(status).await { return Ok(SessionEnd::Lost) }
                }
            }
            exit = wait_child(supervisor.child.as_mut()) => {
                let status = supervisor.exited(exit);
                if !send(status).await { return Ok(SessionEnd::Lost) }
            }
            fetched = wait_join(Some(&mut supervisor.fetching)) => {
                for status in supervisor.fetched(fetched) {
                    if !send(status).await { return Ok(SessionEnd::Lost) }
                }
            }
            _ = sleep_until(next_health_check) => {
                supervisor.start_health_probe();
            }
            outcome = wait_join(supervisor.health.as_mut().map(|h| &mut h.running)) => {
                for status in supervisor.health_result(outcome) {
                    if !send(status).await { return Ok(SessionEnd::Lost) }
                }
            }
            _ = sleep_until(next_disk_check) => {
                supervisor.check_disk();
            }
            _ = sleep_until(kill_deadline) => {
                supervisor.kill_now();
            }
            _ = retry.tick() => {
                for status in supervisor.unacknowledged.clone() {
                    if !send(status).await { return Ok(SessionEnd::Lost) }
                }
            }
        }
    }
}

async fn wait_child(child: Option<&mut TaskProcess>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}

/// Waits for a spawned job; a job that panicked or was aborted counts as
/// failed. Never resolves without a job.
async fn wait_join(job: Option<&mut Option<JoinHandle<Result<(), String>>>>) -> Result<(), String> {
    match job {
        Some(slot) => match slot.as_mut() {
            Some(handle) => {
                let result = handle
                    .await
                    .unwrap_or_else(|e| Err(format!("the job ended abnormally: {e}")));
                *slot = None;
                result
            }
            None => std::future::pending().await,
        },
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
        event::Type::Kill => match event.kill {
            Some(kill) => supervisor.kill(kill.kill_policy, kill.message),
            None => supervisor.kill(None, None),
        },
        event::Type::Acknowledged => {
            if let Some(ack) = event.acknowledged {
                supervisor
                    .unacknowledged
                    .retain(|s| s.uuid.as_deref() != Some(ack.uuid.as_slice()));
            }
            Vec::new()
        }
        event::Type::Shutdown => {
            supervisor.kill(None, Some("killed: its executor was shut down".into()))
        }
        event::Type::Error => {
            if let Some(error) = event.error {
                tracing::warn!(message = %error.message, "agent reported an error");
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

#[doc(hidden)]
pub use exec::Event as ExecutorEvent;

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn an_agent_serving_tls_tells_its_executors_how_to_verify_it() {
        let plain = agora_tls::TlsFiles::default();
        assert!(tls_environment(&plain).is_empty());
        let address: std::net::SocketAddr = "127.0.0.1:5051".parse().expect("address");
        assert_eq!(agent_endpoint(address, false), "http://127.0.0.1:5051");
        assert_eq!(agent_endpoint(address, true), "https://127.0.0.1:5051");

        let served = agora_tls::TlsFiles {
            cert: Some("/etc/agora/agent.pem".into()),
            key: Some("/etc/agora/agent-key.pem".into()),
            ca: Some("/etc/agora/ca.pem".into()),
            require_client_cert: false,
        };
        let env = tls_environment(&served);
        let get = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        assert_eq!(get(ENV_SSL_ENABLED).as_deref(), Some("true"));
        assert_eq!(get(ENV_SSL_CA_FILE).as_deref(), Some("/etc/agora/ca.pem"));
        // The agent's key is passed on only when the agent requires client
        // certificates (its executors then need one).
        assert_eq!(get(ENV_SSL_KEY_FILE), None);
        let mutual = agora_tls::TlsFiles {
            require_client_cert: true,
            ..served
        };
        let env = tls_environment(&mutual);
        assert!(
            env.iter()
                .any(|(k, v)| *k == ENV_SSL_KEY_FILE && v == "/etc/agora/agent-key.pem")
        );
        // What the executor reads back: TLS on, with the CA.
        let files = agora_tls::TlsFiles::from_libprocess_env(|name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        })
        .expect("valid")
        .expect("on");
        assert_eq!(files.ca, Some("/etc/agora/ca.pem".into()));
    }

    #[test]
    fn relative_paths_reach_the_executor_absolute() {
        let relative = agora_tls::TlsFiles {
            cert: Some(".agora/tls/server.pem".into()),
            key: Some(".agora/tls/server-key.pem".into()),
            ca: Some(".agora/tls/ca.pem".into()),
            require_client_cert: true,
        };
        let here = std::env::current_dir().expect("a working directory");
        let env = tls_environment(&relative);
        for (name, file) in [
            (ENV_SSL_CA_FILE, ".agora/tls/ca.pem"),
            (ENV_SSL_CERT_FILE, ".agora/tls/server.pem"),
            (ENV_SSL_KEY_FILE, ".agora/tls/server-key.pem"),
        ] {
            let value = env
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} is set"));
            assert_eq!(Path::new(&value), here.join(file), "{name}");
        }
    }
}
