//! Mesos' v1 executor HTTP API, `POST /api/v1/executor`: a framing layer
//! over the same actor commands as the gRPC `Executor` service, so that an
//! executor written for Mesos (pymesos, the Go and Java libraries) runs as
//! an Agora custom executor. SUBSCRIBE answers 200 with a chunked RecordIO
//! stream of events (heartbeats included); UPDATE and MESSAGE answer 202
//! and name their executor by its framework and executor ids, which must
//! hold a live subscription.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use agora_core::{ExecutorId, FrameworkId};
use agora_mesos_http::{Media, Refusal, decode, encode, recordio};
use agora_proto::v1::executor::{self as exec, call};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::command::AgentCommand;
use super::executor_service::{SubscribeFailure, log_refusal, subscribe_executor};
use crate::executor_auth::{ExecutorRefusal, REALM};
use agora_auth::executor_token::TokenKey;

/// How often a subscribed HTTP executor hears from its agent.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(super) struct ExecutorApi {
    pub(super) commands: mpsc::Sender<AgentCommand>,
    /// Shared with the gRPC service: one numbering of executor streams.
    pub(super) next_conn: Arc<AtomicU64>,
    /// Verifies the executors' tokens (`executor_auth`).
    pub(super) key: TokenKey,
}

pub(super) fn router(api: ExecutorApi) -> Router {
    let router = Router::new()
        .route("/api/v1/executor", post(executor))
        .route("/slave(1)/api/v1/executor", post(executor));
    agora_net::body_limit::limit_bodies(router, agora_net::MAX_MESSAGE_BYTES).with_state(api)
}

fn bad_request(why: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, why.into())
}

fn shutting_down() -> Refusal {
    Refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "the agent is shutting down".into(),
    )
}

async fn executor(State(api): State<ExecutorApi>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&api, &headers, &body).await {
        Ok(response) => response,
        Err(Failure::Refused(refusal)) => refusal.into_response(),
        Err(Failure::Unauthenticated(why)) => unauthorized(why),
    }
}

/// How a call fails: refused as Mesos refuses it, or not authenticated.
enum Failure {
    Refused(Refusal),
    Unauthenticated(String),
}

impl<E: Into<Refusal>> From<E> for Failure {
    fn from(refusal: E) -> Self {
        Failure::Refused(refusal.into())
    }
}

/// 401 with the executor realm's challenge and the reason in plain text.
fn unauthorized(why: String) -> Response {
    let challenge = format!("Bearer realm=\"{REALM}\"");
    let mut response = (StatusCode::UNAUTHORIZED, why).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn call_name(kind: i32) -> &'static str {
    match call::Type::try_from(kind).unwrap_or(call::Type::Unknown) {
        call::Type::Subscribe => "subscribe",
        call::Type::Update => "update",
        call::Type::Message => "message",
        call::Type::Unknown => "unknown",
    }
}

async fn handle(api: &ExecutorApi, headers: &HeaderMap, body: &[u8]) -> Result<Response, Failure> {
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let media = Media::from_content_type(header_str(header::CONTENT_TYPE))?;
    let call: exec::Call = decode(media, body).map_err(|e| {
        bad_request(format!(
            "failed to parse the body into an executor call: {e}"
        ))
    })?;
    let framework_id = FrameworkId::from_field(&call.framework_id)
        .map_err(|e| bad_request(format!("framework_id: {e}")))?;
    let executor_id = ExecutorId::from_field(&call.executor_id)
        .map_err(|e| bad_request(format!("executor_id: {e}")))?;
    // Every call, whatever its type, speaks for its executor: its token
    // must be that executor's.
    let refused = |why: String| {
        log_refusal(
            "http",
            &framework_id,
            &executor_id,
            call_name(call.r#type),
            &why,
        );
        Failure::Unauthenticated(why)
    };
    let run_id = crate::executor_auth::authenticate(
        &api.key,
        header_str(header::AUTHORIZATION),
        &framework_id,
        &executor_id,
    )
    .map_err(refused)?;
    match call::Type::try_from(call.r#type).unwrap_or(call::Type::Unknown) {
        call::Type::Subscribe => {
            let accept = Media::from_accept(header_str(header::ACCEPT))?;
            subscribe(api, accept, framework_id, executor_id, run_id, call).await
        }
        call::Type::Update | call::Type::Message => {
            let kind = call_name(call.r#type);
            let (reply, answer) = oneshot::channel();
            api.commands
                .send(AgentCommand::ExecutorHttpCall {
                    framework_id: framework_id.clone(),
                    executor_id: executor_id.clone(),
                    run_id,
                    call,
                    reply,
                })
                .await
                .map_err(|_| shutting_down())?;
            answer
                .await
                .map_err(|_| shutting_down())?
                .map_err(|refusal| match refusal {
                    ExecutorRefusal::Refused(why) => {
                        Failure::Refused(Refusal(StatusCode::FORBIDDEN, why))
                    }
                    ExecutorRefusal::Unauthenticated(why) => {
                        log_refusal("http", &framework_id, &executor_id, kind, &why);
                        Failure::Unauthenticated(why)
                    }
                })?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        call::Type::Unknown if call.r#type == 0 => Err(bad_request(
            "failed to validate the executor call: expecting 'type' to be present",
        )
        .into()),
        call::Type::Unknown => Err(Refusal(
            StatusCode::NOT_IMPLEMENTED,
            format!("call type {} is not supported by this agent", call.r#type),
        )
        .into()),
    }
}

/// Tells the actor the executor's stream ended when the response body is
/// dropped (the executor went away, or its stream was given up as stuck).
struct GoneGuard {
    commands: mpsc::Sender<AgentCommand>,
    conn: u64,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        let gone = AgentCommand::ExecutorGone { conn: self.conn };
        if let Err(mpsc::error::TrySendError::Full(gone)) = self.commands.try_send(gone)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let commands = self.commands.clone();
            runtime.spawn(async move {
                let _ = commands.send(gone).await;
            });
        }
    }
}

async fn subscribe(
    api: &ExecutorApi,
    accept: Media,
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    run_id: String,
    call: exec::Call,
) -> Result<Response, Failure> {
    let (conn, rx) = subscribe_executor(
        &api.commands,
        &api.next_conn,
        &framework_id,
        &executor_id,
        run_id,
        call.subscribe.unwrap_or_default(),
    )
    .await
    .map_err(|failure| match failure {
        SubscribeFailure::Refused(why) => Failure::Refused(Refusal::bad_request(why)),
        SubscribeFailure::Unauthenticated(why) => {
            log_refusal("http", &framework_id, &executor_id, "subscribe", &why);
            Failure::Unauthenticated(why)
        }
        SubscribeFailure::ShuttingDown => Failure::Refused(shutting_down()),
    })?;
    let guard = GoneGuard {
        commands: api.commands.clone(),
        conn,
    };
    let heartbeat = exec::Event {
        r#type: exec::event::Type::Heartbeat as i32,
        ..Default::default()
    };
    let ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_INTERVAL,
        HEARTBEAT_INTERVAL,
    );
    let beats = tokio_stream::wrappers::IntervalStream::new(ticker)
        .map(move |_| Some(Ok(heartbeat.clone())));
    // Events first when both are ready. The body ends with the events: when
    // the actor drops the executor's outbox, or gives the stream up as stuck
    // (the executor subscribes again).
    let events = rx
        .map(|event| Some(event.map_err(|stuck| stuck.to_string())))
        .chain(futures::stream::once(futures::future::ready(None)));
    let records = futures::stream::select_with_strategy(events, beats, |_: &mut ()| {
        futures::stream::PollNext::Left
    })
    .take_while(|item| futures::future::ready(matches!(item, Some(Ok(_)))))
    .filter_map(|item| futures::future::ready(item.and_then(Result::ok)))
    .map(move |event| {
        let _until_the_body_is_dropped = &guard;
        Ok::<_, std::io::Error>(recordio::frame(&encode(accept, &event)))
    });
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(accept.content_type()),
        )],
        Body::from_stream(records),
    )
        .into_response())
}
