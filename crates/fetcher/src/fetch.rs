//! One `fetch_all` call: per URI, resolve the destination, get the bytes (directly or through
//! the cache), then make executable or extract.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use crate::cache::{Cache, Lookup};
use crate::download;
use crate::extract::{self, ArchiveKind};
use crate::tree::{self, EntryId};
use crate::uri::{self, Source};
use crate::{FetchError, FetchUri, FetchUser, FetcherConfig};

pub(crate) struct Run<'a> {
    sandbox: &'a Path,
    config: &'a FetcherConfig,
    log: &'a mut (dyn Write + Send),
    /// Built on the first HTTP(S) URI, then shared by the rest.
    client: download::LazyClient,
    /// The task's user: local files are read with its rights, and its
    /// cache entries are its own.
    user: Option<FetchUser>,
}

/// The cache entry a fetch was copied from: what its extraction may copy instead
/// (`tree.rs`).
struct Cached {
    cache: Cache,
    key: String,
    entry: EntryId,
}

/// Why the cached path did not deliver: the fetch itself failed (final), or the cache is in
/// trouble (fall back to a direct download).
enum CacheFailure {
    Fetch(FetchError),
    Cache(io::Error),
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        sandbox: &'a Path,
        config: &'a FetcherConfig,
        user: Option<FetchUser>,
        log: &'a mut (dyn Write + Send),
    ) -> Self {
        Self {
            sandbox,
            config,
            log,
            client: download::LazyClient::default(),
            user,
        }
    }

    /// Writes one progress line to the task's log; a broken log never fails a fetch.
    pub(crate) fn log(&mut self, line: fmt::Arguments<'_>) {
        let _ = writeln!(self.log, "{line}");
    }

    pub(crate) async fn fetch_one(&mut self, fetch: &FetchUri) -> Result<PathBuf, FetchError> {
        let uri = fetch.value.as_str();
        let source = uri::parse(uri, self.config.frameworks_home.as_deref())?;
        let dest = self.destination(fetch, &source)?;
        self.log(format_args!("fetching {uri} into {}", dest.display()));
        tracing::info!(%uri, dest = %dest.display(), "fetching");
        let started = Instant::now();

        let cache = match (&self.config.cache_dir, fetch.cache) {
            (Some(dir), true) => Some(Cache::new(dir)),
            _ => None,
        };
        let mut fetched = false;
        let mut cached = None;
        if let Some(cache) = cache {
            match self.via_cache(&cache, uri, &source, &dest).await {
                Ok(entry) => {
                    fetched = true;
                    cached = entry;
                }
                Err(CacheFailure::Fetch(e)) => return Err(e),
                Err(CacheFailure::Cache(e)) => {
                    self.log(format_args!(
                        "fetcher cache unusable ({e}), fetching {uri} directly"
                    ));
                    tracing::warn!(%uri, error = %e, "fetcher cache unusable, fetching directly");
                }
            }
        }
        if !fetched {
            let tmp = sandbox_tmp(&dest);
            let result = download::transfer(
                uri,
                &source,
                &tmp,
                &mut self.client,
                self.config,
                self.user,
                false,
            )
            .await;
            let bytes = match result {
                Ok(bytes) => bytes,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            fs::rename(&tmp, &dest).map_err(|e| FetchError::io(uri, "renaming into", &dest, e))?;
            self.log(format_args!(
                "downloaded {bytes} bytes in {} ms",
                started.elapsed().as_millis()
            ));
        }
        self.finish(fetch, &dest, cached).await?;
        Ok(dest)
    }

    /// The file's path in the sandbox, with its parent directories created and checked to be
    /// inside the sandbox (a symlink extracted by an earlier URI must not redirect it).
    fn destination(&self, fetch: &FetchUri, source: &Source) -> Result<PathBuf, FetchError> {
        let uri = fetch.value.as_str();
        let dest = match &fetch.output_file {
            Some(out) => uri::output_path(uri, self.sandbox, out)?,
            None => self.sandbox.join(uri::basename(uri, source)?),
        };
        create_parents_inside(self.sandbox, &dest).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput => FetchError::invalid(uri, e.to_string()),
            _ => FetchError::io(uri, "creating the parent of", &dest, e),
        })?;
        Ok(dest)
    }

    /// Fetches `uri` into `dest` through `cache`; the entry it came from, unless it was too
    /// large to cache.
    async fn via_cache(
        &mut self,
        cache: &Cache,
        uri: &str,
        source: &Source,
        dest: &Path,
    ) -> Result<Option<Cached>, CacheFailure> {
        // Keyed by user too: an entry one user's rights produced (a local
        // file only it may read) is never handed to another.
        let key = Cache::key_for(uri, self.user);
        let started = Instant::now();
        let (c, k, u) = (cache.clone(), key.clone(), uri.to_owned());
        // Blocks while someone else downloads this URI; then it is a hit, or ours to download.
        let lock = match blocking(move || c.lookup(&k, &u))
            .await
            .map_err(CacheFailure::Cache)?
        {
            Lookup::Hit(hit) => {
                let entry = EntryId::of(uri, &hit.file).map_err(CacheFailure::Cache)?;
                copy_into(hit.file, dest)
                    .await
                    .map_err(CacheFailure::Cache)?;
                self.log(format_args!(
                    "cache hit for {uri}: copied {} bytes in {} ms",
                    hit.len,
                    started.elapsed().as_millis()
                ));
                return Ok(Some(Cached {
                    cache: cache.clone(),
                    key,
                    entry,
                }));
            }
            Lookup::Miss(lock) => lock,
        };

        let tmp = cache.tmp_path(&key);
        let bytes = match download::transfer(
            uri,
            source,
            &tmp,
            &mut self.client,
            self.config,
            self.user,
            true,
        )
        .await
        {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(CacheFailure::Fetch(e));
            }
        };
        self.log(format_args!(
            "downloaded {bytes} bytes in {} ms",
            started.elapsed().as_millis()
        ));
        if bytes > self.config.cache_max_bytes {
            // Bigger than the whole cache: hand it to the sandbox, do not cache it.
            drop(lock);
            self.log(format_args!(
                "{uri} is larger than the fetcher cache ({} bytes), not caching it",
                self.config.cache_max_bytes
            ));
            return hand_over(uri, &tmp, dest).await.map(|()| None);
        }
        let (c, k, u, t) = (cache.clone(), key.clone(), uri.to_owned(), tmp.clone());
        let installed = blocking(move || c.install(&k, &u, &t, bytes)).await;
        drop(lock);
        let hit = match installed {
            Ok(hit) => hit,
            Err(e) => {
                // The download is good; only the cache failed. Use it rather than download again.
                tracing::warn!(%uri, error = %e, "cannot install fetcher cache entry");
                return hand_over(uri, &tmp, dest).await.map(|()| None);
            }
        };
        let entry = EntryId::of(uri, &hit.file).map_err(CacheFailure::Cache)?;
        let (c, k, max) = (cache.clone(), key.clone(), self.config.cache_max_bytes);
        match blocking(move || c.evict(max, &k)).await {
            Ok(0) => {}
            Ok(n) => self.log(format_args!("evicted {n} fetcher cache entries")),
            Err(e) => tracing::warn!(error = %e, "fetcher cache eviction failed"),
        }
        copy_into(hit.file, dest)
            .await
            .map_err(CacheFailure::Cache)?;
        Ok(Some(Cached {
            cache: cache.clone(),
            key,
            entry,
        }))
    }

    /// Copies the tree of `cached`'s entry (made now if it was not) into the sandbox; the
    /// number of entries written.
    async fn copy_cached_tree(&mut self, cached: Cached, kind: ArchiveKind) -> io::Result<usize> {
        let sandbox = self.sandbox.to_owned();
        let (max_extract, max_cache) = (self.config.max_extract_bytes, self.config.cache_max_bytes);
        blocking(move || {
            let Cached { cache, key, entry } = cached;
            let tree = cache.tree(&key, &entry, kind, max_extract, max_cache)?;
            if tree.made {
                match cache.evict(max_cache, &key) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(evicted = n, "fetcher cache entries evicted"),
                    Err(e) => tracing::warn!(error = %e, "fetcher cache eviction failed"),
                }
            }
            tree::copy_tree(&tree.dir, &sandbox)
        })
        .await
    }

    /// Makes the file executable, or extracts it when it is an archive and extraction is on:
    /// from the tree of its cache entry when it came from one and the tree can be had.
    async fn finish(
        &mut self,
        fetch: &FetchUri,
        dest: &Path,
        cached: Option<Cached>,
    ) -> Result<(), FetchError> {
        let uri = fetch.value.as_str();
        if fetch.executable {
            fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
                .map_err(|e| FetchError::io(uri, "making executable", dest, e))?;
            return Ok(());
        }
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(kind) = ArchiveKind::detect(&name).filter(|_| fetch.extract) else {
            return Ok(());
        };
        let started = Instant::now();
        if let Some(cached) = cached.filter(|_| tree::has_tree(kind)) {
            match self.copy_cached_tree(cached, kind).await {
                Ok(count) => {
                    self.log(format_args!(
                        "extracted {count} entries into {} from the agent's extracted copy of {uri} in {} ms",
                        self.sandbox.display(),
                        started.elapsed().as_millis()
                    ));
                    return Ok(());
                }
                Err(e) => {
                    self.log(format_args!(
                        "the agent's extracted copy of {uri} cannot be used ({e}); extracting it here"
                    ));
                    tracing::info!(%uri, error = %e, "extracting a cached archive into the sandbox");
                }
            }
        }
        let (archive, dir) = (dest.to_owned(), self.sandbox.to_owned());
        let max_bytes = self.config.max_extract_bytes;
        let count =
            tokio::task::spawn_blocking(move || extract::extract(&archive, &dir, kind, max_bytes))
                .await
                .map_err(|e| format!("extraction task failed: {e}"))
                .and_then(|r| r)
                .map_err(|reason| FetchError::Extract {
                    uri: uri.to_owned(),
                    path: dest.to_owned(),
                    reason,
                })?;
        self.log(format_args!(
            "extracted {count} entries into {} in {} ms",
            self.sandbox.display(),
            started.elapsed().as_millis()
        ));
        Ok(())
    }
}

/// Creates the directories between `sandbox` and `dest` one by one, refusing to pass through a
/// symlink (an archive fetched earlier may have put one there), so nothing is created outside.
fn create_parents_inside(sandbox: &Path, dest: &Path) -> io::Result<()> {
    let rel = dest
        .strip_prefix(sandbox)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "destination outside sandbox"))?;
    fs::metadata(sandbox)?;
    let mut at = sandbox.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for part in parents.iter().take(parents.len().saturating_sub(1)) {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is a symlink", at.display()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A temporary name beside `dest`, renamed over it when complete (rename replaces a symlink
/// rather than following it).
fn sandbox_tmp(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.agora-fetch-tmp"))
}

/// Copies an open cache entry into the sandbox under a temporary name, then renames it.
async fn copy_into(mut from: File, dest: &Path) -> io::Result<()> {
    let dest = dest.to_owned();
    blocking(move || {
        let tmp = sandbox_tmp(&dest);
        let copied = File::create(&tmp)
            .and_then(|mut to| io::copy(&mut from, &mut to))
            .and_then(|_| fs::rename(&tmp, &dest));
        if copied.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        copied
    })
    .await
}

/// Moves a finished download that will not be cached from the cache's `tmp/` into the sandbox.
async fn hand_over(uri: &str, tmp: &Path, dest: &Path) -> Result<(), CacheFailure> {
    let (from, to) = (tmp.to_owned(), dest.to_owned());
    let moved = blocking(move || move_file(&from, &to)).await;
    let _ = fs::remove_file(tmp);
    moved.map_err(|e| CacheFailure::Fetch(FetchError::io(uri, "moving to", dest, e)))
}

/// Renames `from` to `to`, copying when they are on different filesystems.
fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let tmp = sandbox_tmp(to);
            let copied = fs::copy(from, &tmp).and_then(|_| fs::rename(&tmp, to));
            if copied.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            copied
        }
        Err(e) => Err(e),
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}
