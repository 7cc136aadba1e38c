//! Fetching a task's URIs into its sandbox, as Mesos' fetcher does (`docs/fetcher.md`).
//!
//! The per-task executor calls [`fetch_all`] before it starts the task. URIs are fetched in
//! order: `http(s)://` downloads, `file://` and plain paths are copied (relative ones resolved
//! against the frameworks home). A file lands under its basename or `output_file`, then is made
//! executable, or extracted into the sandbox when it is an archive. With a cache directory,
//! URIs marked `cache` are downloaded once per agent however many executors ask at once (see
//! `cache.rs`), a cached archive is extracted once per agent and its tree copied into each
//! sandbox (`tree.rs`), and any cache trouble falls back to a direct download.

mod as_user;
mod cache;
mod download;
mod error;
mod extract;
mod fetch;
mod tree;
mod uri;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use as_user::FetchUser;
pub use cache::CacheStats;
pub use error::FetchError;

/// One URI to fetch, as in Mesos' `CommandInfo.URI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUri {
    /// `http://`, `https://`, `file://`, or a plain path.
    pub value: String,
    /// Make the file executable (0755) and do not extract it.
    pub executable: bool,
    /// Extract archives into the sandbox (Mesos' default: true).
    pub extract: bool,
    /// Go through the agent's fetcher cache, when it has one.
    pub cache: bool,
    /// The name to give the file in the sandbox: a relative path without `..`.
    pub output_file: Option<String>,
}

impl FetchUri {
    /// A URI with Mesos' defaults: extracted, not executable, not cached.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            executable: false,
            extract: true,
            cache: false,
            output_file: None,
        }
    }
}

/// How the agent fetches (its `--fetcher-*` and `--frameworks-home` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherConfig {
    /// Where cached downloads live; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// The cache's size bound; least recently used entries are evicted past it.
    pub cache_max_bytes: u64,
    /// A download that receives no byte for this long fails.
    pub stall_timeout: Duration,
    /// Refuse downloads larger than this (by `Content-Length` or by counting).
    pub max_download_bytes: Option<u64>,
    /// Relative plain paths resolve here; without it they are an error.
    pub frameworks_home: Option<PathBuf>,
    /// An archive whose extraction would write more than this fails, and what it wrote is
    /// removed: a small compressed bomb cannot fill the agent's disk.
    pub max_extract_bytes: u64,
}

/// Mesos' `--fetcher_cache_size` default: 2 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// The default extraction cap: 10 GiB, far above any sane package (a JVM distribution is a few
/// hundred MiB) and far below what fills a typical agent disk.
pub const DEFAULT_MAX_EXTRACT_BYTES: u64 = 10 << 30;

/// Mesos' `--fetcher_stall_timeout` default: 60 s.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for FetcherConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_download_bytes: None,
            frameworks_home: None,
            max_extract_bytes: DEFAULT_MAX_EXTRACT_BYTES,
        }
    }
}

/// Fetches `uris` in order into `sandbox` (which must exist); returns where each one landed.
///
/// Progress and errors are written to `log` (the task's `stderr`). The first failure stops the
/// fetch; its message names the URI and the cause.
pub async fn fetch_all(
    uris: &[FetchUri],
    sandbox: &Path,
    config: &FetcherConfig,
    log: &mut (dyn std::io::Write + Send),
) -> Result<Vec<PathBuf>, FetchError> {
    fetch_all_as(uris, sandbox, config, None, log).await
}

/// [`fetch_all`] for a task that runs as `user`: local files are read with
/// that user's rights (a file the user may not read fails to fetch), and
/// the cache keeps that user's entries apart from everyone else's.
/// Whatever the user, fetched files and extracted archives never keep
/// setuid or setgid bits.
pub async fn fetch_all_as(
    uris: &[FetchUri],
    sandbox: &Path,
    config: &FetcherConfig,
    user: Option<FetchUser>,
    log: &mut (dyn std::io::Write + Send),
) -> Result<Vec<PathBuf>, FetchError> {
    let mut run = fetch::Run::new(sandbox, config, user, log);
    let mut landed = Vec::with_capacity(uris.len());
    for uri in uris {
        match run.fetch_one(uri).await {
            Ok(path) => landed.push(path),
            Err(e) => {
                run.log(format_args!("{e}"));
                tracing::warn!(uri = %uri.value, error = %e, "fetch failed");
                return Err(e);
            }
        }
    }
    Ok(landed)
}

/// The number and total size of complete cache entries (zero without a cache).
pub fn cache_stats(config: &FetcherConfig) -> CacheStats {
    match &config.cache_dir {
        Some(dir) => cache::Cache::new(dir).stats(),
        None => CacheStats::default(),
    }
}
