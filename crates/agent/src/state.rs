//! The agent's state machine. Pure: the shell passes time and connections in
//! and carries out the effects.
//!
//! Invariants:
//! - per task, status updates reach the master in the order the executor
//!   sent them; only the head of a task's queue is in flight, and it is
//!   re-sent (with backoff) until the master acknowledges its uuid;
//! - an update is acknowledged to the executor only once it is queued here,
//!   so the executor may forget it;
//! - a task leaves the agent's books only when terminal and every update
//!   for it has been acknowledged;
//! - everything a restarted agent needs is checkpointed through
//!   [`Effect::Checkpoint`], emitted before the effects that rely on it: an
//!   executor's update is written before it is acknowledged to the executor
//!   (the shell runs effects in order and drops acknowledgements that follow
//!   a failed write).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use agora_core::{AgentId, ExecutorId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{AgentMessage, agent_message, master_message};
use agora_proto::v1::executor as exec;

use crate::checkpoint::{Checkpoint, ExecutorRun, Recovered};

/// First retry of an unacknowledged update, doubling up to the max (Mesos'
/// STATUS_UPDATE_RETRY_INTERVAL_MIN/MAX).
pub const RETRY_MIN: Duration = Duration::from_secs(10);
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// How long an executor found alive at recovery has to re-subscribe before
/// it is killed and its task failed. Mesos uses 2 s; our executors retry
/// with a backoff capped at 2 s, so 2 s would race a healthy executor on a
/// busy host. Executors that died are detected at once (pid watch), so this
/// only bounds how long a hung one holds its task; 10 s costs little.
pub const EXECUTOR_REREGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a custom executor sent SHUTDOWN has before it is destroyed,
/// unless its `ExecutorInfo.shutdown_grace_period` says otherwise (Mesos'
/// `--executor_shutdown_grace_period`).
pub const EXECUTOR_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Identifies one executor's stream; assigned by the shell.
pub type ExecutorConn = u64;

// Moved once from the state machine to the shell; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    ToMaster(AgentMessage),
    /// Start `agora executor` for this task (the command executor: executor id = task id).
    LaunchExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
    },
    ToExecutor {
        conn: ExecutorConn,
        event: exec::Event,
    },
    /// A custom executor's container took a task: its limits grow.
    UpdateContainer {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
    },
    /// Kill the executor process (it has not subscribed, or must go).
    DestroyExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
    },
    /// Persist (or remove) a record before the effects that follow.
    Checkpoint(Checkpoint),
}

#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub info: pb::TaskInfo,
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub resources: Resources,
    /// The latest state reported by the executor (or generated here).
    pub state: pb::TaskState,
    /// Updates not yet acknowledged by the master; the head is in flight.
    pub pending: VecDeque<pb::TaskStatus>,
    pub next_retry: Option<Duration>,
    pub backoff: Duration,
}

#[derive(Debug, Clone)]
pub struct ExecutorRecord {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    /// The task the executor was started for (the command executor's only one).
    pub task_id: TaskId,
    /// A framework's own executor (`TaskInfo.executor`); `None` for the
    /// command executor, which runs exactly one task.
    pub info: Option<pb::ExecutorInfo>,
    /// The executor's own resources (a custom executor's
    /// `ExecutorInfo.resources`), parsed once when the executor was
    /// recorded; empty for the command executor.
    pub resources: Resources,
    /// Every task given to this executor, live or not, while it exists.
    pub tasks: BTreeSet<TaskId>,
    /// Tasks the executor holds: LAUNCH sent on its current stream, or
    /// listed by it when it subscribed.
    pub delivered: BTreeSet<TaskId>,
    pub conn: Option<ExecutorConn>,
    /// Set when the executor as a whole must go (the command executor's
    /// task is killed, or the framework is shut down).
    pub kill_requested: Option<KillOrder>,
    /// A custom executor asked to shut down is destroyed at this time.
    pub shutdown_deadline: Option<Duration>,
    /// The process, once started (or as found in the checkpoint).
    pub run: Option<ExecutorRun>,
    /// Set for executors recovered from the checkpoint until they
    /// re-subscribe: past it they are killed and their task failed.
    pub reregister_deadline: Option<Duration>,
}

pub struct AgentState {
    pub info: pb::AgentInfo,
    pub agent_id: Option<AgentId>,
    registered: bool,
    pub frameworks: BTreeMap<FrameworkId, pb::FrameworkInfo>,
    pub executors: BTreeMap<(FrameworkId, ExecutorId), ExecutorRecord>,
    pub tasks: BTreeMap<(FrameworkId, TaskId), TaskRecord>,
    /// Finished tasks, newest last, bounded.
    pub completed: VecDeque<TaskRecord>,
    uuid_seed: u64,
    uuid_counter: u64,
    /// The newest leadership epoch seen from a master.
    max_master_epoch: Option<u64>,
    /// The work dir's filesystem is full (the shell measures it): new tasks
    /// are refused rather than started with nowhere to write.
    disk_full: bool,
}

const MAX_COMPLETED: usize = 1000;

fn launch_event(task: pb::TaskInfo) -> exec::Event {
    exec::Event {
        r#type: exec::event::Type::Launch as i32,
        launch: Some(exec::event::Launch { task: Some(task) }),
        ..Default::default()
    }
}

/// A kill asked of a task or a whole executor: its grace period, and who
/// asked and why (the TASK_KILLED update's message).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KillOrder {
    pub policy: Option<pb::KillPolicy>,
    pub message: Option<String>,
}

fn kill_event(task_id: &TaskId, order: KillOrder) -> exec::Event {
    exec::Event {
        r#type: exec::event::Type::Kill as i32,
        kill: Some(exec::event::Kill {
            task_id: task_id.to_field(),
            kill_policy: order.policy,
            message: order.message,
        }),
        ..Default::default()
    }
}

fn status_update_message(
    framework_id: &FrameworkId,
    status: &pb::TaskStatus,
    latest: pb::TaskState,
) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::StatusUpdate(
            agent_message::StatusUpdate {
                framework_id: framework_id.to_field(),
                status: Some(status.clone()),
                latest_state: Some(latest as i32),
            },
        )),
    }
}

impl AgentState {
    /// `uuid_seed` makes the uuids of updates the agent generates itself
    /// unique across agent runs; the shell draws it at random.
    pub fn new(info: pb::AgentInfo, uuid_seed: u64) -> Self {
        Self {
            info,
            agent_id: None,
            registered: false,
            frameworks: BTreeMap::new(),
            executors: BTreeMap::new(),
            tasks: BTreeMap::new(),
            completed: VecDeque::new(),
            uuid_seed,
            uuid_counter: 0,
            max_master_epoch: None,
            disk_full: false,
        }
    }

    /// Leader fencing: accepts a master's registration unless its epoch is
    /// older than one already seen (a deposed leader that still serves).
    /// Masters without ZooKeeper have no epoch and are always accepted.
    pub fn accept_master_epoch(&mut self, epoch: Option<u64>) -> bool {
        match (epoch, self.max_master_epoch) {
            (Some(epoch), Some(max)) if epoch < max => false,
            (Some(epoch), _) => {
                self.max_master_epoch = Some(epoch);
                true
            }
            (None, _) => true,
        }
    }

    pub fn registered(&self) -> bool {
        self.registered
    }

    fn next_uuid(&mut self) -> Vec<u8> {
        self.uuid_counter += 1;
        let mut bytes = Vec::with_capacity(16);
        bytes.extend_from_slice(&self.uuid_seed.to_be_bytes());
        bytes.extend_from_slice(&self.uuid_counter.to_be_bytes());
        bytes
    }

    /// The first message of a master session: who we are and what we run.
    /// This agent's info with its id once the master gave it one: what the
    /// master and every subscribing executor are told.
    fn agent_info(&self) -> pb::AgentInfo {
        let mut info = self.info.clone();
        info.id = self.agent_id.as_ref().and_then(AgentId::to_field);
        info
    }

    pub fn register_message(&self) -> AgentMessage {
        let info = self.agent_info();
        let tasks = self
            .tasks
            .values()
            .map(|t| pb::Task {
                name: t.info.name.clone(),
                task_id: t.info.task_id.clone(),
                framework_id: t.framework_id.to_field(),
                executor_id: t.executor_id.to_field(),
                agent_id: info.id.clone(),
                state: Some(t.state as i32),
                resources: t.info.resources.clone(),
                statuses: Vec::new(),
                status_update_state: t.pending.front().map(|s| s.state.unwrap_or_default()),
                status_update_uuid: t.pending.front().and_then(|s| s.uuid.clone()),
            })
            .collect();
        AgentMessage {
            kind: Some(agent_message::Kind::Register(agent_message::Register {
                agent_info: Some(info),
                version: env!("CARGO_PKG_VERSION").to_string(),
                tasks,
                frameworks: self.frameworks.values().cloned().collect(),
            })),
        }
    }

    /// The master accepted our registration.
    pub fn on_registered(&mut self, now: Duration, agent_id: AgentId, out: &mut Vec<Effect>) {
        if let Some(previous) = &self.agent_id
            && previous != &agent_id
        {
            tracing::warn!(previous = %previous, new = %agent_id, "master assigned a new agent id");
        }
        if self.agent_id.as_ref() != Some(&agent_id) {
            out.push(Effect::Checkpoint(Checkpoint::AgentId(agent_id.clone())));
        }
        self.agent_id = Some(agent_id);
        self.registered = true;
        // Everything in flight was sent on an older session: send it again now.
        let keys: Vec<_> = self.tasks.keys().cloned().collect();
        for key in keys {
            self.send_head(now, &key, out);
        }
    }

    pub fn on_master_disconnected(&mut self) {
        self.registered = false;
    }

    fn send_head(&mut self, now: Duration, key: &(FrameworkId, TaskId), out: &mut Vec<Effect>) {
        let registered = self.registered;
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        let Some(head) = task.pending.front() else {
            task.next_retry = None;
            return;
        };
        if registered {
            out.push(Effect::ToMaster(status_update_message(
                &key.0, head, task.state,
            )));
        }
        task.next_retry = Some(now + task.backoff);
    }

    /// The shell's latest measure of the work dir: while full, every task
    /// the master sends fails at once with `REASON_CONTAINER_LAUNCH_FAILED`.
    pub fn set_disk_full(&mut self, full: bool) {
        self.disk_full = full;
    }

    pub fn disk_full(&self) -> bool {
        self.disk_full
    }

    /// The master asks us to run a task.
    pub fn on_run_task(
        &mut self,
        now: Duration,
        run: master_message::RunTask,
        out: &mut Vec<Effect>,
    ) {
        let (Some(framework), Some(task)) = (run.framework, run.task) else {
            tracing::warn!("run task without framework or task ignored");
            return;
        };
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&framework.id),
            TaskId::from_field(&task.task_id),
        ) else {
            tracing::warn!("run task with invalid ids ignored");
            return;
        };
        let key = (framework_id.clone(), task_id.clone());
        if self.tasks.contains_key(&key) {
            tracing::warn!(task_id = %task_id, "duplicate run task ignored");
            return;
        }
        let custom = task.executor.clone();
        let executor_id = match &custom {
            Some(info) => match ExecutorId::from_field(&info.executor_id) {
                Ok(id) => id,
                Err(_) => {
                    tracing::warn!(task_id = %task_id, "run task with an invalid executor id ignored");
                    return;
                }
            },
            None => ExecutorId::new(task_id.as_str()),
        };
        if self.frameworks.get(&framework_id) != Some(&framework) {
            out.push(Effect::Checkpoint(Checkpoint::Framework(framework.clone())));
            self.frameworks.insert(framework_id.clone(), framework);
        }
        let executor_key = (framework_id.clone(), executor_id.clone());
        // A task joins a running custom executor of the same id; it cannot
        // join a command executor, nor one that is shutting down.
        let existing = self
            .executors
            .get(&executor_key)
            .map(|e| e.info.is_some() && custom.is_some() && e.kill_requested.is_none());
        // Resources are parsed here, at the edge, once: a task whose
        // resources (or whose new executor's) cannot be read is an error,
        // never a task run with "nothing" as its limits.
        let parsed = Resources::from_proto(&task.resources)
            .map_err(|e| format!("task resources cannot be parsed: {e}"))
            .and_then(|resources| {
                let executor = match (&custom, existing) {
                    (Some(info), None) => Resources::from_proto(&info.resources)
                        .map_err(|e| format!("executor resources cannot be parsed: {e}"))?,
                    _ => Resources::default(),
                };
                Ok((resources, executor))
            });
        let (resources, executor_resources, invalid) = match parsed {
            Ok((task, executor)) => (task, executor, None),
            Err(message) => (Resources::default(), Resources::default(), Some(message)),
        };
        let refusal = match existing {
            _ if invalid.is_some() => Some((
                pb::TaskState::TaskError,
                pb::task_status::Reason::TaskInvalid,
                invalid.unwrap_or_default(),
            )),
            Some(false) => Some((
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::TaskInvalid,
                format!(
                    "executor {executor_id} cannot take this task: it is a command executor, or shutting down"
                ),
            )),
            _ if self.disk_full => Some((
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ContainerLaunchFailed,
                "agent disk full: the agent's work dir has no space left for a sandbox".to_string(),
            )),
            _ => None,
        };
        if existing.is_none() && refusal.is_none() {
            out.push(Effect::Checkpoint(Checkpoint::Executor {
                framework_id: framework_id.clone(),
                executor_id: executor_id.clone(),
                task_id: task_id.clone(),
                info: custom.clone(),
                run: None,
            }));
        }
        out.push(Effect::Checkpoint(Checkpoint::Task {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            info: task.clone(),
        }));
        self.tasks.insert(
            key,
            TaskRecord {
                info: task.clone(),
                framework_id: framework_id.clone(),
                executor_id: executor_id.clone(),
                resources,
                state: pb::TaskState::TaskStaging,
                pending: VecDeque::new(),
                next_retry: None,
                backoff: RETRY_MIN,
            },
        );
        if let Some((state, reason, message)) = refusal {
            tracing::warn!(task_id = %task_id, reason = %message, "task refused");
            self.agent_update(now, &framework_id, &task_id, state, reason, message, out);
            return;
        }
        match existing {
            Some(false) => {} // refused above
            Some(true) => {
                let Some(executor) = self.executors.get_mut(&executor_key) else {
                    return;
                };
                executor.tasks.insert(task_id.clone());
                if let Some(conn) = executor.conn {
                    executor.delivered.insert(task_id);
                    out.push(Effect::ToExecutor {
                        conn,
                        event: launch_event(task),
                    });
                }
                // Otherwise delivered when the executor subscribes.
                out.push(Effect::UpdateContainer {
                    framework_id,
                    executor_id,
                });
            }
            None => {
                self.executors.insert(
                    executor_key,
                    ExecutorRecord {
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        task_id: task_id.clone(),
                        info: custom,
                        resources: executor_resources,
                        tasks: BTreeSet::from([task_id]),
                        delivered: BTreeSet::new(),
                        conn: None,
                        kill_requested: None,
                        shutdown_deadline: None,
                        run: None,
                        reregister_deadline: None,
                    },
                );
                out.push(Effect::LaunchExecutor {
                    framework_id,
                    executor_id,
                });
            }
        }
    }

    /// The resources a container holds: its executor's own (custom
    /// executors) plus those of its live tasks.
    pub fn container_resources(
        &self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) -> Resources {
        let Some(executor) = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
        else {
            return Resources::default();
        };
        let mut total = executor.resources.clone();
        for task_id in &executor.tasks {
            if let Some(task) = self.tasks.get(&(framework_id.clone(), task_id.clone()))
                && !agora_core::task::is_terminal(task.state)
            {
                total.add(&task.resources);
            }
        }
        total
    }

    /// The executor process for a task could not even be started.
    pub fn on_executor_launch_failed(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        self.executor_gone(
            now,
            framework_id,
            executor_id,
            pb::TaskState::TaskFailed,
            pb::task_status::Reason::ContainerLaunchFailed,
            message,
            out,
        );
    }

    /// The shell started the executor's process.
    pub fn on_executor_launched(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        run: ExecutorRun,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self
            .executors
            .get_mut(&(framework_id.clone(), executor_id.clone()))
        else {
            return;
        };
        executor.run = Some(run.clone());
        out.push(Effect::Checkpoint(Checkpoint::Executor {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            task_id: executor.task_id.clone(),
            info: executor.info.clone(),
            run: Some(run),
        }));
    }

    /// Checkpoints an executor's removal, and its framework's once nothing
    /// of it is left here.
    fn executor_removed(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::Checkpoint(Checkpoint::RemoveExecutor {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
        }));
        self.forget_framework_if_unused(framework_id, out);
    }

    fn forget_framework_if_unused(&mut self, framework_id: &FrameworkId, out: &mut Vec<Effect>) {
        let used = self.executors.keys().any(|(f, _)| f == framework_id)
            || self.tasks.keys().any(|(f, _)| f == framework_id);
        if !used && self.frameworks.remove(framework_id).is_some() {
            out.push(Effect::Checkpoint(Checkpoint::RemoveFramework(
                framework_id.clone(),
            )));
        }
    }

    /// Checkpoints a task's state and queue as they are now.
    fn checkpoint_updates(&self, key: &(FrameworkId, TaskId), out: &mut Vec<Effect>) {
        if let Some(task) = self.tasks.get(key) {
            out.push(Effect::Checkpoint(Checkpoint::TaskUpdates {
                framework_id: key.0.clone(),
                executor_id: task.executor_id.clone(),
                task_id: key.1.clone(),
                state: task.state,
                pending: task.pending.iter().cloned().collect(),
            }));
        }
    }

    /// Retires a terminal task whose updates were all acknowledged.
    fn retire(&mut self, key: &(FrameworkId, TaskId), out: &mut Vec<Effect>) {
        if let Some(done) = self.tasks.remove(key) {
            out.push(Effect::Checkpoint(Checkpoint::RemoveTask {
                framework_id: key.0.clone(),
                executor_id: done.executor_id.clone(),
                task_id: key.1.clone(),
            }));
            self.completed.push_back(done);
            while self.completed.len() > MAX_COMPLETED {
                self.completed.pop_front();
            }
            self.forget_framework_if_unused(&key.0, out);
        }
    }

    /// Queues an update the agent generates itself (no executor to report it).
    #[allow(clippy::too_many_arguments)]
    fn agent_update(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        let uuid = self.next_uuid();
        let status = pb::TaskStatus {
            task_id: task_id.to_field(),
            state: Some(state as i32),
            message: Some(message),
            source: Some(pb::task_status::Source::Agent as i32),
            reason: Some(reason as i32),
            agent_id: self.agent_id.as_ref().and_then(AgentId::to_field),
            uuid: Some(uuid),
            ..Default::default()
        };
        self.enqueue(now, framework_id, status, out);
    }

    /// Queues an update for delivery; sends it at once if it is the head.
    fn enqueue(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        mut status: pb::TaskStatus,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Ok(task_id) = TaskId::from_field(&status.task_id) else {
            return false;
        };
        let key = (framework_id.clone(), task_id);
        let Some(task) = self.tasks.get_mut(&key) else {
            return false;
        };
        if status.uuid.is_some() && task.pending.iter().any(|p| p.uuid == status.uuid) {
            return true; // a retry of an update we already hold
        }
        let Ok(state) = agora_core::task::from_i32(status.state.unwrap_or_default()) else {
            return false;
        };
        if agora_core::task::check_transition(task.state, state).is_err() {
            tracing::warn!(task_id = %key.1, "update after a terminal state dropped");
            return true;
        }
        status.agent_id = self.agent_id.as_ref().and_then(AgentId::to_field);
        task.state = state;
        task.pending.push_back(status);
        let first = task.pending.len() == 1;
        // Written before anything relies on it (the executor's ack follows).
        self.checkpoint_updates(&key, out);
        if first {
            if let Some(task) = self.tasks.get_mut(&key) {
                task.backoff = RETRY_MIN;
            }
            self.send_head(now, &key, out);
        }
        true
    }

    /// The master relays a framework's acknowledgement.
    pub fn on_status_ack(
        &mut self,
        now: Duration,
        ack: master_message::StatusUpdateAck,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&ack.framework_id),
            TaskId::from_field(&ack.task_id),
        ) else {
            return;
        };
        let key = (framework_id, task_id);
        let Some(task) = self.tasks.get_mut(&key) else {
            return; // duplicate or unexpected: ignored, as in Mesos
        };
        if task.pending.front().and_then(|s| s.uuid.as_deref()) != Some(ack.uuid.as_slice()) {
            return;
        }
        task.pending.pop_front();
        task.backoff = RETRY_MIN;
        if task.pending.is_empty() && agora_core::task::is_terminal(task.state) {
            self.retire(&key, out);
            return;
        }
        self.checkpoint_updates(&key, out);
        self.send_head(now, &key, out);
    }

    /// The earliest time [`Self::on_tick`] has something to do: a status
    /// update to resend, or an executor whose re-subscription time or
    /// shutdown grace runs out. `None`: nothing is waiting on a deadline.
    /// The shell sleeps until it (or until an input comes) instead of
    /// ticking; calling `on_tick` earlier or later changes nothing but when
    /// the due work happens.
    pub fn next_deadline(&self) -> Option<Duration> {
        let retries = self.tasks.values().filter_map(|t| t.next_retry);
        let executors = self
            .executors
            .values()
            .flat_map(|e| [e.reregister_deadline, e.shutdown_deadline])
            .flatten();
        retries.chain(executors).min()
    }

    /// Re-sends heads whose retry time has come, backing off.
    pub fn on_tick(&mut self, now: Duration, out: &mut Vec<Effect>) {
        let due: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.next_retry.is_some_and(|r| r <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(task) = self.tasks.get_mut(&key) {
                task.backoff = (task.backoff * 2).min(RETRY_MAX);
            }
            self.send_head(now, &key, out);
        }
        let overdue: Vec<_> = self
            .executors
            .iter()
            .filter(|(_, e)| e.reregister_deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let shut_down: Vec<_> = self
            .executors
            .iter()
            .filter(|(_, e)| e.shutdown_deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for (framework_id, executor_id) in shut_down {
            tracing::info!(executor_id = %executor_id, "executor outlived its shutdown grace period; destroying it");
            self.destroy_executor(
                now,
                &framework_id,
                &executor_id,
                pb::TaskState::TaskKilled,
                pb::task_status::Reason::ExecutorTerminated,
                "the executor was shut down".into(),
                out,
            );
        }
        for (framework_id, executor_id) in overdue {
            tracing::warn!(executor_id = %executor_id, "executor did not re-subscribe after the agent restarted; killing it");
            self.destroy_executor(
                now,
                &framework_id,
                &executor_id,
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ExecutorReregistrationTimeout,
                format!(
                    "the executor did not re-subscribe within {}s of the agent's restart",
                    EXECUTOR_REREGISTER_TIMEOUT.as_secs()
                ),
                out,
            );
        }
    }

    pub fn on_kill_task(
        &mut self,
        now: Duration,
        kill: master_message::KillTask,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(task_id)) = (
            FrameworkId::from_field(&kill.framework_id),
            TaskId::from_field(&kill.task_id),
        ) else {
            return;
        };
        let Some(task) = self.tasks.get(&(framework_id.clone(), task_id.clone())) else {
            tracing::info!(task_id = %task_id, "kill for a task this agent does not run");
            return;
        };
        if agora_core::task::is_terminal(task.state) {
            return;
        }
        let executor_key = (framework_id.clone(), task.executor_id.clone());
        let order = KillOrder {
            policy: kill.kill_policy,
            message: kill.message,
        };
        self.kill_task(now, &executor_key, &task_id, order, out);
    }

    /// The framework's SHUTDOWN: the executor and all its tasks go.
    pub fn on_shutdown_executor(
        &mut self,
        now: Duration,
        shutdown: master_message::ShutdownExecutor,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(executor_id)) = (
            FrameworkId::from_field(&shutdown.framework_id),
            ExecutorId::from_field(&shutdown.executor_id),
        ) else {
            return;
        };
        let key = (framework_id, executor_id);
        if !self.executors.contains_key(&key) {
            tracing::info!(executor_id = %key.1, "shutdown for an executor this agent does not run");
            return;
        }
        let order = KillOrder {
            policy: None,
            message: Some("the framework shut its executor down".into()),
        };
        self.kill_executor(now, &key, order, out);
    }

    /// Kills one task. The command executor goes with its task; a custom
    /// executor is asked to kill it, or, when it does not hold the task yet,
    /// the task is reported killed here.
    fn kill_task(
        &mut self,
        now: Duration,
        executor_key: &(FrameworkId, ExecutorId),
        task_id: &TaskId,
        order: KillOrder,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self.executors.get_mut(executor_key) else {
            return;
        };
        if executor.info.is_none() {
            self.kill_executor(now, executor_key, order, out);
            return;
        }
        match executor.conn {
            Some(conn) if executor.delivered.contains(task_id) => out.push(Effect::ToExecutor {
                conn,
                event: kill_event(task_id, order),
            }),
            _ => {
                let (framework_id, _) = executor_key.clone();
                self.agent_update(
                    now,
                    &framework_id,
                    task_id,
                    pb::TaskState::TaskKilled,
                    pb::task_status::Reason::TaskKilledDuringLaunch,
                    "killed before it was delivered to its executor".into(),
                    out,
                );
                out.push(Effect::UpdateContainer {
                    framework_id,
                    executor_id: executor_key.1.clone(),
                });
            }
        }
    }

    /// Stops a whole executor. The command executor is asked to kill its
    /// task (or destroyed when it never got it); a custom executor is sent
    /// SHUTDOWN and destroyed after its grace period.
    fn kill_executor(
        &mut self,
        now: Duration,
        executor_key: &(FrameworkId, ExecutorId),
        order: KillOrder,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self.executors.get_mut(executor_key) else {
            return;
        };
        if executor.kill_requested.is_some() {
            return;
        }
        executor.kill_requested = Some(order.clone());
        let launched = executor.delivered.contains(&executor.task_id);
        match (executor.conn, executor.info.is_some(), launched) {
            (Some(conn), true, _) => {
                let grace = executor
                    .info
                    .as_ref()
                    .and_then(|i| i.shutdown_grace_period)
                    .and_then(|g| u64::try_from(g.nanoseconds).ok())
                    .map(Duration::from_nanos)
                    .unwrap_or(EXECUTOR_SHUTDOWN_GRACE);
                executor.shutdown_deadline = Some(now + grace);
                out.push(Effect::ToExecutor {
                    conn,
                    event: exec::Event {
                        r#type: exec::event::Type::Shutdown as i32,
                        ..Default::default()
                    },
                });
            }
            (Some(conn), false, true) => out.push(Effect::ToExecutor {
                conn,
                event: kill_event(&executor.task_id, order),
            }),
            _ => {
                // Nothing started the tasks: no process to signal but the executor's.
                let (framework_id, executor_id) = executor_key.clone();
                self.destroy_executor(
                    now,
                    &framework_id,
                    &executor_id,
                    pb::TaskState::TaskKilled,
                    pb::task_status::Reason::TaskKilledDuringLaunch,
                    "killed before it started".into(),
                    out,
                );
            }
        }
    }

    /// The framework was removed: kill its tasks and drop its undelivered updates.
    pub fn on_shutdown_framework(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        out: &mut Vec<Effect>,
    ) {
        let executors: Vec<_> = self
            .executors
            .keys()
            .filter(|(f, _)| f == framework_id)
            .cloned()
            .collect();
        for key in executors {
            let order = KillOrder {
                policy: None,
                message: Some("killed: its framework was removed".into()),
            };
            self.kill_executor(now, &key, order, out);
        }
        let keys: Vec<_> = self
            .tasks
            .keys()
            .filter(|(f, _)| f == framework_id)
            .cloned()
            .collect();
        for key in keys {
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            // Nobody will acknowledge these any more.
            task.pending.clear();
            task.next_retry = None;
            if agora_core::task::is_terminal(task.state) {
                self.retire(&key, out);
            } else {
                self.checkpoint_updates(&key, out);
            }
        }
    }

    /// An executor subscribed on stream `conn`. `held` lists the tasks it
    /// already holds (from its subscription): those are not launched again,
    /// whether it reconnects to this agent run or to a restarted agent.
    /// Every other live task of the executor is launched now.
    #[allow(clippy::too_many_arguments)]
    pub fn on_executor_subscribe(
        &mut self,
        now: Duration,
        conn: ExecutorConn,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        held: &[TaskId],
        unacknowledged: Vec<pb::TaskStatus>,
        out: &mut Vec<Effect>,
    ) -> Result<(), String> {
        let key = (framework_id.clone(), executor_id.clone());
        let Some(executor) = self.executors.get_mut(&key) else {
            return Err(format!(
                "executor {executor_id} of framework {framework_id} is not known to this agent"
            ));
        };
        executor.conn = Some(conn);
        executor.reregister_deadline = None;
        executor.delivered = held
            .iter()
            .filter(|t| executor.tasks.contains(t))
            .cloned()
            .collect();
        let kill = executor.kill_requested.clone();
        let info = executor.info.clone();
        let first_task = executor.task_id.clone();
        let to_launch: Vec<TaskId> = if kill.is_some() {
            Vec::new()
        } else {
            executor
                .tasks
                .iter()
                .filter(|t| !executor.delivered.contains(*t))
                .filter(|t| {
                    self.tasks
                        .get(&(framework_id.clone(), (*t).clone()))
                        .is_some_and(|r| !agora_core::task::is_terminal(r.state))
                })
                .cloned()
                .collect()
        };
        executor.delivered.extend(to_launch.iter().cloned());
        let framework = self
            .frameworks
            .get(framework_id)
            .cloned()
            .unwrap_or_default();
        let mut executor_info = info.clone().unwrap_or_default();
        executor_info.executor_id = executor_id.to_field();
        executor_info.framework_id = framework_id.to_field();
        out.push(Effect::ToExecutor {
            conn,
            event: exec::Event {
                r#type: exec::event::Type::Subscribed as i32,
                subscribed: Some(exec::event::Subscribed {
                    executor_info: Some(executor_info),
                    framework_info: Some(framework),
                    agent_info: Some(self.agent_info()),
                }),
                ..Default::default()
            },
        });
        for status in unacknowledged {
            self.on_executor_update(now, conn, framework_id, executor_id, status, out);
        }
        for task_id in to_launch {
            if let Some(task) = self.tasks.get(&(framework_id.clone(), task_id)) {
                out.push(Effect::ToExecutor {
                    conn,
                    event: launch_event(task.info.clone()),
                });
            }
        }
        match (kill, info.is_some()) {
            (Some(_), true) => out.push(Effect::ToExecutor {
                conn,
                event: exec::Event {
                    r#type: exec::event::Type::Shutdown as i32,
                    ..Default::default()
                },
            }),
            (Some(order), false) => out.push(Effect::ToExecutor {
                conn,
                event: kill_event(&first_task, order),
            }),
            (None, _) => {}
        }
        Ok(())
    }

    /// An executor reports a status; it is queued, then acknowledged to the executor.
    pub fn on_executor_update(
        &mut self,
        now: Duration,
        conn: ExecutorConn,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        status: pb::TaskStatus,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
        else {
            return;
        };
        let Some(task_id) = TaskId::from_field(&status.task_id)
            .ok()
            .filter(|t| executor.tasks.contains(t))
        else {
            tracing::warn!(executor_id = %executor_id, "executor reported a task it does not run");
            return;
        };
        let Some(uuid) = status.uuid.clone().filter(|u| u.len() == 16) else {
            tracing::warn!(executor_id = %executor_id, "executor update without a valid uuid dropped");
            return;
        };
        let retired = !self
            .tasks
            .contains_key(&(framework_id.clone(), task_id.clone()));
        let task_id = status.task_id.clone();
        let mut status = status;
        // Bounded before it is checkpointed, acknowledged or forwarded: the
        // same uuid always yields the same bounded update.
        if let Some(cut) = crate::status_bound::bound_status(&mut status) {
            tracing::warn!(executor_id = %executor_id, task_id = ?status.task_id.as_ref().map(|t| t.value.as_str()), cut = %cut, "oversized status update from an executor cut down");
        }
        status.source = Some(pb::task_status::Source::Executor as i32);
        status.executor_id = executor_id.to_field();
        if retired {
            // The task's final update was delivered already (the executor
            // missed our ack, e.g. across an agent restart): it may forget it.
            tracing::debug!(executor_id = %executor_id, "update for a retired task acknowledged");
        }
        if retired || self.enqueue(now, framework_id, status, out) {
            out.push(Effect::ToExecutor {
                conn,
                event: exec::Event {
                    r#type: exec::event::Type::Acknowledged as i32,
                    acknowledged: Some(exec::event::Acknowledged { task_id, uuid }),
                    ..Default::default()
                },
            });
        }
    }

    /// A framework's message for one of its executors (Mesos'
    /// `FrameworkToExecutorMessage`): best effort and unacknowledged, so it
    /// goes out as a MESSAGE event only on the executor's live stream and is
    /// dropped otherwise (not subscribed, or shutting down), as in Mesos.
    pub fn on_framework_message(
        &self,
        message: master_message::FrameworkMessage,
        out: &mut Vec<Effect>,
    ) {
        let (Ok(framework_id), Ok(executor_id)) = (
            FrameworkId::from_field(&message.framework_id),
            ExecutorId::from_field(&message.executor_id),
        ) else {
            tracing::warn!("framework message with an invalid framework or executor id dropped");
            return;
        };
        let Some(executor) = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
        else {
            tracing::info!(framework_id = %framework_id, executor_id = %executor_id, "framework message for an unknown executor dropped");
            return;
        };
        let Some(conn) = executor.conn.filter(|_| executor.kill_requested.is_none()) else {
            tracing::info!(framework_id = %framework_id, executor_id = %executor_id, "framework message for an executor that is not running dropped");
            return;
        };
        let event = exec::Event {
            r#type: exec::event::Type::Message as i32,
            message: Some(exec::event::Message { data: message.data }),
            ..Default::default()
        };
        // The master bounds what it forwards, and the event is smaller than
        // that; checked anyway, since an event the executor cannot decode
        // would end its stream.
        let size = prost::Message::encoded_len(&event);
        if size > agora_net::MAX_MESSAGE_BYTES {
            tracing::warn!(framework_id = %framework_id, executor_id = %executor_id, size, limit = agora_net::MAX_MESSAGE_BYTES, "framework message too large for an executor dropped");
            return;
        }
        out.push(Effect::ToExecutor { conn, event });
    }

    /// An executor's message for its scheduler (Mesos'
    /// `ExecutorToFrameworkMessage`): best effort and unacknowledged, passed
    /// to the master, which sends the framework a MESSAGE event. Dropped
    /// when it does not come from the executor's live stream, or while no
    /// master is there to take it; refused when the master's message or
    /// the framework's event would exceed the gRPC message size (either
    /// peer would fail to decode it and lose its stream).
    pub fn on_executor_message(
        &self,
        conn: ExecutorConn,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        data: Vec<u8>,
        out: &mut Vec<Effect>,
    ) {
        let live = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
            .is_some_and(|e| e.conn == Some(conn));
        if !live {
            tracing::debug!(executor_id = %executor_id, "message from a stale executor stream dropped");
            return;
        }
        let Some(agent_id) = self.agent_id.as_ref().filter(|_| self.registered) else {
            tracing::info!(framework_id = %framework_id, executor_id = %executor_id, "executor message dropped: not registered with a master");
            return;
        };
        // What the master will make of it, measured here so that an
        // oversized message is refused where it enters, with a reason.
        let event = agora_proto::v1::scheduler::Event {
            r#type: agora_proto::v1::scheduler::event::Type::Message as i32,
            message: Some(agora_proto::v1::scheduler::event::Message {
                agent_id: agent_id.to_field(),
                executor_id: executor_id.to_field(),
                data,
            }),
            ..Default::default()
        };
        let event_size = prost::Message::encoded_len(&event);
        let data = event.message.map(|m| m.data).unwrap_or_default();
        let message = AgentMessage {
            kind: Some(agent_message::Kind::ExecutorMessage(
                agent_message::ExecutorMessage {
                    framework_id: framework_id.to_field(),
                    executor_id: executor_id.to_field(),
                    data,
                },
            )),
        };
        let size = prost::Message::encoded_len(&message).max(event_size);
        if size > agora_net::MAX_MESSAGE_BYTES {
            tracing::warn!(framework_id = %framework_id, executor_id = %executor_id, size, limit = agora_net::MAX_MESSAGE_BYTES, "executor message too large for its scheduler refused");
            return;
        }
        out.push(Effect::ToMaster(message));
    }

    /// An executor's stream ended (it may reconnect).
    pub fn on_executor_disconnected(&mut self, conn: ExecutorConn) {
        for executor in self.executors.values_mut() {
            if executor.conn == Some(conn) {
                executor.conn = None;
            }
        }
    }

    /// The executor process exited. A task it left non-terminal failed with it.
    pub fn on_executor_exited(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        description: String,
        limitation: Option<pb::task_status::Reason>,
        out: &mut Vec<Effect>,
    ) {
        let killed = self
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
            .is_some_and(|e| e.kill_requested.is_some());
        let (state, reason, message) = match limitation {
            Some(reason) => (pb::TaskState::TaskFailed, reason, description),
            None if killed => (
                pb::TaskState::TaskKilled,
                pb::task_status::Reason::ExecutorTerminated,
                format!("executor exited before the task ended: {description}"),
            ),
            None => (
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ExecutorTerminated,
                format!("executor exited before the task ended: {description}"),
            ),
        };
        self.executor_gone(now, framework_id, executor_id, state, reason, message, out);
    }

    /// Kills an executor's process and drops it; its non-terminal tasks end in `state`.
    #[allow(clippy::too_many_arguments)]
    fn destroy_executor(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::DestroyExecutor {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
        });
        self.executor_gone(now, framework_id, executor_id, state, reason, message, out);
    }

    /// Drops an executor; a task it left non-terminal ends in `state`.
    #[allow(clippy::too_many_arguments)]
    fn executor_gone(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        state: pb::TaskState,
        reason: pb::task_status::Reason,
        message: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(executor) = self
            .executors
            .remove(&(framework_id.clone(), executor_id.clone()))
        else {
            return;
        };
        for task_id in &executor.tasks {
            let live = self
                .tasks
                .get(&(framework_id.clone(), task_id.clone()))
                .is_some_and(|t| !agora_core::task::is_terminal(t.state));
            if live {
                self.agent_update(
                    now,
                    framework_id,
                    task_id,
                    state,
                    reason,
                    message.clone(),
                    out,
                );
            }
        }
        self.executor_removed(framework_id, executor_id, out);
    }

    /// Restores what a previous run of the agent checkpointed (same boot).
    /// Executors get [`EXECUTOR_REREGISTER_TIMEOUT`] to re-subscribe; the
    /// shell reports those whose process is gone through
    /// [`Self::on_executor_exited`]. Tasks left without an executor fail.
    /// Their undelivered updates go out once the master accepts us.
    pub fn recover(&mut self, now: Duration, recovered: Recovered, out: &mut Vec<Effect>) {
        self.agent_id = recovered.agent_id;
        for framework in recovered.frameworks {
            if let Ok(id) = FrameworkId::from_field(&framework.id) {
                self.frameworks.insert(id, framework);
            }
        }
        // Records whose resources cannot be read: their containers cannot
        // be sized, so their executors are destroyed and their tasks failed
        // with the reason, never run on as if they held nothing.
        let mut unreadable: BTreeMap<(FrameworkId, ExecutorId), String> = BTreeMap::new();
        for task in recovered.tasks {
            let Ok(task_id) = TaskId::from_field(&task.info.task_id) else {
                continue;
            };
            let resources = match Resources::from_proto(&task.info.resources) {
                Ok(resources) => resources,
                Err(e) => {
                    unreadable
                        .entry((task.framework_id.clone(), task.executor_id.clone()))
                        .or_insert_with(|| {
                            format!(
                                "the checkpointed resources of task {task_id} cannot be parsed: {e}"
                            )
                        });
                    Resources::default()
                }
            };
            self.frameworks
                .entry(task.framework_id.clone())
                .or_insert_with(|| pb::FrameworkInfo {
                    id: task.framework_id.to_field(),
                    ..Default::default()
                });
            self.tasks.insert(
                (task.framework_id.clone(), task_id),
                TaskRecord {
                    info: task.info,
                    framework_id: task.framework_id,
                    executor_id: task.executor_id,
                    resources,
                    state: task.state,
                    pending: task.pending.into(),
                    next_retry: None,
                    backoff: RETRY_MIN,
                },
            );
        }
        for executor in recovered.executors {
            let mut tasks: BTreeSet<TaskId> = self
                .tasks
                .iter()
                .filter(|((f, _), t)| {
                    f == &executor.framework_id && t.executor_id == executor.executor_id
                })
                .map(|((_, t), _)| t.clone())
                .collect();
            tasks.insert(executor.task_id.clone());
            let key = (executor.framework_id.clone(), executor.executor_id.clone());
            let resources = match executor
                .info
                .as_ref()
                .map(|i| Resources::from_proto(&i.resources))
                .transpose()
            {
                Ok(resources) => resources.unwrap_or_default(),
                Err(e) => {
                    unreadable.entry(key.clone()).or_insert_with(|| {
                        format!(
                            "the checkpointed resources of executor {} cannot be parsed: {e}",
                            executor.executor_id
                        )
                    });
                    Resources::default()
                }
            };
            self.executors.insert(
                (executor.framework_id.clone(), executor.executor_id.clone()),
                ExecutorRecord {
                    framework_id: executor.framework_id,
                    executor_id: executor.executor_id,
                    task_id: executor.task_id,
                    info: executor.info,
                    resources,
                    tasks,
                    delivered: BTreeSet::new(),
                    conn: None,
                    kill_requested: None,
                    shutdown_deadline: None,
                    run: executor.run,
                    reregister_deadline: Some(now + EXECUTOR_REREGISTER_TIMEOUT),
                },
            );
        }
        for ((framework_id, executor_id), message) in unreadable {
            tracing::error!(
                framework_id = %framework_id,
                executor_id = %executor_id,
                reason = %message,
                "unreadable checkpoint record; destroying its executor"
            );
            if self
                .executors
                .contains_key(&(framework_id.clone(), executor_id.clone()))
            {
                self.destroy_executor(
                    now,
                    &framework_id,
                    &executor_id,
                    pb::TaskState::TaskFailed,
                    pb::task_status::Reason::ExecutorTerminated,
                    message,
                    out,
                );
                continue;
            }
            // No executor record: fail its live tasks here with the reason
            // (the orphan pass below would give a vaguer one).
            let live: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|((f, _), t)| {
                    f == &framework_id
                        && t.executor_id == executor_id
                        && !agora_core::task::is_terminal(t.state)
                })
                .map(|((_, t), _)| t.clone())
                .collect();
            for task_id in live {
                self.agent_update(
                    now,
                    &framework_id,
                    &task_id,
                    pb::TaskState::TaskFailed,
                    pb::task_status::Reason::ExecutorTerminated,
                    message.clone(),
                    out,
                );
            }
        }
        let orphans: Vec<_> = self
            .tasks
            .iter()
            .filter(|(_, t)| !agora_core::task::is_terminal(t.state))
            .filter(|(k, t)| {
                !self
                    .executors
                    .contains_key(&(k.0.clone(), t.executor_id.clone()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (framework_id, task_id) in orphans {
            self.agent_update(
                now,
                &framework_id,
                &task_id,
                pb::TaskState::TaskFailed,
                pb::task_status::Reason::ExecutorTerminated,
                "the task's executor was lost while the agent was down".into(),
                out,
            );
        }
        let unused: Vec<_> = self.frameworks.keys().cloned().collect();
        for framework_id in unused {
            self.forget_framework_if_unused(&framework_id, out);
        }
        tracing::info!(
            agent_id = ?self.agent_id.as_ref().map(AgentId::as_str),
            frameworks = self.frameworks.len(),
            executors = self.executors.len(),
            tasks = self.tasks.len(),
            pending_updates = self.tasks.values().map(|t| t.pending.len()).sum::<usize>(),
            "recovered from the checkpoint"
        );
    }
}

#[cfg(test)]
mod tests;
