//! The spine end to end: real master and agent processes, `agora run` as
//! the framework, checked through `/state` and the sandboxes on disk.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use agora_e2e::{
    Cluster, Proc, all_tasks, free_port, get_json, http_get, run_with_deadline, wait_for,
};

const AGENT_RESOURCES: &str = "cpus:2;mem:1024";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until `/state` (a snapshot, published within milliseconds) shows the task in `state`.
fn task_in_state(cluster: &Cluster, id: &str, state: &str) -> serde_json::Value {
    wait_for(&format!("{id} in {state}"), Duration::from_secs(10), || {
        let current = cluster.state().ok()?;
        all_tasks(&current)
            .into_iter()
            .find(|t| t["id"] == id && t["state"] == state)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", cluster.state().map(|s| all_tasks(&s))))
}

#[test]
fn twenty_echo_tasks_run_on_both_agents_and_finish() {
    let cluster = Cluster::start(2, AGENT_RESOURCES).expect("cluster starts");
    let output = cluster.run(&[
        "--name",
        "smoke",
        "--command",
        "echo hi",
        "--instances",
        "20",
        "--cpus",
        "0.1",
        "--mem",
        "16",
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "agora run failed: {stdout}\n{}",
        text(&output.stderr)
    );
    assert_eq!(stdout.matches("TASK_FINISHED").count(), 20, "{stdout}");

    let state = wait_for(
        "20 finished tasks in /state",
        Duration::from_secs(10),
        || {
            let state = cluster.state().ok()?;
            let finished = all_tasks(&state)
                .iter()
                .filter(|t| t["state"] == "TASK_FINISHED" && t["name"] == "smoke")
                .count();
            (finished == 20).then_some(state)
        },
    )
    .expect("state shows the tasks");
    let agents = state["agents"].as_array().expect("agents list");
    assert_eq!(agents.len(), 2);
    for agent in agents {
        for field in ["id", "hostname", "resources", "used", "active"] {
            assert!(!agent[field].is_null(), "agent lacks {field}: {agent}");
        }
    }
    let tasks = all_tasks(&state);
    let agents_used: std::collections::BTreeSet<&str> = tasks
        .iter()
        .filter_map(|t| t["agent_id"].as_str())
        .collect();
    assert_eq!(
        agents_used.len(),
        2,
        "tasks ran on both agents: {agents_used:?}"
    );

    for i in 0..20 {
        let task_id = format!("smoke-{i}");
        let files = cluster.sandbox_files(&task_id, "stdout");
        assert_eq!(files.len(), 1, "one sandbox for {task_id}: {files:?}");
        let content = std::fs::read_to_string(&files[0]).expect("stdout readable");
        assert_eq!(content.trim(), "hi", "{task_id} stdout");
    }
}

#[test]
fn a_failing_command_reports_its_exit_code() {
    let cluster = Cluster::start(1, AGENT_RESOURCES).expect("cluster starts");
    let output = cluster.run(&["--name", "fails", "--command", "exit 3"]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "agora run must fail: {stdout}");
    assert!(stdout.contains("TASK_FAILED"), "{stdout}");
    assert!(
        stdout.contains("status 3"),
        "exit code in the message: {stdout}"
    );
    // The task's state can run ahead of the update being delivered (the
    // agent already knew FAILED when RUNNING went out): wait until the
    // master has the FAILED update itself, whose message names the exit.
    let task = task_in_state(&cluster, "fails-0", "TASK_FAILED");
    assert_ne!(
        task["message"].as_str(),
        Some("command is running"),
        "a state is never shown with another state's message: {task}"
    );
    wait_for(
        "fails-0's message names the exit status",
        Duration::from_secs(10),
        || {
            let current = cluster.state().ok()?;
            all_tasks(&current).into_iter().find(|t| {
                t["id"] == "fails-0"
                    && t["state"] == "TASK_FAILED"
                    && t["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("status 3"))
            })
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", cluster.state().map(|s| all_tasks(&s))));
}

#[test]
fn a_task_killed_through_the_api_ends_killed() {
    let cluster = Cluster::start(1, AGENT_RESOURCES).expect("cluster starts");
    let output = cluster.run(&[
        "--name",
        "sleeper",
        "--command",
        "sleep 60",
        "--kill-after",
        "1",
    ]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "agora run must fail: {stdout}");
    assert!(
        stdout.contains("TASK_KILLED"),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    // The process is gone: nothing of the task survives its kill.
    task_in_state(&cluster, "sleeper-0", "TASK_KILLED");
}

#[test]
fn tasks_get_their_sandbox_and_ids_in_the_environment() {
    let cluster = Cluster::start(1, AGENT_RESOURCES).expect("cluster starts");
    let output = cluster.run(&[
        "--name",
        "envy",
        "--command",
        "echo \"$AGORA_TASK_ID|$AGORA_AGENT_ID|$MESOS_SANDBOX|$(pwd)\"",
    ]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let files = cluster.sandbox_files("envy-0", "stdout");
    let line = std::fs::read_to_string(&files[0]).expect("stdout");
    let parts: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(parts[0], "envy-0");
    assert!(!parts[1].is_empty(), "agent id set: {line}");
    assert_eq!(
        parts[2], parts[3],
        "sandbox is the working directory: {line}"
    );
    assert_eq!(
        std::path::Path::new(parts[2]),
        files[0].parent().expect("sandbox dir")
    );
}

#[test]
fn a_request_no_agent_can_fit_fails_fast() {
    let cluster = Cluster::start(1, AGENT_RESOURCES).expect("cluster starts");
    let output = cluster.run(&["--name", "huge", "--command", "true", "--cpus", "64"]);
    assert!(!output.status.success());
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(all.contains("no agent"), "explains why: {all}");
}

#[test]
fn an_unreachable_master_is_a_clear_error() {
    let port = free_port();
    let mut command = std::process::Command::new(agora_e2e::agora_bin());
    command.args([
        "run",
        "--master",
        &format!("127.0.0.1:{port}"),
        "--name",
        "x",
        "--command",
        "true",
        "--timeout",
        "2",
    ]);
    let output = run_with_deadline(command, Duration::from_secs(30));
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "names the master: {stderr}"
    );
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("w");
    let cases: Vec<Vec<String>> = vec![
        vec![
            "agent".into(),
            "--master".into(),
            "127.0.0.1:1".into(),
            "--work-dir".into(),
            work.display().to_string(),
            "--resources".into(),
            "cpus:abc".into(),
        ],
        vec![
            "agent".into(),
            "--master".into(),
            "127.0.0.1:1".into(),
            "--work-dir".into(),
            work.display().to_string(),
            "--resources".into(),
            "ports:[9-1]".into(),
        ],
        vec!["master".into(), "--port".into(), "notaport".into()],
        vec!["master".into(), "--allocation-interval".into(), "-1".into()],
        vec!["dev".into(), "--agents".into(), "0".into()],
    ];
    for args in cases {
        let mut command = std::process::Command::new(agora_e2e::agora_bin());
        command.args(&args);
        let output = run_with_deadline(command, Duration::from_secs(30));
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = text(&output.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?} explains itself");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(!work.exists(), "a refused agent created nothing");
}

#[test]
fn garbage_on_the_master_port_changes_nothing() {
    let cluster = Cluster::start(1, AGENT_RESOURCES).expect("cluster starts");
    let before = cluster.state().expect("state");
    for garbage in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00junk",
        b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        &[0xffu8; 4096][..],
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", cluster.master_port)).expect("connect");
        let _ = stream.write_all(garbage);
        drop(stream);
    }
    let (code, _) = http_get(cluster.master_port, "/health").expect("still serving");
    assert_eq!(code, 200);
    let (code, _) = http_get(cluster.master_port, "/no/such/page").expect("still serving");
    assert_eq!(code, 404);
    let after = cluster.state().expect("state");
    assert_eq!(before["agents"], after["agents"]);
    assert_eq!(before["frameworks"], after["frameworks"]);
}

#[test]
fn master_http_endpoints_answer() {
    let cluster = Cluster::start(1, AGENT_RESOURCES).expect("cluster starts");
    let version = get_json(cluster.master_port, "/version").expect("version");
    assert!(version["version"].is_string());
    let (code, metrics) = http_get(cluster.master_port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("agora_master_agents{state=\"active\"} 1"),
        "{metrics}"
    );
    let (code, page) = http_get(cluster.master_port, "/").expect("index");
    assert_eq!(code, 200);
    assert!(page.contains("<title>Agora</title>"), "{page}");
    let overview = agora_e2e::get_json(cluster.master_port, "/api/overview").expect("overview");
    assert!(overview.to_string().contains("active"), "{overview}");
    let state = cluster.state().expect("state");
    assert_eq!(
        state["leader"],
        format!("127.0.0.1:{}", cluster.master_port)
    );
}

#[test]
fn agents_re_register_after_a_master_restart_and_updates_are_not_lost() {
    let mut cluster = Cluster::start(1, AGENT_RESOURCES).expect("cluster starts");
    let agent_id = cluster.state().expect("state")["agents"][0]["id"].clone();
    // A task that outlives the master: its final update must still arrive.
    let mut command = std::process::Command::new(agora_e2e::agora_bin());
    command.args([
        "run",
        "--master",
        &cluster.master_address(),
        "--name",
        "survivor",
        "--command",
        "sleep 3",
        "--timeout",
        "60",
    ]);
    let runner = std::thread::spawn(move || run_with_deadline(command, Duration::from_secs(120)));
    wait_for("task running", Duration::from_secs(30), || {
        let state = cluster.state().ok()?;
        all_tasks(&state)
            .iter()
            .any(|t| t["id"] == "survivor-0" && t["state"] == "TASK_RUNNING")
            .then_some(())
    })
    .expect("task runs");
    cluster.restart_master();
    let state = cluster.wait_agents(1).expect("agent re-registers");
    assert_eq!(state["agents"][0]["id"], agent_id, "the agent keeps its id");
    let output = runner.join().expect("runner thread");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "run survives the master restart: {stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}");
}

#[test]
fn the_dev_command_brings_up_a_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroups = agora_e2e::TestCgroups::new("dev-spine");
    let port = free_port();
    let mut dev = Proc::spawn(
        &[
            "dev",
            "--cgroups-root",
            &cgroups.root,
            "--port",
            &port.to_string(),
            "--agents",
            "2",
            "--work-dir",
            dir.path().join("agora").to_str().expect("utf-8"),
        ],
        dir.path().join("dev.log"),
    );
    let state = wait_for("two agents in dev", Duration::from_secs(30), || {
        if dev.exited().is_some() {
            return Some(Err(dev.log_text()));
        }
        let state = get_json(port, "/state").ok()?;
        let active = state["agents"]
            .as_array()?
            .iter()
            .filter(|a| a["active"] == true)
            .count();
        (active == 2).then_some(Ok(state))
    })
    .expect("dev comes up")
    .expect("dev keeps running");
    assert_eq!(state["agents"].as_array().map(Vec::len), Some(2));
    let (code, page) = http_get(port, "/").expect("page");
    assert_eq!(code, 200);
    assert!(page.contains("<title>Agora</title>"), "{page}");
}
