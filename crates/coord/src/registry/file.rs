//! The file registry store: a snapshot and an append-only log under one
//! directory, with group commit and compaction.
//!
//! Files in the store's directory:
//! - `registry.bin`, the snapshot: every entry as of some generation `G`
//!   (format 2), or a format-1 registry an earlier release wrote (read as
//!   generation 0, and replaced by a format-2 snapshot before the first
//!   write, so that an older master refuses the directory rather than miss
//!   the log);
//! - `registry.log`, the log: a header naming the generation it continues,
//!   then one checksummed record per change (key, version, value or
//!   tombstone), appended in the order the changes were made;
//! - `*.tmp`, files being written before they are renamed into place
//!   (ignored when loading, overwritten later).
//!
//! *Invariants:*
//! - A write resolves only once its record is durable (the log fsynced
//!   after it was appended). Writes that arrive while an fsync is in flight
//!   are appended at once and share the next one (group commit).
//! - Writes are serialized: a compare-and-set is decided against the
//!   in-memory map, which holds every appended record, under the same lock
//!   as the append, so versions follow in the log as in the map.
//! - Only a log whose generation equals the snapshot's is replayed. A log of
//!   an older generation is what a crash between a compaction's two renames
//!   leaves: the new snapshot already holds all of it, so it is ignored (and
//!   replaced by the next write). A log newer than the snapshot, a damaged
//!   snapshot or a damaged record with whole records after it is
//!   [`RegistryError::Corrupt`], never read as less than was written.
//! - A torn last record (a crash mid-append: it was never acknowledged) is
//!   cut away at load, with a warning.
//! - Compaction, when the log has outgrown `max(4 MiB, 2 x the live
//!   entries)`: fsync the log (everything appended is durable from here
//!   on, whatever happens next), write the snapshot of generation `G + 1`
//!   (temporary file, fsync, rename, directory fsync), then a new empty log
//!   of `G + 1` the same way. A crash at any point leaves `(G, log G)`,
//!   `(G + 1, stale log G)` or `(G + 1, log G + 1)`, each loading as
//!   everything acknowledged. Until the new log is in place nothing is
//!   appended.
//! - An fsync that fails leaves unknown what reached the disk: the store
//!   then refuses every further call with [`RegistryError::Unavailable`]
//!   (the master steps down and a restart reloads from disk). Other I/O
//!   errors fail only the call that met them; a record whose append failed
//!   is cut back off at once.
//!
//! One process at a time may use a directory.

mod format;

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};

use super::memory::{Map, check_delete, check_put, entries};
use super::{RegistryEntry, RegistryError, RegistryStore, Version, validate, validate_key};

/// Name of the snapshot file inside the store's directory (also the whole
/// registry of earlier releases).
pub const REGISTRY_FILE: &str = "registry.bin";
/// Name of the log file inside the store's directory.
pub const REGISTRY_LOG: &str = "registry.log";
/// Temporary files a snapshot and a new log are written to.
const SNAPSHOT_TEMP: &str = "registry.bin.tmp";
const LOG_TEMP: &str = "registry.log.tmp";
/// The log is not compacted below this size.
const COMPACT_MIN: u64 = 4 << 20;

/// A registry kept in a directory (`--work-dir`'s `registry/`), for masters
/// without ZooKeeper. See the module documentation for the files and the
/// rules they keep. Clones share the same store.
#[derive(Debug, Clone)]
pub struct FileRegistryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    compact_min: u64,
    /// Held by the blocking closures that read and write the files, and
    /// briefly by waiters; never across an `.await`.
    state: Mutex<State>,
    /// Bumped after every fsync of the log (whatever its outcome), so that
    /// writers waiting for durability look again.
    synced: watch::Sender<u64>,
    /// One operation at a time gets a blocking thread; the others wait for
    /// their turn here, asynchronously. They would be serialized by `state`
    /// anyway, and each waiting for it on a blocking thread of its own made
    /// a burst of writes (10,000 agents registering) a burst of threads:
    /// about 60 at the master, kept alive and each with its own allocator
    /// arena.
    turn: Arc<Semaphore>,
    /// Operations running on blocking threads now, and the most at once
    /// (for the test of `turn`).
    #[cfg(test)]
    running: std::sync::atomic::AtomicUsize,
    #[cfg(test)]
    most_running: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    /// What the files hold (plus appends not yet durable); `None` until
    /// loaded, or after an append could not be cut back.
    books: Option<Books>,
    /// Records appended since the store was made.
    appended: u64,
    /// Of those, how many are known durable.
    durable: u64,
    /// Whether an fsync task is running.
    syncing: bool,
    /// Set for good when an fsync failed.
    failed: Option<String>,
    /// Fsyncs of the log made for writers (for tests of group commit).
    #[cfg(test)]
    syncs: u64,
}

#[derive(Debug)]
struct Books {
    map: Map,
    /// The snapshot's generation; 0: none, or one in format 1.
    generation: u64,
    /// The log of `generation` appends go to; `None`: make one first.
    /// *Invariant:* replaced or dropped only when every appended record is
    /// durable, so that an fsync task never misses one.
    log: Option<Log>,
    /// What the live entries would take in a fresh log.
    live_bytes: u64,
    /// After a failed compaction, not to try again before this log size.
    retry_compaction_at: u64,
}

#[derive(Debug)]
struct Log {
    file: Arc<File>,
    /// Bytes in the file, all of them whole records.
    len: u64,
}

impl FileRegistryStore {
    /// A store in `dir`; nothing is read or created until first used (the
    /// directory is created by the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_compact_min(dir.into(), COMPACT_MIN)
    }

    fn with_compact_min(dir: PathBuf, compact_min: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                compact_min,
                state: Mutex::new(State::default()),
                synced: watch::Sender::new(0),
                turn: Arc::new(Semaphore::new(1)),
                #[cfg(test)]
                running: Default::default(),
                #[cfg(test)]
                most_running: Default::default(),
            }),
        }
    }

    /// The snapshot file's path.
    pub fn path(&self) -> PathBuf {
        self.inner.dir.join(REGISTRY_FILE)
    }

    /// The log file's path.
    pub fn log_path(&self) -> PathBuf {
        self.inner.dir.join(REGISTRY_LOG)
    }

    /// Runs `op` on a blocking thread under the store's lock (it runs to
    /// the end even if the caller goes away, so a record is never half
    /// accounted for), then waits until everything `op` saw is durable:
    /// a result is never based on a change that may yet be lost.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner, &mut State) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let inner = Arc::clone(&self.inner);
        let turn = Arc::clone(&inner.turn).acquire_owned().await.map_err(|_| {
            RegistryError::Unavailable {
                reason: "the registry file store was closed".to_owned(),
            }
        })?;
        let (result, seen) = tokio::task::spawn_blocking(move || {
            // Held until the operation ends, whoever waits for it.
            let _turn = turn;
            #[cfg(test)]
            let _running = inner.count_running();
            let mut state = inner.lock();
            if let Some(reason) = &state.failed {
                return (Err(failed(reason)), state.appended);
            }
            let result = op(&inner, &mut state);
            (result, state.appended)
        })
        .await
        .map_err(|error| RegistryError::Unavailable {
            reason: format!("registry file task failed: {error}"),
        })?;
        self.wait_durable(seen).await?;
        result
    }

    /// The most operations that ran on blocking threads at once.
    #[cfg(test)]
    fn most_running(&self) -> usize {
        self.inner
            .most_running
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the first `seq` appended records are durable, starting
    /// an fsync if none is running; records appended meanwhile ride along.
    async fn wait_durable(&self, seq: u64) -> Result<(), RegistryError> {
        loop {
            let mut synced = {
                let mut state = self.inner.lock();
                if state.durable >= seq {
                    return Ok(());
                }
                if let Some(reason) = &state.failed {
                    return Err(failed(reason));
                }
                if !state.syncing {
                    state.syncing = true;
                    let inner = Arc::clone(&self.inner);
                    // Detached: it finishes and reports even if this caller
                    // goes away.
                    drop(tokio::task::spawn_blocking(move || inner.sync_log()));
                }
                // Subscribed under the lock: an fsync that ends after the
                // check above is seen.
                self.inner.synced.subscribe()
            };
            // The sender lives in `inner`, which `self` holds: never closed.
            let _ = synced.changed().await;
        }
    }

    /// Appends two puts without waiting, then waits once (for the test of
    /// group commit).
    #[cfg(test)]
    async fn put_pair(&self, a: (&str, Vec<u8>), b: (&str, Vec<u8>)) -> Result<(), RegistryError> {
        let (a_key, b_key) = (a.0.to_owned(), b.0.to_owned());
        let inner = Arc::clone(&self.inner);
        let seen = tokio::task::spawn_blocking(move || {
            let mut state = inner.lock();
            inner.put(&mut state, &a_key, a.1, None)?;
            inner.put(&mut state, &b_key, b.1, None)?;
            Ok::<_, RegistryError>(state.appended)
        })
        .await
        .expect("task")?;
        self.wait_durable(seen).await
    }

    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.inner.lock().syncs
    }
}

impl RegistryStore for FileRegistryStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<RegistryEntry>, RegistryError>> {
        Box::pin(self.run(|inner, state| {
            let books = inner.books(state)?;
            Ok(entries(&books.map))
        }))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, RegistryError>> {
        let key = key.to_owned();
        Box::pin(self.run(move |inner, state| inner.put(state, &key, value, expected)))
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        let key = key.to_owned();
        Box::pin(self.run(move |inner, state| inner.delete(state, &key, expected)))
    }
}

/// Counts an operation running on a blocking thread while it lives.
#[cfg(test)]
struct Running<'a>(&'a std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Inner {
    #[cfg(test)]
    fn count_running(&self) -> Running<'_> {
        use std::sync::atomic::Ordering;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        Running(&self.running)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The books, read from the files if not yet.
    fn books<'s>(&self, state: &'s mut State) -> Result<&'s mut Books, RegistryError> {
        let books = match state.books.take() {
            Some(books) => books,
            None => self.read_books()?,
        };
        Ok(state.books.insert(books))
    }

    /// A compare-and-set put: decided against the map, appended, then
    /// applied to the map.
    fn put(
        &self,
        state: &mut State,
        key: &str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> Result<Version, RegistryError> {
        validate(key, &value)?;
        let books = self.books(state)?;
        let next = check_put(&books.map, key, expected)?;
        let mut frame = Vec::new();
        format::encode_put(key, next, &value, &mut frame);
        self.append(state, &frame)?;
        let books = self.books(state)?;
        books.live_bytes += format::put_frame_len(key, &value);
        if let Some((_, old)) = books.map.insert(key.to_owned(), (next, value)) {
            books.live_bytes = books
                .live_bytes
                .saturating_sub(format::put_frame_len(key, &old));
        }
        self.maybe_compact(state);
        Ok(next)
    }

    /// A compare-and-set delete; deleting a missing key appends nothing.
    fn delete(
        &self,
        state: &mut State,
        key: &str,
        expected: Option<Version>,
    ) -> Result<(), RegistryError> {
        validate_key(key)?;
        let books = self.books(state)?;
        let Some(version) = check_delete(&books.map, key, expected)? else {
            return Ok(());
        };
        let mut frame = Vec::new();
        format::encode_delete(key, version, &mut frame);
        self.append(state, &frame)?;
        let books = self.books(state)?;
        if let Some((_, old)) = books.map.remove(key) {
            books.live_bytes = books
                .live_bytes
                .saturating_sub(format::put_frame_len(key, &old));
        }
        self.maybe_compact(state);
        Ok(())
    }

    /// Appends `frame` to the log (not yet durable: see `wait_durable`).
    /// On error nothing was appended.
    fn append(&self, state: &mut State, frame: &[u8]) -> Result<(), RegistryError> {
        let books = self.books(state)?;
        if books.generation == 0 {
            tracing::info!(
                dir = %self.dir.display(),
                entries = books.map.len(),
                "writing the registry's first snapshot in the current format"
            );
            // No snapshot of this format yet (a new directory, or an older
            // release's registry): write one, so that the log always
            // continues a snapshot an older master cannot misread.
            self.compact(state)?;
        }
        let books = self.books(state)?;
        let log = match &mut books.log {
            Some(log) => log,
            None => {
                books.retry_compaction_at = 0;
                books.log.insert(create_log(&self.dir, books.generation)?)
            }
        };
        let path = self.path(REGISTRY_LOG);
        if let Err(error) = (&*log.file).write_all(frame) {
            // Cut a partial record back off, so that the next append does
            // not land behind it (which would read as a damaged record).
            let cut = log.file.set_len(log.len);
            if let Err(cut) = cut {
                tracing::warn!(
                    file = %path.display(),
                    error = %cut,
                    "cannot cut a failed registry append back off; reloading before the next write"
                );
                // Reloading cuts it off as a torn tail; first make what
                // was appended before it durable (see `Books::log`).
                self.sync_now(state)?;
                state.books = None;
            }
            return Err(io_error(&path)(error));
        }
        log.len += frame.len() as u64;
        state.appended += 1;
        Ok(())
    }

    /// Compacts once the log has outgrown what it holds. A failure is only
    /// logged: the record that triggered it is in the log already.
    fn maybe_compact(&self, state: &mut State) {
        let Some(books) = &mut state.books else {
            return;
        };
        let Some(log) = &books.log else {
            return;
        };
        let threshold = self
            .compact_min
            .max(books.live_bytes.saturating_mul(2))
            .max(books.retry_compaction_at);
        if log.len <= threshold {
            return;
        }
        let log_len = log.len;
        if let Err(error) = self.compact(state) {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %error,
                "registry compaction failed; the log keeps growing until it succeeds"
            );
            if let Some(books) = &mut state.books
                && books.log.is_some()
            {
                books.retry_compaction_at = log_len.saturating_add(self.compact_min);
            }
        }
    }

    /// Writes the snapshot of the next generation and starts its empty log
    /// (see the module documentation for the order and why it is safe).
    fn compact(&self, state: &mut State) -> Result<(), RegistryError> {
        // Everything appended is durable from here on, so that what
        // follows never decides the fate of an acknowledged write.
        self.sync_now(state)?;
        let books = self.books(state)?;
        let generation = books.generation + 1;
        let snapshot = format::encode_snapshot(generation, &books.map);
        write_renamed(&self.dir, SNAPSHOT_TEMP, REGISTRY_FILE, &snapshot).map_err(|failure| {
            match failure {
                Failure::BeforeRename(error) => error,
                Failure::Sync(error) => self.fail(state, error),
            }
        })?;
        // The old log is stale from here on: nothing more goes to it.
        let books = self.books(state)?;
        books.generation = generation;
        books.log = None;
        books.retry_compaction_at = 0;
        let log = create_log(&self.dir, generation);
        let books = self.books(state)?;
        books.log = Some(log?);
        tracing::debug!(
            dir = %self.dir.display(),
            generation,
            entries = books.map.len(),
            snapshot_bytes = snapshot.len(),
            "registry compacted"
        );
        Ok(())
    }

    /// Makes every appended record durable now (under the lock).
    fn sync_now(&self, state: &mut State) -> Result<(), RegistryError> {
        if state.durable >= state.appended {
            return Ok(());
        }
        let file = state
            .books
            .as_ref()
            .and_then(|books| books.log.as_ref())
            .map(|log| Arc::clone(&log.file));
        if let Some(file) = file
            && let Err(error) = file.sync_data()
        {
            let error = io_error(&self.path(REGISTRY_LOG))(error);
            return Err(self.fail(state, error));
        }
        state.durable = state.appended;
        self.synced.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// The fsync task: makes the records appended so far durable, without
    /// holding the lock meanwhile (writers go on appending).
    fn sync_log(&self) {
        let (target, file) = {
            let state = self.lock();
            let file = state
                .books
                .as_ref()
                .and_then(|books| books.log.as_ref())
                .map(|log| Arc::clone(&log.file));
            (state.appended, file)
        };
        // No log: nothing was appended that is not durable (see
        // `Books::log`).
        let result = file.map_or(Ok(()), |file| file.sync_data());
        {
            let mut state = self.lock();
            state.syncing = false;
            #[cfg(test)]
            {
                state.syncs += 1;
            }
            match result {
                Ok(()) => state.durable = state.durable.max(target),
                Err(error) => {
                    let error = io_error(&self.path(REGISTRY_LOG))(error);
                    self.fail(&mut state, error);
                }
            }
        }
        self.synced.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records that an fsync failed: the store refuses everything from now.
    fn fail(&self, state: &mut State, error: RegistryError) -> RegistryError {
        tracing::error!(
            dir = %self.dir.display(),
            error = %error,
            "registry fsync failed; the store refuses further use"
        );
        let reason = state
            .failed
            .get_or_insert_with(|| format!("an fsync failed: {error}"));
        failed(reason)
    }

    /// Reads the snapshot, then the log of its generation; cuts a torn last
    /// record away.
    fn read_books(&self) -> Result<Books, RegistryError> {
        let snapshot_path = self.path(REGISTRY_FILE);
        let snapshot = match read_optional(&snapshot_path)? {
            Some(bytes) => format::decode_snapshot(&bytes).map_err(corrupt(&snapshot_path))?,
            None => format::Snapshot {
                generation: 0,
                map: Map::new(),
            },
        };
        let mut map = snapshot.map;
        let generation = snapshot.generation;
        let log_path = self.path(REGISTRY_LOG);
        let mut log = None;
        if let Some(bytes) = read_optional(&log_path)? {
            let log_generation = format::decode_log_header(&bytes).map_err(corrupt(&log_path))?;
            if log_generation > generation {
                return Err(corrupt(&log_path)(format!(
                    "log of generation {log_generation} but the snapshot is of generation \
                     {generation}: the snapshot is missing or older than its log"
                )));
            }
            if log_generation < generation {
                // A compaction stopped between its renames: the snapshot
                // holds all of it. The next write replaces it.
                tracing::info!(
                    file = %log_path.display(),
                    log_generation,
                    generation,
                    "ignoring a registry log the snapshot already holds"
                );
            } else {
                let frames = format::decode_frames(&bytes).map_err(corrupt(&log_path))?;
                for record in frames.records {
                    format::apply(&mut map, record).map_err(corrupt(&log_path))?;
                }
                let file = fs::OpenOptions::new()
                    .append(true)
                    .open(&log_path)
                    .map_err(io_error(&log_path))?;
                if frames.torn_bytes > 0 {
                    tracing::warn!(
                        file = %log_path.display(),
                        dropped_bytes = frames.torn_bytes,
                        "registry log ends in a torn record (a crash mid-write); cut back to the last whole one"
                    );
                    file.set_len(frames.whole_len as u64)
                        .and_then(|()| file.sync_data())
                        .map_err(io_error(&log_path))?;
                }
                log = Some(Log {
                    file: Arc::new(file),
                    len: frames.whole_len as u64,
                });
            }
        }
        let live_bytes = map
            .iter()
            .map(|(key, (_, value))| format::put_frame_len(key, value))
            .sum();
        Ok(Books {
            map,
            generation,
            log,
            live_bytes,
            retry_compaction_at: 0,
        })
    }
}

fn failed(reason: &str) -> RegistryError {
    RegistryError::Unavailable {
        reason: format!("registry store failed earlier ({reason}); restart to reload it"),
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path) -> impl Fn(String) -> RegistryError + '_ {
    move |reason| RegistryError::Corrupt {
        location: path.display().to_string(),
        reason,
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, RegistryError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// Creates the empty log of `generation`, replacing any other.
fn create_log(dir: &Path, generation: u64) -> Result<Log, RegistryError> {
    let header = format::encode_log_header(generation);
    write_renamed(dir, LOG_TEMP, REGISTRY_LOG, &header).map_err(|failure| match failure {
        // A failed fsync here leaves the old log or the new empty one in
        // place: either is stale or empty, and every record is durable
        // already (compaction and the first append sync first).
        Failure::BeforeRename(error) | Failure::Sync(error) => error,
    })?;
    let path = dir.join(REGISTRY_LOG);
    let file = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_error(&path))?;
    Ok(Log {
        file: Arc::new(file),
        len: header.len() as u64,
    })
}

/// How writing a file into place failed.
enum Failure {
    /// Nothing changed where a reader looks (the temporary file may remain).
    BeforeRename(RegistryError),
    /// The rename may or may not be durable.
    Sync(RegistryError),
}

/// Writes `bytes` to `temp`, fsyncs it, renames it to `target` and fsyncs
/// the directory.
fn write_renamed(dir: &Path, temp: &str, target: &str, bytes: &[u8]) -> Result<(), Failure> {
    let before = |path: &Path| {
        let path = path.to_owned();
        move |source| Failure::BeforeRename(RegistryError::Io { path, source })
    };
    fs::create_dir_all(dir).map_err(before(dir))?;
    let temp = dir.join(temp);
    let target = dir.join(target);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(before(&temp))?;
    file.write_all(bytes).map_err(before(&temp))?;
    file.sync_all().map_err(before(&temp))?;
    drop(file);
    fs::rename(&temp, &target).map_err(before(&target))?;
    // Make the rename itself durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| {
            Failure::Sync(RegistryError::Io {
                path: dir.to_owned(),
                source,
            })
        })
}

#[cfg(test)]
mod tests;
