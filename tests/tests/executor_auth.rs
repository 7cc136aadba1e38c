//! Executor authentication, end to end: a process that is not an executor
//! cannot speak for it over either executor API (gRPC `Executor/Open`, HTTP
//! `POST /api/v1/executor`), whatever token it shows: none, garbage,
//! another live executor's (read from that executor's environment, as a
//! local attacker with the same rights could), or one of an executor whose
//! run has ended. Every refusal is observed from the outside (401 with the
//! executor realm's challenge, gRPC UNAUTHENTICATED) and leaves the victim
//! task's state unchanged; the real executor keeps working.
//!
//! Also the fetcher's sandboxing: a task running as `nobody` cannot fetch a
//! file only root may read, and extracted archives keep no setuid bits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agora_e2e::{Cluster, agora_bin, all_tasks, get_json, wait_for};
use agora_proto::v1 as pb;
use agora_proto::v1::executor::executor_client::ExecutorClient;
use agora_proto::v1::executor::{Call, call};

const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN_VAR: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";

fn cluster(agent_flags: &[&str]) -> (Cluster, u16) {
    let mut cluster = Cluster::start(0, "cpus:4;mem:2048").expect("master starts");
    let port = cluster.add_agent_with(0, "cpus:4;mem:2048", agent_flags);
    cluster.wait_agents(1).expect("agent registers");
    (cluster, port)
}

fn spawn_run(cluster: &Cluster, args: &[&str]) -> Child {
    Command::new(agora_bin())
        .arg("run")
        .arg("--master")
        .arg(cluster.master_address())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agora run starts")
}

fn wait_output(mut child: Child) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("wait works").is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `agora executor` as its environment shows it.
#[derive(Debug, Clone)]
struct ExecutorProcess {
    pid: u32,
    framework_id: String,
    executor_id: String,
    token: String,
}

/// Every process whose environment names executor `executor_id` and holds
/// a token (the executor itself; never its task, which must not have one).
fn executors_with_token() -> Vec<ExecutorProcess> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut framework_id = None;
        let mut executor_id = None;
        let mut token = None;
        for var in raw.split(|b| *b == 0) {
            let var = String::from_utf8_lossy(var);
            if let Some((name, value)) = var.split_once('=') {
                match name {
                    "AGORA_FRAMEWORK_ID" => framework_id = Some(value.to_string()),
                    "AGORA_EXECUTOR_ID" => executor_id = Some(value.to_string()),
                    TOKEN_VAR => token = Some(value.to_string()),
                    _ => {}
                }
            }
        }
        if let (Some(framework_id), Some(executor_id), Some(token)) =
            (framework_id, executor_id, token)
        {
            found.push(ExecutorProcess {
                pid,
                framework_id,
                executor_id,
                token,
            });
        }
    }
    found
}

fn executor_of(task_id: &str) -> ExecutorProcess {
    wait_for(&format!("the executor of {task_id}"), DEADLINE, || {
        executors_with_token()
            .into_iter()
            .find(|e| e.executor_id == task_id)
    })
    .expect("executor found")
}

fn task_state(cluster: &Cluster, task_id: &str) -> Option<String> {
    let state = cluster.state().ok()?;
    all_tasks(&state)
        .iter()
        .find(|t| t["id"] == task_id)
        .and_then(|t| t["state"].as_str().map(str::to_string))
}

fn wait_task_state(cluster: &Cluster, task_id: &str, state: &str) {
    wait_for(&format!("{task_id} in {state}"), DEADLINE, || {
        (task_state(cluster, task_id).as_deref() == Some(state)).then_some(())
    })
    .expect("task state");
}

/// One HTTP/1.1 request; returns the status, the head and the body.
fn http_post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

fn finished_update(framework_id: &str, executor_id: &str, task_id: &str) -> String {
    serde_json::json!({
        "type": "UPDATE",
        "framework_id": {"value": framework_id},
        "executor_id": {"value": executor_id},
        "update": {"status": {
            "task_id": {"value": task_id},
            "state": "TASK_FINISHED",
            "source": "SOURCE_EXECUTOR",
            "message": "forged",
            "uuid": "AAECAwQFBgcICQoLDA0ODw=="
        }}
    })
    .to_string()
}

fn subscribe_body(framework_id: &str, executor_id: &str) -> String {
    serde_json::json!({
        "type": "SUBSCRIBE",
        "framework_id": {"value": framework_id},
        "executor_id": {"value": executor_id},
        "subscribe": {}
    })
    .to_string()
}

/// Each HTTP call (SUBSCRIBE, UPDATE, MESSAGE) as `executor_id` with this
/// `authorization` is refused with 401 and the executor realm's challenge.
fn assert_http_refused(
    port: u16,
    framework_id: &str,
    executor_id: &str,
    task_id: &str,
    authorization: Option<&str>,
) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let message = serde_json::json!({
        "type": "MESSAGE",
        "framework_id": {"value": framework_id},
        "executor_id": {"value": executor_id},
        "message": {"data": "Zm9yZ2Vk"}
    })
    .to_string();
    for body in [
        subscribe_body(framework_id, executor_id),
        finished_update(framework_id, executor_id, task_id),
        message,
    ] {
        for path in ["/api/v1/executor", "/slave(1)/api/v1/executor"] {
            let (code, head, text) = http_post(port, path, &headers, &body);
            assert_eq!(
                code, 401,
                "{path} {body} with {authorization:?}: {head}\n{text}"
            );
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: bearer realm=\"mesos-agent-executor\""),
                "{head}"
            );
            assert!(!text.is_empty(), "a refusal says why");
        }
    }
}

/// A gRPC SUBSCRIBE as `executor_id` with this `authorization` is refused
/// with UNAUTHENTICATED.
fn assert_grpc_refused(
    runtime: &tokio::runtime::Runtime,
    port: u16,
    framework_id: &str,
    executor_id: &str,
    authorization: Option<&str>,
) {
    let code = runtime.block_on(async {
        let mut client = ExecutorClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .expect("connect");
        let subscribe = Call {
            r#type: call::Type::Subscribe as i32,
            framework_id: Some(pb::FrameworkId {
                value: framework_id.into(),
            }),
            executor_id: Some(pb::ExecutorId {
                value: executor_id.into(),
            }),
            subscribe: Some(call::Subscribe::default()),
            ..Default::default()
        };
        let update = Call {
            r#type: call::Type::Update as i32,
            framework_id: subscribe.framework_id.clone(),
            executor_id: subscribe.executor_id.clone(),
            update: Some(call::Update {
                status: Some(pb::TaskStatus {
                    task_id: Some(pb::TaskId {
                        value: executor_id.into(),
                    }),
                    state: Some(pb::TaskState::TaskFinished as i32),
                    uuid: Some(vec![7; 16]),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let mut request = tonic::Request::new(futures_stream(vec![subscribe, update]));
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        match client.open(request).await {
            Ok(_) => None,
            Err(status) => Some(status.code()),
        }
    });
    assert_eq!(
        code,
        Some(tonic::Code::Unauthenticated),
        "gRPC SUBSCRIBE as {executor_id} with {authorization:?}"
    );
}

fn futures_stream(calls: Vec<Call>) -> impl tokio_stream::Stream<Item = Call> {
    tokio_stream::iter(calls)
}

#[test]
fn only_an_executor_can_speak_for_itself() {
    // Executor processes of their own, whose environment holds their
    // tokens for a local attacker to read; hosted executors keep theirs
    // inside the supervisor, and take the same checks on the same paths.
    let (cluster, port) = cluster(&["--executor-supervisor=false"]);
    let dir = cluster.dir.path().to_path_buf();
    let gate = |name: &str| dir.join(name);
    let wait_gate = |name: &str| {
        format!(
            "while [ ! -e {} ]; do sleep 0.05; done",
            gate(name).display()
        )
    };
    // The victim, another live executor, and one that will end.
    let victim = spawn_run(
        &cluster,
        &["--name", "victim", "--command", &wait_gate("victim-go")],
    );
    let other = spawn_run(
        &cluster,
        &["--name", "other", "--command", &wait_gate("other-go")],
    );
    let ended = spawn_run(
        &cluster,
        &["--name", "ended", "--command", &wait_gate("ended-go")],
    );
    for task in ["victim-0", "other-0", "ended-0"] {
        wait_task_state(&cluster, task, "TASK_RUNNING");
    }
    let victim_executor = executor_of("victim-0");
    let other_executor = executor_of("other-0");
    let ended_executor = executor_of("ended-0");
    assert_ne!(victim_executor.token, other_executor.token);

    // The task's own processes never hold their executor's token: for each
    // of these executors, the executor is the only process that has it.
    let holders = executors_with_token();
    for task in ["victim-0", "other-0", "ended-0"] {
        let pids: Vec<u32> = holders
            .iter()
            .filter(|e| e.executor_id == task)
            .map(|e| e.pid)
            .collect();
        assert_eq!(pids.len(), 1, "processes holding {task}'s token: {pids:?}");
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("executor"),
            "{task}'s token is held by {:?}",
            String::from_utf8_lossy(&cmdline)
        );
    }

    // The ended executor's run ends: its token is worthless afterwards.
    std::fs::write(gate("ended-go"), "").expect("gate");
    let out = wait_output(ended);
    assert!(text(&out).contains("TASK_FINISHED"), "{}", text(&out));
    wait_for("the ended executor to leave the agent", DEADLINE, || {
        let state = get_json(port, "/slave(1)/state").ok()?;
        let live = state["frameworks"]
            .as_array()?
            .iter()
            .flat_map(|f| f["executors"].as_array().cloned().unwrap_or_default())
            .any(|e| e["id"] == ended_executor.executor_id.as_str());
        (!live).then_some(())
    })
    .expect("executor gone");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fid = victim_executor.framework_id.as_str();
    let eid = victim_executor.executor_id.as_str();
    let other_bearer = format!("Bearer {}", other_executor.token);
    let ended_bearer = format!("Bearer {}", ended_executor.token);
    let forged_tokens: [(&str, Option<&str>); 5] = [
        ("no token", None),
        ("garbage", Some("Bearer garbage")),
        ("not bearer", Some("Basic cm9vdDpyb290")),
        ("another executor's token", Some(&other_bearer)),
        ("an ended executor's token", Some(&ended_bearer)),
    ];
    for (what, authorization) in forged_tokens {
        eprintln!("forging as the victim with {what}");
        assert_http_refused(port, fid, eid, "victim-0", authorization);
        assert_grpc_refused(&runtime, port, fid, eid, authorization);
    }
    // The ended executor's token for its own (ended) identity.
    assert_http_refused(
        port,
        &ended_executor.framework_id,
        &ended_executor.executor_id,
        "ended-0",
        Some(&ended_bearer),
    );
    assert_grpc_refused(
        &runtime,
        port,
        &ended_executor.framework_id,
        &ended_executor.executor_id,
        Some(&ended_bearer),
    );

    // Nothing changed: the victim still runs, as the master and the agent see it.
    assert_eq!(
        task_state(&cluster, "victim-0").as_deref(),
        Some("TASK_RUNNING")
    );
    let agent_state = get_json(port, "/state").expect("agent state");
    let on_agent = agent_state["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["id"] == "victim-0")
        .cloned()
        .unwrap_or_default();
    assert_eq!(on_agent["state"], "TASK_RUNNING", "{agent_state}");

    // The real executors keep working: their tasks finish normally.
    std::fs::write(gate("victim-go"), "").expect("gate");
    std::fs::write(gate("other-go"), "").expect("gate");
    for run in [victim, other] {
        let out = wait_output(run);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("TASK_FINISHED"), "{}", text(&out));
    }
    let log = std::fs::read_to_string(&cluster.agents[0].log).unwrap_or_default();
    assert!(log.contains("executor call refused"), "refusals are logged");
    for executor in [&victim_executor, &other_executor, &ended_executor] {
        assert!(!log.contains(&executor.token), "a token was logged");
    }
}

/// A world-readable directory under the test's (root-only) temp dir, so
/// that `nobody` can reach what the test puts there.
fn public_dir(base: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut path = dir.clone();
    loop {
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
        if path == base || !path.pop() {
            break;
        }
    }
    dir
}

#[test]
fn the_fetcher_reads_as_the_task_user_and_strips_setuid_bits() {
    use std::os::unix::fs::PermissionsExt as _;
    // Tasks run as another user only when the agent is root (as in CI):
    // without that this test could not show anything, so it fails.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (tasks switch to the user 'nobody'): run the suite as root, as .ci/run does"
    );
    let (cluster, _) = cluster(&[]);
    let base = cluster.dir.path().to_path_buf();
    let files = public_dir(&base, "files");
    let secret = files.join("secret.txt");
    std::fs::write(&secret, "root only\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let public = files.join("public.txt");
    std::fs::write(&public, "for everyone\n").expect("public");
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    // nobody may fetch what nobody may read, and no more.
    let out = cluster.run(&[
        "--name",
        "nobody-public",
        "--user",
        "nobody",
        "--uri",
        &format!("file://{}", public.display()),
        "--command",
        "cat public.txt",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cluster.run(&[
        "--name",
        "nobody-secret",
        "--user",
        "nobody",
        "--uri",
        &format!("file://{}", secret.display()),
        "--command",
        "cat secret.txt",
    ]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("TASK_FAILED"), "{shown}");
    assert!(
        shown.to_ascii_lowercase().contains("permission denied"),
        "{shown}"
    );
    for stdout in cluster.sandbox_files("nobody-secret-0", "stdout") {
        let seen = std::fs::read_to_string(stdout).unwrap_or_default();
        assert!(!seen.contains("root only"), "{seen}");
    }
    let fetched = cluster.sandbox_files("nobody-secret-0", "secret.txt");
    assert!(fetched.is_empty(), "the secret was fetched to {fetched:?}");
    // The same file for a root task (the agent's user) is fetched: the
    // refusal above is the user's, not the path's.
    let out = cluster.run(&[
        "--name",
        "root-secret",
        "--user",
        "root",
        "--uri",
        &format!("file://{}", secret.display()),
        "--command",
        "cat secret.txt",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // An archive with a setuid-root program deep inside: extracted
    // without its setuid and setgid bits.
    let tree = base.join("tree");
    let deep = tree.join("a/b/c/d/e/f/g/h");
    std::fs::create_dir_all(&deep).expect("deep dir");
    let program = deep.join("suid-shell");
    std::fs::write(&program, "#!/bin/sh\nid -u\n").expect("program");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o6755)).expect("chmod");
    let archive = files.join("suid.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&tree)
        .arg("a")
        .status()
        .expect("tar runs");
    assert!(status.success());
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = cluster.run(&[
        "--name",
        "suid",
        "--user",
        "nobody",
        "--uri",
        &format!("file://{}", archive.display()),
        "--command",
        "stat -c %a a/b/c/d/e/f/g/h/suid-shell",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout: String = cluster
        .sandbox_files("suid-0", "stdout")
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert_eq!(stdout.trim(), "755", "setuid/setgid bits stripped");
}
