//! `busy_reads`: how the master answers while clients read its biggest
//! endpoints in a loop. After one framework placed every task (held
//! running), `/health` is fetched every 50 ms, first quiet, then while two
//! clients read an endpoint back to back, for each endpoint in turn: the
//! health checks' p50/p99/max (the master's async workers, which also
//! serve the agents' and frameworks' streams, are free or not) and the
//! clients' reads per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agora_e2e::Sweeper;

use super::{Bins, Knobs, fetch_and_drop, percentile, place_all, placement_cluster};

/// The endpoints read in a loop (`None`: quiet).
const ENDPOINTS: [Option<&str>; 5] = [
    None,
    Some("/master/slaves"),
    Some("/master/frameworks"),
    Some("/master/tasks?limit=100&order=desc"),
    Some("/api/tasks?q=t-99&limit=100"),
];

pub(super) fn busy_reads(
    bins: &Bins,
    k: &Knobs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let checks = if k.full { 300 } else { 20 };
    for run in 0..k.runs {
        let dir = tempfile::tempdir()?;
        let _sweeper = Sweeper(dir.path().to_path_buf());
        let (_master, port, _sim) = placement_cluster(bins, k, dir.path())?;
        place_all(runtime, port, k)?;
        for endpoint in ENDPOINTS {
            let (health_ms, reads_per_s) = while_read(port, endpoint, checks)?;
            println!(
                "BENCH busy_reads agents={} tasks={} run={run} endpoint={} health_p50_ms={:.1} health_p99_ms={:.1} health_max_ms={:.1} reads_per_s={:.1} checks={}",
                k.agents,
                k.tasks,
                endpoint.unwrap_or("none"),
                percentile(&health_ms, 50.0),
                percentile(&health_ms, 99.0),
                health_ms.last().copied().unwrap_or(f64::NAN),
                reads_per_s,
                health_ms.len()
            );
        }
    }
    Ok(())
}

/// `checks` fetches of `/health` 50 ms apart while two clients read
/// `endpoint` back to back: the fetches' times (ms, sorted) and the
/// clients' whole reads per second.
fn while_read(
    port: u16,
    endpoint: Option<&'static str>,
    checks: usize,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = endpoint
        .into_iter()
        .flat_map(|path| [path, path])
        .map(|path| {
            let (stop, reads) = (stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut buffer = vec![0; 1 << 20];
                // Bounded by `stop`, set once the checks are done.
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some(_)) = fetch_and_drop(port, path, false, &mut buffer) {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut health_ms = Vec::with_capacity(checks);
    let mut buffer = vec![0; 4096];
    let mut next = Instant::now();
    let mut failure = None;
    for _ in 0..checks {
        let asked = Instant::now();
        match fetch_and_drop(port, "/health", false, &mut buffer) {
            Ok(Some(_)) => health_ms.push(asked.elapsed().as_secs_f64() * 1e3),
            Ok(None) => failure = Some(anyhow::anyhow!("/health answered other than 200")),
            Err(e) => failure = Some(e),
        }
        if failure.is_some() {
            break;
        }
        next += Duration::from_millis(50);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // the checks' pace, not synchronisation
        }
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    health_ms.sort_by(f64::total_cmp);
    Ok((health_ms, reads.load(Ordering::Relaxed) as f64 / secs))
}
