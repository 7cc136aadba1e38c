//! Fetcher benchmark: a tar.gz served on 127.0.0.1, fetched cold (download + extract), from the
//! cache, and by 100 concurrent fetchers of the same cached URI (one download expected).
//!
//! Prints `BENCH key value` lines. Smoke mode (a 2 MB archive) unless `--bench` is in argv,
//! which `cargo bench -p agora-fetcher --bench fetch` passes (50 MB); `cargo test -p
//! agora-fetcher --bench fetch` runs the smoke mode.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use agora_fetcher::{FetchUri, FetcherConfig, fetch_all};
use support::{Entry, Server};

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full { 50 << 20 } else { 2 << 20 };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(size))
}

async fn run(size: usize) -> anyhow::Result<()> {
    // Mostly noise (incompressible, like jars) plus some zeros: a tar.gz of about `size` bytes.
    let noise = support::noise(size, 11);
    let zeros = vec![0u8; size / 8];
    let tar = support::tar(&[
        Entry {
            path: "pkg/lib/blob.jar",
            mode: 0o644,
            data: &noise,
        },
        Entry {
            path: "pkg/lib/zeros.dat",
            mode: 0o644,
            data: &zeros,
        },
        Entry {
            path: "pkg/bin/run.sh",
            mode: 0o755,
            data: b"#!/bin/sh\necho ok\n",
        },
    ]);
    let archive = support::gzip(&tar);
    println!("BENCH archive_bytes {}", archive.len());
    println!("BENCH unpacked_bytes {}", tar.len());

    let server = Server::start().await;
    server.add("pkg.tar.gz", archive);
    let cache = tempfile::tempdir()?;
    let root = tempfile::tempdir()?;
    let config = FetcherConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..FetcherConfig::default()
    };
    let uri = FetchUri {
        cache: true,
        ..FetchUri::new(server.url("pkg.tar.gz"))
    };
    let mut log = Vec::new();

    // Direct (uncached) fetch + extract.
    let sandbox = root.path().join("direct");
    std::fs::create_dir(&sandbox)?;
    let started = Instant::now();
    let direct = FetchUri {
        cache: false,
        ..uri.clone()
    };
    fetch_all(&[direct], &sandbox, &config, &mut log).await?;
    println!(
        "BENCH direct_fetch_extract_ms {}",
        started.elapsed().as_millis()
    );

    // Cold through the cache: download into the cache, copy, extract.
    let sandbox = root.path().join("cold");
    std::fs::create_dir(&sandbox)?;
    let started = Instant::now();
    fetch_all(std::slice::from_ref(&uri), &sandbox, &config, &mut log).await?;
    println!(
        "BENCH cold_fetch_extract_ms {}",
        started.elapsed().as_millis()
    );

    // Warm: a cache hit, the archive copied into the sandbox, and its tree (extracted once
    // into the cache by the first cached fetch) copied beside it; each into a fresh sandbox,
    // removed after.
    let runs = std::env::var("AGORA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if size > 8 << 20 { 30 } else { 3 });
    let mut warm = Vec::with_capacity(runs);
    for run in 0..runs {
        let sandbox = root.path().join(format!("warm{run}"));
        std::fs::create_dir(&sandbox)?;
        let started = Instant::now();
        fetch_all(std::slice::from_ref(&uri), &sandbox, &config, &mut log).await?;
        warm.push(started.elapsed().as_secs_f64() * 1e3);
        std::fs::remove_dir_all(&sandbox)?;
    }
    warm.sort_by(f64::total_cmp);
    let at = |p: f64| warm[((warm.len() - 1) as f64 * p).round() as usize];
    println!(
        "BENCH cached_fetch_extract_ms p50={:.1} p99={:.1} runs={runs}",
        at(0.5),
        at(0.99)
    );

    for dir in ["direct", "cold"] {
        std::fs::remove_dir_all(root.path().join(dir))?;
    }

    // 100 concurrent fetchers of a URI not yet cached: one download, 99 waits then hits.
    server.add("pkg2.tar.gz", support::gzip(&tar));
    let uri2 = FetchUri {
        cache: true,
        ..FetchUri::new(server.url("pkg2.tar.gz"))
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let sandbox = root.path().join(format!("c{i}"));
        std::fs::create_dir(&sandbox)?;
        let (uri, config) = (uri2.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::new();
            let done = fetch_all(&[uri], &sandbox, &config, &mut log)
                .await
                .map(|_| started.elapsed().as_millis());
            // 100 full sandboxes would need ~11 GB of disk at once; each goes when done.
            let _ = std::fs::remove_dir_all(&sandbox);
            done
        }));
    }
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await??);
    }
    done.sort_unstable();
    println!("BENCH concurrent100_first_done_ms {}", done[0]);
    println!(
        "BENCH concurrent100_median_done_ms {}",
        done[done.len() / 2]
    );
    println!(
        "BENCH concurrent100_wall_ms {}",
        started.elapsed().as_millis()
    );
    let downloads = server.count("pkg2.tar.gz");
    println!("BENCH concurrent100_downloads {downloads}");
    anyhow::ensure!(downloads == 1, "expected one download, saw {downloads}");

    // The same 100 fetchers again, cached and without extraction: the cost of serving the
    // cache alone (a lock, an open, a copy per fetcher).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let sandbox = root.path().join(format!("n{i}"));
        std::fs::create_dir(&sandbox)?;
        let uri = FetchUri {
            extract: false,
            ..uri2.clone()
        };
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::new();
            let done = fetch_all(&[uri], &sandbox, &config, &mut log).await;
            let _ = std::fs::remove_dir_all(&sandbox);
            done
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "BENCH concurrent100_cached_no_extract_wall_ms {}",
        started.elapsed().as_millis()
    );
    println!(
        "BENCH concurrent100_downloads_total {}",
        server.count("pkg2.tar.gz")
    );
    Ok(())
}
