//! Refuses a request whose declared body is larger than a route accepts,
//! before any of the body is read: axum's `DefaultBodyLimit` only notices
//! once that much has arrived, so a peer that declares 80 MB and sends
//! nothing would hold the request open until its body came.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Holds every route of `router` to bodies of at most `limit` bytes: 413
/// up front on a declared length over it, and while reading otherwise.
/// The one limit of Mesos' HTTP APIs (scheduler, executor, operator).
pub fn limit_bodies<S>(router: axum::Router<S>, limit: usize) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_oversized,
        ))
}

/// Middleware (`axum::middleware::from_fn_with_state(limit, refuse_oversized)`):
/// 413 with a message when `Content-Length` exceeds `limit` bytes.
pub async fn refuse_oversized(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared
        && length > limit as u64
    {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is {length} bytes; at most {limit} are accepted\n"),
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/", post(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(10, refuse_oversized))
    }

    async fn status(length: usize) -> StatusCode {
        let request = Request::post("/")
            .header(header::CONTENT_LENGTH, length)
            .body(Body::from(vec![b'x'; length]))
            .expect("request");
        app().oneshot(request).await.expect("answer").status()
    }

    #[tokio::test]
    async fn a_declared_body_over_the_limit_is_refused() {
        assert_eq!(status(10).await, StatusCode::OK);
        assert_eq!(status(11).await, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
