//! The Mesos shapes, pinned on a hand-made snapshot: field names, flat
//! resources, `/tasks`' paging, ordering and refused parameters, the
//! follower's snapshot, and `/metrics/snapshot`'s names. The routes, JSONP
//! and a follower's redirects go through the whole router, which `http`
//! builds on top of this module: `http/mesos_v0_tests.rs`, serving
//! [`fixture`].

use std::collections::BTreeMap;

use agora_core::Resources;
use agora_core::resources::SummaryValue;
use serde_json::{Value, json};

use super::*;
use crate::snapshot::{
    AgentView, FrameworkView, MesosFramework, OfferView, QuotaBody, RoleView, TaskFixed, TaskView,
};

fn res(pairs: &[(&str, f64)]) -> BTreeMap<String, SummaryValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), SummaryValue::Number(*v)))
        .collect()
}

fn task(id: &str, state: &'static str, framework: &str, time: Option<f64>) -> TaskView {
    TaskView {
        fixed: Arc::new(TaskFixed {
            id: agora_core::TaskId::new(id),
            name: agora_core::SmallText::from(format!("name-{id}")),
            framework_id: agora_core::FrameworkId::new(framework),
            agent_id: agora_core::AgentId::new("a1"),
            executor_id: agora_core::ExecutorId::new(id),
            role: agora_core::SmallText::from("eng".to_string()),
            resources: res(&[("cpus", 0.5), ("mem", 128.0)]).into(),
            user: None,
        }),
        state,
        message: None,
        status_time: time,
        healthy: None,
    }
}

fn agent(id: &str, status: &'static str) -> AgentView {
    let mut resources = res(&[("cpus", 4.0), ("mem", 8192.0), ("disk", 10000.0)]);
    resources.insert(
        "ports".to_string(),
        SummaryValue::Text("[31000-32000,33000-34000]".to_string()),
    );
    AgentView {
        id: id.to_string(),
        hostname: format!("host-{id}"),
        address: format!("host-{id}:5051"),
        resources,
        used: res(&[("cpus", 1.0), ("mem", 256.0)]),
        free: res(&[("cpus", 3.0)]),
        attributes: [("rack".to_string(), "r1".to_string())].into(),
        active: status == "active",
        status,
        unreachable_since: None,
        registered_time: 900.0,
    }
}

fn framework(id: &str, active: bool, tasks: Vec<TaskView>, done: Vec<TaskView>) -> FrameworkView {
    FrameworkView {
        id: id.to_string(),
        name: format!("fw-{id}"),
        user: "alice".to_string(),
        principal: Some("svc".to_string()),
        framework_hostname: Some("sched-host".to_string()),
        failover_timeout: Some(60.0),
        roles: vec!["eng".to_string()],
        active,
        registered_time: 950.0,
        reregistered_time: Some(990.0),
        unregistered_time: None,
        outstanding_offers: 1,
        offer_status: vec![],
        tasks: tasks.into(),
        completed_tasks: done.into(),
    }
}

/// A leading master with two agents (one unreachable), a live framework
/// with a running, an unreachable and a finished task (one of them under a
/// custom executor), a completed framework, an offer and a role. The
/// routes' tests in `http/mesos_v0_tests.rs` serve it too.
pub(crate) fn fixture() -> StateSnapshot {
    let mut custom = task("t2", "TASK_RUNNING", "f1", Some(1002.0));
    crate::snapshot::test_views::refix(&mut custom, |f| {
        f.executor_id = agora_core::ExecutorId::new("exec-1")
    });
    let mut snapshot = StateSnapshot {
        version: "0.1.0".to_string(),
        id: "m1".to_string(),
        leader: "master-host:5050".to_string(),
        elected: true,
        hostname: "master-host".to_string(),
        start_time: 100.0,
        snapshot_time: 1000.0,
        agents: vec![agent("a1", "active"), agent("a2", "unreachable")].into(),
        frameworks: vec![framework(
            "f1",
            true,
            vec![
                task("t1", "TASK_RUNNING", "f1", Some(1001.0)),
                custom,
                task("t3", "TASK_UNREACHABLE", "f1", Some(1003.0)),
            ],
            vec![task("t0", "TASK_FINISHED", "f1", Some(1000.0))],
        )]
        .into(),
        completed_frameworks: vec![framework(
            "f0",
            false,
            vec![],
            vec![task("t9", "TASK_KILLED", "f0", None)],
        )]
        .into(),
        outstanding_offers: 1,
        offers: vec![OfferView {
            id: "m1-O1".to_string(),
            framework_id: "f1".to_string(),
            agent_id: "a1".to_string(),
            role: "eng".to_string(),
            resources: res(&[("cpus", 2.0), ("mem", 1024.0)]),
        }]
        .into(),
        roles: vec![RoleView {
            name: "eng".to_string(),
            weight: 2.0,
            quota: Some(QuotaBody {
                guarantee: [("cpus".to_string(), 1.0)].into(),
                limit: [("cpus".to_string(), 8.0)].into(),
            }),
            allocated: [("cpus".to_string(), 3.0)].into(),
            offered: [("cpus".to_string(), 2.0)].into(),
            reserved: BTreeMap::new(),
            consumed: [("cpus".to_string(), 3.0)].into(),
            frameworks: vec!["f1".to_string()],
            offer_status: vec![],
        }],
        ..StateSnapshot::default()
    };
    snapshot
        .counters
        .task_transitions
        .insert("TASK_FINISHED", 4);
    snapshot.counters.agent_registrations = 2;
    snapshot.counters.agent_reregistrations = 1;
    snapshot.mesos.pid = "master@10.0.0.1:5050".to_string();
    snapshot
        .mesos
        .flags
        .insert("agent_ping_timeout".to_string(), "2secs".to_string());
    snapshot
        .mesos
        .agent_resources
        .upsert(std::sync::Arc::new(crate::snapshot::AgentResources {
            id: "a1".to_string(),
            resources: Resources::parse(
                "cpus:3;cpus(ops):1;mem:8192;disk:10000;ports:[31000-32000,33000-34000]",
            )
            .expect("parses"),
        }));
    snapshot.mesos.frameworks.insert(
        "f1".to_string(),
        MesosFramework {
            capabilities: vec!["MULTI_ROLE", "PARTITION_AWARE"],
            checkpoint: true,
            webui_url: Some("http://sched-host:4040".to_string()),
        },
    );
    snapshot
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("serializes")
}

#[test]
fn state_has_mesos_top_level_fields_and_entries() {
    let snapshot = fixture();
    let state = to_json(&shapes::state(&snapshot, 42.5, &mut Default::default()));
    assert_eq!(state["version"], "1.11.0");
    assert_eq!(state["agora_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(state["id"], "m1");
    assert_eq!(state["pid"], "master@10.0.0.1:5050");
    assert_eq!(state["hostname"], "master-host");
    assert_eq!(state["leader"], "master@10.0.0.1:5050");
    assert_eq!(
        state["leader_info"],
        json!({"id": "m1", "pid": "master@10.0.0.1:5050", "port": 5050, "hostname": "master-host"})
    );
    assert_eq!(state["start_time"], 42.5);
    assert_eq!(state["elected_time"], 100.0);
    assert_eq!(state["activated_slaves"], 1);
    assert_eq!(state["deactivated_slaves"], 0);
    assert_eq!(state["unreachable_slaves"], 1);
    assert_eq!(state["flags"]["agent_ping_timeout"], "2secs");
    for empty in [
        "orphan_tasks",
        "unregistered_frameworks",
        "recovered_slaves",
        "capabilities",
    ] {
        assert_eq!(state[empty], json!([]), "{empty}");
    }

    // Agents: the unreachable one is not registered; flat resources.
    let slaves = state["slaves"].as_array().expect("slaves");
    assert_eq!(slaves.len(), 1);
    let slave = &slaves[0];
    assert_eq!(slave["id"], "a1");
    assert_eq!(slave["pid"], "slave(1)@host-a1:5051");
    assert_eq!(slave["port"], 5051);
    assert_eq!(slave["attributes"], json!({"rack": "r1"}));
    assert_eq!(
        slave["resources"],
        json!({"cpus": 4.0, "gpus": 0.0, "mem": 8192.0, "disk": 10000.0,
               "ports": "[31000-32000, 33000-34000]"})
    );
    assert_eq!(
        slave["used_resources"],
        json!({"cpus": 1.0, "gpus": 0.0, "mem": 256.0, "disk": 0.0})
    );
    assert_eq!(
        slave["offered_resources"],
        json!({"cpus": 2.0, "gpus": 0.0, "mem": 1024.0, "disk": 0.0})
    );
    assert_eq!(
        slave["reserved_resources"],
        json!({"ops": {"cpus": 1.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}})
    );
    assert_eq!(slave["unreserved_resources"]["cpus"], 3.0);
    assert_eq!(slave["active"], true);
    assert_eq!(slave["deactivated"], false);
    assert_eq!(slave["registered_time"], 900.0);
    assert!(slave.get("reserved_resources_full").is_none(), "{slave}");

    // Frameworks: tasks split as Mesos does, offers, executors.
    let frameworks = state["frameworks"].as_array().expect("frameworks");
    let f1 = &frameworks[0];
    assert_eq!(f1["id"], "f1");
    assert_eq!(f1["active"], true);
    assert_eq!(f1["connected"], true);
    assert_eq!(f1["checkpoint"], true);
    assert_eq!(f1["webui_url"], "http://sched-host:4040");
    assert_eq!(f1["hostname"], "sched-host");
    assert_eq!(f1["principal"], "svc");
    assert_eq!(f1["failover_timeout"], 60.0);
    assert_eq!(f1["unregistered_time"], 0.0);
    assert_eq!(f1["reregistered_time"], 990.0);
    assert_eq!(f1["roles"], json!(["eng"]));
    assert!(f1.get("role").is_none());
    assert_eq!(
        f1["capabilities"],
        json!([{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}])
    );
    let ids = |tasks: &Value| -> Vec<String> {
        tasks
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(ids(&f1["tasks"]), ["t1", "t2"]);
    assert_eq!(ids(&f1["unreachable_tasks"]), ["t3"]);
    assert_eq!(ids(&f1["completed_tasks"]), ["t0"]);
    // Two running tasks of 0.5 cpus; the unreachable one holds nothing.
    assert_eq!(f1["used_resources"]["cpus"], 1.0);
    assert_eq!(f1["offered_resources"]["cpus"], 2.0);
    assert_eq!(f1["resources"]["cpus"], 3.0);
    assert_eq!(
        f1["offers"],
        json!([{"id": "m1-O1", "framework_id": "f1", "allocation_info": {"role": "eng"},
                "slave_id": "a1",
                "resources": {"cpus": 2.0, "gpus": 0.0, "mem": 1024.0, "disk": 0.0}}])
    );
    assert_eq!(
        f1["executors"],
        json!([{"executor_id": "exec-1", "framework_id": "f1", "slave_id": "a1"}])
    );
    let t1 = &f1["tasks"][0];
    assert_eq!(t1["name"], "name-t1");
    assert_eq!(t1["framework_id"], "f1");
    assert_eq!(t1["slave_id"], "a1");
    assert_eq!(t1["state"], "TASK_RUNNING");
    assert_eq!(t1["role"], "eng");
    // A command task's executor id is empty, as in Mesos.
    assert_eq!(t1["executor_id"], "");
    assert_eq!(f1["tasks"][1]["executor_id"], "exec-1");
    assert_eq!(
        t1["statuses"],
        json!([{"state": "TASK_RUNNING", "timestamp": 1001.0}])
    );
    assert_eq!(
        t1["resources"],
        json!({"cpus": 0.5, "gpus": 0.0, "mem": 128.0, "disk": 0.0})
    );

    let done = &state["completed_frameworks"][0];
    assert_eq!(done["id"], "f0");
    assert_eq!(done["active"], false);
    // Not multi-role: `role`, not `roles`.
    assert_eq!(done["role"], "eng");
    assert!(done.get("roles").is_none());
    assert_eq!(done["completed_tasks"][0]["statuses"], json!([]));
}

#[test]
fn a_follower_snapshot_names_the_leader_it_knows() {
    let snapshot = StateSnapshot::follower("m2", "other-host", Some("leader-host:5050"));
    let state = to_json(&shapes::state(&snapshot, 1.0, &mut Default::default()));
    assert_eq!(state["leader"], "master@leader-host:5050");
    assert_eq!(state["leader_info"]["hostname"], "leader-host");
    assert_eq!(state["leader_info"]["port"], 5050);
    assert!(state.get("elected_time").is_none());
    let nobody = StateSnapshot::follower("m2", "other-host", None);
    let state = to_json(&shapes::state(&nobody, 1.0, &mut Default::default()));
    assert!(state.get("leader").is_none());
    assert!(state.get("leader_info").is_none());
}

#[test]
fn state_summary_counts_tasks_per_agent_and_framework() {
    let snapshot = fixture();
    let summary = to_json(&shapes::state_summary(&snapshot));
    assert_eq!(summary["hostname"], "master-host");
    let slave = &summary["slaves"][0];
    assert_eq!(slave["id"], "a1");
    assert_eq!(slave["pid"], "slave(1)@host-a1:5051");
    assert_eq!(slave["TASK_RUNNING"], 2);
    assert_eq!(slave["TASK_FINISHED"], 1);
    assert_eq!(slave["TASK_UNREACHABLE"], 1);
    assert_eq!(slave["TASK_KILLED"], 0);
    assert_eq!(slave["framework_ids"], json!(["f1"]));
    // Only live frameworks, with Mesos' summary fields.
    let frameworks = summary["frameworks"].as_array().expect("frameworks");
    assert_eq!(frameworks.len(), 1);
    let f1 = &frameworks[0];
    assert_eq!(f1["id"], "f1");
    assert_eq!(f1["TASK_RUNNING"], 2);
    assert_eq!(f1["slave_ids"], json!(["a1"]));
    assert_eq!(f1["used_resources"]["cpus"], 1.0);
    assert!(f1.get("tasks").is_none(), "{f1}");
}

#[test]
fn frameworks_and_slaves_filter_by_id() {
    let snapshot = fixture();
    let all = to_json(&shapes::frameworks(
        &snapshot,
        None,
        &mut Default::default(),
    ));
    assert_eq!(all["frameworks"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        all["completed_frameworks"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(all["unregistered_frameworks"], json!([]));
    let f0 = to_json(&shapes::frameworks(
        &snapshot,
        Some("f0"),
        &mut Default::default(),
    ));
    assert_eq!(f0["frameworks"], json!([]));
    assert_eq!(f0["completed_frameworks"][0]["id"], "f0");

    let slaves = to_json(&shapes::slaves(&snapshot, None));
    assert_eq!(slaves["recovered_slaves"], json!([]));
    let slave = &slaves["slaves"][0];
    assert_eq!(
        slave["reserved_resources_full"],
        json!({"ops": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}, "role": "ops",
                        "reservations": [{"type": "STATIC", "role": "ops"}]}]})
    );
    let unreserved = slave["unreserved_resources_full"]
        .as_array()
        .expect("unreserved");
    let ports = unreserved
        .iter()
        .find(|r| r["name"] == "ports")
        .expect("ports");
    assert_eq!(
        ports["ranges"],
        json!({"range": [{"begin": 31000, "end": 32000}, {"begin": 33000, "end": 34000}]})
    );
    assert_eq!(ports["role"], "*");
    let none = to_json(&shapes::slaves(&snapshot, Some("nope")));
    assert_eq!(none["slaves"], json!([]));
}

fn task_ids(snapshot: &StateSnapshot, query: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let query: HashMap<String, String> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let parsed = TasksQuery::parse(&query)?;
    let tasks = to_json(&shapes::tasks(snapshot, &parsed));
    Ok(tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect())
}

#[test]
fn tasks_are_ordered_paged_and_filtered() {
    let snapshot = fixture();
    // Newest first by default; a task without a status time last.
    assert_eq!(
        task_ids(&snapshot, &[]).expect("valid"),
        ["t3", "t2", "t1", "t0", "t9"]
    );
    assert_eq!(
        task_ids(&snapshot, &[("order", "asc")]).expect("valid"),
        ["t9", "t0", "t1", "t2", "t3"]
    );
    assert_eq!(
        task_ids(&snapshot, &[("limit", "1"), ("order", "desc")]).expect("valid"),
        ["t3"]
    );
    assert_eq!(
        task_ids(&snapshot, &[("limit", "2"), ("offset", "1")]).expect("valid"),
        ["t2", "t1"]
    );
    assert!(
        task_ids(&snapshot, &[("offset", "10")])
            .expect("valid")
            .is_empty()
    );
    assert_eq!(
        task_ids(&snapshot, &[("framework_id", "f0")]).expect("valid"),
        ["t9"]
    );
    assert_eq!(
        task_ids(&snapshot, &[("task_id", "t1")]).expect("valid"),
        ["t1"]
    );
    for bad in [
        ("limit", "-1"),
        ("limit", "ten"),
        ("offset", "1.5"),
        ("order", "sideways"),
    ] {
        let error = task_ids(&snapshot, &[bad]).expect_err("refused");
        assert!(error.contains(bad.0), "{error}");
    }
    // Mesos' default page is 100 tasks.
    let mut many = fixture();
    many.frameworks[0].tasks = (0..150)
        .map(|i| {
            task(
                &format!("x{i:03}"),
                "TASK_RUNNING",
                "f1",
                Some(2000.0 + f64::from(i)),
            )
        })
        .collect();
    let page = task_ids(&many, &[]).expect("valid");
    assert_eq!(page.len(), DEFAULT_TASK_LIMIT);
    assert_eq!(page[0], "x149");
}

#[test]
fn roles_have_mesos_quota_and_breakdown() {
    let snapshot = fixture();
    let roles = to_json(&shapes::roles(&snapshot));
    assert_eq!(
        roles["roles"][0],
        json!({
            "name": "eng",
            "weight": 2.0,
            "quota": {"role": "eng", "guarantee": {"cpus": 1.0}, "limit": {"cpus": 8.0},
                      "consumed": {"cpus": 3.0}},
            "resources": {"cpus": 3.0},
            "allocated": {"cpus": 1.0},
            "offered": {"cpus": 2.0},
            "reserved": {},
            "frameworks": ["f1"],
        })
    );
}

#[test]
fn metrics_snapshot_has_mesos_names() {
    let snapshot = fixture();
    let metrics = crate::metrics::MasterMetrics::new();
    metrics
        .allocation_event
        .observe(std::time::Duration::from_millis(1));
    let values = metrics_snapshot(&snapshot, &metrics, true, 12.0);
    let value = |name: &str| {
        *values
            .get(name)
            .unwrap_or_else(|| panic!("{name} in {values:?}"))
    };
    assert_eq!(value("master/elected"), 1.0);
    assert_eq!(value("master/uptime_secs"), 12.0);
    // The unreachable agent's resources are not counted.
    assert_eq!(value("master/cpus_total"), 4.0);
    assert_eq!(value("master/cpus_used"), 1.0);
    assert_eq!(value("master/cpus_percent"), 0.25);
    assert_eq!(value("master/gpus_total"), 0.0);
    assert_eq!(value("master/gpus_percent"), 0.0);
    assert_eq!(value("master/mem_total"), 8192.0);
    assert_eq!(value("master/disk_used"), 0.0);
    assert_eq!(value("master/slaves_active"), 1.0);
    assert_eq!(value("master/slaves_connected"), 1.0);
    assert_eq!(value("master/slaves_inactive"), 0.0);
    assert_eq!(value("master/slaves_disconnected"), 0.0);
    assert_eq!(value("master/slaves_unreachable"), 1.0);
    assert_eq!(value("master/frameworks_active"), 1.0);
    assert_eq!(value("master/frameworks_inactive"), 0.0);
    assert_eq!(value("master/frameworks_connected"), 1.0);
    assert_eq!(value("master/frameworks_disconnected"), 0.0);
    assert_eq!(value("master/outstanding_offers"), 1.0);
    assert_eq!(value("master/tasks_running"), 2.0);
    assert_eq!(value("master/tasks_unreachable"), 1.0);
    assert_eq!(value("master/tasks_staging"), 0.0);
    // Terminal states are counters of transitions, not what is kept.
    assert_eq!(value("master/tasks_finished"), 4.0);
    assert_eq!(value("master/tasks_killed"), 0.0);
    for name in [
        "starting",
        "killing",
        "failed",
        "lost",
        "error",
        "dropped",
        "gone",
        "gone_by_operator",
        "unknown",
    ] {
        assert_eq!(value(&format!("master/tasks_{name}")), 0.0, "{name}");
    }
    assert_eq!(value("master/slave_registrations"), 2.0);
    assert_eq!(value("master/slave_reregistrations"), 1.0);
    assert_eq!(value("master/slave_removals"), 0.0);
    assert_eq!(value("allocator/mesos/allocation_runs"), 1.0);
    let follower = metrics_snapshot(
        &StateSnapshot::follower("m2", "h", None),
        &metrics,
        false,
        1.0,
    );
    assert_eq!(follower["master/elected"], 0.0);
    assert_eq!(follower["master/slaves_active"], 0.0);
}

#[test]
fn durations_print_as_mesos_does() {
    use crate::snapshot::mesos_duration;
    use std::time::Duration;
    assert_eq!(mesos_duration(Duration::from_secs(2)), "2secs");
    assert_eq!(mesos_duration(Duration::from_secs(75)), "75secs");
    assert_eq!(mesos_duration(Duration::from_secs(120)), "2mins");
    assert_eq!(mesos_duration(Duration::from_millis(100)), "100ms");
    assert_eq!(mesos_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(mesos_duration(Duration::ZERO), "0secs");
    // Mesos' own defaults: `--registry_max_agent_age`, `--gc_delay`.
    assert_eq!(mesos_duration(Duration::from_secs(14 * 86_400)), "2weeks");
    assert_eq!(mesos_duration(Duration::from_secs(7 * 86_400)), "1weeks");
    assert_eq!(mesos_duration(Duration::from_secs(3 * 86_400)), "3days");
    for duration in [
        Duration::from_secs(14 * 86_400),
        Duration::from_secs(90_000),
        Duration::from_micros(1_500),
        Duration::from_nanos(7),
    ] {
        let text = mesos_duration(duration);
        assert_eq!(
            agora_core::time::parse_mesos_duration(&text),
            Ok(duration),
            "{text}"
        );
    }
}
