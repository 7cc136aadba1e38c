//! Mesos' read endpoints (`crate::mesos_v0`) through the whole HTTP router,
//! as a master serves them (`leader_only` included): the routes and their
//! un-prefixed forms beside Agora's own `/state` and `/roles`, JSONP,
//! `/tasks`' 400s, the state serialized once per snapshot, `/version`,
//! `/master/redirect`, `/master/health` and `/metrics/snapshot`, and a
//! follower's redirects. They live here, under `http`, because the router
//! is built here on top of `mesos_v0`; the shapes themselves are pinned in
//! `mesos_v0/tests.rs`, whose snapshot these serve.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt as _;

use super::router;
use crate::mesos_v0::tests::fixture;
use crate::protocol::Gate;
use crate::snapshot::StateSnapshot;

pub(super) fn leading() -> watch::Receiver<Gate> {
    let (commands, _) = mpsc::channel(1);
    watch::channel(Gate::Leading { commands }).1
}

/// The whole HTTP router (`leader_only` included), as a master serves it.
pub(super) fn serve(
    snapshot: StateSnapshot,
    gate: watch::Receiver<Gate>,
) -> (Router, watch::Sender<Arc<StateSnapshot>>) {
    let (publish, snapshot) = watch::channel(Arc::new(snapshot));
    (
        router(snapshot, gate, Default::default(), Default::default()),
        publish,
    )
}

async fn get_raw(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body)
}

async fn get_json(app: &Router, uri: &str) -> Value {
    let (status, headers, body) = get_raw(app, uri).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test]
async fn routes_answer_mesos_shapes_with_jsonp() {
    let (app, _publish) = serve(fixture(), leading());
    for path in ["/master/state", "/master/state.json", "/state.json"] {
        let state = get_json(&app, path).await;
        assert_eq!(state["version"], "1.11.0", "{path}");
        assert_eq!(state["slaves"][0]["pid"], "slave(1)@host-a1:5051", "{path}");
    }
    // Agora's own `/state` keeps its shape.
    let agora = get_json(&app, "/state").await;
    assert_eq!(agora["elected"], true);
    assert!(agora.get("agents").is_some());
    for (prefixed, plain) in [
        ("/master/state-summary", Some("/state-summary")),
        ("/master/frameworks", Some("/frameworks")),
        ("/master/slaves", Some("/slaves")),
        ("/master/tasks", Some("/tasks")),
        ("/master/roles", None),
    ] {
        let body = get_json(&app, prefixed).await;
        if let Some(plain) = plain {
            assert_eq!(get_json(&app, plain).await, body, "{plain}");
        }
    }
    assert_eq!(
        get_json(&app, "/master/frameworks?framework_id=f0").await["frameworks"],
        json!([])
    );
    // Agora's `/roles` keeps its shape.
    assert!(
        get_json(&app, "/roles").await["roles"][0]
            .get("offer_status")
            .is_some()
    );

    let (status, headers, body) = get_raw(&app, "/master/state?jsonp=cb").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let inner = text
        .strip_prefix("cb(")
        .and_then(|t| t.strip_suffix(");"))
        .expect("wrapped");
    let state: Value = serde_json::from_str(inner).expect("json inside");
    assert_eq!(state["version"], "1.11.0");
    for path in [
        "/master/tasks?jsonp=angular.callbacks._0",
        "/metrics/snapshot?jsonp=JSON_CALLBACK",
        "/version?jsonp=cb",
        "/master/roles?jsonp=cb",
    ] {
        let (status, headers, _) = get_raw(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/javascript", "{path}");
    }
    let (status, _, _) = get_raw(&app, "/master/state?jsonp=alert(1)").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tasks_route_refuses_bad_parameters() {
    let (app, _publish) = serve(fixture(), leading());
    let tasks = get_json(&app, "/master/tasks?limit=1&order=desc").await;
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(tasks["tasks"][0]["id"], "t3");
    for query in ["limit=x", "offset=-2", "order=up", "limit=1&order=ASC"] {
        let (status, _, body) = get_raw(&app, &format!("/master/tasks?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(!body.is_empty(), "{query}: a message says why");
    }
}

#[tokio::test]
async fn mesos_state_is_serialized_once_per_snapshot() {
    // A hostname long enough that the piece holding it is sent as it is
    // (short pieces are copied together into frames).
    let long = |name: &str| format!("{name}{}", "x".repeat(crate::snapshot_body::SMALL_PIECE));
    let mut state = fixture();
    state.hostname = long("first");
    let (app, publish) = serve(state, leading());
    let first = get_frames(&app, "/master/state").await;
    let again = get_frames(&app, "/state.json").await;
    // The same allocations: served from the cache, not serialized again.
    let addresses = crate::snapshot_body::long_frame_addresses;
    assert!(!addresses(&first).is_empty(), "a long piece");
    assert_eq!(
        addresses(&first),
        addresses(&again),
        "served from the cache"
    );
    let mut next = fixture();
    next.hostname = long("renamed");
    publish.send_replace(Arc::new(next));
    let renamed = get_frames(&app, "/master/state").await;
    assert_ne!(addresses(&first), addresses(&renamed));
    let state: Value = serde_json::from_slice(&renamed.concat()).expect("json");
    assert_eq!(state["hostname"], long("renamed"));
}

/// The frames of a 200's body, as the router sends them.
async fn get_frames(app: &Router, uri: &str) -> Vec<Bytes> {
    use futures::StreamExt as _;
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    response
        .into_body()
        .into_data_stream()
        .map(|frame| frame.expect("body"))
        .collect()
        .await
}

#[tokio::test]
async fn version_redirect_health_and_metrics() {
    let (app, _publish) = serve(fixture(), leading());
    for path in ["/version", "/master/version"] {
        let version = get_json(&app, path).await;
        assert_eq!(version["version"], "1.11.0");
        assert_eq!(version["agora_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(version["build"], "agora");
        for field in ["build_date", "build_time", "build_user"] {
            assert!(version.get(field).is_some(), "{field}");
        }
    }
    let (status, headers, _) = get_raw(&app, "/master/redirect").await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(headers[header::LOCATION], "//master-host:5050");
    let (status, _, body) = get_raw(&app, "/master/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    // Mesos' `timeout`: a duration is taken (the answer is whole anyway),
    // anything else refused with the reason.
    let timed = get_json(&app, "/metrics/snapshot?timeout=5secs").await;
    assert_eq!(timed["master/elected"], 1.0);
    for bad in ["abc", "5", "-1secs"] {
        let (status, _, body) = get_raw(&app, &format!("/metrics/snapshot?timeout={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.starts_with(&format!("Invalid timeout '{bad}': ")),
            "{body}"
        );
    }
    let metrics = get_json(&app, "/metrics/snapshot").await;
    assert_eq!(metrics["master/elected"], 1.0);
    assert_eq!(metrics["master/tasks_running"], 2.0);
    assert!(
        metrics["master/uptime_secs"]
            .as_f64()
            .is_some_and(|u| u >= 0.0)
    );
}

#[tokio::test]
async fn flags_are_the_masters_settings_as_its_state_shows_them() {
    let (app, _publish) = serve(fixture(), leading());
    let state = get_json(&app, "/master/state").await;
    assert_eq!(state["flags"]["agent_ping_timeout"], "2secs");
    for path in ["/flags", "/master/flags"] {
        let flags = get_json(&app, path).await;
        assert_eq!(flags, json!({ "flags": state["flags"] }), "{path}");
    }
    let (status, headers, body) = get_raw(&app, "/master/flags?jsonp=cb").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript");
    let body = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(body.starts_with("cb({\"flags\":"), "{body}");
}

#[tokio::test]
async fn a_follower_redirects_state_but_answers_metrics_itself() {
    let gate = watch::channel(Gate::Following {
        leader: Some("leader-host:5050".to_string()),
    })
    .1;
    let follower = StateSnapshot::follower("m2", "other-host", Some("leader-host:5050"));
    let (app, _publish) = serve(follower, gate);
    for path in [
        "/master/state",
        "/master/state.json",
        "/state.json",
        "/master/tasks?limit=1",
        "/master/slaves",
        "/frameworks",
        // The leader's flags, as the leader's state.
        "/master/flags",
    ] {
        let (status, headers, _) = get_raw(&app, path).await;
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT, "{path}");
        assert_eq!(
            headers[header::LOCATION],
            format!("//leader-host:5050{path}"),
            "{path}"
        );
    }
    let metrics = get_json(&app, "/metrics/snapshot").await;
    assert_eq!(metrics["master/elected"], 0.0);
    let (status, headers, _) = get_raw(&app, "/master/redirect").await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(headers[header::LOCATION], "//leader-host:5050");
    assert_eq!(get_json(&app, "/version").await["version"], "1.11.0");

    // No leader known: 503 for both.
    let gate = watch::channel(Gate::Following { leader: None }).1;
    let (lost, _publish) = serve(StateSnapshot::follower("m2", "other-host", None), gate);
    let (status, _, _) = get_raw(&lost, "/master/state").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = get_raw(&lost, "/master/redirect").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Every read that walks the cluster (every task or agent, or a filtered
/// copy of it) is answered off the async workers, which serve the agents'
/// and frameworks' streams meanwhile.
#[test]
fn reads_that_walk_the_cluster_leave_the_async_worker_free() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let (app, _publish) = runtime.block_on(async { serve(fixture(), leading()) });
    let uris = [
        "/state",
        "/master/state",
        "/master/state-summary",
        "/master/frameworks",
        "/master/slaves",
        "/master/tasks",
        "/master/roles",
        "/metrics/snapshot",
        "/metrics",
        "/roles",
        "/weights",
        "/quota",
        "/api/master",
        "/api/overview",
        "/api/agents",
        "/api/agents/a1",
        "/api/frameworks",
        "/api/frameworks/f1",
        "/api/tasks",
        "/api/tasks/f1/t1",
        "/api/roles",
        "/api/offers",
        "/api/permissions?framework_id=f1",
    ];
    agora_net::off_workers::assert_answered(&uris, |uri| {
        let app = app.clone();
        async move {
            app.oneshot(Request::get(uri).body(Body::empty()).expect("request"))
                .await
                .expect("infallible")
                .status()
        }
    });
}
