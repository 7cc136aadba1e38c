//! The actor's protocol: every input of the agent's event loop, from the
//! master session, the executors' streams and HTTP calls, the HTTP handlers
//! and the workers, is an [`AgentCommand`] on one bounded queue.

use std::path::PathBuf;
use std::time::SystemTime;

use agora_core::{ExecutorId, FrameworkId, TaskId};
use agora_net::outbox::Outbox;
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{AgentMessage, MasterMessage};
use agora_proto::v1::executor::{self as exec, call};
use tokio::sync::oneshot;

use super::launching::{LaunchId, LaunchOutcome, StartedSupervisor};
use crate::executor_auth::ExecutorRefusal;
use crate::gc::DiskSpace;
use crate::snapshot::ContainerStatistics;
use crate::state::ExecutorConn;
use agora_proto::v1::supervisor as sv;

/// The actor's inbound queue (master session, executors, HTTP handlers,
/// workers). Bounded: a producer waits for room (its peer then waits on
/// HTTP/2 flow control), so a flood costs latency, never memory, and
/// nothing is dropped.
pub const COMMAND_QUEUE: usize = 1024;

// Sent once through a channel; boxing the master message would only add allocations.
#[allow(clippy::large_enum_variant)]
pub(super) enum AgentCommand {
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
    /// A worker read why an executor's process ended
    /// (`processes::ExitProbe`): `limitation` is the reason beyond its
    /// exit status, if any.
    ExecutorExitExplained {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        /// The run that exited (`None`: none was recorded); a report for a
        /// run that is no longer the executor's current one is dropped.
        run_id: Option<String>,
        /// That run's sandbox, as known when it exited.
        sandbox: Option<PathBuf>,
        limitation: Option<pb::task_status::Reason>,
        description: String,
    },
    Statistics {
        reply: oneshot::Sender<Vec<ContainerStatistics>>,
    },
    /// A worker read every container's statistics, for the requests that
    /// wait for them.
    StatisticsRead(Vec<ContainerStatistics>),
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
    /// A worker finished launching an executor (`launching.rs`, `actor/launches.rs`).
    ExecutorLaunched {
        id: LaunchId,
        outcome: LaunchOutcome,
    },
    /// A supervisor attached (`supervisor_service.rs`); `orders` reaches it.
    SupervisorAttached {
        conn: u64,
        /// The supervisor's id, from its token.
        id: String,
        hello: sv::Hello,
        orders: Outbox<sv::Order>,
    },
    /// What an attached supervisor reported.
    SupervisorReport {
        pid: u32,
        report: sv::report::Kind,
    },
    /// A supervisor's attachment `conn` ended (the process may live on).
    SupervisorDetached {
        conn: u64,
        pid: u32,
    },
    /// A worker started this agent's supervisor, or could not.
    SupervisorStarted(Result<StartedSupervisor, String>),
    /// A supervisor's process ended.
    SupervisorExited {
        pid: u32,
    },
}

/// The command for an executor's UPDATE or MESSAGE, whichever API it came
/// through; other calls after SUBSCRIBE are ignored.
pub(super) fn executor_call(
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
