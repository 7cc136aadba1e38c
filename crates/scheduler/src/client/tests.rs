//! The client against an in-process fake master speaking the real gRPC
//! service. Waits are bounded by `WAIT` and only ever wait for an expected
//! message, never for time to pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agora_proto::v1::scheduler::scheduler_server::{Scheduler, SchedulerServer};
use agora_proto::v1::scheduler::{self as pb, call};
use agora_proto::v1::{AgentId, FrameworkId, OfferId, TaskId, TaskState, TaskStatus, offer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

use super::*;
use crate::{AddressError, Error, Event, FrameworkBuilder, TaskBuilder};

const WAIT: Duration = Duration::from_secs(10);

type EventTx = mpsc::Sender<Result<pb::Event, tonic::Status>>;

/// Answers SUBSCRIBE with SUBSCRIBED (framework `fw-1`, stream `stream-N`)
/// and hands the stream's sender to the test; records every other call with
/// its `agora-stream-id`.
struct FakeMaster {
    heartbeat_seconds: f64,
    reject: Option<tonic::Code>,
    /// Delay before an ACKNOWLEDGE is recorded and answered.
    ack_delay: Duration,
    /// An ACKNOWLEDGE waits for a permit here (plenty unless a test takes
    /// them away).
    ack_gate: Arc<tokio::sync::Semaphore>,
    subscriptions: AtomicUsize,
    /// The leadership epoch announced by each successive subscription.
    epochs: Vec<Option<u64>>,
    subscribes: mpsc::UnboundedSender<(pb::Call, EventTx)>,
    calls: mpsc::UnboundedSender<(pb::Call, Option<String>)>,
}

#[tonic::async_trait]
impl Scheduler for FakeMaster {
    type SubscribeStream = ReceiverStream<Result<pb::Event, tonic::Status>>;

    async fn subscribe(
        &self,
        request: tonic::Request<pb::Call>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        if let Some(code) = self.reject {
            return Err(tonic::Status::new(code, "bad framework info"));
        }
        let n = self.subscriptions.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, rx) = mpsc::channel(16);
        let subscribed = pb::Event {
            r#type: pb::event::Type::Subscribed as i32,
            subscribed: Some(pb::event::Subscribed {
                framework_id: Some(fw()),
                heartbeat_interval_seconds: Some(self.heartbeat_seconds),
                master_info: self.epochs.get(n - 1).copied().flatten().map(|epoch| {
                    agora_proto::v1::MasterInfo {
                        epoch: Some(epoch),
                        ..Default::default()
                    }
                }),
                stream_id: format!("stream-{n}"),
            }),
            ..Default::default()
        };
        tx.send(Ok(subscribed))
            .await
            .map_err(|_| tonic::Status::internal("receiver gone"))?;
        let _ = self.subscribes.send((request.into_inner(), tx));
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn send(
        &self,
        request: tonic::Request<pb::Call>,
    ) -> Result<tonic::Response<pb::CallResponse>, tonic::Status> {
        let stream_id = request
            .metadata()
            .get(STREAM_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if request.get_ref().r#type == call::Type::Acknowledge as i32 {
            tokio::time::sleep(self.ack_delay).await;
            drop(self.ack_gate.acquire().await);
        }
        let _ = self.calls.send((request.into_inner(), stream_id));
        Ok(tonic::Response::new(pb::CallResponse {}))
    }
}

struct Harness {
    addr: String,
    ack_gate: Arc<tokio::sync::Semaphore>,
    subscribes: mpsc::UnboundedReceiver<(pb::Call, EventTx)>,
    calls: mpsc::UnboundedReceiver<(pb::Call, Option<String>)>,
}

impl Harness {
    async fn start(heartbeat_seconds: f64, reject: Option<tonic::Code>) -> Self {
        Self::start_with(heartbeat_seconds, reject, Duration::ZERO).await
    }

    async fn start_with(
        heartbeat_seconds: f64,
        reject: Option<tonic::Code>,
        ack_delay: Duration,
    ) -> Self {
        Self::start_full(heartbeat_seconds, reject, ack_delay, Vec::new()).await
    }

    async fn start_full(
        heartbeat_seconds: f64,
        reject: Option<tonic::Code>,
        ack_delay: Duration,
        epochs: Vec<Option<u64>>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake master");
        let addr = listener.local_addr().expect("local addr").to_string();
        let (subscribes_tx, subscribes) = mpsc::unbounded_channel();
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let ack_gate = Arc::new(tokio::sync::Semaphore::new(
            tokio::sync::Semaphore::MAX_PERMITS,
        ));
        let fake = FakeMaster {
            heartbeat_seconds,
            reject,
            ack_delay,
            ack_gate: ack_gate.clone(),
            subscriptions: AtomicUsize::new(0),
            epochs,
            subscribes: subscribes_tx,
            calls: calls_tx,
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SchedulerServer::new(fake))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Self {
            addr,
            ack_gate,
            subscribes,
            calls,
        }
    }

    async fn connect(
        &mut self,
        options: SubscribeOptions,
    ) -> (SchedulerClient, EventStream, EventTx) {
        let info = FrameworkBuilder::new("test").user("tester").build();
        let (client, mut events) = SchedulerClient::connect(&self.addr, info, options)
            .await
            .expect("connect to fake master");
        let (_, tx) = self.next_subscribe().await;
        assert!(matches!(
            next_event(&mut events).await,
            Some(Event::Subscribed { .. })
        ));
        (client, events, tx)
    }

    async fn next_subscribe(&mut self) -> (pb::Call, EventTx) {
        within(self.subscribes.recv())
            .await
            .expect("fake master gone")
    }

    async fn next_call(&mut self) -> (pb::Call, Option<String>) {
        within(self.calls.recv()).await.expect("fake master gone")
    }
}

fn fw() -> FrameworkId {
    FrameworkId {
        value: "fw-1".into(),
    }
}

fn fast() -> SubscribeOptions {
    SubscribeOptions {
        connect_timeout: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..Default::default()
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("timed out waiting")
}

async fn next_event(events: &mut EventStream) -> Option<Event> {
    within(events.recv()).await
}

fn update(task: &str, uuid: Option<Vec<u8>>) -> pb::Event {
    pb::Event {
        r#type: pb::event::Type::Update as i32,
        update: Some(pb::event::Update {
            status: Some(TaskStatus {
                task_id: Some(TaskId { value: task.into() }),
                agent_id: Some(AgentId { value: "a1".into() }),
                state: Some(TaskState::TaskRunning as i32),
                uuid,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn task_of(event: Option<Event>) -> String {
    match event {
        Some(Event::Update(status)) => status.task_id.unwrap_or_default().value,
        other => panic!("expected an update, got {other:?}"),
    }
}

#[tokio::test]
async fn subscribes_and_calls_carry_framework_and_stream_id() {
    let mut h = Harness::start(15.0, None).await;
    let info = FrameworkBuilder::new("test").user("tester").build();
    let (client, mut events) = SchedulerClient::connect(&h.addr, info, fast())
        .await
        .expect("connect");

    let (subscribe, _tx) = h.next_subscribe().await;
    assert_eq!(subscribe.r#type, call::Type::Subscribe as i32);
    assert!(subscribe.framework_id.is_none());
    let sent = subscribe
        .subscribe
        .and_then(|s| s.framework_info)
        .expect("framework info");
    assert_eq!(sent.name, "test");
    assert!(sent.id.is_none());

    assert_eq!(
        next_event(&mut events).await,
        Some(Event::Subscribed {
            framework_id: fw(),
            heartbeat_interval: Duration::from_secs(15),
            master_info: None,
        })
    );
    assert_eq!(client.framework_id(), fw());
    assert_eq!(client.stream_id().as_deref(), Some("stream-1"));
    assert!(client.is_subscribed());

    let offer = OfferId { value: "o1".into() };
    client
        .decline(vec![offer.clone()], Some(Duration::from_secs(1)))
        .await
        .expect("decline");
    let (c, stream) = h.next_call().await;
    assert_eq!(stream.as_deref(), Some("stream-1"));
    assert_eq!(c.framework_id, Some(fw()));
    assert_eq!(c.r#type, call::Type::Decline as i32);
    let decline = c.decline.expect("decline body");
    assert_eq!(decline.offer_ids, vec![offer.clone()]);
    assert_eq!(decline.filters.and_then(|f| f.refuse_seconds), Some(1.0));

    let task = TaskBuilder::command("t-1", "t", "true")
        .cpus(0.1)
        .build(AgentId { value: "a1".into() });
    client
        .launch(vec![offer.clone()], vec![task.clone()], None)
        .await
        .expect("launch");
    let (c, _) = h.next_call().await;
    assert_eq!(c.r#type, call::Type::Accept as i32);
    let accept = c.accept.expect("accept body");
    assert_eq!(accept.offer_ids, vec![offer]);
    assert_eq!(accept.operations.len(), 1);
    let op = &accept.operations[0];
    assert_eq!(op.r#type, Some(offer::operation::Type::Launch as i32));
    assert_eq!(
        op.launch.as_ref().map(|l| l.task_infos.clone()),
        Some(vec![task])
    );

    client
        .kill(
            TaskId {
                value: "t-1".into(),
            },
            None,
        )
        .await
        .expect("kill");
    let (c, _) = h.next_call().await;
    assert_eq!(c.r#type, call::Type::Kill as i32);
    assert_eq!(
        c.kill.and_then(|k| k.task_id).map(|t| t.value).as_deref(),
        Some("t-1")
    );
}

#[tokio::test]
async fn acknowledges_updates_that_carry_a_uuid() {
    let mut h = Harness::start(15.0, None).await;
    let (client, mut events, tx) = h.connect(fast()).await;

    tx.send(Ok(update("no-uuid", None))).await.expect("send");
    tx.send(Ok(update("with-uuid", Some(vec![7, 7]))))
        .await
        .expect("send");
    assert_eq!(task_of(next_event(&mut events).await), "no-uuid");
    assert_eq!(task_of(next_event(&mut events).await), "with-uuid");

    let (c, stream) = h.next_call().await;
    assert_eq!(stream.as_deref(), Some("stream-1"));
    assert_eq!(c.r#type, call::Type::Acknowledge as i32);
    let ack = c.acknowledge.expect("acknowledge body");
    assert_eq!(ack.task_id.map(|t| t.value).as_deref(), Some("with-uuid"));
    assert_eq!(ack.agent_id.map(|a| a.value).as_deref(), Some("a1"));
    assert_eq!(ack.uuid, vec![7, 7]);

    // Nothing else was acknowledged: the next call the master sees is ours.
    client.revive(vec![]).await.expect("revive");
    let (c, _) = h.next_call().await;
    assert_eq!(c.r#type, call::Type::Revive as i32);
}

#[tokio::test]
async fn acknowledgements_that_pile_up_go_in_one_call() {
    let mut h = Harness::start(15.0, None).await;
    let (_client, mut events, tx) = h.connect(fast()).await;
    // The master answers no acknowledgement until all 100 are queued.
    h.ack_gate
        .forget_permits(tokio::sync::Semaphore::MAX_PERMITS);
    for i in 0..100u8 {
        tx.send(Ok(update(&format!("t{i}"), Some(vec![i; 16]))))
            .await
            .expect("send");
    }
    // An update without uuid behind them: once it is delivered, the SDK
    // has queued the acknowledgement of every update before it.
    tx.send(Ok(update("marker", None))).await.expect("send");
    for i in 0..100u8 {
        assert_eq!(task_of(next_event(&mut events).await), format!("t{i}"));
    }
    assert_eq!(task_of(next_event(&mut events).await), "marker");
    h.ack_gate
        .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);

    let mut acked = Vec::new();
    let mut calls = 0;
    while acked.len() < 100 {
        let (c, _) = h.next_call().await;
        assert_eq!(c.r#type, call::Type::Acknowledge as i32);
        calls += 1;
        acked.extend(c.acknowledge.into_iter().chain(c.acknowledgements));
    }
    // The calls that left first took what was queued then; the rest waited
    // for a free slot and went in one more.
    assert!(
        calls <= handle::ACK_CALLS_IN_FLIGHT + 1,
        "{calls} calls for 100 acknowledgements"
    );
    let mut uuids: Vec<Vec<u8>> = acked.into_iter().map(|a| a.uuid).collect();
    uuids.sort();
    let expected: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 16]).collect();
    assert_eq!(uuids, expected, "each acknowledged once");
}

#[tokio::test]
async fn teardown_waits_for_acknowledgements_in_flight() {
    // A slow acknowledgement leaves room for a teardown to overtake it; the
    // fake master records the acknowledgement only once it has waited.
    let mut h = Harness::start_with(15.0, None, Duration::from_millis(200)).await;
    let (client, mut events, tx) = h.connect(fast()).await;
    tx.send(Ok(update("last", Some(vec![9]))))
        .await
        .expect("send");
    assert_eq!(task_of(next_event(&mut events).await), "last");
    // React at once, as a framework whose last task just ended would.
    client.teardown().await.expect("teardown");
    let (c, _) = h.next_call().await;
    assert_eq!(c.r#type, call::Type::Acknowledge as i32);
    let (c, _) = h.next_call().await;
    assert_eq!(c.r#type, call::Type::Teardown as i32);
}

#[tokio::test]
async fn leaves_acknowledgement_to_the_application_when_asked() {
    let mut h = Harness::start(15.0, None).await;
    let options = SubscribeOptions {
        auto_acknowledge: false,
        ..fast()
    };
    let (client, mut events, tx) = h.connect(options).await;
    tx.send(Ok(update("t", Some(vec![1])))).await.expect("send");
    assert_eq!(task_of(next_event(&mut events).await), "t");
    client.suppress(vec!["*".into()]).await.expect("suppress");
    let (c, _) = h.next_call().await;
    assert_eq!(c.r#type, call::Type::Suppress as i32);
    assert_eq!(c.suppress.map(|s| s.roles), Some(vec!["*".to_owned()]));
}

#[tokio::test]
async fn resubscribes_with_framework_id_after_the_stream_drops() {
    let mut h = Harness::start(15.0, None).await;
    let (client, mut events, tx) = h.connect(fast()).await;

    drop(tx);
    assert!(matches!(
        next_event(&mut events).await,
        Some(Event::Disconnected { .. })
    ));
    let (resubscribe, _tx2) = h.next_subscribe().await;
    assert_eq!(resubscribe.framework_id, Some(fw()));
    let sent = resubscribe
        .subscribe
        .and_then(|s| s.framework_info)
        .expect("framework info");
    assert_eq!(sent.id, Some(fw()));
    assert_eq!(next_event(&mut events).await, Some(Event::Reconnected));
    assert!(matches!(
        next_event(&mut events).await,
        Some(Event::Subscribed { .. })
    ));

    client.revive(vec![]).await.expect("revive");
    let (_, stream) = h.next_call().await;
    assert_eq!(stream.as_deref(), Some("stream-2"));
}

#[tokio::test]
async fn resubscription_keeps_the_current_suppression() {
    let mut h = Harness::start(15.0, None).await;
    let options = SubscribeOptions {
        suppressed_roles: vec!["a".into()],
        ..fast()
    };
    let (client, mut events, tx) = h.connect(options).await;
    client.revive(vec!["a".into()]).await.expect("revive");
    client.suppress(vec![]).await.expect("suppress all roles");
    h.next_call().await;
    h.next_call().await;

    drop(tx);
    assert!(matches!(
        next_event(&mut events).await,
        Some(Event::Disconnected { .. })
    ));
    let (resubscribe, _tx2) = h.next_subscribe().await;
    // The framework's only role is "*": "a" was revived, "*" suppressed.
    assert_eq!(
        resubscribe.subscribe.map(|s| s.suppressed_roles),
        Some(vec!["*".to_owned()])
    );
}

#[tokio::test]
async fn watchdog_resubscribes_when_heartbeats_stop() {
    // 20 ms heartbeats: the watchdog fires after 100 ms of silence.
    let mut h = Harness::start(0.02, None).await;
    let (_client, mut events, _tx_kept_open) = h.connect(fast()).await;
    match next_event(&mut events).await {
        Some(Event::Disconnected { reason }) => {
            assert!(reason.contains("no event from the master"), "{reason}");
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    let (resubscribe, _tx2) = h.next_subscribe().await;
    assert_eq!(resubscribe.framework_id, Some(fw()));
    assert_eq!(next_event(&mut events).await, Some(Event::Reconnected));
}

#[tokio::test]
async fn error_event_ends_the_stream() {
    let mut h = Harness::start(15.0, None).await;
    let (client, mut events, tx) = h.connect(fast()).await;
    let error = pb::Event {
        r#type: pb::event::Type::Error as i32,
        error: Some(pb::event::Error {
            message: "framework removed".into(),
        }),
        ..Default::default()
    };
    tx.send(Ok(error)).await.expect("send");
    assert_eq!(
        next_event(&mut events).await,
        Some(Event::Error("framework removed".into()))
    );
    assert_eq!(next_event(&mut events).await, None);
    assert!(!client.is_subscribed());
    assert!(matches!(
        client.revive(vec![]).await,
        Err(Error::NotSubscribed)
    ));
}

#[tokio::test]
async fn teardown_ends_the_stream_without_resubscribing() {
    let mut h = Harness::start(15.0, None).await;
    let (client, mut events, tx) = h.connect(fast()).await;
    client.teardown().await.expect("teardown");
    let (c, _) = h.next_call().await;
    assert_eq!(c.r#type, call::Type::Teardown as i32);
    drop(tx);
    // A disconnect would show up as `Disconnected` before the end.
    assert_eq!(next_event(&mut events).await, None);
}

#[tokio::test]
async fn dropping_the_event_stream_closes_the_subscription() {
    let mut h = Harness::start(15.0, None).await;
    let (_client, events, tx) = h.connect(fast()).await;
    drop(events);
    within(tx.closed()).await;
}

#[tokio::test]
async fn refused_subscription_fails_at_once() {
    let h = Harness::start(15.0, Some(tonic::Code::InvalidArgument)).await;
    let info = FrameworkBuilder::new("test").build();
    let options = SubscribeOptions {
        connect_timeout: WAIT * 3,
        ..fast()
    };
    match within(SchedulerClient::connect(&h.addr, info, options)).await {
        Err(Error::SubscribeRejected { code, message }) => {
            assert_eq!(code, Some(tonic::Code::InvalidArgument));
            assert_eq!(message, "bad framework info");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_master_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    let options = SubscribeOptions {
        connect_timeout: Duration::from_millis(300),
        ..fast()
    };
    let info = FrameworkBuilder::new("test").build();
    match within(SchedulerClient::connect(&addr, info, options)).await {
        Err(Error::ConnectTimeout {
            master, last_error, ..
        }) => {
            assert_eq!(master, addr);
            assert!(last_error.contains("cannot connect"), "{last_error}");
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_address_is_reported() {
    let info = FrameworkBuilder::new("test").build();
    assert!(matches!(
        SchedulerClient::connect("ftp://h:5050", info.clone(), fast()).await,
        Err(Error::Address(AddressError::UnsupportedScheme(_)))
    ));
    // A zk:// address is followed through ZooKeeper; a malformed one is refused at once.
    assert!(matches!(
        SchedulerClient::connect("zk://h:2181", info, fast()).await,
        Err(Error::Detection(_))
    ));
}

#[tokio::test]
async fn a_master_from_an_older_leadership_term_is_not_subscribed_to() {
    // Term 5, then (after a drop) a deposed term-3 leader, then term 6.
    let mut h =
        Harness::start_full(15.0, None, Duration::ZERO, vec![Some(5), Some(3), Some(6)]).await;
    let (_client, mut events, tx) = h.connect(fast()).await;
    drop(tx);
    assert!(matches!(
        next_event(&mut events).await,
        Some(Event::Disconnected { .. })
    ));
    let (_, _stale) = h.next_subscribe().await;
    let (_, _current) = h.next_subscribe().await;
    assert_eq!(next_event(&mut events).await, Some(Event::Reconnected));
    match next_event(&mut events).await {
        Some(Event::Subscribed { master_info, .. }) => {
            assert_eq!(
                master_info.and_then(|m| m.epoch),
                Some(6),
                "the term-3 master was refused"
            );
        }
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    }
}

/// A detector the test moves from one master to another.
#[derive(Debug)]
struct MovingDetector {
    leader: tokio::sync::watch::Sender<String>,
}

impl std::fmt::Display for MovingDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("moving")
    }
}

impl crate::MasterDetector for MovingDetector {
    fn detect(&self) -> futures::future::BoxFuture<'_, Result<String, Error>> {
        let leader = self.leader.borrow().clone();
        Box::pin(async move { Ok(leader) })
    }

    fn leader_moved<'a>(&'a self, from: &'a str) -> futures::future::BoxFuture<'a, String> {
        let mut rx = self.leader.subscribe();
        Box::pin(async move {
            let moved = rx
                .wait_for(|now| now != from)
                .await
                .ok()
                .map(|now| now.clone());
            match moved {
                Some(now) => now,
                None => std::future::pending().await,
            }
        })
    }
}

#[tokio::test]
async fn a_new_leader_is_subscribed_to_without_waiting_out_the_backoff() {
    let mut old = Harness::start(15.0, None).await;
    let mut new = Harness::start(15.0, None).await;
    let (leader, _) = tokio::sync::watch::channel(format!("http://{}", old.addr));
    let detector = std::sync::Arc::new(MovingDetector { leader });
    let info = FrameworkBuilder::new("test").user("tester").build();
    // A backoff far longer than the test's wait: only the leader's move can
    // end the pause before the next attempt.
    let options = SubscribeOptions {
        backoff_initial: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..fast()
    };
    let (_client, mut events) =
        SchedulerClient::connect_with_detector(detector.clone(), info, options)
            .await
            .expect("connect to the first master");
    let (_, tx) = old.next_subscribe().await;
    assert!(matches!(
        next_event(&mut events).await,
        Some(Event::Subscribed { .. })
    ));
    drop(tx);
    assert!(matches!(
        next_event(&mut events).await,
        Some(Event::Disconnected { .. })
    ));
    detector.leader.send_replace(format!("http://{}", new.addr));
    let (resubscribe, _tx) = new.next_subscribe().await;
    assert_eq!(resubscribe.framework_id, Some(fw()));
    assert_eq!(next_event(&mut events).await, Some(Event::Reconnected));
}
