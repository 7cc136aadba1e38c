//! The master's I/O shell: one tokio task owns the [`Master`] state machine;
//! gRPC services and the HTTP API talk to it through a command channel and
//! read the snapshot it publishes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_net::outbox::{Inbox, Outbox, PushError, outbox};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::agent_session_server::{AgentSession, AgentSessionServer};
use agora_proto::v1::agent::{AgentMessage, MasterMessage, agent_message};
use agora_proto::v1::master as operator;
use agora_proto::v1::scheduler as sched;
use agora_proto::v1::scheduler::scheduler_server::{Scheduler, SchedulerServer};
use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

pub(crate) use crate::registry_writer::RegistryWrite;
use crate::snapshot::StateSnapshot;
use crate::state::{
    CallError, ConnId, Effect, Master, MasterConfig, Now, OperatorCall, OperatorError,
};

/// Commands waiting for the actor at most; past this, gRPC handlers and
/// agent sessions wait to queue theirs (back-pressure on the peers, never
/// a dropped command).
const COMMAND_QUEUE: usize = 8192;
/// How long an agent has to send its registration on a new session.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers see state at most this stale on a small cluster.
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(20);
/// A snapshot is built again no sooner than this many times its last build
/// took, so that publishing costs the actor at most about 1/(1+N) of its
/// time on a big, busy cluster (100k tasks: a build of ~0.2 s, a snapshot
/// about every second) instead of starving allocation.
const SNAPSHOT_BUILD_FACTOR: u32 = 4;
/// Snapshots with more tasks than this are freed on a blocking thread.
const OFFLOAD_DROP_TASKS: usize = 10_000;
/// How often the state machine's timers (pings, failover timeouts) run.
const TIMER_INTERVAL: Duration = Duration::from_millis(250);
/// Gives the command loop's batches a bound, so timers still run under load.
const MAX_BATCH: usize = 512;
/// How long a read of the operator API waits for the actor to publish the
/// view it asked for.
const OPERATOR_VIEW_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct MasterOptions {
    /// Contend for leadership and keep the registry in this ZooKeeper.
    pub zk: Option<agora_coord::ZkUrl>,
    pub zk_session_timeout: Duration,
    /// Without ZooKeeper, the registry lives in a file under here (in
    /// memory only when neither is given).
    pub work_dir: Option<std::path::PathBuf>,
    /// After a failover, how long admitted agents have to re-register.
    pub agent_reregister_timeout: Duration,
    /// Rescind offers not answered within this long (`--offer-timeout`).
    pub offer_timeout: Option<Duration>,
    /// The address agents and frameworks are told to use.
    pub advertise: SocketAddr,
    pub hostname: String,
    pub allocation_interval: Duration,
    /// How often agents are pinged; see [`MasterConfig`].
    pub agent_ping_timeout: Duration,
    pub max_agent_ping_timeouts: u32,
    /// How long an unreachable agent has before its tasks are lost; see [`MasterConfig`].
    pub agent_removal_timeout: Duration,
    /// Who may do what (`--acls`); the default allows everything.
    pub acls: Arc<agora_auth::acl::Acls>,
    /// Who must authenticate, against which credentials (see [`crate::authn`]).
    pub authentication: crate::authn::Authentication,
    /// TLS (`--tls-*`): with a certificate, every route of the master's port
    /// (gRPC, HTTP, the web UI) is served over TLS only.
    pub tls: agora_tls::TlsFiles,
}

impl MasterOptions {
    /// A standalone master (no ZooKeeper, registry in memory) advertising
    /// `advertise`, with the defaults of `agora master`'s flags.
    pub fn new(advertise: SocketAddr, hostname: impl Into<String>) -> Self {
        let defaults = MasterConfig::new(pb::MasterInfo::default());
        Self {
            zk: None,
            zk_session_timeout: Duration::from_secs(10),
            work_dir: None,
            agent_reregister_timeout: Duration::from_secs(600),
            offer_timeout: None,
            advertise,
            hostname: hostname.into(),
            allocation_interval: Duration::from_secs(1),
            agent_ping_timeout: defaults.agent_ping_timeout,
            max_agent_ping_timeouts: defaults.max_agent_ping_timeouts,
            agent_removal_timeout: defaults.agent_removal_timeout,
            acls: defaults.acls,
            authentication: crate::authn::Authentication::default(),
            tls: agora_tls::TlsFiles::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] agora_tls::TlsError),
    #[error("http server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error(
        "lost leadership (ZooKeeper session disconnected or expired); exiting so that this master can rejoin as a follower"
    )]
    LostLeadership,
    /// A task of the leading term died: the leader cannot act any more.
    #[error(
        "the leading term's {task} ended unexpectedly ({reason}); exiting so that another master leads"
    )]
    TermFailed { task: &'static str, reason: String },
    /// A registry write could not be made: what the store holds is all a
    /// next leader will know, so this one must not go on acting.
    #[error("{0}; stepping down so that another master leads from what the registry holds")]
    Registry(String),
}

type EventSender = Outbox<sched::Event>;
type AgentSender = Outbox<MasterMessage>;
/// An operator's event stream (`SUBSCRIBE` on `/api/v1`): one event is
/// shared by every subscriber.
pub(crate) type OperatorEvents = Outbox<Arc<operator::Event>>;
pub(crate) type Commands = mpsc::Sender<Command>;

pub(crate) enum Command {
    Subscribe {
        conn: ConnId,
        stream_id: String,
        call: sched::Call,
        /// Who the authentication layer found the framework to be.
        principal: Option<agora_auth::Principal>,
        events: EventSender,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    FrameworkGone {
        conn: ConnId,
    },
    Call {
        stream_id: String,
        call: sched::Call,
        /// Who the authentication layer found the caller to be.
        principal: Option<agora_auth::Principal>,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    AgentRegister {
        conn: ConnId,
        register: agent_message::Register,
        /// Who the authentication layer found the agent to be: the
        /// subject of `register_agents`.
        principal: Option<agora_auth::Principal>,
        messages: AgentSender,
    },
    AgentMessage {
        conn: ConnId,
        kind: agent_message::Kind,
    },
    AgentGone {
        conn: ConnId,
    },
    /// An operator call from the HTTP API (weights, quota, reservations).
    Operator {
        call: OperatorCall,
        /// Who asked, as the authentication layer found it (None:
        /// anonymous): the subject of the ACLs' check.
        caller: Option<agora_auth::Principal>,
        reply: OperatorReply,
    },
    /// An operator subscribes to the event stream: registered at the end
    /// of the actor's turn, and answered with the snapshot published then,
    /// so that the first events it gets are the first changes after it.
    OperatorSubscribe {
        id: ConnId,
        events: OperatorEvents,
        reply: oneshot::Sender<Arc<StateSnapshot>>,
    },
    /// An operator's event stream ended.
    OperatorGone {
        id: ConnId,
    },
    /// The v1 operator API was read: snapshots carry its view for a while
    /// (at once if the published one has none).
    OperatorViewWanted,
    /// Test builds only (see `http::test_faults`): the actor panics, as a
    /// bug would make it, to show that the term is supervised.
    Fault,
}

/// Why an operator call did not succeed; `http.rs` maps each to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OperatorFailure {
    /// The state machine refused it (400, 404, 409); nothing changed.
    Refused(OperatorError),
    /// What it would store is larger than the registry accepts (507);
    /// nothing changed.
    TooLarge(String),
    /// It was applied but could not be made durable (503): this master
    /// steps down and the change is dropped with its term.
    NotDurable(String),
}

/// Maps the state machine's refusals to gRPC codes: the one place this happens.
fn to_status(error: CallError) -> Status {
    match error {
        CallError::InvalidArgument(m) => Status::invalid_argument(m),
        CallError::NotFound(m) => Status::not_found(m),
        CallError::FailedPrecondition(m) => Status::failed_precondition(m),
        CallError::PermissionDenied(m) | CallError::Unauthorized(m) => Status::permission_denied(m),
    }
}

fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) type OperatorReply = oneshot::Sender<Result<(), OperatorFailure>>;

struct Actor {
    master: Master,
    started: Instant,
    start_wall: f64,
    frameworks: HashMap<ConnId, EventSender>,
    agents: HashMap<ConnId, AgentSender>,
    snapshot: watch::Sender<Arc<StateSnapshot>>,
    /// Registry entries to persist, in order.
    registry: mpsc::UnboundedSender<RegistryWrite>,
    last_snapshot: Instant,
    /// How long the last snapshot took to build (see [`SNAPSHOT_BUILD_FACTOR`]).
    last_snapshot_build: Duration,
    dirty: bool,
    /// Publish at the end of this turn whatever the interval (an operator
    /// call changed what `/roles` shows; its caller may read it next).
    publish_now: bool,
    /// Operator calls answered once what they changed is in the registry.
    operator_replies: Vec<OperatorReply>,
    /// Status updates waiting for acknowledgement, for `/metrics`.
    round_trips: crate::metrics::RoundTrips,
    /// Operators subscribed to the event stream.
    operators: crate::operator_api::Subscribers,
    /// Operators to subscribe at the end of this turn.
    pending_operators: Vec<(ConnId, OperatorEvents, oneshot::Sender<Arc<StateSnapshot>>)>,
    /// Snapshots carry the operator API's view until then (it was read
    /// lately), and while operators are subscribed.
    operator_view_until: Option<Instant>,
}

impl Actor {
    fn now(&self) -> Now {
        Now {
            monotonic: self.started.elapsed(),
            wall: wall_now(),
        }
    }

    fn handle(&mut self, command: Command, out: &mut Vec<Effect>) {
        let now = self.now();
        self.dirty = true;
        match command {
            Command::Subscribe {
                conn,
                stream_id,
                call,
                principal,
                events,
                reply,
            } => {
                self.frameworks.insert(conn, events);
                let result = self
                    .master
                    .subscribe_as(now, conn, stream_id, call, principal.as_ref(), out)
                    .map(|_| ());
                let result = match result {
                    // Refused by the ACLs: as in Mesos, the stream opens
                    // with an ERROR event saying why, and ends.
                    Err(CallError::Unauthorized(why)) => {
                        if let Some(events) = self.frameworks.remove(&conn) {
                            let _ = events.push(sched::Event {
                                r#type: sched::event::Type::Error as i32,
                                error: Some(sched::event::Error { message: why }),
                                ..Default::default()
                            });
                        }
                        Ok(())
                    }
                    other => {
                        if other.is_err() {
                            self.frameworks.remove(&conn);
                        }
                        other
                    }
                };
                let _ = reply.send(result);
            }
            Command::FrameworkGone { conn } => {
                self.frameworks.remove(&conn);
                self.master.framework_disconnected(now, conn, out);
            }
            Command::Call {
                stream_id,
                call,
                principal,
                reply,
            } => {
                let acknowledged = call.acknowledge.as_ref().map(|a| a.uuid.clone());
                let result = self
                    .master
                    .check_call_principal(&call, principal.as_ref())
                    .and_then(|()| self.master.call(now, &stream_id, call, out));
                if let (Some(uuid), Ok(())) = (acknowledged, &result) {
                    self.round_trips.acknowledged(
                        &uuid,
                        std::time::Instant::now(),
                        &crate::metrics::global().status_update_round_trip,
                    );
                }
                let _ = reply.send(result);
            }
            Command::AgentRegister {
                conn,
                register,
                principal,
                messages,
            } => {
                self.agents.insert(conn, messages);
                self.master
                    .agent_register_as(now, conn, register, principal.as_ref(), out);
            }
            Command::AgentMessage { conn, kind } => {
                if let agent_message::Kind::StatusUpdate(update) = &kind
                    && let Some(uuid) = update.status.as_ref().and_then(|s| s.uuid.as_ref())
                {
                    self.round_trips
                        .update_arrived(uuid, std::time::Instant::now());
                }
                self.master.agent_message(now, conn, kind, out)
            }
            Command::AgentGone { conn } => {
                self.agents.remove(&conn);
                self.master.agent_disconnected(now, conn, out);
            }
            Command::Operator {
                call,
                caller,
                reply,
            } => {
                if let Err(why) = crate::registry_writer::check_entry_sizes(&self.master, &call) {
                    let _ = reply.send(Err(OperatorFailure::TooLarge(why)));
                    return;
                }
                match self.master.operator_as(now, caller.as_ref(), call, out) {
                    Ok(()) => {
                        self.publish_now = true;
                        self.operator_replies.push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(OperatorFailure::Refused(e)));
                    }
                }
            }
            Command::OperatorSubscribe { id, events, reply } => {
                self.pending_operators.push((id, events, reply));
            }
            Command::OperatorGone { id } => self.operators.remove(id),
            Command::OperatorViewWanted => {
                self.operator_view_until =
                    Some(Instant::now() + crate::operator_api::VIEW_KEPT_FOR);
                if self.snapshot.borrow().operator.is_none() {
                    self.publish_now = true;
                }
            }
            Command::Fault => panic!("test fault: the actor was asked to die"),
        }
    }

    fn execute(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::ToFramework { conn, event } => {
                    if let Some(tx) = self.frameworks.get(&conn)
                        && let Err(e) = tx.push(event)
                    {
                        if let PushError::Stuck(_) = e {
                            tracing::warn!(conn, error = %e, "framework stream is stuck; closing it (the framework re-subscribes)");
                        }
                        self.frameworks.remove(&conn);
                    }
                }
                Effect::CloseFramework { conn } => {
                    self.frameworks.remove(&conn);
                }
                Effect::ToAgent { conn, message } => {
                    if let Some(tx) = self.agents.get(&conn)
                        && let Err(e) = tx.push(message)
                    {
                        if let PushError::Stuck(_) = e {
                            tracing::warn!(conn, error = %e, "agent session is stuck; closing it (the agent re-registers)");
                        }
                        self.agents.remove(&conn);
                    }
                }
                Effect::Registry(entry) => {
                    let _ = self.registry.send(RegistryWrite::Agent(entry));
                    crate::metrics::time_registry_write(&self.registry);
                }
                Effect::RegistryPolicy(policy) => {
                    let _ = self.registry.send(RegistryWrite::Policy(policy));
                    crate::metrics::time_registry_write(&self.registry);
                }
                Effect::CloseAgent { conn } => {
                    self.agents.remove(&conn);
                }
                Effect::Observed(event) => self.operators.send(Arc::from(event)),
            }
        }
    }

    /// Subscribes the operators that asked this turn, after its effects
    /// went out: each gets the snapshot of the books as they are now, and
    /// every change from the next turn on as an event. Events are made
    /// only while someone listens.
    fn subscribe_operators(&mut self) {
        if !self.pending_operators.is_empty() {
            if self.dirty || self.snapshot.borrow().operator.is_none() {
                self.build_snapshot();
            }
            let current = self.snapshot.borrow().clone();
            for (id, events, reply) in std::mem::take(&mut self.pending_operators) {
                // Its caller may have gone while it waited.
                if reply.send(current.clone()).is_ok() {
                    self.operators.add(id, events);
                }
            }
        }
        self.master.set_observed(!self.operators.is_empty());
    }

    /// Answers the operator calls of this turn once the registry writes
    /// they caused (queued by `execute`, in order) are done: a 200 means
    /// the change survives a failover.
    fn answer_operators(&mut self) {
        for reply in self.operator_replies.drain(..) {
            let (flushed, done) = oneshot::channel();
            let _ = self.registry.send(RegistryWrite::Flushed(flushed));
            tokio::spawn(async move {
                let result = match done.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(why)) => Err(OperatorFailure::NotDurable(why)),
                    // The writer stopped with the term before reaching it.
                    Err(_) => Err(OperatorFailure::NotDurable(
                        "the registry writer stopped before the change was written".into(),
                    )),
                };
                let _ = reply.send(result);
            });
        }
    }

    fn publish(&mut self, force: bool) {
        // At most once a second: it asks the allocator about every framework.
        if self.master.refresh_offer_status(self.now()) {
            self.dirty = true;
        }
        let gap = SNAPSHOT_INTERVAL.max(self.last_snapshot_build * SNAPSHOT_BUILD_FACTOR);
        if !self.dirty || (!force && self.last_snapshot.elapsed() < gap) {
            return;
        }
        self.build_snapshot();
    }

    /// Builds and publishes the snapshot of the books as they are, with
    /// the operator API's view while it is wanted.
    fn build_snapshot(&mut self) {
        let started = Instant::now();
        let mut snapshot = self.master.snapshot(self.start_wall, wall_now());
        let view_wanted = !self.operators.is_empty()
            || !self.pending_operators.is_empty()
            || self
                .operator_view_until
                .is_some_and(|until| Instant::now() < until);
        if view_wanted {
            snapshot.operator = Some(Arc::new(self.master.operator_details()));
        }
        let previous = self.snapshot.send_replace(Arc::new(snapshot));
        // Freeing a big snapshot takes a while too; not on the actor.
        if Arc::strong_count(&previous) == 1 && previous.tasks_total() > OFFLOAD_DROP_TASKS {
            tokio::task::spawn_blocking(move || drop(previous));
        }
        self.last_snapshot = Instant::now();
        self.last_snapshot_build = self.last_snapshot - started;
        self.dirty = false;
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        allocation_interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut allocation = tokio::time::interval(allocation_interval);
        allocation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut publish = tokio::time::interval(SNAPSHOT_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut timers = tokio::time::interval(TIMER_INTERVAL);
        timers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut out = Vec::new();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command, &mut out);
                    for _ in 0..MAX_BATCH {
                        match commands.try_recv() {
                            Ok(command) => self.handle(command, &mut out),
                            Err(_) => break,
                        }
                    }
                }
                _ = allocation.tick() => {
                    let now = self.now();
                    let started = std::time::Instant::now();
                    self.master.allocate(now, &mut out);
                    crate::metrics::global().allocation_periodic.observe(started.elapsed());
                    self.dirty = true;
                }
                _ = timers.tick() => {
                    let now = self.now();
                    self.master.tick(now, &mut out);
                    self.dirty = true;
                }
                _ = publish.tick() => {
                    self.publish(true);
                    continue;
                }
            }
            // Event-driven allocation: whatever freed resources or brought
            // a new agent is offered at once, batched with everything that
            // arrived together: just the agents concerned, or a full cycle
            // when a framework subscribed or revived or weights or quota changed.
            if self.master.needs_allocation() {
                let now = self.now();
                let started = std::time::Instant::now();
                self.master.allocate_pending(now, &mut out);
                crate::metrics::global()
                    .allocation_event
                    .observe(started.elapsed());
            }
            self.execute(out);
            self.answer_operators();
            self.subscribe_operators();
            let force = std::mem::take(&mut self.publish_now);
            self.publish(force);
        }
    }
}

/// Sends a "gone" command when a stream's response side is dropped (the
/// peer went away or the stream was closed).
struct GoneGuard {
    commands: Commands,
    gone: Option<Command>,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        let Some(gone) = self.gone.take() else { return };
        // Never lost: queued now, or as soon as the queue has room.
        if let Err(mpsc::error::TrySendError::Full(gone)) = self.commands.try_send(gone)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let commands = self.commands.clone();
            runtime.spawn(async move {
                let _ = commands.send(gone).await;
            });
        }
    }
}

pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn guarded<T>(rx: Inbox<T>, guard: GoneGuard, heartbeat: Option<(Duration, T)>) -> BoxStream<T>
where
    T: Clone + Send + Sync + 'static,
{
    let period = heartbeat
        .as_ref()
        .map(|(p, _)| *p)
        .unwrap_or(Duration::from_secs(3600));
    let beat = heartbeat.map(|(_, b)| b);
    let ticker = tokio::time::interval_at(Instant::now() + period, period);
    let stream = futures::stream::unfold(
        (rx, ticker, guard, beat),
        |(mut rx, mut ticker, guard, beat)| async move {
            loop {
                tokio::select! {
                    biased;
                    item = rx.recv() => {
                        // A stuck peer's stream ends with an error it can act on.
                        let item = item?.map_err(|stuck| {
                            Status::unavailable(format!("stream closed: {stuck}; subscribe again"))
                        });
                        return Some((item, (rx, ticker, guard, beat)));
                    }
                    _ = ticker.tick() => {
                        if let Some(b) = beat.clone() {
                            return Some((Ok(b), (rx, ticker, guard, beat)));
                        }
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

/// Whether this master may act, and where its command channel is.
#[derive(Clone, Debug)]
pub(crate) enum Gate {
    /// Not the leader; `leader` is the leader's `host:port` when known.
    Following {
        leader: Option<String>,
    },
    /// Just elected: loading the registry, not serving calls yet.
    Recovering,
    Leading {
        commands: Commands,
    },
}

#[derive(Clone)]
pub(crate) struct Services {
    gate: watch::Receiver<Gate>,
    /// What readers see (the v1 operator API's read calls).
    snapshot: watch::Receiver<Arc<StateSnapshot>>,
    next_conn: Arc<AtomicU64>,
    heartbeat: Duration,
}

impl Services {
    pub(crate) fn gate(&self) -> watch::Receiver<Gate> {
        self.gate.clone()
    }

    /// The snapshot published last.
    pub(crate) fn snapshot(&self) -> Arc<StateSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// A snapshot with the operator API's view: the one published last if
    /// it has it, else the next one, which the actor is asked to make at
    /// once. Every call keeps the view coming for a while.
    pub(crate) async fn operator_snapshot(&self) -> Result<Arc<StateSnapshot>, String> {
        let commands = self.commands().map_err(|s| s.message().to_string())?;
        let current = self.snapshot();
        if current.operator.is_some() {
            // Best effort: a full queue only means the actor is busy, and
            // the view is still there.
            let _ = commands.try_send(Command::OperatorViewWanted);
            return Ok(current);
        }
        commands
            .send(Command::OperatorViewWanted)
            .await
            .map_err(|_| "master is shutting down".to_string())?;
        let mut snapshot = self.snapshot.clone();
        let wait = snapshot.wait_for(|s| s.operator.is_some());
        match tokio::time::timeout(OPERATOR_VIEW_WAIT, wait).await {
            Ok(Ok(published)) => Ok(published.clone()),
            Ok(Err(_)) => Err("master is shutting down".to_string()),
            Err(_) => Err("the master did not publish its state in time; retry".to_string()),
        }
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    fn conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The leader's command channel, or a status saying why there is none
    /// here (and who leads, in the `agora-leader` metadata).
    pub(crate) fn commands(&self) -> Result<Commands, Status> {
        match &*self.gate.borrow() {
            Gate::Leading { commands } => Ok(commands.clone()),
            Gate::Recovering => Err(Status::unavailable(
                "this master was just elected and is still loading the registry",
            )),
            Gate::Following {
                leader: Some(leader),
            } => {
                let mut status =
                    Status::unavailable(format!("not the leading master; the leader is {leader}"));
                if let Ok(value) = leader.parse() {
                    status.metadata_mut().insert("agora-leader", value);
                }
                Err(status)
            }
            Gate::Following { leader: None } => {
                Err(Status::unavailable("no leading master is elected yet"))
            }
        }
    }

    async fn ask(
        commands: &Commands,
        command: Command,
        reply: oneshot::Receiver<Result<(), CallError>>,
    ) -> Result<(), Status> {
        commands
            .send(command)
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?;
        reply
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?
            .map_err(to_status)
    }
}

/// Why a subscription was not opened, for each API to say in its own terms.
pub(crate) enum SubscribeError {
    /// The state machine refused the SUBSCRIBE call.
    Refused(CallError),
    /// No leader here, or it is going away.
    Unavailable(String),
}

impl Services {
    /// Opens a framework's subscription: the one path for the gRPC and the
    /// HTTP scheduler APIs. The stream carries the framework's events and a
    /// heartbeat every interval; dropping it tells the actor the framework
    /// disconnected.
    pub(crate) async fn open_subscription(
        &self,
        stream_id: String,
        call: sched::Call,
        principal: Option<agora_auth::Principal>,
    ) -> Result<BoxStream<sched::Event>, SubscribeError> {
        let commands = self
            .commands()
            .map_err(|s| SubscribeError::Unavailable(s.message().to_string()))?;
        let conn = self.conn();
        let (events, rx) = outbox();
        let (reply, answer) = oneshot::channel();
        let guard = GoneGuard {
            commands: commands.clone(),
            gone: Some(Command::FrameworkGone { conn }),
        };
        let shutting_down = || SubscribeError::Unavailable("master is shutting down".into());
        commands
            .send(Command::Subscribe {
                conn,
                stream_id,
                call,
                principal,
                events,
                reply,
            })
            .await
            .map_err(|_| shutting_down())?;
        answer
            .await
            .map_err(|_| shutting_down())?
            .map_err(SubscribeError::Refused)?;
        let heartbeat = sched::Event {
            r#type: sched::event::Type::Heartbeat as i32,
            ..Default::default()
        };
        Ok(guarded(rx, guard, Some((self.heartbeat, heartbeat))))
    }
}

#[cfg(test)]
impl Services {
    /// Services over a gate and snapshot a test controls.
    pub(crate) fn for_tests(
        gate: watch::Receiver<Gate>,
        snapshot: watch::Receiver<Arc<StateSnapshot>>,
        heartbeat: Duration,
    ) -> Self {
        Services {
            gate,
            snapshot,
            next_conn: Arc::new(AtomicU64::new(1_000_000)),
            heartbeat,
        }
    }
}

impl Services {
    /// Opens an operator's event stream (the v1 operator API's SUBSCRIBE):
    /// the snapshot it starts from, and every change after it, in order,
    /// with a heartbeat every interval. Dropping the stream unsubscribes.
    pub(crate) async fn open_operator_stream(
        &self,
    ) -> Result<(Arc<StateSnapshot>, BoxStream<Arc<operator::Event>>), String> {
        let commands = self.commands().map_err(|s| s.message().to_string())?;
        let id = self.conn();
        let (events, rx) = outbox();
        let (reply, answer) = oneshot::channel();
        let guard = GoneGuard {
            commands: commands.clone(),
            gone: Some(Command::OperatorGone { id }),
        };
        let shutting_down = || "master is shutting down".to_string();
        commands
            .send(Command::OperatorSubscribe { id, events, reply })
            .await
            .map_err(|_| shutting_down())?;
        let snapshot = answer.await.map_err(|_| shutting_down())?;
        let heartbeat = Arc::new(operator::Event {
            r#type: operator::event::Type::Heartbeat as i32,
            ..Default::default()
        });
        Ok((
            snapshot,
            guarded(rx, guard, Some((self.heartbeat, heartbeat))),
        ))
    }
}

#[tonic::async_trait]
impl Scheduler for Services {
    type SubscribeStream = BoxStream<sched::Event>;

    async fn subscribe(
        &self,
        request: Request<sched::Call>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // Checked first so that a follower's status names the leader.
        self.commands()?;
        let stream_id = uuid::Uuid::new_v4().to_string();
        let principal = crate::authn::principal_of(request.extensions());
        match self
            .open_subscription(stream_id, request.into_inner(), principal)
            .await
        {
            Ok(stream) => Ok(Response::new(stream)),
            Err(SubscribeError::Refused(e)) => Err(to_status(e)),
            Err(SubscribeError::Unavailable(why)) => Err(Status::unavailable(why)),
        }
    }

    async fn send(
        &self,
        request: Request<sched::Call>,
    ) -> Result<Response<sched::CallResponse>, Status> {
        let stream_id = request
            .metadata()
            .get("agora-stream-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Status::invalid_argument("missing 'agora-stream-id' metadata"))?;
        let commands = self.commands()?;
        let (reply, answer) = oneshot::channel();
        let principal = crate::authn::principal_of(request.extensions());
        Self::ask(
            &commands,
            Command::Call {
                stream_id,
                principal,
                call: request.into_inner(),
                reply,
            },
            answer,
        )
        .await?;
        Ok(Response::new(sched::CallResponse {}))
    }
}

#[tonic::async_trait]
impl AgentSession for Services {
    type OpenStream = BoxStream<MasterMessage>;

    async fn open(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let commands = self.commands()?;
        // Who the authentication layer found the agent to be.
        let principal = request
            .extensions()
            .get::<agora_auth::Caller>()
            .and_then(|c| c.principal().cloned());
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no registration received"))??
            .ok_or_else(|| Status::invalid_argument("session closed before registering"))?;
        let Some(agent_message::Kind::Register(register)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first message on a session must be Register",
            ));
        };
        let conn = self.conn();
        let (messages, rx) = outbox();
        commands
            .send(Command::AgentRegister {
                conn,
                register,
                principal,
                messages,
            })
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?;
        let reader_commands = commands.clone();
        tokio::spawn(async move {
            let commands = reader_commands;
            loop {
                match inbound.message().await {
                    Ok(Some(AgentMessage { kind: Some(kind) })) => {
                        // Waits while the actor is behind: the agent's
                        // stream is read no faster than it is handled.
                        if commands
                            .send(Command::AgentMessage { conn, kind })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(Some(AgentMessage { kind: None })) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            let _ = commands.send(Command::AgentGone { conn }).await;
        });
        let guard = GoneGuard {
            commands,
            gone: Some(Command::AgentGone { conn }),
        };
        Ok(Response::new(guarded(rx, guard, None)))
    }
}

/// The route that carries every method of a gRPC service.
pub fn grpc_path<S: tonic::server::NamedService>() -> String {
    format!("/{}/{{*method}}", S::NAME)
}

/// Serves the master on `listener` (gRPC and HTTP on one port) until
/// `shutdown` is cancelled, or until it loses a leadership it held (an error:
/// the process should exit and rejoin as a follower, as Mesos masters do).
pub async fn run_master(
    listener: TcpListener,
    options: MasterOptions,
    shutdown: CancellationToken,
) -> Result<(), ShellError> {
    serve_master(listener, options, None, shutdown).await
}

/// [`run_master`] with the registry kept in `store` instead of the one the
/// options name (tests inject failing stores this way).
pub async fn run_master_with_store(
    listener: TcpListener,
    options: MasterOptions,
    store: Arc<dyn agora_coord::RegistryStore>,
    shutdown: CancellationToken,
) -> Result<(), ShellError> {
    serve_master(listener, options, Some(store), shutdown).await
}

async fn serve_master(
    listener: TcpListener,
    options: MasterOptions,
    store: Option<Arc<dyn agora_coord::RegistryStore>>,
    shutdown: CancellationToken,
) -> Result<(), ShellError> {
    // Read before anything starts, so a bad file changes nothing.
    let tls = options.tls.server()?.map(|tls| tls.acceptor());
    let agent_tls = options.tls.client()?.map(crate::files_proxy::AgentTls);
    let master_id = uuid::Uuid::new_v4().to_string();
    let (gate_tx, gate_rx) = watch::channel(Gate::Following { leader: None });
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(StateSnapshot::follower(
        &master_id,
        &options.hostname,
        None,
    )));
    let services = Services {
        gate: gate_rx.clone(),
        snapshot: snapshot_rx.clone(),
        next_conn: Arc::new(AtomicU64::new(1)),
        heartbeat: MasterConfig::new(pb::MasterInfo::default()).heartbeat_interval,
    };
    // gRPC services on their own paths; everything else is the HTTP API
    // (whose fallback answers 404 to unknown paths).
    let app = crate::http::router(snapshot_rx, gate_rx)
        .merge(crate::scheduler_http::router(services.clone()))
        .merge(crate::operator_api::router(services.clone()))
        .route_service(
            &grpc_path::<SchedulerServer<Services>>(),
            SchedulerServer::new(services.clone())
                .max_decoding_message_size(agora_net::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(agora_net::MAX_MESSAGE_BYTES),
        )
        .route_service(
            &grpc_path::<AgentSessionServer<Services>>(),
            AgentSessionServer::new(services)
                .max_decoding_message_size(agora_net::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(agora_net::MAX_MESSAGE_BYTES),
        );
    // `get_endpoints`, then (outermost, so first) authentication over every
    // route, HTTP and gRPC alike.
    let app = app.layer(axum::middleware::from_fn_with_state(
        options.acls.clone(),
        crate::authz_views::guard_endpoints,
    ));
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(options.authentication.clone()),
        crate::authn::layer,
    ));
    tracing::info!(address = %options.advertise, master_id = %master_id, "master serving");
    // The files proxy reaches agents with the master's CA (`files_proxy`).
    let app = match agent_tls {
        Some(agent_tls) => app.layer(axum::Extension(agent_tls)),
        None => app,
    };
    let server = tokio::spawn(agora_net::serve_tls(
        listener,
        app,
        agora_net::ServeLimits::default(),
        tls,
        shutdown.clone(),
    ));
    let terms = crate::leadership::Terms {
        options,
        master_id,
        gate: gate_tx,
        snapshot: snapshot_tx,
        shutdown: shutdown.clone(),
        store,
    };
    let outcome = terms.run().await;
    shutdown.cancel();
    match server.await {
        Ok(result) => result?,
        Err(e) => tracing::error!(error = %e, "http server task failed"),
    }
    outcome
}

/// Starts the actor that owns `master` for one leadership term; returns its
/// command channel.
pub(crate) fn start_actor(
    master: Master,
    allocation_interval: Duration,
    snapshot: watch::Sender<Arc<StateSnapshot>>,
    registry: mpsc::UnboundedSender<RegistryWrite>,
    shutdown: CancellationToken,
) -> (Commands, tokio::task::JoinHandle<()>) {
    let start_wall = wall_now();
    snapshot.send_replace(Arc::new(master.snapshot(start_wall, start_wall)));
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let actor = Actor {
        master,
        started: Instant::now(),
        start_wall,
        frameworks: HashMap::new(),
        agents: HashMap::new(),
        snapshot,
        registry,
        last_snapshot: Instant::now(),
        last_snapshot_build: Duration::ZERO,
        dirty: true,
        publish_now: false,
        operator_replies: Vec::new(),
        round_trips: crate::metrics::RoundTrips::default(),
        operators: crate::operator_api::Subscribers::new(crate::operator_api::MAX_SUBSCRIBERS),
        pending_operators: Vec::new(),
        operator_view_until: None,
    };
    let task = tokio::spawn(actor.run(command_rx, allocation_interval, shutdown));
    (commands, task)
}
