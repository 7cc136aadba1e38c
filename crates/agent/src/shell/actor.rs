//! The agent's actor: one tokio task owns the [`AgentState`], turns each
//! [`AgentCommand`] into a state-machine input, and runs the effects that
//! come out once their checkpoint records are on disk. It never blocks:
//! launches, destroys, kills, statistics, disk walks and checkpoint writes
//! run on workers and come back as commands; it sleeps until the next
//! deadline (`timers.rs`), not on a tick.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_auth::executor_token::TokenKey;
use agora_core::{AgentId, ExecutorId, FrameworkId};
use agora_net::outbox::Outbox;
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{AgentMessage, MasterMessage, master_message};
use agora_proto::v1::executor as exec;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint_writer::CheckpointPipeline;
use super::command::{AgentCommand, executor_call};
use super::processes::ExecutorProcess;
use crate::checkpoint::MetaStore;
use crate::containers::Containers;
use crate::executor_auth::ExecutorRefusal;
use crate::gc::{DiskSpace, Gc};
use crate::options::AgentOptions;
use crate::snapshot::{AgentSnapshot, ContainerStatistics};
use crate::state::{AgentState, Effect, ExecutorConn};

mod containers;
mod effects;
mod hosting;
mod launches;
mod publish;
mod streams;
mod timers;

/// Readers of `/state` see the agent at most this stale, while a snapshot
/// is cheap to build.
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(20);
/// The snapshot is rebuilt from the whole state (O(tasks), the completed
/// ones included), so it is published at most every this many times its
/// last build's cost: at most 1/20 of the loop's time goes to it, whatever
/// the agent holds (a batch of 1,000 launches spent 12 % of the agent's CPU
/// rebuilding it every 20 ms).
const SNAPSHOT_COST_FACTOR: u32 = 20;

pub(super) struct Actor {
    pub(super) state: AgentState,
    pub(super) options: AgentOptions,
    pub(super) started: Instant,
    pub(super) session: u64,
    /// The master session's outbox, and every subscribed executor's: the
    /// loop pushes without waiting and nothing is dropped for a slow peer
    /// (`streams.rs`).
    pub(super) master_tx: Option<Outbox<AgentMessage>>,
    pub(super) executors: HashMap<ExecutorConn, Outbox<exec::Event>>,
    /// What runs each executor (its process, or its run in the
    /// supervisor), for killing executors that have not subscribed.
    pub(super) processes: HashMap<(FrameworkId, ExecutorId), ExecutorProcess>,
    /// Custom executors started and not yet recorded, each held at its
    /// start gate (`launching::Running::Process`) until its record is on
    /// disk. Removing one closes it: that executor ends without running
    /// its program.
    pub(super) start_gates: HashMap<(FrameworkId, ExecutorId), std::os::unix::net::UnixStream>,
    /// The executor supervisor and the runs it hosts (`hosting.rs`).
    pub(super) hosting: hosting::Hosting,
    /// The launch in flight on a worker for each executor being started
    /// (its sequence number); a destroyed executor's entry goes, which
    /// makes its launch stale (`launching.rs`).
    pub(super) launches: HashMap<(FrameworkId, ExecutorId), u64>,
    pub(super) next_launch: u64,
    pub(super) sandboxes: HashMap<(FrameworkId, ExecutorId), PathBuf>,
    pub(super) commands: mpsc::Sender<AgentCommand>,
    pub(super) snapshot: watch::Sender<Arc<AgentSnapshot>>,
    pub(super) last_snapshot: Instant,
    /// What building the last snapshot took (`publish.rs`).
    pub(super) snapshot_cost: Duration,
    pub(super) dirty: bool,
    pub(super) checkpoint: CheckpointPipeline,
    pub(super) containers: Containers,
    pub(super) gc: Gc,
    pub(super) disk: Option<DiskSpace>,
    pub(super) disk_check_in_flight: bool,
    /// Requests for `/monitor/statistics` (and `/metrics`) waiting for
    /// the read in flight: concurrent scrapes share one read, so cgroup
    /// reads and sandbox walks never pile up on the blocking pool.
    pub(super) statistics_waiting: Vec<oneshot::Sender<Vec<ContainerStatistics>>>,
    /// What the loop sleeps until (`timers.rs`).
    pub(super) timers: timers::Timers,
    /// Why the master last refused this agent's registration; cleared when
    /// a master accepts it.
    pub(super) refused: Option<String>,
    /// The hostname of the master that accepted this agent last.
    pub(super) master_hostname: Option<String>,
    /// Signs the executors' tokens (`executor_auth`).
    pub(super) token_key: TokenKey,
    /// Where the agent's ends of its executors' first connections go to be
    /// served (`executor::local`); `None` until the server runs.
    pub(super) executor_connections: Option<mpsc::UnboundedSender<std::os::unix::net::UnixStream>>,
}

impl Actor {
    pub(super) fn new(
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
            executor_connections: None,
            state: AgentState::new(info, seed).with_work_dir(options.work_dir.clone()),
            started: Instant::now(),
            session: 0,
            master_tx: None,
            executors: HashMap::new(),
            processes: HashMap::new(),
            start_gates: HashMap::new(),
            hosting: hosting::Hosting::default(),
            launches: HashMap::new(),
            next_launch: 0,
            sandboxes: HashMap::new(),
            checkpoint: CheckpointPipeline::start(store, commands.clone())?,
            commands,
            snapshot,
            last_snapshot: Instant::now(),
            snapshot_cost: Duration::ZERO,
            dirty: true,
            containers,
            gc: Gc::new(options.gc),
            disk: None,
            disk_check_in_flight: false,
            statistics_waiting: Vec::new(),
            timers: timers::Timers::new(),
            refused: None,
            master_hostname: None,
            options,
        })
    }

    /// Sandboxes left on disk by earlier runs (an agent that crashed, a
    /// checkpoint discarded after a reboot) are found on a worker and
    /// scheduled for collection from their modification time.
    pub(super) fn find_old_sandboxes(&self) {
        let work_dir = self.options.work_dir.clone();
        let commands = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let found = crate::gc::find_sandboxes(&work_dir);
            let _ = commands.blocking_send(AgentCommand::SandboxesFound(found));
        });
    }

    pub(super) fn now(&self) -> Duration {
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
            } => self.executor_exited(framework_id, executor_id, description),
            AgentCommand::ExecutorExitExplained {
                framework_id,
                executor_id,
                run_id,
                sandbox,
                limitation,
                description,
            } => self.executor_exit_explained(
                (framework_id, executor_id),
                (run_id, sandbox),
                limitation,
                description,
                out,
            ),
            AgentCommand::Statistics { reply } => self.statistics(reply),
            AgentCommand::StatisticsRead(entries) => self.statistics_read(entries),
            AgentCommand::CheckpointWritten { seq, failed } => {
                self.checkpoint.written(seq, failed);
                self.drain();
            }
            AgentCommand::DiskMeasured(measured) => self.disk_measured(measured),
            AgentCommand::ExecutorLaunched { id, outcome } => {
                self.executor_launch_finished(id, outcome)
            }
            AgentCommand::SupervisorAttached {
                conn,
                id,
                hello,
                orders,
            } => self.supervisor_attached(conn, &id, hello, orders),
            AgentCommand::SupervisorReport { pid, report } => self.supervisor_report(pid, report),
            AgentCommand::SupervisorDetached { conn, pid } => self.supervisor_detached(conn, pid),
            AgentCommand::SupervisorStarted(started) => self.supervisor_started(started),
            AgentCommand::SupervisorExited { pid } => self.supervisor_exited(pid),
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
        let current = self
            .state
            .executors
            .get(&key)
            .and_then(|executor| executor.run.as_ref().map(|run| run.run_id.as_str()));
        crate::executor_auth::current_run(current, run_id, framework_id, executor_id)
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
                // The session answers pings itself (`session.rs`); one that
                // reaches the actor is answered the same way: straight out,
                // not behind checkpoint writes in flight, as a pong is
                // ordered with nothing.
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

    /// The event loop: commands as they come, in batches; between them a
    /// sleep until the next deadline (`timers.rs`).
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<AgentCommand>,
        shutdown: CancellationToken,
    ) {
        loop {
            let mut out = Vec::new();
            let wake = self.next_wake();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command, &mut out);
                    while let Ok(command) = commands.try_recv() {
                        self.handle(command, &mut out);
                    }
                    self.dirty = true;
                }
                _ = tokio::time::sleep_until(wake) => self.deadlines_due(&mut out),
            }
            self.execute(out);
            self.publish(false);
        }
        if self.options.stop_on_exit {
            self.stop_everything().await;
        }
    }
}
