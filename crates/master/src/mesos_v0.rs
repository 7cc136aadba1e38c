//! Mesos' read endpoints in Mesos' JSON shapes, so that dashboards,
//! exporters and scripts written for a Mesos master work against Agora:
//! `/master/state` (also `/master/state.json` and `/state.json`; Agora's own
//! `/state` keeps its shape), `/master/state-summary`, `/master/frameworks`,
//! `/master/slaves`, `/master/tasks`, `/master/roles` (and the un-prefixed
//! forms that do not clash with Agora's routes), `/master/redirect`,
//! `/master/health`, `/version` and `/master/version`, and
//! `/metrics/snapshot`.
//!
//! Everything is computed from the published [`StateSnapshot`], never from
//! the live master. The bodies of Mesos' `/state`, `/frameworks` and `/slaves`
//! (whole) are serialized once per snapshot, by the same cache as Agora's
//! `/state` (`snapshot_body::SnapshotBody`), from the chunks that changed
//! since the last ([`state_body`]). Every JSON
//! endpoint takes `?jsonp=<callback>` ([`agora_net::jsonp`]).
//!
//! What Agora cannot know is left out rather than made up (git and build
//! details, a task's status history beyond its latest status, executors'
//! commands); [`shapes`] says what each shape lacks.
//!
//! As in Mesos, a follower redirects the state endpoints to the leader (the
//! `leader_only` layer in `http.rs`); [`ANY_MASTER`] lists what every master
//! answers itself: `/metrics/snapshot` (a follower's says
//! `master/elected: 0`), `/redirect`, `/health` and `/version`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use crate::authz_views::Viewer;
use crate::metrics::MasterMetrics;
use crate::protocol::Gate;
use crate::snapshot::StateSnapshot;
use crate::snapshot::state_body::Rope;
use crate::snapshot_body::gzip::Segments;
use crate::snapshot_body::{SnapshotBody, answer_off_workers};

mod metrics;
pub mod shapes;
pub mod state_body;
#[cfg(test)]
pub(crate) mod tests;

pub use metrics::metrics_snapshot;
pub use shapes::{TaskOrder, TasksQuery};

pub use crate::state::MESOS_VERSION;

/// Tasks `/master/tasks` returns when no `limit` is given (Mesos' default).
pub const DEFAULT_TASK_LIMIT: usize = 100;

/// Paths here that every master answers itself, leading or not.
pub(crate) const ANY_MASTER: [&str; 6] = [
    "/metrics/snapshot",
    "/master/redirect",
    "/redirect",
    "/master/health",
    "/version",
    "/master/version",
];

type Snapshot = watch::Receiver<Arc<StateSnapshot>>;

/// A request's query parameters; one that does not parse is answered 400.
struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| Params(query))
            .map_err(|e| bad_request(format!("invalid query: {e}")))
    }
}

#[derive(Clone)]
struct MesosState {
    snapshot: Snapshot,
    gate: watch::Receiver<Gate>,
    state_body: SnapshotBody<Rope, state_body::ChunkCache>,
    /// `state_body`'s gzip, for the clients that take it: made once per
    /// snapshot too, not per request, from the pieces that changed.
    state_gzip: SnapshotBody<Rope, Segments>,
    /// `/master/frameworks` (every framework) and its gzip, the same way.
    frameworks_body: SnapshotBody<Rope, state_body::ChunkCache>,
    frameworks_gzip: SnapshotBody<Rope, Segments>,
    /// `/master/slaves` (every agent) and its gzip, the same way.
    slaves_body: SnapshotBody<Rope, state_body::ChunkCache>,
    slaves_gzip: SnapshotBody<Rope, Segments>,
    /// When this master's HTTP API started (wall-clock seconds): Mesos'
    /// `start_time` and the base of `master/uptime_secs`.
    started: f64,
    metrics: Arc<MasterMetrics>,
}

pub(crate) fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The Mesos-shaped routes, for the master's HTTP router.
pub(crate) fn router(
    snapshot: Snapshot,
    gate: watch::Receiver<Gate>,
    metrics: Arc<MasterMetrics>,
) -> Router {
    let state = MesosState {
        snapshot,
        gate,
        state_body: SnapshotBody::default(),
        state_gzip: SnapshotBody::default(),
        frameworks_body: SnapshotBody::default(),
        frameworks_gzip: SnapshotBody::default(),
        slaves_body: SnapshotBody::default(),
        slaves_gzip: SnapshotBody::default(),
        started: wall_now(),
        metrics,
    };
    let mut router = Router::new();
    for path in ["/master/state", "/master/state.json", "/state.json"] {
        router = router.route(path, get(state_handler));
    }
    let listings = [
        (
            "/master/state-summary",
            Some("/state-summary"),
            get(state_summary),
        ),
        ("/master/frameworks", Some("/frameworks"), get(frameworks)),
        ("/master/slaves", Some("/slaves"), get(slaves)),
        ("/master/tasks", Some("/tasks"), get(tasks)),
        // Agora's `/roles` has its own shape.
        ("/master/roles", None, get(roles)),
    ];
    for (prefixed, plain, handler) in listings {
        router = router.route(prefixed, handler.clone());
        if let Some(plain) = plain {
            router = router.route(plain, handler);
        }
    }
    router
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect))
        .route("/master/health", get(health))
        .route("/version", get(version))
        .route("/master/version", get(version))
        .route("/flags", get(flags))
        .route("/master/flags", get(flags))
        .route("/metrics/snapshot", get(metrics_snapshot_handler))
        .with_state(state)
}

/// A request the endpoint cannot make sense of: 400 with its reason, as
/// plain text as Mesos answers it.
fn bad_request(message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// `value` as JSON, as JSONP when the query asks for it.
fn reply(value: &impl Serialize, query: &HashMap<String, String>) -> Response {
    match serde_json::to_vec(value) {
        Ok(json) => agora_net::jsonp::respond(Bytes::from(json), jsonp(query)),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a mesos endpoint's body");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot serialize\n").into_response()
        }
    }
}

fn jsonp(query: &HashMap<String, String>) -> Option<&str> {
    query.get("jsonp").map(String::as_str)
}

/// The body of Mesos' `/master/state` for `snapshot` (public for the
/// snapshot benchmark, which times it at scale).
pub fn state_json(snapshot: &StateSnapshot, started: f64) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&shapes::state(
        snapshot,
        started,
        &mut shapes::SumCache::default(),
    ))
}

/// `/master/state`: Mesos' `/state`, made once per snapshot from the task
/// chunks that changed (`state_body`), and compressed once per snapshot
/// from the pieces that changed for the clients that take gzip (a JSONP
/// answer, wrapped per request, is left to the serving edge).
async fn state_handler(
    State(state): State<MesosState>,
    viewer: Viewer,
    Params(query): Params,
    headers: HeaderMap,
) -> Response {
    let current = state.snapshot.borrow().clone();
    let started = state.started;
    let body = match viewer
        .body(current.clone(), &state.state_body, move |s, cache| {
            state_body::make(s, started, cache)
        })
        .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    send_body(&viewer, current, body, &state.state_gzip, &query, &headers).await
}

/// A body made once per snapshot (`/master/state`, `/master/frameworks`),
/// as the request takes it: wrapped for JSONP, in gzip compressed once per
/// snapshot from the pieces that changed, or as it is.
async fn send_body(
    viewer: &Viewer,
    current: Arc<StateSnapshot>,
    body: Rope,
    gzip_cache: &SnapshotBody<Rope, Segments>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    if let Some(callback) = jsonp(query) {
        return agora_net::jsonp::respond(Bytes::from(body.to_vec()), Some(callback));
    }
    viewer.send_rope(current, body, gzip_cache, headers).await
}

// The list endpoints walk every task or agent per request: their bodies
// are made off the async workers (`Viewer::answer`, `answer_off_workers`).

async fn state_summary(
    State(state): State<MesosState>,
    viewer: Viewer,
    Params(query): Params,
) -> Response {
    viewer
        .answer(&state.snapshot, move |current| {
            reply(&shapes::state_summary(current), &query)
        })
        .await
}

/// `/master/frameworks`: every framework, made once per snapshot as
/// `/master/state` is; one framework's (`?framework_id=`) per request.
async fn frameworks(
    State(state): State<MesosState>,
    viewer: Viewer,
    Params(query): Params,
    headers: HeaderMap,
) -> Response {
    if let Some(wanted) = query.get("framework_id").cloned() {
        return viewer
            .answer(&state.snapshot, move |current| {
                let mut sums = shapes::SumCache::default();
                reply(
                    &shapes::frameworks(current, Some(&wanted), &mut sums),
                    &query,
                )
            })
            .await;
    }
    let current = state.snapshot.borrow().clone();
    let body = match viewer
        .body(
            current.clone(),
            &state.frameworks_body,
            state_body::make_frameworks,
        )
        .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    send_body(
        &viewer,
        current,
        body,
        &state.frameworks_gzip,
        &query,
        &headers,
    )
    .await
}

/// `/master/slaves`: every agent, made once per snapshot from the agent
/// chunks that changed, as `/master/state`'s agents are; one agent's
/// (`?slave_id=`) per request. Agents are not filtered by ACLs (Mesos
/// does not either); the viewer only picks the gzip cache.
async fn slaves(
    State(state): State<MesosState>,
    viewer: Viewer,
    Params(query): Params,
    headers: HeaderMap,
) -> Response {
    let current = state.snapshot.borrow().clone();
    if let Some(wanted) = query.get("slave_id").cloned() {
        return answer_off_workers(move || reply(&shapes::slaves(&current, Some(&wanted)), &query))
            .await;
    }
    let body = match state
        .slaves_body
        .get(current.clone(), state_body::make_slaves)
        .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    send_body(&viewer, current, body, &state.slaves_gzip, &query, &headers).await
}

async fn tasks(State(state): State<MesosState>, viewer: Viewer, Params(query): Params) -> Response {
    let tasks_query = match TasksQuery::parse(&query) {
        Ok(parsed) => parsed,
        Err(why) => return bad_request(why),
    };
    viewer
        .answer(&state.snapshot, move |current| {
            reply(&shapes::tasks(current, &tasks_query), &query)
        })
        .await
}

async fn roles(State(state): State<MesosState>, viewer: Viewer, Params(query): Params) -> Response {
    viewer
        .answer(&state.snapshot, move |current| {
            reply(&shapes::roles(current), &query)
        })
        .await
}

/// `/master/redirect`: 307 to the leading master (`//host:port`, Mesos'
/// protocol-relative form), this master itself when it leads; 503 while
/// no leader is known.
async fn redirect(State(state): State<MesosState>) -> Response {
    let leader = state.snapshot.borrow().leader.clone();
    if leader.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leading master is elected yet\n",
        )
            .into_response();
    }
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, format!("//{leader}"))],
    )
        .into_response()
}

/// Mesos' `/master/health`: 200 with an empty body while the process serves.
async fn health() -> StatusCode {
    StatusCode::OK
}

/// `/version`: Mesos' API level as `version`, Agora's own release as
/// `agora_version`, and Mesos' build fields (Agora records no build
/// details: they are empty). `build` is Agora's older field, kept.
pub fn version_body() -> serde_json::Value {
    serde_json::json!({
        "version": MESOS_VERSION,
        "agora_version": env!("CARGO_PKG_VERSION"),
        "build": "agora",
        "build_date": "",
        "build_time": 0.0,
        "build_user": "",
    })
}

async fn version(Params(query): Params) -> Response {
    reply(&version_body(), &query)
}

/// `/flags`: this master's settings under Mesos' flag names, the same as
/// GET_FLAGS and `/master/state`'s `flags` (whoever may read those may read
/// these; a standby answers with its own).
async fn flags(State(state): State<MesosState>, Params(query): Params) -> Response {
    let flags = state.snapshot.borrow().mesos.flags.clone();
    reply(&serde_json::json!({ "flags": flags }), &query)
}

/// `/metrics/snapshot`: Mesos' flat metrics object. `master/elected` comes
/// from this master's gate, as `/metrics`' `agora_master_is_leader` does.
async fn metrics_snapshot_handler(
    State(state): State<MesosState>,
    Params(query): Params,
) -> Response {
    // Mesos waits up to `timeout` for its metrics; Agora's are at hand, so
    // the answer is always whole. A timeout that is no duration is refused
    // as Mesos refuses it.
    if let Some(timeout) = query.get("timeout")
        && let Err(why) = agora_core::time::parse_mesos_duration(timeout)
    {
        return bad_request(format!("Invalid timeout '{timeout}': {why}"));
    }
    let current = state.snapshot.borrow().clone();
    let elected = matches!(&*state.gate.borrow(), Gate::Leading { .. });
    let uptime = (wall_now() - state.started).max(0.0);
    let metrics = state.metrics.clone();
    // It sums over every agent.
    answer_off_workers(move || {
        let values = metrics_snapshot(&current, &metrics, elected, uptime);
        reply(&values, &query)
    })
    .await
}
