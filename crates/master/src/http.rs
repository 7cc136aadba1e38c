//! The master's HTTP API on the gRPC port: `/health`, `/version`, `/state`,
//! `/metrics` and a first plain page at `/`. Every handler reads the
//! published snapshot only.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use tokio::sync::watch;

use crate::shell::Gate;
use crate::snapshot::StateSnapshot;

type Snapshot = watch::Receiver<Arc<StateSnapshot>>;

/// Paths a master serves whether or not it leads; everything else is for
/// the leader only.
const ANY_MASTER: [&str; 5] = ["/health", "/version", "/state", "/master/state", "/metrics"];

pub(crate) fn router(snapshot: Snapshot, gate: watch::Receiver<Gate>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/state", get(state))
        .route("/master/state", get(state))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(snapshot)
        .layer(axum::middleware::from_fn_with_state(gate, leader_only))
}

/// A master that does not lead sends users to the leader: 307 with a
/// protocol-relative `Location: //leader:port/path` (Mesos' form), or 503
/// while no leader is known.
async fn leader_only(
    State(gate): State<watch::Receiver<Gate>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if ANY_MASTER.contains(&path) || path.starts_with("/agora.v1.") {
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

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "build": "agora",
    }))
}

async fn state(State(snapshot): State<Snapshot>) -> Response {
    let current = snapshot.borrow().clone();
    Json(current.as_ref().clone()).into_response()
}

/// Prometheus text exposition of the counters and current totals.
pub fn render_metrics(s: &StateSnapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let agents_in = |status: &str| s.agents.iter().filter(|a| a.status == status).count() as f64;
    metric(
        "agora_master_agents",
        "gauge",
        "Agents known to the master by state.",
        &[
            ("state=\"active\"", agents_in("active")),
            ("state=\"disconnected\"", agents_in("disconnected")),
            ("state=\"unreachable\"", agents_in("unreachable")),
        ],
    );
    let active_frameworks = s.frameworks.iter().filter(|f| f.active).count() as f64;
    metric(
        "agora_master_frameworks",
        "gauge",
        "Frameworks by state.",
        &[
            ("state=\"active\"", active_frameworks),
            (
                "state=\"inactive\"",
                s.frameworks.len() as f64 - active_frameworks,
            ),
            ("state=\"completed\"", s.completed_frameworks.len() as f64),
        ],
    );
    let mut by_state: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for framework in s.frameworks.iter().chain(&s.completed_frameworks) {
        for task in framework.tasks.iter().chain(&framework.completed_tasks) {
            *by_state.entry(task.state).or_default() += 1.0;
        }
    }
    let labels: Vec<(String, f64)> = by_state
        .iter()
        .map(|(state, n)| (format!("state=\"{state}\""), *n))
        .collect();
    let label_refs: Vec<(&str, f64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "agora_master_tasks",
        "gauge",
        "Tasks the master knows, by current state.",
        &label_refs,
    );
    let transitions: Vec<(String, f64)> = s
        .counters
        .task_transitions
        .iter()
        .map(|(state, n)| (format!("state=\"{state}\""), *n as f64))
        .collect();
    let transition_refs: Vec<(&str, f64)> =
        transitions.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "agora_master_task_transitions_total",
        "counter",
        "Task state transitions seen by the master.",
        &transition_refs,
    );
    let c = &s.counters;
    let single: [(&str, &str, &str, f64); 8] = [
        (
            "agora_master_offers_sent_total",
            "counter",
            "Offers sent to frameworks.",
            c.offers_sent as f64,
        ),
        (
            "agora_master_offers_declined_total",
            "counter",
            "Offers declined by frameworks.",
            c.offers_declined as f64,
        ),
        (
            "agora_master_offers_accepted_total",
            "counter",
            "Offers accepted by frameworks.",
            c.offers_accepted as f64,
        ),
        (
            "agora_master_offers_rescinded_total",
            "counter",
            "Offers rescinded by the master.",
            c.offers_rescinded as f64,
        ),
        (
            "agora_master_offers_outstanding",
            "gauge",
            "Offers not yet answered.",
            s.outstanding_offers as f64,
        ),
        (
            "agora_master_tasks_launched_total",
            "counter",
            "Tasks launched.",
            c.tasks_launched as f64,
        ),
        (
            "agora_master_invalid_calls_total",
            "counter",
            "Framework calls refused as invalid.",
            c.invalid_calls as f64,
        ),
        (
            "agora_master_agents_marked_unreachable_total",
            "counter",
            "Agents marked unreachable.",
            c.agents_marked_unreachable as f64,
        ),
    ];
    for (name, kind, help, value) in single {
        metric(name, kind, help, &[("", value)]);
    }
    out
}

async fn metrics(State(snapshot): State<Snapshot>) -> Response {
    let current = snapshot.borrow().clone();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&current),
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

/// A first, plain page: agents, frameworks and tasks. The real UI has its own issue.
async fn index(State(snapshot): State<Snapshot>) -> Html<String> {
    let s = snapshot.borrow().clone();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Agora master</title>\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>\
         <h1>Agora master</h1><p>Leader: {} &middot; id {} &middot; version {}</p>",
        escape(&s.leader),
        escape(&s.id),
        escape(&s.version)
    );
    let _ = write!(
        page,
        "<h2>Agents ({})</h2><table><tr><th>id</th><th>hostname</th><th>resources</th><th>used</th><th>active</th></tr>",
        s.agents.len()
    );
    for a in &s.agents {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.id),
            escape(&a.hostname),
            escape(&serde_json::to_string(&a.resources).unwrap_or_default()),
            escape(&serde_json::to_string(&a.used).unwrap_or_default()),
            a.active
        );
    }
    page.push_str("</table>");
    let _ = write!(
        page,
        "<h2>Frameworks ({})</h2><table><tr><th>id</th><th>name</th><th>active</th><th>tasks</th></tr>",
        s.frameworks.len()
    );
    for f in s.frameworks.iter().chain(&s.completed_frameworks) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.id),
            escape(&f.name),
            f.active,
            f.tasks.len() + f.completed_tasks.len()
        );
    }
    page.push_str("</table><h2>Tasks</h2><table><tr><th>id</th><th>name</th><th>state</th><th>framework</th><th>agent</th></tr>");
    for f in s.frameworks.iter().chain(&s.completed_frameworks) {
        for t in f.tasks.iter().chain(&f.completed_tasks) {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.id),
                escape(&t.name),
                t.state,
                escape(&t.framework_id),
                escape(&t.agent_id)
            );
        }
    }
    page.push_str("</table></body></html>");
    Html(page)
}
