//! The checkpoint as one append-only journal, `<work_dir>/meta/journal`.
//!
//! Every change to the checkpoint's files (see the layout in
//! [`crate::checkpoint`]) is one frame appended to the journal: "this path
//! now holds these bytes" or "this path (and everything under it) is gone".
//! A launch therefore costs a few small appends instead of a dozen inodes
//! created, renamed and removed. The writer thread gathers the records of
//! every batch waiting for it and writes them with one `write(2)` (group
//! commit), and reports the batches as written only after that.
//!
//! Frame: `length: u32 LE`, `crc32(payload): u32 LE`, `payload` (an
//! [`Entry`], protobuf). The file starts with [`MAGIC`].
//!
//! *Invariants:*
//! - Only whole frames count. A crash can leave a torn last frame; at open,
//!   replay stops at the first frame that is short or whose checksum does
//!   not match, the file is cut back to the last whole frame (with a warning
//!   saying how many bytes were dropped), and appends continue from there. A
//!   write that fails is cut back the same way at once, so a later append
//!   never sits behind a torn frame.
//! - The file only grows by appends, except when it is compacted: the live
//!   image is written to `journal.new` and renamed over `journal`, so a
//!   crash leaves the old or the new journal, both whole. Compaction happens
//!   at open and whenever the journal has grown to several times the size
//!   of its last compaction, so appends stay O(1) amortised and the file
//!   stays proportional to what is live.
//! - Like the file-per-record layout it replaces, nothing is fsynced: a
//!   checkpoint only matters while the machine has not rebooted (a new boot
//!   id discards it), and until then the page cache keeps every write even
//!   if the agent is killed.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use prost::Message as _;

use super::{META_FILE_MODE, MemStore, MetaStore};

/// The journal's file name under `meta/`.
pub const JOURNAL: &str = "journal";
/// The lock file under `meta/`: one agent per work directory, or the two
/// would write over each other's journal.
pub const LOCK: &str = "journal.lock";
/// How long [`WorkDirLock::acquire`] waits for a lock that is held.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
/// The first bytes of every journal: the format and its version.
pub const MAGIC: &[u8; 8] = b"AGORAJ1\n";
/// No frame is larger (a TaskInfo is bounded by the master's message limit).
const MAX_FRAME: usize = 64 << 20;
/// The journal is not compacted below this size.
const COMPACT_MIN: u64 = 4 << 20;
/// Compact once the journal is this many times its last compacted size.
const COMPACT_FACTOR: u64 = 4;

/// One change to the checkpoint's files.
#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    /// Relative to `meta/`, `/`-separated.
    #[prost(string, tag = "1")]
    path: String,
    /// The file's new content; absent: `path` and everything under it are
    /// removed.
    #[prost(bytes = "vec", optional, tag = "2")]
    put: Option<Vec<u8>>,
}

/// Why a journal cannot be opened. A torn tail is not one of them: it is
/// cut off with a warning.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "{path}: not an agora checkpoint journal (unknown header); move it away to start the agent clean"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path} is locked: another agent is using this work directory")]
    InUse { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The writer's side of the journal: appends buffered until [`MetaStore::flush`].
pub struct JournalStore {
    path: PathBuf,
    file: File,
    /// Frames appended since the last flush.
    buffer: Vec<u8>,
    /// Bytes in the file, all of them whole frames.
    len: u64,
    /// The file's size right after its last compaction.
    compacted_len: u64,
    compact_min: u64,
    /// Held while this store lives (tests open journals without it: a
    /// lock released by one test can be held a moment longer by a child
    /// another test forks, until it execs).
    _lock: Option<WorkDirLock>,
}

impl JournalStore {
    /// Opens `<meta>/journal` (creating it), replays it into the image it
    /// describes, and compacts it to that image.
    pub fn open(meta: &Path, lock: WorkDirLock) -> Result<(JournalStore, MemStore), JournalError> {
        Self::open_with(meta, Some(lock), COMPACT_MIN)
    }

    fn open_with(
        meta: &Path,
        lock: Option<WorkDirLock>,
        compact_min: u64,
    ) -> Result<(JournalStore, MemStore), JournalError> {
        let path = meta.join(JOURNAL);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let image = match std::fs::read(&path) {
            Ok(bytes) => {
                let (image, whole) = replay(&bytes)
                    .ok_or_else(|| JournalError::UnknownFormat { path: path.clone() })?;
                if whole < bytes.len() {
                    tracing::warn!(
                        file = %path.display(),
                        dropped_bytes = bytes.len() - whole,
                        "checkpoint journal ends in a torn frame; cut back to the last whole one"
                    );
                }
                image
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MemStore::default(),
            Err(e) => return Err(io(e)),
        };
        let mut store = JournalStore {
            file: write_image(&path, &image).map_err(io)?,
            len: 0,
            compacted_len: 0,
            path: path.clone(),
            buffer: Vec::new(),
            compact_min,
            _lock: lock,
        };
        store.len = store.file.metadata().map_err(io)?.len();
        store.compacted_len = store.len;
        Ok((store, image))
    }

    /// Reads the image `<meta>/journal` describes, changing nothing (a
    /// torn tail is ignored, not cut).
    pub fn read_image(meta: &Path) -> Result<MemStore, JournalError> {
        let path = meta.join(JOURNAL);
        match std::fs::read(&path) {
            Ok(bytes) => replay(&bytes)
                .map(|(image, _)| image)
                .ok_or(JournalError::UnknownFormat { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MemStore::default()),
            Err(source) => Err(JournalError::Io { path, source }),
        }
    }

    /// Appends every file of `image` (used once, to carry an older agent's
    /// file-per-record checkpoint into the journal).
    pub fn import(&mut self, image: &MemStore) {
        for (path, bytes) in &image.files {
            self.append(path, Some(bytes));
        }
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, path: &Path, put: Option<&[u8]>) {
        let entry = Entry {
            path: path.to_string_lossy().into_owned(),
            put: put.map(<[u8]>::to_vec),
        };
        encode_frame(&entry, &mut self.buffer);
    }

    /// Everything written so far, as an image (slow: reads the file).
    fn image(&self) -> std::io::Result<MemStore> {
        let mut bytes = std::fs::read(&self.path)?;
        bytes.extend_from_slice(&self.buffer);
        let (image, _) = replay(&bytes).ok_or_else(|| {
            std::io::Error::other(format!("{}: unknown header", self.path.display()))
        })?;
        Ok(image)
    }

    fn compact(&mut self) -> std::io::Result<()> {
        let image = self.image()?;
        self.file = write_image(&self.path, &image)?;
        self.len = self.file.metadata()?.len();
        self.compacted_len = self.len;
        tracing::debug!(file = %self.path.display(), bytes = self.len, "checkpoint journal compacted");
        Ok(())
    }
}

/// One agent per work directory: an exclusive `flock` on `meta/journal.lock`,
/// taken before anything under `meta/` is read or changed (two agents would
/// write over each other's journal). The kernel lets go when the agent
/// exits, however it exits.
#[derive(Debug)]
pub struct WorkDirLock {
    _file: File,
}

impl WorkDirLock {
    /// Takes the lock without waiting; creates `meta` if needed.
    pub fn acquire(meta: &Path) -> Result<WorkDirLock, JournalError> {
        let path = meta.join(LOCK);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        super::create_private_dirs(meta).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(META_FILE_MODE)
            .open(&path)
            .map_err(io)?;
        // A moment's patience: an agent that was just killed may have left
        // a child between fork and exec that still shares the lock.
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(WorkDirLock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => return Err(JournalError::InUse { path }),
                Err(e) => return Err(io(e.into())),
            }
        }
    }
}

/// Paths in the journal are UTF-8 (every component is a validated id).
fn checked(path: &Path) -> std::io::Result<&Path> {
    match path.to_str() {
        Some(_) => Ok(path),
        None => Err(std::io::Error::other(format!(
            "checkpoint path {} is not UTF-8",
            path.display()
        ))),
    }
}

impl MetaStore for JournalStore {
    fn write(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.append(checked(path)?, Some(bytes));
        Ok(())
    }

    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        self.image()?.read(path)
    }

    fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        self.append(checked(path)?, None);
        Ok(())
    }

    fn list_dirs(&self, path: &Path) -> std::io::Result<Vec<String>> {
        self.image()?.list_dirs(path)
    }

    /// Directories are implied by paths in a journal: nothing to prune.
    fn prune(&mut self, _path: &Path, _stop: &Path) {}

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buffer) {
            self.buffer.clear();
            // Whatever part of the group reached the file is cut off, so the
            // next append follows a whole frame.
            let cut = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.len)));
            if let Err(cut) = cut {
                tracing::error!(file = %self.path.display(), error = %cut, "cannot cut the checkpoint journal back after a failed write");
            }
            return Err(e);
        }
        self.len += self.buffer.len() as u64;
        self.buffer.clear();
        if self.len > self.compact_min && self.len > COMPACT_FACTOR * self.compacted_len {
            // The frames are written whatever happens here: a failed
            // compaction leaves the journal as it was, and is retried at the
            // next flush.
            if let Err(e) = self.compact() {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot compact the checkpoint journal");
            }
        }
        Ok(())
    }
}

/// Writes `image` as a fresh journal beside `path` and renames it over
/// `path`; returns the new file, positioned at its end for appending. On an
/// error the old journal is untouched.
fn write_image(path: &Path, image: &MemStore) -> std::io::Result<File> {
    let mut bytes = MAGIC.to_vec();
    for (file, content) in &image.files {
        let entry = Entry {
            path: file.to_string_lossy().into_owned(),
            put: Some(content.clone()),
        };
        encode_frame(&entry, &mut bytes);
    }
    let mut fresh = path.as_os_str().to_os_string();
    fresh.push(".new");
    let fresh = PathBuf::from(fresh);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(META_FILE_MODE)
        .open(&fresh)?;
    file.write_all(&bytes)?;
    // The descriptor stays valid across the rename: no reopen that could fail
    // after the old journal is gone.
    std::fs::rename(&fresh, path)?;
    Ok(file)
}

fn encode_frame(entry: &Entry, out: &mut Vec<u8>) {
    let payload = entry.encode_to_vec();
    // A frame over MAX_FRAME would be refused at replay; no checkpoint
    // record comes near it (task infos are bounded far below by the master).
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Replays a journal's bytes: the image they describe and how many bytes
/// are whole frames (the rest is a torn tail). `None` when the header is
/// not ours.
fn replay(bytes: &[u8]) -> Option<(MemStore, usize)> {
    let mut image = MemStore::default();
    if bytes.is_empty() {
        return Some((image, 0));
    }
    if !bytes.starts_with(MAGIC) {
        return None;
    }
    let mut at = MAGIC.len();
    while let Some((entry, next)) = next_frame(bytes, at) {
        let path = Path::new(&entry.path);
        // MemStore's operations cannot fail.
        let _ = match &entry.put {
            Some(content) => image.write(path, content),
            None => image.remove(path),
        };
        at = next;
    }
    Some((image, at))
}

/// The frame at `at` and where the next one starts; `None` at the end or at
/// a torn or damaged frame.
fn next_frame(bytes: &[u8], at: usize) -> Option<(Entry, usize)> {
    let mut header = bytes.get(at..at.checked_add(8)?)?;
    let mut word = [0u8; 4];
    header.read_exact(&mut word).ok()?;
    let length = u32::from_le_bytes(word) as usize;
    header.read_exact(&mut word).ok()?;
    let crc = u32::from_le_bytes(word);
    if length > MAX_FRAME {
        return None;
    }
    let start = at + 8;
    let payload = bytes.get(start..start.checked_add(length)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let entry = Entry::decode(payload).ok()?;
    Some((entry, start + length))
}

#[cfg(test)]
mod tests;
