//! The fetcher cache, shared by every executor process on an agent.
//!
//! Layout under the cache directory:
//! - `entries/<key>`: a complete download, immutable once renamed into place; its modification
//!   time is its last use (set explicitly, so least-recently-used order is exact);
//! - `entries/<key>.meta`: the URI and size it holds, written before the entry is renamed in, so
//!   an entry without a matching meta is corrupt and gets replaced;
//! - `locks/<key>`: the per-URI lock; whoever holds it may download and install `<key>`, so there
//!   is one download per URI however many fetchers (threads or processes) ask at once;
//! - `trees/<key>/`, `trees/<key>.meta`: an archive entry extracted once, copied into each
//!   sandbox instead of extracting it there (`tree.rs`); evicted with its entry, and counted
//!   with it against the bound;
//! - `lock`: the whole-cache lock, held only while evicting;
//! - `tmp/`: downloads in progress, and trees being made or removed.
//!
//! Locks are `flock`s on files that are never deleted (deleting a lock file would let two
//! holders lock different inodes). `<key>` is the SHA-256 of the URI in hex.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Size of the cache, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Complete entries.
    pub entries: u64,
    /// Bytes in complete entries.
    pub bytes: u64,
}

/// The cache directory and its paths.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    root: PathBuf,
}

/// What [`Cache::lookup`] found.
pub(crate) enum Lookup {
    Hit(Hit),
    /// No usable entry; the caller holds the entry's lock exclusive until it drops the file.
    Miss(File),
}

/// A complete entry, opened while its lock was held: the handle stays readable even if the
/// entry is evicted right after the lock is released.
pub(crate) struct Hit {
    pub(crate) file: File,
    pub(crate) len: u64,
}

/// Age past which a temporary download is considered abandoned (see `remove_stale_downloads`).
const STALE_DOWNLOAD: std::time::Duration = std::time::Duration::from_secs(3600);

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    pub(crate) fn key(uri: &str) -> String {
        let digest = Sha256::digest(uri.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of `uri` fetched for `user`: the URI's own key for the
    /// agent's user, else one that names the user too, so that users never
    /// share an entry (a file one of them could read, another not).
    pub(crate) fn key_for(uri: &str, user: Option<crate::FetchUser>) -> String {
        match user {
            None => Self::key(uri),
            Some(user) => Self::key(&format!("user {}:{} {uri}", user.uid, user.gid)),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the lock of `key`'s entry exclusive (see [`Cache::lookup`]), blocking until
    /// granted; dropping the file releases it.
    pub(crate) fn lock_entry(&self, key: &str) -> io::Result<File> {
        self.ensure_layout()?;
        lock_file(
            &self.root.join("locks").join(key),
            rustix::fs::FlockOperation::LockExclusive,
        )
    }

    fn entries(&self) -> PathBuf {
        self.root.join("entries")
    }

    pub(crate) fn entry_path(&self, key: &str) -> PathBuf {
        self.entries().join(key)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.entries().join(format!("{key}.meta"))
    }

    /// Creates the directory layout (idempotent, safe to race).
    pub(crate) fn ensure_layout(&self) -> io::Result<()> {
        for sub in ["entries", "locks", "tmp"] {
            fs::create_dir_all(self.root.join(sub))?;
        }
        Ok(())
    }

    /// A fresh temporary path for a download of `key`, unique across processes.
    pub(crate) fn tmp_path(&self, key: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{key}.{}.{n}", std::process::id()))
    }

    /// Finds the entry of `key` for `uri`, blocking while someone downloads it.
    ///
    /// Readers hold the entry's lock shared, so any number of hits proceed at once; a miss
    /// retakes it exclusive (and checks again, since another fetcher may have installed the
    /// entry in between) and returns the lock: its holder downloads and installs the entry.
    pub(crate) fn lookup(&self, key: &str, uri: &str) -> io::Result<Lookup> {
        self.ensure_layout()?;
        let lock_path = self.root.join("locks").join(key);
        let shared = lock_file(&lock_path, rustix::fs::FlockOperation::LockShared)?;
        if let Some(hit) = self.open_hit(key, uri, false)? {
            return Ok(Lookup::Hit(hit));
        }
        drop(shared);
        let exclusive = self.lock_entry(key)?;
        Ok(match self.open_hit(key, uri, true)? {
            Some(hit) => Lookup::Hit(hit),
            None => Lookup::Miss(exclusive),
        })
    }

    /// Opens the entry of `key` if it is complete and holds `uri`, and marks it used. A corrupt
    /// entry is a miss, and is removed when `remove_corrupt` (only with the lock exclusive).
    fn open_hit(&self, key: &str, uri: &str, remove_corrupt: bool) -> io::Result<Option<Hit>> {
        let path = self.entry_path(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let valid = match fs::read_to_string(self.meta_path(key)) {
            Ok(meta) => parse_meta(&meta) == Some((uri, len)),
            Err(_) => false,
        };
        if !valid {
            if remove_corrupt {
                tracing::warn!(%uri, path = %path.display(), "corrupt fetcher cache entry, replacing it");
                remove_entry(&path, &self.meta_path(key));
            }
            return Ok(None);
        }
        // Recency is the modification time; failing to update it only skews eviction order.
        if let Err(e) = file.set_modified(SystemTime::now()) {
            tracing::debug!(error = %e, "cannot mark fetcher cache entry as used");
        }
        Ok(Some(Hit { file, len }))
    }

    /// Installs a complete download at `tmp` as the entry of `key` and opens it. Call with the
    /// entry's lock held exclusive (from [`Lookup::Miss`]).
    pub(crate) fn install(&self, key: &str, uri: &str, tmp: &Path, len: u64) -> io::Result<Hit> {
        let mut meta_tmp = tmp.as_os_str().to_owned();
        meta_tmp.push(".meta");
        let meta_tmp = PathBuf::from(meta_tmp);
        fs::write(&meta_tmp, format!("{uri}\n{len}\n"))?;
        fs::rename(&meta_tmp, self.meta_path(key))?;
        let file = File::open(tmp)?;
        file.set_modified(SystemTime::now())?;
        fs::rename(tmp, self.entry_path(key))?;
        Ok(Hit { file, len })
    }

    /// Evicts least recently used entries (never `keep`) until the total is within `max_bytes`.
    /// Returns the number of entries evicted.
    pub(crate) fn evict(&self, max_bytes: u64, keep: &str) -> io::Result<usize> {
        let _guard = lock_file(
            &self.root.join("lock"),
            rustix::fs::FlockOperation::LockExclusive,
        )?;
        self.remove_stale_downloads();
        let mut entries = self.list()?;
        self.remove_orphan_trees(&entries);
        // An entry's size is its archive's and its extracted tree's (`tree.rs`).
        for entry in &mut entries {
            entry.len = entry.len.saturating_add(self.tree_bytes(&entry.key));
        }
        let mut total: u64 = entries.iter().map(|e| e.len).sum();
        entries.sort_by_key(|e| e.used);
        let mut evicted = 0;
        for entry in entries {
            if total <= max_bytes {
                break;
            }
            if entry.key == keep {
                continue;
            }
            remove_entry(&self.entry_path(&entry.key), &self.meta_path(&entry.key));
            self.remove_tree(&entry.key);
            total = total.saturating_sub(entry.len);
            evicted += 1;
            tracing::info!(key = %entry.key, bytes = entry.len, "evicted fetcher cache entry");
        }
        Ok(evicted)
    }

    /// Removes downloads abandoned by fetchers that died: a live download writes at least once
    /// per stall timeout (or fails), so a temporary file untouched for an hour has no writer.
    fn remove_stale_downloads(&self) {
        let Ok(dir) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        let now = SystemTime::now();
        for item in dir.flatten() {
            let stale = item
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > STALE_DOWNLOAD);
            if stale {
                // A download, or a tree being made or removed (`tree.rs`).
                let _ = crate::extract::remove_any(&item.path());
            }
        }
    }

    /// Removes the trees whose entry is gone (a fetcher that died between removing an entry
    /// and its tree).
    fn remove_orphan_trees(&self, entries: &[Listed]) {
        let Ok(dir) = fs::read_dir(self.root.join("trees")) else {
            return;
        };
        for item in dir.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".meta").unwrap_or(&name);
            if !entries.iter().any(|e| e.key == key) {
                self.remove_tree(key);
            }
        }
    }

    /// Complete entries (by name: keys have no dot, metas do).
    fn list(&self) -> io::Result<Vec<Listed>> {
        let mut out = Vec::new();
        let dir = match fs::read_dir(self.entries()) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for item in dir {
            let Ok(item) = item else { continue };
            let name = item.file_name().to_string_lossy().into_owned();
            if name.contains('.') {
                continue;
            }
            // An entry evicted between listing and stat is simply gone.
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            out.push(Listed {
                key: name,
                len: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let entries = self.list().unwrap_or_default();
        CacheStats {
            entries: entries.len() as u64,
            bytes: entries.iter().map(|e| e.len).sum(),
        }
    }
}

struct Listed {
    key: String,
    len: u64,
    used: SystemTime,
}

fn parse_meta(meta: &str) -> Option<(&str, u64)> {
    let mut lines = meta.lines();
    let uri = lines.next()?;
    let len = lines.next()?.parse().ok()?;
    Some((uri, len))
}

fn remove_entry(entry: &Path, meta: &Path) {
    // The entry goes first: a meta without an entry is harmless, the reverse reads as corrupt.
    for path in [entry, meta] {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove fetcher cache file");
        }
    }
}

/// Opens (creating) `path` and takes a `flock` on it, blocking until granted; closing the file
/// releases it.
fn lock_file(path: &Path, how: rustix::fs::FlockOperation) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    rustix::fs::flock(&file, how)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_user() {
        let nobody = crate::FetchUser {
            uid: 65534,
            gid: 65534,
        };
        let other = crate::FetchUser {
            uid: 1000,
            gid: 1000,
        };
        let uri = "file:///srv/app.tgz";
        assert_eq!(Cache::key_for(uri, None), Cache::key(uri));
        assert_ne!(Cache::key_for(uri, Some(nobody)), Cache::key(uri));
        assert_ne!(
            Cache::key_for(uri, Some(nobody)),
            Cache::key_for(uri, Some(other))
        );
        assert_eq!(
            Cache::key_for(uri, Some(nobody)),
            Cache::key_for(uri, Some(nobody))
        );
    }

    #[test]
    fn keys_are_stable_hex() {
        let key = Cache::key("http://h/a.tgz");
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(key, Cache::key("http://h/a.tgz"));
        assert_ne!(key, Cache::key("http://h/b.tgz"));
    }

    #[test]
    fn corrupt_entry_is_a_miss_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        cache.ensure_layout().expect("layout");
        let key = Cache::key("u");
        let tmp = cache.tmp_path(&key);
        fs::write(&tmp, b"abc").expect("write");
        cache.install(&key, "u", &tmp, 3).expect("install");
        assert!(matches!(
            cache.lookup(&key, "u").expect("lookup"),
            Lookup::Hit(_)
        ));
        // Another URI under the same key (a collision) or a truncated entry: a miss.
        assert!(matches!(
            cache.lookup(&key, "other").expect("lookup"),
            Lookup::Miss(_)
        ));
        assert!(!cache.entry_path(&key).exists());
        assert_eq!(cache.stats(), CacheStats::default());
    }

    #[test]
    fn eviction_keeps_the_newest_within_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        cache.ensure_layout().expect("layout");
        for uri in ["a", "b", "c"] {
            let key = Cache::key(uri);
            let tmp = cache.tmp_path(&key);
            fs::write(&tmp, [0u8; 10]).expect("write");
            cache.install(&key, uri, &tmp, 10).expect("install");
        }
        // Touch "a" so "b" is now the least recently used.
        let lookup = cache.lookup(&Cache::key("a"), "a").expect("lookup");
        assert!(matches!(lookup, Lookup::Hit(_)));
        assert_eq!(cache.evict(20, &Cache::key("c")).expect("evict"), 1);
        assert!(!cache.entry_path(&Cache::key("b")).exists());
        assert_eq!(
            cache.stats(),
            CacheStats {
                entries: 2,
                bytes: 20
            }
        );
    }

    #[test]
    fn abandoned_downloads_are_removed_on_eviction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        cache.ensure_layout().expect("layout");
        let (old, fresh) = (cache.tmp_path("k"), cache.tmp_path("k"));
        fs::write(&old, b"x").expect("write");
        fs::write(&fresh, b"x").expect("write");
        let long_ago = SystemTime::now() - STALE_DOWNLOAD - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(long_ago))
            .expect("age the file");
        cache.evict(u64::MAX, "").expect("evict");
        assert!(!old.exists());
        assert!(fresh.exists(), "a download in progress stays");
    }
}
