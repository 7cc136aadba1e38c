//! Mesos' read endpoints end to end: a real master and agent, a task
//! started with `agora run`, and what a Mesos dashboard or script reads
//! while it runs: the master's `/master/state.json`, `/master/tasks`,
//! `/metrics/snapshot`, the agent's `/slave(1)/state` and its files API
//! at the sandbox `directory` that state names.

use std::time::Duration;

use agora_e2e::{Cluster, Proc, get_json, http_get, wait_for};
use serde_json::Value;

const RESOURCES: &str = "cpus:2;mem:1024;ports:[31000-32000]";
const GREETING: &str = "hello-mesos-endpoints";

/// The task with this name in a Mesos `/state`'s frameworks, if any.
fn task_named<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["frameworks"]
        .as_array()?
        .iter()
        .filter_map(|f| f["tasks"].as_array())
        .flatten()
        .find(|t| t["name"] == name)
}

#[test]
fn mesos_clients_read_a_running_task_and_its_sandbox() {
    let mut cluster = Cluster::start(0, RESOURCES).expect("master starts");
    let agent_port = cluster.add_agent_with(0, RESOURCES, &[]);
    cluster.wait_agents(1).expect("the agent registers");

    // A task that prints, then stays running while the endpoints are read.
    let master = cluster.master_address();
    let command = format!("echo {GREETING}; sleep 120");
    let mut run = Proc::spawn(
        &[
            "run",
            "--master",
            &master,
            "--name",
            "mesos-reader",
            "--command",
            &command,
            "--cpus",
            "0.1",
            "--mem",
            "16",
        ],
        cluster.dir.path().join("run.log"),
    );

    let port = cluster.master_port;
    let state = wait_for(
        "the task running in /master/state.json",
        Duration::from_secs(60),
        || {
            let state = get_json(port, "/master/state.json").ok()?;
            let task = task_named(&state, "mesos-reader")?;
            (task["state"] == "TASK_RUNNING").then_some(state)
        },
    )
    .unwrap_or_else(|e| panic!("{e}; agora run says: {}", run.log_text()));
    assert_eq!(state["version"], "1.11.0");
    assert!(state["agora_version"].is_string(), "{state}");
    assert_eq!(state["activated_slaves"], 1);
    assert_eq!(state["orphan_tasks"], serde_json::json!([]));
    assert!(
        state["leader"]
            .as_str()
            .is_some_and(|l| l.starts_with("master@")),
        "{}",
        state["leader"]
    );
    let slave = &state["slaves"][0];
    assert_eq!(slave["pid"], format!("slave(1)@127.0.0.1:{agent_port}"));
    assert_eq!(slave["resources"]["cpus"], 2.0);
    assert_eq!(slave["resources"]["gpus"], 0.0);
    assert_eq!(slave["resources"]["ports"], "[31000-32000]");
    let task = task_named(&state, "mesos-reader").expect("task listed");
    let task_id = task["id"].as_str().expect("task id").to_string();
    assert_eq!(task["slave_id"], slave["id"]);
    assert_eq!(task["resources"]["cpus"], 0.1);

    // The newest task, as Mesos' UI and CLIs page through them.
    let tasks = get_json(port, "/master/tasks?limit=1&order=desc").expect("tasks");
    let listed = tasks["tasks"].as_array().expect("tasks array");
    assert_eq!(listed.len(), 1, "{tasks}");
    assert_eq!(listed[0]["id"], task_id.as_str());
    assert_eq!(listed[0]["state"], "TASK_RUNNING");
    let (code, body) = http_get(port, "/master/tasks?limit=many").expect("answers");
    assert_eq!(code, 400, "{body}");

    let metrics = get_json(port, "/metrics/snapshot").expect("metrics");
    assert_eq!(metrics["master/elected"], 1.0);
    assert_eq!(metrics["master/tasks_running"], 1.0, "{metrics}");
    assert_eq!(metrics["master/slaves_active"], 1.0);
    assert_eq!(metrics["master/cpus_total"], 2.0);

    // JSONP, as the Mesos web UI fetches.
    let (code, body) = http_get(port, "/master/state?jsonp=cb").expect("answers");
    assert_eq!(code, 200);
    assert!(body.starts_with("cb({") && body.ends_with("});"));

    // The agent, as the Mesos UI's agent and sandbox pages read it.
    let agent_state = get_json(agent_port, "/slave(1)/state").expect("agent state");
    assert_eq!(agent_state["id"], slave["id"]);
    assert_eq!(
        agent_state["pid"],
        format!("slave(1)@127.0.0.1:{agent_port}")
    );
    let executor = agent_state["frameworks"]
        .as_array()
        .expect("frameworks")
        .iter()
        .filter_map(|f| f["executors"].as_array())
        .flatten()
        .find(|e| {
            e["tasks"]
                .as_array()
                .is_some_and(|tasks| tasks.iter().any(|t| t["id"] == task_id.as_str()))
        })
        .unwrap_or_else(|| panic!("an executor runs {task_id}: {agent_state}"))
        .clone();
    let directory = executor["directory"]
        .as_str()
        .expect("directory")
        .to_string();
    assert!(directory.starts_with('/'), "{directory}");
    // Agora's own `/state` keeps its keys next to Mesos' ones.
    let merged = get_json(agent_port, "/state").expect("agent /state");
    assert_eq!(merged["registered"], true);
    assert_eq!(merged["pid"], agent_state["pid"]);

    // The pager's first read: the size as the offset, no data.
    let size = wait_for("stdout written", Duration::from_secs(30), || {
        let chunk = get_json(
            agent_port,
            &format!("/files/read?path={directory}/stdout&offset=-1"),
        )
        .ok()?;
        assert_eq!(chunk["data"], "");
        chunk["offset"].as_u64().filter(|size| *size > 0)
    })
    .expect("stdout has the greeting");
    let chunk = get_json(
        agent_port,
        &format!("/files/read?path={directory}/stdout&offset=0&length={size}"),
    )
    .expect("read");
    assert!(
        chunk["data"]
            .as_str()
            .is_some_and(|data| data.contains(GREETING)),
        "{chunk}"
    );
    let listing = get_json(agent_port, &format!("/files/browse?path={directory}")).expect("browse");
    assert!(
        listing.as_array().is_some_and(|entries| entries
            .iter()
            .any(|e| e["path"] == format!("{directory}/stdout"))),
        "{listing}"
    );
    let agent_metrics = get_json(agent_port, "/metrics/snapshot").expect("agent metrics");
    assert_eq!(agent_metrics["slave/registered"], 1.0);
    assert_eq!(agent_metrics["slave/tasks_running"], 1.0, "{agent_metrics}");

    run.kill();
}
