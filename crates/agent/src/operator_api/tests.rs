//! The agent's operator API on a state machine driven by hand: framing and
//! refusals, every served call in JSON and protobuf, files confined to
//! sandboxes, and the conversions back from the Mesos view.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_core::{AgentId, ExecutorId, FrameworkId, TaskId};
use agora_proto::v1::agent::master_message;
use prost::Message as _;
use serde_json::{Value, json};

use super::*;
use crate::checkpoint::ExecutorRun;
use crate::containers::ContainerOptions;
use crate::state::AgentState;

const T0: Duration = Duration::from_secs(1);

fn options(work_dir: &Path) -> AgentOptions {
    let mut rack = pb::Attribute {
        name: "rack".into(),
        ..Default::default()
    };
    rack.text = Some(pb::value::Text { value: "r1".into() });
    AgentOptions {
        master: "master-host:5050".into(),
        advertise: "10.0.0.2:5051".parse().expect("address"),
        hostname: "agent-host".into(),
        work_dir: work_dir.to_path_buf(),
        resources: Resources::parse("cpus:4;mem:1024;ports:[31000-32000]").expect("resources"),
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

fn run_task(state: &mut AgentState, task: &str, executor: Option<&str>) {
    let framework = pb::FrameworkInfo {
        id: Some(pb::FrameworkId { value: "f1".into() }),
        name: "sleepy".into(),
        user: "alice".into(),
        hostname: Some("sched-host".into()),
        checkpoint: Some(true),
        failover_timeout: Some(60.0),
        roles: vec!["eng".into()],
        capabilities: vec![pb::framework_info::Capability {
            r#type: Some(pb::framework_info::capability::Type::MultiRole as i32),
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    state.on_run_task(
        T0,
        master_message::RunTask {
            framework: Some(framework),
            task: Some(pb::TaskInfo {
                name: format!("name-{task}"),
                task_id: Some(pb::TaskId { value: task.into() }),
                agent_id: Some(pb::AgentId { value: "a1".into() }),
                resources: Resources::parse("cpus:1;mem:32;ports:[31000-31001]")
                    .expect("valid")
                    .to_proto(Some("eng")),
                command: executor.is_none().then(|| pb::CommandInfo {
                    value: Some("sleep 600".into()),
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

/// A running command task (t1) with a sandbox holding `stdout`, a custom
/// executor with a queued task (t3), and a finished task (t0).
struct Fixture {
    work_dir: tempfile::TempDir,
    sandbox: PathBuf,
    api: OperatorApi,
}

fn fixture() -> Fixture {
    let work_dir = tempfile::tempdir().expect("work dir");
    let sandbox = work_dir
        .path()
        .join("slaves/a1/frameworks/f1/executors/t1/runs/run-1");
    std::fs::create_dir_all(&sandbox).expect("sandbox");
    std::fs::write(sandbox.join("stdout"), b"hello\n\xff\xfeworld\n").expect("stdout");
    std::fs::set_permissions(
        sandbox.join("stdout"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .expect("mode");

    let mut state = AgentState::new(
        pb::AgentInfo {
            hostname: "agent-host".into(),
            ..Default::default()
        },
        7,
    );
    state.on_registered(T0, AgentId::new("a1"), &mut Vec::new());
    run_task(&mut state, "t1", None);
    run_task(&mut state, "t3", Some("exec-1"));
    let key = (FrameworkId::new("f1"), ExecutorId::new("t1"));
    let record = state.executors.get_mut(&key).expect("executor recorded");
    record.run = Some(ExecutorRun {
        run_id: "run-1".into(),
        sandbox: sandbox.clone(),
        pid: Some(1),
        start_time: 0,
        hosted: false,
    });
    record.conn = Some(1);
    record.delivered.insert(TaskId::new("t1"));
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
    done.executor_id = ExecutorId::new("t0");
    done.state = pb::TaskState::TaskFinished;
    done.pending.clear();
    state.completed.push_back(done);

    let mut sandboxes = HashMap::new();
    sandboxes.insert(key, sandbox.clone());
    let options = options(work_dir.path());
    let snapshot = AgentSnapshot {
        id: Some("a1".into()),
        hostname: "agent-host".into(),
        master: "master-host:5050".into(),
        registered: true,
        resources: options.resources.summary(),
        gauges: Some(crate::metrics::gauges_from_state(&state)),
        mesos: MesosView::build(&state, &sandboxes, Some("master-host")),
        ..AgentSnapshot::default()
    };
    let (publish, receiver) = watch::channel(Arc::new(snapshot));
    // The sender may go: readers keep the last value.
    drop(publish);
    let api = OperatorApi::new(receiver, &options);
    Fixture {
        work_dir,
        sandbox,
        api,
    }
}

fn headers(content_type: Option<&str>, accept: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = content_type {
        headers.insert(header::CONTENT_TYPE, value.parse().expect("header"));
    }
    if let Some(value) = accept {
        headers.insert(header::ACCEPT, value.parse().expect("header"));
    }
    headers
}

/// One call: status, content type, body.
async fn post(api: &OperatorApi, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String, Bytes) {
    let response = match handle(api, headers, body).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    };
    let status = response.status();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    (status, kind, body)
}

async fn json_call(api: &OperatorApi, call: Value) -> Value {
    let (status, kind, body) = post(
        api,
        &headers(Some("application/json"), None),
        call.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind, "application/json");
    serde_json::from_slice(&body).expect("json answer")
}

async fn proto_call(api: &OperatorApi, call: Call) -> OpResponse {
    let (status, kind, body) = post(
        api,
        &headers(
            Some("application/x-protobuf"),
            Some("application/x-protobuf"),
        ),
        &call.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind, "application/x-protobuf");
    OpResponse::decode(body).expect("protobuf answer")
}

async fn refused(api: &OperatorApi, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
    let (status, kind, body) = post(api, headers, body).await;
    assert!(kind.starts_with("text/plain"), "{kind}");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn refusals_follow_mesos_statuses() {
    let f = fixture();
    let json = headers(Some("application/json"), None);
    let version = br#"{"type":"GET_VERSION"}"#;
    let (status, why) = refused(&f.api, &headers(None, None), version).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(why.contains("Content-Type"), "{why}");
    let (status, _) = refused(&f.api, &headers(Some("text/plain"), None), version).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = refused(
        &f.api,
        &headers(Some("application/json"), Some("text/html")),
        version,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    let (status, why) = refused(&f.api, &json, b"{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(why.contains("failed to parse"), "{why}");
    let (status, why) = refused(&f.api, &json, b"{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(why.contains("'type'"), "{why}");
    // An enum name this agent does not know is left unset: no type.
    let (status, _) = refused(&f.api, &json, br#"{"type":"NO_SUCH_CALL"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, why) = refused(&f.api, &json, br#"{"type":"LIST_FILES"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(why.contains("'list_files'"), "{why}");
    let (status, why) = refused(&f.api, &json, br#"{"type":"READ_FILE"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(why.contains("'read_file'"), "{why}");
    let (status, why) = refused(&f.api, &json, br#"{"type":"LAUNCH_CONTAINER"}"#).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(why.contains("LAUNCH_CONTAINER"), "{why}");
    // A type number no release knows, in protobuf.
    let call = Call {
        r#type: 999,
        ..Default::default()
    };
    let (status, _) = refused(
        &f.api,
        &headers(Some("application/x-protobuf"), None),
        &call.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
}

#[tokio::test]
async fn fixed_facts_in_json() {
    let f = fixture();
    let health = json_call(&f.api, json!({"type": "GET_HEALTH"})).await;
    assert_eq!(
        health,
        json!({"type": "GET_HEALTH", "get_health": {"healthy": true}})
    );
    let version = json_call(&f.api, json!({"type": "GET_VERSION"})).await;
    assert_eq!(version["type"], "GET_VERSION");
    assert_eq!(version["get_version"]["version_info"]["version"], "1.11.0");
    let level = json_call(&f.api, json!({"type": "GET_LOGGING_LEVEL"})).await;
    assert_eq!(level["get_logging_level"]["level"], 0);
    let flags = json_call(&f.api, json!({"type": "GET_FLAGS"})).await;
    let flags = flags["get_flags"]["flags"].as_array().expect("flags");
    let flag = |name: &str| {
        flags
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["value"].clone())
    };
    assert_eq!(flag("hostname"), Some(json!("agent-host")));
    assert_eq!(flag("port"), Some(json!("5051")));
    let metrics = json_call(
        &f.api,
        json!({"type": "GET_METRICS", "get_metrics": {"timeout": {"nanoseconds": 5000000000_u64}}}),
    )
    .await;
    let metrics = metrics["get_metrics"]["metrics"]
        .as_array()
        .expect("metrics");
    let metric = |name: &str| {
        metrics
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["value"].clone())
    };
    assert_eq!(metric("slave/registered"), Some(json!(1.0)));
    assert_eq!(metric("slave/tasks_running"), Some(json!(1.0)));
    // GET_METRICS without its (optional) sub-message answers too.
    let bare = json_call(&f.api, json!({"type": "GET_METRICS"})).await;
    assert_eq!(bare["type"], "GET_METRICS");

    let agent = proto_call(
        &f.api,
        Call {
            r#type: call::Type::GetAgent as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(agent.r#type, response::Type::GetAgent as i32);
    let info = agent
        .get_agent
        .and_then(|a| a.agent_info)
        .expect("agent info");
    assert_eq!(info.hostname, "agent-host");
    assert_eq!(info.port, Some(5051));
    assert_eq!(info.id.map(|id| id.value).as_deref(), Some("a1"));
    assert_eq!(info.attributes.len(), 1);
    let resources = Resources::from_proto(&info.resources).expect("valid resources");
    assert_eq!(resources.scalar_value("cpus"), 4.0);
    assert_eq!(resources.scalar_value("mem"), 1024.0);
}

#[tokio::test]
async fn tasks_executors_and_frameworks_in_both_media() {
    let f = fixture();
    let tasks = proto_call(
        &f.api,
        Call {
            r#type: call::Type::GetTasks as i32,
            ..Default::default()
        },
    )
    .await
    .get_tasks
    .expect("get_tasks");
    let ids = |tasks: &[pb::Task]| -> Vec<String> {
        tasks
            .iter()
            .filter_map(|t| t.task_id.as_ref().map(|id| id.value.clone()))
            .collect()
    };
    assert_eq!(ids(&tasks.launched_tasks), ["t1"]);
    assert_eq!(ids(&tasks.queued_tasks), ["t3"]);
    assert_eq!(ids(&tasks.completed_tasks), ["t0"]);
    assert!(tasks.pending_tasks.is_empty() && tasks.terminated_tasks.is_empty());
    let t1 = &tasks.launched_tasks[0];
    assert_eq!(t1.state, Some(pb::TaskState::TaskRunning as i32));
    assert_eq!(t1.name, "name-t1");
    assert_eq!(t1.agent_id.as_ref().map(|a| a.value.as_str()), Some("a1"));
    // A command task has no executor id of its own, as in Mesos.
    assert_eq!(t1.executor_id, None);
    assert_eq!(t1.statuses.len(), 1);
    assert_eq!(t1.statuses[0].timestamp, Some(1234.5));
    let resources = Resources::from_proto(&t1.resources).expect("valid");
    assert_eq!(resources.scalar_value("cpus"), 1.0);
    assert!(
        t1.resources
            .iter()
            .all(|r| { r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) == Some("eng") })
    );
    let t3 = &tasks.queued_tasks[0];
    assert_eq!(t3.state, Some(pb::TaskState::TaskStaging as i32));
    assert_eq!(
        t3.executor_id.as_ref().map(|e| e.value.as_str()),
        Some("exec-1")
    );

    let frameworks = json_call(&f.api, json!({"type": "GET_FRAMEWORKS"})).await;
    assert_eq!(frameworks["type"], "GET_FRAMEWORKS");
    let framework = &frameworks["get_frameworks"]["frameworks"][0]["framework_info"];
    assert_eq!(framework["id"]["value"], "f1");
    assert_eq!(framework["name"], "sleepy");
    assert_eq!(framework["user"], "alice");
    assert_eq!(framework["roles"], json!(["eng"]));
    assert_eq!(framework["capabilities"][0]["type"], "MULTI_ROLE");
    assert_eq!(framework["checkpoint"], true);

    let executors = json_call(&f.api, json!({"type": "GET_EXECUTORS"})).await;
    let mut live: Vec<String> = executors["get_executors"]["executors"]
        .as_array()
        .expect("executors")
        .iter()
        .map(|e| {
            e["executor_info"]["executor_id"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    live.sort();
    assert_eq!(live, ["exec-1", "t1"]);
    let completed = &executors["get_executors"]["completed_executors"];
    assert_eq!(completed[0]["executor_info"]["executor_id"]["value"], "t0");
    let custom = executors["get_executors"]["executors"]
        .as_array()
        .expect("executors")
        .iter()
        .find(|e| e["executor_info"]["executor_id"]["value"] == "exec-1")
        .expect("exec-1");
    assert_eq!(custom["executor_info"]["type"], "CUSTOM");
    assert_eq!(custom["executor_info"]["framework_id"]["value"], "f1");

    // GET_STATE holds the three, from one snapshot.
    let state = json_call(&f.api, json!({"type": "GET_STATE"})).await;
    let state = &state["get_state"];
    assert_eq!(
        state["get_tasks"]["launched_tasks"][0]["task_id"]["value"],
        "t1"
    );
    assert_eq!(
        state["get_tasks"]["launched_tasks"][0]["state"],
        "TASK_RUNNING"
    );
    assert_eq!(
        state["get_frameworks"]["frameworks"][0]["framework_info"]["name"],
        "sleepy"
    );
    assert!(state["get_executors"]["executors"].is_array());
}

#[tokio::test]
async fn the_slave_path_serves_the_same_api() {
    let f = fixture();
    let app = router(f.api.snapshot.clone(), &options(f.work_dir.path()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let body = r#"{"type":"GET_HEALTH"}"#;
    for (method, path, want) in [
        ("POST", "/api/v1", 200),
        ("POST", "/slave(1)/api/v1", 200),
        ("GET", "/api/v1", 405),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = raw_request(port, &request).await;
        let status: u16 = answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        assert_eq!(status, want, "{method} {path}: {answer}");
        if want == 200 {
            assert!(answer.ends_with(r#"{"type":"GET_HEALTH","get_health":{"healthy":true}}"#));
        }
    }
    server.abort();
}

async fn raw_request(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn files_are_listed_and_read_raw_inside_sandboxes_only() {
    let f = fixture();
    let sandbox = std::path::absolute(&f.sandbox).expect("absolute");
    let listing = json_call(
        &f.api,
        json!({"type": "LIST_FILES", "list_files": {"path": sandbox.display().to_string()}}),
    )
    .await;
    let infos = &listing["list_files"]["file_infos"];
    assert_eq!(infos[0]["path"], format!("{}/stdout", sandbox.display()));
    assert_eq!(infos[0]["size"], 14);
    assert_eq!(infos[0]["mode"], 0o100640);
    assert_eq!(infos[0]["nlink"], 1);
    assert!(infos[0]["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // The virtual path Mesos' clients use.
    let virtual_listing = json_call(
        &f.api,
        json!({"type": "LIST_FILES", "list_files": {"path": "/frameworks/f1/executors/t1/runs/latest"}}),
    )
    .await;
    assert_eq!(
        virtual_listing["list_files"]["file_infos"][0]["path"],
        "/frameworks/f1/executors/t1/runs/latest/stdout"
    );

    // Raw bytes, not text: the invalid UTF-8 comes back as it is.
    let stdout = format!("{}/stdout", sandbox.display());
    let read = proto_call(
        &f.api,
        Call {
            r#type: call::Type::ReadFile as i32,
            read_file: Some(call::ReadFile {
                path: stdout.clone(),
                offset: 6,
                length: Some(4),
            }),
            ..Default::default()
        },
    )
    .await
    .read_file
    .expect("read_file");
    assert_eq!(read.size, Some(14));
    assert_eq!(read.data.as_deref(), Some(&b"\xff\xfewo"[..]));
    // JSON carries the bytes in base64; without a length, to the end.
    let read = json_call(
        &f.api,
        json!({"type": "READ_FILE", "read_file": {"path": stdout, "offset": 0}}),
    )
    .await;
    assert_eq!(read["read_file"]["size"], 14);
    assert_eq!(read["read_file"]["data"], "aGVsbG8K//53b3JsZAo=");
    // Past the end: nothing, and the size.
    let read = json_call(
        &f.api,
        json!({"type": "READ_FILE", "read_file": {"path": stdout, "offset": 100}}),
    )
    .await;
    assert_eq!(read["read_file"]["size"], 14);
    assert_eq!(read["read_file"]["data"], "");

    let json = headers(Some("application/json"), None);
    let outside = f.work_dir.path().join("meta");
    std::fs::create_dir_all(&outside).expect("meta dir");
    for (path, want) in [
        (outside.display().to_string(), StatusCode::FORBIDDEN),
        ("/etc".to_string(), StatusCode::FORBIDDEN),
        (
            format!("{}/../../run-1/stdout", sandbox.display()),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("{}/missing", sandbox.display()),
            StatusCode::NOT_FOUND,
        ),
        ("relative/path".to_string(), StatusCode::BAD_REQUEST),
    ] {
        let call = json!({"type": "LIST_FILES", "list_files": {"path": path}});
        let (status, why) = refused(&f.api, &json, call.to_string().as_bytes()).await;
        assert_eq!(status, want, "{path}: {why}");
        let call = json!({"type": "READ_FILE", "read_file": {"path": path, "offset": 0}});
        let (status, why) = refused(&f.api, &json, call.to_string().as_bytes()).await;
        assert_eq!(status, want, "{path}: {why}");
    }
    // A directory cannot be read.
    let call = json!({"type": "READ_FILE", "read_file": {"path": sandbox.display().to_string(), "offset": 0}});
    let (status, _) = refused(&f.api, &json, call.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn mode_bits_invert_the_mode_column() {
    let kinds = [
        ('-', 0o100000),
        ('d', 0o040000),
        ('l', 0o120000),
        ('c', 0o020000),
        ('b', 0o060000),
        ('p', 0o010000),
        ('s', 0o140000),
    ];
    for (first, kind) in kinds {
        for mode in 0..0o10000 {
            let text = crate::files::permissions_string(first, mode);
            assert_eq!(mode_bits(&text), kind | mode, "{text}");
        }
    }
}

#[test]
fn summaries_become_resources_again() {
    let original = Resources::parse("cpus:1.5;mem:32;ports:[1-2,5-6];zones:{a,b}").expect("valid");
    let proto = resources(&FlatMap(original.summary()), "eng");
    let back = Resources::from_proto(&proto).expect("valid");
    assert_eq!(back.summary(), original.summary());
    assert!(
        proto
            .iter()
            .all(|r| { r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) == Some("eng") })
    );
}

/// GET_STATE, GET_TASKS, GET_EXECUTORS and GET_FRAMEWORKS through the
/// ACLs' `view_*` (`crate::authz_views`): the fixture's framework and
/// tasks run as alice.
#[tokio::test]
async fn authz_views_filter_get_state_tasks_executors_and_frameworks() {
    let mut f = fixture();
    f.api.acls = Arc::new(
        agora_auth::acl::Acls::parse(
            r#"{"view_tasks": [
                {"principals": {"values": ["pa"]}, "users": {"values": ["alice"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}],
            "view_executors": [
                {"principals": {"values": ["pa"]}, "users": {"values": ["alice"]}},
                {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#,
        )
        .expect("valid ACLs"),
    );
    let call = |kind: call::Type| Call {
        r#type: kind as i32,
        ..Default::default()
    };
    let ask = |who: Option<&str>, kind: call::Type| {
        let api = f.api.clone();
        let principal = who.map(agora_auth::Principal::new);
        let body = call(kind).encode_to_vec();
        async move {
            let headers = headers(
                Some("application/x-protobuf"),
                Some("application/x-protobuf"),
            );
            let response = handle_as(&api, &headers, &body, principal)
                .await
                .expect("answered");
            let body = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .expect("body");
            OpResponse::decode(body).expect("protobuf answer")
        }
    };
    let task_ids = |tasks: &response::GetTasks| -> Vec<String> {
        let mut ids: Vec<String> = tasks
            .launched_tasks
            .iter()
            .chain(&tasks.queued_tasks)
            .chain(&tasks.completed_tasks)
            .filter_map(|t| t.task_id.as_ref().map(|id| id.value.clone()))
            .collect();
        ids.sort();
        ids
    };
    let tasks = ask(Some("pa"), call::Type::GetTasks).await.get_tasks;
    assert_eq!(task_ids(&tasks.expect("get_tasks")), ["t0", "t1", "t3"]);
    for who in [Some("pb"), None] {
        let tasks = ask(who, call::Type::GetTasks).await.get_tasks;
        assert!(task_ids(&tasks.expect("get_tasks")).is_empty(), "{who:?}");
        let state = ask(who, call::Type::GetState)
            .await
            .get_state
            .expect("get_state");
        assert!(task_ids(&state.get_tasks.expect("tasks")).is_empty());
        let executors = state.get_executors.expect("executors");
        assert!(executors.executors.is_empty() && executors.completed_executors.is_empty());
        // view_frameworks has no rule: the framework itself still shows.
        let frameworks = ask(who, call::Type::GetFrameworks)
            .await
            .get_frameworks
            .expect("get_frameworks");
        assert_eq!(frameworks.frameworks.len(), 1, "{who:?}");
    }
    let executors = ask(Some("pa"), call::Type::GetExecutors)
        .await
        .get_executors
        .expect("get_executors");
    assert_eq!(executors.executors.len(), 2);
}

/// Reads are answered off the async workers (GET_STATE and GET_TASKS copy
/// and encode every task), which serve the executors' streams.
#[test]
fn reads_leave_the_async_worker_free() {
    let f = fixture();
    let kinds = [
        "GET_STATE",
        "GET_TASKS",
        "GET_EXECUTORS",
        "GET_FRAMEWORKS",
        "GET_HEALTH",
    ];
    agora_net::off_workers::assert_answered(&kinds, |kind| {
        let api = f.api.clone();
        async move {
            let body = serde_json::to_vec(&serde_json::json!({ "type": kind })).expect("json");
            post(&api, &headers(Some("application/json"), None), &body)
                .await
                .0
        }
    });
}
