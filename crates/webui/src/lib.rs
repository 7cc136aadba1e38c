//! The master's web UI: one page (`/`) and its assets (under
//! [`ASSETS_PREFIX`]), hand-written and embedded in the binary, so that
//! `cargo run` serves the UI with no front-end build step.
//!
//! The page is a single-page app with hash routes (`#/agents`, `#/tasks`,
//! ...). It reads the master's JSON under `/api/` (paged and sorted on the
//! server: a click on a column's header asks for `sort=<column>`) and
//! the agents' sandboxes through the master's `/agents/{id}/files/*` proxy,
//! polling with back-off and marking what it could not refresh as stale.
//! Its only writes are operator calls to the master's `POST /api/v1`: Kill
//! on a live task's page and Teardown on a framework's, each asked for
//! twice (an inline confirmation) and answered with the master's refusal.
//! With authentication on, an API answer of 401 brings up the page's own
//! login form; the credential stays in the script's memory (never in web
//! storage or cookies) and goes with every request, which also says
//! `X-Requested-With: XMLHttpRequest` so that the master sends no
//! `WWW-Authenticate` challenge and the browser shows no dialog of its own.
//! Kill and Teardown are offered only where `/api/permissions` says the
//! ACLs allow them.
//! This crate knows nothing of the master: it only serves files.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the assets live; a follower serves them too.
pub const ASSETS_PREFIX: &str = "/ui/";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Serves `/` and the assets under [`ASSETS_PREFIX`].
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

/// An embedded file. `no-cache`: a browser revalidates, so an upgraded
/// master never runs with last version's script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get_path(path: &str) -> (StatusCode, String, usize) {
        let response = router()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, content_type, body.len())
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_with_their_types() {
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let (status, content_type, len) = get_path(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(content_type.starts_with(kind), "{path}: {content_type}");
            assert!(len > 0, "{path} is empty");
        }
    }

    #[test]
    fn the_page_loads_the_embedded_assets() {
        assert!(INDEX_HTML.contains("/ui/app.js"));
        assert!(INDEX_HTML.contains("/ui/app.css"));
    }

    #[test]
    fn the_credential_is_kept_in_memory_only() {
        assert!(INDEX_HTML.contains("id=\"login-form\""));
        for storage in ["localStorage", "sessionStorage", "document.cookie"] {
            let uses = APP_JS
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| l.contains(storage));
            assert!(!uses, "app.js uses {storage}");
        }
        assert!(APP_JS.contains("'X-Requested-With': 'XMLHttpRequest'"));
    }

    #[tokio::test]
    async fn unknown_assets_are_not_served() {
        let response = router()
            .oneshot(
                Request::get("/ui/missing.js")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
