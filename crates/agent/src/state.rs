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
//!
//! [`AgentState`]'s books and the effects are defined here; its handlers sit
//! in one file per job under `state/`: `session.rs` (the master session and
//! leader fencing), `launch.rs` (tasks arriving, executors launched),
//! `status_updates.rs` (the status-update manager, the next deadline and
//! what is due at it), `kill.rs` (kills and shutdowns), `executors.rs`
//! (executors' subscriptions, updates, messages and exits) and
//! `recovery.rs` (the books rebuilt from a checkpoint). They share the
//! private helpers here and call each other's handlers; none imports
//! another.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use agora_core::{AgentId, Backoff, ExecutorId, FrameworkId, Resources, TaskId};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{AgentMessage, agent_message};
use agora_proto::v1::executor as exec;

use crate::checkpoint::{Checkpoint, ExecutorRun};

mod executors;
mod kill;
mod launch;
mod recovery;
mod session;
mod status_updates;

/// First retry of an unacknowledged update, doubling up to the max (Mesos'
/// STATUS_UPDATE_RETRY_INTERVAL_MIN/MAX).
pub const RETRY_MIN: Duration = Duration::from_secs(10);
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// A task's resend backoff: [`RETRY_MIN`] doubling up to [`RETRY_MAX`].
fn retry_backoff() -> Backoff {
    Backoff::new(RETRY_MIN, RETRY_MAX)
}

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
    /// Start the executor's current run (recorded before this effect, with
    /// no process yet): its container, sandbox and `agora executor` (the
    /// command executor: executor id = task id).
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
    /// The executor's run is recorded with its process (the record is on
    /// disk before this effect): a custom executor, held at its start gate
    /// until now, may become the framework's program. Before the record, an
    /// agent that stopped would not know the process, so the program must
    /// not run yet (see `executor::custom`).
    ExecutorRecorded {
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
    /// The uuids of the latest updates taken for this task, oldest first,
    /// at most [`RECEIVED_KEPT`]: an executor re-sends every update whose
    /// acknowledgement has not reached it (on its retry tick, and when it
    /// subscribes again), and one the master has acknowledged already is
    /// gone from `pending` but must not be queued again. Checkpointed with
    /// `pending`, so an agent restart does not forget them.
    pub received: VecDeque<Vec<u8>>,
    pub next_retry: Option<Duration>,
    /// Resends of the head: `current()` is the wait of the one in flight;
    /// reset when a new head goes out, doubled each time a wait runs out.
    pub backoff: Backoff,
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
    /// The current run: recorded before it is started, its process once
    /// it runs (or as found in the checkpoint). Tasks are delivered only
    /// to a run whose process is recorded ([`ExecutorRecord::started`]).
    pub run: Option<ExecutorRun>,
    /// Set for executors recovered from the checkpoint until they
    /// re-subscribe: past it they are killed and their task failed.
    pub reregister_deadline: Option<Duration>,
}

impl ExecutorRecord {
    /// Whether the run's process is recorded on disk: only then may the
    /// executor be given tasks, so that an agent crash never leaves a task
    /// running in a process the restarted agent cannot find.
    pub fn started(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.pid.is_some())
    }

    /// The checkpoint record of this executor as it stands.
    fn record(&self) -> Checkpoint {
        Checkpoint::Executor {
            framework_id: self.framework_id.clone(),
            executor_id: self.executor_id.clone(),
            task_id: self.task_id.clone(),
            info: self.info.clone(),
            run: self.run.clone(),
        }
    }
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
    /// Where sandboxes go (`<work_dir>/slaves/...`): a new run's is named
    /// when the run is drawn.
    work_dir: std::path::PathBuf,
    uuid_counter: u64,
    /// The newest leadership epoch seen from a master.
    max_master_epoch: Option<u64>,
    /// The work dir's filesystem is full (the shell measures it): new tasks
    /// are refused rather than started with nowhere to write.
    disk_full: bool,
}

const MAX_COMPLETED: usize = 1000;
/// How many update uuids a task remembers ([`TaskRecord::received`]). An
/// executor re-sends only updates it holds no acknowledgement for, and the
/// agent acknowledges one stream's updates in the order it takes them, so a
/// re-sent update is at most as far behind the newest as the executor's
/// unacknowledged list is long: a few in practice, 256 at most here (4 KiB
/// per task).
pub const RECEIVED_KEPT: usize = 256;

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
            work_dir: std::path::PathBuf::new(),
            uuid_counter: 0,
            max_master_epoch: None,
            disk_full: false,
        }
    }

    /// The agent's work dir, under which new runs' sandboxes are named.
    pub fn with_work_dir(mut self, work_dir: std::path::PathBuf) -> Self {
        self.work_dir = work_dir;
        self
    }

    /// A new run of an executor: its id (unique across agent runs, as the
    /// uuids are) and sandbox; no process yet.
    fn new_run(&mut self, framework_id: &FrameworkId, executor_id: &ExecutorId) -> ExecutorRun {
        let run_id = uuid::Uuid::from_bytes(self.next_uuid_bytes()).to_string();
        let agent_id = self
            .agent_id
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        ExecutorRun {
            sandbox: crate::sandbox::sandbox_path(
                &self.work_dir,
                &agent_id,
                framework_id.as_str(),
                executor_id.as_str(),
                &run_id,
            ),
            run_id,
            pid: None,
            start_time: 0,
            hosted: false,
        }
    }

    fn next_uuid(&mut self) -> Vec<u8> {
        self.next_uuid_bytes().to_vec()
    }

    /// The agent run's seed, then a counter: unique across agent runs.
    fn next_uuid_bytes(&mut self) -> [u8; 16] {
        self.uuid_counter += 1;
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.uuid_seed.to_be_bytes());
        bytes[8..].copy_from_slice(&self.uuid_counter.to_be_bytes());
        bytes
    }

    /// This agent's info with its id once the master gave it one: what the
    /// master and every subscribing executor are told.
    fn agent_info(&self) -> pb::AgentInfo {
        let mut info = self.info.clone();
        info.id = self.agent_id.as_ref().and_then(AgentId::to_field);
        info
    }

    /// The shell's latest measure of the work dir: while full, every task
    /// the master sends fails at once with `REASON_CONTAINER_LAUNCH_FAILED`.
    pub fn set_disk_full(&mut self, full: bool) {
        self.disk_full = full;
    }

    pub fn disk_full(&self) -> bool {
        self.disk_full
    }
}

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;
