//! The JSON shapes the web UI relies on, pinned; paging and filters; and
//! refusals of bad query parameters.

use std::collections::BTreeMap;

use agora_core::resources::SummaryValue;
use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::views::cluster_name;
use super::*;
use crate::snapshot::test_views::refix;
use crate::snapshot::{
    AgentView, FrameworkView, OfferStatusView, OfferView, QuotaBody, RoleView, TaskFixed, TaskView,
};

fn res(pairs: &[(&str, f64)]) -> BTreeMap<String, SummaryValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), SummaryValue::Number(*v)))
        .collect()
}

fn task(id: &str, state: &'static str, framework: &str, agent: &str) -> TaskView {
    TaskView {
        fixed: Arc::new(TaskFixed {
            id: agora_core::TaskId::new(id),
            name: agora_core::SmallText::from(format!("name-{id}")),
            framework_id: agora_core::FrameworkId::new(framework),
            agent_id: agora_core::AgentId::new(agent),
            executor_id: agora_core::ExecutorId::new(id),
            role: agora_core::SmallText::from("eng".to_string()),
            resources: res(&[("cpus", 0.5), ("mem", 128.0)]).into(),
            user: None,
        }),
        state,
        message: None,
        status_time: Some(1000.5),
        healthy: None,
    }
}

fn agent(id: &str, status: &'static str) -> AgentView {
    AgentView {
        id: id.to_string(),
        hostname: format!("host-{id}"),
        address: format!("host-{id}:5051"),
        resources: res(&[("cpus", 4.0), ("mem", 8192.0), ("disk", 10000.0)]),
        used: res(&[("cpus", 0.5), ("mem", 128.0)]),
        free: res(&[("cpus", 3.5)]),
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
        offer_status: vec![OfferStatusView {
            role: "eng".to_string(),
            last_offered_secs_ago: Some(3.0),
            reason: Some("filtered"),
            filtered_agents: 1,
        }],
        tasks: tasks.into(),
        completed_tasks: done.into(),
    }
}

/// Two agents (one unreachable), an active framework with a running and a
/// finished task, a completed framework, one offer and one role.
fn fixture() -> StateSnapshot {
    StateSnapshot {
        version: "0.1.0".to_string(),
        id: "m1".to_string(),
        leader: "master-host:5050".to_string(),
        elected: true,
        epoch: Some(7),
        hostname: "master-host".to_string(),
        start_time: 100.0,
        snapshot_time: 1000.0,
        agents: vec![agent("a1", "active"), agent("a2", "unreachable")].into(),
        frameworks: vec![framework(
            "f1",
            true,
            vec![task("t1", "TASK_RUNNING", "f1", "a1")],
            vec![task("t0", "TASK_FINISHED", "f1", "a1")],
        )]
        .into(),
        completed_frameworks: vec![framework("f0", false, vec![], vec![])].into(),
        outstanding_offers: 1,
        offers: vec![OfferView {
            id: "m1-O1".to_string(),
            framework_id: "f1".to_string(),
            agent_id: "a1".to_string(),
            role: "eng".to_string(),
            resources: res(&[("cpus", 1.0), ("mem", 1024.0)]),
        }]
        .into(),
        roles: vec![RoleView {
            name: "eng".to_string(),
            weight: 2.0,
            quota: Some(QuotaBody {
                guarantee: [("cpus".to_string(), 1.0)].into(),
                limit: [("cpus".to_string(), 8.0)].into(),
            }),
            allocated: [("cpus".to_string(), 1.5)].into(),
            offered: [("cpus".to_string(), 1.0)].into(),
            reserved: BTreeMap::new(),
            consumed: [("cpus".to_string(), 1.5)].into(),
            frameworks: vec!["f1".to_string()],
            offer_status: vec![],
        }],
        ..StateSnapshot::default()
    }
}

fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("serializes")
}

fn query_of(pairs: &[(&str, &str)]) -> ListQuery {
    let params: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    list_query(
        Ok(Query(params)),
        &["state", "framework_id", "agent_id", "q", "status"],
    )
    .expect("valid query")
}

#[test]
fn overview_shape() {
    let value = overview_json(&fixture(), 1100.0);
    assert_eq!(
        value,
        json!({
            "master": {
                "id": "m1", "version": "0.1.0", "hostname": "master-host",
                "cluster": "master-host", "leader": "master-host:5050", "elected": true,
                "epoch": 7, "start_time": 100.0, "uptime_secs": 1000.0,
                "snapshot_time": 1000.0, "recovering_agents": 0
            },
            "agents": {"active": 1, "inactive": 0, "unreachable": 1},
            "frameworks": {"active": 1, "inactive": 0, "completed": 1},
            "tasks": {
                "TASK_STAGING": 0, "TASK_STARTING": 0, "TASK_RUNNING": 1, "TASK_KILLING": 0,
                "TASK_UNREACHABLE": 0, "TASK_FINISHED": 1, "TASK_KILLED": 0, "TASK_FAILED": 0,
                "TASK_LOST": 0
            },
            "resources": {
                // a2 is unreachable: what its tasks do not use is unavailable, not idle.
                "cpus": {"total": 8.0, "allocated": 1.0, "offered": 1.0, "unavailable": 3.5, "idle": 2.5},
                "disk": {"total": 20000.0, "allocated": 0.0, "offered": 0.0, "unavailable": 10000.0, "idle": 10000.0},
                "gpus": {"total": 0.0, "allocated": 0.0, "offered": 0.0, "unavailable": 0.0, "idle": 0.0},
                "mem": {"total": 16384.0, "allocated": 256.0, "offered": 1024.0, "unavailable": 8064.0, "idle": 7040.0}
            },
            "outstanding_offers": 1,
            "roles": 1
        })
    );
}

#[test]
fn task_row_shape() {
    let s = fixture();
    let page = task_page(&s, &query_of(&[("state", "TASK_RUNNING")])).expect("page");
    assert_eq!(
        to_json(page),
        json!({
            "total": 1, "offset": 0, "limit": 100,
            "items": [{
                "id": "t1", "name": "name-t1", "state": "TASK_RUNNING",
                "framework_id": "f1", "framework_name": "fw-f1",
                "agent_id": "a1", "agent_hostname": "host-a1", "agent_address": "host-a1:5051",
                "agent_status": "active", "executor_id": "t1",
                "role": "eng",
                "resources": {"cpus": 0.5, "mem": 128.0, "disk": 0.0, "gpus": 0.0},
                "message": null, "status_time": 1000.5, "healthy": null,
                "sandbox": "/frameworks/f1/executors/t1/runs/latest"
            }]
        })
    );
}

#[test]
fn agent_row_shape() {
    let s = fixture();
    let page = agent_page(&s, &query_of(&[("status", "active")])).expect("page");
    assert_eq!(
        to_json(page),
        json!({
            "total": 1, "offset": 0, "limit": 100,
            "items": [{
                "id": "a1", "hostname": "host-a1", "address": "host-a1:5051",
                "status": "active", "active": true, "registered_time": 900.0,
                "unreachable_since": null, "attributes": {"rack": "r1"},
                "total": {"cpus": 4.0, "mem": 8192.0, "disk": 10000.0, "gpus": 0.0},
                "used": {"cpus": 0.5, "mem": 128.0, "disk": 0.0, "gpus": 0.0},
                "offered": {"cpus": 1.0, "mem": 1024.0, "disk": 0.0, "gpus": 0.0},
                "tasks": 1
            }]
        })
    );
}

#[test]
fn framework_row_and_detail_shapes() {
    let s = fixture();
    let page = framework_page(&s, &query_of(&[("status", "active")])).expect("page");
    let row = json!({
        "id": "f1", "name": "fw-f1", "user": "alice", "principal": "svc",
        "hostname": "sched-host", "roles": ["eng"], "status": "active",
        "registered_time": 950.0, "reregistered_time": 990.0, "unregistered_time": null,
        "failover_timeout": 60.0,
        "active_tasks": 1, "completed_tasks": 1,
        "used": {"cpus": 0.5, "mem": 128.0, "disk": 0.0, "gpus": 0.0},
        "offered": {"cpus": 1.0, "mem": 1024.0, "disk": 0.0, "gpus": 0.0},
        "outstanding_offers": 1
    });
    assert_eq!(
        to_json(page),
        json!({"total": 1, "offset": 0, "limit": 100, "items": [row.clone()]})
    );
    let detail = framework_detail(&s, "f1").expect("known framework");
    assert_eq!(
        detail,
        json!({
            "framework": row,
            "task_counts": {"TASK_FINISHED": 1, "TASK_RUNNING": 1},
            "offers": [{
                "id": "m1-O1", "framework_id": "f1", "framework_name": "fw-f1",
                "agent_id": "a1", "agent_hostname": "host-a1", "agent_address": "host-a1:5051",
                "role": "eng",
                "resources": {"cpus": 1.0, "mem": 1024.0, "disk": 0.0, "gpus": 0.0}
            }],
            "offer_status": [{
                "role": "eng", "last_offered_secs_ago": 3.0, "reason": "filtered",
                "explanation": "it declined every agent that has free resources; its filters have not expired yet",
                "filtered_agents": 1
            }]
        })
    );
    let completed = framework_page(&s, &query_of(&[("status", "completed")])).expect("page");
    assert_eq!(completed.total, 1);
    assert_eq!(completed.items[0].status, "completed");
    assert!(framework_detail(&s, "nope").is_none());
}

#[test]
fn agent_detail_shape() {
    let detail = agent_detail(&fixture(), "a1").expect("known agent");
    assert_eq!(
        detail["frameworks"],
        json!([{
            "id": "f1", "name": "fw-f1", "status": "active", "active_tasks": 1,
            "used": {"cpus": 0.5, "mem": 128.0, "disk": 0.0, "gpus": 0.0}
        }])
    );
    assert_eq!(
        detail["executors"],
        json!([{
            "id": "t1", "framework_id": "f1", "task_id": "t1", "task_name": "name-t1",
            "state": "TASK_RUNNING",
            "resources": {"cpus": 0.5, "mem": 128.0, "disk": 0.0, "gpus": 0.0},
            "sandbox": "/frameworks/f1/executors/t1/runs/latest"
        }])
    );
    assert_eq!(detail["executors_total"], 1);
    assert_eq!(
        detail["task_counts"],
        json!({"TASK_FINISHED": 1, "TASK_RUNNING": 1})
    );
    assert_eq!(detail["agent"]["id"], "a1");
    assert!(agent_detail(&fixture(), "nope").is_none());
}

#[test]
fn roles_and_master_shapes() {
    assert_eq!(
        to_json(role_rows(&fixture())),
        json!([{
            "name": "eng", "weight": 2.0, "frameworks": ["f1"],
            "allocated": {"cpus": 1.5, "mem": 0.0, "disk": 0.0, "gpus": 0.0},
            "offered": {"cpus": 1.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0},
            "reserved": {"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0},
            "consumed": {"cpus": 1.5, "mem": 0.0, "disk": 0.0, "gpus": 0.0},
            "guarantee": {"cpus": 1.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0},
            "limit": {"cpus": 8.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}
        }])
    );
    // A follower knows little, and has no uptime of its own to show.
    let follower = StateSnapshot::follower("m2", "other", Some("master-host:5050"));
    let info = to_json(master_info(&follower, 1100.0));
    assert_eq!(info["elected"], false);
    assert_eq!(info["leader"], "master-host:5050");
    assert_eq!(info["uptime_secs"], Value::Null);
}

/// A snapshot with `n` tasks spread over two frameworks and two agents.
fn many_tasks(n: usize) -> StateSnapshot {
    let mut s = fixture();
    let states = ["TASK_RUNNING", "TASK_STAGING", "TASK_FINISHED"];
    let tasks: Vec<TaskView> = (0..n)
        .map(|i| {
            let agent = if i % 2 == 0 { "a1" } else { "a2" };
            task(&format!("job-{i:05}"), states[i % 3], "f1", agent)
        })
        .collect();
    s.frameworks[0].tasks = tasks.into();
    s.frameworks[0].completed_tasks.clear();
    s
}

#[test]
fn task_pages_are_capped_and_counted() {
    let s = many_tasks(1200);
    let first = task_page(&s, &query_of(&[("limit", "100000")])).expect("page");
    assert_eq!(first.total, 1200);
    assert_eq!(first.limit, MAX_LIMIT);
    assert_eq!(first.items.len(), MAX_LIMIT);
    assert_eq!(first.items[0].id, "job-00000");
    let last = task_page(&s, &query_of(&[("offset", "1150"), ("limit", "100")])).expect("page");
    assert_eq!(last.items.len(), 50);
    assert_eq!(last.items[0].id, "job-01150");
    let beyond = task_page(&s, &query_of(&[("offset", "5000")])).expect("page");
    assert_eq!((beyond.total, beyond.items.len()), (1200, 0));
    let counted = task_page(&s, &query_of(&[("limit", "0")])).expect("page");
    assert_eq!((counted.total, counted.items.len()), (1200, 0));
}

#[test]
fn task_filters_combine() {
    let s = many_tasks(300);
    let count = |pairs: &[(&str, &str)]| task_page(&s, &query_of(pairs)).expect("page").total;
    assert_eq!(count(&[("state", "TASK_RUNNING")]), 100);
    assert_eq!(count(&[("state", "active")]), 200);
    assert_eq!(count(&[("state", "terminal")]), 100);
    assert_eq!(count(&[("agent_id", "a1")]), 150);
    assert_eq!(count(&[("agent_id", "a1"), ("state", "TASK_RUNNING")]), 50);
    assert_eq!(count(&[("framework_id", "f1")]), 300);
    assert_eq!(count(&[("framework_id", "f0")]), 0);
    // Name or id, case-insensitive.
    assert_eq!(count(&[("q", "JOB-0001")]), 10);
    assert_eq!(count(&[("q", "name-job-00299")]), 1);
    // An empty filter is no filter.
    assert_eq!(count(&[("state", "")]), 300);
}

#[test]
fn agent_and_offer_filters() {
    let s = fixture();
    let agents = |pairs: &[(&str, &str)]| agent_page(&s, &query_of(pairs)).expect("page").total;
    assert_eq!(agents(&[]), 2);
    assert_eq!(agents(&[("status", "unreachable")]), 1);
    assert_eq!(agents(&[("q", "HOST-A2")]), 1);
    let offers = offer_page(&s, &query_of(&[("agent_id", "a2")])).expect("page");
    assert_eq!(offers.total, 0);
    let offers = offer_page(&s, &query_of(&[("framework_id", "f1")])).expect("page");
    assert_eq!(offers.items[0].agent_hostname, "host-a1");
}

#[test]
fn lists_are_sorted_by_default_and_by_any_column() {
    let mut s = many_tasks(6);
    for (i, t) in s.frameworks[0].tasks.iter_mut().enumerate() {
        // job-00003 is the newest, job-00004 has no time at all.
        t.status_time = match i {
            3 => Some(2000.0),
            4 => None,
            _ => Some(1000.0 + i as f64),
        };
        refix(t, |f| {
            f.resources = res(&[("cpus", (i % 3) as f64), ("mem", 64.0)]).into()
        });
    }
    let ids = |pairs: &[(&str, &str)]| -> Vec<String> {
        task_page(&s, &query_of(pairs))
            .expect("page")
            .items
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    // Newest update first; unknown times last.
    assert_eq!(
        ids(&[]),
        [
            "job-00003",
            "job-00005",
            "job-00002",
            "job-00001",
            "job-00000",
            "job-00004"
        ]
    );
    assert_eq!(ids(&[]), ids(&[("sort", "-updated")]));
    assert_eq!(ids(&[("sort", "updated")])[0], "job-00004");
    assert_eq!(
        ids(&[("sort", "-id")]),
        [
            "job-00005",
            "job-00004",
            "job-00003",
            "job-00002",
            "job-00001",
            "job-00000"
        ]
    );
    // Ties go by id, ascending in both directions.
    assert_eq!(
        ids(&[("sort", "cpus")]),
        [
            "job-00000",
            "job-00003",
            "job-00001",
            "job-00004",
            "job-00002",
            "job-00005"
        ]
    );
    assert_eq!(
        ids(&[("sort", "-cpus")]),
        [
            "job-00002",
            "job-00005",
            "job-00001",
            "job-00004",
            "job-00000",
            "job-00003"
        ]
    );
    // Paging follows the order.
    assert_eq!(
        ids(&[("sort", "-id"), ("offset", "2"), ("limit", "2")]),
        ["job-00003", "job-00002"]
    );
    // By agent: hostname:port, so a1's tasks come before a2's.
    let by_agent = ids(&[("sort", "agent")]);
    assert_eq!(by_agent[..3], ["job-00000", "job-00002", "job-00004"]);

    // Agents by hostname:port by default; two agents on one host by port.
    let mut s = fixture();
    let mut third = agent("a3", "active");
    third.hostname = "host-a1".to_string();
    third.address = "host-a1:5050".to_string();
    s.agents.upsert(std::sync::Arc::new(third));
    let agents = |pairs: &[(&str, &str)]| -> Vec<String> {
        agent_page(&s, &query_of(pairs))
            .expect("page")
            .items
            .into_iter()
            .map(|a| a.id)
            .collect()
    };
    assert_eq!(agents(&[]), ["a3", "a1", "a2"]);
    assert_eq!(agents(&[("sort", "-hostname")]), ["a2", "a1", "a3"]);
    assert_eq!(agents(&[("sort", "status")]), ["a1", "a3", "a2"]);
    assert_eq!(agents(&[("sort", "-tasks")])[0], "a1");

    // Frameworks newest first by default; by status on request.
    let mut s = fixture();
    s.completed_frameworks[0].registered_time = 980.0;
    let frameworks = |pairs: &[(&str, &str)]| -> Vec<String> {
        framework_page(&s, &query_of(pairs))
            .expect("page")
            .items
            .into_iter()
            .map(|f| f.id)
            .collect()
    };
    assert_eq!(frameworks(&[]), ["f0", "f1"]);
    assert_eq!(frameworks(&[("sort", "status")]), ["f1", "f0"]);
    assert_eq!(frameworks(&[("sort", "-tasks")]), ["f1", "f0"]);
    assert_eq!(frameworks(&[("sort", "name")]), ["f0", "f1"]);
}

#[test]
fn any_page_is_the_slice_of_the_whole_order() {
    // Many ties (7 times, 3 sizes), so the tie-break decides a lot.
    let mut s = many_tasks(400);
    for (i, t) in s.frameworks[0].tasks.iter_mut().enumerate() {
        t.status_time = Some((i * 5 % 7) as f64);
        refix(t, |f| f.resources = res(&[("cpus", (i % 3) as f64)]).into());
    }
    let ids = |pairs: &[(&str, &str)]| -> Vec<String> {
        task_page(&s, &query_of(pairs))
            .expect("page")
            .items
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    for sort in [
        "updated", "-updated", "cpus", "-cpus", "state", "-name", "agent",
    ] {
        // One page holds all 400: the whole order, sorted outright.
        let whole = ids(&[("sort", sort), ("limit", "500")]);
        assert_eq!(whole.len(), 400);
        for offset in [0, 1, 7, 99, 200, 398, 399, 400, 1000] {
            for limit in [0, 1, 3, 100] {
                let (o, l) = (offset.to_string(), limit.to_string());
                let page = ids(&[("sort", sort), ("offset", &o), ("limit", &l)]);
                let from = offset.min(400);
                let to = (offset + limit).min(400);
                assert_eq!(
                    page,
                    whole[from..to],
                    "sort={sort} offset={offset} limit={limit}"
                );
            }
        }
    }
}

#[test]
fn the_cluster_is_named_after_the_machine_where_the_master_has_only_an_ip() {
    assert_eq!(cluster_name("master-host", Some("box")), "master-host");
    assert_eq!(cluster_name("127.0.0.1", Some("box")), "box");
    assert_eq!(cluster_name("::1", Some("box")), "box");
    assert_eq!(cluster_name("127.0.0.1", None), "127.0.0.1");
}

async fn get(path: &str) -> (StatusCode, Value) {
    let (_tx, rx) = watch::channel(Arc::new(many_tasks(20)));
    let response = router(rx, UtilisationSamples::default())
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, serde_json::from_slice(&body).expect("json body"))
}

#[tokio::test]
async fn bad_parameters_are_refused_with_json() {
    for path in [
        "/api/tasks?limit=ten",
        "/api/tasks?offset=-1",
        "/api/tasks?limit=1.5",
        "/api/tasks?state=RUNNING",
        "/api/tasks?sort=nonsense",
        "/api/tasks?sort=-",
        "/api/agents?sort=name",
        "/api/frameworks?sort=--name",
        "/api/offers?sort=updated",
        "/api/agents?status=gone",
        "/api/frameworks?status=sleeping",
        "/api/offers?state=TASK_RUNNING",
        "/api/tasks?limit=%FF",
    ] {
        let (status, body) = get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[tokio::test]
async fn routes_answer_json() {
    let (status, body) = get("/api/tasks?state=TASK_RUNNING&limit=3&offset=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 7);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(3));
    for path in [
        "/api/master",
        "/api/overview",
        "/api/utilisation",
        "/api/agents",
        "/api/agents/a1",
        "/api/frameworks",
        "/api/frameworks/f1",
        "/api/tasks/f1/job-00003",
        "/api/roles",
        "/api/offers",
    ] {
        let (status, body) = get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    for path in ["/api/agents/zz", "/api/frameworks/zz", "/api/tasks/f1/zz"] {
        let (status, body) = get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test(start_paused = true)]
async fn utilisation_keeps_an_hour_of_samples() {
    let (tx, rx) = watch::channel(Arc::new(fixture()));
    let samples = UtilisationSamples::default();
    let sampler = tokio::spawn(sample_utilisation(rx, samples.clone()));
    // With the clock paused, time jumps ahead whenever every task waits.
    tokio::time::sleep(SAMPLE_EVERY * (SAMPLES_KEPT as u32 + 20)).await;
    let kept = samples.0.lock().expect("not poisoned").len();
    assert_eq!(kept, SAMPLES_KEPT);
    let first = samples.0.lock().expect("not poisoned")[0].resources["cpus"];
    assert_eq!(first.total, 8.0);
    drop(tx);
    tokio::time::sleep(SAMPLE_EVERY * 2).await;
    assert!(sampler.is_finished(), "the sampler ends with the master");
}

#[tokio::test(start_paused = true)]
async fn a_follower_samples_nothing_until_it_leads() {
    let (tx, rx) = watch::channel(Arc::new(StateSnapshot::follower("m2", "h", None)));
    let samples = UtilisationSamples::default();
    let _sampler = tokio::spawn(sample_utilisation(rx, samples.clone()));
    tokio::time::sleep(SAMPLE_EVERY * 3).await;
    assert!(samples.0.lock().expect("not poisoned").is_empty());
    tx.send_replace(Arc::new(fixture()));
    // The first sample comes at once, not a whole interval later.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(samples.0.lock().expect("not poisoned").len(), 1);
}

proptest::proptest! {
    /// The default order's page read from the newest chunks down
    /// (`newest.rs`) is the page of the walk over every task, whatever the
    /// lists went through: dates moved both ways (a chunk's newest then
    /// above its tasks'), unknown, tied and NaN, tasks removed, completed
    /// lists pushed (ids repeated) and popped, across live and completed
    /// frameworks.
    #[test]
    fn newest_first_pages_are_the_walks_pages(
        ops in proptest::collection::vec((0u8..3, 0u16..2000, proptest::option::of(0u8..40)), 0..3000),
        offset in proptest::prop_oneof![0usize..20, 0usize..1500],
        limit in proptest::prop_oneof![0usize..120, 0usize..=MAX_LIMIT],
        only in proptest::option::of(0usize..4),
    ) {
        let mut s = fixture();
        s.frameworks = vec![
            framework("f1", true, vec![], vec![]),
            framework("f2", true, vec![], vec![]),
        ]
        .into();
        s.completed_frameworks = vec![framework("f3", false, vec![], vec![])].into();
        for (kind, n, date) in ops {
            let which = usize::from(n % 3);
            let f = if which < 2 {
                s.frameworks.get_mut(which)
            } else {
                s.completed_frameworks.get_mut(0)
            }
            .expect("framework");
            let mut t = task(&format!("t{n}"), "TASK_RUNNING", &f.id, "a1");
            t.status_time = date.map(|d| if d == 39 { f64::NAN } else { f64::from(d) });
            match kind {
                0 => f.tasks.upsert(std::sync::Arc::new(t)),
                1 => {
                    f.tasks.remove_key(t.id.as_str());
                }
                _ => {
                    t.state = "TASK_FINISHED";
                    f.completed_tasks.push_back(std::sync::Arc::new(t));
                    if f.completed_tasks.len() > 50 {
                        f.completed_tasks.pop_front();
                    }
                }
            }
        }
        let (offset, limit) = (offset.to_string(), limit.to_string());
        let mut pairs = vec![("offset", offset.as_str()), ("limit", limit.as_str())];
        let ids = ["f1", "f2", "f3", "none"];
        if let Some(i) = only {
            pairs.push(("framework_id", ids[i]));
        }
        let query = query_of(&pairs);
        let read = to_json(lists::newest_task_page(&s, &query).expect("page"));
        proptest::prop_assert_eq!(to_json(task_page(&s, &query).expect("page")), read.clone());
        let walked = to_json(lists::walked_task_page(&s, &query).expect("page"));
        proptest::prop_assert_eq!(read, walked);
    }
}
