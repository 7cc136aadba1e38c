//! The agent's files API and the master's proxy of it, end to end with real
//! `agora` processes: a task's sandbox read through the master and from the
//! agent, traversal attempts (encoded, absolute, symlinks the task made)
//! refused through both, downloads, unknown and unreachable agents; and the
//! metrics both daemons show after a task ran.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use agora_e2e::{Cluster, all_tasks, get_json, wait_for};

/// What `/etc/passwd` holds on any Linux machine, and no sandbox file here does.
const PASSWD_MARK: &str = "root:x:0:0";

/// One raw GET (the target exactly as written: encodings reach the server
/// untouched); returns (status, head, body).
fn raw_get(port: u16, target: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, head.to_string(), body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not json ({e}): {body}"))
}

/// The value of one series in a Prometheus text page.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn sandbox_files_through_the_master_and_the_agent() {
    let mut cluster = Cluster::start(1, "cpus:2;mem:1024;disk:1000").expect("cluster starts");
    let output = cluster.run(&[
        "--name",
        "files",
        "--command",
        "echo hello-from-the-sandbox; ln -s /etc/passwd leak; ln -s /etc etcdir; \
         mkdir sub; echo nested > sub/n.txt",
    ]);
    assert!(
        output.status.success(),
        "agora run failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let state = cluster.state().expect("state");
    let task = all_tasks(&state)
        .into_iter()
        .find(|t| t["name"] == "files")
        .expect("the task in /state");
    let agent_id = task["agent_id"].as_str().expect("agent id").to_string();
    let framework_id = task["framework_id"]
        .as_str()
        .expect("framework id")
        .to_string();
    let address = state["agents"][0]["address"]
        .as_str()
        .expect("agent address")
        .to_string();
    let agent_port: u16 = address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("agent port");
    let agent_state = get_json(agent_port, "/state").expect("agent state");
    let sandbox = agent_state["completed_tasks"]
        .as_array()
        .into_iter()
        .chain(agent_state["tasks"].as_array())
        .flatten()
        .find_map(|t| t["sandbox"].as_str())
        .expect("the task's sandbox in the agent's /state")
        .to_string();
    let executor_id = sandbox
        .split('/')
        .skip_while(|c| *c != "executors")
        .nth(1)
        .expect("executor id in the sandbox path")
        .to_string();
    let on_disk = std::fs::read_to_string(format!("{sandbox}/stdout")).expect("stdout on disk");
    let virtual_path = format!("/frameworks/{framework_id}/executors/{executor_id}/runs/latest");
    let proxied = |rest: &str| format!("/agents/{agent_id}/files/{rest}");
    let master = cluster.master_port;

    // Read: through the master, from the agent, by virtual and real paths.
    for (port, target) in [
        (
            master,
            proxied(&format!("read?path={virtual_path}/stdout&offset=0")),
        ),
        (
            agent_port,
            format!("/files/read?path={virtual_path}/stdout&offset=0"),
        ),
        (
            agent_port,
            format!("/files/read?path={sandbox}/stdout&offset=0"),
        ),
        (
            master,
            proxied(&format!(
                "read?path={sandbox}/stdout&offset=0&length=100000"
            )),
        ),
    ] {
        let (code, _, body) = raw_get(port, &target);
        assert_eq!(code, 200, "{target}: {body}");
        let chunk = json(&body);
        assert!(
            chunk["data"]
                .as_str()
                .is_some_and(|d| d.contains("hello-from-the-sandbox")),
            "{target}: {body}"
        );
        assert_eq!(chunk["offset"], 0);
    }
    let (code, _, body) = raw_get(
        master,
        &proxied(&format!("read?path={virtual_path}/stdout&offset=-1")),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["offset"], on_disk.len());
    assert_eq!(json(&body)["data"], "");

    // Browse.
    let (code, _, body) = raw_get(master, &proxied(&format!("browse?path={virtual_path}")));
    assert_eq!(code, 200, "{body}");
    let listing = json(&body);
    let entry = |name: &str| {
        listing
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["path"] == format!("{virtual_path}/{name}"))
            .unwrap_or_else(|| panic!("{name} listed: {body}"))
            .clone()
    };
    assert!(
        entry("stdout")["mode"]
            .as_str()
            .is_some_and(|m| m.starts_with('-'))
    );
    assert_eq!(entry("stdout")["size"], on_disk.len());
    assert!(
        entry("sub")["mode"]
            .as_str()
            .is_some_and(|m| m.starts_with('d'))
    );
    assert!(
        entry("leak")["mode"]
            .as_str()
            .is_some_and(|m| m.starts_with('l'))
    );

    // Download.
    let (code, head, body) = raw_get(
        master,
        &proxied(&format!("download?path={virtual_path}/sub/n.txt")),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-disposition: attachment; filename=\"n.txt\""),
        "{head}"
    );
    assert_eq!(body, "nested\n");

    // Traversal, whatever the encoding, through both.
    let ups = "%2e%2e/".repeat(12);
    let slash_ups = "..%2f".repeat(12);
    let attempts = [
        format!("read?path={virtual_path}/{ups}etc/passwd&offset=0"),
        format!("read?path={virtual_path}/{slash_ups}etc%2fpasswd&offset=0"),
        format!("read?path={virtual_path}%2F{slash_ups}etc%2Fpasswd&offset=0"),
        format!("read?path={sandbox}/{ups}etc/passwd&offset=0"),
        "read?path=/etc/passwd&offset=0".to_string(),
        "read?path=%2Fetc%2Fpasswd&offset=0".to_string(),
        "download?path=/etc/passwd".to_string(),
        format!("read?path={virtual_path}/leak&offset=0"),
        format!("read?path={sandbox}/leak&offset=0"),
        format!("download?path={virtual_path}/leak"),
        format!("read?path={virtual_path}/etcdir/passwd&offset=0"),
        format!("browse?path={virtual_path}/etcdir"),
        format!("browse?path={virtual_path}/{ups}"),
    ];
    for attempt in &attempts {
        for (port, target) in [
            (master, proxied(attempt)),
            (agent_port, format!("/files/{attempt}")),
        ] {
            let (code, _, body) = raw_get(port, &target);
            assert!(code == 403 || code == 404, "{target}: {code} {body}");
            assert!(!body.contains(PASSWD_MARK), "{target} leaked: {body}");
            assert!(json(&body)["error"].is_string(), "{target}: {body}");
        }
    }

    // Unknown agent, unknown operation.
    let (code, _, body) = raw_get(
        master,
        &format!("/agents/no-such-agent/files/read?path={virtual_path}/stdout"),
    );
    assert_eq!(code, 404, "{body}");
    let (code, _, _) = raw_get(master, &proxied("delete?path=/"));
    assert_eq!(code, 404);

    // Metrics after one task: offers and transitions on the master, tasks
    // by state on the agent.
    let (code, _, text) = raw_get(master, "/metrics");
    assert_eq!(code, 200);
    for series in [
        "agora_master_offers_sent_total",
        // Not TASK_RUNNING: the master takes the agent's latest state (as
        // Mesos), so a task that ends before its RUNNING update is forwarded
        // goes from STAGING straight to FINISHED there.
        "agora_master_task_transitions_total{state=\"TASK_FINISHED\"}",
        "agora_master_is_leader",
        "agora_master_leader_changes_total",
    ] {
        assert!(
            metric(&text, series).is_some_and(|v| v >= 1.0),
            "{series} in\n{text}"
        );
    }
    let allocations = metric(
        &text,
        "agora_master_allocation_cycle_seconds_count{kind=\"event\"}",
    )
    .unwrap_or(0.0)
        + metric(
            &text,
            "agora_master_allocation_cycle_seconds_count{kind=\"periodic\"}",
        )
        .unwrap_or(0.0);
    assert!(allocations >= 1.0, "{text}");
    assert!(
        metric(&text, "agora_master_registry_write_seconds_count").is_some_and(|v| v >= 1.0),
        "the agent's admission is a registry write: {text}"
    );
    wait_for(
        "a status-update round trip in the master's metrics",
        Duration::from_secs(10),
        || {
            let (_, _, text) = raw_get(master, "/metrics");
            metric(&text, "agora_master_status_update_round_trip_seconds_count")
                .filter(|v| *v >= 1.0)
        },
    )
    .expect("round trips measured");
    let agent_metrics = wait_for(
        "the finished task in the agent's metrics",
        Duration::from_secs(10),
        || {
            let (_, _, text) = raw_get(agent_port, "/metrics");
            metric(&text, "agora_agent_tasks{state=\"TASK_FINISHED\"}")
                .filter(|v| *v >= 1.0)
                .map(|_| text)
        },
    )
    .expect("agent metrics");
    assert!(agent_metrics.contains("# TYPE agora_agent_executors_running gauge"));
    // Known from the state machine once the agent has published.
    assert!(
        metric(&agent_metrics, "agora_agent_status_updates_pending").is_some(),
        "{agent_metrics}"
    );

    // An agent the master knows but cannot reach: 502.
    for agent in &mut cluster.agents {
        agent.kill();
    }
    let (code, _, body) = raw_get(
        master,
        &proxied(&format!("read?path={virtual_path}/stdout&offset=0")),
    );
    assert_eq!(code, 502, "{body}");
    assert!(json(&body)["error"].is_string());
}
