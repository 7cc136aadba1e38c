//! Archive extraction into the sandbox (blocking: callers run it in `spawn_blocking`).
//!
//! Invariant: nothing is written outside `dir`. Entries with `..` or absolute paths are errors
//! (not silently skipped), and no entry is written through a symlink: tar checks that the
//! canonical parent of each entry is inside `dir`, and for zip we refuse any existing symlink
//! among an entry's ancestors. Exec bits are kept; setuid, setgid and sticky bits never are
//! (the extraction runs as root: a setuid-root program in a task's archive would otherwise give
//! the task euid 0).

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The permission bits a fetched or extracted file keeps: read, write and exec, nothing more.
pub(crate) const KEPT_MODE_BITS: u32 = 0o777;

/// The archive formats Mesos' fetcher extracts, by file name suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Tar,
    TarGz,
    TarBz2,
    TarXz,
    Zip,
    /// A single gzip-compressed file: `x.gz` becomes `x` beside it.
    Gz,
}

impl ArchiveKind {
    /// The kind of archive `name` is, if any (case-insensitive suffix match).
    pub(crate) fn detect(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let ends = |suffixes: &[&str]| suffixes.iter().any(|s| lower.ends_with(s));
        if ends(&[".tar.gz", ".tgz"]) {
            Some(Self::TarGz)
        } else if ends(&[".tar.bz2", ".tbz2"]) {
            Some(Self::TarBz2)
        } else if ends(&[".tar.xz", ".txz"]) {
            Some(Self::TarXz)
        } else if ends(&[".tar"]) {
            Some(Self::Tar)
        } else if ends(&[".zip"]) {
            Some(Self::Zip)
        } else if ends(&[".gz"]) {
            Some(Self::Gz)
        } else {
            None
        }
    }
}

/// Extracts `archive` into `dir`, writing at most `max_bytes` of decompressed data; returns the
/// number of entries written. On any failure (a bomb stopped at the cap included) whatever this
/// extraction added to `dir` is removed again, so a failed fetch leaves no partial output behind.
pub(crate) fn extract(
    archive: &Path,
    dir: &Path,
    kind: ArchiveKind,
    max_bytes: u64,
) -> Result<usize, String> {
    let before = top_level_names(dir);
    let result = extract_capped(archive, dir, kind, &Budget::new(max_bytes));
    if result.is_err() {
        remove_added(dir, &before, archive);
    }
    result
}

fn extract_capped(
    archive: &Path,
    dir: &Path,
    kind: ArchiveKind,
    budget: &Budget,
) -> Result<usize, String> {
    let file = File::open(archive).map_err(|e| format!("opening: {e}"))?;
    let reader = BufReader::with_capacity(1 << 16, file);
    match kind {
        ArchiveKind::Tar => untar(budget.reader(reader), dir),
        ArchiveKind::TarGz => untar(
            budget.reader(flate2::bufread::MultiGzDecoder::new(reader)),
            dir,
        ),
        ArchiveKind::TarBz2 => untar(
            budget.reader(bzip2::bufread::MultiBzDecoder::new(reader)),
            dir,
        ),
        ArchiveKind::TarXz => untar_xz(reader, dir, budget),
        ArchiveKind::Zip => unzip(archive, dir, budget),
        ArchiveKind::Gz => gunzip(reader, archive, budget),
    }
    .map_err(|e| budget.explain(e))
}

/// The decompressed bytes an extraction may still produce. Every byte that can reach the disk
/// passes through a [`Capped`] reader drawing on it, so the bound holds whatever the format.
struct Budget {
    limit: u64,
    used: std::sync::atomic::AtomicU64,
}

impl Budget {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            used: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn reader<R: Read>(&self, inner: R) -> Capped<'_, R> {
        Capped {
            inner,
            budget: self,
        }
    }

    fn exceeded(&self) -> bool {
        self.used.load(std::sync::atomic::Ordering::Relaxed) > self.limit
    }

    /// The cap is the real cause when it was hit, whatever error the format reader made of it.
    fn explain(&self, error: String) -> String {
        if self.exceeded() {
            format!(
                "more than the limit of {} bytes once extracted (--fetcher-max-extract-size); partial output removed",
                self.limit
            )
        } else {
            error
        }
    }
}

/// A reader that fails once its [`Budget`] is spent.
struct Capped<'a, R> {
    inner: R,
    budget: &'a Budget,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let used = self
            .budget
            .used
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(n as u64);
        if used > self.budget.limit {
            return Err(io::Error::other("extraction size limit exceeded"));
        }
        Ok(n)
    }
}

/// The names directly under `dir` (empty when it cannot be read).
fn top_level_names(dir: &Path) -> std::collections::HashSet<std::ffi::OsString> {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// Removes what appeared directly under `dir` since `before` (never the archive itself).
fn remove_added(
    dir: &Path,
    before: &std::collections::HashSet<std::ffi::OsString>,
    archive: &Path,
) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if before.contains(&entry.file_name()) || path == archive {
            continue;
        }
        if let Err(e) = remove_any(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a failed extraction's output");
        }
    }
}

/// Removes `path`, a directory with all it holds, anything else (a link too) as itself.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        _ => fs::remove_file(path),
    }
}

/// Rejects absolute paths and `..` anywhere in an entry's path.
fn check_entry_path(path: &Path) -> Result<(), String> {
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("entry {} contains '..'", path.display()));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("entry {} is an absolute path", path.display()));
            }
        }
    }
    Ok(())
}

fn untar<R: Read>(reader: R, dir: &Path) -> Result<usize, String> {
    let mut archive = tar::Archive::new(reader);
    // Not "preserved": tar then keeps only the rwx bits; the mask says so twice.
    archive.set_preserve_permissions(false);
    archive.set_mask(0o7777 & !KEPT_MODE_BITS);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    let mut count = 0;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        check_entry_path(&path)?;
        if let Some(target) = entry.link_name().map_err(|e| e.to_string())?
            && entry.header().entry_type().is_hard_link()
        {
            check_entry_path(&target)?;
        }
        // `unpack_in` answers false for an entry it refuses to place inside `dir`.
        let placed = entry
            .unpack_in(dir)
            .map_err(|e| format!("entry {}: {e}", path.display()))?;
        if !placed {
            return Err(format!(
                "entry {} would land outside the sandbox",
                path.display()
            ));
        }
        count += 1;
    }
    Ok(count)
}

/// xz has no pure-Rust `Read` adapter in lzma-rs, so one thread decompresses into a pipe that
/// the tar reader consumes; dropping the reader on a tar error ends the writer with EPIPE.
fn untar_xz<R: io::BufRead + Send + 'static>(
    reader: R,
    dir: &Path,
    budget: &Budget,
) -> Result<usize, String> {
    let (pipe_reader, mut pipe_writer) = io::pipe().map_err(|e| format!("creating pipe: {e}"))?;
    let decompressor = std::thread::Builder::new()
        .name("xz-decompress".to_owned())
        .spawn(move || {
            let mut reader = reader;
            lzma_rs::xz_decompress(&mut reader, &mut pipe_writer)
        })
        .map_err(|e| format!("starting decompressor: {e}"))?;
    let untarred = untar(
        BufReader::with_capacity(1 << 16, budget.reader(pipe_reader)),
        dir,
    );
    let decompressed = decompressor
        .join()
        .map_err(|_| "xz decompressor panicked".to_owned())?;
    match (untarred, decompressed) {
        (Ok(count), Ok(())) => Ok(count),
        // A tar error closes the pipe, so the decompressor's error is only a consequence.
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(format!("xz: {e}")),
    }
}

fn gunzip<R: io::BufRead>(reader: R, archive: &Path, budget: &Budget) -> Result<usize, String> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = &name[..name.len().saturating_sub(3)];
    if stem.is_empty() || stem == "." || stem == ".." {
        return Err(format!(
            "no file name left after removing .gz from {name:?}"
        ));
    }
    let out_path = archive.with_file_name(stem);
    let mut out = create_fresh(&out_path)?;
    let mut decoder = budget.reader(flate2::bufread::MultiGzDecoder::new(reader));
    if let Err(e) = io::copy(&mut decoder, &mut out) {
        drop(out);
        // It may have replaced a file that was there before: gone either way.
        let _ = fs::remove_file(&out_path);
        return Err(format!("gunzip: {e}"));
    }
    Ok(1)
}

/// Creates a new regular file at `path`, replacing (not following) whatever was there.
fn create_fresh(path: &Path) -> Result<File, String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(format!("{} is a directory", path.display()));
        }
        Ok(_) => fs::remove_file(path).map_err(|e| format!("replacing {}: {e}", path.display()))?,
        Err(_) => {}
    }
    File::create_new(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Refuses a path under `dir` with a symlink among its ancestors (below `dir`).
fn check_no_symlink_ancestor(dir: &Path, rel: &Path) -> Result<(), String> {
    let mut at = dir.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(part);
        if let Ok(meta) = fs::symlink_metadata(&at)
            && meta.file_type().is_symlink()
        {
            return Err(format!(
                "entry {} would be written through the symlink {}",
                rel.display(),
                at.display()
            ));
        }
    }
    Ok(())
}

fn unzip(archive: &Path, dir: &Path, budget: &Budget) -> Result<usize, String> {
    let file = File::open(archive).map_err(|e| format!("opening: {e}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| e.to_string())?;
        let rel = PathBuf::from(entry.name().map_err(|e| e.to_string())?.into_owned());
        check_entry_path(&rel)?;
        check_no_symlink_ancestor(dir, &rel)?;
        let out = dir.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
            continue;
        }
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|e| format!("entry {}: {e}", rel.display()))?;
            if fs::symlink_metadata(&out).is_ok() {
                fs::remove_file(&out).map_err(|e| format!("replacing {}: {e}", out.display()))?;
            }
            std::os::unix::fs::symlink(&target, &out)
                .map_err(|e| format!("creating symlink {}: {e}", out.display()))?;
            continue;
        }
        let mut writer = create_fresh(&out)?;
        io::copy(&mut budget.reader(&mut entry), &mut writer)
            .map_err(|e| format!("entry {}: {e}", rel.display()))?;
        if let Some(mode) = entry.unix_mode() {
            fs::set_permissions(&out, fs::Permissions::from_mode(mode & KEPT_MODE_BITS))
                .map_err(|e| format!("setting mode of {}: {e}", out.display()))?;
        }
    }
    Ok(zip.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds() {
        let cases = [
            ("a.tar", Some(ArchiveKind::Tar)),
            ("a.tar.gz", Some(ArchiveKind::TarGz)),
            ("a.TGZ", Some(ArchiveKind::TarGz)),
            ("a.tar.bz2", Some(ArchiveKind::TarBz2)),
            ("a.tbz2", Some(ArchiveKind::TarBz2)),
            ("a.tar.xz", Some(ArchiveKind::TarXz)),
            ("a.txz", Some(ArchiveKind::TarXz)),
            ("a.zip", Some(ArchiveKind::Zip)),
            ("a.gz", Some(ArchiveKind::Gz)),
            ("a.sh", None),
            ("tar", None),
        ];
        for (name, kind) in cases {
            assert_eq!(ArchiveKind::detect(name), kind, "{name}");
        }
    }

    #[test]
    fn entry_paths() {
        assert!(check_entry_path(Path::new("a/b")).is_ok());
        assert!(check_entry_path(Path::new("./a")).is_ok());
        assert!(check_entry_path(Path::new("../a")).is_err());
        assert!(check_entry_path(Path::new("a/../../b")).is_err());
        assert!(check_entry_path(Path::new("/etc/x")).is_err());
    }

    #[test]
    fn tar_symlink_write_through_is_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        let sandbox = tempfile::tempdir().expect("tempdir");
        let mut builder = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        builder
            .append_link(&mut link, "escape", outside.path())
            .expect("append link");
        let data = b"pwned";
        let mut file = tar::Header::new_gnu();
        file.set_size(data.len() as u64);
        file.set_mode(0o644);
        builder
            .append_data(&mut file, "escape/evil", &data[..])
            .expect("append file");
        let bytes = builder.into_inner().expect("finish tar");
        let result = untar(&bytes[..], sandbox.path());
        assert!(result.is_err(), "write through symlink accepted");
        assert!(!outside.path().join("evil").exists());
    }

    #[test]
    fn tar_entries_lose_setuid_setgid_and_sticky_bits() {
        use std::os::unix::fs::PermissionsExt as _;
        let sandbox = tempfile::tempdir().expect("sandbox");
        let mut builder = tar::Builder::new(Vec::new());
        let data = b"#!/bin/sh\nid -u\n";
        for (name, mode) in [
            ("a/b/c/d/e/f/suid", 0o4755),
            ("sgid", 0o2755),
            ("sticky", 0o1777),
            ("plain", 0o640),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            builder
                .append_data(&mut header, name, &data[..])
                .expect("append");
        }
        let bytes = builder.into_inner().expect("finish tar");
        assert_eq!(untar(&bytes[..], sandbox.path()), Ok(4));
        let mode = |name: &str| {
            fs::metadata(sandbox.path().join(name))
                .expect("extracted")
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a/b/c/d/e/f/suid"), 0o755);
        assert_eq!(mode("sgid"), 0o755);
        assert_eq!(mode("sticky"), 0o777);
        assert_eq!(mode("plain"), 0o640);
    }

    #[test]
    fn zip_entries_lose_setuid_bits() {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let archive = dir.path().join("a.zip");
        let mut zip = zip::ZipWriter::new(File::create(&archive).expect("create"));
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o4755);
        zip.start_file("suid", options).expect("start");
        zip.write_all(b"x").expect("write");
        zip.finish().expect("finish");
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("out");
        extract(&archive, &out, ArchiveKind::Zip, 1 << 20).expect("extract");
        let mode = fs::metadata(out.join("suid"))
            .expect("extracted")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn gunzip_strips_suffix() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("notes.txt.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello").expect("compress");
        fs::write(&archive, enc.finish().expect("finish")).expect("write");
        assert_eq!(
            extract(&archive, dir.path(), ArchiveKind::Gz, 1 << 20),
            Ok(1)
        );
        assert_eq!(
            fs::read(dir.path().join("notes.txt")).expect("read"),
            b"hello"
        );
        assert!(archive.exists(), "the archive stays, as in mesos");
    }
}
