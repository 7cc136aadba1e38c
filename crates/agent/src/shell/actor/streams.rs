//! The actor's outgoing streams: the master session and each executor's
//! event stream, every one an [`agora_net::outbox`].
//!
//! *Invariant:* the loop never waits on a peer and never drops a message
//! because a queue is full (a LAUNCH, KILL or acknowledgement lost that
//! way would strand a task). A peer that takes nothing for minutes is
//! given up with a warning: the master session reconnects and the agent
//! re-registers; an executor is marked disconnected and re-subscribes.

use agora_net::outbox::PushError;
use agora_proto::v1::agent::AgentMessage;
use agora_proto::v1::executor as exec;

use super::Actor;
use crate::state::ExecutorConn;

impl Actor {
    /// Queues `message` on the master session; without a session it is
    /// not sent (the state machine resends what matters on registration).
    pub(in crate::shell) fn send_to_master(&mut self, message: AgentMessage) {
        let Some(tx) = &self.master_tx else {
            return;
        };
        if let Err(e) = tx.push(message) {
            if let PushError::Stuck(_) = e {
                tracing::warn!(error = %e, "master session is stuck; closing it (the agent re-registers)");
            }
            // Gone: the session task is ending and says so; stuck: it sees
            // the outbox's signal and reconnects. Either way nothing more
            // goes out until the next registration.
            self.master_tx = None;
            self.state.on_master_disconnected();
        }
    }

    /// Queues `event` on executor connection `conn`, if still subscribed.
    pub(in crate::shell) fn send_to_executor(&mut self, conn: ExecutorConn, event: exec::Event) {
        let Some(tx) = self.executors.get(&conn) else {
            return;
        };
        if let Err(e) = tx.push(event) {
            if let PushError::Stuck(_) = e {
                tracing::warn!(conn, error = %e, "executor stream is stuck; closing it (the executor re-subscribes)");
            }
            self.executors.remove(&conn);
            self.state.on_executor_disconnected(conn);
        }
    }
}
