//! The running executor driver: one task that subscribes to the agent over
//! `agora.v1.executor.Executor/Open` (SUBSCRIBE first, with what is still
//! unacknowledged), turns events into callbacks, sends queued calls in
//! order, and subscribes again when the stream breaks.

use std::sync::Arc;
use std::time::Duration;

use agora_core::Backoff;
use agora_proto::v1;
use agora_proto::v1::executor::executor_client::ExecutorClient;
use agora_proto::v1::executor::{Call, Event, call, event};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::{debug, error, info, warn};

use super::books::Books;
use super::{Callback, Command, ExecutorConfig, STOP_TIMEOUT, Shared};
use crate::convert;

/// First pause between subscription attempts; doubles up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long one TCP connection attempt to the agent may take.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(2);

/// Why a subscription attempt failed.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// Worth another try (agent not up yet, restarting, stream closed).
    #[error("{0}")]
    Retry(String),
    /// The agent refused this executor, or the endpoint is unusable.
    #[error("{0}")]
    Fatal(String),
}

/// What the connected phase ended with.
enum Outcome {
    /// The stream broke: subscribe again.
    Lost(String),
    /// The driver is done (stopped, aborted, dropped).
    Done,
}

/// What the session keeps across connections.
struct Session {
    shared: Arc<Shared>,
    config: ExecutorConfig,
    books: Books,
    /// Learnt from the agent (or the environment); filled into updates.
    agent_id: Option<v1::AgentId>,
    subscribed_once: bool,
}

/// Runs one driver's session until it is stopped or aborted, or it gives
/// up on the agent.
pub(super) async fn run(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let config = match &shared.config {
        Ok(config) => config.clone(),
        Err(e) => {
            error!(error = %e, "cannot start the executor driver");
            shared.emit(Callback::Error(e.to_string()));
            return;
        }
    };
    let mut session = Session {
        agent_id: config.agent_id.clone().map(|value| v1::AgentId { value }),
        shared,
        config,
        books: Books::new(),
        subscribed_once: false,
    };
    let mut window = session.config.connect_timeout;
    loop {
        let Some((tx, events)) = session.subscribe(&mut commands, window).await else {
            return;
        };
        match session.connected(&mut commands, tx, events).await {
            Outcome::Done => return,
            Outcome::Lost(reason) => {
                if session.subscribed_once {
                    warn!(%reason, "disconnected from the agent; subscribing again");
                    session.shared.emit(Callback::Disconnected);
                    window = session.config.recovery_timeout;
                } else {
                    warn!(%reason, "the agent closed the stream before the subscription; trying again");
                }
            }
        }
    }
}

impl Session {
    /// Tries to open a subscription within `window`, taking calls meanwhile
    /// (updates wait in the books for the SUBSCRIBE). `None` when the
    /// driver ended or the agent could not be reached in time (then the
    /// application was told).
    async fn subscribe(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        window: Duration,
    ) -> Option<(mpsc::UnboundedSender<Call>, tonic::Streaming<Event>)> {
        let deadline = Instant::now() + window;
        let mut pause = Backoff::new(RETRY_MIN, RETRY_MAX);
        // Bounded by the deadline: every iteration either returns or waits.
        loop {
            // Owns its inputs: calls taken meanwhile change the books.
            let config = self.config.clone();
            let subscribe = self.subscribe_call();
            let attempt = async move { open(&config, subscribe).await };
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    command = commands.recv() => {
                        if !self.offline(command) {
                            return None;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        break Err(OpenError::Retry("timed out".into()));
                    }
                }
            };
            let reason = match result {
                Ok(opened) => return Some(opened),
                Err(OpenError::Fatal(reason)) => {
                    self.give_up(reason);
                    return None;
                }
                Err(OpenError::Retry(reason)) => reason,
            };
            if Instant::now() >= deadline {
                self.give_up(format!(
                    "cannot subscribe to the agent at {} within {window:?}: {reason}",
                    self.config.endpoint
                ));
                return None;
            }
            debug!(%reason, "agent not reachable yet");
            let wake = (Instant::now() + pause.next_delay()).min(deadline);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => break,
                    command = commands.recv() => {
                        if !self.offline(command) {
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// A call made while not connected. Returns whether the session goes on.
    fn offline(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::Update(update)) => {
                // Goes out with the next SUBSCRIBE.
                self.books.sent(self.with_agent(update));
                true
            }
            Some(Command::Message(_)) => {
                warn!("framework message dropped: not connected to the agent");
                true
            }
            Some(Command::Stop { done, .. }) => {
                let _ = done.send(());
                false
            }
            None => false,
        }
    }

    /// The agent cannot be reached (in time, or at all): the application
    /// is told. A lost agent after a subscription is a shutdown, as in
    /// Mesos (the executor's tasks are gone with it).
    fn give_up(&self, reason: String) {
        error!(%reason, "giving up on the agent");
        if self.subscribed_once {
            self.shared.emit(Callback::Shutdown);
        } else {
            self.shared.emit(Callback::Error(reason));
        }
    }

    fn subscribe_call(&self) -> Call {
        let mut subscribe = self.call(call::Type::Subscribe);
        subscribe.subscribe = Some(self.books.subscribe());
        subscribe
    }

    fn call(&self, kind: call::Type) -> Call {
        Call {
            framework_id: Some(v1::FrameworkId {
                value: self.config.framework_id.clone(),
            }),
            executor_id: Some(v1::ExecutorId {
                value: self.config.executor_id.clone(),
            }),
            r#type: kind as i32,
            ..Default::default()
        }
    }

    fn with_agent(&self, mut update: v1::TaskStatus) -> v1::TaskStatus {
        if update.agent_id.is_none() {
            update.agent_id = self.agent_id.clone();
        }
        update
    }

    /// Serves one subscription until it breaks or the driver ends.
    async fn connected(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        tx: mpsc::UnboundedSender<Call>,
        mut events: tonic::Streaming<Event>,
    ) -> Outcome {
        loop {
            tokio::select! {
                event = events.message() => match event {
                    Ok(Some(event)) => self.event(event),
                    Ok(None) => return Outcome::Lost("the agent closed the stream".into()),
                    Err(status) => return Outcome::Lost(status.message().to_owned()),
                },
                command = commands.recv() => match command {
                    Some(Command::Update(update)) => {
                        let update = self.with_agent(update);
                        self.books.sent(update.clone());
                        let mut call = self.call(call::Type::Update);
                        call.update = Some(call::Update { status: Some(update) });
                        // A closed stream shows on the event side; the
                        // update waits in the books for the next SUBSCRIBE.
                        let _ = tx.send(call);
                    }
                    Some(Command::Message(data)) => {
                        let mut call = self.call(call::Type::Message);
                        call.message = Some(call::Message { data });
                        let _ = tx.send(call);
                    }
                    Some(Command::Stop { flush, done }) => {
                        if flush {
                            self.flush(&mut events).await;
                        }
                        drop(tx);
                        let _ = done.send(());
                        return Outcome::Done;
                    }
                    None => return Outcome::Done,
                },
            }
        }
    }

    /// Waits (bounded) for the agent to acknowledge every update sent, so
    /// that an executor that exits right after `stop()` loses none.
    async fn flush(&mut self, events: &mut tonic::Streaming<Event>) {
        let deadline = Instant::now() + STOP_TIMEOUT / 2;
        while !self.books.all_acknowledged() {
            let event = tokio::select! {
                event = events.message() => event,
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(unacknowledged = self.books.updates().len(), "stopping with updates the agent has not acknowledged");
                    return;
                }
            };
            match event {
                Ok(Some(event)) => {
                    if event.r#type == event::Type::Acknowledged as i32
                        && let Some(ack) = event.acknowledged
                    {
                        self.books.acknowledged(&ack.uuid);
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    fn event(&mut self, event: Event) {
        let kind = event::Type::try_from(event.r#type).unwrap_or(event::Type::Unknown);
        match kind {
            event::Type::Subscribed => {
                let subscribed = event.subscribed.unwrap_or_default();
                let agent = subscribed.agent_info.unwrap_or_default();
                if let Some(id) = &agent.id {
                    self.agent_id = Some(id.clone());
                }
                let slave = match convert::to_v0(&agent) {
                    Ok(slave) => slave,
                    Err(e) => {
                        error!(error = %e, "cannot convert the agent's info");
                        return;
                    }
                };
                if self.subscribed_once {
                    info!("re-subscribed to the agent");
                    self.shared.emit(Callback::Reregistered(slave));
                    return;
                }
                self.subscribed_once = true;
                let executor = convert::to_v0(&subscribed.executor_info.unwrap_or_default());
                let framework = convert::to_v0(&subscribed.framework_info.unwrap_or_default());
                match (executor, framework) {
                    (Ok(executor), Ok(framework)) => {
                        info!(executor_id = %self.config.executor_id, "subscribed to the agent");
                        self.shared.emit(Callback::Registered {
                            executor,
                            framework,
                            slave,
                        });
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        error!(error = %e, "cannot convert the subscription");
                        self.shared.emit(Callback::Error(format!(
                            "cannot read the subscription: {e}"
                        )));
                    }
                }
            }
            event::Type::Launch => {
                let Some(task) = event.launch.and_then(|l| l.task) else {
                    warn!("launch event without a task ignored");
                    return;
                };
                match convert::to_v0(&task) {
                    Ok(v0_task) => {
                        self.books.launched(task);
                        self.shared.emit(Callback::Launch(v0_task));
                    }
                    Err(e) => error!(error = %e, "task dropped: cannot convert it"),
                }
            }
            event::Type::Kill => {
                if let Some(task_id) = event.kill.and_then(|k| k.task_id)
                    && let Ok(task_id) = convert::to_v0(&task_id)
                {
                    self.shared.emit(Callback::Kill(task_id));
                }
            }
            event::Type::Acknowledged => {
                if let Some(ack) = event.acknowledged
                    && !self.books.acknowledged(&ack.uuid)
                {
                    debug!("acknowledgement of an unknown update ignored");
                }
            }
            event::Type::Message => {
                let data = event.message.map(|m| m.data).unwrap_or_default();
                self.shared.emit(Callback::Message(data));
            }
            event::Type::Shutdown => {
                info!("the agent asks the executor to shut down");
                self.shared.emit(Callback::Shutdown);
            }
            event::Type::Error => {
                let message = event
                    .error
                    .map(|e| e.message)
                    .unwrap_or_else(|| "the agent reported an error".into());
                error!(%message, "error from the agent");
                self.shared.emit(Callback::Error(message));
            }
            event::Type::Heartbeat | event::Type::Unknown => {}
        }
    }
}

/// One subscription attempt: connect, send SUBSCRIBE, open the stream.
async fn open(
    config: &ExecutorConfig,
    subscribe: Call,
) -> Result<(mpsc::UnboundedSender<Call>, tonic::Streaming<Event>), OpenError> {
    let endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| {
            OpenError::Fatal(format!("invalid agent endpoint {:?}: {e}", config.endpoint))
        })?
        .connect_timeout(CONNECT_ATTEMPT);
    let tls = match &config.tls {
        Some(files) => files
            .client()
            .map_err(|e| OpenError::Fatal(format!("cannot set up TLS to the agent: {e}")))?,
        None => None,
    };
    let channel = agora_tls::connect_channel(endpoint, tls.as_ref())
        .await
        .map_err(|e| OpenError::Retry(format!("cannot connect: {e}")))?;
    let mut client = ExecutorClient::new(channel);
    let (tx, rx) = mpsc::unbounded_channel();
    // The agent reads SUBSCRIBE before it answers the call.
    let _ = tx.send(subscribe);
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
    if let Some(token) = &config.authentication_token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| OpenError::Fatal("the executor token is not a valid header".into()))?;
        request.metadata_mut().insert("authorization", value);
    }
    match client.open(request).await {
        Ok(response) => Ok((tx, response.into_inner())),
        Err(status) => match status.code() {
            tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::Unimplemented => Err(OpenError::Fatal(format!(
                "the agent refused the subscription: {}",
                status.message()
            ))),
            _ => Err(OpenError::Retry(format!(
                "the agent did not take the subscription: {}",
                status.message()
            ))),
        },
    }
}
