//! Mesos' v1 scheduler HTTP API, `POST /api/v1/scheduler`: a framing layer
//! over the same actor commands as the gRPC `Scheduler` service, so every
//! call has one implementation. SUBSCRIBE answers 200 with a
//! `Mesos-Stream-Id` header and a chunked RecordIO stream of events (one
//! record per chunk, heartbeats at the advertised interval); every other
//! call answers 202 Accepted, or Mesos' status with a plain-text message.
//!
//! Followers never get here: `http::leader_only` answers them 307 to the
//! leader (or 503 while none is known).

use agora_mesos_http::{Media, Refusal, decode, encode, recordio};
use agora_proto::v1::scheduler as sched;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;

use crate::protocol::Command;
use crate::services::Services;
use crate::state::CallError;

/// The header that ties a call to its framework's subscription.
pub(crate) const STREAM_ID_HEADER: &str = "mesos-stream-id";

/// The paths Mesos serves the API on (the second under its process id).
pub(crate) use crate::authn::SCHEDULER_API_PATHS as PATHS;

pub(crate) fn router(services: Services) -> Router {
    let gate = services.gate();
    let mut router = Router::new();
    for path in PATHS {
        router = router.route(path, post(scheduler));
    }
    // A call is held to what one gRPC message may carry.
    agora_net::body_limit::limit_bodies(router, agora_net::MAX_MESSAGE_BYTES)
        .with_state(services)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            crate::http::leader_only,
        ))
}

/// The state machine's refusals as Mesos' statuses: the one place this
/// mapping is made for the HTTP scheduler API. An unknown framework is 400
/// in Mesos ("Framework cannot be found"); one that is not subscribed, or
/// was removed, is 403.
fn refusal(error: CallError) -> Refusal {
    match error {
        CallError::InvalidArgument(m) | CallError::NotFound(m) => {
            Refusal(StatusCode::BAD_REQUEST, m)
        }
        CallError::FailedPrecondition(m)
        | CallError::PermissionDenied(m)
        | CallError::Unauthorized(m) => Refusal(StatusCode::FORBIDDEN, m),
    }
}

fn unavailable(why: impl Into<String>) -> Refusal {
    Refusal(StatusCode::SERVICE_UNAVAILABLE, why.into())
}

async fn scheduler(
    State(services): State<Services>,
    caller: Option<axum::Extension<agora_auth::Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Who the authentication layer found the caller to be (`crate::authn`).
    let principal = caller.and_then(|axum::Extension(c)| c.0);
    match handle(&services, &headers, &body, principal).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    services: &Services,
    headers: &HeaderMap,
    body: &[u8],
    principal: Option<agora_auth::Principal>,
) -> Result<Response, Refusal> {
    let media = Media::from_content_type(header_str(headers, header::CONTENT_TYPE))?;
    let call: sched::Call = decode(media, body).map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("failed to parse the body into a scheduler call: {e}"),
        )
    })?;
    let kind = sched::call::Type::try_from(call.r#type).unwrap_or(sched::call::Type::Unknown);
    if kind == sched::call::Type::Unknown {
        return Err(if call.r#type == 0 {
            Refusal(
                StatusCode::BAD_REQUEST,
                "failed to validate the scheduler call: expecting 'type' to be present".into(),
            )
        } else {
            Refusal(
                StatusCode::NOT_IMPLEMENTED,
                format!("call type {} is not supported by this master", call.r#type),
            )
        });
    }
    let stream_id = header_str(headers, STREAM_ID_HEADER);
    if kind == sched::call::Type::Subscribe {
        let accept = Media::from_accept(header_str(headers, header::ACCEPT))?;
        if stream_id.is_some() {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "a SUBSCRIBE call must not carry the 'Mesos-Stream-Id' header".into(),
            ));
        }
        return subscribe(services, accept, call, principal).await;
    }
    let Some(stream_id) = stream_id else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "every call but SUBSCRIBE must carry the 'Mesos-Stream-Id' header of its subscription"
                .into(),
        ));
    };
    let commands = services
        .commands()
        .await
        .map_err(|s| unavailable(s.message()))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    commands
        .send(Command::Call {
            stream_id: stream_id.to_string(),
            call,
            principal,
            reply,
        })
        .await
        .map_err(|_| unavailable("the master is shutting down"))?;
    answer
        .await
        .map_err(|_| unavailable("the master is shutting down"))?
        .map_err(refusal)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn subscribe(
    services: &Services,
    accept: Media,
    call: sched::Call,
    principal: Option<agora_auth::Principal>,
) -> Result<Response, Refusal> {
    let stream_id = uuid::Uuid::new_v4().to_string();
    let events = services
        .open_subscription(stream_id.clone(), call, principal)
        .await
        .map_err(|e| match e {
            crate::services::SubscribeError::Refused(e) => refusal(e),
            crate::services::SubscribeError::Unavailable(why) => unavailable(why),
        })?;
    // Each event one record, each record one chunk: some clients split what
    // they receive on newlines, so a record never shares its chunk.
    let records = events.map(move |event| match event {
        Ok(event) => Ok::<_, std::io::Error>(recordio::frame(&encode(accept, &event))),
        Err(status) => Err(std::io::Error::other(status.message().to_string())),
    });
    let stream_header = HeaderValue::from_str(&stream_id)
        .map_err(|_| unavailable("cannot make a stream id header"))?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(accept.content_type()),
            ),
            (
                header::HeaderName::from_static(STREAM_ID_HEADER),
                stream_header,
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(records),
    )
        .into_response())
}
