//! The agent's Mesos shapes, pinned on a state machine driven by hand:
//! frameworks, executors with their sandbox `directory`, queued and
//! completed tasks, flat resources, Agora's `/state` keys kept, JSONP and
//! `slave/*` metrics.

use std::time::Duration;

use agora_core::{AgentId, TaskId};
use agora_proto::v1::agent::master_message;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::checkpoint::ExecutorRun;
use crate::containers::ContainerOptions;
use crate::snapshot::TaskView;

const T0: Duration = Duration::from_secs(1);

fn options() -> AgentOptions {
    let mut rack = pb::Attribute {
        name: "rack".into(),
        ..Default::default()
    };
    rack.text = Some(pb::value::Text { value: "r1".into() });
    AgentOptions {
        master: "master-host:5050".into(),
        advertise: "10.0.0.2:5051".parse().expect("address"),
        hostname: "agent-host".into(),
        work_dir: "/var/lib/agora".into(),
        resources: Resources::parse("cpus:4;cpus(ops):1;mem:1024;ports:[31000-32000,33000-34000]")
            .expect("resources"),
        attributes: vec![rack],
        executor_program: "/nonexistent/agora".into(),
        containers: ContainerOptions::default(),
        gc: crate::gc::GcPolicy::default(),
        authentication: Default::default(),
        disk_probe: crate::gc::measure,
        jwt_secret_key: None,
        tls: Default::default(),
        acls: Default::default(),
        stop_on_exit: false,
    }
}

fn framework_info(id: &str, multi_role: bool) -> pb::FrameworkInfo {
    let mut info = pb::FrameworkInfo {
        id: Some(pb::FrameworkId { value: id.into() }),
        name: format!("fw-{id}"),
        user: "alice".into(),
        hostname: Some("sched-host".into()),
        checkpoint: Some(true),
        failover_timeout: Some(60.0),
        roles: vec!["eng".into()],
        ..Default::default()
    };
    if multi_role {
        info.capabilities.push(pb::framework_info::Capability {
            r#type: Some(pb::framework_info::capability::Type::MultiRole as i32),
        });
    }
    info
}

fn run_task(state: &mut AgentState, framework: &str, task: &str, executor: Option<&str>) {
    let mut out = Vec::new();
    state.on_run_task(
        T0,
        master_message::RunTask {
            framework: Some(framework_info(framework, true)),
            task: Some(pb::TaskInfo {
                name: format!("name-{task}"),
                task_id: Some(pb::TaskId { value: task.into() }),
                agent_id: Some(pb::AgentId { value: "a1".into() }),
                resources: Resources::parse("cpus:1;mem:32")
                    .expect("valid")
                    .to_proto(Some("eng")),
                command: executor.is_none().then(|| pb::CommandInfo {
                    value: Some("true".into()),
                    ..Default::default()
                }),
                executor: executor.map(|id| pb::ExecutorInfo {
                    executor_id: Some(pb::ExecutorId { value: id.into() }),
                    name: Some("my executor".into()),
                    command: Some(pb::CommandInfo {
                        value: Some("./exec".into()),
                        ..Default::default()
                    }),
                    resources: Resources::parse("cpus:0.5")
                        .expect("valid")
                        .to_proto(Some("eng")),
                    r#type: Some(pb::executor_info::Type::Custom as i32),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        },
        &mut out,
    );
}

fn key(framework: &str, executor: &str) -> ExecutorKey {
    (FrameworkId::new(framework), ExecutorId::new(executor))
}

/// An agent with a running command task (t1), a custom executor holding
/// one launched task (t2) and one still queued (t3), and a completed task
/// (t0) whose command executor is gone.
fn agent() -> (AgentState, HashMap<ExecutorKey, PathBuf>) {
    let mut state = AgentState::new(
        pb::AgentInfo {
            hostname: "agent-host".into(),
            ..Default::default()
        },
        7,
    );
    let mut out = Vec::new();
    state.on_registered(T0, AgentId::new("a1"), &mut out);
    run_task(&mut state, "f1", "t1", None);
    run_task(&mut state, "f1", "t2", Some("exec-1"));
    run_task(&mut state, "f1", "t3", Some("exec-1"));
    let mut sandboxes = HashMap::new();
    for (executor, run) in [("t1", "run-1"), ("exec-1", "run-2")] {
        let sandbox = PathBuf::from(format!(
            "/var/lib/agora/slaves/a1/frameworks/f1/executors/{executor}/runs/{run}"
        ));
        sandboxes.insert(key("f1", executor), sandbox.clone());
        let record = state
            .executors
            .get_mut(&key("f1", executor))
            .expect("executor recorded");
        record.run = Some(ExecutorRun {
            run_id: run.into(),
            sandbox,
            pid: Some(1),
            start_time: 0,
            hosted: false,
        });
        record.conn = Some(1);
    }
    for task in ["t1", "t2"] {
        let executor = if task == "t1" { "t1" } else { "exec-1" };
        state
            .executors
            .get_mut(&key("f1", executor))
            .expect("executor")
            .delivered
            .insert(TaskId::new(task));
    }
    let running = state
        .tasks
        .get_mut(&(FrameworkId::new("f1"), TaskId::new("t1")))
        .expect("t1");
    running.state = pb::TaskState::TaskRunning;
    running.pending.push_back(pb::TaskStatus {
        task_id: Some(pb::TaskId { value: "t1".into() }),
        state: Some(pb::TaskState::TaskRunning as i32),
        timestamp: Some(1234.5),
        ..Default::default()
    });
    let mut done = running.clone();
    done.info.task_id = Some(pb::TaskId { value: "t0".into() });
    done.info.name = "name-t0".into();
    done.executor_id = ExecutorId::new("t0");
    done.state = pb::TaskState::TaskFinished;
    done.pending.clear();
    state.completed.push_back(done);
    sandboxes.insert(
        key("f1", "t0"),
        PathBuf::from("/var/lib/agora/slaves/a1/frameworks/f1/executors/t0/runs/run-0"),
    );
    (state, sandboxes)
}

fn snapshot() -> AgentSnapshot {
    let (state, sandboxes) = agent();
    AgentSnapshot {
        id: Some("a1".into()),
        hostname: "agent-host".into(),
        master: "master-host:5050".into(),
        registered: true,
        resources: options().resources.summary(),
        tasks: vec![TaskView {
            id: "t1".into(),
            framework_id: "f1".into(),
            state: "TASK_RUNNING",
            sandbox: None,
        }],
        gauges: Some(crate::metrics::gauges_from_state(&state)),
        mesos: MesosView::build(&state, &sandboxes, Some("master-host")),
        ..AgentSnapshot::default()
    }
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("serializes")
}

#[test]
fn frameworks_executors_and_tasks_nest_as_in_mesos() {
    let (state, sandboxes) = agent();
    let view = MesosView::build(&state, &sandboxes, None);
    assert!(view.completed_frameworks.is_empty());
    assert_eq!(view.frameworks.len(), 1);
    let framework = to_json(&view.frameworks[0]);
    assert_eq!(framework["id"], "f1");
    assert_eq!(framework["name"], "fw-f1");
    assert_eq!(framework["user"], "alice");
    assert_eq!(framework["checkpoint"], true);
    assert_eq!(framework["failover_timeout"], 60.0);
    assert_eq!(framework["hostname"], "sched-host");
    assert_eq!(framework["roles"], json!(["eng"]));
    let executors = framework["executors"].as_array().expect("executors");
    let find = |id: &str| {
        executors
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {executors:?}"))
    };
    let command = find("t1");
    assert_eq!(
        command["directory"],
        "/var/lib/agora/slaves/a1/frameworks/f1/executors/t1/runs/run-1"
    );
    assert_eq!(command["container"], "run-1");
    assert_eq!(command["source"], "t1");
    assert_eq!(command["name"], "Command Executor (Task: t1)");
    assert_eq!(
        command["resources"],
        json!({"cpus": 1.0, "gpus": 0.0, "mem": 32.0, "disk": 0.0})
    );
    let task = &command["tasks"][0];
    assert_eq!(task["id"], "t1");
    assert_eq!(task["name"], "name-t1");
    assert_eq!(task["framework_id"], "f1");
    assert_eq!(task["executor_id"], "");
    assert_eq!(task["slave_id"], "a1");
    assert_eq!(task["state"], "TASK_RUNNING");
    assert_eq!(task["role"], "eng");
    assert_eq!(
        task["statuses"],
        json!([{"state": "TASK_RUNNING", "timestamp": 1234.5}])
    );
    assert_eq!(command["queued_tasks"], json!([]));

    let custom = find("exec-1");
    assert_eq!(custom["name"], "my executor");
    assert_eq!(custom["type"], "CUSTOM");
    assert_eq!(custom["role"], "eng");
    // Its own half cpu and its two tasks'.
    assert_eq!(custom["resources"]["cpus"], 2.5);
    assert_eq!(custom["tasks"][0]["id"], "t2");
    assert_eq!(custom["tasks"][0]["executor_id"], "exec-1");
    assert_eq!(custom["queued_tasks"][0]["id"], "t3");
    assert_eq!(custom["queued_tasks"][0]["executor_id"], "exec-1");

    // The gone command executor of the completed task.
    let gone = &framework["completed_executors"][0];
    assert_eq!(gone["id"], "t0");
    assert_eq!(
        gone["directory"],
        "/var/lib/agora/slaves/a1/frameworks/f1/executors/t0/runs/run-0"
    );
    assert_eq!(gone["completed_tasks"][0]["state"], "TASK_FINISHED");

    assert_eq!(view.executors_running, 2);
    assert_eq!(view.executors_registering, 0);
    assert_eq!(view.used["cpus"], SummaryValue::Number(3.5));
}

#[test]
fn a_framework_the_agent_no_longer_runs_anything_for_is_completed() {
    let (mut state, sandboxes) = agent();
    state.tasks.clear();
    state.executors.clear();
    state.frameworks.clear();
    let view = MesosView::build(&state, &sandboxes, None);
    assert!(view.frameworks.is_empty());
    assert_eq!(view.completed_frameworks.len(), 1);
    assert_eq!(view.completed_frameworks[0].id, "f1");
    assert_eq!(view.completed_frameworks[0].completed_executors.len(), 1);
}

#[test]
fn state_has_mesos_fields() {
    let fixed = Fixed::of(&options());
    let snapshot = snapshot();
    let state = to_json(&state(&snapshot, &fixed));
    assert_eq!(state["version"], "1.11.0");
    assert_eq!(state["agora_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(state["id"], "a1");
    assert_eq!(state["pid"], "slave(1)@10.0.0.2:5051");
    assert_eq!(state["hostname"], "agent-host");
    assert_eq!(state["master_hostname"], "master-host");
    assert_eq!(
        state["resources"],
        json!({"cpus": 5.0, "gpus": 0.0, "mem": 1024.0, "disk": 0.0,
               "ports": "[31000-32000, 33000-34000]"})
    );
    assert_eq!(
        state["reserved_resources"],
        json!({"ops": {"cpus": 1.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}})
    );
    assert_eq!(state["unreserved_resources"]["cpus"], 4.0);
    assert_eq!(
        state["reserved_resources_full"],
        json!({"ops": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0},
                        "role": "ops", "reservations": [{"type": "STATIC", "role": "ops"}]}]})
    );
    assert_eq!(state["attributes"], json!({"rack": "r1"}));
    assert_eq!(state["flags"]["master"], "master-host:5050");
    assert_eq!(state["flags"]["work_dir"], "/var/lib/agora");
    assert_eq!(state["completed_frameworks"], json!([]));
    assert_eq!(
        state["frameworks"][0]["executors"][0]["directory"]
            .as_str()
            .map(|d| d.starts_with("/var/lib/agora/slaves/a1/")),
        Some(true)
    );
    // Before registration Mesos shows an empty id.
    let unregistered = AgentSnapshot::default();
    assert_eq!(to_json(&self::state(&unregistered, &fixed))["id"], "");
}

#[test]
fn agoras_state_keeps_its_keys_and_gains_mesos_ones() {
    let fixed = Fixed::of(&options());
    let snapshot = snapshot();
    let merged = merged_state(&snapshot, &fixed).expect("merges");
    let agora = to_json(&snapshot);
    // Every key of Agora's `/state`, with its value.
    for (key, value) in agora.as_object().expect("object") {
        assert_eq!(&merged[key], value, "{key}");
    }
    assert_eq!(merged["id"], "a1");
    assert_eq!(merged["registered"], true);
    assert_eq!(merged["tasks"][0]["id"], "t1");
    // Agora's resources, not Mesos' (a collision).
    assert!(merged["resources"].get("gpus").is_none());
    // Mesos' keys where there is no collision.
    assert_eq!(merged["version"], "1.11.0");
    assert_eq!(merged["pid"], "slave(1)@10.0.0.2:5051");
    assert!(merged["frameworks"][0]["executors"].is_array());
    assert!(merged["flags"].is_object());
}

#[test]
fn metrics_snapshot_has_slave_names() {
    let snapshot = snapshot();
    let values = metrics_snapshot(&snapshot, 3.0);
    let value = |name: &str| {
        *values
            .get(name)
            .unwrap_or_else(|| panic!("{name} in {values:?}"))
    };
    assert_eq!(value("slave/registered"), 1.0);
    assert_eq!(value("slave/uptime_secs"), 3.0);
    assert_eq!(value("slave/cpus_total"), 5.0);
    assert_eq!(value("slave/cpus_used"), 3.5);
    assert_eq!(value("slave/cpus_percent"), 0.7);
    assert_eq!(value("slave/mem_used"), 96.0);
    assert_eq!(value("slave/gpus_total"), 0.0);
    assert_eq!(value("slave/gpus_percent"), 0.0);
    assert_eq!(value("slave/tasks_running"), 1.0);
    assert_eq!(value("slave/tasks_staging"), 2.0);
    assert_eq!(value("slave/tasks_finished"), 1.0);
    assert_eq!(value("slave/tasks_failed"), 0.0);
    assert_eq!(value("slave/executors_running"), 2.0);
    assert_eq!(value("slave/executors_registering"), 0.0);
    assert_eq!(value("slave/executors_terminating"), 0.0);
    assert_eq!(value("slave/frameworks_active"), 1.0);
    assert_eq!(value("agora/agent/status_updates_pending"), 1.0);
}

/// Serves `app` on 127.0.0.1 for one raw request: status, content type, body.
async fn get(app: &Router, target: &str) -> (StatusCode, String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = app.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    server.abort();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .expect("status");
    let kind = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, kind, body.to_string())
}

#[tokio::test]
async fn flags_are_the_agents_settings_as_its_state_shows_them() {
    let (_publish, snapshot) = watch::channel(Arc::new(snapshot()));
    let app = router(snapshot, &options());
    let (_, _, state) = get(&app, "/slave(1)/state").await;
    let state: Value = serde_json::from_str(&state).expect("json");
    assert!(state["flags"]["work_dir"].is_string(), "{}", state["flags"]);
    for path in ["/flags", "/slave(1)/flags"] {
        let (status, kind, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(kind, "application/json");
        let flags: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            flags,
            serde_json::json!({ "flags": state["flags"] }),
            "{path}"
        );
    }
    let (status, kind, body) = get(&app, "/flags?jsonp=cb").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "text/javascript");
    assert!(body.starts_with("cb({\"flags\":"), "{body}");
}

#[tokio::test]
async fn routes_serve_both_shapes_with_jsonp() {
    let (_publish, snapshot) = watch::channel(Arc::new(snapshot()));
    let app = router(snapshot, &options());
    for path in ["/slave(1)/state", "/slave(1)/state.json"] {
        let (status, kind, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(kind, "application/json");
        let state: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(state["pid"], "slave(1)@10.0.0.2:5051");
        // The pure Mesos shape: Mesos' resources, none of Agora's own keys.
        assert_eq!(state["resources"]["gpus"], 0.0);
        assert!(state.get("registered").is_none());
    }
    for path in ["/state", "/state.json"] {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let state: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(state["registered"], true);
        assert_eq!(state["version"], "1.11.0");
    }
    let (status, kind, body) = get(&app, "/slave(1)/state?jsonp=cb").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "text/javascript");
    assert!(body.starts_with("cb({") && body.ends_with("});"), "{body}");
    let (status, kind, _) = get(&app, "/metrics/snapshot?jsonp=angular.callbacks._1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "text/javascript");
    let (status, _, body) = get(&app, "/metrics/snapshot").await;
    assert_eq!(status, StatusCode::OK);
    let metrics: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(metrics["slave/registered"], 1.0);
    let (status, _, body) = get(&app, "/metrics/snapshot?timeout=1mins").await;
    assert_eq!(status, StatusCode::OK);
    let metrics: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(metrics["slave/registered"], 1.0);
    let (status, _, body) = get(&app, "/metrics/snapshot?timeout=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("Invalid timeout 'soon': "), "{body}");
    let (_, _, body) = get(&app, "/version").await;
    let version: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(version["version"], "1.11.0");
    let (status, _, _) = get(&app, "/state?jsonp=x%3Balert(1)").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn files_take_the_state_directory_and_answer_jsonp() {
    let work_dir = tempfile::tempdir().expect("work dir");
    let sandbox = work_dir
        .path()
        .join("slaves/a1/frameworks/f1/executors/t1/runs/run-1");
    std::fs::create_dir_all(&sandbox).expect("sandbox");
    std::fs::write(sandbox.join("stdout"), "hello\n").expect("stdout");
    std::fs::set_permissions(
        sandbox.join("stdout"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("mode");
    let app = crate::files::router(work_dir.path());
    let directory = absolute(&sandbox);
    let (status, kind, body) = get(
        &app,
        &format!("/files/read?path={directory}/stdout&offset=-1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kind, "application/json");
    let chunk: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(chunk["offset"], 6);
    assert_eq!(chunk["data"], "");
    let (status, kind, body) = get(&app, &format!("/files/browse?path={directory}&jsonp=cb")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kind, "text/javascript");
    let inner = body
        .strip_prefix("cb(")
        .and_then(|b| b.strip_suffix(");"))
        .expect("wrapped");
    let listing: Value = serde_json::from_str(inner).expect("json");
    assert_eq!(listing[0]["path"], format!("{directory}/stdout"));
    assert_eq!(listing[0]["size"], 6);
    assert_eq!(listing[0]["mode"], "-rw-r--r--");
    let (status, kind, body) = get(
        &app,
        &format!("/files/read?path={directory}/stdout&offset=0&jsonp=cb"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "text/javascript");
    assert!(body.contains("\"data\":\"hello\\n\""), "{body}");
}

fn task_info<'a>(state: &'a mut AgentState, id: &str) -> &'a mut pb::TaskInfo {
    state
        .tasks
        .get_mut(&(FrameworkId::new("f1"), TaskId::new(id)))
        .map(|t| &mut t.info)
        .expect("task")
}

#[test]
fn authz_objects_tasks_run_as_their_commands_user_else_their_executors() {
    let (mut state, sandboxes) = agent();
    if let Some(command) = task_info(&mut state, "t1").command.as_mut() {
        command.user = Some("bob".into());
    }
    let executor = task_info(&mut state, "t2")
        .executor
        .as_mut()
        .expect("executor");
    if let Some(command) = executor.command.as_mut() {
        command.user = Some("carol".into());
    }
    let view = MesosView::build(&state, &sandboxes, None);
    let executors = &view.frameworks[0].executors;
    let mut users: BTreeMap<String, Option<String>> = BTreeMap::new();
    for e in executors {
        for t in &e.tasks {
            users.insert(t.id.clone(), t.user.clone());
        }
        for t in &e.queued_tasks {
            users.insert(t.id.clone(), t.user.clone());
        }
    }
    assert_eq!(users.get("t1"), Some(&Some("bob".to_string())));
    assert_eq!(users.get("t2"), Some(&Some("carol".to_string())));
    assert_eq!(users.get("t3"), Some(&None));
    // A command executor runs as its task's user: the sandbox's owner and
    // view_executors' object.
    let command = executors.iter().find(|e| e.id == "t1").expect("t1");
    assert_eq!(command.user.as_deref(), Some("bob"));
    // Users are not shown.
    assert!(!to_json(&view.frameworks).to_string().contains("carol"));
}

#[tokio::test]
async fn authz_state_routes_show_each_viewer_what_the_acls_allow() {
    let (_publish, snapshot) = watch::channel(Arc::new(snapshot()));
    let mut options = options();
    options.acls = Arc::new(
        agora_auth::acl::Acls::parse(
            r#"{"view_frameworks": [
                {"principals": {"values": ["pa"]}, "users": {"values": ["alice"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
        )
        .expect("valid ACLs"),
    );
    let as_viewer = |who: Option<&str>| {
        router(snapshot.clone(), &options).layer(axum::Extension(agora_auth::Caller(
            who.map(agora_auth::Principal::new),
        )))
    };
    for path in ["/state", "/slave(1)/state"] {
        let (status, _, body) = get(&as_viewer(Some("pa")), path).await;
        assert_eq!(status, StatusCode::OK);
        let state: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(state["frameworks"][0]["id"], "f1", "{path}: {state}");
        for who in [Some("pb"), None] {
            let (status, _, body) = get(&as_viewer(who), path).await;
            assert_eq!(status, StatusCode::OK);
            let state: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(state["frameworks"], json!([]), "{path} as {who:?}: {state}");
            assert_eq!(state["completed_frameworks"], json!([]), "{path}: {state}");
            assert!(!body.contains("\"t1\""), "{path} as {who:?}: {body}");
        }
    }
    let (_, _, body) = get(&as_viewer(Some("pa")), "/state").await;
    let state: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(state["tasks"][0]["id"], "t1", "{state}");
}

/// The state endpoints walk every executor and task: they are answered
/// off the async workers, which serve the executors' streams.
#[test]
fn the_state_endpoints_leave_the_async_worker_free() {
    use tower::ServiceExt as _;
    let (_publish, snapshot) = watch::channel(Arc::new(snapshot()));
    let app = router(snapshot, &options());
    let paths = [
        "/state",
        "/state.json",
        "/slave(1)/state",
        "/metrics/snapshot",
    ];
    agora_net::off_workers::assert_answered(&paths, |path| {
        let app = app.clone();
        async move {
            app.oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible")
            .status()
        }
    });
}
