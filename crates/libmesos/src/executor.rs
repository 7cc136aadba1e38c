//! The executor driver: `MesosExecutorDriver`'s behaviour over Agora's
//! executor protocol (`agora.v1.executor.Executor/Open`), with no JNI in
//! sight.
//!
//! Java's calls arrive on Java threads and never block on the network
//! (`stop` excepted, which waits a bounded time for the agent to take the
//! last updates): each is checked against the [`Lifecycle`], converted, and
//! queued to one session task, which owns the connection to the agent and
//! the bookkeeping of unacknowledged updates ([`books::Books`]). Events from
//! the agent become [`Callback`]s (already in v0 form) on a channel that the
//! JNI layer's callback thread delivers to the Java `Executor`, one at a
//! time.

pub mod books;
mod config;
mod session;

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agora_proto::mesos_v0 as v0;
use agora_proto::v1;
use tokio::sync::mpsc;
use tracing::{error, warn};

pub use config::{ConfigError, ExecutorConfig};

use crate::convert;
use crate::status::{DriverStatus, Lifecycle};

/// How long `stop()` waits for the agent to acknowledge the updates still
/// in flight before it closes the connection anyway.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A call to the Java `Executor`, with its arguments in v0 form.
// `Registered` is large and comes once per subscription; callbacks are
// queued a few at a time, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    /// `registered(driver, ExecutorInfo, FrameworkInfo, SlaveInfo)`: the
    /// first subscription to the agent.
    Registered {
        /// This executor, as its framework described it.
        executor: v0::ExecutorInfo,
        /// The framework it runs for.
        framework: v0::FrameworkInfo,
        /// The agent it runs on.
        slave: v0::SlaveInfo,
    },
    /// `reregistered(driver, SlaveInfo)`: subscribed again after a
    /// disconnection (e.g. an agent restart).
    Reregistered(v0::SlaveInfo),
    /// `disconnected(driver)`: the connection to the agent is lost; the
    /// driver tries to subscribe again.
    Disconnected,
    /// `launchTask(driver, TaskInfo)`.
    Launch(v0::TaskInfo),
    /// `killTask(driver, TaskID)`.
    Kill(v0::TaskId),
    /// `frameworkMessage(driver, byte[])`.
    Message(Vec<u8>),
    /// `shutdown(driver)`; the driver stops once it is delivered.
    Shutdown,
    /// `error(driver, String)`; the driver aborts once it is delivered.
    Error(String),
}

impl Callback {
    /// The Java method's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "registered",
            Self::Reregistered(_) => "reregistered",
            Self::Disconnected => "disconnected",
            Self::Launch(_) => "launchTask",
            Self::Kill(_) => "killTask",
            Self::Message(_) => "frameworkMessage",
            Self::Shutdown => "shutdown",
            Self::Error(_) => "error",
        }
    }
}

/// A queued call, in Agora's types.
#[derive(Debug)]
enum Command {
    /// An update, complete (uuid, source, executor id, timestamp).
    Update(v1::TaskStatus),
    /// A framework message for the scheduler.
    Message(Vec<u8>),
    /// End the session; with `flush`, once the agent has acknowledged every
    /// update (or [`STOP_TIMEOUT`] passed). Answered on `done`.
    Stop {
        flush: bool,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// State shared by the Java-facing handle and the session task.
#[derive(Debug)]
struct Shared {
    /// The environment the agent gave, or why it is unusable (reported
    /// through `error(...)` once started).
    config: Result<ExecutorConfig, ConfigError>,
    lifecycle: Mutex<Lifecycle>,
    /// Signalled whenever the lifecycle leaves RUNNING (for `join`).
    ended: Condvar,
    callbacks: std::sync::mpsc::Sender<Callback>,
}

impl Shared {
    fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, callback: Callback) {
        // The receiver is gone only once the driver is being dropped.
        let _ = self.callbacks.send(callback);
    }
}

/// One `MesosExecutorDriver`.
#[derive(Debug)]
pub struct ExecutorDriver {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl ExecutorDriver {
    /// A driver for the executor the environment describes (`config`),
    /// delivering its callbacks on `callbacks`.
    pub fn new(
        config: Result<ExecutorConfig, ConfigError>,
        callbacks: std::sync::mpsc::Sender<Callback>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                lifecycle: Mutex::new(Lifecycle::new()),
                ended: Condvar::new(),
                callbacks,
            }),
            commands: Mutex::new(None),
        }
    }

    /// The current status.
    pub fn status(&self) -> DriverStatus {
        self.shared.lifecycle().status()
    }

    /// Whether `callback` may be delivered now: anything while running; an
    /// error also once aborted (the one that says why, as libmesos calls
    /// `error` right after aborting on a TASK_STAGING update).
    pub fn delivers(&self, callback: &Callback) -> bool {
        match self.status() {
            DriverStatus::Running => true,
            DriverStatus::Aborted => matches!(callback, Callback::Error(_)),
            DriverStatus::NotStarted | DriverStatus::Stopped => false,
        }
    }

    /// `start()`: begins subscribing to the agent.
    pub fn start(&self, runtime: &tokio::runtime::Handle) -> DriverStatus {
        let (status, begin) = self.shared.lifecycle().start();
        if begin {
            let (tx, rx) = mpsc::unbounded_channel();
            *self.commands.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
            runtime.spawn(session::run(self.shared.clone(), rx));
        }
        status
    }

    /// `stop()`: ends the session once the agent has taken the updates in
    /// flight (waiting at most [`STOP_TIMEOUT`]). An executor has no
    /// framework to tear down: its agent sees it go.
    pub fn stop(&self) -> DriverStatus {
        let (status, kind) = self.shared.lifecycle().stop(false);
        self.shared.ended.notify_all();
        if kind.is_some() {
            let (done, wait) = std::sync::mpsc::channel();
            if self.send(Command::Stop { flush: true, done })
                && wait.recv_timeout(STOP_TIMEOUT).is_err()
            {
                warn!("the executor session did not confirm the stop within {STOP_TIMEOUT:?}");
            }
        }
        self.close();
        status
    }

    /// `abort()`: stops sending calls and delivering callbacks, and drops
    /// the connection to the agent.
    pub fn abort(&self) -> DriverStatus {
        let (status, changed) = self.shared.lifecycle().abort();
        if changed {
            self.shared.ended.notify_all();
            self.end_session();
        }
        status
    }

    /// Called by the callback thread once it has delivered a
    /// [`Callback::Error`], or when a callback threw: the driver aborts.
    pub fn abort_after_error(&self) {
        self.abort();
    }

    /// Called by the callback thread once it has delivered
    /// [`Callback::Shutdown`]: the executor is expected to exit now, so the
    /// driver stops (nothing happens if the executor stopped it already).
    pub fn stop_after_shutdown(&self) {
        self.stop();
    }

    /// `join()`: waits until the driver is stopped or aborted.
    pub fn join(&self) -> DriverStatus {
        let mut lifecycle = self.shared.lifecycle();
        while lifecycle.joining() {
            lifecycle = self
                .shared
                .ended
                .wait(lifecycle)
                .unwrap_or_else(PoisonError::into_inner);
        }
        lifecycle.status()
    }

    /// `sendStatusUpdate(status)`. TASK_STAGING is refused as libmesos
    /// refuses it: the driver aborts and `error` says why.
    pub fn send_status_update(&self, status: &v0::TaskStatus) -> DriverStatus {
        let mut lifecycle = self.shared.lifecycle();
        if let Err(status) = lifecycle.call() {
            return status;
        }
        if status.state() == v0::TaskState::TaskStaging {
            let (answer, _) = lifecycle.abort();
            drop(lifecycle);
            error!(task_id = %status.task_id.value, "executor sent a TASK_STAGING update; aborting");
            self.shared.ended.notify_all();
            self.shared.emit(Callback::Error(
                "Attempted to send TASK_STAGING status update".into(),
            ));
            self.end_session();
            return answer;
        }
        drop(lifecycle);
        let executor_id = match &self.shared.config {
            Ok(config) => config.executor_id.clone(),
            Err(_) => String::new(),
        };
        match prepare_update(status, &executor_id, now_seconds(), new_uuid()) {
            Ok(update) => {
                self.send(Command::Update(update));
            }
            Err(e) => {
                error!(task_id = %status.task_id.value, error = %e, "status update not sent: cannot convert it")
            }
        }
        DriverStatus::Running
    }

    /// `sendFrameworkMessage(data)`.
    pub fn send_framework_message(&self, data: Vec<u8>) -> DriverStatus {
        match self.shared.lifecycle().call() {
            Ok(status) => {
                self.send(Command::Message(data));
                status
            }
            Err(status) => status,
        }
    }

    fn send(&self, command: Command) -> bool {
        let commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        match commands.as_ref() {
            Some(tx) => tx.send(command).is_ok(),
            None => false,
        }
    }

    /// Ends the session now, without waiting for acknowledgements.
    fn end_session(&self) {
        let (done, _wait) = std::sync::mpsc::channel();
        self.send(Command::Stop { flush: false, done });
        self.close();
    }

    /// Closes the command queue: the session ends once it has drained it.
    fn close(&self) {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Drop for ExecutorDriver {
    fn drop(&mut self) {
        // Collected while running (Java's finalize): end the session.
        let (_, kind) = self.shared.lifecycle().stop(false);
        if kind.is_some() {
            self.end_session();
        }
        self.shared.ended.notify_all();
    }
}

/// An update from Java, made complete the way libmesos makes it: a fresh
/// uuid (the agent acknowledges by it), the executor as its source, and the
/// executor id and a timestamp where Java left them unset. The agent id is
/// filled in by the session, which learns it from the agent.
pub fn prepare_update(
    status: &v0::TaskStatus,
    executor_id: &str,
    now: f64,
    uuid: [u8; 16],
) -> Result<v1::TaskStatus, convert::ConvertError> {
    let mut update = convert::status_from_v0(status)?;
    update.uuid = Some(uuid.to_vec());
    update.source = Some(v1::task_status::Source::Executor as i32);
    if update.executor_id.is_none() && !executor_id.is_empty() {
        update.executor_id = Some(v1::ExecutorId {
            value: executor_id.to_owned(),
        });
    }
    if update.timestamp.is_none() {
        update.timestamp = Some(now);
    }
    Ok(update)
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// 16 bytes unique enough for update ids: the time, the pid and a counter
/// (the agent only needs them distinct per executor).
pub fn new_uuid() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&nanos.to_be_bytes());
    let tail = (u64::from(std::process::id()) << 32) | COUNTER.fetch_add(1, Ordering::Relaxed);
    bytes[8..].copy_from_slice(&tail.to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests;
