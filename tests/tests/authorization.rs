//! The ACLs (`--acls`) on a real master and agent, every decision seen from
//! outside: a framework refused a role gets an ERROR event and its stream
//! ends; a task it may not run as its user is TASK_ERROR with
//! REASON_TASK_UNAUTHORIZED while the rest of its ACCEPT launches; operator
//! changes the caller may not make are 403 and change nothing; `/state`,
//! Mesos' `/master/state`, the operator API and the UI show each principal
//! only what it may view; the master's files relay answers 403 for a
//! sandbox the caller may not read.

use std::time::{Duration, Instant};

use agora_e2e::mesos_http::{Response, post_json, request};
use agora_e2e::{Cluster, wait_for};
use serde_json::{Value, json};

const API: &str = "/api/v1/scheduler";

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 temp path").to_string()
}

fn subscribe_body(principal: &str, role: &str) -> Value {
    json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {
            "user": "nobody", "name": format!("{principal}-{role}"), "principal": principal,
            "failover_timeout": 0.0,
            "capabilities": [{"type": "MULTI_ROLE"}], "roles": [role]
        }}
    })
}

/// A JSON subscription over the HTTP scheduler API.
struct Framework {
    port: u16,
    stream: Response,
    stream_id: String,
    framework_id: String,
}

fn open(port: u16, principal: &str, role: &str) -> Response {
    let body = serde_json::to_vec(&subscribe_body(principal, role)).expect("json");
    let stream = request(
        port,
        "POST",
        API,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        &body,
    )
    .expect("subscribe");
    assert_eq!(stream.status, 200);
    stream
}

fn next_event(stream: &mut Response) -> Option<Value> {
    let record = stream.next_record().expect("a record")?;
    Some(serde_json::from_slice(&record).expect("json event"))
}

impl Framework {
    fn subscribe(port: u16, principal: &str, role: &str) -> Framework {
        let mut stream = open(port, principal, role);
        let stream_id = stream
            .header("mesos-stream-id")
            .expect("Mesos-Stream-Id")
            .to_string();
        let subscribed = next_event(&mut stream).expect("SUBSCRIBED");
        assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
        let framework_id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .expect("framework id")
            .to_string();
        Framework {
            port,
            stream,
            stream_id,
            framework_id,
        }
    }

    fn call(&self, mut call: Value) {
        call["framework_id"] = json!({"value": self.framework_id});
        let response = post_json(self.port, API, Some(&self.stream_id), &call).expect("call");
        let status = response.status;
        assert_eq!(
            status,
            202,
            "{call}: {}",
            response.text().unwrap_or_default()
        );
    }

    /// Events until one `matches` (within a minute). Every update is
    /// acknowledged on the way (the agent sends a task's next update only
    /// then).
    fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let event = next_event(&mut self.stream).expect("the stream is open");
            let status = &event["update"]["status"];
            if event["type"] == "UPDATE"
                && let Some(uuid) = status["uuid"].as_str()
            {
                self.call(json!({
                    "type": "ACKNOWLEDGE",
                    "acknowledge": {
                        "agent_id": status["agent_id"],
                        "task_id": status["task_id"],
                        "uuid": uuid
                    }
                }));
            }
            if matches(&event) {
                return event;
            }
            seen.push(event);
        }
        panic!("no {what} within a minute; saw {seen:?}");
    }

    fn update_of(&mut self, task: &str, states: &[&str]) -> Value {
        let event = self.until(&format!("an update of {task} in {states:?}"), |e| {
            e["type"] == "UPDATE"
                && e["update"]["status"]["task_id"]["value"] == task
                && states.iter().any(|s| e["update"]["status"]["state"] == *s)
        });
        event["update"]["status"].clone()
    }
}

fn task(offer: &Value, id: &str, command: Value) -> Value {
    json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": offer["agent_id"],
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}
        ],
        "command": command
    })
}

fn accept(offer: &Value, tasks: Vec<Value>) -> Value {
    json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
            "filters": {"refuse_seconds": 1.0}
        }
    })
}

#[test]
fn frameworks_register_only_in_allowed_roles_and_run_tasks_only_as_allowed_users() {
    let acls = r#"{
        "register_frameworks": [
            {"principals": {"values": ["eng"]}, "roles": {"values": ["eng"]}},
            {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
        "run_tasks": [
            {"principals": {"values": ["eng"]}, "users": {"values": ["nobody"]}},
            {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]
    }"#;
    let cluster = Cluster::start_with_master(1, "cpus:2;mem:512", |dir| {
        vec![
            "--acls".into(),
            write(dir, "acls.json", acls),
            // Known principals (authentication itself stays optional here).
            "--credentials".into(),
            write(
                dir,
                "credentials.json",
                r#"{"credentials": [{"principal": "eng", "secret": "eng-secret"}]}"#,
            ),
        ]
    })
    .expect("cluster");
    cluster.wait_agents(1).expect("agent");
    let port = cluster.master_port;

    // A role the principal may not use: an ERROR event, then the stream ends.
    let mut refused = open(port, "eng", "ops");
    let error = next_event(&mut refused).expect("an ERROR event");
    assert_eq!(error["type"], "ERROR", "{error}");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("not authorized") && message.contains("'ops'"),
        "{message}"
    );
    assert!(next_event(&mut refused).is_none(), "the stream ends");
    // So does anyone else's, in any role.
    let mut other = open(port, "web", "eng");
    assert_eq!(next_event(&mut other).expect("ERROR")["type"], "ERROR");
    let state = cluster.state().expect("state");
    assert_eq!(state["frameworks"], json!([]), "{state}");
    // The same over gRPC: agora run is told why, and gives up.
    let run = cluster.run(&[
        "--name",
        "refused",
        "--command",
        "true",
        "--role",
        "ops",
        "--principal",
        "eng",
        "--secret",
        "eng-secret",
        "--timeout",
        "20",
    ]);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!run.status.success(), "{output}");
    assert!(
        output.contains("principal 'eng' is not authorized to register a framework in role 'ops'"),
        "{output}"
    );

    // Its own role: subscribed; of two tasks, the one that would run as
    // root is refused and the other runs.
    let mut eng = Framework::subscribe(port, "eng", "eng");
    let offers = eng.until("OFFERS", |e| e["type"] == "OFFERS");
    let offer = &offers["offers"]["offers"][0];
    eng.call(accept(
        offer,
        vec![
            task(offer, "as-nobody", json!({"value": "sleep 600"})),
            task(
                offer,
                "as-root",
                json!({"value": "sleep 600", "user": "root"}),
            ),
        ],
    ));
    let refused = eng.update_of("as-root", &["TASK_ERROR"]);
    assert_eq!(refused["reason"], "REASON_TASK_UNAUTHORIZED", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("user 'root'")),
        "{refused}"
    );
    eng.update_of("as-nobody", &["TASK_RUNNING"]);
    let state = cluster.state().expect("state");
    let tasks: Vec<&str> = state["frameworks"][0]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(tasks, ["as-nobody"], "{state}");
}

// ---------------------------------------------------------------------------
// Operators and viewers (HTTP Basic against --credentials)
// ---------------------------------------------------------------------------

const CREDENTIALS: &str = r#"{"credentials": [
    {"principal": "ops", "secret": "ops-secret"},
    {"principal": "dev", "secret": "dev-secret"}
]}"#;

/// `ops` may do and see everything; `dev` nothing but what no rule covers.
const OPERATOR_ACLS: &str = r#"{
    "view_frameworks": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
    "view_tasks": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
    "view_executors": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
    "access_sandboxes": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
    "update_weights": [
        {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
    "update_quotas": [
        {"principals": {"values": ["ops"]}, "roles": {"values": ["eng"]}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
    "reserve_resources": [
        {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
    "unreserve_resources": [
        {"principals": {"values": ["ops"]}, "reserver_principals": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "reserver_principals": {"type": "NONE"}}],
    "kill_tasks": [
        {"principals": {"values": ["ops"]}, "framework_principals": {"values": ["eng"]}},
        {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}],
    "teardown_frameworks": [
        {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}],
    "get_endpoints": [
        {"principals": {"values": ["ops"]}, "paths": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "paths": {"type": "NONE"}}],
    "mark_agents_gone": [
        {"principals": {"values": ["ops"]}, "agents": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}],
    "get_quotas": [
        {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}],
    "view_roles": [
        {"principals": {"values": ["ops"]}, "roles": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}]
}"#;

/// `Authorization: Basic ...` for `user:password`.
/// One HTTP exchange as `who` (`ops` or `dev`): (status, body).
fn as_user(port: u16, who: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let auth = agora_e2e::auth::basic(who, &format!("{who}-secret"));
    let bytes = body
        .map(|b| serde_json::to_vec(b).expect("json"))
        .unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
        headers.push(("Accept", "application/json"));
    }
    let response = request(port, method, path, &headers, &bytes).expect("request");
    let status = response.status;
    (status, response.text().unwrap_or_default())
}

fn state_as(port: u16, who: &str, path: &str) -> Value {
    let (status, body) = as_user(port, who, "GET", path, None);
    assert_eq!(status, 200, "GET {path} as {who}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// Refused as `dev` with 403 and a reason, then allowed as `ops`.
fn dev_refused_ops_allowed(port: u16, method: &str, path: &str, body: &Value) -> String {
    let (status, why) = as_user(port, "dev", method, path, Some(body));
    assert_eq!(status, 403, "{method} {path} as dev: {why}");
    assert!(
        why.contains("principal 'dev' is not authorized"),
        "{method} {path}: {why}"
    );
    let (status, answer) = as_user(port, "ops", method, path, Some(body));
    assert_eq!(status, 200, "{method} {path} as ops: {answer}");
    answer
}

/// The agent's own `--acls` (its HTTP API authenticates against the same
/// credentials): `ops` may read sandboxes of tasks running as `nobody`,
/// nobody may read anything else.
const AGENT_ACLS: &str = r#"{
    "access_sandboxes": [
        {"principals": {"values": ["ops"]}, "users": {"values": ["nobody"]}},
        {"principals": {"type": "NONE"}, "users": {"type": "ANY"}}],
    "get_endpoints": [
        {"principals": {"values": ["ops"]}, "paths": {"values": ["/metrics", "/monitor/statistics"]}},
        {"principals": {"type": "ANY"}, "paths": {"type": "NONE"}}]
}"#;

#[test]
fn operators_change_and_view_only_what_the_acls_allow() {
    let mut cluster = Cluster::start_with_master(0, "cpus:2;mem:512", |dir| {
        vec![
            "--credentials".into(),
            write(dir, "credentials.json", CREDENTIALS),
            "--authenticate-http-readonly".into(),
            "--authenticate-http-readwrite".into(),
            "--acls".into(),
            write(dir, "acls.json", OPERATOR_ACLS),
        ]
    })
    .expect("cluster");
    let agent_acls = write(cluster.dir.path(), "agent-acls.json", AGENT_ACLS);
    let credentials = write(cluster.dir.path(), "agent-credentials.json", CREDENTIALS);
    let agent_port = cluster.add_agent_with(
        0,
        "cpus:2;mem:512",
        &[
            "--acls",
            &agent_acls,
            "--http-credentials",
            &credentials,
            "--authenticate-http-readonly",
        ],
    );
    let port = cluster.master_port;
    let state = wait_for("the agent, seen by ops", Duration::from_secs(30), || {
        let (status, body) = as_user(port, "ops", "GET", "/state", None);
        let state: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && state["elected"] == true && state["agents"][0]["active"] == true)
            .then_some(state)
    })
    .expect("agent");
    let agent_id = state["agents"][0]["id"]
        .as_str()
        .expect("agent id")
        .to_string();

    let mut eng = Framework::subscribe(port, "eng", "eng");
    let offers = eng.until("OFFERS", |e| e["type"] == "OFFERS");
    let offer = &offers["offers"]["offers"][0];
    eng.call(accept(
        offer,
        vec![task(offer, "long", json!({"value": "sleep 600"}))],
    ));
    eng.update_of("long", &["TASK_RUNNING"]);

    // Views: ops sees the framework and its task, dev sees neither, in
    // every read API.
    let seen = |who: &str| -> Vec<String> {
        let state = state_as(port, who, "/state");
        state["frameworks"]
            .as_array()
            .expect("frameworks")
            .iter()
            .map(|f| {
                let tasks: Vec<&str> = f["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["id"].as_str())
                    .collect();
                format!("{}:{}", f["id"].as_str().unwrap_or(""), tasks.join(","))
            })
            .collect()
    };
    // `/state` is the published snapshot, up to one publish behind the
    // update the framework just got: wait for the task to show there.
    let expected = vec![format!("{}:long", eng.framework_id)];
    let ops_view = wait_for("the task in ops' /state", Duration::from_secs(10), || {
        let view = seen("ops");
        (view == expected).then_some(view)
    });
    assert_eq!(ops_view.expect("ops' view"), expected);
    assert_eq!(seen("dev"), Vec::<String>::new());
    let mesos = state_as(port, "dev", "/master/state");
    assert_eq!(mesos["frameworks"], json!([]), "{mesos}");
    let mesos = state_as(port, "ops", "/master/state");
    assert_eq!(mesos["frameworks"][0]["tasks"][0]["id"], "long", "{mesos}");
    let tasks = state_as(port, "dev", "/master/tasks");
    assert_eq!(tasks["tasks"], json!([]), "{tasks}");
    let ui = state_as(port, "dev", "/api/frameworks");
    assert!(!ui.to_string().contains(&eng.framework_id), "{ui}");
    let ui = state_as(port, "ops", "/api/frameworks");
    assert!(ui.to_string().contains(&eng.framework_id), "{ui}");
    let get_tasks = json!({"type": "GET_TASKS"});
    let (status, body) = as_user(port, "dev", "POST", "/api/v1", Some(&get_tasks));
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("\"long\""), "{body}");
    let (status, body) = as_user(port, "ops", "POST", "/api/v1", Some(&get_tasks));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"long\""), "{body}");

    // The sandbox through the master's relay.
    let files = format!(
        "/agents/{agent_id}/files/browse?path=/frameworks/{}/executors/long/runs/latest",
        eng.framework_id
    );
    let (status, body) = as_user(port, "dev", "GET", &files, None);
    assert_eq!(status, 403, "{body}");
    // ... which passed ops' credential on: the agent's own ACLs allowed it.
    let (status, body) = as_user(port, "ops", "GET", &files, None);
    assert_eq!(status, 200, "{body}");
    // The agent's own ACLs on its files API, asked directly.
    let sandbox = format!(
        "/files/browse?path=/frameworks/{}/executors/long/runs/latest",
        eng.framework_id
    );
    let (status, body) = as_user(agent_port, "ops", "GET", &sandbox, None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_user(agent_port, "dev", "GET", &sandbox, None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("principal 'dev' is not authorized to access this sandbox"),
        "{body}"
    );
    let elsewhere = "/files/browse?path=/frameworks/f/executors/e/runs/latest";
    let (status, body) = as_user(agent_port, "ops", "GET", elsewhere, None);
    assert_eq!(status, 403, "{body}");

    // get_endpoints: the metrics and statistics endpoints, on both daemons.
    for (daemon, path) in [
        (port, "/metrics"),
        (port, "/metrics/snapshot"),
        (agent_port, "/metrics"),
        (agent_port, "/monitor/statistics"),
    ] {
        let (status, body) = as_user(daemon, "dev", "GET", path, None);
        assert_eq!(status, 403, "{path} as dev: {body}");
        assert!(body.contains("get_endpoints"), "{body}");
        let (status, body) = as_user(daemon, "ops", "GET", path, None);
        assert_eq!(status, 200, "{path} as ops: {body}");
    }

    // Changes.
    dev_refused_ops_allowed(
        port,
        "PUT",
        "/weights",
        &json!([{"role": "eng", "weight": 2.0}]),
    );
    let weights = state_as(port, "ops", "/weights");
    assert_eq!(weights, json!([{"role": "eng", "weight": 2.0}]));
    dev_refused_ops_allowed(
        port,
        "POST",
        "/quota",
        &json!({"role": "eng", "guarantee": {"cpus": 0.1}}),
    );
    let (status, body) = as_user(
        port,
        "ops",
        "POST",
        "/quota",
        Some(&json!({"role": "web", "guarantee": {"cpus": 0.1}})),
    );
    assert_eq!(status, 403, "ops may set eng's quota only: {body}");
    // Reads of quotas and weights follow get_quotas and view_roles.
    let quotas = state_as(port, "ops", "/quota");
    assert_eq!(quotas["quotas"][0]["role"], "eng", "{quotas}");
    let quotas = state_as(port, "dev", "/quota");
    assert_eq!(quotas["quotas"], json!([]), "{quotas}");
    let weights = state_as(port, "dev", "/weights");
    assert_eq!(weights, json!([]), "{weights}");
    let reservation = json!({"agent_id": agent_id, "resources": "cpus(ops):0.5"});
    dev_refused_ops_allowed(port, "POST", "/reserve", &reservation);
    dev_refused_ops_allowed(port, "POST", "/unreserve", &reservation);
    dev_refused_ops_allowed(
        port,
        "POST",
        "/api/v1",
        &json!({"type": "KILL_TASK", "kill_task": {"task_id": {"value": "long"}}}),
    );
    eng.update_of("long", &["TASK_KILLED"]);
    dev_refused_ops_allowed(
        port,
        "POST",
        "/api/v1",
        &json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": eng.framework_id}}}),
    );
    dev_refused_ops_allowed(
        port,
        "POST",
        "/api/v1",
        &json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}}),
    );
}

#[test]
fn only_allowed_agents_register() {
    let credentials = r#"{"credentials": [
        {"principal": "agent", "secret": "agent-secret"},
        {"principal": "rogue", "secret": "rogue-secret"},
        {"principal": "ops", "secret": "ops-secret"}
    ]}"#;
    let acls = r#"{"register_agents": [
        {"principals": {"values": ["agent"]}, "agents": {"type": "ANY"}},
        {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}]}"#;
    let mut cluster = Cluster::start_with_master(0, "cpus:1;mem:256", |dir| {
        vec![
            "--credentials".into(),
            write(dir, "credentials.json", credentials),
            "--authenticate-agents".into(),
            "--acls".into(),
            write(dir, "acls.json", acls),
        ]
    })
    .expect("cluster");
    let dir = cluster.dir.path().to_path_buf();
    let good = write(&dir, "agent.credential", "agent agent-secret");
    let rogue = write(&dir, "rogue.credential", "rogue rogue-secret");
    cluster.add_agent_with(0, "cpus:1;mem:256", &["--credential", &good]);
    cluster.add_agent_with(1, "cpus:1;mem:256", &["--credential", &rogue]);

    // The rogue agent, though authenticated, is told why it is refused.
    wait_for("the rogue agent's refusal", Duration::from_secs(30), || {
        cluster.agents[1]
            .log_text()
            .contains("principal 'rogue' is not authorized to register agents")
            .then_some(())
    })
    .expect("refused");
    // The allowed one registered; the rogue one never did.
    let state = cluster.wait_agents(1).expect("one agent");
    let hosts: Vec<&str> = state["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|a| a["address"].as_str())
        .collect();
    assert_eq!(hosts.len(), 1, "{state}");
    assert!(
        state["agents"][0]["id"].is_string(),
        "the allowed agent is registered: {state}"
    );
}

// ---------------------------------------------------------------------------
// The agent's own read endpoints, filtered by its `view_*` ACLs
// ---------------------------------------------------------------------------

/// The agent's `--acls`: `ops` sees everything; `dev` frameworks, tasks and
/// executors running as `nobody` only; anyone else nothing.
const AGENT_VIEW_ACLS: &str = r#"{
    "view_frameworks": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"values": ["dev"]}, "users": {"values": ["nobody"]}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
    "view_tasks": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"values": ["dev"]}, "users": {"values": ["nobody"]}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
    "view_executors": [
        {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}},
        {"principals": {"values": ["dev"]}, "users": {"values": ["nobody"]}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]
}"#;

impl Framework {
    /// [`Framework::subscribe`] for a framework whose tasks run as `user`.
    fn subscribe_as_user(port: u16, principal: &str, role: &str, user: &str) -> Framework {
        let mut body = subscribe_body(principal, role);
        body["subscribe"]["framework_info"]["user"] = json!(user);
        let bytes = serde_json::to_vec(&body).expect("json");
        let mut stream = request(
            port,
            "POST",
            API,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            &bytes,
        )
        .expect("subscribe");
        assert_eq!(stream.status, 200);
        let stream_id = stream
            .header("mesos-stream-id")
            .expect("Mesos-Stream-Id")
            .to_string();
        let subscribed = next_event(&mut stream).expect("SUBSCRIBED");
        assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
        let framework_id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .expect("framework id")
            .to_string();
        Framework {
            port,
            stream,
            stream_id,
            framework_id,
        }
    }
}

/// What one of the agent's state bodies lists: its frameworks' ids, and
/// `framework/executor/task` for every task in Mesos' nested shape.
fn agent_listing(state: &Value) -> (Vec<String>, Vec<String>) {
    let mut frameworks = Vec::new();
    let mut tasks = Vec::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for f in list(&state["frameworks"])
        .into_iter()
        .chain(list(&state["completed_frameworks"]))
    {
        let id = f["id"].as_str().unwrap_or("").to_string();
        for e in list(&f["executors"])
            .into_iter()
            .chain(list(&f["completed_executors"]))
        {
            for t in list(&e["tasks"])
                .into_iter()
                .chain(list(&e["queued_tasks"]))
                .chain(list(&e["completed_tasks"]))
            {
                tasks.push(format!(
                    "{id}/{}/{}",
                    e["id"].as_str().unwrap_or(""),
                    t["id"].as_str().unwrap_or("")
                ));
            }
        }
        frameworks.push(id);
    }
    frameworks.sort();
    tasks.sort();
    (frameworks, tasks)
}

/// Agora's own task list of the agent's `/state`, sorted.
fn agent_task_ids(state: &Value) -> Vec<String> {
    let mut ids: Vec<String> = state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Every task id an operator API answer names (`task_id.value`), sorted.
fn operator_task_ids(answer: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(id) = map.get("task_id").and_then(|t| t["value"].as_str()) {
                    out.push(id.to_string());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(answer, &mut out);
    out.sort();
    out.dedup();
    out
}

fn operator_call_as(port: u16, who: &str, call: &Value) -> Value {
    let (status, body) = as_user(port, who, "POST", "/api/v1", Some(call));
    assert_eq!(status, 200, "{call} as {who}: {body}");
    serde_json::from_str(&body).expect("json")
}

#[test]
fn the_agents_state_and_operator_api_show_each_principal_what_the_acls_allow() {
    let mut cluster =
        Cluster::start_with_master(0, "cpus:2;mem:512", |_| Vec::new()).expect("cluster");
    let agent_acls = write(cluster.dir.path(), "agent-acls.json", AGENT_VIEW_ACLS);
    let credentials = write(cluster.dir.path(), "agent-credentials.json", CREDENTIALS);
    let agent_port = cluster.add_agent_with(
        0,
        "cpus:2;mem:512",
        &[
            "--acls",
            &agent_acls,
            "--http-credentials",
            &credentials,
            "--authenticate-http-readonly",
        ],
    );
    cluster.wait_agents(1).expect("agent");
    let port = cluster.master_port;

    // A framework running as nobody, with one task as nobody and one as root.
    let mut nobody = Framework::subscribe(port, "eng", "eng");
    let offers = nobody.until("OFFERS", |e| e["type"] == "OFFERS");
    let offer = &offers["offers"]["offers"][0];
    nobody.call(accept(
        offer,
        vec![
            task(offer, "plain", json!({"value": "sleep 600"})),
            task(
                offer,
                "as-root",
                json!({"value": "sleep 600", "user": "root"}),
            ),
        ],
    ));
    // Both running, in whichever order their updates come.
    let running = std::cell::RefCell::new(std::collections::BTreeSet::new());
    nobody.until("TASK_RUNNING of plain and as-root", |e| {
        let status = &e["update"]["status"];
        if e["type"] == "UPDATE"
            && status["state"] == "TASK_RUNNING"
            && let Some(id) = status["task_id"]["value"].as_str()
        {
            running.borrow_mut().insert(id.to_string());
        }
        running.borrow().len() == 2
    });
    // A framework running as root.
    let mut root = Framework::subscribe_as_user(port, "web", "web", "root");
    let offers = root.until("OFFERS", |e| e["type"] == "OFFERS");
    let offer = &offers["offers"]["offers"][0];
    root.call(accept(
        offer,
        vec![task(offer, "rooted", json!({"value": "sleep 600"}))],
    ));
    root.update_of("rooted", &["TASK_RUNNING"]);
    let (a, b) = (&nobody.framework_id, &root.framework_id);

    // ops sees everything (once the agent's published state has it all).
    let everything = [
        format!("{a}/as-root/as-root"),
        format!("{a}/plain/plain"),
        format!("{b}/rooted/rooted"),
    ];
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    let mut everything_sorted = everything.to_vec();
    everything_sorted.sort();
    let ops_state = wait_for(
        "every task in the agent's /state",
        Duration::from_secs(30),
        || {
            let state = state_as(agent_port, "ops", "/state");
            (agent_listing(&state).1 == everything_sorted).then_some(state)
        },
    )
    .expect("ops' view");
    assert_eq!(agent_listing(&ops_state).0, both, "{ops_state}");
    assert_eq!(
        agent_task_ids(&ops_state),
        ["as-root", "plain", "rooted"],
        "{ops_state}"
    );

    // dev: nobody's framework, and of it only the task (and executor)
    // running as nobody; not root's framework at all.
    for path in [
        "/state",
        "/state.json",
        "/slave(1)/state",
        "/slave(1)/state.json",
    ] {
        let state = state_as(agent_port, "dev", path);
        assert_eq!(
            agent_listing(&state),
            (vec![a.clone()], vec![format!("{a}/plain/plain")]),
            "{path}: {state}"
        );
        assert!(!state.to_string().contains(b.as_str()), "{path}: {state}");
        let state = state_as(agent_port, "ops", path);
        assert_eq!(
            agent_listing(&state).1,
            everything_sorted,
            "{path}: {state}"
        );
    }
    let dev_state = state_as(agent_port, "dev", "/state");
    assert_eq!(agent_task_ids(&dev_state), ["plain"], "{dev_state}");

    // The operator API's reads, on the agent.
    let get_tasks = json!({"type": "GET_TASKS"});
    let seen = operator_call_as(agent_port, "ops", &get_tasks);
    assert_eq!(
        operator_task_ids(&seen),
        ["as-root", "plain", "rooted"],
        "{seen}"
    );
    let seen = operator_call_as(agent_port, "dev", &get_tasks);
    assert_eq!(operator_task_ids(&seen), ["plain"], "{seen}");
    let seen = operator_call_as(agent_port, "dev", &json!({"type": "GET_STATE"}));
    assert_eq!(operator_task_ids(&seen), ["plain"], "{seen}");
    assert!(!seen.to_string().contains(b.as_str()), "{seen}");
    let seen = operator_call_as(agent_port, "dev", &json!({"type": "GET_FRAMEWORKS"}));
    let frameworks: Vec<&str> = seen["get_frameworks"]["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["framework_info"]["id"]["value"].as_str())
        .collect();
    assert_eq!(frameworks, [a.as_str()], "{seen}");
    let seen = operator_call_as(agent_port, "dev", &json!({"type": "GET_EXECUTORS"}));
    let executors: Vec<&str> = seen["get_executors"]["executors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["executor_info"]["executor_id"]["value"].as_str())
        .collect();
    assert_eq!(executors, ["plain"], "{seen}");

    // Containers' statistics: only the executors the viewer may see.
    let executors_of = |who: &str| -> Vec<String> {
        let stats = state_as(agent_port, who, "/monitor/statistics");
        let mut ids: Vec<String> = stats
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["executor_id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(executors_of("ops"), ["as-root", "plain", "rooted"]);
    assert_eq!(executors_of("dev"), ["plain"]);
}
