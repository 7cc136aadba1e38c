//! Authentication on the agent: the credential it presents to the master
//! (`--credential`), and HTTP Basic on its own endpoints (`--http-credentials`,
//! `--authenticate-http-readonly`, `--authenticate-http-readwrite`).
//!
//! Each request to the agent's port is classified:
//! - open: `/health`, CORS preflights, and the executor APIs (HTTP
//!   `/api/v1/executor` and the gRPC `Executor` service), which executor
//!   tokens protect instead (`executor_auth`);
//! - readonly: every other GET or HEAD (`/state`, `/files/*`,
//!   `/monitor/statistics`, `/metrics*`, `/version`);
//! - readwrite: every other method (the operator API `POST /api/v1`).
//!
//! As on the master: a realm that requires authentication refuses a
//! request without valid credentials with 401 and `WWW-Authenticate: Basic
//! realm="mesos-agent-readonly"` (or `-readwrite`); valid credentials make
//! the caller that principal ([`Caller`]) wherever credentials are
//! configured; wrong ones are refused.

use std::sync::Arc;

use agora_auth::Caller;
use agora_auth::credentials::{Credential, Credentials};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The agent's authentication settings. The default sends no credential and
/// requires none.
#[derive(Clone, Debug, Default)]
pub struct AgentAuthentication {
    /// What the agent presents to the master on its session.
    pub credential: Option<Credential>,
    /// The principals the agent's HTTP endpoints accept.
    pub http_credentials: Option<Arc<Credentials>>,
    pub http_readonly: bool,
    pub http_readwrite: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Realm {
    Open,
    ReadOnly,
    ReadWrite,
}

pub(crate) fn classify(method: &Method, path: &str) -> Realm {
    let executor_api = path == "/api/v1/executor"
        || path == "/slave(1)/api/v1/executor"
        || path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(agora_proto::v1::executor::executor_server::SERVICE_NAME))
            .is_some_and(|rest| rest.starts_with('/'));
    if executor_api || *method == Method::OPTIONS {
        return Realm::Open;
    }
    let reads = *method == Method::GET || *method == Method::HEAD;
    if reads && path == "/health" {
        Realm::Open
    } else if reads {
        Realm::ReadOnly
    } else {
        Realm::ReadWrite
    }
}

/// The layer: `router.layer(axum::middleware::from_fn_with_state(auth, authn::layer))`.
pub async fn layer(
    State(auth): State<Arc<AgentAuthentication>>,
    mut request: Request,
    next: Next,
) -> Response {
    let realm = classify(request.method(), request.uri().path());
    let (required, name) = match realm {
        Realm::Open => {
            request.extensions_mut().insert(Caller::ANONYMOUS);
            return next.run(request).await;
        }
        Realm::ReadOnly => (auth.http_readonly, "mesos-agent-readonly"),
        Realm::ReadWrite => (auth.http_readwrite, "mesos-agent-readwrite"),
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match agora_auth::basic::authenticate(auth.http_credentials.as_deref(), required, authorization)
    {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => {
            tracing::info!(path = %request.uri().path(), realm = name, reason = %refused, "request refused: not authenticated");
            (
                StatusCode::UNAUTHORIZED,
                [
                    (header::WWW_AUTHENTICATE, format!("Basic realm=\"{name}\"")),
                    (
                        header::CONTENT_TYPE,
                        "text/plain; charset=utf-8".to_string(),
                    ),
                ],
                format!("{refused}\n"),
            )
                .into_response()
        }
    }
}

/// The gRPC metadata value that carries `credential` to the master.
pub fn metadata_value(
    credential: &Credential,
) -> Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    agora_auth::basic::header_value(credential).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_auth::basic::header_value;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    #[test]
    fn classification() {
        assert_eq!(classify(&Method::GET, "/health"), Realm::Open);
        assert_eq!(classify(&Method::POST, "/api/v1/executor"), Realm::Open);
        assert_eq!(
            classify(&Method::POST, "/agora.v1.executor.Executor/Open"),
            Realm::Open
        );
        assert_eq!(classify(&Method::GET, "/state"), Realm::ReadOnly);
        assert_eq!(classify(&Method::GET, "/files/read"), Realm::ReadOnly);
        assert_eq!(
            classify(&Method::GET, "/monitor/statistics"),
            Realm::ReadOnly
        );
        assert_eq!(classify(&Method::POST, "/api/v1"), Realm::ReadWrite);
    }

    #[tokio::test]
    async fn readonly_refuses_without_credentials() {
        let auth = AgentAuthentication {
            http_credentials: Some(Arc::new(Credentials::from_list([Credential::new(
                "ops", "pw",
            )]))),
            http_readonly: true,
            ..AgentAuthentication::default()
        };
        let app = Router::new()
            .route("/state", get(|| async { "state" }))
            .route("/api/v1/executor", post(|| async { "executor" }))
            .layer(axum::middleware::from_fn_with_state(Arc::new(auth), layer));
        let send = |path: &str, method: Method, auth: Option<String>| {
            let mut request = Request::builder().method(method).uri(path);
            if let Some(auth) = auth {
                request = request.header(header::AUTHORIZATION, auth);
            }
            app.clone()
                .oneshot(request.body(Body::empty()).expect("request"))
        };
        let refused = send("/state", Method::GET, None).await.expect("infallible");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"mesos-agent-readonly\""
        );
        let good = header_value(&Credential::new("ops", "pw"));
        let ok = send("/state", Method::GET, Some(good))
            .await
            .expect("infallible");
        assert_eq!(ok.status(), StatusCode::OK);
        let executor = send("/api/v1/executor", Method::POST, None)
            .await
            .expect("infallible");
        assert_eq!(executor.status(), StatusCode::OK);
    }
}
