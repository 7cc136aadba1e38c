//! Mesos' `disk/du`: bytes allocated under a directory.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Directories deeper than this below the root are not descended into (their own blocks still
/// count).
pub const MAX_DEPTH: usize = 256;

/// Bytes allocated under `path`, like `du -s -B1 -x`: `st_blocks * 512` of every entry, hard
/// links counted once, symlinks not followed, other filesystems not entered, at most
/// `MAX_DEPTH` levels. Entries that vanish or cannot be read during the walk are skipped; only
/// an unreadable `path` itself is an error.
pub fn disk_usage(path: &Path) -> io::Result<u64> {
    let root = fs::symlink_metadata(path)?;
    let device = root.dev();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = root.blocks().saturating_mul(512);
    if !root.is_dir() {
        return Ok(total);
    }
    let mut stack: Vec<(PathBuf, usize)> = vec![(path.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if depth == 0 => return Err(e),
            Err(e) => {
                tracing::debug!(path = %dir.display(), error = %e, "skipping unreadable directory");
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != device {
                continue;
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    stack.push((entry.path(), depth + 1));
                } else {
                    tracing::debug!(path = %entry.path().display(), "directory too deep, not descending");
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocated_blocks_once_without_following_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = disk_usage(dir.path()).expect("du");
        let data = vec![7u8; 256 * 1024];
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("sub/a"), &data).expect("write");
        fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).expect("link");
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("big"), vec![1u8; 1024 * 1024]).expect("write");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");

        let used = disk_usage(dir.path()).expect("du");
        let grown = used - empty;
        assert!(grown >= 256 * 1024, "{grown}");
        // The hard link is not counted twice and the symlinked megabyte not at all.
        assert!(grown < 512 * 1024, "{grown}");
    }

    #[test]
    fn missing_path_is_an_error_and_files_count() {
        assert!(disk_usage(Path::new("/nonexistent/agora-du")).is_err());
        let file = tempfile::NamedTempFile::new().expect("file");
        fs::write(file.path(), vec![1u8; 64 * 1024]).expect("write");
        assert!(disk_usage(file.path()).expect("du") >= 64 * 1024);
    }
}
