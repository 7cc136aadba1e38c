//! High-availability figures (issue 3), one `BENCH` line per scenario:
//!
//! - `reregister`: a newly elected master's state machine takes back 10,000
//!   agents running 100,000 tasks (in process: the master's own work, no
//!   sockets), and what that costs in memory;
//! - `leader_failover`: three real masters over a real ZooKeeper; SIGKILL the
//!   leader, time until another master leads and serves;
//! - `dead_agent_detection`: a real master with its default ping settings and
//!   a real agent; SIGSTOP the agent, time until the master marks it unreachable.
//!
//! `cargo bench -p agora-e2e --bench failover` (release daemons). Knobs:
//! `AGORA_BENCH_AGENTS` (10000), `AGORA_BENCH_TASKS_PER_AGENT` (10),
//! `AGORA_BENCH_RUNS` (5), `AGORA_BENCH_ZK_SESSION` (seconds, 4),
//! `AGORA_BENCH_ONLY` (one scenario name). Every wait has a deadline; every
//! process started is stopped by its pid.

use std::path::Path;
use std::time::{Duration, Instant};

use agora_allocator::DrfAllocator;
use agora_e2e::{Proc, Sweeper, agora_binary, free_port, get_json};
use agora_master::state::{Master, MasterConfig, Now};
use agora_proto::v1 as pb;
use rustix::process::{Pid, Signal, kill_process};

/// The master's bench fixtures: the same failed leader's registry and
/// agents' registrations as its in-process benches.
#[path = "../../crates/master/benches/support/mod.rs"]
#[allow(dead_code)]
mod support;

use support::{env_usize, percentile, registrations, registry_entries};

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn selected(name: &str) -> bool {
    std::env::var("AGORA_BENCH_ONLY").map_or(true, |only| only == name)
}

fn reregister() {
    let agents = env_usize("AGORA_BENCH_AGENTS", 10_000);
    let per_agent = env_usize("AGORA_BENCH_TASKS_PER_AGENT", 10);
    let runs = env_usize("AGORA_BENCH_RUNS", 5);
    let mut totals = Vec::new();
    let mut per_registration_us = Vec::new();
    let mut snapshot_ms = Vec::new();
    let mut rss_growth = Vec::new();
    for run in 0..runs {
        let registrations = registrations(agents, per_agent);
        let entries = registry_entries(agents);
        let before = rss_mb();
        let info = pb::MasterInfo {
            id: format!("bench-{run}"),
            hostname: Some("bench".into()),
            ..Default::default()
        };
        let mut master = Master::new(
            MasterConfig::new(info),
            Box::new(DrfAllocator::with_seed(run as u64)),
        );
        let now = Now {
            monotonic: Duration::from_secs(1),
            wall: 0.0,
        };
        master.recover(now, entries, Duration::from_secs(600));
        let mut out = Vec::new();
        let started = Instant::now();
        for (conn, register) in registrations.into_iter().enumerate() {
            let one = Instant::now();
            master.agent_register(now, conn as u64, register, &mut out);
            per_registration_us.push(one.elapsed().as_secs_f64() * 1e6);
            out.clear();
        }
        master.allocate(now, &mut out);
        totals.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(master.recovering_agents(), 0, "every agent re-registered");
        let snap = Instant::now();
        let snapshot = master.snapshot(0.0, 0.0);
        snapshot_ms.push(snap.elapsed().as_secs_f64() * 1e3);
        let tasks: usize = snapshot.frameworks.iter().map(|f| f.tasks.len()).sum();
        assert_eq!(tasks, agents * per_agent, "every task adopted");
        rss_growth.push(rss_mb() - before);
        drop(snapshot);
        drop(master);
    }
    let totals = sorted(totals);
    let per = sorted(per_registration_us);
    let snaps = sorted(snapshot_ms);
    let rss = sorted(rss_growth);
    println!(
        "BENCH reregister agents={agents} tasks={} p50_ms={:.1} p99_ms={:.1} per_agent_p50_us={:.1} per_agent_p99_us={:.1} snapshot_p50_ms={:.1} master_rss_mb={:.0} runs={runs}",
        agents * per_agent,
        percentile(&totals, 50.0),
        percentile(&totals, 99.0),
        percentile(&per, 50.0),
        percentile(&per, 99.0),
        percentile(&snaps, 50.0),
        // The largest growth (the first run's; later runs reuse freed memory).
        rss.last().copied().unwrap_or(f64::NAN),
    );
}

fn signal(proc: &Proc, signal: Signal) {
    if let Some(pid) = Pid::from_raw(proc.pid() as i32) {
        let _ = kill_process(pid, signal);
    }
}

fn elected(port: u16) -> bool {
    get_json(port, "/state").is_ok_and(|s| s["elected"] == true)
}

/// Polls `check` every 5 ms until it holds, up to `limit`.
fn time_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn master_args<'a>(port: &'a str, work_dir: &'a str) -> Vec<&'a str> {
    vec![
        "master",
        "--ip",
        "127.0.0.1",
        "--port",
        port,
        "--work-dir",
        work_dir,
    ]
}

async fn leader_failover(bin: &Path) {
    let runs = env_usize("AGORA_BENCH_RUNS", 5);
    let session = env_usize("AGORA_BENCH_ZK_SESSION", 4);
    let zk = agora_coord::testing::ZooKeeper::start()
        .await
        .expect("zookeeper (Debian package) starts");
    let url = zk.unique_url("agora-bench").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let session_text = session.to_string();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let start = |n: usize| {
        let port = ports[n].to_string();
        let work_dir = dir.path().join(format!("m{n}"));
        let work_dir = work_dir.to_str().expect("utf-8").to_string();
        let mut args = master_args(&port, &work_dir);
        args.extend(["--zk", &url, "--zk-session-timeout", &session_text]);
        Proc::spawn_bin(
            bin,
            &args,
            dir.path()
                .join(format!("m{n}-{}.log", Instant::now().elapsed().as_nanos())),
        )
    };
    let mut masters: Vec<Proc> = (0..3).map(start).collect();
    let mut times = Vec::new();
    for _ in 0..runs {
        let leader = time_until(Duration::from_secs(60), || {
            ports.iter().any(|p| elected(*p))
        })
        .and_then(|_| ports.iter().position(|p| elected(*p)))
        .expect("a leader");
        masters[leader].kill();
        let took = time_until(Duration::from_secs(60), || {
            ports
                .iter()
                .enumerate()
                .any(|(i, p)| i != leader && elected(*p))
        })
        .expect("a new leader");
        times.push(took.as_secs_f64() * 1e3);
        masters[leader] = start(leader);
    }
    let times = sorted(times);
    println!(
        "BENCH leader_failover masters=3 zk_session_s={session} p50_ms={:.0} max_ms={:.0} target_ms={} runs={runs}",
        percentile(&times, 50.0),
        times.last().copied().unwrap_or(f64::NAN),
        session * 1000 + 1000,
    );
}

fn dead_agent_detection(bin: &Path) {
    let runs = env_usize("AGORA_BENCH_RUNS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroups = agora_e2e::TestCgroups::new("bench-dead-agent");
    let _sweeper = Sweeper(dir.path().to_path_buf());
    let port = free_port();
    let port_text = port.to_string();
    let work_dir = dir.path().join("m");
    let _master = Proc::spawn_bin(
        bin,
        &master_args(&port_text, work_dir.to_str().expect("utf-8")),
        dir.path().join("m.log"),
    );
    let agent_dir = dir.path().join("a");
    let agent = Proc::spawn_bin(
        bin,
        &[
            "agent",
            "--master",
            &format!("127.0.0.1:{port}"),
            "--ip",
            "127.0.0.1",
            "--port",
            &free_port().to_string(),
            "--work-dir",
            agent_dir.to_str().expect("utf-8"),
            "--resources",
            "cpus:1;mem:256",
            "--cgroups-root",
            &cgroups.root,
        ],
        dir.path().join("a.log"),
    );
    let status =
        |want: &str| get_json(port, "/state").is_ok_and(|s| s["agents"][0]["status"] == want);
    let mut times = Vec::new();
    for _ in 0..runs {
        time_until(Duration::from_secs(60), || status("active")).expect("agent active");
        signal(&agent, Signal::STOP);
        let took = time_until(Duration::from_secs(60), || status("unreachable"))
            .expect("agent marked unreachable");
        times.push(took.as_secs_f64() * 1e3);
        signal(&agent, Signal::CONT);
    }
    let times = sorted(times);
    println!(
        "BENCH dead_agent_detection ping_s=2 max_pings=3 p50_ms={:.0} max_ms={:.0} target_ms=10000 runs={runs}",
        percentile(&times, 50.0),
        times.last().copied().unwrap_or(f64::NAN),
    );
}

fn main() {
    // `cargo test --benches` runs this too: keep that a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    if selected("reregister") {
        if full {
            reregister();
        } else {
            reregister_smoke();
        }
    }
    if !full {
        return;
    }
    let bin = agora_binary(true).expect("release agora binary");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if selected("leader_failover") {
        runtime.block_on(leader_failover(&bin));
    }
    if selected("dead_agent_detection") {
        dead_agent_detection(&bin);
    }
}

/// The re-registration scenario at a hundredth of its size, for `cargo test --benches`.
fn reregister_smoke() {
    let registrations = registrations(100, 10);
    let info = pb::MasterInfo {
        id: "smoke".into(),
        ..Default::default()
    };
    let mut master = Master::new(
        MasterConfig::new(info),
        Box::new(DrfAllocator::with_seed(1)),
    );
    let now = Now {
        monotonic: Duration::from_secs(1),
        wall: 0.0,
    };
    master.recover(now, registry_entries(100), Duration::from_secs(600));
    let mut out = Vec::new();
    for (conn, register) in registrations.into_iter().enumerate() {
        master.agent_register(now, conn as u64, register, &mut out);
    }
    assert_eq!(master.recovering_agents(), 0, "every agent re-registered");
    let tasks: usize = master
        .snapshot(0.0, 0.0)
        .frameworks
        .iter()
        .map(|f| f.tasks.len())
        .sum();
    assert_eq!(tasks, 1000);
    println!("smoke reregister: 100 agents, 1000 tasks adopted");
}
