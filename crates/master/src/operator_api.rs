//! Mesos' v1 operator API on the master, `POST /api/v1` (also
//! `/master/api/v1`): `agora.v1.master.Call` in JSON or protobuf.
//!
//! - Reads answer 200 with a `Response` in the media the `Accept` header
//!   asks for, from the published snapshot only (never the live books):
//!   GET_HEALTH, GET_FLAGS, GET_VERSION, GET_METRICS (the numbers of
//!   `/metrics/snapshot`), GET_LOGGING_LEVEL, GET_STATE, GET_AGENTS,
//!   GET_FRAMEWORKS, GET_EXECUTORS, GET_TASKS, GET_ROLES, GET_WEIGHTS,
//!   GET_MASTER, GET_QUOTA ([`reads`]).
//! - Changes go to the actor as the JSON operator endpoints' do
//!   (`Command::Operator`) and answer 200 with an empty body once they are
//!   in the registry (Mesos answers RESERVE and UNRESERVE 202; here every
//!   change is durable when answered, so all answer 200): UPDATE_WEIGHTS,
//!   UPDATE_QUOTA, SET_QUOTA and REMOVE_QUOTA (deprecated in Mesos),
//!   RESERVE_RESOURCES, UNRESERVE_RESOURCES, TEARDOWN, MARK_AGENT_GONE, and
//!   Agora's KILL_TASK ([`writes`]). Their refusals take the statuses of
//!   the JSON endpoints (`http::operator_failure_status`).
//! - SUBSCRIBE answers 200 with a chunked RecordIO stream, one record per
//!   chunk: SUBSCRIBED with the state, then every change as TASK_ADDED,
//!   TASK_UPDATED, AGENT_ADDED, AGENT_REMOVED, FRAMEWORK_ADDED,
//!   FRAMEWORK_UPDATED or FRAMEWORK_REMOVED, in order and none missed
//!   (`state/observe.rs` reports them where the books change; the actor
//!   registers a subscriber at the end of a turn and hands it the snapshot
//!   published then), and HEARTBEAT every 15 s. At most
//!   [`MAX_SUBSCRIBERS`] streams: a new one closes the oldest. A stream
//!   that takes nothing for two minutes while events wait is closed
//!   (`agora_net::outbox`).
//! - LIST_FILES and READ_FILE answer 404: the master has no files of its
//!   own to serve (Mesos' master serves its log); sandboxes are the agents'
//!   (their operator API, or the master's `/agents/{id}/files/*` relay).
//!   Every other call Mesos defines answers 501 by name.
//!
//! Framing as in the scheduler API (`scheduler_http.rs`): 400 without a
//! `Content-Type`, for a body that does not parse or a call that fails
//! validation; 415 for another `Content-Type`; 406 for an `Accept` that
//! allows neither type; plain-text refusals; the gRPC message size as the
//! body limit. Followers answer 307 to the leader (503 while none is
//! known) through `http::leader_only`.

use std::sync::Arc;

use agora_mesos_http::{Media, Refusal, decode, encode, recordio};
use agora_proto::v1::master::{Call, Event, Response as OpResponse, call, event, response};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::metrics::MasterMetrics;
use crate::protocol::{Command, Gate};
use crate::services::Services;
use crate::state::OperatorCall;

mod reads;
mod subscribers;
#[cfg(test)]
mod tests;
mod writes;

pub(crate) use subscribers::{MAX_SUBSCRIBERS, Subscribers};

/// How long after a read the snapshots keep carrying the operator view
/// (agents, frameworks, executors and tasks in this API's shapes), which
/// costs about as much to make as the rest of the snapshot: a master
/// nobody asks does not make it.
pub(crate) const VIEW_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The paths Mesos serves the API on (the second under its process id).
pub(crate) const PATHS: [&str; 2] = ["/api/v1", "/master/api/v1"];

#[derive(Clone)]
struct Api {
    services: Services,
    /// When this master's HTTP API started (wall-clock seconds): GET_MASTER's
    /// `start_time` and the base of `master/uptime_secs`.
    started: f64,
    /// This master's measurements, for GET_METRICS.
    metrics: Arc<MasterMetrics>,
}

pub(crate) fn router(services: Services, metrics: Arc<MasterMetrics>) -> Router {
    let gate = services.gate();
    let api = Api {
        services,
        started: crate::mesos_v0::wall_now(),
        metrics,
    };
    let mut router = Router::new();
    for path in PATHS {
        router = router.route(path, post(operator));
    }
    // A call is held to what one gRPC message may carry.
    agora_net::body_limit::limit_bodies(router, agora_net::MAX_MESSAGE_BYTES)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            gate,
            crate::http::leader_only,
        ))
}

fn bad_request(why: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, why.into())
}

fn unavailable(why: impl Into<String>) -> Refusal {
    Refusal(StatusCode::SERVICE_UNAVAILABLE, why.into())
}

async fn operator(
    State(api): State<Api>,
    caller: Option<axum::Extension<agora_auth::Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = crate::http::principal(caller);
    match handle(&api, &headers, &body, caller).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a call comes to: a response body, a change for the actor, a
/// stream, or a refusal made without looking at any state.
enum Plan {
    Read(call::Type),
    Change(OperatorCall),
    Subscribe,
}

/// Negotiates, decodes, validates and answers one call.
async fn handle(
    api: &Api,
    headers: &HeaderMap,
    body: &[u8],
    caller: Option<agora_auth::Principal>,
) -> Result<Response, Refusal> {
    let media = Media::from_content_type(header_str(headers, header::CONTENT_TYPE))?;
    let call: Call = decode(media, body)
        .map_err(|e| bad_request(format!("failed to parse the body into a master call: {e}")))?;
    let plan = plan(call)?;
    let accept = Media::from_accept(header_str(headers, header::ACCEPT))?;
    match plan {
        Plan::Read(kind) => {
            let snapshot = if reads::needs_view(kind) {
                api.services
                    .operator_snapshot()
                    .await
                    .map_err(unavailable)?
            } else {
                api.services.snapshot()
            };
            let elected = matches!(&*api.services.gate().borrow(), Gate::Leading { .. });
            let started = api.started;
            let metrics = api.metrics.clone();
            // GET_STATE and GET_TASKS copy and encode every task: off the
            // async workers, as every read that walks the cluster.
            Ok(crate::snapshot_body::answer_off_workers(move || {
                // Only what the caller may see (the ACLs' view_*).
                let snapshot = crate::authz_views::for_viewer(&snapshot, caller.as_ref());
                let context = reads::Context {
                    started,
                    uptime_secs: (crate::mesos_v0::wall_now() - started).max(0.0),
                    elected,
                    metrics: &metrics,
                };
                let answer = reads::answer(kind, &snapshot, &context);
                body_response(accept, &answer)
            })
            .await)
        }
        Plan::Change(change) => {
            ask(&api.services, caller, change).await?;
            Ok(StatusCode::OK.into_response())
        }
        Plan::Subscribe => subscribe(&api.services, accept, caller).await,
    }
}

/// Validates a call and says what answers it.
fn plan(call: Call) -> Result<Plan, Refusal> {
    if call.r#type == call::Type::Unknown as i32 {
        return Err(bad_request(
            "failed to validate the master call: expecting 'type' to be present",
        ));
    }
    let Ok(kind) = call::Type::try_from(call.r#type) else {
        return Err(Refusal(
            StatusCode::NOT_IMPLEMENTED,
            format!("call type {} is not supported by this master", call.r#type),
        ));
    };
    use call::Type as T;
    match kind {
        T::GetHealth
        | T::GetFlags
        | T::GetVersion
        | T::GetMetrics
        | T::GetLoggingLevel
        | T::GetState
        | T::GetAgents
        | T::GetFrameworks
        | T::GetExecutors
        | T::GetTasks
        | T::GetRoles
        | T::GetWeights
        | T::GetMaster
        | T::GetQuota => Ok(Plan::Read(kind)),
        T::Subscribe => Ok(Plan::Subscribe),
        T::UpdateWeights
        | T::UpdateQuota
        | T::SetQuota
        | T::RemoveQuota
        | T::ReserveResources
        | T::UnreserveResources
        | T::Teardown
        | T::MarkAgentGone
        | T::KillTask => writes::change(kind, call)
            .map(Plan::Change)
            .map_err(|why| bad_request(format!("failed to validate the master call: {why}"))),
        T::ListFiles | T::ReadFile => Err(Refusal(
            StatusCode::NOT_FOUND,
            "the master keeps no files to list or read: task sandboxes are on the agents; use \
             the agent's operator API (POST /api/v1 on the agent) or this master's \
             /agents/{agent_id}/files/ relay"
                .into(),
        )),
        other => Err(Refusal(
            StatusCode::NOT_IMPLEMENTED,
            format!("{} is not supported by this master", other.as_str_name()),
        )),
    }
}

fn body_response(accept: Media, answer: &OpResponse) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(accept.content_type()),
        )],
        encode(accept, answer),
    )
        .into_response()
}

/// Sends a change to the actor and waits until it is in the registry.
async fn ask(
    services: &Services,
    caller: Option<agora_auth::Principal>,
    change: OperatorCall,
) -> Result<(), Refusal> {
    let commands = services
        .commands()
        .await
        .map_err(|s| unavailable(s.message()))?;
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::Operator {
            call: change,
            caller,
            reply,
        })
        .await
        .map_err(|_| unavailable("the master is shutting down"))?;
    match answer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(failure)) => {
            let (status, message) = crate::http::operator_failure_status(failure);
            Err(Refusal(status, message))
        }
        Err(_) => Err(unavailable("the master is shutting down")),
    }
}

/// The SUBSCRIBED event a stream starts with.
fn subscribed(state: response::GetState, heartbeat_secs: f64) -> Event {
    Event {
        r#type: event::Type::Subscribed as i32,
        subscribed: Some(event::Subscribed {
            get_state: Some(state),
            heartbeat_interval_seconds: Some(heartbeat_secs),
        }),
        ..Default::default()
    }
}

async fn subscribe(
    services: &Services,
    accept: Media,
    caller: Option<agora_auth::Principal>,
) -> Result<Response, Refusal> {
    let (snapshot, events) = services.open_operator_stream().await.map_err(unavailable)?;
    // What the caller may see (the ACLs' view_*): the state it starts
    // from, and each event after it.
    let mut filter = crate::authz_views::EventFilter::new(&snapshot, caller.clone());
    let snapshot = crate::authz_views::for_viewer(&snapshot, caller.as_ref());
    let events = events.filter(move |event| {
        let shown = match (&mut filter, event) {
            (Some(filter), Ok(event)) => filter.shows(event),
            _ => true,
        };
        std::future::ready(shown)
    });
    let heartbeat_secs = services.heartbeat().as_secs_f64();
    // The whole state in one record: encoded off the async workers (a big
    // cluster's takes a while).
    let first = tokio::task::spawn_blocking(move || {
        // The actor makes the view whenever operators subscribe.
        let state = snapshot
            .operator
            .as_ref()
            .map(|view| view.state.clone())
            .unwrap_or_default();
        let event = subscribed(state, heartbeat_secs);
        recordio::frame(&encode(accept, &event))
    })
    .await
    .map_err(|e| {
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the state could not be encoded: {e}"),
        )
    })?;
    // Each event one record, each record one chunk (see `scheduler_http`).
    let records = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
        events.map(move |event| match event {
            Ok(event) => Ok(recordio::frame(&encode(accept, event.as_ref()))),
            Err(status) => Err(std::io::Error::other(status.message().to_string())),
        }),
    );
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(accept.content_type()),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(records),
    )
        .into_response())
}
