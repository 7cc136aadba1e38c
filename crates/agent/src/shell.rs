//! The agent's I/O shell: one tokio task owns the [`AgentState`]; a session
//! task keeps the connection to the master; the executor endpoint and the
//! HTTP API share the agent's port; executor processes are started and
//! reaped here.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use agora_core::{AgentId, ExecutorId, FrameworkId, Resources, TaskId};
use agora_net::outbox::{Inbox, Outbox, outbox};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::agent_session_client::AgentSessionClient;
use agora_proto::v1::agent::{AgentMessage, MasterMessage, master_message};
use agora_proto::v1::executor::executor_server::{Executor, ExecutorServer};
use agora_proto::v1::executor::{self as exec, call};
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use futures::Stream;
use rand::Rng;
use rustix::process::Pid;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::checkpoint::{self, Checkpoint, FsStore, MetaStore, Recovered};
use crate::containers::{ContainerOptions, Containers};
use crate::executor_auth::ExecutorRefusal;
use crate::gc::{DiskSpace, Gc, GcPolicy};
use crate::launch;
use crate::state::{AgentState, Effect, ExecutorConn};
use agora_auth::executor_token::TokenKey;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers of `/state` see the agent at most this stale.
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(20);
/// The actor's inbound queue (master session, executors, HTTP handlers,
/// workers). Bounded: a producer waits for room (its peer then waits on
/// HTTP/2 flow control), so a flood costs latency, never memory, and
/// nothing is dropped.
pub const COMMAND_QUEUE: usize = 1024;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `host:port` (or `http://host:port`) of the master.
    pub master: String,
    /// The address executors reach this agent at; also advertised to the master.
    pub advertise: SocketAddr,
    pub hostname: String,
    pub work_dir: PathBuf,
    pub resources: Resources,
    pub attributes: Vec<pb::Attribute>,
    /// The `agora` binary, run as `agora executor`.
    pub executor_program: PathBuf,
    /// Isolation, users, fetcher and environment of containers.
    pub containers: ContainerOptions,
    /// When sandboxes of finished executors are removed.
    pub gc: GcPolicy,
    /// The credential sent to the master and HTTP Basic on this agent's
    /// endpoints (`crate::authn`).
    pub authentication: crate::authn::AgentAuthentication,
    /// Measures the work dir's file system (`gc::measure`).
    pub disk_probe: crate::gc::DiskProbe,
    /// The file of the key that signs executor tokens (`--jwt-secret-key`);
    /// `None`: one generated under `<work_dir>/meta/` (`executor_auth`).
    pub jwt_secret_key: Option<PathBuf>,
    /// TLS (`--tls-*`): served on the agent's port when a certificate is
    /// given; with a CA, the master is reached over https and verified
    /// against it (presenting the certificate, for mutual TLS), and
    /// executors verify the agent with it.
    pub tls: agora_tls::TlsFiles,
    /// Who may do what (`--acls`): here, `access_sandboxes` on the files
    /// API (`crate::files_authz`); the default allows everything.
    pub acls: Arc<agora_auth::acl::Acls>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] agora_tls::TlsError),
    #[error("cannot prepare work dir {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("http server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("invalid isolation settings: {0}")]
    Isolation(#[from] agora_isolation::IsolationError),
    #[error("cannot prepare the checkpoint under {path}: {source}")]
    Checkpoint {
        path: PathBuf,
        source: std::io::Error,
    },
}

// Sent once through a channel; boxing the master message would only add allocations.
#[allow(clippy::large_enum_variant)]
enum AgentCommand {
    MasterConnected {
        session: u64,
        tx: Outbox<AgentMessage>,
    },
    MasterMessage {
        session: u64,
        message: MasterMessage,
    },
    MasterDisconnected {
        session: u64,
    },
    /// `run_id`: the run the executor's token was minted for (its
    /// signature and ids were checked at the edge); refused unless it is
    /// the executor's current run.
    ExecutorSubscribe {
        conn: ExecutorConn,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        run_id: String,
        held: Vec<TaskId>,
        unacknowledged: Vec<pb::TaskStatus>,
        events: Outbox<exec::Event>,
        reply: oneshot::Sender<Result<(), ExecutorRefusal>>,
    },
    ExecutorUpdate {
        conn: ExecutorConn,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        status: pb::TaskStatus,
    },
    /// An executor's MESSAGE for its scheduler.
    ExecutorMessage {
        conn: ExecutorConn,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        data: Vec<u8>,
    },
    ExecutorGone {
        conn: ExecutorConn,
    },
    /// An UPDATE or MESSAGE over the HTTP executor API, which names its
    /// executor by ids instead of arriving on its stream; refused unless
    /// that executor is subscribed and `run_id` (its token's) is its
    /// current run.
    ExecutorHttpCall {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        run_id: String,
        call: exec::Call,
        reply: oneshot::Sender<Result<(), ExecutorRefusal>>,
    },
    ExecutorExited {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        description: String,
    },
    Statistics {
        reply: oneshot::Sender<Vec<ContainerStatistics>>,
    },
    /// The checkpoint writer finished batch `seq` (`failed`: some record
    /// could not be written); the effects that waited for it may go.
    CheckpointWritten {
        seq: u64,
        failed: bool,
    },
    /// A worker measured the work dir's filesystem.
    DiskMeasured(Result<DiskSpace, String>),
    /// Sandboxes found on disk at start, with their modification times.
    SandboxesFound(Vec<(PathBuf, SystemTime)>),
    /// A worker finished launching an executor (`launching.rs`).
    ExecutorLaunched {
        id: launching::LaunchId,
        outcome: launching::LaunchOutcome,
    },
}

/// One entry of `/monitor/statistics`, as Mesos shapes it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatistics {
    pub framework_id: String,
    pub executor_id: String,
    pub executor_name: String,
    pub source: String,
    pub statistics: agora_isolation::ResourceStatistics,
}

/// What `/state` on the agent shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AgentSnapshot {
    pub id: Option<String>,
    pub hostname: String,
    pub master: String,
    pub registered: bool,
    pub resources: std::collections::BTreeMap<String, agora_core::resources::SummaryValue>,
    pub tasks: Vec<TaskView>,
    pub completed_tasks: Vec<TaskView>,
    /// The work dir's filesystem has no room for new sandboxes: tasks are
    /// refused until it has.
    pub disk_full: bool,
    /// The work dir's filesystem as last measured.
    pub disk: Option<DiskSpace>,
    /// Sandboxes of finished executors waiting for garbage collection.
    pub sandboxes_awaiting_gc: usize,
    /// Why the master refused this agent's registration (e.g. resources
    /// that no longer hold its running tasks), until one accepts it.
    pub refused: Option<String>,
    /// The state machine's gauges at publish time, for `/metrics` (pending
    /// status updates are known only there); `None` before the first publish.
    #[serde(skip)]
    pub gauges: Option<crate::metrics::AgentGauges>,
    /// Frameworks, executors and sandboxes as Mesos' endpoints show them
    /// ([`crate::mesos_v0`]).
    #[serde(skip)]
    pub mesos: crate::mesos_v0::MesosView,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub framework_id: String,
    pub state: &'static str,
    pub sandbox: Option<String>,
}

struct Actor {
    state: AgentState,
    options: AgentOptions,
    started: Instant,
    session: u64,
    /// The master session's outbox, and every subscribed executor's: the
    /// loop pushes without waiting and nothing is dropped for a slow peer
    /// (`streams.rs`).
    master_tx: Option<Outbox<AgentMessage>>,
    executors: HashMap<ExecutorConn, Outbox<exec::Event>>,
    /// Executor processes, for killing executors that have not subscribed.
    processes: HashMap<(FrameworkId, ExecutorId), ProcessRef>,
    /// The launch in flight on a worker for each executor being started
    /// (its sequence number); a destroyed executor's entry goes, which
    /// makes its launch stale (`launching.rs`).
    launches: HashMap<(FrameworkId, ExecutorId), u64>,
    next_launch: u64,
    sandboxes: HashMap<(FrameworkId, ExecutorId), PathBuf>,
    commands: mpsc::Sender<AgentCommand>,
    snapshot: watch::Sender<Arc<AgentSnapshot>>,
    last_snapshot: Instant,
    dirty: bool,
    checkpoint: CheckpointPipeline,
    containers: Containers,
    gc: Gc,
    disk: Option<DiskSpace>,
    disk_check_in_flight: bool,
    /// Why the master last refused this agent's registration; cleared when
    /// a master accepts it.
    refused: Option<String>,
    /// The hostname of the master that accepted this agent last.
    master_hostname: Option<String>,
    /// Signs the executors' tokens (`executor_auth`).
    token_key: TokenKey,
    /// The run id of each executor's launch in flight, known before its
    /// process exists: an executor may subscribe before its launch's
    /// result reaches the loop (the state machine records the run then).
    launching_runs: HashMap<(FrameworkId, ExecutorId), String>,
    /// Where the agent's ends of its executors' first connections go to be
    /// served (`executor::local`); `None` until the server runs.
    executor_connections: Option<mpsc::UnboundedSender<std::os::unix::net::UnixStream>>,
}

/// Checkpoint records are written by a dedicated thread, in order; the
/// effects of a batch wait here until its records are on disk (so an update
/// is persisted before it is acknowledged or forwarded), and batches leave
/// in the order they came, whether they had records or not.
struct CheckpointPipeline {
    writer: std::sync::mpsc::Sender<WriteJob>,
    waiting: VecDeque<Batch>,
    next_seq: u64,
    /// Set while effects run, so that effects they cause queue behind.
    draining: bool,
}

struct WriteJob {
    seq: u64,
    records: Vec<Checkpoint>,
}

struct Batch {
    seq: u64,
    effects: Vec<Effect>,
    /// `None` while its records are being written; then whether that failed.
    written: Option<bool>,
}

impl CheckpointPipeline {
    /// Starts the writer thread, which owns the store and reports each
    /// batch as a command to the actor.
    fn start(
        mut store: Box<dyn MetaStore + Send>,
        commands: mpsc::Sender<AgentCommand>,
    ) -> std::io::Result<Self> {
        let (writer, jobs) = std::sync::mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("agent-checkpoint".into())
            .spawn(move || {
                for job in jobs {
                    let mut failed = false;
                    for record in &job.records {
                        if let Err(e) = checkpoint::apply(store.as_mut(), record) {
                            tracing::error!(error = %e, record = %record_name(record), "checkpoint write failed");
                            failed = true;
                        }
                    }
                    let done = AgentCommand::CheckpointWritten {
                        seq: job.seq,
                        failed,
                    };
                    // Blocks this writer (not the actor) while the actor's
                    // queue is full.
                    if commands.blocking_send(done).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            writer,
            waiting: VecDeque::new(),
            next_seq: 0,
            draining: false,
        })
    }

    /// Queues a batch: its records go to the writer, its other effects wait.
    fn push(&mut self, effects: Vec<Effect>) {
        let (records, effects): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Checkpoint(_)));
        let records: Vec<Checkpoint> = records
            .into_iter()
            .filter_map(|e| match e {
                Effect::Checkpoint(record) => Some(record),
                _ => None,
            })
            .collect();
        let seq = self.next_seq;
        self.next_seq += 1;
        let written = if records.is_empty() {
            Some(false)
        } else {
            let records = checkpoint::coalesce(records);
            // A writer that is gone wrote nothing: the batch counts as failed.
            self.writer
                .send(WriteJob { seq, records })
                .err()
                .map(|_| true)
        };
        self.waiting.push_back(Batch {
            seq,
            effects,
            written,
        });
    }

    fn written(&mut self, seq: u64, failed: bool) {
        if let Some(batch) = self.waiting.iter_mut().find(|b| b.seq == seq) {
            batch.written = Some(failed);
        }
    }

    /// The next batch whose records are written, in order.
    fn next_ready(&mut self) -> Option<(Vec<Effect>, bool)> {
        let failed = self.waiting.front()?.written?;
        self.waiting.pop_front().map(|b| (b.effects, failed))
    }
}

/// A process and its start time: a pid with another start time is not ours.
#[derive(Debug, Clone, Copy)]
struct ProcessRef {
    pid: u32,
    start_time: Option<u64>,
}

impl ProcessRef {
    /// Kills the executor and everything in its session: the executor
    /// leads a session of its own (setsid), and its task runs in it, in a
    /// process group of its own.
    fn kill(self) {
        if let Some(expected) = self.start_time
            && checkpoint::process_start_time(self.pid) != Some(expected)
        {
            return; // gone, and its pid may belong to someone else now
        }
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return;
        };
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
        for member in checkpoint::session_members(self.pid) {
            if let Some(member) = i32::try_from(member).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(member, rustix::process::Signal::KILL);
            }
        }
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

impl Actor {
    fn new(
        options: AgentOptions,
        store: Box<dyn MetaStore + Send>,
        containers: Containers,
        commands: mpsc::Sender<AgentCommand>,
        snapshot: watch::Sender<Arc<AgentSnapshot>>,
    ) -> std::io::Result<Self> {
        let info = pb::AgentInfo {
            hostname: options.hostname.clone(),
            port: Some(i32::from(options.advertise.port())),
            resources: options.resources.to_proto(None),
            attributes: options.attributes.clone(),
            id: None,
        };
        let seed: u64 = rand::rng().random();
        let token_key = crate::executor_auth::load_key(
            &options.work_dir.join("meta"),
            options.jwt_secret_key.as_deref(),
        )
        .map_err(std::io::Error::other)?;
        Ok(Self {
            token_key,
            launching_runs: HashMap::new(),
            executor_connections: None,
            state: AgentState::new(info, seed),
            started: Instant::now(),
            session: 0,
            master_tx: None,
            executors: HashMap::new(),
            processes: HashMap::new(),
            launches: HashMap::new(),
            next_launch: 0,
            sandboxes: HashMap::new(),
            checkpoint: CheckpointPipeline::start(store, commands.clone())?,
            commands,
            snapshot,
            last_snapshot: Instant::now(),
            dirty: true,
            containers,
            gc: Gc::new(options.gc),
            disk: None,
            disk_check_in_flight: false,
            refused: None,
            master_hostname: None,
            options,
        })
    }

    /// Sandboxes left on disk by earlier runs (an agent that crashed, a
    /// checkpoint discarded after a reboot) are found on a worker and
    /// scheduled for collection from their modification time.
    fn find_old_sandboxes(&self) {
        let work_dir = self.options.work_dir.clone();
        let commands = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let found = crate::gc::find_sandboxes(&work_dir);
            let _ = commands.blocking_send(AgentCommand::SandboxesFound(found));
        });
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn handle(&mut self, command: AgentCommand, out: &mut Vec<Effect>) {
        let now = self.now();
        match command {
            AgentCommand::MasterConnected { session, tx } => {
                self.session = session;
                self.state.on_master_disconnected();
                self.master_tx = Some(tx);
                self.send_to_master(self.state.register_message());
            }
            AgentCommand::MasterMessage { session, message } => {
                if session != self.session {
                    return;
                }
                self.master_message(now, message, out);
            }
            AgentCommand::MasterDisconnected { session } => {
                if session == self.session {
                    self.master_tx = None;
                    self.state.on_master_disconnected();
                }
            }
            AgentCommand::ExecutorSubscribe {
                conn,
                framework_id,
                executor_id,
                run_id,
                held,
                unacknowledged,
                events,
                reply,
            } => {
                if let Err(refusal) = self.check_executor_run(&framework_id, &executor_id, &run_id)
                {
                    let _ = reply.send(Err(refusal));
                    return;
                }
                self.executors.insert(conn, events);
                let result = self
                    .state
                    .on_executor_subscribe(
                        now,
                        conn,
                        &framework_id,
                        &executor_id,
                        &held,
                        unacknowledged,
                        out,
                    )
                    .map_err(ExecutorRefusal::Refused);
                if result.is_err() {
                    self.executors.remove(&conn);
                }
                let _ = reply.send(result);
            }
            AgentCommand::ExecutorUpdate {
                conn,
                framework_id,
                executor_id,
                status,
            } => self
                .state
                .on_executor_update(now, conn, &framework_id, &executor_id, status, out),
            AgentCommand::ExecutorMessage {
                conn,
                framework_id,
                executor_id,
                data,
            } => self
                .state
                .on_executor_message(conn, &framework_id, &executor_id, data, out),
            AgentCommand::ExecutorGone { conn } => {
                self.executors.remove(&conn);
                self.state.on_executor_disconnected(conn);
            }
            AgentCommand::ExecutorHttpCall {
                framework_id,
                executor_id,
                run_id,
                call,
                reply,
            } => {
                if let Err(refusal) = self.check_executor_run(&framework_id, &executor_id, &run_id)
                {
                    let _ = reply.send(Err(refusal));
                    return;
                }
                let conn = self
                    .state
                    .executors
                    .get(&(framework_id.clone(), executor_id.clone()))
                    .and_then(|e| e.conn);
                let Some(conn) = conn else {
                    let _ = reply.send(Err(ExecutorRefusal::Refused(format!(
                        "executor {executor_id} of framework {framework_id} is not subscribed"
                    ))));
                    return;
                };
                let _ = reply.send(Ok(()));
                if let Some(command) = executor_call(conn, &framework_id, &executor_id, call) {
                    self.handle(command, out);
                }
            }
            AgentCommand::ExecutorExited {
                framework_id,
                executor_id,
                description,
            } => {
                let key = (framework_id.clone(), executor_id.clone());
                self.processes.remove(&key);
                let (limitation, description) = self.exit_cause(&key, description);
                self.destroy_later(&key, None);
                self.schedule_gc(&key);
                self.state.on_executor_exited(
                    now,
                    &framework_id,
                    &executor_id,
                    description,
                    limitation,
                    out,
                );
            }
            AgentCommand::Statistics { reply } => self.statistics(reply),
            AgentCommand::CheckpointWritten { seq, failed } => {
                self.checkpoint.written(seq, failed);
                self.drain();
            }
            AgentCommand::DiskMeasured(measured) => self.disk_measured(measured),
            AgentCommand::ExecutorLaunched { id, outcome } => {
                self.executor_launch_finished(id, outcome)
            }
            AgentCommand::SandboxesFound(found) => {
                let live = self.live_sandboxes();
                for (path, modified) in found {
                    if !live.contains(&path) {
                        self.gc.schedule(path, modified);
                    }
                }
            }
        }
    }

    /// An executor's call is authenticated for run `run_id` (its token's):
    /// accepted only while that is the executor's current run here, so the
    /// token of a run that ended (or of a removed executor) is worthless.
    fn check_executor_run(
        &self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        run_id: &str,
    ) -> Result<(), ExecutorRefusal> {
        let key = (framework_id.clone(), executor_id.clone());
        let current = self.state.executors.get(&key).and_then(|executor| {
            executor
                .run
                .as_ref()
                .map(|run| run.run_id.as_str())
                .or_else(|| self.launching_runs.get(&key).map(String::as_str))
        });
        crate::executor_auth::current_run(current, run_id, framework_id, executor_id)
    }

    /// Kills an executor's processes (a scan of `/proc`) and destroys its
    /// container (up to ten seconds) on a worker: the loop goes on
    /// answering the master and executors meanwhile.
    fn destroy_later(&mut self, key: &(FrameworkId, ExecutorId), process: Option<ProcessRef>) {
        let destroy = self.containers.take(key);
        if destroy.is_none() && process.is_none() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            if let Some(process) = process {
                process.kill();
            }
            if let Some(destroy) = destroy {
                destroy.run();
            }
        });
    }

    /// The sandboxes of executors the agent still has: never collected.
    fn live_sandboxes(&self) -> std::collections::HashSet<PathBuf> {
        self.state
            .executors
            .iter()
            .filter_map(|(key, e)| {
                e.run
                    .as_ref()
                    .map(|r| r.sandbox.clone())
                    .or_else(|| self.sandboxes.get(key).cloned())
            })
            .collect()
    }

    /// An executor run is over: its sandbox goes after the gc delay.
    fn schedule_gc(&mut self, key: &(FrameworkId, ExecutorId)) {
        if let Some(sandbox) = self.sandboxes.get(key) {
            self.gc.schedule(sandbox.clone(), SystemTime::now());
        }
    }

    /// Measures the work dir's filesystem on a worker, one measure at a time.
    fn measure_disk(&mut self) {
        if self.disk_check_in_flight {
            return;
        }
        self.disk_check_in_flight = true;
        let work_dir = self.options.work_dir.clone();
        let commands = self.commands.clone();
        let probe = self.options.disk_probe;
        tokio::task::spawn_blocking(move || {
            let measured = probe(&work_dir).map_err(|e| e.to_string());
            let _ = commands.blocking_send(AgentCommand::DiskMeasured(measured));
        });
    }

    /// A new measure: full disks refuse tasks; due sandboxes are removed on
    /// a worker (sooner the fuller the disk).
    fn disk_measured(&mut self, measured: Result<DiskSpace, String>) {
        self.disk_check_in_flight = false;
        let space = match measured {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(error = %e, work_dir = %self.options.work_dir.display(), "cannot measure the work dir's disk");
                return;
            }
        };
        let full = space.is_full();
        if full != self.state.disk_full() {
            if full {
                tracing::warn!(
                    available_bytes = space.available_bytes,
                    work_dir = %self.options.work_dir.display(),
                    "agent disk full: new tasks are refused until space is freed"
                );
            } else {
                tracing::info!(
                    available_bytes = space.available_bytes,
                    "agent disk has room again: taking tasks"
                );
            }
            self.state.set_disk_full(full);
        }
        self.disk = Some(space);
        self.gc.set_disk_usage(space.usage());
        let live = self.live_sandboxes();
        let due: Vec<PathBuf> = self
            .gc
            .due(SystemTime::now())
            .into_iter()
            .filter(|p| !live.contains(p))
            .collect();
        if due.is_empty() {
            return;
        }
        let work_dir = self.options.work_dir.clone();
        tokio::task::spawn_blocking(move || {
            for sandbox in due {
                match crate::gc::remove_sandbox(&work_dir, &sandbox) {
                    Ok(()) => {
                        tracing::info!(sandbox = %sandbox.display(), "sandbox garbage-collected")
                    }
                    Err(e) => {
                        tracing::warn!(sandbox = %sandbox.display(), error = %e, "cannot remove a sandbox")
                    }
                }
            }
        });
    }

    fn master_message(&mut self, now: Duration, message: MasterMessage, out: &mut Vec<Effect>) {
        let Some(kind) = message.kind else {
            return;
        };
        match kind {
            master_message::Kind::Registered(registered) => {
                let epoch = registered.master_info.as_ref().and_then(|m| m.epoch);
                if !self.state.accept_master_epoch(epoch) {
                    tracing::warn!(epoch = ?epoch, "refusing a master from an older leadership term");
                    // Nothing more from this session is acted on; the
                    // session task reconnects when the leader changes.
                    self.session = 0;
                    self.master_tx = None;
                    self.state.on_master_disconnected();
                    return;
                }
                match AgentId::from_field(&registered.agent_id) {
                    Ok(agent_id) => {
                        tracing::info!(agent_id = %agent_id, "registered with the master");
                        self.refused = None;
                        self.master_hostname = registered
                            .master_info
                            .as_ref()
                            .and_then(|m| m.hostname.clone());
                        self.state.on_registered(now, agent_id, out);
                    }
                    Err(e) => tracing::warn!(error = %e, "master sent an invalid agent id"),
                }
            }
            master_message::Kind::RunTask(run) => self.state.on_run_task(now, run, out),
            master_message::Kind::KillTask(kill) => self.state.on_kill_task(now, kill, out),
            master_message::Kind::ShutdownExecutor(shutdown) => {
                self.state.on_shutdown_executor(now, shutdown, out);
            }
            master_message::Kind::StatusUpdateAck(ack) => self.state.on_status_ack(now, ack, out),
            master_message::Kind::ShutdownFramework(shutdown) => {
                if let Ok(framework_id) = FrameworkId::from_field(&shutdown.framework_id) {
                    self.state.on_shutdown_framework(now, &framework_id, out);
                }
            }
            master_message::Kind::Ping(ping) => {
                // Straight out, not behind checkpoint writes in flight: a
                // pong says the agent is alive, and is ordered with nothing.
                let pong = AgentMessage {
                    kind: Some(pb::agent::agent_message::Kind::Pong(
                        pb::agent::agent_message::Pong { seq: ping.seq },
                    )),
                };
                self.send_to_master(pong);
            }
            master_message::Kind::FrameworkMessage(message) => {
                self.state.on_framework_message(message, out);
            }
            master_message::Kind::Refused(refused) => {
                tracing::error!(reason = %refused.message, "the master refused this agent");
                // Kept for `/health` and `/state` until a master accepts
                // us: the session retries, and each refusal restates it.
                self.refused = Some(refused.message);
            }
        }
    }

    /// Runs a batch of effects once its checkpoint records are on disk.
    fn execute(&mut self, effects: Vec<Effect>) {
        self.checkpoint.push(effects);
        self.drain();
    }

    /// Runs every batch whose records are written, in order.
    fn drain(&mut self) {
        if self.checkpoint.draining {
            return; // the outer drain picks up what effects add
        }
        self.checkpoint.draining = true;
        while let Some((effects, failed)) = self.checkpoint.next_ready() {
            self.run_effects(effects, failed);
        }
        self.checkpoint.draining = false;
    }

    /// A batch's effects. If one of its records could not be written, no
    /// acknowledgement of this batch reaches an executor: the executor keeps
    /// the update and sends it again, and the write is retried then.
    fn run_effects(&mut self, effects: Vec<Effect>, checkpoint_failed: bool) {
        for effect in effects {
            match effect {
                Effect::Checkpoint(_) => {}
                Effect::ToExecutor { event, .. }
                    if checkpoint_failed
                        && event.r#type == exec::event::Type::Acknowledged as i32 =>
                {
                    tracing::warn!("acknowledgement held back: its update is not checkpointed");
                }
                Effect::ToMaster(message) => self.send_to_master(message),
                Effect::LaunchExecutor {
                    framework_id,
                    executor_id,
                } => self.launch_executor(framework_id, executor_id),
                Effect::ToExecutor { conn, event } => self.send_to_executor(conn, event),
                Effect::DestroyExecutor {
                    framework_id,
                    executor_id,
                } => {
                    let key = (framework_id, executor_id);
                    // A launch in flight is given up: what it starts is
                    // destroyed when its result comes.
                    self.launches.remove(&key);
                    let process = self.processes.get(&key).copied();
                    self.destroy_later(&key, process);
                }
                Effect::UpdateContainer {
                    framework_id,
                    executor_id,
                } => {
                    let resources = self.state.container_resources(&framework_id, &executor_id);
                    self.containers
                        .update(&(framework_id, executor_id), &resources);
                }
            }
        }
    }

    /// Why an executor's process ended, beyond its exit status: the memory
    /// limit, or a failure its launch wrapper left in the sandbox.
    fn exit_cause(
        &self,
        key: &(FrameworkId, ExecutorId),
        description: String,
    ) -> (Option<pb::task_status::Reason>, String) {
        if self.containers.oom_killed(key) {
            return (
                Some(pb::task_status::Reason::ContainerLimitationMemory),
                format!("memory limit exceeded: the container was OOM-killed ({description})"),
            );
        }
        if let Some(sandbox) = self.sandboxes.get(key) {
            let path = crate::containers::launch_failure_path(sandbox);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let _ = std::fs::remove_file(&path);
                if let Ok(failure) = serde_json::from_str::<launch::LaunchFailure>(&text) {
                    return (Some(failure.reason()), failure.message);
                }
            }
        }
        (None, description)
    }

    /// `/monitor/statistics`: one entry per container, read (cgroup files,
    /// sandbox walks) on a worker that answers `reply` itself.
    fn statistics(&self, reply: oneshot::Sender<Vec<ContainerStatistics>>) {
        let jobs: Vec<(String, crate::containers::StatsJob)> = self
            .containers
            .keys()
            .into_iter()
            .filter_map(|key| {
                let resources = self.state.container_resources(&key.0, &key.1);
                let name = self
                    .state
                    .executors
                    .get(&key)
                    .and_then(|e| e.info.as_ref())
                    .and_then(|i| i.name.clone())
                    .unwrap_or_else(|| format!("Command Executor (Task: {})", key.1));
                let sandbox = self.sandboxes.get(&key).map(PathBuf::as_path);
                let job = self.containers.stats_job(&key, sandbox, resources)?;
                Some((name, job))
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            let entries = jobs
                .into_iter()
                .map(|(name, job)| ContainerStatistics {
                    framework_id: job.key.0.to_string(),
                    executor_id: job.key.1.to_string(),
                    executor_name: name,
                    source: job.key.1.to_string(),
                    statistics: job.run(),
                })
                .collect();
            let _ = reply.send(entries);
        });
    }

    /// Publishes the snapshot readers see, at most every [`SNAPSHOT_INTERVAL`]
    /// (its cost grows with the tasks kept, so never once per event).
    fn publish(&mut self, force: bool) {
        if !self.dirty || (!force && self.last_snapshot.elapsed() < SNAPSHOT_INTERVAL) {
            return;
        }
        self.dirty = false;
        self.last_snapshot = Instant::now();
        // Sandboxes are only kept for tasks the snapshot still shows.
        if self.sandboxes.len() > self.state.tasks.len() + self.state.completed.len() {
            let keep: std::collections::HashSet<(FrameworkId, ExecutorId)> = self
                .state
                .tasks
                .values()
                .chain(self.state.completed.iter())
                .map(|t| (t.framework_id.clone(), t.executor_id.clone()))
                .collect();
            self.sandboxes.retain(|key, _| keep.contains(key));
        }
        let view = |t: &crate::state::TaskRecord| TaskView {
            id: t
                .info
                .task_id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default(),
            framework_id: t.framework_id.to_string(),
            state: agora_core::task::name(t.state),
            sandbox: self
                .sandboxes
                .get(&(t.framework_id.clone(), t.executor_id.clone()))
                .map(|p| p.display().to_string()),
        };
        let snapshot = AgentSnapshot {
            id: self.state.agent_id.as_ref().map(|a| a.to_string()),
            hostname: self.options.hostname.clone(),
            master: self.options.master.clone(),
            registered: self.state.registered(),
            resources: self.options.resources.summary(),
            tasks: self.state.tasks.values().map(view).collect(),
            completed_tasks: self.state.completed.iter().map(view).collect(),
            disk_full: self.state.disk_full(),
            disk: self.disk,
            sandboxes_awaiting_gc: self.gc.scheduled(),
            refused: self.refused.clone(),
            gauges: Some(crate::metrics::gauges_from_state(&self.state)),
            mesos: crate::mesos_v0::MesosView::build(
                &self.state,
                &self.sandboxes,
                self.master_hostname.as_deref(),
            ),
        };
        self.snapshot.send_replace(Arc::new(snapshot));
    }

    /// Takes over what the checkpoint holds: executors still alive are
    /// watched until they exit (they are not our children) and given time
    /// to re-subscribe; those already gone are reported at once.
    fn recover(&mut self, recovered: Recovered) {
        let executors = recovered.executors.clone();
        let mut out = Vec::new();
        let now = self.now();
        self.state.recover(now, recovered, &mut out);
        for executor in executors {
            let key = (executor.framework_id.clone(), executor.executor_id.clone());
            // The state machine refused this executor's record (and failed
            // its tasks): whatever of it still runs is destroyed, as nothing
            // accounts for it any more.
            let refused = !self.state.executors.contains_key(&key);
            let Some(run) = executor.run else {
                // Crashed between starting it and writing its pid: if it runs,
                // it re-subscribes in time; if not, the deadline fails its task.
                continue;
            };
            self.sandboxes.insert(key.clone(), run.sandbox.clone());
            let process = ProcessRef {
                pid: run.pid,
                start_time: (run.start_time != 0).then_some(run.start_time),
            };
            let alive = checkpoint::process_start_time(run.pid)
                .is_some_and(|t| process.start_time.is_none_or(|s| s == t));
            self.containers.recover(key.clone(), &run.run_id);
            if refused {
                self.destroy_later(&key, alive.then_some(process));
                self.schedule_gc(&key);
                continue;
            }
            if !alive {
                let (limitation, description) =
                    self.exit_cause(&key, "it exited while the agent was down".into());
                self.destroy_later(&key, None);
                self.schedule_gc(&key);
                self.state.on_executor_exited(
                    now,
                    &executor.framework_id,
                    &executor.executor_id,
                    description,
                    limitation,
                    &mut out,
                );
                continue;
            }
            self.processes.insert(key, process);
            let commands = self.commands.clone();
            tokio::spawn(async move {
                watch_process(process).await;
                let _ = commands
                    .send(AgentCommand::ExecutorExited {
                        framework_id: executor.framework_id,
                        executor_id: executor.executor_id,
                        description: "the recovered executor process exited".into(),
                    })
                    .await;
            });
        }
        self.execute(out);
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<AgentCommand>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut publish = tokio::time::interval(SNAPSHOT_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut out = Vec::new();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command, &mut out);
                    while let Ok(command) = commands.try_recv() {
                        self.handle(command, &mut out);
                    }
                }
                _ = tick.tick() => {
                    let now = self.now();
                    self.state.on_tick(now, &mut out);
                    self.measure_disk();
                }
                _ = publish.tick() => {
                    self.publish(true);
                    continue;
                }
            }
            self.dirty = true;
            self.execute(out);
            self.publish(false);
        }
    }
}

/// Names a checkpoint record for logs (without its payload).
fn record_name(record: &Checkpoint) -> String {
    match record {
        Checkpoint::AgentId(id) => format!("agent id {id}"),
        Checkpoint::Framework(info) => format!(
            "framework {}",
            info.id.as_ref().map(|i| i.value.as_str()).unwrap_or("")
        ),
        Checkpoint::RemoveFramework(id) => format!("removal of framework {id}"),
        Checkpoint::Executor { executor_id, .. } => format!("executor {executor_id}"),
        Checkpoint::RemoveExecutor { executor_id, .. } => {
            format!("removal of executor {executor_id}")
        }
        Checkpoint::Task { info, .. } => format!(
            "task {}",
            info.task_id
                .as_ref()
                .map(|i| i.value.as_str())
                .unwrap_or("")
        ),
        Checkpoint::TaskUpdates { task_id, .. } => format!("updates of task {task_id}"),
        Checkpoint::RemoveTask { task_id, .. } => format!("removal of task {task_id}"),
    }
}

/// Waits until the process (not our child) exits. A pidfd when the kernel
/// has them, else a bounded poll of `/proc/<pid>/stat`; the start time
/// guards against a reused pid.
async fn watch_process(process: ProcessRef) {
    let alive = move || {
        let now = checkpoint::process_start_time(process.pid);
        now.is_some() && (process.start_time.is_none() || now == process.start_time)
    };
    if let Some(pid) = i32::try_from(process.pid).ok().and_then(Pid::from_raw)
        && let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
    {
        // Checked after opening: the pidfd now pins the process we verified.
        if !alive() {
            return;
        }
        // Deprecated because a generic `T` may close its fd behind tokio's
        // back; an `OwnedFd` moved in stays open as long as the `AsyncFd`.
        #[allow(deprecated)]
        let registered = tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE);
        if let Ok(fd) = registered {
            // Readable once the process has exited.
            let _ = fd.readable().await;
            return;
        }
    }
    while alive() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Opens the checkpoint under `<work_dir>/meta`. Same boot: what it holds.
/// Another boot (the machine rebooted, so every executor is gone): the
/// checkpoint is discarded and the agent starts as a new one; sandboxes are
/// left on disk.
fn open_checkpoint(work_dir: &std::path::Path) -> Result<(FsStore, Recovered), AgentError> {
    let meta = work_dir.join("meta");
    let fail = |source| AgentError::Checkpoint {
        path: meta.clone(),
        source,
    };
    let boot_id = match checkpoint::current_boot_id() {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the boot id; a reboot will not be noticed");
            "unknown".to_string()
        }
    };
    let mut store = FsStore::new(meta.clone());
    // A checkpoint written by an older agent (or by hand) becomes readable
    // by root only before anything is read from it.
    match store.harden() {
        Ok(0) => {}
        Ok(changed) => {
            tracing::info!(dir = %meta.display(), changed, "checkpoint made readable by root only")
        }
        Err(e) => return Err(fail(e)),
    }
    let stored = store
        .read(std::path::Path::new(checkpoint::BOOT_ID))
        .map_err(fail)?;
    let stored = stored.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let recovered = match stored {
        Some(previous) if previous == boot_id => checkpoint::recover(&store),
        Some(previous) => {
            tracing::info!(
                previous_boot_id = %previous,
                boot_id = %boot_id,
                "the machine rebooted since the last checkpoint: starting clean as a new agent (old sandboxes are kept, the checkpoint is discarded)"
            );
            std::fs::remove_dir_all(&meta).map_err(fail)?;
            Recovered::default()
        }
        None => {
            if meta.exists() {
                tracing::warn!(dir = %meta.display(), "checkpoint without a boot id discarded");
                std::fs::remove_dir_all(&meta).map_err(fail)?;
            }
            Recovered::default()
        }
    };
    store
        .write(
            std::path::Path::new(checkpoint::BOOT_ID),
            boot_id.as_bytes(),
        )
        .map_err(fail)?;
    Ok((store, recovered))
}

fn jitter(base: Duration) -> Duration {
    let factor: f64 = rand::rng().random_range(0.5..1.0);
    base.mul_f64(factor)
}

/// The master's gRPC endpoint: `https://` whenever the agent has a CA to
/// verify it with, `http://` otherwise, whatever scheme `master` names.
fn master_endpoint(master: &str, https: bool) -> String {
    let rest = master
        .strip_prefix("http://")
        .or_else(|| master.strip_prefix("https://"))
        .unwrap_or(master);
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{rest}")
}

/// Keeps a session with the master open, re-registering with backoff.
/// Where the agent finds the leading master: a fixed address, or whoever
/// leads according to ZooKeeper (`zk://host:2181/agora`).
enum MasterSource {
    Fixed(String),
    /// The detector, and whether the leader is reached over https.
    ZooKeeper(agora_coord::LeaderDetector, bool),
}

impl MasterSource {
    fn new(master: &str, https: bool) -> Self {
        if master.starts_with("zk://") {
            match agora_coord::ZkUrl::parse(master) {
                Ok(url) => {
                    return MasterSource::ZooKeeper(
                        agora_coord::LeaderDetector::zookeeper(
                            &url,
                            agora_coord::ZkOptions::default(),
                        ),
                        https,
                    );
                }
                Err(e) => {
                    tracing::error!(master, error = %e, "invalid zk url; using it as an address")
                }
            }
        }
        MasterSource::Fixed(master_endpoint(master, https))
    }

    /// The leader's endpoint, waiting (until shutdown) while none is known.
    async fn endpoint(&self, shutdown: &CancellationToken) -> Option<String> {
        match self {
            MasterSource::Fixed(endpoint) => Some(endpoint.clone()),
            MasterSource::ZooKeeper(detector, https) => loop {
                if shutdown.is_cancelled() {
                    return None;
                }
                if let Some(leader) = detector.wait_for_leader(Duration::from_secs(5)).await {
                    let https = *https || leader.is_https();
                    return Some(master_endpoint(&leader.endpoint(), https));
                }
                tracing::warn!("no leading master known yet");
            },
        }
    }

    /// Resolves when the leader changes away from `endpoint` (never for a fixed master).
    async fn leader_moved(&self, endpoint: &str) {
        match self {
            MasterSource::Fixed(_) => std::future::pending().await,
            MasterSource::ZooKeeper(detector, https) => {
                let mut leader = detector.leader();
                loop {
                    let current = leader
                        .borrow_and_update()
                        .as_ref()
                        .map(|l| master_endpoint(&l.endpoint(), *https || l.is_https()));
                    if current.is_some() && current.as_deref() != Some(endpoint) {
                        return;
                    }
                    if leader.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

/// A gRPC client of the master at `endpoint`, over TLS when it is https.
async fn connect_master(
    endpoint: &str,
    tls: Option<&agora_tls::ClientTls>,
) -> Result<AgentSessionClient<tonic::transport::Channel>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| format!("invalid master address {endpoint}: {e}"))?;
    let channel = agora_tls::connect_channel(endpoint, tls)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(AgentSessionClient::new(channel))
}

/// An error with its sources (a TLS refusal is the innermost one).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

async fn master_session(
    master: String,
    credential: Option<agora_auth::credentials::Credential>,
    commands: mpsc::Sender<AgentCommand>,
    shutdown: CancellationToken,
    tls: Option<agora_tls::ClientTls>,
) {
    let source = MasterSource::new(&master, tls.is_some());
    let mut backoff = BACKOFF_MIN;
    let mut session = 0u64;
    while !shutdown.is_cancelled() {
        session += 1;
        let mut heard_from_master = false;
        let Some(endpoint) = source.endpoint(&shutdown).await else {
            return;
        };
        match connect_master(&endpoint, tls.as_ref()).await {
            Ok(mut client) => {
                let (tx, rx) = outbox();
                let stuck = rx.stuck_signal();
                if commands
                    .send(AgentCommand::MasterConnected { session, tx })
                    .await
                    .is_err()
                {
                    return;
                }
                // A stuck session's stream just ends; `stuck` ends the session.
                // The agent's credential (`--credential`) in the session's
                // metadata, checked by the master's authentication layer.
                let mut request = Request::new(rx.map_while(Result::ok));
                if let Some(value) = credential.as_ref().and_then(crate::authn::metadata_value) {
                    request.metadata_mut().insert("authorization", value);
                }
                match client.open(request).await {
                    Ok(response) => {
                        let mut inbound = response.into_inner();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = source.leader_moved(&endpoint) => {
                                    tracing::info!("the leading master changed; re-registering");
                                    break;
                                }
                                _ = stuck.stuck() => {
                                    tracing::info!("the master session was stuck; re-registering");
                                    break;
                                }
                                message = inbound.message() => match message {
                                    Ok(Some(message)) => {
                                        heard_from_master = true;
                                        // Awaited: while the actor is behind, this stops reading
                                        // and HTTP/2 flow control slows the master.
                                        if commands.send(AgentCommand::MasterMessage { session, message }).await.is_err() {
                                            return;
                                        }
                                    }
                                    Ok(None) => break,
                                    Err(status) => {
                                        tracing::warn!(code = ?status.code(), message = %status.message(), "master session ended");
                                        break;
                                    }
                                },
                            }
                        }
                    }
                    Err(status) => {
                        if status.code() == tonic::Code::Unauthenticated {
                            tracing::error!(message = %status.message(), retry_in_ms = backoff.as_millis() as u64, "the master refused this agent's credential (--credential); retrying");
                        } else {
                            tracing::warn!(code = ?status.code(), message = %status.message(), "master refused the session");
                        }
                    }
                }
                let _ = commands
                    .send(AgentCommand::MasterDisconnected { session })
                    .await;
            }
            Err(e) => {
                tracing::warn!(master = %master, error = %e, retry_in_ms = backoff.as_millis() as u64, "master unreachable")
            }
        }
        if heard_from_master {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(jitter(backoff)) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[derive(Clone)]
struct ExecutorService {
    commands: mpsc::Sender<AgentCommand>,
    next_conn: Arc<AtomicU64>,
    /// Verifies the executors' tokens.
    key: TokenKey,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<exec::Event, Status>> + Send>>;

/// An executor's event stream: everything the actor pushed, in order; a
/// stream given up as stuck ends with UNAVAILABLE, and the executor
/// re-subscribes.
fn event_stream(rx: Inbox<exec::Event>) -> EventStream {
    Box::pin(rx.map(|event| {
        event.map_err(|stuck| {
            Status::unavailable(format!("stream closed: {stuck}; subscribe again"))
        })
    }))
}

#[tonic::async_trait]
impl Executor for ExecutorService {
    type OpenStream = EventStream;

    async fn open(
        &self,
        request: Request<Streaming<exec::Call>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(SUBSCRIBE_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no subscription received"))??
            .ok_or_else(|| Status::invalid_argument("stream closed before subscribing"))?;
        if first.r#type != call::Type::Subscribe as i32 {
            return Err(Status::invalid_argument("the first call must be SUBSCRIBE"));
        }
        let framework_id = FrameworkId::from_field(&first.framework_id)
            .map_err(|e| Status::invalid_argument(format!("framework id: {e}")))?;
        let executor_id = ExecutorId::from_field(&first.executor_id)
            .map_err(|e| Status::invalid_argument(format!("executor id: {e}")))?;
        let run_id = crate::executor_auth::authenticate(
            &self.key,
            authorization.as_deref(),
            &framework_id,
            &executor_id,
        )
        .map_err(|why| {
            log_refusal("grpc", &framework_id, &executor_id, "subscribe", &why);
            Status::unauthenticated(why)
        })?;
        let (conn, rx) = subscribe_executor(
            &self.commands,
            &self.next_conn,
            &framework_id,
            &executor_id,
            run_id,
            first.subscribe.unwrap_or_default(),
        )
        .await
        .map_err(|failure| match failure {
            SubscribeFailure::Refused(why) => Status::not_found(why),
            SubscribeFailure::Unauthenticated(why) => {
                log_refusal("grpc", &framework_id, &executor_id, "subscribe", &why);
                Status::unauthenticated(why)
            }
            SubscribeFailure::ShuttingDown => Status::unavailable("agent is shutting down"),
        })?;
        let stuck = rx.stuck_signal();
        let commands = self.commands.clone();
        tokio::spawn(async move {
            loop {
                let call = tokio::select! {
                    // Given up as stuck: its updates wait for its next subscription.
                    _ = stuck.stuck() => break,
                    call = inbound.message() => match call {
                        Ok(Some(call)) => call,
                        Ok(None) => break,
                        Err(e) => {
                            // A call over the gRPC message size cannot be
                            // decoded: the stream is lost (the executor
                            // re-subscribes), and the operator is told why.
                            if e.code() == tonic::Code::OutOfRange {
                                tracing::warn!(executor_id = %executor_id, error = %e, "executor call too large; its stream is closed");
                            } else {
                                tracing::debug!(executor_id = %executor_id, error = %e, "executor stream ended");
                            }
                            break;
                        }
                    },
                };
                let command = executor_call(conn, &framework_id, &executor_id, call);
                // Awaited: a flooding executor is slowed by flow control.
                if let Some(command) = command
                    && commands.send(command).await.is_err()
                {
                    break;
                }
            }
            let _ = commands.send(AgentCommand::ExecutorGone { conn }).await;
        });
        Ok(Response::new(event_stream(rx)))
    }
}

/// Why an executor's subscription was not opened.
enum SubscribeFailure {
    /// The actor refused it (no such executor here); the reason says why.
    Refused(String),
    /// The token is not for the executor's current run.
    Unauthenticated(String),
    ShuttingDown,
}

/// Logs a refused executor call with its fields (never its token).
fn log_refusal(
    api: &'static str,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
    call: &str,
    why: &str,
) {
    tracing::warn!(
        api,
        framework_id = %framework_id,
        executor_id = %executor_id,
        call,
        reason = %why,
        "executor call refused: not authenticated"
    );
}

/// Subscribes an executor through the actor: the one path for the gRPC and
/// the HTTP executor APIs. Returns the stream's connection id and the
/// events the actor pushes to it.
async fn subscribe_executor(
    commands: &mpsc::Sender<AgentCommand>,
    next_conn: &AtomicU64,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
    run_id: String,
    subscribe: call::Subscribe,
) -> Result<(ExecutorConn, Inbox<exec::Event>), SubscribeFailure> {
    // Tasks the executor already holds (Mesos' "unacknowledged tasks").
    let held = subscribe
        .unacknowledged_tasks
        .iter()
        .filter_map(|t| TaskId::from_field(&t.task_id).ok())
        .collect();
    let unacknowledged = subscribe
        .unacknowledged_updates
        .into_iter()
        .filter_map(|u| u.status)
        .collect();
    let conn = next_conn.fetch_add(1, Ordering::Relaxed);
    let (events, rx) = outbox();
    let (reply, answer) = oneshot::channel();
    commands
        .send(AgentCommand::ExecutorSubscribe {
            conn,
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            run_id,
            held,
            unacknowledged,
            events,
            reply,
        })
        .await
        .map_err(|_| SubscribeFailure::ShuttingDown)?;
    answer
        .await
        .map_err(|_| SubscribeFailure::ShuttingDown)?
        .map_err(|refusal| match refusal {
            ExecutorRefusal::Refused(why) => SubscribeFailure::Refused(why),
            ExecutorRefusal::Unauthenticated(why) => SubscribeFailure::Unauthenticated(why),
        })?;
    Ok((conn, rx))
}

/// The command for an executor's UPDATE or MESSAGE, whichever API it came
/// through; other calls after SUBSCRIBE are ignored.
fn executor_call(
    conn: ExecutorConn,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
    call: exec::Call,
) -> Option<AgentCommand> {
    match call::Type::try_from(call.r#type) {
        Ok(call::Type::Update) => {
            call.update
                .and_then(|u| u.status)
                .map(|status| AgentCommand::ExecutorUpdate {
                    conn,
                    framework_id: framework_id.clone(),
                    executor_id: executor_id.clone(),
                    status,
                })
        }
        Ok(call::Type::Message) => call.message.map(|m| AgentCommand::ExecutorMessage {
            conn,
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            data: m.data,
        }),
        _ => {
            tracing::debug!(executor_id = %executor_id, call_type = call.r#type, "executor call ignored");
            None
        }
    }
}

/// What `/monitor/statistics` reads: the actor, and the snapshot and ACLs
/// that say which containers each viewer may see.
type StatisticsState = (
    mpsc::Sender<AgentCommand>,
    watch::Receiver<Arc<AgentSnapshot>>,
    Arc<agora_auth::acl::Acls>,
);

/// Mesos' `/monitor/statistics`: resource use of every container the
/// viewer may see (`crate::authz_views`).
async fn statistics(
    State((commands, snapshot, acls)): State<StatisticsState>,
    viewer: crate::authz_views::Viewer,
) -> Result<Json<Vec<ContainerStatistics>>, (axum::http::StatusCode, &'static str)> {
    let (reply, answer) = oneshot::channel();
    let unavailable = (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "agent is shutting down",
    );
    commands
        .send(AgentCommand::Statistics { reply })
        .await
        .map_err(|_| unavailable)?;
    let entries = answer.await.map_err(|_| unavailable)?;
    let current = snapshot.borrow().clone();
    Ok(Json(crate::authz_views::filtered_statistics(
        entries,
        &current,
        &acls,
        viewer.0.as_ref(),
    )))
}

/// Per-task statistics for `/metrics`, asked of the actor as `/monitor/statistics` does.
fn task_stats_source(commands: mpsc::Sender<AgentCommand>) -> crate::metrics::TaskStatsSource {
    Arc::new(move || {
        let commands = commands.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            if commands
                .send(AgentCommand::Statistics { reply })
                .await
                .is_err()
            {
                return Vec::new();
            }
            let entries = answer.await.unwrap_or_default();
            entries.iter().map(crate::metrics::task_stats_of).collect()
        })
    })
}

/// What `/health` answers.
#[derive(Debug, Serialize)]
struct Health {
    /// Always `ok`: the process is alive and serving (a liveness probe must
    /// not restart an agent because its master is away).
    status: &'static str,
    /// `connected` once registered with a master; `refused` while the
    /// master refuses its registration (`reason` says why); else
    /// `disconnected`.
    master: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `full` while new tasks are refused for lack of disk.
    disk: &'static str,
}

/// Mesos' `/health` is process liveness, so this is 200 whenever the agent
/// serves; the body says what an operator needs to know besides.
async fn health(State(snapshot): State<watch::Receiver<Arc<AgentSnapshot>>>) -> Json<Health> {
    let current = snapshot.borrow().clone();
    Json(Health {
        status: "ok",
        master: match (current.registered, &current.refused) {
            (true, _) => "connected",
            (false, Some(_)) => "refused",
            (false, None) => "disconnected",
        },
        reason: current.refused.clone().filter(|_| !current.registered),
        disk: if current.disk_full { "full" } else { "ok" },
    })
}

/// Runs the agent on `listener` until `shutdown` is cancelled. Tasks keep
/// running when the agent stops: they live under their own executors.
pub async fn run_agent(
    listener: TcpListener,
    options: AgentOptions,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    // Both read before anything starts, so a bad file changes nothing.
    let tls_server = options.tls.server()?;
    let tls_client = options.tls.client()?;
    std::fs::create_dir_all(&options.work_dir).map_err(|source| AgentError::WorkDir {
        path: options.work_dir.clone(),
        source,
    })?;
    let (store, recovered) = open_checkpoint(&options.work_dir)?;
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(AgentSnapshot::default()));
    let containers = Containers::new(&options.containers)?;
    let mut actor = Actor::new(
        options.clone(),
        Box::new(store),
        containers,
        commands.clone(),
        snapshot_tx,
    )
    .map_err(|source| AgentError::Checkpoint {
        path: options.work_dir.join("meta"),
        source,
    })?;
    let token_key = actor.token_key.clone();
    let (executor_connections, handed_in) = mpsc::unbounded_channel();
    actor.executor_connections = Some(executor_connections);
    actor.recover(recovered);
    actor.find_old_sandboxes();
    let actor_task = tokio::spawn(actor.run(command_rx, shutdown.clone()));
    let session_task = tokio::spawn(master_session(
        options.master.clone(),
        options.authentication.credential.clone(),
        commands.clone(),
        shutdown.clone(),
        tls_client,
    ));
    let next_executor_conn = Arc::new(AtomicU64::new(1));
    let service = ExecutorService {
        commands: commands.clone(),
        next_conn: next_executor_conn.clone(),
        key: token_key.clone(),
    };
    let app = axum::Router::new()
        .route("/health", get(health))
        .with_state(snapshot_rx.clone())
        // `/state` (Agora's, with Mesos' keys), `/slave(1)/state`, `/metrics/snapshot`, `/version`.
        .merge(crate::mesos_v0::router(snapshot_rx.clone(), &options))
        .merge(
            axum::Router::new()
                .route("/monitor/statistics", get(statistics))
                .with_state((commands.clone(), snapshot_rx.clone(), options.acls.clone())),
        )
        .merge(crate::files_authz::guard(
            crate::files::router(&options.work_dir),
            options.acls.clone(),
            snapshot_rx.clone(),
        ))
        .merge(crate::operator_api::router(snapshot_rx.clone(), &options))
        .merge(executor_http::router(executor_http::ExecutorApi {
            commands: commands.clone(),
            next_conn: next_executor_conn,
            key: token_key,
        }))
        .merge(crate::metrics::router(
            snapshot_rx.clone(),
            Some(task_stats_source(commands.clone())),
        ))
        .route_service(
            &format!(
                "/{}/{{*method}}",
                <ExecutorServer<ExecutorService> as tonic::server::NamedService>::NAME
            ),
            ExecutorServer::new(service),
        );
    // `get_endpoints`, then (outermost, so first) authentication over every
    // route (the executor APIs are left to their tokens).
    let app = app.layer(axum::middleware::from_fn_with_state(
        options.acls.clone(),
        crate::files_authz::guard_endpoints,
    ));
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(options.authentication.clone()),
        crate::authn::layer,
    ));
    // The executors' first connections: the same routes and layers as the
    // port, over the socket pairs handed to executors at launch.
    let local_task = tokio::spawn(agora_net::serve_local(
        handed_in,
        app.clone(),
        agora_net::ServeLimits::default(),
        shutdown.clone(),
    ));
    tracing::info!(address = %options.advertise, master = %options.master, "agent serving");
    // The shared accept loop: connection cap, header-read timeout, TCP_NODELAY.
    let tls = tls_server.map(|tls| tls.acceptor());
    agora_net::serve_tls(
        listener,
        app,
        agora_net::ServeLimits::default(),
        tls,
        shutdown.clone(),
    )
    .await?;
    shutdown.cancel();
    let _ = actor_task.await;
    let _ = session_task.await;
    let _ = local_task.await;
    Ok(())
}

mod executor_http;
mod launching;
mod streams;
#[cfg(test)]
mod tests;
