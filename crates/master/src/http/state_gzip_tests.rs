//! `/state` and Mesos' `/master/state` in gzip through the whole HTTP
//! router: decoded, each is the same body a client that takes identity
//! gets, snapshot after snapshot (`/state`'s made from the last one's kept
//! segments), and only a client that takes gzip gets it.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use tower::ServiceExt as _;

use super::mesos_v0_tests::{leading, serve};
use crate::mesos_v0::tests::fixture;
use crate::snapshot::test_views::refix;
use crate::snapshot::{StateSnapshot, TaskView};
use crate::snapshot_body::gzip::gunzip;

async fn get(app: &axum::Router, accept: Option<&str>) -> (HeaderMap, Bytes) {
    get_path(app, "/state", accept).await
}

async fn get_path(app: &axum::Router, path: &str, accept: Option<&str>) -> (HeaderMap, Bytes) {
    let mut request = Request::get(path);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT_ENCODING, accept);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let length = headers[header::CONTENT_LENGTH].to_str().expect("ascii");
    assert_eq!(
        length,
        body.len().to_string(),
        "Content-Length is the body's"
    );
    (headers, body)
}

/// The fixture with `n` more tasks in its first framework, so that the
/// lists span several chunks.
fn with_tasks(mut snapshot: StateSnapshot, n: usize, state: &'static str) -> StateSnapshot {
    let mut frameworks: Vec<_> = snapshot.frameworks.iter().cloned().collect();
    let template = frameworks[0].tasks.iter().next().cloned().expect("a task");
    for i in 0..n {
        let mut task = TaskView {
            state,
            ..template.clone()
        };
        refix(&mut task, |f| {
            f.id = agora_core::TaskId::new(format!("extra-{i}"))
        });
        frameworks[0].tasks.upsert(Arc::new(task));
    }
    snapshot.frameworks = frameworks.into_iter().collect();
    snapshot
}

#[tokio::test]
async fn state_in_gzip_decodes_to_the_identity_body_snapshot_after_snapshot() {
    let (app, publish) = serve(with_tasks(fixture(), 300, "TASK_STAGING"), leading());
    for round in 0..3 {
        let (plain_headers, plain) = get(&app, None).await;
        assert!(plain_headers.get(header::CONTENT_ENCODING).is_none());
        assert_eq!(plain_headers[header::VARY], "accept-encoding");
        let (headers, gz) = get(&app, Some("gzip, deflate, br")).await;
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip", "round {round}");
        assert_eq!(headers[header::VARY], "accept-encoding");
        assert_eq!(gunzip(&gz), plain, "round {round}");
        assert!(
            gz.len() * 4 < plain.len(),
            "{} of {}",
            gz.len(),
            plain.len()
        );
        // The next snapshot changes some tasks and keeps the rest.
        let changed = with_tasks(fixture(), 300 - round * 40, "TASK_RUNNING");
        publish.send(Arc::new(changed)).expect("a receiver");
    }
}

#[tokio::test]
async fn only_a_client_that_takes_gzip_gets_it() {
    let (app, _publish) = serve(fixture(), leading());
    let (_, plain) = get(&app, None).await;
    for accept in ["identity", "gzip;q=0", "br", "*;q=0", "gzip;q=bad"] {
        let (headers, body) = get(&app, Some(accept)).await;
        assert!(headers.get(header::CONTENT_ENCODING).is_none(), "{accept}");
        assert_eq!(body, plain, "{accept}");
    }
    for accept in ["gzip", "*", "x-gzip;q=0.5"] {
        let (headers, body) = get(&app, Some(accept)).await;
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip", "{accept}");
        assert_eq!(gunzip(&body), plain, "{accept}");
    }
}

#[tokio::test]
async fn mesos_state_in_gzip_decodes_to_its_plain_body_snapshot_after_snapshot() {
    let (app, publish) = serve(with_tasks(fixture(), 300, "TASK_STAGING"), leading());
    for round in 0..3 {
        for path in ["/master/state", "/master/frameworks"] {
            let (_, plain) = get_path(&app, path, None).await;
            let (headers, gz) = get_path(&app, path, Some("gzip")).await;
            assert_eq!(
                headers[header::CONTENT_ENCODING],
                "gzip",
                "{path} round {round}"
            );
            assert_eq!(headers[header::VARY], "accept-encoding");
            assert_eq!(gunzip(&gz), plain, "{path} round {round}");
            // Asked again for the same snapshot: the same gzip.
            let (_, again) = get_path(&app, path, Some("gzip")).await;
            assert_eq!(again, gz, "{path} round {round}");
        }
        let changed = with_tasks(fixture(), 300 - round * 40, "TASK_RUNNING");
        publish.send(Arc::new(changed)).expect("a receiver");
    }
    // JSONP is wrapped per request: this router leaves it plain (the
    // serving edge compresses it for a client that takes gzip).
    for path in ["/master/state?jsonp=cb", "/master/frameworks?jsonp=cb"] {
        let (headers, body) = get_path(&app, path, Some("gzip")).await;
        assert!(headers.get(header::CONTENT_ENCODING).is_none(), "{path}");
        assert!(body.starts_with(b"cb("), "{path}");
    }
}
