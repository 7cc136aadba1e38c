//! Authentication at the master's edge: one layer over everything the port
//! serves (HTTP and gRPC), which finds who is calling and refuses whoever
//! must be someone and is not.
//!
//! Each request is classified ([`Realm`]):
//! - open: `/health`, `/master/health`, the UI's page and assets (a login
//!   page must load), CORS preflights;
//! - readonly: every other GET or HEAD (`/state`, `/master/state`,
//!   `/metrics*`, `/api/*` UI JSON, the files proxy, `/roles`, ...);
//! - readwrite: every other method (the operator API `POST /api/v1`,
//!   `/master/teardown`, quota, weights, reserve...);
//! - HTTP frameworks: the scheduler API (`POST /api/v1/scheduler`);
//! - gRPC frameworks (the `Scheduler` service) and gRPC agents (the
//!   `AgentSession` service): the same Basic credential in the
//!   `authorization` metadata, refused with gRPC `UNAUTHENTICATED`.
//!
//! Where a realm requires authentication (its `--authenticate-*` flag) a
//! request without valid credentials is refused, before any handler runs,
//! with 401, `WWW-Authenticate: Basic realm="mesos-master-<realm>"` and a
//! plain-text reason (without the challenge for a page's script, which
//! says `X-Requested-With: XMLHttpRequest`: the web UI asks for credentials
//! in its own form). Wherever credentials are configured, valid ones make
//! the caller that principal ([`Caller`] in the request's extensions) even
//! where they are not required, and wrong ones are refused (see
//! [`agora_auth::basic::authenticate`]).

use std::sync::Arc;

use agora_auth::Caller;
use agora_auth::credentials::Credentials;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// What the master requires of whom (`agora master`'s `--credentials` and
/// `--authenticate-*` flags). The default requires nothing and knows no
/// credentials: every request is anonymous.
#[derive(Clone, Debug, Default)]
pub struct Authentication {
    /// The principals the master accepts and their secrets.
    pub credentials: Option<Arc<Credentials>>,
    /// Where they were read from (shown in the master's flags; the
    /// secrets never are).
    pub credentials_path: Option<String>,
    /// gRPC frameworks (`--authenticate-frameworks`).
    pub frameworks: bool,
    /// Agents (`--authenticate-agents`).
    pub agents: bool,
    /// Read endpoints (`--authenticate-http-readonly`).
    pub http_readonly: bool,
    /// Endpoints that change state (`--authenticate-http-readwrite`).
    pub http_readwrite: bool,
    /// The HTTP scheduler API (`--authenticate-http-frameworks`).
    pub http_frameworks: bool,
}

impl Authentication {
    /// Whether anything requires authentication.
    pub fn requires_any(&self) -> bool {
        self.frameworks
            || self.agents
            || self.http_readonly
            || self.http_readwrite
            || self.http_frameworks
    }

    /// The settings under Mesos' flag names, as GET_FLAGS shows them: the
    /// credentials file's path, never its content.
    pub fn flags(&self) -> std::collections::BTreeMap<String, String> {
        let mut flags = std::collections::BTreeMap::new();
        if let Some(path) = &self.credentials_path {
            flags.insert("credentials".to_string(), path.clone());
        }
        for (name, on) in [
            ("authenticate_frameworks", self.frameworks),
            ("authenticate_agents", self.agents),
            ("authenticate_http_readonly", self.http_readonly),
            ("authenticate_http_readwrite", self.http_readwrite),
            ("authenticate_http_frameworks", self.http_frameworks),
        ] {
            flags.insert(name.to_string(), on.to_string());
        }
        flags
    }

    fn required(&self, realm: Realm) -> bool {
        match realm {
            Realm::Open => false,
            Realm::ReadOnly => self.http_readonly,
            Realm::ReadWrite => self.http_readwrite,
            Realm::HttpFrameworks => self.http_frameworks,
            Realm::GrpcFrameworks => self.frameworks,
            Realm::GrpcAgents => self.agents,
        }
    }
}

/// Which authentication a request falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Realm {
    Open,
    ReadOnly,
    ReadWrite,
    HttpFrameworks,
    GrpcFrameworks,
    GrpcAgents,
}

impl Realm {
    /// The realm's name in `WWW-Authenticate` (Mesos' names).
    fn name(self) -> &'static str {
        match self {
            Realm::Open | Realm::ReadOnly => "mesos-master-readonly",
            Realm::ReadWrite => "mesos-master-readwrite",
            Realm::HttpFrameworks | Realm::GrpcFrameworks => "mesos-master-scheduler",
            Realm::GrpcAgents => "mesos-master-agent",
        }
    }
}

/// Whether `path` is a method of the gRPC service named `service`
/// (`/<package>.<Service>/<Method>`).
fn grpc_method_of(path: &str, service: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(service))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The paths of the HTTP scheduler API (`crate::scheduler_http`; the second
/// under Mesos' process id): framework callers, like the gRPC scheduler.
pub(crate) const SCHEDULER_API_PATHS: [&str; 2] = ["/api/v1/scheduler", "/master/api/v1/scheduler"];

/// The realm of a request to `path` with `method`.
pub(crate) fn classify(method: &Method, path: &str) -> Realm {
    use agora_proto::v1::agent::agent_session_server::SERVICE_NAME as AGENT_SESSION;
    use agora_proto::v1::scheduler::scheduler_server::SERVICE_NAME as SCHEDULER;
    if grpc_method_of(path, SCHEDULER) {
        return Realm::GrpcFrameworks;
    }
    if grpc_method_of(path, AGENT_SESSION) {
        return Realm::GrpcAgents;
    }
    if SCHEDULER_API_PATHS.contains(&path) {
        return Realm::HttpFrameworks;
    }
    if *method == Method::OPTIONS {
        // A CORS preflight never carries credentials; it changes nothing.
        return Realm::Open;
    }
    let reads = *method == Method::GET || *method == Method::HEAD;
    if reads
        && (path == "/health"
            || path == "/master/health"
            || path == "/"
            || path.starts_with(agora_webui::ASSETS_PREFIX))
    {
        return Realm::Open;
    }
    if reads {
        Realm::ReadOnly
    } else {
        Realm::ReadWrite
    }
}

/// The layer: `router.layer(axum::middleware::from_fn_with_state(auth, authn::layer))`.
pub(crate) async fn layer(
    State(auth): State<Arc<Authentication>>,
    mut request: Request,
    next: Next,
) -> Response {
    let realm = classify(request.method(), request.uri().path());
    if realm == Realm::Open {
        request.extensions_mut().insert(Caller::ANONYMOUS);
        return next.run(request).await;
    }
    let from_script = from_page_script(&request);
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match agora_auth::basic::authenticate(
        auth.credentials.as_deref(),
        auth.required(realm),
        authorization,
    ) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => {
            tracing::info!(
                path = %request.uri().path(),
                realm = realm.name(),
                reason = %refused,
                "request refused: not authenticated"
            );
            let mut refused = refusal(realm, &refused.0);
            if from_script {
                // The page's own fetches: no challenge, so that the browser
                // does not pop its Basic dialog over the page's login form.
                refused.headers_mut().remove(header::WWW_AUTHENTICATE);
            }
            refused
        }
    }
}

/// Whether a request says it comes from a page's script
/// (`X-Requested-With: XMLHttpRequest`, as the web UI sends on each fetch).
fn from_page_script(request: &Request) -> bool {
    request
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"))
}

/// 401 with the realm's challenge (HTTP), or gRPC UNAUTHENTICATED.
fn refusal(realm: Realm, reason: &str) -> Response {
    match realm {
        Realm::GrpcFrameworks | Realm::GrpcAgents => {
            tonic::Status::unauthenticated(format!("{reason} ({})", realm.name()))
                .into_http::<axum::body::Body>()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::WWW_AUTHENTICATE,
                    format!("Basic realm=\"{}\"", realm.name()),
                ),
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
            ],
            format!("{reason}\n"),
        )
            .into_response(),
    }
}

/// The principal the authentication layer found for a request, if any.
pub(crate) fn principal_of(extensions: &axum::http::Extensions) -> Option<agora_auth::Principal> {
    extensions
        .get::<Caller>()
        .and_then(|c| c.principal().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_auth::basic::header_value;
    use agora_auth::credentials::Credential;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    #[test]
    fn classification() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(classify(&get, "/health"), Realm::Open);
        assert_eq!(classify(&get, "/"), Realm::Open);
        assert_eq!(classify(&get, "/ui/app.js"), Realm::Open);
        assert_eq!(classify(&get, "/state"), Realm::ReadOnly);
        assert_eq!(classify(&get, "/master/state"), Realm::ReadOnly);
        assert_eq!(classify(&get, "/metrics/snapshot"), Realm::ReadOnly);
        assert_eq!(classify(&get, "/api/frameworks"), Realm::ReadOnly);
        assert_eq!(classify(&get, "/agents/a/files/read"), Realm::ReadOnly);
        assert_eq!(classify(&post, "/api/v1"), Realm::ReadWrite);
        assert_eq!(classify(&post, "/master/teardown"), Realm::ReadWrite);
        assert_eq!(classify(&Method::PUT, "/weights"), Realm::ReadWrite);
        assert_eq!(classify(&post, "/health"), Realm::ReadWrite);
        assert_eq!(classify(&post, "/api/v1/scheduler"), Realm::HttpFrameworks);
        assert_eq!(
            classify(&post, "/master/api/v1/scheduler"),
            Realm::HttpFrameworks
        );
        assert_eq!(
            classify(&post, "/agora.v1.scheduler.Scheduler/Subscribe"),
            Realm::GrpcFrameworks
        );
        assert_eq!(
            classify(&post, "/agora.v1.agent.AgentSession/Open"),
            Realm::GrpcAgents
        );
    }

    fn app(auth: Authentication) -> Router {
        async fn who(request: Request) -> String {
            principal_of(request.extensions()).map_or_else(|| "anonymous".into(), |p| p.to_string())
        }
        Router::new()
            .route("/state", get(who))
            .route("/health", get(who))
            .route("/api/v1", post(who))
            .layer(axum::middleware::from_fn_with_state(Arc::new(auth), layer))
    }

    async fn send(app: &Router, method: Method, path: &str, auth: Option<&str>) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        app.clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn realms_refuse_without_credentials_and_know_the_caller_with_them() {
        let credentials = Credentials::from_list([Credential::new("ops", "pw")]);
        let auth = Authentication {
            credentials: Some(Arc::new(credentials)),
            http_readwrite: true,
            ..Authentication::default()
        };
        let app = app(auth);
        let good = header_value(&Credential::new("ops", "pw"));
        let bad = header_value(&Credential::new("ops", "nope"));

        let refused = send(&app, Method::POST, "/api/v1", None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"mesos-master-readwrite\""
        );
        let refused = send(&app, Method::POST, "/api/v1", Some(&bad)).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(!body(refused).await.contains("nope"));
        let ok = send(&app, Method::POST, "/api/v1", Some(&good)).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await, "ops");

        // Readonly is not required: anonymous, or the principal when given.
        let anon = send(&app, Method::GET, "/state", None).await;
        assert_eq!(body(anon).await, "anonymous");
        let named = send(&app, Method::GET, "/state", Some(&good)).await;
        assert_eq!(body(named).await, "ops");
        // Wrong credentials are refused even where none are required.
        let wrong = send(&app, Method::GET, "/state", Some(&bad)).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        // /health is open whatever is sent.
        let health = send(&app, Method::GET, "/health", Some(&bad)).await;
        assert_eq!(health.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_page_script_gets_no_challenge() {
        let auth = Authentication {
            credentials: Some(Arc::new(Credentials::from_list([Credential::new(
                "ops", "pw",
            )]))),
            http_readonly: true,
            ..Authentication::default()
        };
        let app = app(auth);
        let request = |xhr: Option<&str>| {
            let mut request = Request::get("/state");
            if let Some(value) = xhr {
                request = request.header("X-Requested-With", value);
            }
            app.clone()
                .oneshot(request.body(Body::empty()).expect("request"))
        };
        let script = request(Some("XMLHttpRequest")).await.expect("infallible");
        assert_eq!(script.status(), StatusCode::UNAUTHORIZED);
        assert!(script.headers().get(header::WWW_AUTHENTICATE).is_none());
        // Everyone else (Mesos' clients, curl, a browser's address bar)
        // still gets the challenge.
        for xhr in [None, Some("fetch")] {
            let plain = request(xhr).await.expect("infallible");
            assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                plain.headers()[header::WWW_AUTHENTICATE],
                "Basic realm=\"mesos-master-readonly\""
            );
        }
    }

    #[test]
    fn flags_show_the_path_never_a_secret() {
        let auth = Authentication {
            credentials: Some(Arc::new(Credentials::from_list([Credential::new(
                "ops", "hunter2",
            )]))),
            credentials_path: Some("/etc/agora/credentials.json".into()),
            agents: true,
            ..Authentication::default()
        };
        let flags = auth.flags();
        assert_eq!(flags["credentials"], "/etc/agora/credentials.json");
        assert_eq!(flags["authenticate_agents"], "true");
        assert_eq!(flags["authenticate_frameworks"], "false");
        assert!(!format!("{flags:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn grpc_refusals_are_unauthenticated_statuses() {
        let auth = Authentication {
            credentials: Some(Arc::new(Credentials::from_list([Credential::new(
                "fw", "pw",
            )]))),
            frameworks: true,
            ..Authentication::default()
        };
        let app = Router::new()
            .route(
                "/agora.v1.scheduler.Scheduler/Subscribe",
                post(|| async { "served" }),
            )
            .layer(axum::middleware::from_fn_with_state(Arc::new(auth), layer));
        let refused = send(
            &app,
            Method::POST,
            "/agora.v1.scheduler.Scheduler/Subscribe",
            None,
        )
        .await;
        assert_eq!(refused.status(), StatusCode::OK);
        assert_eq!(refused.headers()["grpc-status"], "16");
    }
}
