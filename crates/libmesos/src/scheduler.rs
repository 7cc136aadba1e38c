//! The scheduler driver: `MesosSchedulerDriver`'s behaviour over Agora's
//! SDK, with no JNI in sight.
//!
//! Java's calls arrive on Java threads and never block on the network: each
//! is checked against the [`Lifecycle`], converted, and queued; one caller
//! task sends them to the master in order. Events from the master become
//! [`Callback`]s (already in v0 form) on a channel that the JNI layer's
//! callback thread delivers to the Java `Scheduler`, one at a time.

mod session;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agora_proto::mesos_v0 as v0;
use agora_proto::v1;
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::convert;
use crate::status::{DriverStatus, Lifecycle, StopKind};

/// How long `stop(false)` waits for the master to confirm the teardown.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A call to the Java `Scheduler`, with its arguments in v0 form.
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    /// `registered(driver, FrameworkID, MasterInfo)`: the first subscription.
    Registered {
        /// The framework's id.
        framework_id: v0::FrameworkId,
        /// The master that accepted it.
        master: v0::MasterInfo,
    },
    /// `reregistered(driver, MasterInfo)`: subscribed again after a
    /// disconnection (e.g. to a new leader).
    Reregistered(v0::MasterInfo),
    /// `resourceOffers(driver, List<Offer>)`.
    Offers(Vec<v0::Offer>),
    /// `offerRescinded(driver, OfferID)`.
    Rescinded(v0::OfferId),
    /// `statusUpdate(driver, TaskStatus)`.
    Status(v0::TaskStatus),
    /// `frameworkMessage(driver, ExecutorID, SlaveID, byte[])`.
    Message {
        /// The sender.
        executor_id: v0::ExecutorId,
        /// Its agent.
        slave_id: v0::SlaveId,
        /// The payload.
        data: Vec<u8>,
    },
    /// `disconnected(driver)`.
    Disconnected,
    /// `slaveLost(driver, SlaveID)`.
    SlaveLost(v0::SlaveId),
    /// `executorLost(driver, ExecutorID, SlaveID, int)`.
    ExecutorLost {
        /// The executor.
        executor_id: v0::ExecutorId,
        /// Its agent.
        slave_id: v0::SlaveId,
        /// Its exit status (-1 when unknown).
        status: i32,
    },
    /// `error(driver, String)`; the driver has aborted by the time it is
    /// delivered.
    Error(String),
}

/// What `MesosSchedulerDriver`'s constructor was given.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The framework to subscribe.
    pub framework: v1::FrameworkInfo,
    /// The master string (`host:port`, `zk://...`, `file://...`).
    pub master: String,
    /// Acknowledge updates automatically (the constructor's default).
    pub implicit_acknowledgements: bool,
    /// How long to try registering before reporting an error.
    pub connect_timeout: Duration,
    /// The constructor's `Credential` (Spark's `spark.mesos.principal` and
    /// `spark.mesos.secret`), sent on every call to the master.
    pub credential: Option<agora_auth::credentials::Credential>,
}

/// A queued call, in Agora's types.
#[derive(Debug)]
enum Command {
    Accept {
        offer_ids: Vec<v1::OfferId>,
        operations: Vec<v1::offer::Operation>,
        filters: Option<v1::Filters>,
    },
    Decline {
        offer_ids: Vec<v1::OfferId>,
        filters: Option<v1::Filters>,
    },
    Revive,
    Suppress,
    Kill {
        task_id: v1::TaskId,
        agent_id: Option<v1::AgentId>,
    },
    Acknowledge {
        agent_id: v1::AgentId,
        task_id: v1::TaskId,
        uuid: Vec<u8>,
    },
    Reconcile(Vec<(v1::TaskId, Option<v1::AgentId>)>),
    Message {
        agent_id: v1::AgentId,
        executor_id: v1::ExecutorId,
        data: Vec<u8>,
    },
    Stop {
        kind: StopKind,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// State shared by the Java-facing handle and the session's tasks.
#[derive(Debug)]
struct Shared {
    config: DriverConfig,
    lifecycle: Mutex<Lifecycle>,
    /// Signalled whenever the lifecycle leaves RUNNING (for `join`).
    ended: Condvar,
    callbacks: std::sync::mpsc::Sender<Callback>,
    /// Which agent each launched task went to: Spark needs the agent on
    /// every update, and kills and reconciliation go faster with it.
    task_agents: Mutex<HashMap<String, v1::AgentId>>,
}

impl Shared {
    fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn task_agents(&self) -> MutexGuard<'_, HashMap<String, v1::AgentId>> {
        self.task_agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, callback: Callback) {
        // The receiver is gone only once the driver is being dropped.
        let _ = self.callbacks.send(callback);
    }

    /// Reports tasks that never reached the master, as Mesos' driver does.
    fn fail_tasks(
        &self,
        tasks: &[(v1::TaskId, Option<v1::AgentId>)],
        state: v1::TaskState,
        reason: v1::task_status::Reason,
        message: &str,
    ) {
        for (task_id, agent_id) in tasks {
            let status = v1::TaskStatus {
                task_id: Some(task_id.clone()),
                state: Some(state as i32),
                message: Some(message.to_owned()),
                source: Some(v1::task_status::Source::Master as i32),
                reason: Some(reason as i32),
                agent_id: agent_id.clone(),
                timestamp: Some(now_seconds()),
                ..Default::default()
            };
            match convert::status_to_v0(&status, None) {
                Ok(v0_status) => self.emit(Callback::Status(v0_status)),
                Err(e) => {
                    error!(task_id = %task_id.value, error = %e, "cannot report a failed task")
                }
            }
        }
    }

    /// A fatal error: queues `error(message)` for the application, then
    /// aborts the driver, as libmesos does (abort first, so that `join()`
    /// and `run()` return DRIVER_ABORTED even while the application's
    /// `error` callback blocks; Spark's does, waiting on its own lock).
    /// Queued before the abort, the error is always delivered: the
    /// callback thread drains its queue before it notices the abort.
    fn fail(&self, message: String) {
        self.emit(Callback::Error(message));
        self.abort();
    }

    /// Ends the driver (an error, or a callback that threw).
    fn abort(&self) {
        let (_, changed) = self.lifecycle().abort();
        if changed {
            self.ended.notify_all();
        }
    }
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// One `MesosSchedulerDriver`.
#[derive(Debug)]
pub struct SchedulerDriver {
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl SchedulerDriver {
    /// A driver that will deliver its callbacks on `callbacks`.
    pub fn new(config: DriverConfig, callbacks: std::sync::mpsc::Sender<Callback>) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                lifecycle: Mutex::new(Lifecycle::new()),
                ended: Condvar::new(),
                callbacks,
                task_agents: Mutex::new(HashMap::new()),
            }),
            commands: Mutex::new(None),
        }
    }

    /// The current status.
    pub fn status(&self) -> DriverStatus {
        self.shared.lifecycle().status()
    }

    /// Whether `callback` may be delivered now: only while running, except
    /// the error that aborted the driver, delivered after the abort.
    pub fn delivers(&self, callback: &Callback) -> bool {
        let lifecycle = self.shared.lifecycle();
        match callback {
            Callback::Error(_) => {
                lifecycle.status() == DriverStatus::Aborted || lifecycle.delivers()
            }
            _ => lifecycle.delivers(),
        }
    }

    /// Called by the callback thread once it has delivered an
    /// [`Callback::Error`], or when a callback threw: the driver aborts.
    pub fn abort_after_error(&self) {
        self.shared.abort();
    }

    /// `start()`: begins registering with the master.
    pub fn start(&self, runtime: &tokio::runtime::Handle) -> DriverStatus {
        let (status, begin) = self.shared.lifecycle().start();
        if begin {
            let (tx, rx) = mpsc::unbounded_channel();
            *self.commands.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
            runtime.spawn(session::run(self.shared.clone(), rx));
        }
        status
    }

    /// `stop(failover)`: `false` removes the framework and its tasks (and
    /// waits up to 10 s for the master to confirm), `true` leaves it to
    /// fail over.
    pub fn stop(&self, failover: bool) -> DriverStatus {
        let (status, kind) = self.shared.lifecycle().stop(failover);
        self.shared.ended.notify_all();
        if let Some(kind) = kind {
            let (done, wait) = std::sync::mpsc::channel();
            if self.send(Command::Stop { kind, done }) && wait.recv_timeout(STOP_TIMEOUT).is_err() {
                warn!("the session did not confirm the stop within {STOP_TIMEOUT:?}");
            }
        }
        self.close();
        status
    }

    /// `abort()`: stops sending calls and delivering callbacks, without
    /// telling the master anything.
    pub fn abort(&self) -> DriverStatus {
        let (status, changed) = self.shared.lifecycle().abort();
        if changed {
            self.shared.ended.notify_all();
        }
        status
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

    /// `requestResources`: Agora has no resource requests (neither does
    /// Mesos' allocator act on them); logged and ignored.
    pub fn request_resources(&self, requests: &[v0::Request]) -> DriverStatus {
        self.checked(|_| {
            warn!(
                requests = requests.len(),
                "requestResources is not supported by Agora; ignored"
            );
            None
        })
    }

    /// `launchTasks(offerIds, tasks, filters)`.
    pub fn launch_tasks(
        &self,
        offer_ids: &[v0::OfferId],
        tasks: &[v0::TaskInfo],
        filters: Option<&v0::Filters>,
    ) -> DriverStatus {
        let operation = v0::offer::Operation {
            r#type: Some(v0::offer::operation::Type::Launch as i32),
            launch: Some(v0::offer::operation::Launch {
                task_infos: tasks.to_vec(),
            }),
            ..Default::default()
        };
        self.accept_offers(offer_ids, &[operation], filters)
    }

    /// `acceptOffers(offerIds, operations, filters)`. Tasks Agora cannot run
    /// are failed with TASK_ERROR (as Mesos' master does with invalid
    /// tasks); the rest is sent.
    pub fn accept_offers(
        &self,
        offer_ids: &[v0::OfferId],
        operations: &[v0::offer::Operation],
        filters: Option<&v0::Filters>,
    ) -> DriverStatus {
        self.checked(|shared| {
            let mut converted = Vec::new();
            for operation in operations {
                match convert::operation_from_v0(operation) {
                    Ok(op) => converted.push(op),
                    Err(e) => {
                        warn!(error = %e, "offer operation refused");
                        let tasks: Vec<_> = operation
                            .launch
                            .iter()
                            .flat_map(|l| &l.task_infos)
                            .map(|t| {
                                (
                                    v1::TaskId {
                                        value: t.task_id.value.clone(),
                                    },
                                    Some(v1::AgentId {
                                        value: t.slave_id.value.clone(),
                                    }),
                                )
                            })
                            .collect();
                        shared.fail_tasks(
                            &tasks,
                            v1::TaskState::TaskError,
                            v1::task_status::Reason::TaskInvalid,
                            &e.to_string(),
                        );
                    }
                }
            }
            {
                let mut agents = shared.task_agents();
                for op in &converted {
                    for (task_id, agent_id) in convert::launched_tasks(op) {
                        if let Some(agent_id) = agent_id {
                            agents.insert(task_id.value, agent_id);
                        }
                    }
                }
            }
            Some(Command::Accept {
                offer_ids: ids(offer_ids),
                operations: converted,
                filters: filters.map(filters_from_v0),
            })
        })
    }

    /// `declineOffer(offerId, filters)`.
    pub fn decline_offer(
        &self,
        offer_id: &v0::OfferId,
        filters: Option<&v0::Filters>,
    ) -> DriverStatus {
        self.checked(|_| {
            Some(Command::Decline {
                offer_ids: ids(std::slice::from_ref(offer_id)),
                filters: filters.map(filters_from_v0),
            })
        })
    }

    /// `reviveOffers()`.
    pub fn revive_offers(&self) -> DriverStatus {
        self.checked(|_| Some(Command::Revive))
    }

    /// `suppressOffers()`.
    pub fn suppress_offers(&self) -> DriverStatus {
        self.checked(|_| Some(Command::Suppress))
    }

    /// `killTask(taskId)`.
    pub fn kill_task(&self, task_id: &v0::TaskId) -> DriverStatus {
        self.checked(|shared| {
            let agent_id = shared.task_agents().get(&task_id.value).cloned();
            Some(Command::Kill {
                task_id: v1::TaskId {
                    value: task_id.value.clone(),
                },
                agent_id,
            })
        })
    }

    /// `acknowledgeStatusUpdate(status)`: only with explicit
    /// acknowledgements, and only updates that carry a uuid.
    pub fn acknowledge_status_update(&self, status: &v0::TaskStatus) -> DriverStatus {
        self.checked(|shared| {
            if shared.config.implicit_acknowledgements {
                error!(
                    task_id = %status.task_id.value,
                    "acknowledgeStatusUpdate called with implicit acknowledgements enabled; ignored"
                );
                return None;
            }
            let uuid = status.uuid.clone()?;
            let Some(agent) = status.slave_id.as_ref() else {
                warn!(task_id = %status.task_id.value, "cannot acknowledge an update without an agent id");
                return None;
            };
            Some(Command::Acknowledge {
                agent_id: v1::AgentId {
                    value: agent.value.clone(),
                },
                task_id: v1::TaskId {
                    value: status.task_id.value.clone(),
                },
                uuid,
            })
        })
    }

    /// `sendFrameworkMessage(executorId, slaveId, data)`.
    pub fn send_framework_message(
        &self,
        executor_id: &v0::ExecutorId,
        slave_id: &v0::SlaveId,
        data: Vec<u8>,
    ) -> DriverStatus {
        self.checked(|_| {
            Some(Command::Message {
                agent_id: v1::AgentId {
                    value: slave_id.value.clone(),
                },
                executor_id: v1::ExecutorId {
                    value: executor_id.value.clone(),
                },
                data,
            })
        })
    }

    /// `reconcileTasks(statuses)`: empty asks about every task.
    pub fn reconcile_tasks(&self, statuses: &[v0::TaskStatus]) -> DriverStatus {
        self.checked(|shared| {
            let agents = shared.task_agents();
            let tasks = statuses
                .iter()
                .map(|s| {
                    let agent = s
                        .slave_id
                        .as_ref()
                        .map(|a| v1::AgentId {
                            value: a.value.clone(),
                        })
                        .or_else(|| agents.get(&s.task_id.value).cloned());
                    (
                        v1::TaskId {
                            value: s.task_id.value.clone(),
                        },
                        agent,
                    )
                })
                .collect();
            Some(Command::Reconcile(tasks))
        })
    }

    /// Runs `make` only on a running driver and queues what it returns;
    /// answers the status either way.
    fn checked(&self, make: impl FnOnce(&Shared) -> Option<Command>) -> DriverStatus {
        let status = match self.shared.lifecycle().call() {
            Ok(status) => status,
            Err(status) => return status,
        };
        if let Some(command) = make(&self.shared) {
            self.send(command);
        }
        status
    }

    fn send(&self, command: Command) -> bool {
        let commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        match commands.as_ref() {
            Some(tx) => tx.send(command).is_ok(),
            None => false,
        }
    }

    /// Closes the command queue: the session ends once it has drained it.
    fn close(&self) {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Drop for SchedulerDriver {
    fn drop(&mut self) {
        // A driver collected while running (Java's finalize) leaves its
        // framework to fail over, as libmesos' destructor does.
        let (_, kind) = self.shared.lifecycle().stop(true);
        if let Some(kind) = kind {
            let (done, _wait) = std::sync::mpsc::channel();
            self.send(Command::Stop { kind, done });
        }
        self.shared.ended.notify_all();
    }
}

fn ids(offer_ids: &[v0::OfferId]) -> Vec<v1::OfferId> {
    offer_ids
        .iter()
        .map(|o| v1::OfferId {
            value: o.value.clone(),
        })
        .collect()
}

fn filters_from_v0(filters: &v0::Filters) -> v1::Filters {
    v1::Filters {
        refuse_seconds: Some(filters.refuse_seconds()),
    }
}

/// Decodes what Java's `toByteArray` gave; a malformed message (which Java's
/// own serializer should never produce) is logged and skipped.
pub fn decode_or_log<T: convert::Pair>(bytes: &[u8]) -> Option<T::V0> {
    match convert::decode_v0::<T>(bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            error!(error = %e, "malformed message from Java; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests;
