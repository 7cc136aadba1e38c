//! The actor of a leadership term: one tokio task owns the [`Master`]
//! state machine, takes [`Command`]s from its channel in batches, runs
//! allocation and the state machine's timers, carries out the effects, and
//! publishes the snapshot that every reader sees.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_net::outbox::PushError;
use agora_proto::v1::agent::agent_message;
use agora_proto::v1::scheduler as sched;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::ShellError;
use crate::metrics::{MasterMetrics, RoundTrips};
use timers::TimerPlan;

#[cfg(test)]
mod fairness_tests;
#[cfg(test)]
mod operator_api_tests;
mod timers;

use crate::protocol::{
    AgentSender, Command, Commands, EventSender, OperatorEvents, OperatorFailure, OperatorReply,
};
use crate::registry_writer::RegistryWrite;
use crate::snapshot::{ReadModel, StateSnapshot};
use crate::state::{AdmissionTicket, CallError, ConnId, Effect, Master, Now};

/// Commands waiting for the actor at most; past this, gRPC handlers and
/// agent sessions wait to queue theirs (back-pressure on the peers, never
/// a dropped command).
const COMMAND_QUEUE: usize = 8192;
/// Readers see state at most this stale (plus the turn that publishes).
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(20);
/// A snapshot is built again no sooner than this many times its last build
/// took: a safety valve so that publishing never costs the actor more than
/// about 1/(1+N) of its time. With the incremental read model a build
/// costs what changed (about a millisecond for a busy batch at 100k tasks),
/// so the interval is what holds.
const SNAPSHOT_BUILD_FACTOR: u32 = 4;
/// Gives the command loop's batches a bound, so timers still run under load.
const MAX_BATCH: usize = 512;

/// The room for effects the actor keeps from one turn to the next (1 MiB:
/// an effect is 128 bytes, its large messages boxed): a turn of a few
/// thousand effects makes none of it again; a rare larger turn's is given
/// back.
const EFFECTS_KEPT: usize = 8192;

pub(crate) fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Actor {
    master: Master,
    started: Instant,
    frameworks: HashMap<ConnId, EventSender>,
    agents: HashMap<ConnId, AgentSender>,
    snapshot: watch::Sender<Arc<StateSnapshot>>,
    /// What readers see, kept up to date from the master's changes
    /// (`crate::snapshot::ReadModel`): publishing costs what changed.
    read_model: ReadModel,
    /// Registry entries to persist, in order.
    registry: mpsc::UnboundedSender<RegistryWrite>,
    /// Where the registry writer hands back the tickets of admissions
    /// whose entry is durable (`state/admission.rs`).
    admissions: mpsc::UnboundedSender<AdmissionTicket>,
    last_snapshot: Instant,
    /// How long the last snapshot took to build (see [`SNAPSHOT_BUILD_FACTOR`]).
    last_snapshot_build: Duration,
    dirty: bool,
    /// Publish at the end of this turn whatever the interval (an operator
    /// call changed what `/roles` shows; its caller may read it next).
    publish_now: bool,
    /// Operator calls answered once what they changed is in the registry.
    operator_replies: Vec<OperatorReply>,
    /// What the actor measures (allocation, registry writes, round trips),
    /// shared with `/metrics` and the term.
    metrics: Arc<MasterMetrics>,
    /// Status updates waiting for acknowledgement, for `/metrics`.
    round_trips: RoundTrips,
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
                // Round trips are recorded for calls taken whole (a call with
                // a refused acknowledgement records none: a sample fewer).
                let acknowledged: Vec<u128> = call
                    .acknowledge
                    .iter()
                    .chain(&call.acknowledgements)
                    .filter_map(|a| RoundTrips::key(&a.uuid))
                    .collect();
                let result = self
                    .master
                    .check_call_principal(&call, principal.as_ref())
                    .and_then(|()| self.master.call(now, &stream_id, call, out));
                if result.is_ok() {
                    let at = std::time::Instant::now();
                    for key in acknowledged {
                        self.round_trips.acknowledged(
                            key,
                            at,
                            &self.metrics.status_update_round_trip,
                        );
                    }
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
                    && let Some(key) = update
                        .status
                        .as_ref()
                        .and_then(|s| s.uuid.as_deref())
                        .and_then(RoundTrips::key)
                {
                    self.round_trips
                        .update_arrived(key, std::time::Instant::now());
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

    /// Carries out a turn's effects, in order, leaving `effects` empty (its
    /// room kept for the next turn, up to [`EFFECTS_KEPT`]).
    fn execute(&mut self, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::ToFramework { conn, event } => {
                    if let Some(tx) = self.frameworks.get(&conn)
                        && let Err(e) = tx.push(*event)
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
                        && let Err(e) = tx.push(*message)
                    {
                        if let PushError::Stuck(_) = e {
                            tracing::warn!(conn, error = %e, "agent session is stuck; closing it (the agent re-registers)");
                        }
                        self.agents.remove(&conn);
                    }
                }
                Effect::Registry(entry) => {
                    let _ = self.registry.send(RegistryWrite::Agent(entry));
                    crate::metrics::time_registry_write(&self.registry, &self.metrics);
                }
                Effect::RegistryAdmit { entry, ticket } => {
                    let _ = self.registry.send(RegistryWrite::Admit {
                        entry,
                        ticket,
                        durable: self.admissions.clone(),
                    });
                    crate::metrics::time_registry_write(&self.registry, &self.metrics);
                }
                Effect::RegistryForget { agent_id } => {
                    let _ = self
                        .registry
                        .send(RegistryWrite::Forget(agent_id.to_string()));
                    crate::metrics::time_registry_write(&self.registry, &self.metrics);
                }
                Effect::RegistryPolicy(policy) => {
                    let _ = self.registry.send(RegistryWrite::Policy(policy));
                    crate::metrics::time_registry_write(&self.registry, &self.metrics);
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

    /// Publishes the snapshot of the books as they are (the read model
    /// with this turn's changes applied), with the operator API's view
    /// while it is wanted.
    fn build_snapshot(&mut self) {
        let started = Instant::now();
        let mut snapshot = self.read_model.update(&mut self.master, wall_now());
        let view_wanted = !self.operators.is_empty()
            || !self.pending_operators.is_empty()
            || self
                .operator_view_until
                .is_some_and(|until| Instant::now() < until);
        if view_wanted {
            snapshot.operator = Some(Arc::new(self.master.operator_details()));
        }
        // The previous snapshot shares all but what changed with this one:
        // freeing it is cheap.
        self.snapshot.send_replace(Arc::new(snapshot));
        self.last_snapshot = Instant::now();
        self.last_snapshot_build = self.last_snapshot - started;
        self.dirty = false;
    }

    /// Handles up to `n` queued commands; returns how many it handled.
    fn take_in(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        n: usize,
        out: &mut Vec<Effect>,
    ) -> usize {
        let mut handled = 0;
        while handled < n {
            match commands.try_recv() {
                Ok(command) => {
                    self.handle(command, out);
                    handled += 1;
                }
                Err(_) => break,
            }
        }
        handled
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut admissions: mpsc::UnboundedReceiver<AdmissionTicket>,
        allocation_interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut allocation = tokio::time::interval(allocation_interval);
        allocation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut publish = tokio::time::interval(SNAPSHOT_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut timers = TimerPlan::new(Instant::now());
        // A timer turn sees what arrived before it, as if it were queued
        // behind it (libprocess delivers timers as messages): when the timer
        // falls due, the commands already queued are owed first, a batch a
        // turn, and the state machine ticks once they are handled. Without
        // it a busy actor judged agents by pings whose pongs sat in its own
        // queue, marked healthy agents unreachable by the thousand, and
        // their re-registrations kept it busy. Bounded: at most the queue's
        // capacity is owed, so a tick waits at most that many commands.
        let mut owed: Option<usize> = None;
        // One buffer of effects for every turn: made anew each turn, it
        // grew by doubling from nothing (a re-registering cluster's turn
        // makes thousands of effects), and each growth copied it and
        // faulted in fresh pages.
        let mut out = Vec::new();
        loop {
            let mut timer_turn = false;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command, &mut out);
                    let handled = 1 + self.take_in(&mut commands, MAX_BATCH, &mut out);
                    if let Some(left) = owed.as_mut() {
                        *left = left.saturating_sub(handled);
                    }
                }
                Some(ticket) = admissions.recv() => {
                    // Agents whose registry entry is now durable: admitted
                    // (a batch at a time, as commands are).
                    let now = self.now();
                    self.master.admission_durable(now, ticket, &mut out);
                    for _ in 1..MAX_BATCH {
                        let Ok(ticket) = admissions.try_recv() else { break };
                        self.master.admission_durable(now, ticket, &mut out);
                    }
                    self.dirty = true;
                }
                _ = allocation.tick() => {
                    let now = self.now();
                    let started = std::time::Instant::now();
                    self.master.allocate(now, &mut out);
                    self.metrics.allocation_periodic.observe(started.elapsed());
                    self.dirty = true;
                }
                _ = tokio::time::sleep_until(timers.wake()) => {
                    let left = owed.get_or_insert_with(|| commands.len());
                    let batch = (*left).min(MAX_BATCH);
                    let handled = self.take_in(&mut commands, batch, &mut out);
                    // Fewer than asked: the queue is empty, nothing is owed.
                    *left = if handled < batch { 0 } else { *left - handled };
                    if *left == 0 {
                        owed = None;
                        let now = self.now();
                        if self.master.next_deadline().is_some_and(|due| due <= now.monotonic) {
                            self.master.tick(now, &mut out);
                            self.dirty = true;
                        }
                        timer_turn = true;
                    }
                    // Otherwise the wake-up stays due: the next turns take in
                    // the rest of what is owed, then tick.
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
                self.metrics.allocation_event.observe(started.elapsed());
            }
            self.execute(&mut out);
            out.shrink_to(EFFECTS_KEPT);
            self.answer_operators();
            self.subscribe_operators();
            let force = std::mem::take(&mut self.publish_now);
            self.publish(force);
            // When the timers are due next: asked after a timer turn (and
            // what it allocated); after inputs, within a recheck.
            if timer_turn {
                let deadline = self.master.next_deadline().map(|d| self.started + d);
                timers.asked(Instant::now(), deadline);
            } else {
                timers.inputs_arrived();
            }
        }
    }
}

/// Starts the actor that owns `master` for one leadership term; returns its
/// command channel.
pub(crate) fn start_actor(
    mut master: Master,
    allocation_interval: Duration,
    snapshot: watch::Sender<Arc<StateSnapshot>>,
    registry: mpsc::UnboundedSender<RegistryWrite>,
    metrics: Arc<MasterMetrics>,
    shutdown: CancellationToken,
) -> (Commands, tokio::task::JoinHandle<Result<(), ShellError>>) {
    let start_wall = wall_now();
    // The one build from scratch of the term; every later snapshot is the
    // previous one with what changed.
    let read_model = ReadModel::new(&mut master, start_wall, start_wall);
    snapshot.send_replace(Arc::new(read_model.current().clone()));
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (admissions, admission_rx) = mpsc::unbounded_channel();
    let actor = Actor {
        admissions,
        master,
        started: Instant::now(),
        frameworks: HashMap::new(),
        agents: HashMap::new(),
        snapshot,
        read_model,
        registry,
        last_snapshot: Instant::now(),
        last_snapshot_build: Duration::ZERO,
        dirty: true,
        publish_now: false,
        operator_replies: Vec::new(),
        metrics,
        round_trips: RoundTrips::default(),
        operators: crate::operator_api::Subscribers::new(crate::operator_api::MAX_SUBSCRIBERS),
        pending_operators: Vec::new(),
        operator_view_until: None,
    };
    // It ends when shut down or when no caller is left; never with an
    // error (the term's supervisor counts any end of it as a failure).
    let task = tokio::spawn(async move {
        actor
            .run(command_rx, admission_rx, allocation_interval, shutdown)
            .await;
        Ok(())
    });
    (commands, task)
}
