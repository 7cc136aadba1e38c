//! The cloneable call handle: the session it shares with the driver, the
//! framework's calls, and the event stream handed to the application.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use agora_proto::v1::scheduler::{self as pb, call};
use agora_proto::v1::{
    AgentId, ExecutorId, Filters, FrameworkId, FrameworkInfo, OfferId, TaskId, TaskInfo, offer,
};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tracing::{debug, warn};

use crate::event::{Event, heartbeat_interval};
use crate::{Error, MasterDetector};

use super::options::{STREAM_ID_METADATA, SubscribeOptions};
use super::subscribe::{Grpc, Subscription, basic_metadata};

/// A cloneable handle for a subscribed framework's calls.
///
/// Calls use the current subscription's stream id; while the SDK is
/// re-subscribing they fail with [`Error::NotSubscribed`].
#[derive(Debug, Clone)]
pub struct SchedulerClient {
    pub(super) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) detector: Arc<dyn MasterDetector>,
    pub(super) options: SubscribeOptions,
    pub(super) session: Mutex<Session>,
    /// Held (shared) by every automatic acknowledgement in flight; TEARDOWN
    /// takes it exclusively first, so updates already handed to the
    /// application are acknowledged before the framework goes away.
    pub(super) acks_in_flight: Arc<tokio::sync::RwLock<()>>,
    /// Automatic acknowledgements waiting for [`send_acks`].
    pub(super) acks: mpsc::UnboundedSender<PendingAck>,
}

/// Most acknowledgements the SDK puts in one call (the master takes 4,096).
pub(super) const MAX_ACKS_PER_CALL: usize = 1024;
/// Most acknowledgement calls in flight at once.
pub(super) const ACK_CALLS_IN_FLIGHT: usize = 4;

/// Sends the automatic acknowledgements: those that piled up while
/// [`ACK_CALLS_IN_FLIGHT`] calls were in flight go together in the next
/// (up to [`MAX_ACKS_PER_CALL`]). A lone update is acknowledged at once;
/// under load the framework makes one call per batch instead of one per
/// update. Calls may overlap: a task's next update comes only after its
/// last was acknowledged, so no two acknowledgements in flight are for
/// the same task. Holds the client weakly, so it ends when the last
/// handle is dropped.
pub(super) async fn send_acks(
    shared: std::sync::Weak<Shared>,
    mut queue: mpsc::UnboundedReceiver<PendingAck>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(ACK_CALLS_IN_FLIGHT));
    loop {
        // A free slot first: while none is, acknowledgements pile up.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, MAX_ACKS_PER_CALL).await == 0 {
            return;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            SchedulerClient { shared }.acknowledge_batch(batch).await;
            drop(slot);
        });
    }
}

#[derive(Debug)]
pub(super) struct Session {
    /// What (re-)subscriptions send; `id` is set once subscribed.
    pub(super) framework_info: FrameworkInfo,
    pub(super) framework_id: FrameworkId,
    pub(super) master: String,
    /// `Some` while subscribed.
    pub(super) stream_id: Option<String>,
    pub(super) grpc: Option<Grpc>,
    /// Roles suppressed now, sent again on re-subscription.
    pub(super) suppressed_roles: BTreeSet<String>,
    /// A TEARDOWN was sent: the stream ending is expected, not a disconnect.
    pub(super) tearing_down: bool,
    /// The subscription is over for good; no more re-subscription.
    pub(super) finished: bool,
    /// The newest leadership epoch seen; a master from an older term
    /// (a deposed leader) is not subscribed to.
    pub(super) max_epoch: Option<u64>,
}

/// The framework's events, in order. Ends after [`Event::Error`], after a
/// TEARDOWN, or when a re-subscription is refused for good.
///
/// Dropping it ends the subscription (the SDK closes the stream to the
/// master and stops re-subscribing). Also a [`futures::Stream`].
#[derive(Debug)]
pub struct EventStream {
    pub(super) rx: mpsc::Receiver<Event>,
}

impl EventStream {
    /// The next event, or `None` once the subscription is over.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl SchedulerClient {
    /// The framework's id.
    pub fn framework_id(&self) -> FrameworkId {
        self.session().framework_id.clone()
    }

    /// The current subscription's stream id, `None` while not subscribed.
    pub fn stream_id(&self) -> Option<String> {
        self.session().stream_id.clone()
    }

    /// Whether the framework is subscribed right now.
    pub fn is_subscribed(&self) -> bool {
        self.session().stream_id.is_some()
    }

    /// The endpoint of the master last subscribed to.
    pub fn master(&self) -> String {
        self.session().master.clone()
    }

    /// Accepts offers (all from one agent) with operations; the unused rest
    /// of the offers is declined with `filters` (Mesos' default refusal of
    /// 5 s when `None`).
    pub async fn accept(
        &self,
        offer_ids: Vec<OfferId>,
        operations: Vec<offer::Operation>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        self.call(call::Type::Accept, |c| {
            c.accept = Some(call::Accept {
                offer_ids,
                operations,
                filters,
            });
        })
        .await
    }

    /// Launches `tasks` on offers: an ACCEPT with one LAUNCH operation.
    pub async fn launch(
        &self,
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
        filters: Option<Filters>,
    ) -> Result<(), Error> {
        let launch = offer::Operation {
            r#type: Some(offer::operation::Type::Launch as i32),
            launch: Some(offer::operation::Launch { task_infos: tasks }),
            ..Default::default()
        };
        self.accept(offer_ids, vec![launch], filters).await
    }

    /// Declines offers; the master will not re-offer these resources to this
    /// framework for `refuse` (Mesos' default 5 s when `None`).
    pub async fn decline(
        &self,
        offer_ids: Vec<OfferId>,
        refuse: Option<Duration>,
    ) -> Result<(), Error> {
        self.call(call::Type::Decline, |c| {
            c.decline = Some(call::Decline {
                offer_ids,
                filters: refuse.map(|d| Filters {
                    refuse_seconds: Some(d.as_secs_f64()),
                }),
            });
        })
        .await
    }

    /// Clears filters and resumes offers for `roles` (all of the framework's
    /// roles when empty).
    pub async fn revive(&self, roles: Vec<String>) -> Result<(), Error> {
        let affected = self.roles_or_all(&roles);
        self.call(call::Type::Revive, |c| {
            c.revive = Some(call::Revive { roles });
        })
        .await?;
        let mut session = self.session();
        for role in &affected {
            session.suppressed_roles.remove(role);
        }
        Ok(())
    }

    /// Stops offers for `roles` (all of the framework's roles when empty)
    /// until revived.
    pub async fn suppress(&self, roles: Vec<String>) -> Result<(), Error> {
        let affected = self.roles_or_all(&roles);
        self.call(call::Type::Suppress, |c| {
            c.suppress = Some(call::Suppress { roles });
        })
        .await?;
        self.session().suppressed_roles.extend(affected);
        Ok(())
    }

    /// `roles`, or all of the framework's roles when empty.
    fn roles_or_all(&self, roles: &[String]) -> Vec<String> {
        if !roles.is_empty() {
            return roles.to_vec();
        }
        let session = self.session();
        let info = &session.framework_info;
        if info.roles.is_empty() {
            vec![info.role.clone().unwrap_or_else(|| "*".to_owned())]
        } else {
            info.roles.clone()
        }
    }

    /// Kills a task; its terminal update arrives as an event.
    pub async fn kill(&self, task_id: TaskId, agent_id: Option<AgentId>) -> Result<(), Error> {
        self.call(call::Type::Kill, |c| {
            c.kill = Some(call::Kill {
                task_id: Some(task_id),
                agent_id,
                kill_policy: None,
            });
        })
        .await
    }

    /// Shuts an executor down (and its tasks).
    pub async fn shutdown(&self, executor_id: ExecutorId, agent_id: AgentId) -> Result<(), Error> {
        self.call(call::Type::Shutdown, |c| {
            c.shutdown = Some(call::Shutdown {
                executor_id: Some(executor_id),
                agent_id: Some(agent_id),
            });
        })
        .await
    }

    /// Acknowledges a status update (only needed with auto-acknowledgement
    /// off).
    pub async fn acknowledge(
        &self,
        agent_id: AgentId,
        task_id: TaskId,
        uuid: Vec<u8>,
    ) -> Result<(), Error> {
        self.call(call::Type::Acknowledge, |c| {
            c.acknowledge = Some(call::Acknowledge {
                agent_id: Some(agent_id),
                task_id: Some(task_id),
                uuid,
            });
        })
        .await
    }

    /// Asks for the latest status of `tasks` (agent ids optional); empty asks
    /// for all of the framework's tasks ("implicit" reconciliation). The
    /// answers arrive as [`Event::Update`]s.
    pub async fn reconcile(&self, tasks: Vec<(TaskId, Option<AgentId>)>) -> Result<(), Error> {
        let tasks = tasks
            .into_iter()
            .map(|(task_id, agent_id)| call::reconcile::Task {
                task_id: Some(task_id),
                agent_id,
            })
            .collect();
        self.call(call::Type::Reconcile, |c| {
            c.reconcile = Some(call::Reconcile { tasks });
        })
        .await
    }

    /// Sends `data` to an executor.
    pub async fn message(
        &self,
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        self.call(call::Type::Message, |c| {
            c.message = Some(call::Message {
                agent_id: Some(agent_id),
                executor_id: Some(executor_id),
                data,
            });
        })
        .await
    }

    /// Removes the framework: the master kills all its tasks and ends the
    /// event stream. The SDK does not re-subscribe afterwards. Automatic
    /// acknowledgements of updates already delivered are sent first. Keep
    /// the [`EventStream`] until this returns: dropping it ends the
    /// subscription, and calls then fail with [`Error::NotSubscribed`].
    pub async fn teardown(&self) -> Result<(), Error> {
        // Let automatic acknowledgements already under way finish first.
        let wait = self.shared.acks_in_flight.write();
        if tokio::time::timeout(self.shared.options.call_timeout, wait)
            .await
            .is_err()
        {
            debug!("acknowledgements still in flight at teardown");
        }
        self.session().tearing_down = true;
        let result = self.call(call::Type::Teardown, |_| {}).await;
        let mut session = self.session();
        match result {
            Ok(()) => session.finished = true,
            Err(_) => session.tearing_down = false,
        }
        result
    }

    /// Sends a non-subscribe call with the framework id and stream id.
    async fn call(&self, kind: call::Type, fill: impl FnOnce(&mut pb::Call)) -> Result<(), Error> {
        let (mut grpc, stream_id, framework_id) = {
            let session = self.session();
            match (&session.grpc, &session.stream_id) {
                (Some(grpc), Some(stream_id)) => (
                    grpc.clone(),
                    stream_id.clone(),
                    session.framework_id.clone(),
                ),
                _ => return Err(Error::NotSubscribed),
            }
        };
        let mut message = pb::Call {
            framework_id: Some(framework_id),
            r#type: kind as i32,
            ..Default::default()
        };
        fill(&mut message);
        let mut request = tonic::Request::new(message);
        let stream_id = MetadataValue::try_from(stream_id.as_str())
            .map_err(|_| Error::Protocol("stream id is not valid grpc metadata".to_owned()))?;
        request.metadata_mut().insert(STREAM_ID_METADATA, stream_id);
        let credential = self.shared.options.credential.as_ref();
        if let Some(value) = credential.and_then(basic_metadata) {
            request.metadata_mut().insert("authorization", value);
        }
        let timeout = self.shared.options.call_timeout;
        request.set_timeout(timeout);
        let name = kind.as_str_name();
        match tokio::time::timeout(timeout, grpc.send(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(Error::Call { call: name, status }),
            Err(_) => Err(Error::CallTimeout {
                call: name,
                timeout,
            }),
        }
    }

    pub(super) fn session(&self) -> MutexGuard<'_, Session> {
        self.shared
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `subscription` the current one; returns its heartbeat interval.
    pub(super) fn install(&self, subscription: &Subscription) -> Duration {
        let mut session = self.session();
        session.framework_id = subscription.framework_id.clone();
        session.framework_info.id = Some(subscription.framework_id.clone());
        session.master = subscription.master.clone();
        session.stream_id = Some(subscription.subscribed.stream_id.clone());
        session.grpc = Some(subscription.grpc.clone());
        let epoch = subscription
            .subscribed
            .master_info
            .as_ref()
            .and_then(|m| m.epoch);
        session.max_epoch = session.max_epoch.max(epoch);
        heartbeat_interval(&subscription.subscribed)
    }

    /// Updates the session from a SUBSCRIBED event in the middle of a stream.
    pub(super) fn resubscribed_in_stream(&self, subscribed: &pb::event::Subscribed) {
        let mut session = self.session();
        if let Some(id) = &subscribed.framework_id {
            session.framework_id = id.clone();
            session.framework_info.id = Some(id.clone());
        }
        if !subscribed.stream_id.is_empty() {
            session.stream_id = Some(subscribed.stream_id.clone());
        }
    }

    pub(super) fn mark_disconnected(&self) {
        let mut session = self.session();
        session.stream_id = None;
        session.grpc = None;
    }

    pub(super) fn mark_finished(&self) {
        let mut session = self.session();
        session.stream_id = None;
        session.grpc = None;
        session.finished = true;
    }

    pub(super) fn is_tearing_down(&self) -> bool {
        let session = self.session();
        session.tearing_down || session.finished
    }

    /// Prepares the automatic acknowledgement of `status`, if it needs one.
    /// Registers it as in flight *before* the update reaches the
    /// application, so a TEARDOWN the application sends in response waits
    /// for it.
    pub(super) fn prepare_ack(&self, status: &agora_proto::v1::TaskStatus) -> Option<PendingAck> {
        let uuid = status.uuid.clone().filter(|u| !u.is_empty())?;
        let task_id = status.task_id.clone().unwrap_or_default();
        let Some(agent_id) = status.agent_id.clone() else {
            warn!(task_id = %task_id.value, "status update with uuid but no agent id; cannot acknowledge");
            return None;
        };
        let Ok(in_flight) = self.shared.acks_in_flight.clone().try_read_owned() else {
            debug!(task_id = %task_id.value, "not acknowledging: teardown under way");
            return None;
        };
        Some(PendingAck {
            agent_id,
            task_id,
            uuid,
            in_flight,
        })
    }

    /// Queues an automatic acknowledgement for [`send_acks`].
    pub(super) fn queue_ack(&self, ack: PendingAck) {
        if self.shared.acks.send(ack).is_err() {
            debug!("not acknowledging: the acknowledgement sender is gone");
        }
    }

    /// One call for `batch`; its acknowledgements stay in flight (for
    /// TEARDOWN) until the call is answered.
    async fn acknowledge_batch(&self, batch: Vec<PendingAck>) {
        let mut acks = Vec::with_capacity(batch.len());
        let mut in_flight = Vec::with_capacity(batch.len());
        for pending in batch {
            acks.push(call::Acknowledge {
                agent_id: Some(pending.agent_id),
                task_id: Some(pending.task_id),
                uuid: pending.uuid,
            });
            in_flight.push(pending.in_flight);
        }
        let count = acks.len();
        let first_task = acks
            .first()
            .and_then(|a| a.task_id.as_ref())
            .map(|t| t.value.clone())
            .unwrap_or_default();
        let result = self
            .call(call::Type::Acknowledge, |c| {
                if acks.len() == 1 {
                    c.acknowledge = acks.pop();
                } else {
                    c.acknowledgements = acks;
                }
            })
            .await;
        if let Err(err) = result {
            if self.is_tearing_down() {
                debug!(task_id = %first_task, count, error = %err, "acknowledgements lost to teardown");
            } else {
                warn!(task_id = %first_task, count, error = %err, "failed to acknowledge status updates");
            }
        }
        drop(in_flight);
    }
}

/// An automatic acknowledgement about to be sent.
pub(super) struct PendingAck {
    agent_id: AgentId,
    task_id: TaskId,
    uuid: Vec<u8>,
    in_flight: tokio::sync::OwnedRwLockReadGuard<()>,
}
