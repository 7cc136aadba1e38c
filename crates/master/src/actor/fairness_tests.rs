//! The actor's timer turns against its queue: a timer turn handles what
//! was queued before it fired. Paused time makes the race exact: the pong
//! is queued in the very instant its agent's next ping falls due, so
//! whichever branch the actor's `select!` picks, both are ready.

use std::sync::Arc;
use std::time::Duration;

use agora_allocator::DrfAllocator;
use agora_net::outbox::{Inbox, outbox};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, agent_message, master_message};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::start_actor;
use crate::protocol::Command;
use crate::snapshot::StateSnapshot;
use crate::state::{Master, MasterConfig};

const PERIOD: Duration = Duration::from_secs(1);
/// Rounds of the race; without the fairness each is lost about half the
/// time, so the test fails but once in 2^ROUNDS runs without it.
const ROUNDS: usize = 40;

/// The next ping on an agent's session (`None` once the session is closed).
async fn next_ping(inbox: &mut Inbox<MasterMessage>) -> Option<u64> {
    loop {
        let message = inbox.recv().await?.ok()?;
        if let Some(master_message::Kind::Ping(ping)) = message.kind {
            return Some(ping.seq);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_timer_turn_first_handles_the_pongs_queued_before_it() {
    let info = pb::MasterInfo {
        id: "m1".into(),
        hostname: Some("master.test".into()),
        port: 5050,
        ..Default::default()
    };
    let mut config = MasterConfig::new(info);
    // One unanswered ping is enough to mark an agent unreachable.
    config.agent_ping_timeout = PERIOD;
    config.max_agent_ping_timeouts = 1;
    let master = Master::new(config, Box::new(DrfAllocator::with_seed(7)));
    let (snapshot_tx, _snapshot) = watch::channel(Arc::new(StateSnapshot::default()));
    let (registry_tx, mut registry_rx) = mpsc::unbounded_channel();
    // A registry that makes every write durable at once.
    tokio::spawn(async move {
        while let Some(write) = registry_rx.recv().await {
            if let crate::registry_writer::RegistryWrite::Admit {
                ticket, durable, ..
            } = write
            {
                let _ = durable.send(ticket);
            }
        }
    });
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (commands, _actor) = start_actor(
        master,
        Duration::from_secs(3600),
        snapshot_tx,
        registry_tx,
        Default::default(),
        shutdown,
    );
    let (messages, mut inbox) = outbox();
    let register = agent_message::Register {
        agent_info: Some(pb::AgentInfo {
            hostname: "a1".into(),
            port: Some(5051),
            resources: agora_core::Resources::parse("cpus:1;mem:128")
                .expect("resources")
                .to_proto(None),
            ..Default::default()
        }),
        version: "test".into(),
        tasks: Vec::new(),
        frameworks: Vec::new(),
    };
    commands
        .send(Command::AgentRegister {
            conn: 1,
            register,
            principal: None,
            messages,
        })
        .await
        .expect("actor runs");
    // The clock moves only when everything waits: the first ping comes one
    // period after the registration.
    let mut seq = next_ping(&mut inbox).await.expect("a first ping");
    for round in 0..ROUNDS {
        // The next ping falls due now, and the pong arrives in the same
        // instant: queued before the actor's next turn, whichever it is.
        tokio::time::advance(PERIOD).await;
        commands
            .try_send(Command::AgentMessage {
                conn: 1,
                kind: agent_message::Kind::Pong(agent_message::Pong { seq }),
            })
            .expect("room in the queue");
        let next = next_ping(&mut inbox).await;
        let Some(next) = next else {
            panic!("round {round}: the agent was marked unreachable with its pong queued");
        };
        assert_eq!(next, seq + 1, "round {round}: one ping per period");
        seq = next;
    }
}
