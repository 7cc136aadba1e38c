//! Fetchers in separate processes share one download through the cache's
//! cross-process lock: four processes fetch the same cached URI from a slow
//! server at once, each gets the file, and the server sees one request.
//!
//! A test without libtest's harness (`harness = false` in Cargo.toml): run
//! plainly, `main` is the test and starts this same binary four times as the
//! fetchers; started with `AGORA_FETCHER_TEST_CHILD` in the environment, it
//! is one of those fetchers and nothing else. No libtest filter can make it
//! pass without fetching.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agora_fetcher::{FetchUri, FetcherConfig, fetch_all};
use support::Server;

/// The child's work: `<uri>\n<cache dir>\n<sandbox>`.
const CHILD_ENV: &str = "AGORA_FETCHER_TEST_CHILD";
const FETCHERS: usize = 4;
const SIZE: usize = 64 * 1024;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match std::env::var(CHILD_ENV) {
        Ok(spec) => runtime.block_on(fetch_as_child(&spec)),
        Err(_) => {
            runtime.block_on(fetchers_in_other_processes_share_one_download());
            println!("test fetchers_in_other_processes_share_one_download ... ok");
        }
    }
}

/// One fetcher process: fetches the URI through the cache into the sandbox;
/// a failure is a panic, so a non-zero exit the parent reports.
async fn fetch_as_child(spec: &str) {
    let parts: Vec<&str> = spec.split('\n').collect();
    let [uri, cache, sandbox] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec:?}");
    };
    let config = FetcherConfig {
        cache_dir: Some(cache.into()),
        ..FetcherConfig::default()
    };
    let uri = FetchUri {
        cache: true,
        ..FetchUri::new(uri)
    };
    let mut log = Vec::new();
    let result = fetch_all(&[uri], Path::new(sandbox), &config, &mut log).await;
    if let Err(e) = result {
        panic!("{e}\n{}", String::from_utf8_lossy(&log));
    }
}

async fn fetchers_in_other_processes_share_one_download() {
    let server = Server::start().await;
    server.add("shared.bin", support::noise(SIZE, 13));
    let cache = tempfile::tempdir().expect("cache dir");
    let root = tempfile::tempdir().expect("sandboxes");
    let exe = std::env::current_exe().expect("test binary");
    let mut children = Vec::new();
    for i in 0..FETCHERS {
        let sandbox = root.path().join(format!("p{i}"));
        std::fs::create_dir(&sandbox).expect("sandbox");
        let spec = format!(
            "{}\n{}\n{}",
            server.url_at("slow", "shared.bin"),
            cache.path().display(),
            sandbox.display()
        );
        let child = tokio::process::Command::new(&exe)
            .env(CHILD_ENV, spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn a fetcher process");
        children.push((sandbox, child));
    }
    for (sandbox, child) in children {
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("fetcher process finished in time")
            .expect("fetcher process output");
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            std::fs::read(sandbox.join("shared.bin"))
                .expect("fetched")
                .len(),
            SIZE
        );
    }
    assert_eq!(
        server.count_path("/slow/shared.bin"),
        1,
        "one download for {FETCHERS} processes"
    );
}
