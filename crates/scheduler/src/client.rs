//! The subscription driver and the cloneable call handle.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use agora_proto::v1::scheduler::{self as pb, call, scheduler_client};
use agora_proto::v1::{
    AgentId, ExecutorId, Filters, FrameworkId, FrameworkInfo, OfferId, TaskId, TaskInfo, offer,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::event::{self, Event, heartbeat_interval};
use crate::{Backoff, Error, MasterDetector};

/// The gRPC request metadata key that carries the subscription's stream id.
pub const STREAM_ID_METADATA: &str = "agora-stream-id";

/// A framework is considered disconnected after this many heartbeat
/// intervals without any event.
pub const HEARTBEAT_MISSES: u32 = 5;

/// How many events may wait for the application before the SDK stops
/// reading from the master (the master's stream then buffers).
const EVENT_BUFFER: usize = 1024;

type Grpc = scheduler_client::SchedulerClient<Channel>;

/// Options for [`SchedulerClient::connect`].
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// How long `connect` keeps trying to reach the master and subscribe
    /// before giving up; also the bound on each re-subscription attempt.
    /// Default 30 s.
    pub connect_timeout: Duration,
    /// Roles to subscribe suppressed (no offers until revived). Later
    /// [`SchedulerClient::suppress`] and [`SchedulerClient::revive`] calls
    /// update the set that re-subscriptions send.
    pub suppressed_roles: Vec<String>,
    /// Acknowledge status updates that carry a `uuid` as soon as they are
    /// queued for the application. Default on. Turn it off to acknowledge
    /// with [`SchedulerClient::acknowledge`] after processing an update
    /// (e.g. after persisting it).
    pub auto_acknowledge: bool,
    /// Bound on every unary call. Default 10 s.
    pub call_timeout: Duration,
    /// The framework's credential, sent (HTTP Basic, in the `authorization`
    /// metadata) on every call, the SUBSCRIBE of each re-subscription
    /// included; its principal should be `FrameworkInfo.principal`, which
    /// a master that authenticates frameworks requires. Default none.
    pub credential: Option<agora_auth::credentials::Credential>,
    /// First re-subscription delay. Default 100 ms.
    pub backoff_initial: Duration,
    /// Longest re-subscription delay. Default 5 s.
    pub backoff_max: Duration,
    /// TLS to the master: with it every master (named, or detected in
    /// ZooKeeper) is reached at `https://`, its certificate verified against
    /// the configured CA with its host name or IP checked, and a client
    /// certificate presented where one is configured. Without it the master
    /// is reached in plaintext, and an `https://` address is refused rather
    /// than tried without verification. Default none.
    pub tls: Option<agora_tls::ClientTls>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            suppressed_roles: Vec::new(),
            auto_acknowledge: true,
            call_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            credential: None,
            tls: None,
        }
    }
}

/// A cloneable handle for a subscribed framework's calls.
///
/// Calls use the current subscription's stream id; while the SDK is
/// re-subscribing they fail with [`Error::NotSubscribed`].
#[derive(Debug, Clone)]
pub struct SchedulerClient {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    detector: Arc<dyn MasterDetector>,
    options: SubscribeOptions,
    session: Mutex<Session>,
    /// Held (shared) by every automatic acknowledgement in flight; TEARDOWN
    /// takes it exclusively first, so updates already handed to the
    /// application are acknowledged before the framework goes away.
    acks_in_flight: Arc<tokio::sync::RwLock<()>>,
}

#[derive(Debug)]
struct Session {
    /// What (re-)subscriptions send; `id` is set once subscribed.
    framework_info: FrameworkInfo,
    framework_id: FrameworkId,
    master: String,
    /// `Some` while subscribed.
    stream_id: Option<String>,
    grpc: Option<Grpc>,
    /// Roles suppressed now, sent again on re-subscription.
    suppressed_roles: BTreeSet<String>,
    /// A TEARDOWN was sent: the stream ending is expected, not a disconnect.
    tearing_down: bool,
    /// The subscription is over for good; no more re-subscription.
    finished: bool,
    /// The newest leadership epoch seen; a master from an older term
    /// (a deposed leader) is not subscribed to.
    max_epoch: Option<u64>,
}

/// The framework's events, in order. Ends after [`Event::Error`], after a
/// TEARDOWN, or when a re-subscription is refused for good.
///
/// Dropping it ends the subscription (the SDK closes the stream to the
/// master and stops re-subscribing). Also a [`futures::Stream`].
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
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

/// A successful SUBSCRIBE: the open stream and what came with it.
struct Subscription {
    grpc: Grpc,
    master: String,
    events: tonic::Streaming<pb::Event>,
    subscribed: pb::event::Subscribed,
    framework_id: FrameworkId,
}

enum AttemptError {
    /// Worth retrying (unreachable, unavailable, timed out).
    Transient(String),
    /// The master's final word.
    Fatal(Error),
}

impl SchedulerClient {
    /// Subscribes `framework` at `master` (`host:port` or `http://host:port`),
    /// retrying with backoff for up to `options.connect_timeout`.
    ///
    /// Returns the call handle and the event stream, whose first event is
    /// [`Event::Subscribed`]. Set `framework.id` to fail over to an existing
    /// framework.
    pub async fn connect(
        master: &str,
        framework: FrameworkInfo,
        options: SubscribeOptions,
    ) -> Result<(Self, EventStream), Error> {
        if master.trim().starts_with("https://") && options.tls.is_none() {
            return Err(Error::Tls(format!(
                "{master} is an https address: give a CA to verify it (SubscribeOptions::tls, --tls-ca)"
            )));
        }
        let detector = crate::address::master_detector(master)?;
        Self::connect_with_detector(detector, framework, options).await
    }

    /// Like [`connect`](Self::connect), finding the master with `detector`
    /// (asked again before every re-subscription).
    pub async fn connect_with_detector(
        detector: Arc<dyn MasterDetector>,
        framework: FrameworkInfo,
        options: SubscribeOptions,
    ) -> Result<(Self, EventStream), Error> {
        let deadline = Instant::now() + options.connect_timeout;
        let mut backoff = Backoff::new(options.backoff_initial, options.backoff_max);
        let mut last_error = String::from("no subscription attempt was made");
        let subscription = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::ConnectTimeout {
                    master: detector.to_string(),
                    timeout: options.connect_timeout,
                    last_error,
                });
            }
            let attempt = tokio::time::timeout(
                remaining,
                subscribe_once(
                    detector.as_ref(),
                    &framework,
                    &options.suppressed_roles,
                    remaining,
                    options.credential.as_ref(),
                    None,
                    options.tls.as_ref(),
                ),
            )
            .await;
            last_error = match attempt {
                Ok(Ok(subscription)) => break subscription,
                Ok(Err(AttemptError::Fatal(err))) => return Err(err),
                Ok(Err(AttemptError::Transient(msg))) => msg,
                Err(_) => "timed out waiting for the subscription".to_owned(),
            };
            debug!(master = %detector, error = %last_error, "subscription attempt failed; retrying");
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.next_delay().min(remaining)).await;
        };

        let client = Self {
            shared: Arc::new(Shared {
                detector,
                session: Mutex::new(Session {
                    framework_info: framework,
                    framework_id: subscription.framework_id.clone(),
                    master: subscription.master.clone(),
                    stream_id: None,
                    grpc: None,
                    suppressed_roles: options.suppressed_roles.iter().cloned().collect(),
                    tearing_down: false,
                    finished: false,
                    max_epoch: subscription
                        .subscribed
                        .master_info
                        .as_ref()
                        .and_then(|m| m.epoch),
                }),
                options,
                acks_in_flight: Arc::default(),
            }),
        };
        client.install(&subscription);
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(drive(client.clone(), subscription, tx));
        Ok((client, EventStream { rx }))
    }

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

    fn session(&self) -> MutexGuard<'_, Session> {
        self.shared
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `subscription` the current one; returns its heartbeat interval.
    fn install(&self, subscription: &Subscription) -> Duration {
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
    fn resubscribed_in_stream(&self, subscribed: &pb::event::Subscribed) {
        let mut session = self.session();
        if let Some(id) = &subscribed.framework_id {
            session.framework_id = id.clone();
            session.framework_info.id = Some(id.clone());
        }
        if !subscribed.stream_id.is_empty() {
            session.stream_id = Some(subscribed.stream_id.clone());
        }
    }

    fn mark_disconnected(&self) {
        let mut session = self.session();
        session.stream_id = None;
        session.grpc = None;
    }

    fn mark_finished(&self) {
        let mut session = self.session();
        session.stream_id = None;
        session.grpc = None;
        session.finished = true;
    }

    fn is_tearing_down(&self) -> bool {
        let session = self.session();
        session.tearing_down || session.finished
    }

    /// Prepares the automatic acknowledgement of `status`, if it needs one.
    /// Registers it as in flight *before* the update reaches the
    /// application, so a TEARDOWN the application sends in response waits
    /// for it.
    fn prepare_ack(&self, status: &agora_proto::v1::TaskStatus) -> Option<PendingAck> {
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

    fn spawn_ack(&self, ack: PendingAck) {
        let client = self.clone();
        tokio::spawn(async move {
            let PendingAck {
                agent_id,
                task_id,
                uuid,
                in_flight,
            } = ack;
            if let Err(err) = client.acknowledge(agent_id, task_id.clone(), uuid).await {
                if client.is_tearing_down() {
                    debug!(task_id = %task_id.value, error = %err, "acknowledgement lost to teardown");
                } else {
                    warn!(task_id = %task_id.value, error = %err, "failed to acknowledge status update");
                }
            }
            drop(in_flight);
        });
    }
}

/// An automatic acknowledgement about to be sent.
struct PendingAck {
    agent_id: AgentId,
    task_id: TaskId,
    uuid: Vec<u8>,
    in_flight: tokio::sync::OwnedRwLockReadGuard<()>,
}

/// The `authorization` metadata value for `credential` (HTTP Basic).
fn basic_metadata(
    credential: &agora_auth::credentials::Credential,
) -> Option<MetadataValue<tonic::metadata::Ascii>> {
    agora_auth::basic::header_value(credential).parse().ok()
}

/// `message` as a request carrying `credential`, if any.
fn authorized<T>(
    message: T,
    credential: Option<&agora_auth::credentials::Credential>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = credential.and_then(basic_metadata) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Connects to the detected master and subscribes; waits for SUBSCRIBED.
async fn subscribe_once(
    detector: &dyn MasterDetector,
    framework: &FrameworkInfo,
    suppressed_roles: &[String],
    connect_timeout: Duration,
    credential: Option<&agora_auth::credentials::Credential>,
    min_epoch: Option<u64>,
    tls: Option<&agora_tls::ClientTls>,
) -> Result<Subscription, AttemptError> {
    let master = detector
        .detect()
        .await
        .map_err(|e| AttemptError::Transient(e.to_string()))?;
    // With TLS configured, every master is reached over https.
    let master = match (tls, master.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        _ => master,
    };
    let endpoint = Endpoint::from_shared(master.clone())
        .map_err(|e| {
            AttemptError::Fatal(Error::Detection(format!(
                "invalid master endpoint {master:?}: {e}"
            )))
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    let channel = agora_tls::connect_channel(endpoint, tls)
        .await
        .map_err(|e| match e {
            agora_tls::ConnectError::NoCa(_) => AttemptError::Fatal(Error::Tls(e.to_string())),
            // The master's certificate refused (or ours): final.
            agora_tls::ConnectError::Transport(e) if agora_tls::tls_failure(&e).is_some() => {
                AttemptError::Fatal(Error::Tls(format!(
                    "TLS with {master} failed: {}",
                    error_chain(&e)
                )))
            }
            agora_tls::ConnectError::Transport(e) => {
                AttemptError::Transient(format!("cannot connect to {master}: {}", error_chain(&e)))
            }
        })?;
    let mut grpc = Grpc::new(channel);

    let request = pb::Call {
        framework_id: framework.id.clone(),
        r#type: call::Type::Subscribe as i32,
        subscribe: Some(call::Subscribe {
            framework_info: Some(framework.clone()),
            suppressed_roles: suppressed_roles.to_vec(),
        }),
        ..Default::default()
    };
    let rejected = |status: tonic::Status| {
        if crate::error::is_transient(status.code()) {
            AttemptError::Transient(format!(
                "subscribe at {master} failed ({:?}): {}",
                status.code(),
                status.message()
            ))
        } else {
            AttemptError::Fatal(Error::SubscribeRejected {
                code: Some(status.code()),
                message: status.message().to_owned(),
            })
        }
    };
    let mut events = grpc
        .subscribe(authorized(request, credential))
        .await
        .map_err(rejected)?
        .into_inner();
    let first = match events.message().await {
        Ok(Some(first)) => first,
        Ok(None) => {
            return Err(AttemptError::Transient(format!(
                "master at {master} closed the stream before SUBSCRIBED"
            )));
        }
        Err(status) => return Err(rejected(status)),
    };

    use pb::event::Type;
    match Type::try_from(first.r#type) {
        Ok(Type::Subscribed) => {}
        Ok(Type::Error) => {
            return Err(AttemptError::Fatal(Error::SubscribeRejected {
                code: None,
                message: first.error.map(|e| e.message).unwrap_or_default(),
            }));
        }
        _ => {
            return Err(AttemptError::Fatal(Error::Protocol(format!(
                "first event is of type {} instead of SUBSCRIBED",
                first.r#type
            ))));
        }
    }
    let subscribed = first.subscribed.unwrap_or_default();
    let framework_id = subscribed.framework_id.clone().ok_or_else(|| {
        AttemptError::Fatal(Error::Protocol("SUBSCRIBED without framework_id".into()))
    })?;
    if subscribed.stream_id.is_empty()
        || MetadataValue::try_from(subscribed.stream_id.as_str()).is_err()
    {
        return Err(AttemptError::Fatal(Error::Protocol(format!(
            "SUBSCRIBED with unusable stream id {:?}",
            subscribed.stream_id
        ))));
    }
    let epoch = subscribed.master_info.as_ref().and_then(|m| m.epoch);
    if let (Some(epoch), Some(min)) = (epoch, min_epoch)
        && epoch < min
    {
        // A deposed leader that still answers: wait for the current one.
        return Err(AttemptError::Transient(format!(
            "master at {master} leads an older term (epoch {epoch} < {min})"
        )));
    }
    info!(framework_id = %framework_id.value, master = %master, "subscribed");
    Ok(Subscription {
        grpc,
        master,
        events,
        subscribed,
        framework_id,
    })
}

/// How reading one stream ended.
enum StreamEnd {
    /// The stream broke; re-subscribe.
    Disconnected(String),
    /// The subscription is over (ERROR, teardown, or the application dropped
    /// the event stream).
    Finished,
}

/// Owns the subscription: forwards events, acknowledges updates, and
/// re-subscribes after disconnects until the subscription is over.
async fn drive(client: SchedulerClient, first: Subscription, tx: mpsc::Sender<Event>) {
    drive_inner(&client, first, &tx).await;
    client.mark_finished();
    debug!("event stream driver stopped");
}

async fn drive_inner(client: &SchedulerClient, first: Subscription, tx: &mpsc::Sender<Event>) {
    let mut subscription = first;
    let mut reconnected = false;
    loop {
        let heartbeat = client.install(&subscription);
        if reconnected && tx.send(Event::Reconnected).await.is_err() {
            return;
        }
        let subscribed = Event::Subscribed {
            framework_id: subscription.framework_id.clone(),
            heartbeat_interval: heartbeat,
            master_info: subscription.subscribed.master_info.clone(),
        };
        if tx.send(subscribed).await.is_err() {
            return;
        }

        let end = pump(client, &mut subscription.events, heartbeat, tx).await;
        drop(subscription);
        let reason = match end {
            StreamEnd::Finished => return,
            StreamEnd::Disconnected(reason) => reason,
        };
        client.mark_disconnected();
        if client.is_tearing_down() {
            debug!(reason = %reason, "event stream ended after teardown");
            return;
        }
        warn!(reason = %reason, "disconnected from master; re-subscribing");
        if tx
            .send(Event::Disconnected {
                reason: reason.clone(),
            })
            .await
            .is_err()
        {
            return;
        }
        match resubscribe(client, tx).await {
            Some(next) => subscription = next,
            None => return,
        }
        reconnected = true;
    }
}

/// Reads one stream until it ends.
async fn pump(
    client: &SchedulerClient,
    events: &mut tonic::Streaming<pb::Event>,
    mut heartbeat: Duration,
    tx: &mpsc::Sender<Event>,
) -> StreamEnd {
    let auto_acknowledge = client.shared.options.auto_acknowledge;
    loop {
        let watchdog = heartbeat.saturating_mul(HEARTBEAT_MISSES);
        let next = tokio::select! {
            biased;
            () = tx.closed() => return StreamEnd::Finished,
            next = tokio::time::timeout(watchdog, events.message()) => next,
        };
        let raw = match next {
            Ok(Ok(Some(raw))) => raw,
            Ok(Ok(None)) => {
                return StreamEnd::Disconnected("master closed the event stream".to_owned());
            }
            Ok(Err(status)) => {
                return StreamEnd::Disconnected(format!(
                    "event stream failed ({:?}): {}",
                    status.code(),
                    status.message()
                ));
            }
            Err(_) => {
                return StreamEnd::Disconnected(format!(
                    "no event from the master for {watchdog:?} ({HEARTBEAT_MISSES} heartbeat intervals)"
                ));
            }
        };
        if let Some(subscribed) = &raw.subscribed {
            client.resubscribed_in_stream(subscribed);
            heartbeat = heartbeat_interval(subscribed);
        }
        let event = match event::from_proto(raw) {
            Ok(event) => event,
            Err(why) => {
                warn!(error = %why, "ignoring malformed event from master");
                continue;
            }
        };
        match event {
            Event::Update(status) => {
                let ack = if auto_acknowledge {
                    client.prepare_ack(&status)
                } else {
                    None
                };
                if tx.send(Event::Update(status)).await.is_err() {
                    return StreamEnd::Finished;
                }
                if let Some(ack) = ack {
                    client.spawn_ack(ack);
                }
            }
            Event::Error(message) => {
                // After our own TEARDOWN the master's "framework removed"
                // is the expected answer, not a problem.
                if client.is_tearing_down() {
                    debug!(error = %message, "master ended the subscription after teardown");
                } else {
                    warn!(error = %message, "master ended the subscription");
                }
                let _ = tx.send(Event::Error(message)).await;
                return StreamEnd::Finished;
            }
            event => {
                if tx.send(event).await.is_err() {
                    return StreamEnd::Finished;
                }
            }
        }
    }
}

/// Re-subscribes with backoff until it succeeds, is refused for good, or the
/// application drops the event stream.
async fn resubscribe(client: &SchedulerClient, tx: &mpsc::Sender<Event>) -> Option<Subscription> {
    let options = &client.shared.options;
    let mut backoff = Backoff::new(options.backoff_initial, options.backoff_max);
    loop {
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = tx.closed() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        let (framework, suppressed_roles, min_epoch) = {
            let session = client.session();
            let roles: Vec<String> = session.suppressed_roles.iter().cloned().collect();
            (session.framework_info.clone(), roles, session.max_epoch)
        };
        let attempt = tokio::select! {
            biased;
            () = tx.closed() => return None,
            attempt = tokio::time::timeout(
                options.connect_timeout,
                subscribe_once(
                    client.shared.detector.as_ref(),
                    &framework,
                    &suppressed_roles,
                    options.connect_timeout,
                    options.credential.as_ref(),
                    min_epoch,
                    options.tls.as_ref(),
                ),
            ) => attempt,
        };
        match attempt {
            Ok(Ok(subscription)) => return Some(subscription),
            Ok(Err(AttemptError::Transient(why))) => {
                warn!(error = %why, "re-subscription failed; retrying");
            }
            Ok(Err(AttemptError::Fatal(err))) => {
                warn!(error = %err, "re-subscription refused; giving up");
                let _ = tx.send(Event::Error(err.to_string())).await;
                return None;
            }
            Err(_) => warn!("re-subscription timed out; retrying"),
        }
    }
}

/// An error and its sources, `: `-separated (transport errors say little at
/// the top level).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    let mut last = out.clone();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Layers often repeat their cause's message; say it once.
        if text != last {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests;
