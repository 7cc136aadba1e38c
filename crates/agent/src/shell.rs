//! The agent's I/O shell around the pure [`AgentState`](crate::state::AgentState).
//!
//! Each file under `shell/` does one job, and they import each other in one
//! direction only (the actor on top, plain data at the bottom):
//!
//! - `actor.rs`: one tokio task owns the state machine; it routes the
//!   commands it receives (`command.rs`: the actor's protocol) into the
//!   state machine and runs the effects that come out (`actor/effects.rs`),
//!   pushes to the master and executors (`actor/streams.rs`), starts
//!   executors (`actor/launches.rs`), has containers destroyed, resized,
//!   measured and collected (`actor/containers.rs`), publishes the snapshot
//!   readers see (`actor/publish.rs`; the data is [`crate::snapshot`]'s),
//!   and sleeps until the next deadline (`actor/timers.rs`). It never
//!   blocks: whatever may (a launch, a destroy, a `/proc` scan, a disk walk,
//!   a checkpoint write) runs on a worker and comes back as a command.
//! - `session.rs`: the session with the master, which answers its pings.
//! - `executor_service.rs` and `executor_http.rs`: the executors' gRPC and
//!   HTTP APIs, one subscription path; `supervisor_service.rs`: the
//!   executor supervisor's attachment (`crate::host`), whose runs
//!   `actor/hosting.rs` keeps.
//! - `http.rs`: the router of the agent's port.
//! - `launching.rs`: the blocking part of a launch, run on a worker.
//! - `processes.rs`: executor processes by pid and start time, killed,
//!   watched, their exit explained; `crate::procfs`: what the agent reads of
//!   `/proc`.
//! - `checkpoint_writer.rs`: the checkpoint opened at start and written by
//!   one ordered writer thread.
//!
//! What the agent is started with ([`AgentOptions`]) and what it publishes
//! ([`AgentSnapshot`]) sit outside the shell, in the crate's `options.rs` and
//! `snapshot.rs`, so the HTTP modules the shell routes to never import it.
//!
//! Every inbound path reaches the actor through its one bounded queue
//! ([`COMMAND_QUEUE`]): a producer waits for room, so its peer waits on
//! flow control; nothing is dropped.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::containers::Containers;

pub use crate::options::{AgentError, AgentOptions};
pub use crate::snapshot::{AgentSnapshot, ContainerStatistics, TaskView};
pub use command::COMMAND_QUEUE;

mod actor;
mod checkpoint_writer;
mod command;
mod executor_http;
mod executor_service;
mod http;
mod launching;
mod processes;
mod session;
mod supervisor_service;
#[cfg(test)]
mod tests;

/// Streams one connection to the agent may hold open: the supervisor keeps
/// one per hosted executor on its one connection, so this bounds the
/// command tasks one agent runs at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 65_536;

/// The connection window for that many streams: h2 closes a connection
/// whose unread small DATA frames (a subscription, a status update: about
/// 100-250 bytes each) cost more than half the window, at up to 256 bytes
/// a frame. With hyper's 1 MiB, a supervisor whose executors all
/// re-subscribed at once after an agent restart (or sent their updates
/// during a batch) lost its connection from about 2,000 executors on, over
/// and over. 256 bytes for every stream allowed, twice: 32 MiB, which is
/// also what one connection may hold unread. The supervisor's side uses
/// the same window.
pub const CONNECTION_WINDOW: u32 = crate::executor::local::CONNECTION_WINDOW;
const _: () = assert!(CONNECTION_WINDOW as u64 >= MAX_STREAMS_PER_CONNECTION as u64 * 256 * 2);

/// Runs the agent on `listener` until `shutdown` is cancelled. Tasks keep
/// running when the agent stops: they live under their own executors.
pub async fn run_agent(
    listener: TcpListener,
    options: AgentOptions,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    // Both read before anything starts, so a bad file changes nothing.
    let tls_server = options.tls.server()?;
    let tls_client = options.tls.client()?;
    std::fs::create_dir_all(&options.work_dir).map_err(|source| AgentError::WorkDir {
        path: options.work_dir.clone(),
        source,
    })?;
    let (store, recovered) = checkpoint_writer::open_checkpoint(&options.work_dir)?;
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(AgentSnapshot::default()));
    let containers = Containers::new(&options.containers)?;
    let mut actor = actor::Actor::new(
        options.clone(),
        Box::new(store),
        containers,
        commands.clone(),
        snapshot_tx,
    )
    .map_err(|source| AgentError::Checkpoint {
        path: options.work_dir.join("meta"),
        source,
    })?;
    let token_key = actor.token_key.clone();
    // Bounded by the launches in flight: one socket pair per launch.
    let (executor_connections, handed_in) = mpsc::unbounded_channel();
    actor.executor_connections = Some(executor_connections);
    actor.recover(recovered);
    actor.find_old_sandboxes();
    if options.containers.hosted_executors {
        // Up before the first launch needs it.
        actor.start_supervisor();
    }
    let actor_task = tokio::spawn(actor.run(command_rx, shutdown.clone()));
    let session_task = tokio::spawn(session::master_session(
        options.master.clone(),
        options.authentication.credential.clone(),
        commands.clone(),
        shutdown.clone(),
        tls_client,
    ));
    let app = http::router(
        &options,
        snapshot_rx,
        commands,
        Arc::new(AtomicU64::new(1)),
        token_key,
    );
    // One stream per hosted executor, all on its supervisor's one
    // connection (the pair, or the port after a restart).
    let limits = agora_net::ServeLimits {
        http2_max_concurrent_streams: MAX_STREAMS_PER_CONNECTION,
        http2_connection_window: CONNECTION_WINDOW,
        ..agora_net::ServeLimits::default()
    };
    // The executors' first connections: the same routes and layers as the
    // port, over the socket pairs handed to executors at launch.
    let local_task = tokio::spawn(agora_net::serve_local(
        handed_in,
        app.clone(),
        limits.clone(),
        shutdown.clone(),
    ));
    tracing::info!(address = %options.advertise, master = %options.master, "agent serving");
    // The shared accept loop: connection cap, header-read timeout, TCP_NODELAY.
    let tls = tls_server.map(|tls| tls.acceptor());
    agora_net::serve_tls(listener, app, limits, tls, shutdown.clone()).await?;
    shutdown.cancel();
    let _ = actor_task.await;
    let _ = session_task.await;
    let _ = local_task.await;
    Ok(())
}
