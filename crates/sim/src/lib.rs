//! `agora-sim`: an agent simulator for scale tests and benchmarks (issue 16).
//!
//! One process opens N real agent sessions to a master over gRPC (the
//! `AgentSession.Open` stream of `proto/agora/v1/agent.proto`), each with its
//! own hostname, resources and attributes; it answers pings, re-registers
//! with all its tasks when the leader moves (a fixed address or `zk://`, as
//! `agora agent --master` takes), and runs tasks as simulated executors with
//! no processes: STARTING, RUNNING, then FINISHED after a run time, with the
//! real agent's status-update acknowledgement and retry.
//!
//! Layout: `agent` is one agent's pure state machine (inputs with the time,
//! effects out); `session` is its tokio/tonic edge (one task per agent on a
//! shared runtime); `leader` follows the leading master; `http` serves the
//! books ([`books::Books`], [`books::Stats`]) on 127.0.0.1; `procfs` reads
//! CPU time and RSS, so a benchmark can report the master's cost apart from
//! the simulator's. A test tool: nothing in the shipped `agora` binary uses it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use agora_proto::v1 as pb;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod agent;
pub mod books;
mod http;
mod leader;
pub mod procfs;
mod session;

pub use agent::{DURATION_LABEL, HOLD_LABEL, Timing};

use agent::{Session, SimAgent};
use books::{AgentBooks, Books, Stats, TaskBooks};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot follow master {master}: {reason}")]
    Master { master: String, reason: String },
    #[error("agent resources {resources:?} are invalid: {reason}")]
    Resources { resources: String, reason: String },
    #[error("agent attributes {attributes:?} are invalid: expected name:value;name:value")]
    Attributes { attributes: String },
    #[error("agents per connection must be between 1 and {max}, not {given}")]
    AgentsPerConnection { given: usize, max: usize },
    #[error("cannot serve the simulator's books on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The master allows 200 concurrent streams on one HTTP/2 connection; a
/// group stays well under it (a re-registration opens the new stream
/// before the master has closed the old one).
pub const MAX_AGENTS_PER_CONNECTION: usize = 100;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `host:port` or `zk://host:port/path`.
    pub master: String,
    pub agents: usize,
    /// Agent `i` is `<hostname_prefix>-<i>`.
    pub hostname_prefix: String,
    /// Each agent's resources, in the text form (`cpus:8;mem:16384`).
    pub resources: String,
    /// Each agent's text attributes (`zone:a;os:linux`); every agent also
    /// gets `rack:r<i % racks>`.
    pub attributes: String,
    pub racks: usize,
    pub agents_per_connection: usize,
    pub timing: Timing,
    /// Seeds the agents' update uuids (so two simulators never collide).
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            master: "127.0.0.1:5050".into(),
            agents: 1,
            hostname_prefix: "sim".into(),
            resources: "cpus:8;mem:16384".into(),
            attributes: String::new(),
            racks: 10,
            agents_per_connection: 1,
            timing: Timing::default(),
            seed: 0,
        }
    }
}

/// The running simulator: every agent's state machine, and the release
/// switch for held tasks.
pub struct Simulator {
    agents: Vec<Arc<Mutex<SimAgent>>>,
    release: watch::Sender<u64>,
}

impl Simulator {
    fn agent_infos(config: &SimConfig) -> Result<Vec<pb::AgentInfo>, SimError> {
        let resources = agora_core::Resources::parse(&config.resources)
            .map_err(|e| SimError::Resources {
                resources: config.resources.clone(),
                reason: e.to_string(),
            })?
            .to_proto(None);
        let mut attributes = Vec::new();
        for pair in config
            .attributes
            .split(';')
            .filter(|p| !p.trim().is_empty())
        {
            let (name, value) = pair.split_once(':').ok_or_else(|| SimError::Attributes {
                attributes: config.attributes.clone(),
            })?;
            attributes.push(text_attribute(name.trim(), value.trim()));
        }
        Ok((0..config.agents)
            .map(|i| {
                let mut attributes = attributes.clone();
                attributes.push(text_attribute(
                    "rack",
                    &format!("r{}", i % config.racks.max(1)),
                ));
                pb::AgentInfo {
                    hostname: format!("{}-{i}", config.hostname_prefix),
                    port: Some(5051),
                    resources: resources.clone(),
                    attributes,
                    id: None,
                }
            })
            .collect())
    }

    fn lock(agent: &Mutex<SimAgent>) -> std::sync::MutexGuard<'_, SimAgent> {
        agent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every agent's books, one agent locked at a time.
    pub fn books(&self) -> Books {
        let agents = self
            .agents
            .iter()
            .enumerate()
            .map(|(index, agent)| {
                let agent = Self::lock(agent);
                let (session, master_id, epoch) = match agent.session() {
                    Session::Disconnected => ("disconnected", None, None),
                    Session::Registering => ("registering", None, None),
                    Session::Registered { master_id, epoch } => {
                        ("registered", Some(master_id.clone()), *epoch)
                    }
                    Session::Refused(_) => ("refused", None, None),
                };
                AgentBooks {
                    index,
                    hostname: agent.hostname().to_string(),
                    agent_id: agent.agent_id().map(|id| id.as_str().to_string()),
                    session: session.into(),
                    master_id,
                    epoch,
                    live: agent
                        .live_tasks()
                        .map(|t| TaskBooks {
                            framework_id: t.framework_id.as_str().into(),
                            task_id: t.task_id.as_str().into(),
                            state: agora_core::task::name(t.state).into(),
                            unacknowledged: t.unacknowledged,
                        })
                        .collect(),
                    ended: agent
                        .ended()
                        .iter()
                        .map(|t| TaskBooks {
                            framework_id: t.framework_id.as_str().into(),
                            task_id: t.task_id.as_str().into(),
                            state: agora_core::task::name(t.state).into(),
                            unacknowledged: 0,
                        })
                        .collect(),
                }
            })
            .collect();
        Books { agents }
    }

    /// Totals over every agent, and this process's CPU and memory.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            agents: self.agents.len(),
            ..Stats::default()
        };
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        for agent in &self.agents {
            let agent = Self::lock(agent);
            match agent.session() {
                Session::Registered { master_id, .. } => {
                    stats.registered += 1;
                    *stats
                        .registered_by_master
                        .entry(master_id.clone())
                        .or_default() += 1;
                }
                Session::Refused(_) => stats.refused += 1,
                Session::Disconnected | Session::Registering => {}
            }
            for task in agent.live_tasks() {
                stats.live_tasks += 1;
                stats.unacknowledged += task.unacknowledged;
                *by_state
                    .entry(agora_core::task::name(task.state).to_string())
                    .or_default() += 1;
            }
            stats.ended += agent.ended().len();
            stats.finished += agent
                .ended()
                .iter()
                .filter(|t| t.state == pb::TaskState::TaskFinished)
                .count();
            let c = agent.counters();
            stats.registrations += c.registrations;
            stats.launches += c.launches;
            stats.updates_sent += c.updates_sent;
            stats.updates_resent += c.updates_resent;
            stats.acks += c.acks;
            stats.pings += c.pings;
        }
        stats.live_by_state = by_state;
        if let Some(usage) = procfs::own() {
            stats.cpu_seconds = usage.cpu.as_secs_f64();
            stats.rss_mb = usage.rss_mb();
        }
        stats
    }

    /// Held tasks finish; returns the release's number.
    pub fn release(&self) -> u64 {
        let mut generation = 0;
        self.release.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        tracing::info!(generation, "held tasks released");
        generation
    }
}

fn text_attribute(name: &str, value: &str) -> pb::Attribute {
    pb::Attribute {
        name: name.to_string(),
        r#type: Some(pb::value::Type::Text as i32),
        text: Some(pb::value::Text {
            value: value.to_string(),
        }),
        ..Default::default()
    }
}

/// Starts every agent's session and serves the books on `http` (127.0.0.1,
/// port 0 for any); returns the running simulator and the address it
/// serves on. Everything stops when `shutdown` is cancelled.
pub async fn start(
    config: SimConfig,
    http: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(Arc<Simulator>, SocketAddr), SimError> {
    if !(1..=MAX_AGENTS_PER_CONNECTION).contains(&config.agents_per_connection) {
        return Err(SimError::AgentsPerConnection {
            given: config.agents_per_connection,
            max: MAX_AGENTS_PER_CONNECTION,
        });
    }
    let infos = Simulator::agent_infos(&config)?;
    let endpoint = leader::follow(&config.master, shutdown.clone())?;
    let (release_tx, release_rx) = watch::channel(0u64);
    let groups = config.agents.div_ceil(config.agents_per_connection).max(1);
    let shared = Arc::new(session::Shared {
        endpoint,
        release: release_rx,
        shutdown: shutdown.clone(),
        start: Instant::now(),
        channels: session::ChannelPool::new(groups),
    });
    let agents: Vec<Arc<Mutex<SimAgent>>> = infos
        .into_iter()
        .enumerate()
        .map(|(i, info)| {
            let seed = config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            Arc::new(Mutex::new(SimAgent::new(info, config.timing, seed)))
        })
        .collect();
    let sim = Arc::new(Simulator {
        agents: agents.clone(),
        release: release_tx,
    });
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .map_err(|source| SimError::Serve { addr: http, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| SimError::Serve { addr: http, source })?;
    let router = http::router(sim.clone());
    let serve_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { serve_shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the books endpoint stopped");
        }
    });
    for (i, agent) in agents.into_iter().enumerate() {
        let group = i / config.agents_per_connection;
        tokio::spawn(session::run(agent, group, shared.clone()));
    }
    tracing::info!(agents = config.agents, master = %config.master, books = %bound, "simulated agents started");
    Ok((sim, bound))
}
