//! The v1 operator API (`crate::operator_api`) through its router, over a
//! real actor: every call in JSON and in protobuf, the framing refusals,
//! changes answered once durable, and the event stream's first state and
//! events. They live here, under the actor, because they need both: the
//! operator API sits below the actor (which keeps its subscribers), so its
//! own tests cannot start one without an import circle.

use std::sync::Arc;
use std::time::Duration;

use agora_allocator::DrfAllocator;
use agora_mesos_http::{Media, decode};
use agora_net::outbox::{Inbox, outbox};
use agora_proto::v1 as pb;
use agora_proto::v1::agent::{MasterMessage, agent_message, master_message};
use agora_proto::v1::master::{Call, Event, Response as OpResponse, call, event, response};
use agora_proto::v1::scheduler as sched;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures::StreamExt;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::start_actor;
use crate::operator_api::router;
use crate::protocol::{Command, Commands, Gate};
use crate::registry_writer::RegistryWrite;
use crate::services::Services;
use crate::snapshot::StateSnapshot;
use crate::state::{ConnId, Master, MasterConfig};

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
/// How long a test waits for something the actor does at once.
const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    app: Router,
    commands: Commands,
    snapshot: watch::Receiver<Arc<StateSnapshot>>,
    shutdown: CancellationToken,
    next_conn: ConnId,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A leading master whose registry answers every flush with `durable`.
fn fixture_with(durable: Result<(), String>, heartbeat: Duration) -> Fixture {
    let info = pb::MasterInfo {
        id: "m1".into(),
        hostname: Some("master.test".into()),
        port: 5050,
        pid: Some("master@127.0.0.1:5050".into()),
        ..Default::default()
    };
    let mut config = MasterConfig::new(info);
    config.agent_ping_timeout = Duration::from_secs(86_400);
    let master = Master::new(config, Box::new(DrfAllocator::with_seed(7)));
    let (snapshot_tx, snapshot) = watch::channel(Arc::new(StateSnapshot::default()));
    let (registry_tx, mut registry_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(write) = registry_rx.recv().await {
            match write {
                RegistryWrite::Flushed(done) => {
                    let _ = done.send(durable.clone());
                }
                RegistryWrite::Admit {
                    ticket,
                    durable: to,
                    ..
                } if durable.is_ok() => {
                    let _ = to.send(ticket);
                }
                _ => {}
            }
        }
    });
    let shutdown = CancellationToken::new();
    let (commands, _actor) = start_actor(
        master,
        Duration::from_secs(3600),
        snapshot_tx,
        registry_tx,
        Default::default(),
        shutdown.clone(),
    );
    let (_gate_tx, gate) = watch::channel(Gate::Leading {
        commands: commands.clone(),
    });
    // The gate never changes in these tests; its sender may go.
    let services = Services::for_tests(gate, snapshot.clone(), heartbeat);
    Fixture {
        app: router(services, Default::default()),
        commands,
        snapshot,
        shutdown,
        next_conn: 1,
    }
}

fn fixture() -> Fixture {
    fixture_with(Ok(()), Duration::from_secs(15))
}

async fn post(
    app: &Router,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Vec<u8>,
) -> axum::response::Response {
    let mut request = Request::post("/api/v1");
    if let Some(value) = content_type {
        request = request.header(header::CONTENT_TYPE, value);
    }
    if let Some(value) = accept {
        request = request.header(header::ACCEPT, value);
    }
    app.clone()
        .oneshot(request.body(Body::from(body)).expect("request"))
        .await
        .expect("infallible")
}

async fn body_of(response: axum::response::Response) -> (StatusCode, HeaderMap, Bytes) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body)
}

async fn post_json(app: &Router, call: &Value) -> (StatusCode, String) {
    let body = serde_json::to_vec(call).expect("json");
    let (status, _, body) = body_of(post(app, Some(JSON), Some(JSON), body).await).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A read in `media`, checked to answer 200 in that media.
async fn read(app: &Router, kind: call::Type, media: Media) -> OpResponse {
    let call = Call {
        r#type: kind as i32,
        ..Default::default()
    };
    let (content_type, body) = match media {
        Media::Json => (
            JSON,
            serde_json::to_vec(&json!({"type": kind.as_str_name()})).expect("json"),
        ),
        Media::Protobuf => (PROTOBUF, call.encode_to_vec()),
    };
    let (status, headers, body) =
        body_of(post(app, Some(content_type), Some(content_type), body).await).await;
    assert_eq!(status, StatusCode::OK, "{kind:?}: {body:?}");
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(content_type)
    );
    decode(media, &body).expect("a response")
}

impl Fixture {
    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    /// Registers an agent; returns its session and id.
    async fn agent(
        &mut self,
        hostname: &str,
        resources: &str,
    ) -> (ConnId, Inbox<MasterMessage>, String) {
        let conn = self.conn();
        let (messages, mut inbox) = outbox();
        let register = agent_message::Register {
            agent_info: Some(pb::AgentInfo {
                hostname: hostname.into(),
                port: Some(5051),
                resources: agora_core::Resources::parse(resources)
                    .expect("resources")
                    .to_proto(None),
                ..Default::default()
            }),
            version: "test".into(),
            tasks: Vec::new(),
            frameworks: Vec::new(),
        };
        self.commands
            .send(Command::AgentRegister {
                conn,
                register,
                principal: None,
                messages,
            })
            .await
            .expect("actor runs");
        let first = next_message(&mut inbox).await;
        let Some(master_message::Kind::Registered(registered)) = first.kind else {
            panic!("expected Registered, got {first:?}");
        };
        let id = registered.agent_id.expect("agent id").value;
        (conn, inbox, id)
    }

    /// Subscribes a framework; returns its stream id, events and id.
    async fn framework(&mut self, name: &str) -> (String, Inbox<sched::Event>, String) {
        let conn = self.conn();
        let stream_id = format!("stream-{conn}");
        let (events, mut inbox) = outbox();
        let (reply, answer) = oneshot::channel();
        let call = sched::Call {
            r#type: sched::call::Type::Subscribe as i32,
            subscribe: Some(sched::call::Subscribe {
                framework_info: Some(pb::FrameworkInfo {
                    user: "alice".into(),
                    name: name.into(),
                    failover_timeout: Some(600.0),
                    ..Default::default()
                }),
                suppressed_roles: Vec::new(),
            }),
            ..Default::default()
        };
        self.commands
            .send(Command::Subscribe {
                conn,
                stream_id: stream_id.clone(),
                call,
                principal: None,
                events,
                reply,
            })
            .await
            .expect("actor runs");
        answer.await.expect("answered").expect("subscribed");
        let subscribed = next_message(&mut inbox).await;
        let id = subscribed
            .subscribed
            .and_then(|s| s.framework_id)
            .expect("framework id")
            .value;
        (stream_id, inbox, id)
    }

    /// Launches a `sleep` task on the framework's next offer.
    async fn launch(
        &mut self,
        framework: &mut (String, Inbox<sched::Event>, String),
        task_id: &str,
    ) {
        let offer = loop {
            let event = next_message(&mut framework.1).await;
            if let Some(offers) = event.offers {
                break offers.offers.into_iter().next().expect("an offer");
            }
        };
        let task = pb::TaskInfo {
            name: task_id.into(),
            task_id: Some(pb::TaskId {
                value: task_id.into(),
            }),
            agent_id: offer.agent_id.clone(),
            resources: agora_core::Resources::parse("cpus:0.5;mem:32")
                .expect("resources")
                .to_proto(None),
            command: Some(pb::CommandInfo {
                value: Some("sleep 600".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = sched::Call {
            framework_id: Some(pb::FrameworkId {
                value: framework.2.clone(),
            }),
            r#type: sched::call::Type::Accept as i32,
            accept: Some(sched::call::Accept {
                offer_ids: offer.id.into_iter().collect(),
                operations: vec![pb::offer::Operation {
                    r#type: Some(pb::offer::operation::Type::Launch as i32),
                    launch: Some(pb::offer::operation::Launch {
                        task_infos: vec![task],
                    }),
                    ..Default::default()
                }],
                filters: None,
            }),
            ..Default::default()
        };
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Call {
                stream_id: framework.0.clone(),
                call,
                principal: None,
                reply,
            })
            .await
            .expect("actor runs");
        answer.await.expect("answered").expect("accepted");
    }

    /// The published snapshot, once `check` holds on it.
    async fn snapshot_where(
        &mut self,
        check: impl Fn(&StateSnapshot) -> bool,
    ) -> Arc<StateSnapshot> {
        tokio::time::timeout(WAIT, self.snapshot.wait_for(|s| check(s)))
            .await
            .expect("the snapshot shows it in time")
            .expect("the actor publishes")
            .clone()
    }
}

async fn next_message<T>(inbox: &mut Inbox<T>) -> T {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("a message in time")
        .expect("the stream is open")
        .expect("not stuck")
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_read_answers_in_json_and_in_protobuf() {
    let mut f = fixture();
    let (_conn, _inbox, agent_id) = f.agent("a1", "cpus:2;mem:1024").await;
    f.snapshot_where(|s| s.agents.len() == 1).await;
    use call::Type as T;
    for media in [Media::Json, Media::Protobuf] {
        let health = read(&f.app, T::GetHealth, media).await;
        assert_eq!(health.r#type, response::Type::GetHealth as i32);
        assert_eq!(health.get_health.and_then(|h| h.healthy), Some(true));

        let flags = read(&f.app, T::GetFlags, media)
            .await
            .get_flags
            .expect("flags");
        let flag = |name: &str| {
            flags
                .flags
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.value.clone())
        };
        assert_eq!(
            flag("max_operator_event_stream_subscribers").as_deref(),
            Some("1000")
        );
        assert_eq!(flag("hostname").as_deref(), Some("master.test"));

        let version = read(&f.app, T::GetVersion, media).await;
        let info = version
            .get_version
            .and_then(|v| v.version_info)
            .expect("info");
        assert_eq!(info.version, "1.11.0");
        assert_eq!(
            info.git_tag,
            Some(format!("agora-{}", env!("CARGO_PKG_VERSION")))
        );

        let metrics = read(&f.app, T::GetMetrics, media)
            .await
            .get_metrics
            .expect("metrics");
        let metric = |name: &str| {
            metrics
                .metrics
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.value)
        };
        assert_eq!(metric("master/elected"), Some(1.0));
        assert_eq!(metric("master/slaves_active"), Some(1.0));
        assert_eq!(metric("master/cpus_total"), Some(2.0));

        let level = read(&f.app, T::GetLoggingLevel, media).await;
        assert_eq!(level.get_logging_level.and_then(|l| l.level), Some(0));

        let state = read(&f.app, T::GetState, media)
            .await
            .get_state
            .expect("state");
        let agents = state.get_agents.expect("agents").agents;
        assert_eq!(agents.len(), 1);
        let info = agents[0].agent_info.as_ref().expect("info");
        assert_eq!(
            info.id.as_ref().map(|i| i.value.as_str()),
            Some(agent_id.as_str())
        );
        assert_eq!(agents[0].pid.as_deref(), Some("slave(1)@a1:5051"));
        assert_eq!(agents[0].version, "1.11.0");
        assert_eq!(agents[0].active, Some(true));
        assert_eq!(
            agora_core::Resources::from_proto(&agents[0].total_resources),
            agora_core::Resources::parse("cpus:2;mem:1024")
        );
        assert!(state.get_frameworks.is_some() && state.get_tasks.is_some());
        assert!(state.get_executors.is_some());

        let agents = read(&f.app, T::GetAgents, media)
            .await
            .get_agents
            .expect("agents");
        assert_eq!(agents.agents.len(), 1);
        let frameworks = read(&f.app, T::GetFrameworks, media).await;
        assert_eq!(frameworks.r#type, response::Type::GetFrameworks as i32);
        assert!(frameworks.get_frameworks.is_some());
        let executors = read(&f.app, T::GetExecutors, media).await;
        assert!(executors.get_executors.is_some());
        let tasks = read(&f.app, T::GetTasks, media).await;
        assert!(tasks.get_tasks.is_some());
        let roles = read(&f.app, T::GetRoles, media).await;
        assert!(roles.get_roles.is_some());
        let weights = read(&f.app, T::GetWeights, media).await;
        assert!(weights.get_weights.is_some());
        let quota = read(&f.app, T::GetQuota, media).await;
        assert!(quota.get_quota.and_then(|q| q.status).is_some());

        let master = read(&f.app, T::GetMaster, media)
            .await
            .get_master
            .expect("master");
        let info = master.master_info.expect("master info");
        assert_eq!(info.id, "m1");
        assert_eq!(info.pid.as_deref(), Some("master@127.0.0.1:5050"));
        assert!(master.start_time.is_some_and(|t| t > 0.0));
        assert!(master.elected_time.is_some());
    }
}

#[tokio::test]
async fn the_view_of_agents_frameworks_and_tasks_is_made_once_asked_for() {
    let mut f = fixture();
    let (_conn, _inbox, agent_id) = f.agent("a1", "cpus:2;mem:1024").await;
    let before = f.snapshot_where(|s| s.agents.len() == 1).await;
    assert!(before.operator.is_none(), "nobody asked for it yet");
    // Reads that do not need it leave it off.
    read(&f.app, call::Type::GetWeights, Media::Json).await;
    assert!(f.snapshot.borrow().operator.is_none());
    // The first read that needs it waits for it, and it stays on.
    let agents = read(&f.app, call::Type::GetAgents, Media::Json)
        .await
        .get_agents
        .expect("agents")
        .agents;
    let ids: Vec<_> = agents
        .iter()
        .filter_map(|a| a.agent_info.as_ref()?.id.as_ref())
        .map(|i| i.value.as_str())
        .collect();
    assert_eq!(ids, vec![agent_id.as_str()]);
    assert!(f.snapshot.borrow().operator.is_some());
}

#[tokio::test]
async fn roles_show_frameworks_and_what_is_allocated_to_them() {
    let mut f = fixture();
    let (_conn, _agent_inbox, _agent_id) = f.agent("a1", "cpus:2;mem:1024").await;
    let mut fw = f.framework("fw").await;
    f.launch(&mut fw, "t1").await;
    let snapshot = f
        .snapshot_where(|s| s.frameworks.iter().any(|f| !f.tasks.is_empty()))
        .await;
    let roles = read(&f.app, call::Type::GetRoles, Media::Json)
        .await
        .get_roles
        .expect("roles")
        .roles;
    let star = roles.iter().find(|r| r.name == "*").expect("role *");
    assert_eq!(star.weight, 1.0);
    assert_eq!(
        star.frameworks,
        vec![pb::FrameworkId {
            value: fw.2.clone()
        }]
    );
    let cpus = star
        .resources
        .iter()
        .find(|r| r.name == "cpus")
        .expect("cpus");
    assert!(
        cpus.scalar.as_ref().is_some_and(|s| s.value >= 0.5),
        "{roles:?}"
    );

    let tasks = read(&f.app, call::Type::GetTasks, Media::Protobuf)
        .await
        .get_tasks
        .expect("tasks");
    assert_eq!(tasks.tasks.len(), 1);
    let task = &tasks.tasks[0];
    assert_eq!(task.name, "t1");
    assert_eq!(task.state, Some(pb::TaskState::TaskStaging as i32));
    assert_eq!(
        task.framework_id.as_ref().map(|f| f.value.as_str()),
        Some(fw.2.as_str())
    );
    let frameworks = read(&f.app, call::Type::GetFrameworks, Media::Json)
        .await
        .get_frameworks
        .expect("frameworks");
    assert_eq!(frameworks.frameworks.len(), 1);
    assert_eq!(frameworks.frameworks[0].active, Some(true));
    assert_eq!(snapshot.frameworks.len(), 1);
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/// Content-Type, Accept, body, the status expected and what its message says.
type Case = (
    Option<&'static str>,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
);

#[tokio::test]
async fn malformed_unsupported_and_unacceptable_calls_are_refused_in_plain_text() {
    let f = fixture();
    let health = serde_json::to_vec(&json!({"type": "GET_HEALTH"})).expect("json");
    let cases: Vec<Case> = vec![
        (None, None, health.clone(), StatusCode::BAD_REQUEST, "Content-Type"),
        (Some("text/plain"), None, health.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain"),
        (Some(JSON), None, b"{not json".to_vec(), StatusCode::BAD_REQUEST, "failed to parse"),
        (Some(JSON), None, b"{}".to_vec(), StatusCode::BAD_REQUEST, "'type'"),
        (Some(JSON), Some("text/html"), health.clone(), StatusCode::NOT_ACCEPTABLE, "text/html"),
        (
            Some(PROTOBUF),
            None,
            Call { r#type: 77, ..Default::default() }.encode_to_vec(),
            StatusCode::NOT_IMPLEMENTED,
            "77",
        ),
        (
            Some(JSON),
            None,
            serde_json::to_vec(&json!({"type": "SET_LOGGING_LEVEL", "set_logging_level": {"level": 1, "duration": {"nanoseconds": 1}}})).expect("json"),
            StatusCode::NOT_IMPLEMENTED,
            "SET_LOGGING_LEVEL",
        ),
        (
            Some(JSON),
            None,
            serde_json::to_vec(&json!({"type": "START_MAINTENANCE"})).expect("json"),
            StatusCode::NOT_IMPLEMENTED,
            "START_MAINTENANCE",
        ),
        (
            Some(JSON),
            None,
            serde_json::to_vec(&json!({"type": "LIST_FILES", "list_files": {"path": "/master/log"}})).expect("json"),
            StatusCode::NOT_FOUND,
            "agent's operator API",
        ),
        (
            Some(JSON),
            None,
            serde_json::to_vec(&json!({"type": "READ_FILE", "read_file": {"path": "/master/log", "offset": 0}})).expect("json"),
            StatusCode::NOT_FOUND,
            "no files",
        ),
        (
            Some(JSON),
            None,
            serde_json::to_vec(&json!({"type": "UPDATE_WEIGHTS"})).expect("json"),
            StatusCode::BAD_REQUEST,
            "'update_weights'",
        ),
        (
            Some(JSON),
            None,
            serde_json::to_vec(&json!({"type": "KILL_TASK", "kill_task": {}})).expect("json"),
            StatusCode::BAD_REQUEST,
            "'kill_task.task_id'",
        ),
        (
            Some(JSON),
            None,
            serde_json::to_vec(&json!({"type": "TEARDOWN", "teardown": {}})).expect("json"),
            StatusCode::BAD_REQUEST,
            "'teardown.framework_id'",
        ),
    ];
    for (content_type, accept, body, expected, needle) in cases {
        let (status, headers, body) = body_of(post(&f.app, content_type, accept, body).await).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, expected, "{content_type:?} {accept:?}: {text}");
        assert!(text.contains(needle), "{needle:?} in {text:?}");
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/plain; charset=utf-8")
        );
    }
    // POST only.
    let response = f
        .app
        .clone()
        .oneshot(
            Request::get("/api/v1")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The process-prefixed path too.
    let response = f
        .app
        .clone()
        .oneshot(
            Request::post("/master/api/v1")
                .header(header::CONTENT_TYPE, JSON)
                .body(Body::from(health))
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_follower_sends_operators_to_the_leader() {
    let (_snapshot_tx, snapshot) = watch::channel(Arc::new(StateSnapshot::default()));
    let (_gate_tx, gate) = watch::channel(Gate::Following {
        leader: Some("leader.test:5050".into()),
    });
    let app = router(
        Services::for_tests(gate, snapshot, Duration::from_secs(15)),
        Default::default(),
    );
    let body = serde_json::to_vec(&json!({"type": "GET_STATE"})).expect("json");
    let response = post(&app, Some(JSON), None, body).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok()),
        Some("//leader.test:5050/api/v1")
    );
}

/// Reads are answered off the async workers (GET_STATE and GET_TASKS copy
/// and encode every task).
#[test]
fn reads_leave_the_async_worker_free() {
    let (_snapshot_tx, snapshot) = watch::channel(Arc::new(StateSnapshot::default()));
    let (commands, _actor) = mpsc::channel(1);
    let (_gate_tx, gate) = watch::channel(Gate::Leading { commands });
    let app = router(
        Services::for_tests(gate, snapshot, Duration::from_secs(15)),
        Default::default(),
    );
    let kinds = [
        "GET_FLAGS",
        "GET_ROLES",
        "GET_WEIGHTS",
        "GET_HEALTH",
        "GET_QUOTA",
    ];
    agora_net::off_workers::assert_answered(&kinds, |kind| {
        let app = app.clone();
        async move {
            let body = serde_json::to_vec(&json!({ "type": kind })).expect("json");
            post(&app, Some(JSON), None, body).await.status()
        }
    });
}

// ---------------------------------------------------------------------------
// Changes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn weights_and_quotas_are_changed_once_durable_and_read_back() {
    let f = fixture();
    let update = json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
        {"role": "eng", "weight": 3.0}, {"role": "ops", "weight": 0.5}
    ]}});
    assert_eq!(
        post_json(&f.app, &update).await,
        (StatusCode::OK, String::new())
    );
    let weights = read(&f.app, call::Type::GetWeights, Media::Json)
        .await
        .get_weights
        .expect("weights")
        .weight_infos;
    assert_eq!(
        weights,
        vec![
            pb::WeightInfo {
                weight: 3.0,
                role: Some("eng".into())
            },
            pb::WeightInfo {
                weight: 0.5,
                role: Some("ops".into())
            },
        ]
    );
    for bad in [
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "eng", "weight": -1.0}]}}),
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "*", "weight": 2.0}]}}),
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"weight": 2.0}]}}),
    ] {
        let (status, text) = post_json(&f.app, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
    }

    let quota = json!({"type": "UPDATE_QUOTA", "update_quota": {"force": true, "quota_configs": [{
        "role": "eng", "guarantees": {"cpus": {"value": 1.0}}, "limits": {"cpus": {"value": 4.0}, "mem": {"value": 2048.0}}
    }]}});
    assert_eq!(post_json(&f.app, &quota).await.0, StatusCode::OK);
    let set = json!({"type": "SET_QUOTA", "set_quota": {"quota_request": {"force": true, "role": "ops",
        "guarantee": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}}]}}});
    assert_eq!(post_json(&f.app, &set).await.0, StatusCode::OK);
    let status = read(&f.app, call::Type::GetQuota, Media::Protobuf)
        .await
        .get_quota
        .and_then(|q| q.status)
        .expect("quota status");
    let config = |role: &str| {
        status
            .configs
            .iter()
            .find(|c| c.role == role)
            .unwrap_or_else(|| panic!("a quota for {role}: {status:?}"))
    };
    let eng = config("eng");
    assert_eq!(eng.guarantees["cpus"].value, 1.0);
    assert_eq!(eng.limits["cpus"].value, 4.0);
    assert_eq!(eng.limits["mem"].value, 2048.0);
    // The deprecated call sets the limit to the guarantee.
    let ops = config("ops");
    assert_eq!(ops.guarantees["cpus"].value, 2.0);
    assert_eq!(ops.limits["cpus"].value, 2.0);
    let info = status
        .infos
        .iter()
        .find(|i| i.role.as_deref() == Some("eng"));
    assert_eq!(info.map(|i| i.guarantee.len()), Some(1));

    let remove = json!({"type": "REMOVE_QUOTA", "remove_quota": {"role": "ops"}});
    assert_eq!(post_json(&f.app, &remove).await.0, StatusCode::OK);
    let (status, text) = post_json(&f.app, &remove).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    let status = read(&f.app, call::Type::GetQuota, Media::Json)
        .await
        .get_quota
        .and_then(|q| q.status)
        .expect("quota status");
    let roles: Vec<&str> = status.configs.iter().map(|c| c.role.as_str()).collect();
    assert_eq!(roles, vec!["eng"]);
}

#[tokio::test]
async fn a_change_that_is_not_made_durable_is_answered_503() {
    let f = fixture_with(Err("the store is gone".into()), Duration::from_secs(15));
    let update = json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
        {"role": "eng", "weight": 3.0}
    ]}});
    let (status, text) = post_json(&f.app, &update).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("the store is gone"), "{text}");
}

#[tokio::test]
async fn reservations_are_made_on_known_agents_only() {
    let mut f = fixture();
    let (_conn, _inbox, agent_id) = f.agent("a1", "cpus:4;mem:1024").await;
    let reserved = json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0},
        "reservations": [{"type": "DYNAMIC", "role": "ops"}]}]);
    let reserve = json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent_id}, "resources": reserved}});
    assert_eq!(
        post_json(&f.app, &reserve).await,
        (StatusCode::OK, String::new())
    );
    let agents = read(&f.app, call::Type::GetAgents, Media::Json)
        .await
        .get_agents
        .expect("agents")
        .agents;
    let total = agora_core::Resources::from_proto(&agents[0].total_resources).expect("total");
    assert_eq!(
        total.by_role().get("ops").map(|r| r.scalar_value("cpus")),
        Some(1.0)
    );

    let unreserve = json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
        "agent_id": {"value": agent_id}, "resources": reserved}});
    assert_eq!(post_json(&f.app, &unreserve).await.0, StatusCode::OK);
    let (status, text) = post_json(&f.app, &unreserve).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "nothing reserved left: {text}"
    );

    let unknown = json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": "m1-S99"}, "resources": reserved}});
    assert_eq!(post_json(&f.app, &unknown).await.0, StatusCode::NOT_FOUND);
    let refine = json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent_id}, "resources": reserved, "source": reserved}});
    let (status, text) = post_json(&f.app, &refine).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("source"), "{text}");
}

#[tokio::test]
async fn kill_task_teardown_and_mark_agent_gone_reach_the_books() {
    let mut f = fixture();
    let (_conn, mut agent_inbox, agent_id) = f.agent("a1", "cpus:2;mem:1024").await;
    let mut fw = f.framework("fw").await;
    f.launch(&mut fw, "t1").await;
    let run = next_message(&mut agent_inbox).await;
    assert!(
        matches!(run.kind, Some(master_message::Kind::RunTask(_))),
        "{run:?}"
    );

    let kill = json!({"type": "KILL_TASK", "kill_task": {
        "task_id": {"value": "t1"}, "reason": "runaway job"}});
    assert_eq!(
        post_json(&f.app, &kill).await,
        (StatusCode::OK, String::new())
    );
    let message = next_message(&mut agent_inbox).await;
    let Some(master_message::Kind::KillTask(kill)) = message.kind else {
        panic!("expected KillTask, got {message:?}");
    };
    assert_eq!(
        kill.message.as_deref(),
        Some("killed by an operator: runaway job")
    );
    let unknown = json!({"type": "KILL_TASK", "kill_task": {"task_id": {"value": "nope"}}});
    assert_eq!(post_json(&f.app, &unknown).await.0, StatusCode::NOT_FOUND);

    let teardown = json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": fw.2}}});
    assert_eq!(post_json(&f.app, &teardown).await.0, StatusCode::OK);
    let frameworks = read(&f.app, call::Type::GetFrameworks, Media::Json)
        .await
        .get_frameworks
        .expect("frameworks");
    assert!(frameworks.frameworks.is_empty());
    assert_eq!(frameworks.completed_frameworks.len(), 1);
    let (status, text) = post_json(&f.app, &teardown).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");

    let gone =
        json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}});
    assert_eq!(post_json(&f.app, &gone).await.0, StatusCode::OK);
    let agents = read(&f.app, call::Type::GetAgents, Media::Json)
        .await
        .get_agents
        .expect("agents");
    assert!(agents.agents.is_empty());
    let (status, _) = post_json(
        &f.app,
        &json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "m1-S77"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------
// The event stream
// ---------------------------------------------------------------------------

type Records = futures::stream::BoxStream<'static, Result<Bytes, axum::Error>>;

/// Opens an event stream in `media`, checks the response, and returns the
/// SUBSCRIBED event and the stream.
async fn subscribe(app: &Router, media: Media) -> (Event, Records) {
    let (content_type, body) = match media {
        Media::Json => (JSON, br#"{"type":"SUBSCRIBE"}"#.to_vec()),
        Media::Protobuf => (
            PROTOBUF,
            Call {
                r#type: call::Type::Subscribe as i32,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    };
    let response = post(app, Some(content_type), Some(content_type), body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(content_type)
    );
    let mut records: Records = response.into_body().into_data_stream().boxed();
    let first = next_event(&mut records, media).await;
    assert_eq!(first.r#type, event::Type::Subscribed as i32, "{first:?}");
    (first, records)
}

/// The next event: one RecordIO record filling one chunk.
async fn next_event(records: &mut Records, media: Media) -> Event {
    let chunk = tokio::time::timeout(WAIT, records.next())
        .await
        .expect("an event in time")
        .expect("the stream is open")
        .expect("a chunk");
    let newline = chunk
        .iter()
        .position(|b| *b == b'\n')
        .expect("a length line");
    let length: usize = std::str::from_utf8(&chunk[..newline])
        .expect("ascii")
        .parse()
        .expect("a length");
    let record = &chunk[newline + 1..];
    assert_eq!(record.len(), length, "one record per chunk");
    decode(media, record).expect("an event")
}

/// The next event that is not a heartbeat.
async fn next_change(records: &mut Records, media: Media) -> Event {
    loop {
        let event = next_event(records, media).await;
        if event.r#type != event::Type::Heartbeat as i32 {
            return event;
        }
    }
}

fn agent_ids(state: &response::GetState) -> Vec<String> {
    state
        .get_agents
        .iter()
        .flat_map(|a| &a.agents)
        .filter_map(|a| a.agent_info.as_ref()?.id.as_ref())
        .map(|i| i.value.clone())
        .collect()
}

#[tokio::test]
async fn a_subscriber_starts_from_the_state_and_sees_each_change_after_it() {
    for media in [Media::Json, Media::Protobuf] {
        let mut f = fixture_with(Ok(()), Duration::from_millis(200));
        let (_conn, _inbox, first_agent) = f.agent("a1", "cpus:2;mem:1024").await;
        let (subscribed, mut records) = subscribe(&f.app, media).await;
        let subscribed = subscribed.subscribed.expect("subscribed");
        assert_eq!(subscribed.heartbeat_interval_seconds, Some(0.2));
        let state = subscribed.get_state.expect("state");
        assert_eq!(agent_ids(&state), vec![first_agent.clone()]);

        let mut fw = f.framework("fw").await;
        let added = next_change(&mut records, media).await;
        assert_eq!(
            added.r#type,
            event::Type::FrameworkAdded as i32,
            "{added:?}"
        );
        f.launch(&mut fw, "t1").await;
        let added = next_change(&mut records, media).await;
        let task = added.task_added.and_then(|t| t.task).expect("TASK_ADDED");
        assert_eq!(task.state, Some(pb::TaskState::TaskStaging as i32));

        let (_conn, _inbox, second_agent) = f.agent("a2", "cpus:1;mem:512").await;
        let added = next_change(&mut records, media).await;
        let agent = added
            .agent_added
            .and_then(|a| a.agent)
            .expect("AGENT_ADDED");
        assert_eq!(
            agent.agent_info.and_then(|i| i.id).map(|i| i.value),
            Some(second_agent.clone())
        );
        let gone = json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": second_agent}}});
        assert_eq!(post_json(&f.app, &gone).await.0, StatusCode::OK);
        let removed = next_change(&mut records, media).await;
        assert_eq!(
            removed
                .agent_removed
                .and_then(|r| r.agent_id)
                .map(|i| i.value),
            Some(second_agent)
        );
        // Quiet now: heartbeats keep the stream alive.
        let beat = next_event(&mut records, media).await;
        assert_eq!(beat.r#type, event::Type::Heartbeat as i32, "{beat:?}");
    }
}

fn register(n: usize) -> agent_message::Register {
    agent_message::Register {
        agent_info: Some(pb::AgentInfo {
            hostname: format!("h{n}"),
            resources: agora_core::Resources::parse("cpus:1;mem:64")
                .expect("resources")
                .to_proto(None),
            ..Default::default()
        }),
        version: "test".into(),
        tasks: Vec::new(),
        frameworks: Vec::new(),
    }
}

#[tokio::test]
async fn a_subscriber_sees_every_agent_once_whatever_registers_around_it() {
    // Registrations queued before and after a subscription, likely handled
    // in one turn of the actor: each agent is either in the state the
    // subscriber starts from or in an AGENT_ADDED after it, never both,
    // never neither.
    const AGENTS: usize = 40;
    let f = fixture();
    let mut sessions = Vec::new();
    let (events, mut inbox) = outbox();
    let (reply, answer) = oneshot::channel();
    let mut subscribe = Some(Command::OperatorSubscribe {
        id: 9_999,
        events,
        reply,
    });
    for n in 0..AGENTS {
        if n == AGENTS / 2
            && let Some(subscribe) = subscribe.take()
        {
            f.commands.send(subscribe).await.expect("actor runs");
        }
        let (messages, session) = outbox();
        let conn = 500 + n as u64;
        let register = register(n);
        f.commands
            .send(Command::AgentRegister {
                conn,
                register,
                principal: None,
                messages,
            })
            .await
            .expect("actor runs");
        sessions.push(session);
    }
    let snapshot = answer.await.expect("subscribed");
    let view = snapshot
        .operator
        .as_ref()
        .expect("the view, for subscribers");
    let mut seen = agent_ids(&view.state);
    while seen.len() < AGENTS {
        let event = next_message(&mut inbox).await;
        let agent = event.agent_added.clone().and_then(|a| a.agent);
        let id = agent
            .and_then(|a| a.agent_info)
            .and_then(|i| i.id)
            .unwrap_or_else(|| panic!("expected AGENT_ADDED, got {event:?}"))
            .value;
        assert!(!seen.contains(&id), "{id} reported twice");
        seen.push(id);
    }
}
