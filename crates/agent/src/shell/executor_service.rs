//! The executors' gRPC service on the agent's port: SUBSCRIBE checked
//! against the executor's token and current run, then its calls fed to the
//! actor and the actor's events streamed back. The HTTP executor API
//! (`executor_http.rs`) subscribes through the same path.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_auth::executor_token::TokenKey;
use agora_core::{ExecutorId, FrameworkId, TaskId};
use agora_net::outbox::{Inbox, outbox};
use agora_proto::v1::executor::executor_server::Executor;
use agora_proto::v1::executor::{self as exec, call};
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::command::{AgentCommand, executor_call};
use crate::executor_auth::ExecutorRefusal;
use crate::state::ExecutorConn;

const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct ExecutorService {
    pub(super) commands: mpsc::Sender<AgentCommand>,
    pub(super) next_conn: Arc<AtomicU64>,
    /// Verifies the executors' tokens.
    pub(super) key: TokenKey,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<exec::Event, Status>> + Send>>;

/// An executor's event stream: everything the actor pushed, in order; a
/// stream given up as stuck ends with UNAVAILABLE, and the executor
/// re-subscribes.
pub(super) fn event_stream(rx: Inbox<exec::Event>) -> EventStream {
    Box::pin(rx.map(|event| {
        event.map_err(|stuck| {
            Status::unavailable(format!("stream closed: {stuck}; subscribe again"))
        })
    }))
}

#[tonic::async_trait]
impl Executor for ExecutorService {
    type OpenStream = EventStream;

    async fn open(
        &self,
        request: Request<Streaming<exec::Call>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(SUBSCRIBE_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no subscription received"))??
            .ok_or_else(|| Status::invalid_argument("stream closed before subscribing"))?;
        if first.r#type != call::Type::Subscribe as i32 {
            return Err(Status::invalid_argument("the first call must be SUBSCRIBE"));
        }
        let framework_id = FrameworkId::from_field(&first.framework_id)
            .map_err(|e| Status::invalid_argument(format!("framework id: {e}")))?;
        let executor_id = ExecutorId::from_field(&first.executor_id)
            .map_err(|e| Status::invalid_argument(format!("executor id: {e}")))?;
        let run_id = crate::executor_auth::authenticate(
            &self.key,
            authorization.as_deref(),
            &framework_id,
            &executor_id,
        )
        .map_err(|why| {
            log_refusal("grpc", &framework_id, &executor_id, "subscribe", &why);
            Status::unauthenticated(why)
        })?;
        let (conn, rx) = subscribe_executor(
            &self.commands,
            &self.next_conn,
            &framework_id,
            &executor_id,
            run_id,
            first.subscribe.unwrap_or_default(),
        )
        .await
        .map_err(|failure| match failure {
            SubscribeFailure::Refused(why) => Status::not_found(why),
            SubscribeFailure::Unauthenticated(why) => {
                log_refusal("grpc", &framework_id, &executor_id, "subscribe", &why);
                Status::unauthenticated(why)
            }
            SubscribeFailure::ShuttingDown => Status::unavailable("agent is shutting down"),
        })?;
        let stuck = rx.stuck_signal();
        let commands = self.commands.clone();
        tokio::spawn(async move {
            loop {
                let call = tokio::select! {
                    // Given up as stuck: its updates wait for its next subscription.
                    _ = stuck.stuck() => break,
                    call = inbound.message() => match call {
                        Ok(Some(call)) => call,
                        Ok(None) => break,
                        Err(e) => {
                            // A call over the gRPC message size cannot be
                            // decoded: the stream is lost (the executor
                            // re-subscribes), and the operator is told why.
                            if e.code() == tonic::Code::OutOfRange {
                                tracing::warn!(executor_id = %executor_id, error = %e, "executor call too large; its stream is closed");
                            } else {
                                tracing::debug!(executor_id = %executor_id, error = %e, "executor stream ended");
                            }
                            break;
                        }
                    },
                };
                let command = executor_call(conn, &framework_id, &executor_id, call);
                // Awaited: a flooding executor is slowed by flow control.
                if let Some(command) = command
                    && commands.send(command).await.is_err()
                {
                    break;
                }
            }
            let _ = commands.send(AgentCommand::ExecutorGone { conn }).await;
        });
        Ok(Response::new(event_stream(rx)))
    }
}

/// Why an executor's subscription was not opened.
pub(super) enum SubscribeFailure {
    /// The actor refused it (no such executor here); the reason says why.
    Refused(String),
    /// The token is not for the executor's current run.
    Unauthenticated(String),
    ShuttingDown,
}

/// Logs a refused executor call with its fields (never its token).
pub(super) fn log_refusal(
    api: &'static str,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
    call: &str,
    why: &str,
) {
    tracing::warn!(
        api,
        framework_id = %framework_id,
        executor_id = %executor_id,
        call,
        reason = %why,
        "executor call refused: not authenticated"
    );
}

/// Subscribes an executor through the actor: the one path for the gRPC and
/// the HTTP executor APIs. Returns the stream's connection id and the
/// events the actor pushes to it.
pub(super) async fn subscribe_executor(
    commands: &mpsc::Sender<AgentCommand>,
    next_conn: &AtomicU64,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
    run_id: String,
    subscribe: call::Subscribe,
) -> Result<(ExecutorConn, Inbox<exec::Event>), SubscribeFailure> {
    // Tasks the executor already holds (Mesos' "unacknowledged tasks").
    let held = subscribe
        .unacknowledged_tasks
        .iter()
        .filter_map(|t| TaskId::from_field(&t.task_id).ok())
        .collect();
    let unacknowledged = subscribe
        .unacknowledged_updates
        .into_iter()
        .filter_map(|u| u.status)
        .collect();
    let conn = next_conn.fetch_add(1, Ordering::Relaxed);
    let (events, rx) = outbox();
    let (reply, answer) = oneshot::channel();
    commands
        .send(AgentCommand::ExecutorSubscribe {
            conn,
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            run_id,
            held,
            unacknowledged,
            events,
            reply,
        })
        .await
        .map_err(|_| SubscribeFailure::ShuttingDown)?;
    answer
        .await
        .map_err(|_| SubscribeFailure::ShuttingDown)?
        .map_err(|refusal| match refusal {
            ExecutorRefusal::Refused(why) => SubscribeFailure::Refused(why),
            ExecutorRefusal::Unauthenticated(why) => SubscribeFailure::Unauthenticated(why),
        })?;
    Ok((conn, rx))
}
