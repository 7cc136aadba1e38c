//! The operators subscribed to the event stream, as the actor keeps them:
//! one outbox each, in the order they subscribed, at most a bound of them.

use std::collections::VecDeque;
use std::sync::Arc;

use agora_net::outbox::PushError;
use agora_proto::v1::master::Event;

use crate::protocol::OperatorEvents;
use crate::state::ConnId;

/// Event streams at most: a new one closes the oldest.
pub(crate) use crate::options::MAX_OPERATOR_SUBSCRIBERS as MAX_SUBSCRIBERS;

pub(crate) struct Subscribers {
    max: usize,
    /// Oldest first.
    streams: VecDeque<(ConnId, OperatorEvents)>,
}

impl Subscribers {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            streams: VecDeque::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    /// Adds a stream; past the bound the oldest is closed (dropping its
    /// outbox ends it once it has taken what was queued).
    pub(crate) fn add(&mut self, id: ConnId, events: OperatorEvents) {
        self.streams.push_back((id, events));
        while self.streams.len() > self.max {
            if let Some((oldest, _)) = self.streams.pop_front() {
                tracing::info!(
                    subscriber = oldest,
                    max = self.max,
                    "too many operator event streams; closing the oldest"
                );
            }
        }
    }

    pub(crate) fn remove(&mut self, id: ConnId) {
        self.streams.retain(|(stream, _)| *stream != id);
    }

    /// Queues one event on every stream; never waits. A stream whose peer
    /// left is dropped, and so is a stuck one (its stream ends with an
    /// error; the operator subscribes again).
    pub(crate) fn send(&mut self, event: Arc<Event>) {
        self.streams
            .retain(|(id, events)| match events.push(event.clone()) {
                Ok(()) => true,
                Err(PushError::Gone) => false,
                Err(e @ PushError::Stuck(_)) => {
                    tracing::warn!(subscriber = id, error = %e, "operator event stream is stuck; closing it");
                    false
                }
            });
    }
}
