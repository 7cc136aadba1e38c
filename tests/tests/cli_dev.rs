//! Issue 17: `agora dev` divides this machine among its agents, so the
//! cluster adds up to the machine (2 agents on 2 cores: 1 cpu each) and no
//! two agents offer the same port; `--resources` gives each agent exactly
//! that instead.

use std::time::Duration;

use agora_e2e::{Proc, Sweeper, free_port, get_json, wait_for};

/// `/state`'s agents once `count` are active.
fn agents(port: u16, count: usize) -> Vec<serde_json::Value> {
    wait_for(
        &format!("{count} active dev agents"),
        Duration::from_secs(60),
        || {
            let state = get_json(port, "/state").ok()?;
            let agents: Vec<serde_json::Value> = state["agents"]
                .as_array()?
                .iter()
                .filter(|a| a["active"] == true)
                .cloned()
                .collect();
            (agents.len() == count).then_some(agents)
        },
    )
    .expect("dev agents register")
}

/// `[31000-31499]` as (31000, 31499).
fn range(text: &str) -> (u32, u32) {
    let (begin, end) = text
        .trim_matches(|c| c == '[' || c == ']')
        .split_once('-')
        .unwrap_or_else(|| panic!("one range: {text}"));
    (begin.parse().expect("begin"), end.parse().expect("end"))
}

fn machine_memory_mb() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    kb / 1024.0
}

/// `agora dev --agents 2` on a free port with its work dir in `dir`, and
/// `extra` flags; returns the process and the master's port.
fn start_dev(dir: &std::path::Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let port_text = port.to_string();
    let work_dir = dir.join("dev");
    let mut args = vec![
        "dev",
        "--port",
        port_text.as_str(),
        "--agents",
        "2",
        "--work-dir",
        work_dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    (Proc::spawn(&args, dir.join("dev.log")), port)
}

#[test]
fn dev_agents_share_the_machine_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let (_dev, port) = start_dev(dir.path(), &[]);
    let agents = agents(port, 2);
    let cores = std::thread::available_parallelism().expect("cores").get() as f64;
    let share = ((cores / 2.0) * 1000.0).floor() / 1000.0;
    let mut memory = 0.0;
    let mut ports = Vec::new();
    for agent in &agents {
        let resources = &agent["resources"];
        assert_eq!(resources["cpus"].as_f64(), Some(share), "{agent}");
        memory += resources["mem"].as_f64().expect("mem");
        ports.push(range(resources["ports"].as_str().expect("ports")));
    }
    assert!(
        memory > 0.0 && memory <= machine_memory_mb(),
        "{memory} MB in all"
    );
    ports.sort_unstable();
    assert!(ports[0].1 < ports[1].0, "agents share ports: {ports:?}");
}

#[test]
fn dev_resources_are_each_agents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let (_dev, port) = start_dev(
        dir.path(),
        &["--resources", "cpus:3;mem:100;disk:10;ports:[40000-40009]"],
    );
    for agent in agents(port, 2) {
        let resources = &agent["resources"];
        assert_eq!(resources["cpus"].as_f64(), Some(3.0), "{agent}");
        assert_eq!(resources["mem"].as_f64(), Some(100.0), "{agent}");
        assert_eq!(
            resources["ports"].as_str(),
            Some("[40000-40009]"),
            "{agent}"
        );
    }
}
