//! Launch cost with and without cgroups: (a) fork+exec+wait of `/bin/true`; (b) create a
//! container (cgroups/all, CFS on), start `/bin/true` inside it, wait, destroy.
//!
//! `cargo bench -p agora-isolation` runs 300 iterations each; without `--bench` in argv (as
//! when run by `cargo test --benches`) a 20-iteration smoke run. Needs root for (b); without
//! usable cgroups (b) is reported as skipped.

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use agora_isolation::{IsolationConfig, Isolator, Isolators, Limits};

fn percentile(sorted: &[Duration], p: f64) -> u128 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0, Duration::as_micros)
}

fn report(key: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "BENCH {key} p50_us={} p99_us={} n={}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples.len()
    );
}

fn raw(runs: usize) -> Result<Vec<Duration>, Box<dyn Error>> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new("/bin/true").status()?;
        samples.push(start.elapsed());
        if !status.success() {
            return Err(format!("/bin/true: {status}").into());
        }
    }
    Ok(samples)
}

struct Launch {
    total: Vec<Duration>,
    create: Vec<Duration>,
    spawn: Vec<Duration>,
    destroy: Vec<Duration>,
}

fn with_cgroups(iso: &Isolator, runs: usize) -> Result<Launch, Box<dyn Error>> {
    let limits = Limits {
        cpus: 0.5,
        mem_bytes: Some(64 << 20),
        pids_max: Some(64),
    };
    let mut out = Launch {
        total: Vec::with_capacity(runs),
        create: Vec::with_capacity(runs),
        spawn: Vec::with_capacity(runs),
        destroy: Vec::with_capacity(runs),
    };
    for i in 0..runs {
        let id = format!("bench-{}-{i}", std::process::id());
        let start = Instant::now();
        let container = iso.create(&id, &limits)?;
        let created = start.elapsed();
        let mut child = container.spawn_inside(|| Command::new("/bin/true").spawn())?;
        out.spawn.push(start.elapsed() - created);
        let status = child.wait()?;
        let before_destroy = Instant::now();
        container.destroy()?;
        out.destroy.push(before_destroy.elapsed());
        out.total.push(start.elapsed());
        out.create.push(created);
        if !status.success() {
            return Err(format!("/bin/true in a container: {status}").into());
        }
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn Error>> {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 300 } else { 20 };

    report("raw_fork_exec_wait", raw(runs)?);

    let config = IsolationConfig {
        isolators: Isolators::parse("cgroups/all")?,
        cgroups_root: format!("agora-bench-{}", std::process::id()),
        enable_cfs: true,
    };
    let iso = match Isolator::new(config) {
        Ok(iso) => iso,
        Err(e) => {
            println!("BENCH cgroup_launch skipped: {e}");
            return Ok(());
        }
    };
    let result = with_cgroups(&iso, runs);
    for root in iso.roots() {
        let _ = std::fs::remove_dir(root);
    }
    let launch = result?;
    report("cgroup_create_spawn_wait_destroy", launch.total);
    report("cgroup_create", launch.create);
    report("cgroup_spawn_inside", launch.spawn);
    report("cgroup_destroy", launch.destroy);
    Ok(())
}
