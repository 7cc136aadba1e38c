//! One agent with 10,000 running tasks, SIGKILLed and started again: every
//! executor re-subscribes, every task is the same process as before, none
//! ends. The 10,000 in a release build (`cargo test --release -p
//! agora-e2e --test many_tasks`); 3,000 in a debug build (the suite's: its
//! agent takes minutes to start 10,000 on two cores);
//! `AGORA_TEST_MANY_TASKS` sets another count.
//!
//! Every task also reaches TASK_RUNNING at the master: with a few thousand
//! executors the agent's acknowledgements reached some after their 5 s
//! retry, and a re-sent STARTING that the master had acknowledged already
//! was queued again after RUNNING (a few of every 3,000 tasks stayed
//! TASK_STARTING; the agent now remembers the uuids it took).
//!
//! What this caught: with HTTP/2's default 1 MiB connection window, the
//! supervisor's one connection was closed by the agent (too many small
//! frames unread) once a few thousand executors wrote at once, over and
//! over; a few hundred executors then missed the re-registration timeout.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agora_e2e::{Cluster, all_tasks, free_port, process_start_time, wait_for};

const RESOURCES: &str = "cpus:64;mem:200000";

fn count() -> usize {
    std::env::var("AGORA_TEST_MANY_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            3_000
        } else {
            10_000
        })
}

/// `slave/executors_running` and `slave/executors_registering` of the agent.
fn executors(port: u16) -> Option<(usize, usize)> {
    let metrics = agora_e2e::get_json(port, "/metrics/snapshot").ok()?;
    let get = |name: &str| metrics[name].as_f64().map(|v| v as usize);
    Some((
        get("slave/executors_running")?,
        get("slave/executors_registering")?,
    ))
}

/// Field 4 of `/proc/<pid>/stat`: the parent's pid.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The tasks' processes (`sleep`, children of a supervisor worker working
/// in `work_dir`), with their start times.
fn task_processes(work_dir: &Path) -> BTreeMap<u32, u64> {
    let workers: Vec<u32> = agora_e2e::everything_under(work_dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).nth(2) == Some(b"--worker".as_slice()))
        })
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent(*pid).is_some_and(|p| workers.contains(&p)))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
        .filter_map(|pid| Some((pid, process_start_time(pid)?)))
        .collect()
}

#[test]
fn an_agent_with_thousands_of_tasks_restarts_and_every_executor_comes_back() {
    let n = count();
    // Mesos' ping settings (15 s, 5 misses) rather than ours (2 s, 3): a
    // debug-built agent starting 10,000 tasks on two cores answers pings
    // late (its pongs wait behind the status updates on its one stream),
    // and this test is about the restart.
    let mut cluster = Cluster::start_with_master(0, RESOURCES, |_| {
        [
            "--agent-ping-timeout",
            "15",
            "--max-agent-ping-timeouts",
            "5",
        ]
        .map(String::from)
        .to_vec()
    })
    .expect("master starts");
    let port = free_port();
    let agent = cluster.start_agent_on(0, port, RESOURCES, "agent-0.log", &[]);
    cluster.agents.push(agent);
    cluster.agent_dirs.push(cluster.agent_dir(0));
    cluster.wait_agents(1).expect("agent registers");
    let work_dir = cluster.agent_dir(0);
    let instances = n.to_string();
    let mut run = cluster.spawn_run(
        "many",
        "sleep 3600",
        &["--instances", &instances, "--cpus", "0.001", "--mem", "4"],
    );
    wait_for(
        &format!("{n} executors running"),
        Duration::from_secs(900),
        || (executors(port)? == (n, 0)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", executors(port), run.log_text()));
    // An executor subscribes before its task starts.
    let before = wait_for(
        &format!("{n} task processes"),
        Duration::from_secs(300),
        || {
            let found = task_processes(&work_dir);
            (found.len() == n).then_some(found)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {} found", task_processes(&work_dir).len()));

    cluster.agents[0].kill();
    cluster.agents[0] = cluster.start_agent_on(0, port, RESOURCES, "agent-0-again.log", &[]);
    wait_for(
        &format!("{n} executors re-subscribed"),
        Duration::from_secs(300),
        || (executors(port)? == (n, 0)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", executors(port)));

    // The same processes, none lost; no task ended or was reported as
    // anything but running.
    let lost: Vec<&u32> = before
        .iter()
        .filter(|(pid, started)| process_start_time(**pid) != Some(**started))
        .map(|(pid, _)| pid)
        .collect();
    assert!(
        lost.is_empty(),
        "{} task processes gone: {lost:?}",
        lost.len()
    );
    assert!(
        !run.log_text().contains("task many-"),
        "no task ended: {}",
        run.log_text()
    );
    // Every task reaches TASK_RUNNING at the master, and stays there: the
    // updates in flight at the kill are re-sent on the next subscription,
    // and those the master had already are not queued again.
    let states = |state: &serde_json::Value| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for task in all_tasks(state) {
            *counts
                .entry(task["state"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        counts
    };
    wait_for(
        &format!("{n} tasks TASK_RUNNING"),
        Duration::from_secs(120),
        || {
            let state = cluster.state().ok()?;
            (states(&state).get("TASK_RUNNING") == Some(&n)).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", cluster.state().map(|s| states(&s))));
    run.kill();
}
