//! The JSON the web UI reads, under `/api/`: computed from the published
//! [`StateSnapshot`] only, never from the live master, so that a UI left
//! open on a big cluster cannot slow allocation.
//!
//! Lists (`/api/tasks`, `/api/agents`, `/api/frameworks`, `/api/offers`)
//! are paged on the server: `offset` (default 0) and `limit` (default 100,
//! capped at [`MAX_LIMIT`]) with the `total` that matched, so a browser
//! never receives a whole 100k-task list. They are sorted before paging:
//! `sort=<column>` or `sort=-<column>` (descending), each list with a
//! default order (see [`lists`]). A query parameter that is unknown or does
//! not parse answers 400 with `{"error": "..."}`.
//!
//! Routes here are leader-only (a follower redirects them), except
//! `/api/master`, which every master answers so that a page can find out
//! that it talks to a follower and move to the leader.

use crate::authz_views::Viewer;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use crate::snapshot::StateSnapshot;

mod lists;
mod newest;
mod permissions;
mod shapes;
mod sort;
mod views;
use lists::{agent_page, framework_page, offer_page, task_page};
use shapes::Sample;
use views::{
    agent_detail, framework_detail, master_info, overview_json, role_rows, task_detail, usage,
};

type Snapshot = watch::Receiver<Arc<StateSnapshot>>;

/// The most items one page of a list may hold.
pub(crate) const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 100;
/// How often the utilisation chart gets a sample, and how many it keeps (1 h).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const SAMPLES_KEPT: usize = 360;

/// Paths under `/api/` that a follower answers itself.
pub(crate) const ANY_MASTER: [&str; 1] = ["/api/master"];

#[derive(Clone)]
struct UiState {
    snapshot: Snapshot,
    samples: UtilisationSamples,
}

/// The utilisation chart's samples (the last hour's): taken by
/// [`sample_utilisation`], which the master runs beside its server, and
/// read by `/api/utilisation`.
#[derive(Clone, Default)]
pub struct UtilisationSamples(Arc<Mutex<VecDeque<Sample>>>);

/// The UI's JSON routes (building them starts nothing).
pub fn router(snapshot: Snapshot, samples: UtilisationSamples) -> Router {
    Router::new()
        .route("/api/master", get(master))
        .route("/api/overview", get(overview))
        .route("/api/utilisation", get(utilisation))
        .route("/api/agents", get(agents))
        .route("/api/agents/{agent_id}", get(agent))
        .route("/api/frameworks", get(frameworks))
        .route("/api/frameworks/{framework_id}", get(framework))
        .route("/api/tasks", get(tasks))
        .route("/api/tasks/{framework_id}/{task_id}", get(task))
        .route("/api/roles", get(roles))
        .route("/api/offers", get(offers))
        .route("/api/permissions", get(permissions::handler))
        .with_state(UiState { snapshot, samples })
        .layer(axum::middleware::map_response(api_headers))
}

/// Answers are live data. They carry no `Access-Control-Allow-Origin`: a
/// page on another origin must not read the cluster through an operator's
/// browser (a follower's page moves the browser to the leader instead).
async fn api_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Samples utilisation every 10 s (`SAMPLE_EVERY`) while this master leads,
/// into `samples`; ends when the snapshot's sender is gone.
pub async fn sample_utilisation(mut snapshot: Snapshot, samples: UtilisationSamples) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if snapshot.has_changed().is_err() {
            return; // the master is gone
        }
        let current = snapshot.borrow_and_update().clone();
        if !current.elected {
            // A follower keeps no samples; the first comes as soon as it leads.
            if snapshot.changed().await.is_err() {
                return;
            }
            tick.reset_immediately();
            continue;
        }
        let sample = Sample {
            time: wall_now(),
            resources: usage(&current),
        };
        let mut kept = samples.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == SAMPLES_KEPT {
            kept.pop_front();
        }
        kept.push_back(sample);
    }
}

fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// Query parameters
// ---------------------------------------------------------------------------

/// A refusal: 400 (bad parameters) or 404 (no such object), as JSON.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type Params = Result<Query<BTreeMap<String, String>>, QueryRejection>;

/// A list's filters and page, parsed and checked against what it allows.
#[derive(Debug, Default)]
struct ListQuery {
    offset: usize,
    limit: usize,
    /// `column` or `-column`, checked by the list (see [`sort::order`]).
    sort: Option<String>,
    filters: BTreeMap<String, String>,
}

fn list_query(params: Params, allowed: &[&str]) -> Result<ListQuery, ApiError> {
    let Query(params) = params.map_err(|e| bad(format!("bad query string: {e}")))?;
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    for (name, value) in params {
        match name.as_str() {
            "offset" => {
                query.offset = value.parse().map_err(|_| {
                    bad(format!("offset must be a whole number >= 0, not '{value}'"))
                })?;
            }
            "limit" => {
                let limit: usize = value.parse().map_err(|_| {
                    bad(format!("limit must be a whole number >= 0, not '{value}'"))
                })?;
                query.limit = limit.min(MAX_LIMIT);
            }
            "sort" => {
                if !value.is_empty() {
                    query.sort = Some(value);
                }
            }
            other if allowed.contains(&other) => {
                if !value.is_empty() {
                    query.filters.insert(name, value);
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter '{other}'; allowed: offset, limit, sort, {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    Ok(query)
}

impl ListQuery {
    fn filter(&self, name: &str) -> Option<&str> {
        self.filters.get(name).map(String::as_str)
    }

    /// The lower-cased search text, if any.
    fn text(&self) -> Option<String> {
        self.filter("q").map(str::to_lowercase)
    }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// Answers from the published snapshot as the viewer may see it (the
/// ACLs' view_*), made off the async workers: filters, searches, other
/// orders and a framework's or agent's details walk every task.
async fn from_view(
    state: &UiState,
    viewer: Viewer,
    make: impl FnOnce(&StateSnapshot) -> Response + Send + 'static,
) -> Response {
    viewer.answer(&state.snapshot, make).await
}

fn not_found(what: &str, id: &str) -> Response {
    ApiError(StatusCode::NOT_FOUND, format!("no {what} '{id}'")).into_response()
}

fn answer<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn master(State(state): State<UiState>, viewer: Viewer) -> Response {
    from_view(&state, viewer, |s| {
        Json(master_info(s, wall_now())).into_response()
    })
    .await
}

async fn overview(State(state): State<UiState>, viewer: Viewer) -> Response {
    from_view(&state, viewer, |s| {
        Json(overview_json(s, wall_now())).into_response()
    })
    .await
}

async fn utilisation(State(state): State<UiState>) -> Response {
    let samples: Vec<Sample> = state
        .samples
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    Json(serde_json::json!({
        "interval_secs": SAMPLE_EVERY.as_secs(),
        "samples": samples,
    }))
    .into_response()
}

async fn agents(State(state): State<UiState>, viewer: Viewer, params: Params) -> Response {
    from_view(&state, viewer, move |s| {
        answer(list_query(params, &["status", "q"]).and_then(|q| agent_page(s, &q)))
    })
    .await
}

async fn agent(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(agent_id): Path<String>,
) -> Response {
    from_view(&state, viewer, move |s| match agent_detail(s, &agent_id) {
        Some(body) => Json(body).into_response(),
        None => not_found("agent", &agent_id),
    })
    .await
}

async fn frameworks(State(state): State<UiState>, viewer: Viewer, params: Params) -> Response {
    from_view(&state, viewer, move |s| {
        answer(list_query(params, &["status", "q"]).and_then(|q| framework_page(s, &q)))
    })
    .await
}

async fn framework(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(framework_id): Path<String>,
) -> Response {
    from_view(&state, viewer, move |s| {
        match framework_detail(s, &framework_id) {
            Some(body) => Json(body).into_response(),
            None => not_found("framework", &framework_id),
        }
    })
    .await
}

async fn tasks(State(state): State<UiState>, viewer: Viewer, params: Params) -> Response {
    from_view(&state, viewer, move |s| {
        answer(
            list_query(params, &["state", "framework_id", "agent_id", "q"])
                .and_then(|q| task_page(s, &q)),
        )
    })
    .await
}

async fn task(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((framework_id, task_id)): Path<(String, String)>,
) -> Response {
    from_view(&state, viewer, move |s| {
        match task_detail(s, &framework_id, &task_id) {
            Some(body) => Json(body).into_response(),
            None => not_found("task", &task_id),
        }
    })
    .await
}

async fn roles(State(state): State<UiState>, viewer: Viewer) -> Response {
    from_view(&state, viewer, |s| {
        Json(serde_json::json!({ "roles": role_rows(s) })).into_response()
    })
    .await
}

async fn offers(State(state): State<UiState>, viewer: Viewer, params: Params) -> Response {
    from_view(&state, viewer, move |s| {
        answer(list_query(params, &["framework_id", "agent_id"]).and_then(|q| offer_page(s, &q)))
    })
    .await
}

#[cfg(test)]
mod tests;
