//! The subscription driver: connects, then owns the subscription, forwarding
//! events, acknowledging updates and re-subscribing after disconnects.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::v1::FrameworkInfo;
use agora_proto::v1::scheduler as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::event::{self, Event, heartbeat_interval};
use crate::{Backoff, Error, MasterDetector};

use super::handle::{EventStream, SchedulerClient, Session, Shared, send_acks};
use super::options::{HEARTBEAT_MISSES, SubscribeOptions};
use super::subscribe::{AttemptError, Subscription, subscribe_once};

/// How many events may wait for the application before the SDK stops
/// reading from the master (the master's stream then buffers).
const EVENT_BUFFER: usize = 1024;

impl SchedulerClient {
    /// Subscribes `framework` at `master` (`host:port` or `http://host:port`),
    /// retrying with backoff for up to `options.connect_timeout`.
    ///
    /// Returns the call handle and the event stream, whose first event is
    /// [`Event::Subscribed`]. Set `framework.id` to fail over to an existing
    /// framework.
    pub async fn connect(
        master: &str,
        framework: FrameworkInfo,
        options: SubscribeOptions,
    ) -> Result<(Self, EventStream), Error> {
        if master.trim().starts_with("https://") && options.tls.is_none() {
            return Err(Error::Tls(format!(
                "{master} is an https address: give a CA to verify it (SubscribeOptions::tls, --tls-ca)"
            )));
        }
        let detector = crate::address::master_detector(master)?;
        Self::connect_with_detector(detector, framework, options).await
    }

    /// Like [`connect`](Self::connect), finding the master with `detector`
    /// (asked again before every re-subscription).
    pub async fn connect_with_detector(
        detector: Arc<dyn MasterDetector>,
        framework: FrameworkInfo,
        options: SubscribeOptions,
    ) -> Result<(Self, EventStream), Error> {
        let deadline = Instant::now() + options.connect_timeout;
        let mut backoff = Backoff::new(options.backoff_initial, options.backoff_max);
        let mut last_error = String::from("no subscription attempt was made");
        let subscription = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::ConnectTimeout {
                    master: detector.to_string(),
                    timeout: options.connect_timeout,
                    last_error,
                });
            }
            let attempt = tokio::time::timeout(
                remaining,
                subscribe_once(
                    detector.as_ref(),
                    &framework,
                    &options.suppressed_roles,
                    remaining,
                    options.credential.as_ref(),
                    None,
                    options.tls.as_ref(),
                ),
            )
            .await;
            last_error = match attempt {
                Ok(Ok(subscription)) => break subscription,
                Ok(Err(AttemptError::Fatal(err))) => return Err(err),
                Ok(Err(AttemptError::Transient(msg))) => msg,
                Err(_) => "timed out waiting for the subscription".to_owned(),
            };
            debug!(master = %detector, error = %last_error, "subscription attempt failed; retrying");
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.next_delay().min(remaining)).await;
        };

        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let client = Self {
            shared: Arc::new(Shared {
                detector,
                session: Mutex::new(Session {
                    framework_info: framework,
                    framework_id: subscription.framework_id.clone(),
                    master: subscription.master.clone(),
                    stream_id: None,
                    grpc: None,
                    suppressed_roles: options.suppressed_roles.iter().cloned().collect(),
                    tearing_down: false,
                    finished: false,
                    max_epoch: subscription
                        .subscribed
                        .master_info
                        .as_ref()
                        .and_then(|m| m.epoch),
                }),
                options,
                acks_in_flight: Arc::default(),
                acks: acks_tx,
            }),
        };
        tokio::spawn(send_acks(Arc::downgrade(&client.shared), acks_rx));
        client.install(&subscription);
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(drive(client.clone(), subscription, tx));
        Ok((client, EventStream { rx }))
    }
}

/// How reading one stream ended.
enum StreamEnd {
    /// The stream broke; re-subscribe.
    Disconnected(String),
    /// The subscription is over (ERROR, teardown, or the application dropped
    /// the event stream).
    Finished,
}

/// Owns the subscription: forwards events, acknowledges updates, and
/// re-subscribes after disconnects until the subscription is over.
async fn drive(client: SchedulerClient, first: Subscription, tx: mpsc::Sender<Event>) {
    drive_inner(&client, first, &tx).await;
    client.mark_finished();
    debug!("event stream driver stopped");
}

async fn drive_inner(client: &SchedulerClient, first: Subscription, tx: &mpsc::Sender<Event>) {
    let mut subscription = first;
    let mut reconnected = false;
    loop {
        let heartbeat = client.install(&subscription);
        if reconnected && tx.send(Event::Reconnected).await.is_err() {
            return;
        }
        let subscribed = Event::Subscribed {
            framework_id: subscription.framework_id.clone(),
            heartbeat_interval: heartbeat,
            master_info: subscription.subscribed.master_info.clone(),
        };
        if tx.send(subscribed).await.is_err() {
            return;
        }

        let end = pump(client, &mut subscription.events, heartbeat, tx).await;
        let subscription_master = std::mem::take(&mut subscription.master);
        drop(subscription);
        let reason = match end {
            StreamEnd::Finished => return,
            StreamEnd::Disconnected(reason) => reason,
        };
        client.mark_disconnected();
        if client.is_tearing_down() {
            debug!(reason = %reason, "event stream ended after teardown");
            return;
        }
        warn!(reason = %reason, "disconnected from master; re-subscribing");
        if tx
            .send(Event::Disconnected {
                reason: reason.clone(),
            })
            .await
            .is_err()
        {
            return;
        }
        match resubscribe(client, tx, &subscription_master).await {
            Some(next) => subscription = next,
            None => return,
        }
        reconnected = true;
    }
}

/// Reads one stream until it ends.
async fn pump(
    client: &SchedulerClient,
    events: &mut tonic::Streaming<pb::Event>,
    mut heartbeat: Duration,
    tx: &mpsc::Sender<Event>,
) -> StreamEnd {
    let auto_acknowledge = client.shared.options.auto_acknowledge;
    loop {
        let watchdog = heartbeat.saturating_mul(HEARTBEAT_MISSES);
        let next = tokio::select! {
            biased;
            () = tx.closed() => return StreamEnd::Finished,
            next = tokio::time::timeout(watchdog, events.message()) => next,
        };
        let raw = match next {
            Ok(Ok(Some(raw))) => raw,
            Ok(Ok(None)) => {
                return StreamEnd::Disconnected("master closed the event stream".to_owned());
            }
            Ok(Err(status)) => {
                return StreamEnd::Disconnected(format!(
                    "event stream failed ({:?}): {}",
                    status.code(),
                    status.message()
                ));
            }
            Err(_) => {
                return StreamEnd::Disconnected(format!(
                    "no event from the master for {watchdog:?} ({HEARTBEAT_MISSES} heartbeat intervals)"
                ));
            }
        };
        if let Some(subscribed) = &raw.subscribed {
            client.resubscribed_in_stream(subscribed);
            heartbeat = heartbeat_interval(subscribed);
        }
        let event = match event::from_proto(raw) {
            Ok(event) => event,
            Err(why) => {
                warn!(error = %why, "ignoring malformed event from master");
                continue;
            }
        };
        match event {
            Event::Update(status) => {
                let ack = if auto_acknowledge {
                    client.prepare_ack(&status)
                } else {
                    None
                };
                if tx.send(Event::Update(status)).await.is_err() {
                    return StreamEnd::Finished;
                }
                if let Some(ack) = ack {
                    client.queue_ack(ack);
                }
            }
            Event::Error(message) => {
                // After our own TEARDOWN the master's "framework removed"
                // is the expected answer, not a problem.
                if client.is_tearing_down() {
                    debug!(error = %message, "master ended the subscription after teardown");
                } else {
                    warn!(error = %message, "master ended the subscription");
                }
                let _ = tx.send(Event::Error(message)).await;
                return StreamEnd::Finished;
            }
            event => {
                if tx.send(event).await.is_err() {
                    return StreamEnd::Finished;
                }
            }
        }
    }
}

/// Re-subscribes with backoff until it succeeds, is refused for good, or the
/// application drops the event stream. A pause ends early, and the backoff
/// starts again, when the detector names a leader other than `previous`
/// (the master of the stream that ended, or of the last attempt): after a
/// failover the new leader hears from the framework at once, not after a
/// backoff grown against the dead one.
async fn resubscribe(
    client: &SchedulerClient,
    tx: &mpsc::Sender<Event>,
    previous: &str,
) -> Option<Subscription> {
    let options = &client.shared.options;
    let mut backoff = Backoff::new(options.backoff_initial, options.backoff_max);
    let detector = client.shared.detector.as_ref();
    let mut previous = previous.to_owned();
    loop {
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = tx.closed() => return None,
            leader = detector.leader_moved(&previous) => {
                debug!(leader = %leader, "another master leads; re-subscribing now");
                previous = leader;
                backoff = Backoff::new(options.backoff_initial, options.backoff_max);
            }
            () = tokio::time::sleep(delay) => {}
        }
        let (framework, suppressed_roles, min_epoch) = {
            let session = client.session();
            let roles: Vec<String> = session.suppressed_roles.iter().cloned().collect();
            (session.framework_info.clone(), roles, session.max_epoch)
        };
        let attempt = tokio::select! {
            biased;
            () = tx.closed() => return None,
            attempt = tokio::time::timeout(
                options.connect_timeout,
                subscribe_once(
                    client.shared.detector.as_ref(),
                    &framework,
                    &suppressed_roles,
                    options.connect_timeout,
                    options.credential.as_ref(),
                    min_epoch,
                    options.tls.as_ref(),
                ),
            ) => attempt,
        };
        match attempt {
            Ok(Ok(subscription)) => return Some(subscription),
            Ok(Err(AttemptError::Transient(why))) => {
                warn!(error = %why, "re-subscription failed; retrying");
            }
            Ok(Err(AttemptError::Fatal(err))) => {
                warn!(error = %err, "re-subscription refused; giving up");
                let _ = tx.send(Event::Error(err.to_string())).await;
                return None;
            }
            Err(_) => warn!("re-subscription timed out; retrying"),
        }
    }
}
