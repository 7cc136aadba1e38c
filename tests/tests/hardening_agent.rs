//! The agent cleans up after itself and says what is wrong: sandboxes are
//! garbage-collected after `--gc-delay`, an agent whose master is not there
//! says so (logs and `/health`), and its log file has no colour codes.

use std::path::Path;
use std::time::Duration;

use agora_e2e::{Cluster, Proc, free_port, get_json, wait_for};

#[test]
fn a_finished_tasks_sandbox_is_garbage_collected_after_the_gc_delay() {
    let resources = "cpus:1;mem:256;disk:100";
    let mut cluster = Cluster::start(0, resources).expect("master starts");
    cluster.add_agent_with(0, resources, &["--gc-delay", "1secs"]);
    cluster.wait_agents(1).expect("agent registers");
    let output = cluster.run(&["--name", "gc", "--command", "echo collected"]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The agent logs each sandbox it removes; the one of task gc-0 must be
    // among them, and be gone from the disk.
    let log = cluster.agents[0].log.clone();
    let removed = wait_for(
        "the sandbox of gc-0 to be collected",
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .filter(|l| l.contains("sandbox garbage-collected"))
                .find_map(|l| {
                    let start = l.find("sandbox=")? + "sandbox=".len();
                    let path = l[start..].split_whitespace().next()?.to_string();
                    path.contains("/executors/gc-0/runs/").then_some(path)
                })
        },
    )
    .expect("collected");
    assert!(!Path::new(&removed).exists(), "{removed} still on disk");
    assert!(cluster.sandbox_files("gc-0", "stdout").is_empty());
}

#[test]
fn an_agent_without_a_master_says_so_and_logs_without_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cgroups = agora_e2e::TestCgroups::new("no-master");
    let port = free_port();
    let master = format!("127.0.0.1:{}", free_port());
    let agent = Proc::spawn(
        &[
            "agent",
            "--master",
            &master,
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--work-dir",
            dir.path().join("work").to_str().expect("utf-8"),
            "--resources",
            "cpus:1;mem:128",
            "--cgroups-root",
            &cgroups.root,
        ],
        dir.path().join("agent.log"),
    );
    // Alive (200, as Mesos' /health), and the body says the master is away.
    let health = wait_for("agent /health", Duration::from_secs(30), || {
        get_json(port, "/health").ok()
    })
    .expect("health");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["master"], "disconnected", "{health}");
    assert_eq!(health["disk"], "ok", "{health}");
    // A warning each round of the backoff, not silence.
    wait_for(
        "two warnings about the master",
        Duration::from_secs(60),
        || {
            let text = agent.log_text();
            (text.matches("master unreachable").count() >= 2).then_some(())
        },
    )
    .expect("warned");
    let text = agent.log_text();
    assert!(text.contains("WARN"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text}"
    );
}
