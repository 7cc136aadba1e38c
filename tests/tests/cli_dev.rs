//! Issue 17: `agora dev` divides this machine among its agents, so the
//! cluster adds up to the machine (2 agents on 2 cores: 1 cpu each) and no
//! two agents offer the same port; `--resources` gives each agent exactly
//! that instead. And Ctrl-C stops the dev cluster whole, its tasks too.

use std::time::Duration;

use agora_e2e::{
    Proc, Sweeper, TestCgroups, cgroup_mounts, everything_under, free_port, get_json,
    processes_under, wait_for,
};

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

/// `agora dev --agents 2` on a free port with its work dir in `dir`, its
/// containers under `cgroups`, and `extra` flags; returns the process and
/// the master's port.
fn start_dev(dir: &std::path::Path, cgroups: &TestCgroups, extra: &[&str]) -> (Proc, u16) {
    start_dev_with_env(dir, extra, &[("AGORA_CGROUPS_ROOT", cgroups.root.as_str())])
}

fn start_dev_with_env(dir: &std::path::Path, extra: &[&str], envs: &[(&str, &str)]) -> (Proc, u16) {
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
    (Proc::spawn_with_env(&args, dir.join("dev.log"), envs), port)
}

#[test]
fn dev_agents_share_the_machine_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroups = TestCgroups::new("dev-share");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let (_dev, port) = start_dev(dir.path(), &cgroups, &[]);
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
    let cgroups = TestCgroups::new("dev-resources");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let (_dev, port) = start_dev(
        dir.path(),
        &cgroups,
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

/// Ctrl-C stops the dev cluster whole, as it says: once `agora dev` has
/// exited, its agents' supervisors and their running tasks are gone (an
/// `agora agent` leaves its tasks running for the next agent; a dev
/// cluster must not), and so are the tasks' cgroups.
#[test]
fn ctrl_c_stops_the_dev_clusters_tasks_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Dropped after the sweeper has killed whatever a failure left.
    let cgroups = TestCgroups::new("dev-stop");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let (mut dev, port) = start_dev_with_env(
        dir.path(),
        &[],
        &[("AGORA_CGROUPS_ROOT", cgroups.root.as_str())],
    );
    agents(port, 2);
    let master = format!("127.0.0.1:{port}");
    let _run = Proc::spawn(
        &[
            "run",
            "--master",
            &master,
            "--name",
            "stays",
            "--command",
            "sleep 600",
            "--instances",
            "2",
        ],
        dir.path().join("run.log"),
    );
    // Both tasks' processes run in their sandboxes (under `dir`), beside
    // the agents' supervisors.
    wait_for("both tasks running", Duration::from_secs(60), || {
        let state = get_json(port, "/state").ok()?;
        let running = state["frameworks"]
            .as_array()?
            .iter()
            .flat_map(|f| f["tasks"].as_array().into_iter().flatten())
            .filter(|t| t["state"] == "TASK_RUNNING")
            .count();
        (running == 2 && processes_under(dir.path()).len() >= 2).then_some(())
    })
    .expect("the tasks run");
    assert!(
        everything_under(dir.path()).len() > processes_under(dir.path()).len(),
        "the agents' supervisors run under the work dir"
    );

    let pid = rustix::process::Pid::from_raw(dev.pid() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    wait_for("agora dev exits", Duration::from_secs(60), || dev.exited())
        .expect("agora dev exits on Ctrl-C");
    let left = wait_for(
        "nothing of the dev cluster left",
        Duration::from_secs(30),
        || {
            let left = everything_under(dir.path());
            left.is_empty().then_some(())
        },
    );
    assert!(
        left.is_ok(),
        "still running after agora dev exited: {:?}\n{}",
        everything_under(dir.path()),
        dev.log_text()
    );
    for mount in cgroup_mounts() {
        let root = mount.join(&cgroups.root);
        let containers: Vec<_> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        assert!(containers.is_empty(), "containers left: {containers:?}");
    }
}
