//! `agora-sim`: N simulated agents against a real master (see the library's
//! docs). Prints `agora-sim books on http://127.0.0.1:PORT` once the agents
//! are started, then runs until SIGTERM or Ctrl-C.
//!
//! ```text
//! agora-sim --master 127.0.0.1:5050 --agents 10000 --http-port 0
//! agora-sim --master zk://127.0.0.1:2181/agora --agents 500 --task-duration-ms 100
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use agora_sim::{SimConfig, Timing};
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "agora-sim",
    about = "Simulated Agora agents against a real master"
)]
struct Args {
    /// The master: HOST:PORT, or zk://HOST:PORT/PATH to follow the leader.
    #[arg(long)]
    master: String,
    /// How many agents to simulate.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Each agent's resources.
    #[arg(long, default_value = "cpus:8;mem:16384")]
    resources: String,
    /// Each agent's text attributes (name:value;...); every agent also has rack:r<i % racks>.
    #[arg(long, default_value = "")]
    attributes: String,
    #[arg(long, default_value_t = 10)]
    racks: usize,
    /// Agent hostnames are PREFIX-<i>.
    #[arg(long, default_value = "sim")]
    hostname_prefix: String,
    /// Agents sharing one gRPC connection (1: one each, as real agents).
    #[arg(long, default_value_t = 1)]
    agents_per_connection: usize,
    /// A task's run time unless its label agora-sim.duration-ms says otherwise (0: finishes at once).
    #[arg(long, default_value_t = 0)]
    task_duration_ms: u64,
    /// First resend of an unacknowledged status update, doubling (the agent's is 10 s).
    #[arg(long, default_value_t = 10_000)]
    status_retry_ms: u64,
    /// Longest wait between resends (the agent's is 600 s).
    #[arg(long, default_value_t = 600_000)]
    status_retry_max_ms: u64,
    /// Port for the books endpoint on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    http_port: u16,
    /// Runtime worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Each agent holds a socket (and the master one per agent): lift the soft
/// limit on open files to the hard one.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "cannot raise the open files limit");
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGORA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    raise_open_files_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        runtime.worker_threads(args.threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = SimConfig {
        master: args.master,
        agents: args.agents,
        hostname_prefix: args.hostname_prefix,
        resources: args.resources,
        attributes: args.attributes,
        racks: args.racks,
        agents_per_connection: args.agents_per_connection,
        timing: Timing {
            task_duration: Duration::from_millis(args.task_duration_ms),
            retry_min: Duration::from_millis(args.status_retry_ms.max(1)),
            retry_max: Duration::from_millis(args.status_retry_max_ms.max(1)),
        },
        seed: args.seed,
    };
    let shutdown = CancellationToken::new();
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, args.http_port));
    let (_sim, bound) = agora_sim::start(config, http, shutdown.clone())
        .await
        .context("starting the simulator")?;
    println!("agora-sim books on http://{bound}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping");
    shutdown.cancel();
    Ok(())
}
