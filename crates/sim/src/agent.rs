//! One simulated agent as a pure state machine: the session's events and
//! the time go in, messages for the master come out. No sockets, clocks or
//! tasks inside; `session.rs` carries the effects out.
//!
//! It behaves towards the master as `agora agent` does (see the agent
//! crate's `state/session.rs` and `state/status_updates.rs`):
//! - every session starts with a `Register` that carries the agent's id once
//!   it has one, and every task it holds with the state of the update in
//!   flight, so a new leader adopts them;
//! - a master of an older leadership epoch than one already seen is refused
//!   (the session is dropped until the leader changes);
//! - per task, status updates reach the master in order; only the head of a
//!   task's queue is in flight, re-sent with a doubling backoff until the
//!   master relays the framework's acknowledgement of its uuid, and re-sent
//!   at once on every new registration;
//! - a task leaves the books only when it is terminal and every update for
//!   it was acknowledged; it then counts as finished (or ended otherwise).
//!
//! A task runs as a simulated command executor: on RunTask the agent queues
//! TASK_STARTING and TASK_RUNNING, and TASK_FINISHED once the task's run
//! time has passed (the simulator's default, or the task's
//! [`DURATION_LABEL`]); a task labelled [`HOLD_LABEL`] runs until
//! [`SimAgent::release`]. A kill ends it TASK_KILLED.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use agora_core::{AgentId, Backoff, FrameworkId, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{AgentMessage, agent_message, master_message};

#[cfg(test)]
mod tests;

/// A task label whose value is the task's run time in milliseconds (the
/// simulator's `--task-duration-ms` otherwise).
pub const DURATION_LABEL: &str = "agora-sim.duration-ms";
/// A task label (any value): the task runs until the simulator is told to
/// release held tasks (`POST /release`), then finishes.
pub const HOLD_LABEL: &str = "agora-sim.hold";

/// The time as the shell passes it in: monotonic since the simulator
/// started (deadlines), and wall-clock seconds (update timestamps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now {
    pub monotonic: Duration,
    pub wall: f64,
}

/// How tasks run and how updates are retried; one for all agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Run time of a task that names none (zero: it finishes at once).
    pub task_duration: Duration,
    /// First resend of an unacknowledged update, doubling up to
    /// `retry_max` (the real agent: 10 s and 600 s, as Mesos).
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            task_duration: Duration::ZERO,
            retry_min: Duration::from_secs(10),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// What the shell must do.
// Moved once from the state machine to the shell; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this on the current session.
    Send(AgentMessage),
    /// The master belongs to an older leadership term: drop the session
    /// and open a new one only once the leader changes.
    Fenced,
}

/// Where the agent stands with the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// No session stream.
    Disconnected,
    /// `Register` sent, no answer yet.
    Registering,
    /// The master with this id (and epoch, over ZooKeeper) accepted us.
    Registered {
        master_id: String,
        epoch: Option<u64>,
    },
    /// The master refused us; the reason, until a master accepts us.
    Refused(String),
}

/// One task on the agent's books.
#[derive(Debug, Clone)]
struct SimTask {
    name: String,
    resources: Vec<pb::Resource>,
    /// The latest state the simulated executor reported.
    state: pb::TaskState,
    /// Updates the master has not acknowledged; the head is in flight.
    pending: VecDeque<pb::TaskStatus>,
    next_retry: Option<Duration>,
    backoff: Backoff,
    /// When the run ends; `None` while held (or once it has ended).
    finish_at: Option<Duration>,
    held: bool,
}

/// A task that left the books: terminal, every update acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub state: pb::TaskState,
}

/// Running totals of one agent, summed by the simulator's `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub registrations: u64,
    pub launches: u64,
    pub updates_sent: u64,
    pub updates_resent: u64,
    pub acks: u64,
    pub pings: u64,
}

/// A live task as the books show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTask {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub state: pb::TaskState,
    /// Updates not yet acknowledged.
    pub unacknowledged: usize,
}

pub struct SimAgent {
    info: pb::AgentInfo,
    agent_id: Option<AgentId>,
    session: Session,
    /// The newest leadership epoch seen from a master.
    max_epoch: Option<u64>,
    frameworks: BTreeMap<FrameworkId, pb::FrameworkInfo>,
    tasks: BTreeMap<(FrameworkId, TaskId), SimTask>,
    ended: Vec<Ended>,
    counters: Counters,
    timing: Timing,
    uuid_seed: u64,
    uuid_counter: u64,
}

impl SimAgent {
    /// `info` without an id (the master assigns one); `uuid_seed` makes this
    /// agent's update uuids unique among all agents.
    pub fn new(info: pb::AgentInfo, timing: Timing, uuid_seed: u64) -> Self {
        Self {
            info,
            agent_id: None,
            session: Session::Disconnected,
            max_epoch: None,
            frameworks: BTreeMap::new(),
            tasks: BTreeMap::new(),
            ended: Vec::new(),
            counters: Counters::default(),
            timing,
            uuid_seed,
            uuid_counter: 0,
        }
    }

    pub fn hostname(&self) -> &str {
        &self.info.hostname
    }

    pub fn agent_id(&self) -> Option<&AgentId> {
        self.agent_id.as_ref()
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn ended(&self) -> &[Ended] {
        &self.ended
    }

    pub fn live_tasks(&self) -> impl Iterator<Item = LiveTask> + '_ {
        self.tasks
            .iter()
            .map(|((framework_id, task_id), task)| LiveTask {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                state: task.state,
                unacknowledged: task.pending.len(),
            })
    }

    /// A new session stream is open: the first message to send on it.
    pub fn connected(&mut self) -> AgentMessage {
        self.session = Session::Registering;
        let mut info = self.info.clone();
        info.id = self.agent_id.as_ref().and_then(AgentId::to_field);
        let tasks = self
            .tasks
            .iter()
            .map(|((framework_id, task_id), task)| pb::Task {
                name: task.name.clone(),
                task_id: task_id.to_field(),
                framework_id: framework_id.to_field(),
                executor_id: Some(pb::ExecutorId {
                    value: task_id.as_str().to_string(),
                }),
                agent_id: info.id.clone(),
                state: Some(task.state as i32),
                resources: task.resources.clone(),
                statuses: Vec::new(),
                status_update_state: task.pending.front().map(|s| s.state.unwrap_or_default()),
                status_update_uuid: task.pending.front().and_then(|s| s.uuid.clone()),
            })
            .collect();
        AgentMessage {
            kind: Some(agent_message::Kind::Register(agent_message::Register {
                agent_info: Some(info),
                version: concat!("agora-sim ", env!("CARGO_PKG_VERSION")).to_string(),
                tasks,
                frameworks: self.frameworks.values().cloned().collect(),
            })),
        }
    }

    /// The session stream ended (or was dropped).
    pub fn disconnected(&mut self) {
        if !matches!(self.session, Session::Refused(_)) {
            self.session = Session::Disconnected;
        }
    }

    fn registered(&self) -> bool {
        matches!(self.session, Session::Registered { .. })
    }

    /// A message from the master on the current session.
    pub fn on_master(&mut self, now: Now, message: master_message::Kind, out: &mut Vec<Effect>) {
        use master_message::Kind;
        match message {
            Kind::Registered(registered) => self.on_registered(now, registered, out),
            Kind::Ping(ping) => {
                self.counters.pings += 1;
                out.push(Effect::Send(pong(ping.seq)));
            }
            Kind::RunTask(run) => self.on_run_task(now, run, out),
            Kind::StatusUpdateAck(ack) => self.on_ack(now, ack, out),
            Kind::KillTask(kill) => {
                if let (Ok(framework_id), Ok(task_id)) = (
                    FrameworkId::from_field(&kill.framework_id),
                    TaskId::from_field(&kill.task_id),
                ) {
                    self.kill(now, &(framework_id, task_id), out);
                }
            }
            Kind::ShutdownExecutor(shutdown) => {
                // Command executors only: the executor id is the task id.
                if let (Ok(framework_id), Ok(executor_id)) = (
                    FrameworkId::from_field(&shutdown.framework_id),
                    agora_core::ExecutorId::from_field(&shutdown.executor_id),
                ) {
                    let key = (framework_id, TaskId::new(executor_id.as_str()));
                    self.kill(now, &key, out);
                }
            }
            Kind::ShutdownFramework(shutdown) => {
                if let Ok(framework_id) = FrameworkId::from_field(&shutdown.framework_id) {
                    let keys: Vec<_> = self
                        .tasks
                        .keys()
                        .filter(|(f, _)| *f == framework_id)
                        .cloned()
                        .collect();
                    for key in keys {
                        self.kill(now, &key, out);
                    }
                }
            }
            Kind::Refused(refused) => {
                tracing::warn!(hostname = %self.info.hostname, reason = %refused.message, "the master refused this simulated agent");
                self.session = Session::Refused(refused.message);
            }
            Kind::FrameworkMessage(_) => {}
        }
    }

    fn on_registered(
        &mut self,
        now: Now,
        registered: master_message::Registered,
        out: &mut Vec<Effect>,
    ) {
        let epoch = registered.master_info.as_ref().and_then(|m| m.epoch);
        if let (Some(epoch), Some(max)) = (epoch, self.max_epoch)
            && epoch < max
        {
            tracing::warn!(
                epoch,
                max,
                "refusing a master from an older leadership term"
            );
            self.session = Session::Disconnected;
            out.push(Effect::Fenced);
            return;
        }
        if epoch.is_some() {
            self.max_epoch = epoch;
        }
        let Ok(agent_id) = AgentId::from_field(&registered.agent_id) else {
            tracing::warn!("master sent an invalid agent id");
            return;
        };
        self.agent_id = Some(agent_id);
        self.session = Session::Registered {
            master_id: registered.master_info.map(|m| m.id).unwrap_or_default(),
            epoch,
        };
        self.counters.registrations += 1;
        // Whatever was in flight went to an older session: send it again.
        let keys: Vec<_> = self.tasks.keys().cloned().collect();
        for key in keys {
            self.send_head(now, &key, out);
        }
    }

    fn on_run_task(&mut self, now: Now, run: master_message::RunTask, out: &mut Vec<Effect>) {
        let (Some(framework), Some(task)) = (run.framework, run.task) else {
            return;
        };
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&framework.id),
            TaskId::from_field(&task.task_id),
        ) else {
            tracing::warn!("run task with invalid ids ignored");
            return;
        };
        let key = (framework_id.clone(), task_id);
        if self.tasks.contains_key(&key) {
            tracing::warn!(task_id = %key.1, "duplicate run task ignored");
            return;
        }
        self.counters.launches += 1;
        self.frameworks.insert(framework_id, framework);
        let labels = task
            .labels
            .as_ref()
            .map(|l| l.labels.as_slice())
            .unwrap_or_default();
        let held = labels.iter().any(|l| l.key == HOLD_LABEL);
        let duration = labels
            .iter()
            .find(|l| l.key == DURATION_LABEL)
            .and_then(|l| l.value.as_deref()?.parse::<u64>().ok())
            .map_or(self.timing.task_duration, Duration::from_millis);
        self.tasks.insert(
            key.clone(),
            SimTask {
                name: task.name,
                resources: task.resources,
                state: pb::TaskState::TaskStaging,
                pending: VecDeque::new(),
                next_retry: None,
                backoff: Backoff::new(self.timing.retry_min, self.timing.retry_max),
                finish_at: None,
                held,
            },
        );
        self.report(now, &key, pb::TaskState::TaskStarting, out);
        self.report(now, &key, pb::TaskState::TaskRunning, out);
        if !held {
            if duration.is_zero() {
                self.report(now, &key, pb::TaskState::TaskFinished, out);
            } else if let Some(task) = self.tasks.get_mut(&key) {
                task.finish_at = Some(now.monotonic + duration);
            }
        }
    }

    fn kill(&mut self, now: Now, key: &(FrameworkId, TaskId), out: &mut Vec<Effect>) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        if agora_core::task::is_terminal(task.state) {
            return;
        }
        task.finish_at = None;
        task.held = false;
        self.report(now, key, pb::TaskState::TaskKilled, out);
    }

    /// Held tasks finish now.
    pub fn release(&mut self, now: Now, out: &mut Vec<Effect>) {
        let held: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.held && !agora_core::task::is_terminal(t.state))
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            if let Some(task) = self.tasks.get_mut(&key) {
                task.held = false;
            }
            self.report(now, &key, pb::TaskState::TaskFinished, out);
        }
    }

    /// The simulated executor reports `state`: queued, and sent at once if
    /// it is the head of the task's queue.
    fn report(
        &mut self,
        now: Now,
        key: &(FrameworkId, TaskId),
        state: pb::TaskState,
        out: &mut Vec<Effect>,
    ) {
        self.uuid_counter += 1;
        let mut uuid = Vec::with_capacity(16);
        uuid.extend_from_slice(&self.uuid_seed.to_be_bytes());
        uuid.extend_from_slice(&self.uuid_counter.to_be_bytes());
        let agent_id = self.agent_id.as_ref().and_then(AgentId::to_field);
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        task.state = state;
        task.pending.push_back(pb::TaskStatus {
            task_id: key.1.to_field(),
            state: Some(state as i32),
            source: Some(pb::task_status::Source::Executor as i32),
            agent_id,
            executor_id: Some(pb::ExecutorId {
                value: key.1.as_str().to_string(),
            }),
            timestamp: Some(now.wall),
            uuid: Some(uuid),
            ..Default::default()
        });
        if task.pending.len() == 1 {
            task.backoff.reset();
            self.send_head(now, key, out);
        }
    }

    /// Sends the head of a task's queue (when registered) and arms its retry.
    fn send_head(&mut self, now: Now, key: &(FrameworkId, TaskId), out: &mut Vec<Effect>) {
        let registered = self.registered();
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let Some(head) = task.pending.front() else {
            task.next_retry = None;
            return;
        };
        if registered {
            self.counters.updates_sent += 1;
            out.push(Effect::Send(AgentMessage {
                kind: Some(agent_message::Kind::StatusUpdate(
                    agent_message::StatusUpdate {
                        framework_id: key.0.to_field(),
                        status: Some(head.clone()),
                        latest_state: Some(task.state as i32),
                    },
                )),
            }));
        }
        task.next_retry = Some(now.monotonic + task.backoff.current());
    }

    fn on_ack(&mut self, now: Now, ack: master_message::StatusUpdateAck, out: &mut Vec<Effect>) {
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&ack.framework_id),
            TaskId::from_field(&ack.task_id),
        ) else {
            return;
        };
        let key = (framework_id, task_id);
        let Some(task) = self.tasks.get_mut(&key) else {
            return; // a duplicate: ignored, as the real agent does
        };
        if task.pending.front().and_then(|s| s.uuid.as_deref()) != Some(ack.uuid.as_slice()) {
            return;
        }
        self.counters.acks += 1;
        task.pending.pop_front();
        task.backoff.reset();
        if task.pending.is_empty() && agora_core::task::is_terminal(task.state) {
            let state = task.state;
            self.tasks.remove(&key);
            let (framework_id, task_id) = key;
            if !self.tasks.keys().any(|(f, _)| *f == framework_id) {
                self.frameworks.remove(&framework_id);
            }
            self.ended.push(Ended {
                framework_id,
                task_id,
                state,
            });
            return;
        }
        self.send_head(now, &key, out);
    }

    /// The earliest time [`Self::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.tasks
            .values()
            .flat_map(|t| [t.finish_at, t.next_retry])
            .flatten()
            .min()
    }

    /// Runs that ended finish; unacknowledged heads whose wait ran out are
    /// sent again, each with a doubled wait.
    pub fn on_tick(&mut self, now: Now, out: &mut Vec<Effect>) {
        let finishing: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.finish_at.is_some_and(|at| at <= now.monotonic))
            .map(|(k, _)| k.clone())
            .collect();
        for key in finishing {
            if let Some(task) = self.tasks.get_mut(&key) {
                task.finish_at = None;
            }
            self.report(now, &key, pb::TaskState::TaskFinished, out);
        }
        let due: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.next_retry.is_some_and(|at| at <= now.monotonic))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(task) = self.tasks.get_mut(&key) {
                task.backoff.next_delay();
            }
            if self.registered() {
                self.counters.updates_resent += 1;
            }
            self.send_head(now, &key, out);
        }
    }
}

fn pong(seq: u64) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Pong(agent_message::Pong { seq })),
    }
}
