use super::*;
use crate::snapshot::{OfferView, TaskFixed};
use agora_proto::v1 as pb;
use agora_proto::v1::master::{Event, event, response};

fn task(id: &str, framework: &str, user: Option<&str>) -> TaskView {
    TaskView {
        fixed: Arc::new(TaskFixed {
            id: agora_core::TaskId::new(id),
            name: agora_core::SmallText::from(id.to_string()),
            framework_id: agora_core::FrameworkId::new(framework),
            agent_id: agora_core::AgentId::new("a1"),
            executor_id: agora_core::ExecutorId::new(id),
            role: agora_core::SmallText::from("eng".to_string()),
            resources: Default::default(),
            user: user.map(str::to_string),
        }),
        state: "TASK_RUNNING",
        message: None,
        status_time: None,
        healthy: None,
    }
}

fn framework(id: &str, user: &str, tasks: Vec<TaskView>) -> FrameworkView {
    FrameworkView {
        id: id.to_string(),
        name: id.to_string(),
        user: user.to_string(),
        principal: None,
        framework_hostname: None,
        failover_timeout: None,
        roles: vec!["eng".to_string()],
        active: true,
        registered_time: 0.0,
        reregistered_time: None,
        unregistered_time: None,
        outstanding_offers: 0,
        offer_status: Vec::new(),
        tasks: tasks.into(),
        completed_tasks: Vec::new().into(),
    }
}

fn pb_task(id: &str, framework: &str) -> pb::Task {
    pb::Task {
        name: id.into(),
        task_id: Some(pb::TaskId { value: id.into() }),
        framework_id: Some(pb::FrameworkId {
            value: framework.into(),
        }),
        ..Default::default()
    }
}

fn pb_framework(id: &str, user: &str) -> response::get_frameworks::Framework {
    response::get_frameworks::Framework {
        framework_info: Some(pb::FrameworkInfo {
            id: Some(pb::FrameworkId { value: id.into() }),
            user: user.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Frameworks `fa` (user alice: tasks `a1` as alice and `a2` as root) and
/// `fb` (user bob: task `b1`), an offer to each, and the operator view.
fn fixture(acls: &str) -> Arc<StateSnapshot> {
    let offer = |framework: &str| OfferView {
        id: format!("o-{framework}"),
        framework_id: framework.to_string(),
        agent_id: "a1".to_string(),
        role: "eng".to_string(),
        resources: BTreeMap::new(),
    };
    let operator = OperatorDetails {
        master_info: pb::MasterInfo::default(),
        state: response::GetState {
            get_frameworks: Some(response::GetFrameworks {
                frameworks: vec![pb_framework("fa", "alice"), pb_framework("fb", "bob")],
                ..Default::default()
            }),
            get_tasks: Some(response::GetTasks {
                tasks: vec![
                    pb_task("a1", "fa"),
                    pb_task("a2", "fa"),
                    pb_task("b1", "fb"),
                ],
                ..Default::default()
            }),
            get_executors: Some(response::GetExecutors {
                executors: vec![response::get_executors::Executor {
                    executor_info: Some(pb::ExecutorInfo {
                        framework_id: Some(pb::FrameworkId { value: "fb".into() }),
                        ..Default::default()
                    }),
                    agent_id: None,
                }],
                ..Default::default()
            }),
            get_agents: None,
        },
    };
    Arc::new(StateSnapshot {
        frameworks: vec![
            framework(
                "fa",
                "alice",
                vec![task("a1", "fa", None), task("a2", "fa", Some("root"))],
            ),
            framework("fb", "bob", vec![task("b1", "fb", None)]),
        ]
        .into(),
        offers: vec![offer("fa"), offer("fb")].into(),
        operator: Some(Arc::new(operator)),
        acls: Arc::new(Acls::parse(acls).expect("valid ACLs")),
        ..StateSnapshot::default()
    })
}

const ALICE_ONLY: &str = r#"{
    "view_frameworks": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"values": ["a"]}, "users": {"values": ["alice"]}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
    "view_tasks": [
        {"principals": {"values": ["a"]}, "users": {"values": ["alice"]}},
        {"principals": {"values": ["a"]}, "users": {"type": "NONE"}}],
    "view_executors": [
        {"principals": {"values": ["a"]}, "users": {"type": "NONE"}}]
}"#;

fn ids(frameworks: &crate::snapshot::SharedList<FrameworkView>) -> Vec<String> {
    frameworks
        .iter()
        .map(|f| {
            let tasks: Vec<&str> = f.tasks.iter().map(|t| t.id.as_str()).collect();
            format!("{}:{}", f.id, tasks.join(","))
        })
        .collect()
}

#[test]
fn without_view_rules_the_snapshot_itself_is_shared() {
    let snapshot = fixture(r#"{"run_tasks": []}"#);
    let viewed = for_viewer(&snapshot, None);
    assert!(Arc::ptr_eq(&snapshot, &viewed));
}

#[test]
fn each_viewer_sees_what_the_acls_allow() {
    let snapshot = fixture(ALICE_ONLY);
    let a = Principal::new("a");
    let viewed = for_viewer(&snapshot, Some(&a));
    // The root task of alice's framework is hidden by view_tasks.
    assert_eq!(ids(&viewed.frameworks), ["fa:a1"]);
    assert_eq!(viewed.offers.len(), 1);
    let operator = viewed.operator.as_ref().expect("operator view");
    let frameworks = operator.state.get_frameworks.as_ref().expect("frameworks");
    assert_eq!(frameworks.frameworks.len(), 1);
    let tasks = operator.state.get_tasks.as_ref().expect("tasks");
    let task_ids: Vec<&str> = tasks
        .tasks
        .iter()
        .filter_map(|t| t.task_id.as_ref().map(|t| t.value.as_str()))
        .collect();
    assert_eq!(task_ids, ["a1"]);
    assert!(
        operator
            .state
            .get_executors
            .as_ref()
            .expect("executors")
            .executors
            .is_empty()
    );

    let ops = Principal::new("ops");
    let viewed = for_viewer(&snapshot, Some(&ops));
    assert_eq!(ids(&viewed.frameworks), ["fa:a1,a2", "fb:b1"]);

    let anonymous = for_viewer(&snapshot, None);
    assert!(anonymous.frameworks.is_empty());
    assert!(anonymous.offers.is_empty());
    // What /state serializes follows.
    let json: serde_json::Value =
        serde_json::from_slice(&serde_json::to_vec(&*anonymous).expect("json")).expect("json");
    assert_eq!(json["frameworks"], serde_json::json!([]));
}

#[test]
fn sandboxes_follow_access_sandboxes() {
    let snapshot = fixture(
        r#"{"access_sandboxes": [
            {"principals": {"values": ["a"]}, "users": {"values": ["alice"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
    );
    let a = Principal::new("a");
    let path = |framework: &str, executor: &str| {
        format!("/frameworks/{framework}/executors/{executor}/runs/latest/stdout")
    };
    assert!(may_access_sandbox(&snapshot, Some(&a), &path("fa", "a1")));
    // Its own user (root) decides, not its framework's.
    assert!(!may_access_sandbox(&snapshot, Some(&a), &path("fa", "a2")));
    assert!(!may_access_sandbox(&snapshot, Some(&a), &path("fb", "b1")));
    assert!(!may_access_sandbox(&snapshot, None, &path("fa", "a1")));
    // A path naming no known sandbox, or climbing out of one: "any user".
    assert!(!may_access_sandbox(&snapshot, Some(&a), "/"));
    assert!(!may_access_sandbox(
        &snapshot,
        Some(&a),
        "/frameworks/fa/executors/a1/../../fb/executors/b1"
    ));
    // Without rules for it, everything is allowed.
    let open = fixture("{}");
    assert!(may_access_sandbox(&open, None, "/"));
}

#[test]
fn operator_events_are_filtered_like_the_state() {
    let snapshot = fixture(ALICE_ONLY);
    let mut filter = EventFilter::new(&snapshot, Some(Principal::new("a"))).expect("restricted");
    let task_added = |framework: &str| Event {
        r#type: event::Type::TaskAdded as i32,
        task_added: Some(event::TaskAdded {
            task: Some(pb_task("t", framework)),
        }),
        ..Default::default()
    };
    assert!(filter.shows(&task_added("fa")));
    assert!(!filter.shows(&task_added("fb")));
    assert!(!filter.shows(&task_added("unknown")));
    let framework_added = |id: &str, user: &str| Event {
        r#type: event::Type::FrameworkAdded as i32,
        framework_added: Some(event::FrameworkAdded {
            framework: Some(pb_framework(id, user)),
        }),
        ..Default::default()
    };
    assert!(!filter.shows(&framework_added("fc", "carol")));
    assert!(filter.shows(&framework_added("fd", "alice")));
    // A framework learnt from an event: its tasks follow it.
    assert!(filter.shows(&task_added("fd")));
    assert!(!filter.shows(&task_added("fc")));
    assert!(EventFilter::new(&fixture("{}"), None).is_none());
}

#[test]
fn roles_weights_and_quotas_follow_view_roles_and_get_quotas() {
    use crate::snapshot::{QuotaBody, QuotaView, RoleView, WeightView};
    let role = |name: &str| RoleView {
        name: name.into(),
        weight: 1.0,
        quota: Some(QuotaBody {
            guarantee: BTreeMap::new(),
            limit: BTreeMap::new(),
        }),
        allocated: BTreeMap::new(),
        offered: BTreeMap::new(),
        reserved: BTreeMap::new(),
        consumed: BTreeMap::new(),
        frameworks: Vec::new(),
        offer_status: Vec::new(),
    };
    let quota = |name: &str| QuotaView {
        role: name.into(),
        guarantee: BTreeMap::new(),
        limit: BTreeMap::new(),
        consumed: BTreeMap::new(),
    };
    let base = fixture(
        r#"{
        "view_roles": [{"principals": {"values": ["a"]}, "roles": {"values": ["eng", "web"]}},
                       {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
        "get_quotas": [{"principals": {"values": ["a"]}, "roles": {"values": ["eng"]}},
                       {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}]
    }"#,
    );
    let mut snapshot = (*base).clone();
    snapshot.roles = vec![role("eng"), role("web"), role("ops")];
    snapshot.weights = vec![
        WeightView {
            role: "web".into(),
            weight: 2.0,
        },
        WeightView {
            role: "ops".into(),
            weight: 3.0,
        },
    ];
    snapshot.quotas = vec![quota("eng"), quota("web")];
    let snapshot = Arc::new(snapshot);

    let a = Principal::new("a");
    let viewed = for_viewer(&snapshot, Some(&a));
    let names: Vec<(&str, bool)> = viewed
        .roles
        .iter()
        .map(|r| (r.name.as_str(), r.quota.is_some()))
        .collect();
    assert_eq!(names, [("eng", true), ("web", false)]);
    let weights: Vec<&str> = viewed.weights.iter().map(|w| w.role.as_str()).collect();
    assert_eq!(weights, ["web"]);
    let quotas: Vec<&str> = viewed.quotas.iter().map(|q| q.role.as_str()).collect();
    assert_eq!(quotas, ["eng"]);

    let anonymous = for_viewer(&snapshot, None);
    assert!(anonymous.roles.is_empty());
    assert!(anonymous.weights.is_empty());
    assert!(anonymous.quotas.is_empty());
}

/// `/state` in gzip for viewers the ACLs treat apart: each gets the gzip of
/// its own body, never one made for another viewer of the same snapshot
/// (the shared gzip is keyed by the snapshot alone); a client that does not
/// take gzip gets the body as it is.
#[tokio::test]
async fn each_viewers_gzip_is_of_its_own_body() {
    use crate::snapshot::state_body::{self, ChunkCache, Rope};
    use crate::snapshot_body::SnapshotBody;
    use crate::snapshot_body::gzip::{Segments, gunzip};
    use axum::http::{HeaderMap, HeaderValue, header};

    // Padded past the size below which a body goes as it is.
    let snapshot = Arc::new(StateSnapshot {
        hostname: "master.example.org.".repeat(64),
        ..fixture(ALICE_ONLY).as_ref().clone()
    });
    let bodies: SnapshotBody<Rope, ChunkCache> = SnapshotBody::default();
    let gzips: SnapshotBody<Rope, Segments> = SnapshotBody::default();
    let mut takes_gzip = HeaderMap::new();
    takes_gzip.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let sent = async |response: axum::response::Response| {
        let coding = response.headers().get(header::CONTENT_ENCODING).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        (coding, bytes.to_vec())
    };
    let mut seen = Vec::new();
    for who in ["ops", "a", "ops", "a"] {
        let viewer = Viewer(Some(Principal::new(who)));
        let plain = viewer
            .body(snapshot.clone(), &bodies, state_body::make)
            .await
            .expect("a body");
        assert!(
            plain.len() as u64 >= agora_net::encoding::MIN_BYTES,
            "the fixture's body is worth compressing"
        );
        let (coding, gz) = sent(
            viewer
                .send_rope(snapshot.clone(), plain.clone(), &gzips, &takes_gzip)
                .await,
        )
        .await;
        assert_eq!(coding.as_ref().map(|c| c.as_bytes()), Some(&b"gzip"[..]));
        let decoded = gunzip(&gz);
        assert_eq!(decoded, plain.to_vec(), "{who}");
        let (coding, as_is) = sent(
            viewer
                .send_rope(snapshot.clone(), plain.clone(), &gzips, &HeaderMap::new())
                .await,
        )
        .await;
        assert_eq!(coding, None, "{who}: no gzip unasked");
        assert_eq!(as_is, plain.to_vec(), "{who}");
        seen.push(decoded);
    }
    assert_ne!(seen[0], seen[1], "ops and a see different bodies");
    let body: serde_json::Value = serde_json::from_slice(&seen[1]).expect("json");
    assert_eq!(
        body["frameworks"].as_array().map(Vec::len),
        Some(1),
        "a sees alice's only"
    );

    // A body too small to gain goes as it is, even to a gzip client.
    let small = Rope::from(b"{}".to_vec());
    let (coding, bytes) = sent(
        Viewer(None)
            .send_rope(snapshot.clone(), small, &gzips, &takes_gzip)
            .await,
    )
    .await;
    assert_eq!((coding, bytes), (None, b"{}".to_vec()));
}
