//! The session with the master: finds the leading master, opens the
//! agent's stream to it, feeds what the master sends to the actor, and
//! reconnects with backoff when the stream ends, gets stuck, or the leader
//! moves. It answers the master's pings itself: a pong says the agent is
//! alive and connected, is ordered with nothing, and so does not wait
//! behind the actor's work. (An actor that stops taking commands still
//! stops the pongs: the session then waits for room in the actor's queue
//! and reads nothing more, pings included.)

use std::time::Duration;

use agora_core::Backoff;
use agora_net::outbox::{Inbox, outbox};
use agora_proto::v1::agent::agent_session_client::AgentSessionClient;
use agora_proto::v1::agent::{AgentMessage, MasterMessage, agent_message, master_message};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::Request;

use super::command::AgentCommand;

/// Pongs waiting for the master to read them, per session.
const PONG_QUEUE: usize = 16;

/// The session's outbound stream: what the actor pushes, in order, with
/// the session's pongs merged in. It ends when the actor's part ends (the
/// actor gave the session up: stuck, or a master of an older term), so the
/// master sees the session close as before.
fn outbound(
    from_actor: Inbox<AgentMessage>,
    pongs: mpsc::Receiver<AgentMessage>,
) -> impl tokio_stream::Stream<Item = AgentMessage> + Send + 'static {
    let from_actor = from_actor
        .map_while(Result::ok)
        .map(Some)
        .chain(tokio_stream::once(None));
    let pongs = tokio_stream::wrappers::ReceiverStream::new(pongs).map(Some);
    from_actor.merge(pongs).map_while(|message| message)
}

/// The pong that answers `message`, if it is a ping.
fn pong_for(message: &MasterMessage) -> Option<AgentMessage> {
    let Some(master_message::Kind::Ping(ping)) = &message.kind else {
        return None;
    };
    Some(AgentMessage {
        kind: Some(agent_message::Kind::Pong(agent_message::Pong {
            seq: ping.seq,
        })),
    })
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The next delay of `backoff`, drawn between half and all of it.
fn jittered(backoff: &mut Backoff) -> Duration {
    backoff.next_delay_jittered(rand::rng().random::<f64>())
}

/// The master's gRPC endpoint: `https://` whenever the agent has a CA to
/// verify it with, `http://` otherwise, whatever scheme `master` names.
fn master_endpoint(master: &str, https: bool) -> String {
    agora_tls::with_scheme(master, https)
}

/// Keeps a session with the master open, re-registering with backoff.
/// Where the agent finds the leading master: a fixed address, or whoever
/// leads according to ZooKeeper (`zk://host:2181/agora`).
enum MasterSource {
    Fixed(String),
    /// The detector, and whether the leader is reached over https.
    ZooKeeper(agora_coord::LeaderDetector, bool),
}

impl MasterSource {
    fn new(master: &str, https: bool) -> Self {
        if master.starts_with("zk://") {
            match agora_coord::ZkUrl::parse(master) {
                Ok(url) => {
                    return MasterSource::ZooKeeper(
                        agora_coord::LeaderDetector::zookeeper(
                            &url,
                            agora_coord::ZkOptions::default(),
                        ),
                        https,
                    );
                }
                Err(e) => {
                    tracing::error!(master, error = %e, "invalid zk url; using it as an address")
                }
            }
        }
        MasterSource::Fixed(master_endpoint(master, https))
    }

    /// The leader's endpoint, waiting (until shutdown) while none is known.
    async fn endpoint(&self, shutdown: &CancellationToken) -> Option<String> {
        match self {
            MasterSource::Fixed(endpoint) => Some(endpoint.clone()),
            MasterSource::ZooKeeper(detector, https) => loop {
                if shutdown.is_cancelled() {
                    return None;
                }
                if let Some(leader) = detector.wait_for_leader(Duration::from_secs(5)).await {
                    let https = *https || leader.is_https();
                    return Some(master_endpoint(&leader.endpoint(), https));
                }
                tracing::warn!("no leading master known yet");
            },
        }
    }

    /// Resolves when the leader changes away from `endpoint` (never for a fixed master).
    async fn leader_moved(&self, endpoint: &str) {
        match self {
            MasterSource::Fixed(_) => std::future::pending().await,
            MasterSource::ZooKeeper(detector, https) => {
                let mut leader = detector.leader();
                loop {
                    let current = leader
                        .borrow_and_update()
                        .as_ref()
                        .map(|l| master_endpoint(&l.endpoint(), *https || l.is_https()));
                    if current.is_some() && current.as_deref() != Some(endpoint) {
                        return;
                    }
                    if leader.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

/// A gRPC client of the master at `endpoint`, over TLS when it is https.
async fn connect_master(
    endpoint: &str,
    tls: Option<&agora_tls::ClientTls>,
) -> Result<AgentSessionClient<tonic::transport::Channel>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| format!("invalid master address {endpoint}: {e}"))?;
    let channel = agora_tls::connect_channel(endpoint, tls)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(AgentSessionClient::new(channel))
}

/// An error with its sources (a TLS refusal is the innermost one).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

pub(super) async fn master_session(
    master: String,
    credential: Option<agora_auth::credentials::Credential>,
    commands: mpsc::Sender<AgentCommand>,
    shutdown: CancellationToken,
    tls: Option<agora_tls::ClientTls>,
) {
    let source = MasterSource::new(&master, tls.is_some());
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut session = 0u64;
    while !shutdown.is_cancelled() {
        session += 1;
        let mut heard_from_master = false;
        let Some(endpoint) = source.endpoint(&shutdown).await else {
            return;
        };
        match connect_master(&endpoint, tls.as_ref()).await {
            Ok(mut client) => {
                let (tx, rx) = outbox();
                let stuck = rx.stuck_signal();
                if commands
                    .send(AgentCommand::MasterConnected { session, tx })
                    .await
                    .is_err()
                {
                    return;
                }
                // A stuck session's stream just ends; `stuck` ends the session.
                // The agent's credential (`--credential`) in the session's
                // metadata, checked by the master's authentication layer.
                let (pongs, pong_rx) = mpsc::channel(PONG_QUEUE);
                let mut request = Request::new(outbound(rx, pong_rx));
                if let Some(value) = credential.as_ref().and_then(crate::authn::metadata_value) {
                    request.metadata_mut().insert("authorization", value);
                }
                match client.open(request).await {
                    Ok(response) => {
                        let mut inbound = response.into_inner();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = source.leader_moved(&endpoint) => {
                                    tracing::info!("the leading master changed; re-registering");
                                    break;
                                }
                                _ = stuck.stuck() => {
                                    tracing::info!("the master session was stuck; re-registering");
                                    break;
                                }
                                message = inbound.message() => match message {
                                    Ok(Some(message)) => {
                                        heard_from_master = true;
                                        if let Some(pong) = pong_for(&message) {
                                            // A master that reads none of
                                            // PONG_QUEUE pongs misses this one,
                                            // as it would from a stuck agent.
                                            let _ = pongs.try_send(pong);
                                            continue;
                                        }
                                        // Awaited: while the actor is behind, this stops reading
                                        // and HTTP/2 flow control slows the master.
                                        if commands.send(AgentCommand::MasterMessage { session, message }).await.is_err() {
                                            return;
                                        }
                                    }
                                    Ok(None) => break,
                                    Err(status) => {
                                        tracing::warn!(code = ?status.code(), message = %status.message(), "master session ended");
                                        break;
                                    }
                                },
                            }
                        }
                    }
                    Err(status) => {
                        if status.code() == tonic::Code::Unauthenticated {
                            tracing::error!(message = %status.message(), retry_in_ms = backoff.current().as_millis() as u64, "the master refused this agent's credential (--credential); retrying");
                        } else {
                            tracing::warn!(code = ?status.code(), message = %status.message(), "master refused the session");
                        }
                    }
                }
                let _ = commands
                    .send(AgentCommand::MasterDisconnected { session })
                    .await;
            }
            Err(e) => {
                tracing::warn!(master = %master, error = %e, retry_in_ms = backoff.current().as_millis() as u64, "master unreachable")
            }
        }
        if heard_from_master {
            backoff.reset();
        }
        // The pause ends early when ZooKeeper names another leader: the
        // backoff grew against the one that is gone, and the new leader is
        // waiting for every agent to re-register.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(jittered(&mut backoff)) => {}
            _ = source.leader_moved(&endpoint) => {
                tracing::info!("a new leading master was elected; re-registering now");
                backoff.reset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(seq: u64) -> MasterMessage {
        MasterMessage {
            kind: Some(master_message::Kind::Ping(master_message::Ping { seq })),
        }
    }

    /// The session's pongs go out beside what the actor pushes; when the
    /// actor gives the session up (drops its outbox) the stream ends, so
    /// the master sees the session close and no pong outlives it.
    #[tokio::test]
    async fn pongs_join_the_actors_stream_which_ends_when_the_actor_lets_go() {
        let (from_actor, inbox) = outbox();
        let (pongs, pong_rx) = mpsc::channel(PONG_QUEUE);
        let mut stream = std::pin::pin!(outbound(inbox, pong_rx));

        pongs
            .try_send(pong_for(&ping(7)).expect("a ping is answered"))
            .expect("room for a pong");
        let pong = stream.next().await.expect("the pong goes out");
        assert!(
            matches!(
                pong.kind,
                Some(agent_message::Kind::Pong(agent_message::Pong { seq: 7 }))
            ),
            "{pong:?}"
        );
        from_actor
            .push(AgentMessage::default())
            .expect("the stream takes the actor's messages");
        assert_eq!(stream.next().await, Some(AgentMessage::default()));

        drop(from_actor);
        pongs
            .try_send(pong_for(&ping(8)).expect("a ping is answered"))
            .expect("room for a pong");
        assert_eq!(
            stream.next().await,
            None,
            "the session's stream ends with the actor's part"
        );
    }

    #[test]
    fn only_a_ping_is_answered_by_the_session() {
        let other = MasterMessage {
            kind: Some(master_message::Kind::Refused(master_message::Refused {
                message: "no".into(),
            })),
        };
        assert_eq!(pong_for(&other), None);
        assert_eq!(pong_for(&MasterMessage::default()), None);
    }
}
