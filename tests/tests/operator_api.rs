//! Mesos' v1 operator API (`POST /api/v1`) on a real `agora master` and
//! `agora agent`: an operator's event stream sees a short task go
//! STAGING -> RUNNING -> FINISHED, GET_STATE and GET_TASKS show it, KILL_TASK
//! ends a long task with the operator's reason, TEARDOWN removes a
//! framework, and UPDATE_WEIGHTS is read back with GET_WEIGHTS.

use std::time::{Duration, Instant};

use agora_e2e::mesos_http::{Response, post_json, request};
use agora_e2e::{Cluster, Proc, wait_for};
use agora_proto::v1::master as operator;
use prost::Message;
use serde_json::{Value, json};

const API: &str = "/api/v1";
const RESOURCES: &str = "cpus:2;mem:1024";

/// The next event on the stream: one record in one chunk, one line of JSON.
fn next_event(stream: &mut Response) -> Value {
    let record = stream
        .next_record()
        .expect("a record")
        .expect("the stream is open");
    assert!(
        !record.contains(&b'\n'),
        "a JSON record is a single line: {}",
        String::from_utf8_lossy(&record)
    );
    serde_json::from_slice(&record).expect("json event")
}

/// Reads events (heartbeats aside) until one satisfies `wanted`; the
/// others are kept in `seen`.
fn until(stream: &mut Response, seen: &mut Vec<Value>, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let event = next_event(stream);
        if event["type"] == "HEARTBEAT" {
            continue;
        }
        if wanted(&event) {
            return event;
        }
        seen.push(event);
    }
    panic!("no wanted event within 90 s; saw {seen:#?}");
}

fn task_added(id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["type"] == "TASK_ADDED" && e["task_added"]["task"]["task_id"]["value"] == id
}

fn task_updated<'a>(id: &'a str, state: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| {
        e["type"] == "TASK_UPDATED"
            && e["task_updated"]["status"]["task_id"]["value"] == id
            && e["task_updated"]["status"]["state"] == state
    }
}

/// A synchronous call: 200 and a JSON `Response` body.
fn call(port: u16, body: Value) -> Value {
    let response = post_json(port, API, None, &body).expect("call");
    let status = response.status;
    let text = response.text().expect("body");
    assert_eq!(status, 200, "{body}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A change: 200 with an empty body once it is durable.
fn change(port: u16, body: Value) {
    let response = post_json(port, API, None, &body).expect("call");
    let status = response.status;
    let text = response.text().expect("body");
    assert_eq!(status, 200, "{body}: {text}");
    assert!(text.is_empty(), "a change answers an empty body: {text:?}");
}

/// Every task GET_TASKS lists, whatever its list.
fn all_tasks(get_tasks: &Value) -> Vec<Value> {
    ["tasks", "unreachable_tasks", "completed_tasks"]
        .iter()
        .filter_map(|list| get_tasks[list].as_array())
        .flatten()
        .cloned()
        .collect()
}

fn listed_task(port: u16, id: &str) -> Option<Value> {
    let tasks = call(port, json!({"type": "GET_TASKS"}));
    assert_eq!(tasks["type"], "GET_TASKS");
    all_tasks(&tasks["get_tasks"])
        .into_iter()
        .find(|t| t["task_id"]["value"] == id)
}

fn spawn_sleeper(cluster: &Cluster, name: &str) -> Proc {
    cluster.spawn_run(name, "sleep 600", &["--cpus", "0.1", "--mem", "16"])
}

#[test]
fn operators_watch_and_steer_a_cluster_through_the_v1_api() {
    let cluster = Cluster::start(1, RESOURCES).expect("cluster starts");
    let port = cluster.master_port;

    // The event stream starts with the state: the agent is there.
    let mut stream = request(
        port,
        "POST",
        API,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        br#"{"type":"SUBSCRIBE"}"#,
    )
    .expect("subscribe");
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("application/json"));
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    let subscribed = next_event(&mut stream);
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    assert_eq!(subscribed["subscribed"]["heartbeat_interval_seconds"], 15.0);
    let agents = &subscribed["subscribed"]["get_state"]["get_agents"]["agents"];
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{subscribed}");
    let agent_id = agents[0]["agent_info"]["id"]["value"]
        .as_str()
        .expect("agent id")
        .to_string();

    // A short task: every state it goes through is on the stream, in order.
    let output = cluster.run(&[
        "--name",
        "short",
        "--command",
        "true",
        "--cpus",
        "0.1",
        "--mem",
        "16",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let mut seen = Vec::new();
    let added = until(&mut stream, &mut seen, task_added("short-0"));
    assert!(
        seen.iter().any(|e| e["type"] == "FRAMEWORK_ADDED"),
        "its framework came first: {seen:#?}"
    );
    let task = &added["task_added"]["task"];
    assert_eq!(task["state"], "TASK_STAGING", "{added}");
    assert_eq!(task["agent_id"]["value"], agent_id.as_str());
    let mut between = Vec::new();
    let finished = until(
        &mut stream,
        &mut between,
        task_updated("short-0", "TASK_FINISHED"),
    );
    assert_eq!(finished["task_updated"]["state"], "TASK_FINISHED");
    assert!(
        finished["task_updated"]["framework_id"]["value"].is_string(),
        "{finished}"
    );
    let before: Vec<&str> = between
        .iter()
        .filter(|e| e["type"] == "TASK_UPDATED")
        .filter(|e| e["task_updated"]["status"]["task_id"]["value"] == "short-0")
        .filter_map(|e| e["task_updated"]["status"]["state"].as_str())
        .collect();
    assert!(
        matches!(
            before.as_slice(),
            ["TASK_RUNNING"] | ["TASK_STARTING", "TASK_RUNNING"]
        ),
        "STAGING -> RUNNING -> FINISHED, each seen: {before:?}"
    );

    // The read calls show it.
    let task = wait_for("the task in GET_TASKS", Duration::from_secs(30), || {
        listed_task(port, "short-0").filter(|t| t["state"] == "TASK_FINISHED")
    })
    .expect("GET_TASKS lists the finished task");
    assert_eq!(task["agent_id"]["value"], agent_id.as_str());
    let state = call(port, json!({"type": "GET_STATE"}));
    assert!(
        all_tasks(&state["get_state"]["get_tasks"])
            .iter()
            .any(|t| t["task_id"]["value"] == "short-0"),
        "{state}"
    );
    assert_eq!(
        state["get_state"]["get_agents"]["agents"][0]["agent_info"]["id"]["value"],
        agent_id.as_str()
    );

    // KILL_TASK: the operator's reason reaches the TASK_KILLED status.
    let mut sleeper = spawn_sleeper(&cluster, "sleeper");
    let added = until(&mut stream, &mut seen, task_added("sleeper-0"));
    let framework_id = added["task_added"]["task"]["framework_id"]["value"]
        .as_str()
        .expect("framework id")
        .to_string();
    until(
        &mut stream,
        &mut seen,
        task_updated("sleeper-0", "TASK_RUNNING"),
    );
    change(
        port,
        json!({"type": "KILL_TASK", "kill_task": {
            "task_id": {"value": "sleeper-0"},
            "framework_id": {"value": framework_id},
            "reason": "operator api end-to-end test"
        }}),
    );
    let killed = until(
        &mut stream,
        &mut seen,
        task_updated("sleeper-0", "TASK_KILLED"),
    );
    let message = killed["task_updated"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("operator api end-to-end test"), "{killed}");
    let task = wait_for(
        "the killed task in GET_TASKS",
        Duration::from_secs(30),
        || listed_task(port, "sleeper-0").filter(|t| t["state"] == "TASK_KILLED"),
    )
    .expect("GET_TASKS lists the killed task");
    let statuses = task["statuses"].as_array().expect("statuses");
    assert!(
        statuses.iter().any(|s| s["message"]
            .as_str()
            .is_some_and(|m| m.contains("operator api end-to-end test"))),
        "{task}"
    );
    wait_for("agora run ends", Duration::from_secs(30), || {
        sleeper.exited()
    })
    .expect("the killed task ends its job");

    // TEARDOWN: the framework is removed with its task.
    let mut doomed = spawn_sleeper(&cluster, "doomed");
    let added = until(&mut stream, &mut seen, task_added("doomed-0"));
    let framework_id = added["task_added"]["task"]["framework_id"]["value"]
        .as_str()
        .expect("framework id")
        .to_string();
    until(
        &mut stream,
        &mut seen,
        task_updated("doomed-0", "TASK_RUNNING"),
    );
    change(
        port,
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": framework_id}}}),
    );
    until(
        &mut stream,
        &mut seen,
        task_updated("doomed-0", "TASK_KILLED"),
    );
    let removed = until(&mut stream, &mut seen, |e| {
        e["type"] == "FRAMEWORK_REMOVED"
            && e["framework_removed"]["framework_info"]["id"]["value"] == framework_id.as_str()
    });
    assert_eq!(
        removed["framework_removed"]["framework_info"]["name"],
        "doomed"
    );
    let frameworks = call(port, json!({"type": "GET_FRAMEWORKS"}));
    let completed = frameworks["get_frameworks"]["completed_frameworks"]
        .as_array()
        .expect("completed frameworks");
    assert!(
        completed
            .iter()
            .any(|f| f["framework_info"]["id"]["value"] == framework_id.as_str()),
        "{frameworks}"
    );
    wait_for("agora run ends", Duration::from_secs(30), || {
        doomed.exited()
    })
    .expect("a torn-down job ends");

    // UPDATE_WEIGHTS, then GET_WEIGHTS (in protobuf).
    change(
        port,
        json!({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
            {"role": "analytics", "weight": 2.5}
        ]}}),
    );
    let get_weights = operator::Call {
        r#type: operator::call::Type::GetWeights as i32,
        ..Default::default()
    };
    let response = request(
        port,
        "POST",
        API,
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Accept", "application/x-protobuf"),
        ],
        &get_weights.encode_to_vec(),
    )
    .expect("get weights");
    assert_eq!(response.status, 200);
    let body = response.body().expect("body");
    let weights = operator::Response::decode(body.as_slice()).expect("a response");
    let infos = weights.get_weights.expect("get_weights").weight_infos;
    assert!(
        infos
            .iter()
            .any(|w| w.role.as_deref() == Some("analytics") && w.weight == 2.5),
        "{infos:?}"
    );
}
