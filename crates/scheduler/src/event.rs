//! Typed scheduler events.

use std::time::Duration;

use agora_proto::v1::scheduler as pb;
use agora_proto::v1::{AgentId, ExecutorId, FrameworkId, MasterInfo, Offer, OfferId, TaskStatus};

/// Heartbeat interval assumed when the master does not announce one.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// An event on a framework's [`EventStream`](crate::EventStream).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The master accepted the subscription. First event of every stream, and
    /// sent again (after [`Event::Reconnected`]) on every re-subscription.
    Subscribed {
        /// The framework's id; stable across re-subscriptions.
        framework_id: FrameworkId,
        /// How often the master sends heartbeats.
        heartbeat_interval: Duration,
        /// The master that accepted the subscription.
        master_info: Option<MasterInfo>,
    },
    /// New resource offers.
    Offers(Vec<Offer>),
    /// An offer is no longer valid.
    Rescind(OfferId),
    /// A task status update. Updates carrying a `uuid` must be acknowledged;
    /// the SDK does that itself unless auto-acknowledgement is off.
    Update(TaskStatus),
    /// A message from an executor.
    Message {
        /// The executor's agent.
        agent_id: AgentId,
        /// The sending executor.
        executor_id: ExecutorId,
        /// Opaque payload.
        data: Vec<u8>,
    },
    /// An agent or an executor was lost.
    Failure {
        /// The agent, if known.
        agent_id: Option<AgentId>,
        /// The executor, when an executor (rather than an agent) failed.
        executor_id: Option<ExecutorId>,
        /// The executor's exit status, if known.
        status: Option<i32>,
    },
    /// The master ended the subscription for good (e.g. "framework failed
    /// over", "framework removed"). The stream ends after this event.
    Error(String),
    /// The master is alive.
    Heartbeat,
    /// The event stream broke; the SDK re-subscribes with backoff. Offers
    /// received before this are void.
    Disconnected {
        /// What broke, in words.
        reason: String,
    },
    /// Re-subscribed after [`Event::Disconnected`]; followed by
    /// [`Event::Subscribed`]. A good moment to reconcile tasks.
    Reconnected,
}

/// The heartbeat interval announced in a SUBSCRIBED event, or the default
/// when absent, zero, negative or not a number.
pub(crate) fn heartbeat_interval(subscribed: &pb::event::Subscribed) -> Duration {
    subscribed
        .heartbeat_interval_seconds
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL)
}

/// Converts a wire event; `Err` explains why it is malformed or unknown.
pub(crate) fn from_proto(event: pb::Event) -> Result<Event, String> {
    use pb::event::Type;
    let kind =
        Type::try_from(event.r#type).map_err(|_| format!("unknown event type {}", event.r#type))?;
    let missing = |what: &str| format!("{} event without {what}", kind.as_str_name());
    Ok(match kind {
        Type::Subscribed => {
            let s = event.subscribed.ok_or_else(|| missing("subscribed"))?;
            Event::Subscribed {
                heartbeat_interval: heartbeat_interval(&s),
                framework_id: s.framework_id.ok_or_else(|| missing("framework_id"))?,
                master_info: s.master_info,
            }
        }
        Type::Offers => Event::Offers(event.offers.ok_or_else(|| missing("offers"))?.offers),
        Type::Rescind => Event::Rescind(
            event
                .rescind
                .and_then(|r| r.offer_id)
                .ok_or_else(|| missing("offer_id"))?,
        ),
        Type::Update => Event::Update(
            event
                .update
                .and_then(|u| u.status)
                .ok_or_else(|| missing("status"))?,
        ),
        Type::Message => {
            let m = event.message.ok_or_else(|| missing("message"))?;
            Event::Message {
                agent_id: m.agent_id.ok_or_else(|| missing("agent_id"))?,
                executor_id: m.executor_id.ok_or_else(|| missing("executor_id"))?,
                data: m.data,
            }
        }
        Type::Failure => {
            let f = event.failure.ok_or_else(|| missing("failure"))?;
            Event::Failure {
                agent_id: f.agent_id,
                executor_id: f.executor_id,
                status: f.status,
            }
        }
        Type::Error => Event::Error(event.error.map(|e| e.message).unwrap_or_default()),
        Type::Heartbeat => Event::Heartbeat,
        Type::Unknown => return Err("event of type UNKNOWN".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::v1::{TaskId, TaskState};
    use pb::event::Type;

    fn event(kind: Type) -> pb::Event {
        pb::Event {
            r#type: kind as i32,
            ..Default::default()
        }
    }

    #[test]
    fn converts_subscribed_with_heartbeat() {
        let mut e = event(Type::Subscribed);
        e.subscribed = Some(pb::event::Subscribed {
            framework_id: Some(FrameworkId { value: "f1".into() }),
            heartbeat_interval_seconds: Some(2.5),
            master_info: None,
            stream_id: "s1".into(),
        });
        assert_eq!(
            from_proto(e),
            Ok(Event::Subscribed {
                framework_id: FrameworkId { value: "f1".into() },
                heartbeat_interval: Duration::from_millis(2500),
                master_info: None,
            })
        );
    }

    #[test]
    fn heartbeat_interval_falls_back_to_default() {
        for bad in [
            None,
            Some(0.0),
            Some(-1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
        ] {
            let s = pb::event::Subscribed {
                heartbeat_interval_seconds: bad,
                ..Default::default()
            };
            assert_eq!(
                heartbeat_interval(&s),
                DEFAULT_HEARTBEAT_INTERVAL,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn converts_update_rescind_error_and_heartbeat() {
        let status = TaskStatus {
            task_id: Some(TaskId { value: "t".into() }),
            state: Some(TaskState::TaskRunning as i32),
            uuid: Some(vec![1, 2]),
            ..Default::default()
        };
        let mut e = event(Type::Update);
        e.update = Some(pb::event::Update {
            status: Some(status.clone()),
        });
        assert_eq!(from_proto(e), Ok(Event::Update(status)));

        let mut e = event(Type::Rescind);
        e.rescind = Some(pb::event::Rescind {
            offer_id: Some(OfferId { value: "o".into() }),
        });
        assert_eq!(
            from_proto(e),
            Ok(Event::Rescind(OfferId { value: "o".into() }))
        );

        let mut e = event(Type::Error);
        e.error = Some(pb::event::Error {
            message: "framework removed".into(),
        });
        assert_eq!(from_proto(e), Ok(Event::Error("framework removed".into())));

        assert_eq!(from_proto(event(Type::Heartbeat)), Ok(Event::Heartbeat));
    }

    #[test]
    fn rejects_malformed_and_unknown_events() {
        assert_eq!(
            from_proto(event(Type::Offers)),
            Err("OFFERS event without offers".to_owned())
        );
        assert_eq!(
            from_proto(event(Type::Update)),
            Err("UPDATE event without status".to_owned())
        );
        let mut e = event(Type::Subscribed);
        e.subscribed = Some(Default::default());
        assert_eq!(
            from_proto(e),
            Err("SUBSCRIBED event without framework_id".to_owned())
        );
        assert!(from_proto(event(Type::Unknown)).is_err());
        let mut e = event(Type::Heartbeat);
        e.r#type = 99;
        assert_eq!(from_proto(e), Err("unknown event type 99".to_owned()));
    }
}
