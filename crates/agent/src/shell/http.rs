//! The agent's HTTP API on its port: `/health`, `/monitor/statistics`,
//! the Mesos endpoints, the files API, the operator API, the executor
//! APIs (gRPC and HTTP) and `/metrics`, behind authentication and
//! `get_endpoints`. Handlers read the published snapshot; only statistics
//! ask the actor (which has them measured on a worker).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use agora_auth::executor_token::TokenKey;
use agora_proto::v1::executor::executor_server::ExecutorServer;
use agora_proto::v1::supervisor::supervisor_server::SupervisorServer;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::command::AgentCommand;
use super::executor_http;
use super::executor_service::ExecutorService;
use super::supervisor_service::SupervisorService;
use crate::options::AgentOptions;
use crate::snapshot::{AgentSnapshot, ContainerStatistics};

/// that say which containers each viewer may see.
type StatisticsState = (
    mpsc::Sender<AgentCommand>,
    watch::Receiver<Arc<AgentSnapshot>>,
    Arc<agora_auth::acl::Acls>,
);

/// Mesos' `/monitor/statistics`: resource use of every container the
/// viewer may see (`crate::authz_views`).
async fn statistics(
    State((commands, snapshot, acls)): State<StatisticsState>,
    viewer: crate::authz_views::Viewer,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (reply, answer) = oneshot::channel();
    let unavailable = (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "agent is shutting down",
    );
    if commands
        .send(AgentCommand::Statistics { reply })
        .await
        .is_err()
    {
        return unavailable.into_response();
    }
    let Ok(entries) = answer.await else {
        return unavailable.into_response();
    };
    let current = snapshot.borrow().clone();
    // Filtered per container: off the async workers.
    agora_net::off_workers::answer(move || {
        let shown: Vec<ContainerStatistics> =
            crate::authz_views::filtered_statistics(entries, &current, &acls, viewer.0.as_ref());
        Json(shown).into_response()
    })
    .await
}

/// Per-task statistics for `/metrics`, asked of the actor as `/monitor/statistics` does.
fn task_stats_source(commands: mpsc::Sender<AgentCommand>) -> crate::metrics::TaskStatsSource {
    Arc::new(move || {
        let commands = commands.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            if commands
                .send(AgentCommand::Statistics { reply })
                .await
                .is_err()
            {
                return Vec::new();
            }
            let entries = answer.await.unwrap_or_default();
            entries.iter().map(crate::metrics::task_stats_of).collect()
        })
    })
}

/// What `/health` answers.
#[derive(Debug, Serialize)]
pub(super) struct Health {
    /// Always `ok`: the process is alive and serving (a liveness probe must
    /// not restart an agent because its master is away).
    status: &'static str,
    /// `connected` once registered with a master; `refused` while the
    /// master refuses its registration (`reason` says why); else
    /// `disconnected`.
    master: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `full` while new tasks are refused for lack of disk.
    disk: &'static str,
}

/// Mesos' `/health` is process liveness, so this is 200 whenever the agent
/// serves; the body says what an operator needs to know besides.
pub(super) async fn health(
    State(snapshot): State<watch::Receiver<Arc<AgentSnapshot>>>,
) -> Json<Health> {
    let current = snapshot.borrow().clone();
    Json(Health {
        status: "ok",
        master: match (current.registered, &current.refused) {
            (true, _) => "connected",
            (false, Some(_)) => "refused",
            (false, None) => "disconnected",
        },
        reason: current.refused.clone().filter(|_| !current.registered),
        disk: if current.disk_full { "full" } else { "ok" },
    })
}

/// Every route of the agent's port, behind `get_endpoints` and (outermost,
/// so first) authentication; the executor APIs are left to their tokens.
/// `next_executor_conn` numbers executor streams across both executor APIs.
pub(super) fn router(
    options: &AgentOptions,
    snapshot_rx: watch::Receiver<Arc<AgentSnapshot>>,
    commands: mpsc::Sender<AgentCommand>,
    next_executor_conn: Arc<AtomicU64>,
    token_key: TokenKey,
) -> axum::Router {
    let service = ExecutorService {
        commands: commands.clone(),
        next_conn: next_executor_conn.clone(),
        key: token_key.clone(),
    };
    let supervisors = SupervisorService {
        commands: commands.clone(),
        next_conn: next_executor_conn.clone(),
        key: token_key.clone(),
    };
    let app = axum::Router::new()
        .route("/health", get(health))
        .with_state(snapshot_rx.clone())
        // `/state` (Agora's, with Mesos' keys), `/slave(1)/state`, `/metrics/snapshot`, `/version`.
        .merge(crate::mesos_v0::router(snapshot_rx.clone(), options))
        .merge(
            axum::Router::new()
                .route("/monitor/statistics", get(statistics))
                .with_state((commands.clone(), snapshot_rx.clone(), options.acls.clone())),
        )
        .merge(crate::files_authz::guard(
            crate::files::router(&options.work_dir),
            options.acls.clone(),
            snapshot_rx.clone(),
        ))
        .merge(crate::operator_api::router(snapshot_rx.clone(), options))
        .merge(executor_http::router(executor_http::ExecutorApi {
            commands: commands.clone(),
            next_conn: next_executor_conn,
            key: token_key,
        }))
        .merge(crate::metrics::router(
            snapshot_rx.clone(),
            Some(task_stats_source(commands)),
        ))
        .route_service(
            &format!(
                "/{}/{{*method}}",
                <ExecutorServer<ExecutorService> as tonic::server::NamedService>::NAME
            ),
            ExecutorServer::new(service),
        )
        .route_service(
            &format!(
                "/{}/{{*method}}",
                <SupervisorServer<SupervisorService> as tonic::server::NamedService>::NAME
            ),
            SupervisorServer::new(supervisors),
        );
    let app = app.layer(axum::middleware::from_fn_with_state(
        options.acls.clone(),
        crate::files_authz::guard_endpoints,
    ));
    app.layer(axum::middleware::from_fn_with_state(
        Arc::new(options.authentication.clone()),
        crate::authn::layer,
    ))
}
