//! The master's wiring: `run_master` reads the options, binds the routes
//! (gRPC and HTTP on one port) to the published snapshot and the gate, and
//! runs the leadership terms (see `leadership.rs`). The actor that
//! owns the state machine is in `actor.rs`, its protocol in
//! `protocol.rs`, the gRPC services in `services.rs`.

use std::sync::Arc;

use agora_proto::v1 as pb;
use agora_proto::v1::agent::agent_session_server::AgentSessionServer;
use agora_proto::v1::scheduler::scheduler_server::SchedulerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::error::ShellError;
use crate::leadership::SERVER;
use crate::metrics::MasterMetrics;
pub use crate::options::MasterOptions;
use crate::protocol::Gate;
use crate::services::Services;
use crate::snapshot::StateSnapshot;
use crate::state::MasterConfig;
use crate::supervisor::{Ended, Supervisor};
/// The route that carries every method of a gRPC service.
pub fn grpc_path<S: tonic::server::NamedService>() -> String {
    format!("/{}/{{*method}}", S::NAME)
}

/// Serves the master on `listener` (gRPC and HTTP on one port) until
/// `shutdown` is cancelled, or until it loses a leadership it held (an error:
/// the process should exit and rejoin as a follower, as Mesos masters do).
pub async fn run_master(
    listener: TcpListener,
    options: MasterOptions,
    shutdown: CancellationToken,
) -> Result<(), ShellError> {
    serve_master(listener, options, None, shutdown).await
}

/// [`run_master`] with the registry kept in `store` instead of the one the
/// options name (tests inject failing stores this way).
pub async fn run_master_with_store(
    listener: TcpListener,
    options: MasterOptions,
    store: Arc<dyn agora_coord::RegistryStore>,
    shutdown: CancellationToken,
) -> Result<(), ShellError> {
    serve_master(listener, options, Some(store), shutdown).await
}

async fn serve_master(
    listener: TcpListener,
    options: MasterOptions,
    store: Option<Arc<dyn agora_coord::RegistryStore>>,
    shutdown: CancellationToken,
) -> Result<(), ShellError> {
    // Read before anything starts, so a bad file changes nothing.
    let tls = options.tls.server()?.map(|tls| tls.acceptor());
    let agent_tls = options.tls.client()?.map(crate::files_proxy::AgentTls);
    let master_id = uuid::Uuid::new_v4().to_string();
    let (gate_tx, gate_rx) = watch::channel(Gate::Following { leader: None });
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(StateSnapshot::follower(
        &master_id,
        &options.hostname,
        None,
    )));
    let services = Services::new(
        gate_rx.clone(),
        snapshot_rx.clone(),
        MasterConfig::new(pb::MasterInfo::default()).heartbeat_interval,
    );
    // gRPC services on their own paths; everything else is the HTTP API
    // (whose fallback answers 404 to unknown paths).
    // This master's measurements: recorded by its term, read by the routes.
    let metrics = Arc::new(MasterMetrics::default());
    // The utilisation chart's samples, for `/api/utilisation`.
    let utilisation = crate::ui_api::UtilisationSamples::default();
    let app = crate::http::router(
        snapshot_rx.clone(),
        gate_rx,
        metrics.clone(),
        utilisation.clone(),
    )
    .merge(crate::scheduler_http::router(services.clone()))
    .merge(crate::operator_api::router(
        services.clone(),
        metrics.clone(),
    ))
    .route_service(
        &grpc_path::<SchedulerServer<Services>>(),
        SchedulerServer::new(services.clone())
            .max_decoding_message_size(agora_net::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(agora_net::MAX_MESSAGE_BYTES),
    )
    .route_service(
        &grpc_path::<AgentSessionServer<Services>>(),
        AgentSessionServer::new(services)
            .max_decoding_message_size(agora_net::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(agora_net::MAX_MESSAGE_BYTES),
    );
    // `get_endpoints`, then (outermost, so first) authentication over every
    // route, HTTP and gRPC alike.
    let app = app.layer(axum::middleware::from_fn_with_state(
        options.acls.clone(),
        crate::authz_views::guard_endpoints,
    ));
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(options.authentication.clone()),
        crate::authn::layer,
    ));
    tracing::info!(address = %options.advertise, master_id = %master_id, "master serving");
    // The files proxy reaches agents with the master's CA (`files_proxy`).
    let app = match agent_tls {
        Some(agent_tls) => app.layer(axum::Extension(agent_tls)),
        None => app,
    };
    // The utilisation chart's sampler; it ends with the master (when the
    // snapshot's sender is gone).
    tokio::spawn(crate::ui_api::sample_utilisation(
        snapshot_rx.clone(),
        utilisation,
    ));
    // The server stands or falls with every term (see `supervisor`).
    let mut tasks = Supervisor::default();
    let serve = agora_net::serve_tls(
        listener,
        app,
        agora_net::ServeLimits::default(),
        tls,
        shutdown.clone(),
    );
    tasks.watch(
        SERVER,
        tokio::spawn(async move { serve.await.map_err(ShellError::Serve) }),
    );
    let terms = crate::leadership::Terms {
        options,
        master_id,
        gate: gate_tx,
        snapshot: snapshot_tx,
        shutdown: shutdown.clone(),
        store,
        metrics,
    };
    let outcome = terms.run(&mut tasks).await;
    shutdown.cancel();
    // Still watched unless it ended the term.
    match tasks.join(SERVER).await {
        Some(Ended::Failed { error, .. }) if outcome.is_ok() => Err(error),
        Some(Ended::Died { reason, .. }) => {
            tracing::error!(reason = %reason, "http server task failed");
            outcome
        }
        _ => outcome,
    }
}
