//! The master's proxy of the agents' files API, so that a browser only ever
//! talks to the master: `GET /agents/{agent_id}/files/{browse|read|download}`
//! with the agent's own query parameters, forwarded to the agent's HTTP
//! address from the published snapshot.
//!
//! The query string is passed on exactly as it came (never decoded and
//! re-encoded here): the agent decodes it once and confines the path, so
//! the master adds no second decoding a crafted path could exploit.
//! Answers: the agent's (status, `Content-Type`, `Content-Length`,
//! `Content-Disposition`, body streamed through); 404 `{"error"}` for an
//! agent the master does not know; 502 when the agent cannot be reached;
//! 504 when it does not answer within [`PROXY_TIMEOUT`] (the body of a
//! download then streams for as long as it takes).
//!
//! TLS: a master with a CA (`--tls-ca`) reaches every agent over https,
//! verifying the agent's certificate against that CA for the agent's
//! advertised host name (and presenting its own certificate, for agents
//! that require one); without a CA, over plain http. A cluster is TLS
//! throughout or not at all: an agent that serves plaintext behind a master
//! with a CA is answered 502, never reached unverified.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::snapshot::StateSnapshot;

/// The TLS the proxy reaches agents with (`--tls-ca`), as a request
/// extension the master's router carries; absent: plain http.
#[derive(Clone, Debug)]
pub struct AgentTls(pub agora_tls::ClientTls);

/// How long an agent has to answer (connect, and the response's head).
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's files operations the master forwards.
const OPERATIONS: [&str; 3] = ["browse", "read", "download"];

/// Headers of the agent's answer passed on to the browser.
const PASSED_HEADERS: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_DISPOSITION,
];

type Snapshot = watch::Receiver<Arc<StateSnapshot>>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("http exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] axum::http::Error),
}

/// The proxy's routes, for the master's HTTP router (behind its leader-only layer).
pub(crate) fn router(snapshot: Snapshot) -> Router {
    Router::new()
        .route("/agents/{agent_id}/files/{operation}", get(proxy))
        .with_state(snapshot)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The `host:port` of an agent's HTTP API, from the snapshot.
pub fn agent_address(snapshot: &StateSnapshot, agent_id: &str) -> Option<String> {
    snapshot
        .agents
        .iter()
        .find(|a| a.id == agent_id)
        .map(|a| a.address.clone())
}

async fn proxy(
    State(snapshot): State<Snapshot>,
    viewer: crate::authz_views::Viewer,
    Path((agent_id, operation)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
    tls: Option<axum::Extension<AgentTls>>,
) -> Response {
    if !OPERATIONS.contains(&operation.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no files operation '{operation}'; use browse, read or download"),
        );
    }
    // `access_sandboxes`, checked here (the agent sees the master, not the
    // viewer): the path is decoded for the check only, and the query is
    // still passed on exactly as it came.
    let path =
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(&uri)
            .ok()
            .and_then(|axum::extract::Query(mut q)| q.remove("path"))
            .unwrap_or_default();
    let current = snapshot.borrow().clone();
    if !crate::authz_views::may_access_sandbox(&current, viewer.0.as_ref(), &path) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not authorized to access this sandbox",
                viewer.0.as_ref().map_or_else(
                    || "an anonymous caller".to_string(),
                    |p| format!("principal '{p}'")
                )
            ),
        );
    }
    let address = agent_address(&current, &agent_id);
    let Some(address) = address else {
        return error(StatusCode::NOT_FOUND, format!("unknown agent {agent_id}"));
    };
    let target = match query {
        Some(query) => format!("/files/{operation}?{query}"),
        None => format!("/files/{operation}"),
    };
    let tls = tls.map(|axum::Extension(AgentTls(tls))| tls);
    // The caller's own credential goes along: an agent with HTTP
    // authentication (and ACLs of its own) judges the same principal.
    let authorization = headers.get(header::AUTHORIZATION);
    let answer = match tokio::time::timeout(
        PROXY_TIMEOUT,
        forward(&address, &target, authorization, tls.as_ref()),
    )
    .await
    {
        Err(_) => {
            tracing::warn!(agent_id = %agent_id, address = %address, "agent did not answer a files request in time");
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "agent {agent_id} at {address} did not answer within {}s",
                    PROXY_TIMEOUT.as_secs()
                ),
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(agent_id = %agent_id, address = %address, error = %e, "cannot reach agent for a files request");
            return error(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach agent {agent_id} at {address}: {e}"),
            );
        }
        Ok(Ok(answer)) => answer,
    };
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    for name in PASSED_HEADERS {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One request on a fresh HTTP/1.1 connection to the agent.
async fn forward(
    address: &str,
    target: &str,
    authorization: Option<&HeaderValue>,
    tls: Option<&agora_tls::ClientTls>,
) -> Result<hyper::Response<hyper::body::Incoming>, ProxyError> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    match tls {
        None => exchange(TokioIo::new(stream), address, target, authorization).await,
        Some(tls) => {
            let host = address
                .rsplit_once(':')
                .map_or(address, |(host, _port)| host);
            let stream = tls.connect_http1(host, stream).await?;
            exchange(TokioIo::new(stream), address, target, authorization).await
        }
    }
}

/// One GET over an open connection (plain or TLS).
async fn exchange<T>(
    io: T,
    address: &str,
    target: &str,
    authorization: Option<&HeaderValue>,
) -> Result<hyper::Response<hyper::body::Incoming>, ProxyError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // Drives the connection until the response body is read or dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "agent files connection ended with an error");
        }
    });
    let mut request = hyper::Request::get(target)
        .header(header::HOST, address)
        .header(header::CONNECTION, "close");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request.body(Body::empty())?;
    Ok(sender.send_request(request).await?)
}
