//! The leading master's actor protocol: the commands its callers (gRPC
//! services, the HTTP and operator APIs, agent sessions) send it, the
//! replies they wait for, and the gate that says whether there is an actor
//! to send to. Types only: the actor is in [`crate::actor`], its callers in
//! [`crate::services`] and the HTTP modules.

use std::sync::Arc;

use agora_net::outbox::Outbox;
use agora_proto::v1::agent::{MasterMessage, agent_message};
use agora_proto::v1::master as operator;
use agora_proto::v1::scheduler as sched;
use tokio::sync::{mpsc, oneshot};

use crate::snapshot::StateSnapshot;
use crate::state::{CallError, ConnId, OperatorCall, OperatorError};

pub(crate) type EventSender = Outbox<sched::Event>;
pub(crate) type AgentSender = Outbox<MasterMessage>;
/// An operator's event stream (`SUBSCRIBE` on `/api/v1`): one event is
/// shared by every subscriber.
pub(crate) type OperatorEvents = Outbox<Arc<operator::Event>>;
pub(crate) type Commands = mpsc::Sender<Command>;

pub(crate) enum Command {
    Subscribe {
        conn: ConnId,
        stream_id: String,
        call: sched::Call,
        /// Who the authentication layer found the framework to be.
        principal: Option<agora_auth::Principal>,
        events: EventSender,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    FrameworkGone {
        conn: ConnId,
    },
    Call {
        stream_id: String,
        call: sched::Call,
        /// Who the authentication layer found the caller to be.
        principal: Option<agora_auth::Principal>,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    AgentRegister {
        conn: ConnId,
        register: agent_message::Register,
        /// Who the authentication layer found the agent to be: the
        /// subject of `register_agents`.
        principal: Option<agora_auth::Principal>,
        messages: AgentSender,
    },
    AgentMessage {
        conn: ConnId,
        kind: agent_message::Kind,
    },
    AgentGone {
        conn: ConnId,
    },
    /// An operator call from the HTTP API (weights, quota, reservations).
    Operator {
        call: OperatorCall,
        /// Who asked, as the authentication layer found it (None:
        /// anonymous): the subject of the ACLs' check.
        caller: Option<agora_auth::Principal>,
        reply: OperatorReply,
    },
    /// An operator subscribes to the event stream: registered at the end
    /// of the actor's turn, and answered with the snapshot published then,
    /// so that the first events it gets are the first changes after it.
    OperatorSubscribe {
        id: ConnId,
        events: OperatorEvents,
        reply: oneshot::Sender<Arc<StateSnapshot>>,
    },
    /// An operator's event stream ended.
    OperatorGone {
        id: ConnId,
    },
    /// The v1 operator API was read: snapshots carry its view for a while
    /// (at once if the published one has none).
    OperatorViewWanted,
    /// Test builds only (see `http::test_faults`): the actor panics, as a
    /// bug would make it, to show that the term is supervised.
    Fault,
}

/// Why an operator call did not succeed; `http.rs` maps each to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OperatorFailure {
    /// The state machine refused it (400, 404, 409); nothing changed.
    Refused(OperatorError),
    /// What it would store is larger than the registry accepts (507);
    /// nothing changed.
    TooLarge(String),
    /// It was applied but could not be made durable (503): this master
    /// steps down and the change is dropped with its term.
    NotDurable(String),
}

pub(crate) type OperatorReply = oneshot::Sender<Result<(), OperatorFailure>>;

/// Whether this master may act, and where its command channel is.
#[derive(Clone, Debug)]
pub(crate) enum Gate {
    /// Not the leader; `leader` is the leader's `host:port` when known.
    Following {
        leader: Option<String>,
    },
    /// Just elected: loading the registry, not serving calls yet.
    Recovering,
    Leading {
        commands: Commands,
    },
}
