//! The I/O edge of one simulated agent: finds the leader, opens the
//! `AgentSession.Open` stream, feeds what the master sends and the agent's
//! timers to its state machine, and sends the effects; reconnects with a
//! jittered backoff when the stream ends or the leader moves, as the real
//! agent's `shell/session.rs` does.
//!
//! Every agent is one tokio task on the simulator's runtime. Its state
//! machine sits behind a mutex only so that `/books` can read it; the lock
//! is never held across an await. Agents share gRPC connections in groups
//! ([`ChannelPool`]; one connection per agent by default, as real agents).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agora_core::Backoff;
use agora_proto::v1::agent::agent_session_client::AgentSessionClient;
use agora_proto::v1::agent::{AgentMessage, MasterMessage};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::agent::{Effect, Now, SimAgent};
use crate::leader::Endpoint;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every session shares.
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    /// Bumped by `POST /release`: held tasks finish.
    pub(crate) release: watch::Receiver<u64>,
    pub(crate) shutdown: CancellationToken,
    /// The simulator's start: monotonic time zero of every agent.
    pub(crate) start: Instant,
    pub(crate) channels: ChannelPool,
}

impl Shared {
    fn now(&self) -> Now {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Now {
            monotonic: self.start.elapsed(),
            wall,
        }
    }
}

/// gRPC connections, one per group of agents, each to the endpoint it was
/// opened to; a group whose leader moved opens a new one.
pub(crate) struct ChannelPool {
    groups: Vec<tokio::sync::Mutex<Option<(String, Channel)>>>,
}

impl ChannelPool {
    pub(crate) fn new(groups: usize) -> Self {
        Self {
            groups: (0..groups).map(|_| tokio::sync::Mutex::new(None)).collect(),
        }
    }

    async fn get(&self, group: usize, endpoint: &str) -> Result<Channel, String> {
        let mut slot = self.groups[group % self.groups.len()].lock().await;
        if let Some((to, channel)) = slot.as_ref()
            && to == endpoint
        {
            return Ok(channel.clone());
        }
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("invalid master endpoint {endpoint}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
            })?;
        *slot = Some((endpoint.to_string(), channel.clone()));
        Ok(channel)
    }

    /// Forgets a group's connection (it failed): the next session opens another.
    async fn forget(&self, group: usize, endpoint: &str) {
        let mut slot = self.groups[group % self.groups.len()].lock().await;
        if slot.as_ref().is_some_and(|(to, _)| to == endpoint) {
            *slot = None;
        }
    }
}

fn lock(agent: &Mutex<SimAgent>) -> std::sync::MutexGuard<'_, SimAgent> {
    agent.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one session ended.
enum Ended {
    /// Reconnect after a backoff.
    Retry {
        heard_from_master: bool,
    },
    /// The master is of an older term: wait for another leader.
    Fenced,
    Shutdown,
}

/// Runs agent `agent` until shutdown: session after session.
pub(crate) async fn run(agent: Arc<Mutex<SimAgent>>, group: usize, shared: Arc<Shared>) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut endpoint_rx = shared.endpoint.clone();
    loop {
        // Wait for a leader.
        let endpoint = loop {
            if let Some(endpoint) = endpoint_rx.borrow_and_update().clone() {
                break endpoint;
            }
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                changed = endpoint_rx.changed() => if changed.is_err() { return },
            }
        };
        let ended = session(&agent, group, &shared, &endpoint, &mut endpoint_rx).await;
        lock(&agent).disconnected();
        match ended {
            Ended::Shutdown => return,
            Ended::Retry { heard_from_master } => {
                if heard_from_master {
                    backoff.reset();
                } else {
                    shared.channels.forget(group, &endpoint).await;
                }
            }
            Ended::Fenced => {
                // Until the leader moves away from this endpoint.
                loop {
                    if endpoint_rx.borrow_and_update().as_deref() != Some(endpoint.as_str()) {
                        break;
                    }
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => return,
                        changed = endpoint_rx.changed() => if changed.is_err() { return },
                    }
                }
            }
        }
        // As the real agent: the pause ends early when another leader is
        // named (the backoff grew against the one that is gone).
        let delay = backoff.next_delay_jittered(rand::rng().random::<f64>());
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            if endpoint_rx
                .borrow_and_update()
                .as_deref()
                .is_some_and(|now| now != endpoint.as_str())
            {
                backoff.reset();
                break;
            }
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                () = &mut sleep => break,
                changed = endpoint_rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// One session stream, from `Register` to its end.
async fn session(
    agent: &Mutex<SimAgent>,
    group: usize,
    shared: &Shared,
    endpoint: &str,
    endpoint_rx: &mut Endpoint,
) -> Ended {
    let hostname = lock(agent).hostname().to_string();
    let channel = match shared.channels.get(group, endpoint).await {
        Ok(channel) => channel,
        Err(error) => {
            tracing::debug!(hostname, endpoint, error, "master unreachable");
            return Ended::Retry {
                heard_from_master: false,
            };
        }
    };
    let (tx, rx) = mpsc::unbounded_channel::<AgentMessage>();
    // Unbounded: what waits is bounded by the state machine (one update in
    // flight per task, a pong per ping).
    let _ = tx.send(lock(agent).connected());
    let request = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    let mut inbound = match AgentSessionClient::new(channel).open(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            tracing::debug!(hostname, code = ?status.code(), message = %status.message(), "master refused the session");
            return Ended::Retry {
                heard_from_master: false,
            };
        }
    };
    let mut release = shared.release.clone();
    let mut heard_from_master = false;
    let mut effects = Vec::new();
    // Each turn handles one input; bounded by the session's life (the
    // stream ends, the leader moves, or shutdown).
    loop {
        let deadline = lock(agent).next_deadline().map(|d| shared.start + d);
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Ended::Shutdown,
            changed = endpoint_rx.changed() => {
                if changed.is_err() {
                    return Ended::Shutdown;
                }
                let moved = endpoint_rx
                    .borrow_and_update()
                    .as_deref()
                    .is_some_and(|now| now != endpoint);
                if moved {
                    tracing::debug!(hostname, "the leading master changed; re-registering");
                    return Ended::Retry { heard_from_master };
                }
            }
            changed = release.changed() => {
                if changed.is_ok() {
                    lock(agent).release(shared.now(), &mut effects);
                }
            }
            _ = timer => lock(agent).on_tick(shared.now(), &mut effects),
            message = inbound.message() => match message {
                Ok(Some(MasterMessage { kind: Some(kind) })) => {
                    heard_from_master = true;
                    lock(agent).on_master(shared.now(), kind, &mut effects);
                }
                Ok(Some(MasterMessage { kind: None })) => {}
                Ok(None) => return Ended::Retry { heard_from_master },
                Err(status) => {
                    tracing::debug!(hostname, code = ?status.code(), message = %status.message(), "master session ended");
                    return Ended::Retry { heard_from_master };
                }
            },
        }
        for effect in effects.drain(..) {
            match effect {
                Effect::Send(message) => {
                    if tx.send(message).is_err() {
                        return Ended::Retry { heard_from_master };
                    }
                }
                Effect::Fenced => return Ended::Fenced,
            }
        }
    }
}
