//! The master's HTTP API on the gRPC port: `/health`, `/version`, `/state`,
//! `/metrics`, the web UI (`/`, its assets under `/ui/`, and its JSON under
//! `/api/`, see [`crate::ui_api`]), which read the published snapshot only;
//! and the operator endpoints (`/roles`, `/weights`,
//! `/quota`, `/reserve`, `/unreserve`), leader only, whose changes go to the
//! actor through its command channel like gRPC calls.
//!
//! Operator endpoints answer JSON; refusals are `{"error": "..."}` with 400
//! (malformed or invalid), 404 (unknown agent, role without quota), 409
//! (refused in the current state: over a limit without `force`, resources
//! not free), 507 (what it would store is larger than the registry accepts;
//! nothing changed) or 503 (not serving, or the change could not be made
//! durable: then this master steps down and the change is not kept). A 200
//! means the change is in the registry. Request bodies are limited to 2 MB.

use std::sync::Arc;

use std::collections::BTreeMap;

use agora_allocator::Quota;
use agora_auth::{Caller, Principal};
use agora_core::Resources;
use agora_net::cross_site::json_only;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use tokio::sync::{oneshot, watch};

use crate::metrics::MasterMetrics;
use crate::protocol::{Command, Gate, OperatorFailure};
use crate::snapshot::StateSnapshot;
use crate::snapshot::state_body::{self, ChunkCache, Rope};
use crate::snapshot_body::SnapshotBody;
use crate::snapshot_body::gzip::Segments;
use crate::state::{OperatorCall, OperatorError};

type Snapshot = watch::Receiver<Arc<StateSnapshot>>;
/// `/state`'s body: a rope, and the chunk JSON kept for the next one.
type StateBody = SnapshotBody<Rope, ChunkCache>;
/// `/state`'s gzip: a rope, and its pieces' segments kept for the next.
type StateGzip = SnapshotBody<Rope, Segments>;
type GateRx = watch::Receiver<Gate>;

#[derive(Clone)]
struct AppState {
    snapshot: Snapshot,
    gate: GateRx,
    state_body: StateBody,
    state_gzip: StateGzip,
}

impl FromRef<AppState> for StateBody {
    fn from_ref(state: &AppState) -> Self {
        state.state_body.clone()
    }
}

impl FromRef<AppState> for StateGzip {
    fn from_ref(state: &AppState) -> Self {
        state.state_gzip.clone()
    }
}

impl FromRef<AppState> for Snapshot {
    fn from_ref(state: &AppState) -> Self {
        state.snapshot.clone()
    }
}

impl FromRef<AppState> for GateRx {
    fn from_ref(state: &AppState) -> Self {
        state.gate.clone()
    }
}

/// Paths a master serves whether or not it leads; everything else is for
/// the leader only.
const ANY_MASTER: [&str; 3] = ["/health", "/state", "/metrics"];

pub(crate) fn router(
    snapshot: Snapshot,
    gate: watch::Receiver<Gate>,
    metrics: Arc<MasterMetrics>,
    utilisation: crate::ui_api::UtilisationSamples,
) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/state", get(state))
        .route("/roles", get(roles))
        // Agora's JSON endpoints take JSON bodies only: a browser cannot
        // send one to another origin without a preflight (never granted).
        .route(
            "/weights",
            get(get_weights).put(put_weights).layer(from_fn(json_only)),
        )
        .route(
            "/quota",
            get(get_quota).post(post_quota).layer(from_fn(json_only)),
        )
        .route("/quota/{*role}", delete(delete_quota))
        .route("/reserve", post(reserve).layer(from_fn(json_only)))
        .route("/unreserve", post(unreserve).layer(from_fn(json_only)))
        .route("/master/teardown", post(teardown))
        .route("/teardown", post(teardown))
        .merge(test_faults())
        .fallback(not_found)
        .with_state(AppState {
            snapshot: snapshot.clone(),
            gate: gate.clone(),
            state_body: StateBody::default(),
            state_gzip: StateGzip::default(),
        })
        .merge(crate::metrics::router(
            snapshot.clone(),
            gate.clone(),
            metrics.clone(),
        ))
        .merge(crate::files_proxy::router(snapshot.clone()))
        .merge(crate::ui_api::router(snapshot.clone(), utilisation))
        .merge(crate::mesos_v0::router(snapshot, gate.clone(), metrics))
        .merge(agora_webui::router())
        .layer(axum::middleware::from_fn_with_state(gate, leader_only))
}

/// A master that does not lead sends users to the leader: 307 with a
/// protocol-relative `Location: //leader:port/path` (Mesos' form), or 503
/// while no leader is known.
pub(crate) async fn leader_only(
    State(gate): State<watch::Receiver<Gate>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if ANY_MASTER.contains(&path)
        || crate::ui_api::ANY_MASTER.contains(&path)
        || crate::mesos_v0::ANY_MASTER.contains(&path)
        || path.starts_with(agora_webui::ASSETS_PREFIX)
        || path.starts_with("/agora.v1.")
    {
        return next.run(request).await;
    }
    let leader = match &*gate.borrow() {
        Gate::Leading { .. } => None,
        Gate::Following {
            leader: Some(leader),
        } => Some(Ok(leader.clone())),
        Gate::Following { leader: None } | Gate::Recovering => Some(Err(())),
    };
    match leader {
        None => next.run(request).await,
        // The UI's page itself, on a follower: to the leader's UI, with a
        // page saying why for anything that does not follow redirects.
        Some(Ok(leader)) if path == "/" => follower_page(&leader),
        // No leader known yet: the UI says so and waits for one.
        Some(Err(())) if path == "/" => next.run(request).await,
        Some(Ok(leader)) => {
            let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("//{leader}{target}"))],
                format!("not the leading master; the leader is {leader}\n"),
            )
                .into_response()
        }
        Some(Err(())) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leading master is elected yet, or it is still recovering\n",
        )
            .into_response(),
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "no such endpoint\n")
}

async fn health() -> &'static str {
    "ok\n"
}

/// The full state as JSON, serialized once per published snapshot, whoever
/// polls; in gzip to a client that takes it (as Mesos answers), compressed
/// once per snapshot too, from the pieces that changed.
async fn state(
    State(snapshot): State<Snapshot>,
    State(cache): State<StateBody>,
    State(gzip_cache): State<StateGzip>,
    viewer: crate::authz_views::Viewer,
    headers: HeaderMap,
) -> Response {
    let current = snapshot.borrow().clone();
    // Shared by every poller unless the ACLs hide something from someone.
    let plain = match viewer.body(current.clone(), &cache, state_body::make).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    viewer
        .send_rope(current, plain, &gzip_cache, &headers)
        .await
}

// ---------------------------------------------------------------------------
// Operator endpoints
// ---------------------------------------------------------------------------

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// An operator call's failure as an HTTP status and message: the one
/// place this mapping is made, for these endpoints (JSON bodies) and the
/// v1 operator API (`crate::operator_api`, plain text).
pub(crate) fn operator_failure_status(failure: OperatorFailure) -> (StatusCode, String) {
    match failure {
        OperatorFailure::Refused(e) => {
            let status = match &e {
                OperatorError::Invalid(_) => StatusCode::BAD_REQUEST,
                OperatorError::NotFound(_) => StatusCode::NOT_FOUND,
                OperatorError::Conflict(_) => StatusCode::CONFLICT,
                OperatorError::Forbidden(_) => StatusCode::FORBIDDEN,
            };
            (status, e.to_string())
        }
        OperatorFailure::TooLarge(why) => (StatusCode::INSUFFICIENT_STORAGE, why),
        OperatorFailure::NotDurable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the change could not be written to the registry and is not kept ({why}); this master steps down, retry with the next leader"
            ),
        ),
    }
}

fn operator_failure(failure: OperatorFailure) -> Response {
    let (status, message) = operator_failure_status(failure);
    error_response(status, message)
}

/// A request the master cannot make sense of: 400 with its reason.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error_response(StatusCode::BAD_REQUEST, self.0)
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| {
        BadRequest(format!(
            "request body is not valid JSON for this endpoint: {e}"
        ))
    })
}

/// Who made a request, as the authentication layer found it (None:
/// anonymous, or authentication is off).
pub(crate) fn principal(caller: Option<Extension<Caller>>) -> Option<Principal> {
    caller.and_then(|Extension(caller)| caller.0)
}

/// Sends an operator call to the actor and waits for its answer.
async fn ask(gate: &GateRx, caller: Option<Principal>, call: OperatorCall) -> Response {
    let commands = match &*gate.borrow() {
        Gate::Leading { commands } => commands.clone(),
        _ => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "this master is not serving as the leader",
            );
        }
    };
    let (reply, answer) = oneshot::channel();
    if commands
        .send(Command::Operator {
            call,
            caller,
            reply,
        })
        .await
        .is_err()
    {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "master is shutting down");
    }
    match answer.await {
        Ok(Ok(())) => (StatusCode::OK, Json(serde_json::json!({}))).into_response(),
        Ok(Err(failure)) => operator_failure(failure),
        Err(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, "master is shutting down"),
    }
}

/// The environment variable that turns on test faults, in debug builds only.
pub const TEST_FAULTS_ENV: &str = "AGORA_TEST_FAULTS";

/// Test faults: `POST /test/actor-panic` makes the leading master's actor
/// panic, as a bug would. Served only by debug builds started with
/// `AGORA_TEST_FAULTS=1`: a release build has no such route whatever its
/// environment, so nobody outside a test can trigger it.
fn test_faults() -> Router<AppState> {
    let enabled = cfg!(debug_assertions) && std::env::var(TEST_FAULTS_ENV).is_ok_and(|v| v == "1");
    if !enabled {
        return Router::new();
    }
    tracing::warn!("test faults are enabled ({TEST_FAULTS_ENV}=1); never in production");
    Router::new().route("/test/actor-panic", post(actor_panic))
}

async fn actor_panic(State(gate): State<GateRx>) -> Response {
    let commands = match &*gate.borrow() {
        Gate::Leading { commands } => commands.clone(),
        _ => return error_response(StatusCode::SERVICE_UNAVAILABLE, "not leading"),
    };
    match commands.send(Command::Fault).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(serde_json::json!({}))).into_response(),
        Err(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, "master is shutting down"),
    }
}

/// `GET /roles`: `{"roles": [RoleView...]}`.
async fn roles(State(snapshot): State<Snapshot>, viewer: crate::authz_views::Viewer) -> Response {
    viewer
        .answer(&snapshot, |current| {
            Json(serde_json::json!({ "roles": current.roles })).into_response()
        })
        .await
}

/// `GET /weights`: `[{"role": "eng", "weight": 3.0}]`, every role whose
/// weight was set (others weigh 1).
async fn get_weights(
    State(snapshot): State<Snapshot>,
    viewer: crate::authz_views::Viewer,
) -> Response {
    viewer
        .answer(&snapshot, |current| Json(&current.weights).into_response())
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    role: String,
    weight: f64,
}

/// `PUT /weights` with `[{"role": "eng", "weight": 3.0}, ...]`: all or nothing.
async fn put_weights(
    State(gate): State<GateRx>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    let weights: Vec<WeightBody> = match parse_body(&body) {
        Ok(w) => w,
        Err(bad) => return bad.into_response(),
    };
    let weights = weights.into_iter().map(|w| (w.role, w.weight)).collect();
    ask(&gate, principal(caller), OperatorCall::SetWeights(weights)).await
}

/// `GET /quota`: `{"quotas": [QuotaView...]}`.
async fn get_quota(
    State(snapshot): State<Snapshot>,
    viewer: crate::authz_views::Viewer,
) -> Response {
    viewer
        .answer(&snapshot, |current| {
            Json(serde_json::json!({ "quotas": current.quotas })).into_response()
        })
        .await
}

/// Resources in a request: the text form (`"cpus:4;mem:1024"`) or a map of
/// scalar names to numbers (`{"cpus": 4, "mem": 1024}`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ResourcesBody {
    Text(String),
    Map(BTreeMap<String, f64>),
}

impl ResourcesBody {
    fn parse(&self, what: &str) -> Result<Resources, BadRequest> {
        let text = match self {
            ResourcesBody::Text(text) => text.clone(),
            ResourcesBody::Map(map) => {
                let mut parts = Vec::new();
                for (name, value) in map {
                    if !value.is_finite() || *value < 0.0 {
                        return Err(BadRequest(format!(
                            "{what}: '{name}' must be a finite number >= 0"
                        )));
                    }
                    parts.push(format!("{name}:{value}"));
                }
                parts.join(";")
            }
        };
        Resources::parse_input(&text).map_err(|e| BadRequest(format!("{what}: {e}")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaRequest {
    role: String,
    #[serde(default)]
    guarantee: Option<ResourcesBody>,
    #[serde(default)]
    limit: Option<ResourcesBody>,
    #[serde(default)]
    force: bool,
}

/// `POST /quota` with `{"role": "eng", "guarantee": {"cpus": 2}, "limit":
/// "cpus:8;mem:4096", "force": false}`: sets the role's quota (replacing
/// the one it had). A name absent from `limit` is unlimited.
async fn post_quota(
    State(gate): State<GateRx>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    match quota_call(&body) {
        Ok(call) => ask(&gate, principal(caller), call).await,
        Err(bad) => bad.into_response(),
    }
}

fn quota_call(body: &Bytes) -> Result<OperatorCall, BadRequest> {
    let request: QuotaRequest = parse_body(body)?;
    let parse = |body: &Option<ResourcesBody>, what| match body {
        Some(body) => body.parse(what),
        None => Ok(Resources::new()),
    };
    let guarantee = parse(&request.guarantee, "guarantee")?;
    let limit = parse(&request.limit, "limit")?;
    Ok(OperatorCall::UpdateQuotas {
        quotas: vec![(request.role, Quota { guarantee, limit })],
        force: request.force,
    })
}

/// `DELETE /quota/{role}` (the role may hold `/`): 404 if it has none.
async fn delete_quota(
    State(gate): State<GateRx>,
    caller: Option<Extension<Caller>>,
    Path(role): Path<String>,
) -> Response {
    ask(&gate, principal(caller), OperatorCall::RemoveQuota(role)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveRequest {
    agent_id: String,
    /// Text form with roles: `cpus(ops):2;mem(ops):512`.
    resources: String,
}

fn reserve_call(body: &Bytes, reserve: bool) -> Result<OperatorCall, BadRequest> {
    let request: ReserveRequest = parse_body(body)?;
    let resources = Resources::parse_input(&request.resources)
        .map_err(|e| BadRequest(format!("resources: {e}")))?;
    Ok(if reserve {
        OperatorCall::Reserve {
            agent_id: request.agent_id,
            resources,
        }
    } else {
        OperatorCall::Unreserve {
            agent_id: request.agent_id,
            resources,
        }
    })
}

/// `POST /reserve` with `{"agent_id": "...", "resources": "cpus(ops):2;mem(ops):512"}`.
async fn reserve(
    State(gate): State<GateRx>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    match reserve_call(&body, true) {
        Ok(call) => ask(&gate, principal(caller), call).await,
        Err(bad) => bad.into_response(),
    }
}

/// `POST /unreserve`, same body as `/reserve`.
async fn unreserve(
    State(gate): State<GateRx>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    match reserve_call(&body, false) {
        Ok(call) => ask(&gate, principal(caller), call).await,
        Err(bad) => bad.into_response(),
    }
}

/// Mesos' `/master/teardown` form body.
#[derive(Deserialize)]
struct TeardownForm {
    #[serde(rename = "frameworkId")]
    framework_id: String,
}

/// `POST /master/teardown` with the form body `frameworkId=<id>` (Mesos'
/// endpoint): the framework is removed and its tasks killed, as by the
/// operator API's TEARDOWN.
async fn teardown(
    State(gate): State<GateRx>,
    caller: Option<Extension<Caller>>,
    form: Result<axum::Form<TeardownForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(axum::Form(form)) => {
            let call = OperatorCall::Teardown {
                framework_id: form.framework_id,
            };
            ask(&gate, principal(caller), call).await
        }
        Err(e) => error_response(
            StatusCode::BAD_REQUEST,
            format!("expecting a form body with 'frameworkId': {e}"),
        ),
    }
}

/// What `/` answers on a follower: 307 to the leader's UI, with a page
/// that says so and links there.
fn follower_page(leader: &str) -> Response {
    let leader = escape(leader);
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Agora: not the leader</title>\
         </head><body style=\"font-family:sans-serif;margin:3em\"><h1>Not the leading master</h1>\
         <p>This master is a follower. The leading master is \
         <a href=\"//{leader}/\">{leader}</a>.</p></body></html>"
    );
    (
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, format!("//{leader}/")),
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
        ],
        body,
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod mesos_v0_tests;
#[cfg(test)]
mod state_gzip_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    /// The status and the body's frames, as sent.
    async fn get_state(app: &Router) -> (StatusCode, Vec<Bytes>) {
        use futures::StreamExt as _;
        let response = app
            .clone()
            .oneshot(Request::get("/state").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let frames = response
            .into_body()
            .into_data_stream()
            .map(|frame| frame.expect("body"))
            .collect()
            .await;
        (status, frames)
    }

    fn snapshot_named(hostname: &str) -> Arc<StateSnapshot> {
        Arc::new(StateSnapshot {
            hostname: long_name(hostname),
            ..StateSnapshot::default()
        })
    }

    /// `name` made long enough that the piece of a body holding it is
    /// sent as it is.
    fn long_name(name: &str) -> String {
        format!("{name}{}", "x".repeat(crate::snapshot_body::SMALL_PIECE))
    }

    #[tokio::test]
    async fn state_is_serialized_once_per_snapshot_and_follows_new_ones() {
        let (publish, snapshot) = watch::channel(snapshot_named("first"));
        let (_gate_tx, gate) = watch::channel(Gate::Following { leader: None });
        let app = router(snapshot, gate, Default::default(), Default::default());

        let (status, first) = get_state(&app).await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&first.concat()).expect("json");
        assert_eq!(json["hostname"], long_name("first"));
        let (_, again) = get_state(&app).await;
        // The same allocations: served from the cache, not serialized
        // again (long pieces go out as they are; short ones are copied
        // together into frames).
        let addresses = crate::snapshot_body::long_frame_addresses;
        assert!(!addresses(&first).is_empty(), "a long piece");
        assert_eq!(addresses(&first), addresses(&again));

        publish.send_replace(snapshot_named("second"));
        let (status, second) = get_state(&app).await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(addresses(&first), addresses(&second));
        let json: serde_json::Value = serde_json::from_slice(&second.concat()).expect("json");
        assert_eq!(json["hostname"], long_name("second"));
    }
}
