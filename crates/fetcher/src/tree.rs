//! Cached archives extracted once per agent, and their trees copied into sandboxes.
//!
//! Extraction is the dear part of a cached fetch: Spark's 214 MB executor package takes about
//! 1.6 s to un-gzip into every executor's sandbox, where copying the same files out of the page
//! cache takes about a tenth of that. So the first cached fetch that extracts an archive
//! extracts it once more into the cache (`trees/<key>/`), with the same checks and the same cap
//! as an extraction into a sandbox (`extract.rs`), and every fetch of that entry copies the tree
//! instead of extracting.
//!
//! Layout under the cache directory, beside `entries/`:
//! - `trees/<key>/`: the entry's archive extracted; never written once renamed into place;
//! - `trees/<key>.meta`: the entry it was made from (URI, length, inode and birth time: an
//!   entry downloaded again is a new file, so its old tree is never mistaken for its own, even
//!   where the filesystem gives it the old one's inode number) and the
//!   tree's size, which eviction counts against the cache's bound. A meta whose tree is absent
//!   records a tree too large to keep, so it is not made again for every fetch.
//!
//! A tree is made under the entry's lock held exclusive, as a download is installed. It only
//! saves time: whatever fails while making or copying one (a full disk, a tree evicted in the
//! middle of a copy, a name already in the sandbox), the fetch extracts its own copy of the
//! archive as it did before, so a sandbox gets the same files either way.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::extract::{self, ArchiveKind};

/// The cache entry a tree is made from: its URI, and its length, inode and birth time when it
/// was opened. An inode number alone is not enough: a file made after another is deleted may
/// get its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryId {
    pub(crate) uri: String,
    pub(crate) len: u64,
    pub(crate) ino: u64,
    pub(crate) born: i128,
}

impl EntryId {
    pub(crate) fn of(uri: &str, file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            uri: uri.to_owned(),
            len: meta.len(),
            ino: meta.ino(),
            born: born(&meta),
        })
    }
}

/// When the file was made, in ns since the epoch; where the filesystem keeps no birth time,
/// its last status change (a cache entry's changes whenever it is used, so there a tree is
/// made again rather than mistaken for another file's).
fn born(meta: &fs::Metadata) -> i128 {
    match meta.created() {
        Ok(at) => match at.duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => since.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        },
        Err(_) => i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    }
}

/// A tree ready to copy.
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) dir: PathBuf,
    /// Made by this call (the cache grew: eviction may be due).
    pub(crate) made: bool,
}

/// What `trees/<key>.meta` says.
#[derive(Debug, PartialEq, Eq)]
struct TreeMeta {
    entry: EntryId,
    bytes: u64,
    entries: usize,
}

impl TreeMeta {
    fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n",
            self.entry.uri,
            self.entry.len,
            self.entry.ino,
            self.entry.born,
            self.bytes,
            self.entries
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let uri = lines.next()?.to_owned();
        let mut fields = [0i128; 5];
        for field in &mut fields {
            *field = lines.next()?.parse().ok()?;
        }
        let [len, ino, born, bytes, entries] = fields;
        let number = |n: i128| u64::try_from(n).ok();
        let (len, ino, bytes, entries) =
            (number(len)?, number(ino)?, number(bytes)?, number(entries)?);
        Some(Self {
            entry: EntryId {
                uri,
                len,
                ino,
                born,
            },
            bytes,
            entries: usize::try_from(entries).ok()?,
        })
    }
}

/// The archive kinds whose extraction writes into a directory of its own (a `.gz` file is
/// decompressed beside itself instead, so it has no tree).
pub(crate) fn has_tree(kind: ArchiveKind) -> bool {
    !matches!(kind, ArchiveKind::Gz)
}

impl Cache {
    fn trees(&self) -> PathBuf {
        self.root().join("trees")
    }

    pub(crate) fn tree_dir(&self, key: &str) -> PathBuf {
        self.trees().join(key)
    }

    fn tree_meta_path(&self, key: &str) -> PathBuf {
        self.trees().join(format!("{key}.meta"))
    }

    /// The bytes `key`'s tree holds on disk, as its meta records them (0 without one).
    pub(crate) fn tree_bytes(&self, key: &str) -> u64 {
        fs::read_to_string(self.tree_meta_path(key))
            .ok()
            .and_then(|text| TreeMeta::parse(&text))
            .filter(|meta| self.tree_dir(key).is_dir() && meta.bytes > 0)
            .map_or(0, |meta| meta.bytes)
    }

    /// The tree of `entry` (the entry of `key`, an archive of `kind`), made now unless it was
    /// made already; an error when it cannot be made or is too large to keep: more than
    /// `max_extract` bytes, or more than `max_cache` with the archive itself.
    pub(crate) fn tree(
        &self,
        key: &str,
        entry: &EntryId,
        kind: ArchiveKind,
        max_extract: u64,
        max_cache: u64,
    ) -> io::Result<Tree> {
        if let Some(tree) = self.ready_tree(key, entry, max_extract, max_cache)? {
            return Ok(tree);
        }
        let _lock = self.lock_entry(key)?;
        if let Some(tree) = self.ready_tree(key, entry, max_extract, max_cache)? {
            return Ok(tree);
        }
        // The entry may have been downloaded again since the caller opened it (what its URI
        // serves can change): a tree is made only of the entry the caller copied.
        let current = fs::metadata(self.entry_path(key))?;
        if (current.len(), current.ino(), born(&current)) != (entry.len, entry.ino, entry.born) {
            return Err(io::Error::other(
                "the cache entry was replaced while it was being fetched",
            ));
        }
        self.remove_tree(key);
        fs::create_dir_all(self.trees())?;
        let tmp = self.tmp_path(key);
        fs::create_dir(&tmp)?;
        let made = extract::extract(&self.entry_path(key), &tmp, kind, max_extract)
            .map_err(io::Error::other)
            .and_then(|entries| Ok((entries, tree_size(&tmp)?)));
        let (entries, bytes) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let meta = TreeMeta {
            entry: entry.clone(),
            bytes,
            entries,
        };
        let fits = bytes <= max_extract && entry.len.saturating_add(bytes) <= max_cache;
        if fits && let Err(e) = fs::rename(&tmp, self.tree_dir(key)) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if !fits {
            let _ = fs::remove_dir_all(&tmp);
        }
        let meta_tmp = self.tmp_path(key);
        fs::write(&meta_tmp, meta.text())?;
        fs::rename(&meta_tmp, self.tree_meta_path(key))?;
        if !fits {
            return Err(too_large(bytes));
        }
        Ok(Tree {
            dir: self.tree_dir(key),
            made: true,
        })
    }

    /// `key`'s tree if its meta names `entry` and the tree is there; an error when the meta
    /// records it too large to keep.
    fn ready_tree(
        &self,
        key: &str,
        entry: &EntryId,
        max_extract: u64,
        max_cache: u64,
    ) -> io::Result<Option<Tree>> {
        let meta = match fs::read_to_string(self.tree_meta_path(key)) {
            Ok(text) => TreeMeta::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(meta) = meta.filter(|meta| &meta.entry == entry) else {
            return Ok(None);
        };
        let dir = self.tree_dir(key);
        let fits = meta.bytes <= max_extract && entry.len.saturating_add(meta.bytes) <= max_cache;
        if !fits {
            return Err(too_large(meta.bytes));
        }
        if !dir.is_dir() {
            // Removed under us, or too large for the bounds of the fetcher that made the
            // meta: made again, as it fits these.
            return Ok(None);
        }
        Ok(Some(Tree { dir, made: false }))
    }

    /// Removes `key`'s tree and its meta: the tree is first renamed aside, so a copy in
    /// progress fails rather than reading a half-removed tree.
    pub(crate) fn remove_tree(&self, key: &str) {
        let dir = self.tree_dir(key);
        if dir.exists() {
            let aside = self.tmp_path(key);
            match fs::rename(&dir, &aside) {
                Ok(()) => {
                    if let Err(e) = fs::remove_dir_all(&aside) {
                        tracing::warn!(path = %aside.display(), error = %e, "cannot remove a fetcher cache tree");
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove a fetcher cache tree")
                }
            }
        }
        let _ = fs::remove_file(self.tree_meta_path(key));
    }
}

fn too_large(bytes: u64) -> io::Error {
    io::Error::other(format!(
        "its extracted tree ({bytes} bytes) is too large to keep in the fetcher cache"
    ))
}

/// The bytes of the regular files under `dir` (symlinks not followed).
fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for item in fs::read_dir(dir)? {
        let item = item?;
        let kind = item.file_type()?;
        if kind.is_dir() {
            total += tree_size(&item.path())?;
        } else if kind.is_file() {
            total += item.metadata()?.len();
        }
    }
    Ok(total)
}

/// Copies `tree` into `sandbox` (blocking) as its extraction would have put it there: regular
/// files with their permission bits and modification times, directories, symlinks as links.
/// Refuses (changing nothing) when a top-level name of the tree is in the sandbox already,
/// where an extraction would have had to merge with what is there; on any failure removes what
/// it added. Returns the number of files, directories and links written.
pub(crate) fn copy_tree(tree: &Path, sandbox: &Path) -> io::Result<usize> {
    let mut names = Vec::new();
    for item in fs::read_dir(tree)? {
        let name = item?.file_name();
        let at = sandbox.join(&name);
        if fs::symlink_metadata(&at).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is in the sandbox already", at.display()),
            ));
        }
        names.push(name);
    }
    let mut count = 0;
    let mut added = Vec::new();
    for name in names {
        let to = sandbox.join(&name);
        added.push(to.clone());
        if let Err(e) = copy_item(&tree.join(&name), &to, &mut count) {
            for path in added {
                let _ = extract::remove_any(&path);
            }
            return Err(e);
        }
    }
    Ok(count)
}

/// Copies one item of a tree to `to`, which does not exist (a directory with all it holds).
fn copy_item(from: &Path, to: &Path, count: &mut usize) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if kind.is_dir() {
        fs::create_dir(to)?;
        for item in fs::read_dir(from)? {
            let item = item?;
            copy_item(&item.path(), &to.join(item.file_name()), count)?;
        }
        fs::set_permissions(to, meta.permissions())?;
    } else if kind.is_file() {
        // `fs::copy` keeps the permission bits (the extraction left only rwx) and copies in
        // the kernel where it can.
        fs::copy(from, to)?;
        File::options()
            .write(true)
            .open(to)?
            .set_modified(meta.modified()?)?;
    } else {
        return Err(io::Error::other(format!(
            "{} is neither a file, a directory nor a link",
            from.display()
        )));
    }
    *count += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A `.tar` holding `pkg/file` with `data`.
    fn tar_with(data: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "pkg/file", data)
            .expect("append");
        builder.into_inner().expect("tar")
    }

    /// Installs `bytes` as the entry of `key` for `uri`; the entry as a fetcher opened it.
    fn install(cache: &Cache, key: &str, uri: &str, bytes: &[u8]) -> EntryId {
        cache.ensure_layout().expect("layout");
        let tmp = cache.tmp_path(key);
        File::create(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .expect("write");
        let hit = cache
            .install(key, uri, &tmp, bytes.len() as u64)
            .expect("install");
        EntryId::of(uri, &hit.file).expect("entry id")
    }

    #[test]
    fn a_meta_reads_back_what_was_written_and_garbage_reads_as_none() {
        let meta = TreeMeta {
            entry: EntryId {
                uri: "http://h/p.tgz".into(),
                len: 7,
                ino: 42,
                born: 1_700_000_000_123_456_789,
            },
            bytes: 9,
            entries: 3,
        };
        assert_eq!(TreeMeta::parse(&meta.text()), Some(meta));
        for garbage in [
            "",
            "uri\n",
            "uri\n1\n2\n3\n",
            "uri\n1\nx\n3\n4\n",
            "uri\n-1\n2\n3\n4\n",
        ] {
            assert_eq!(TreeMeta::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_tree_is_made_once_and_never_of_an_entry_replaced_under_the_fetcher() {
        let dir = tempfile::tempdir().expect("cache dir");
        let cache = Cache::new(dir.path());
        let (key, uri) = ("k", "http://h/p.tar");
        let first = install(&cache, key, uri, &tar_with(b"first"));
        let tree = cache
            .tree(key, &first, ArchiveKind::Tar, 1 << 20, 1 << 20)
            .expect("tree");
        assert!(tree.made);
        assert_eq!(fs::read(tree.dir.join("pkg/file")).expect("file"), b"first");
        let again = cache
            .tree(key, &first, ArchiveKind::Tar, 1 << 20, 1 << 20)
            .expect("tree again");
        assert!(!again.made, "made once");
        assert_eq!(cache.tree_bytes(key), 5);

        // A file that took the first one's inode number and length is still another file.
        let reborn = EntryId {
            born: first.born + 1,
            ..first.clone()
        };
        let refused = cache
            .tree(key, &reborn, ArchiveKind::Tar, 1 << 20, 1 << 20)
            .expect_err("the tree of a file with the same inode and length");
        assert!(refused.to_string().contains("replaced"), "{refused}");

        // Downloaded again (another inode): a fetcher that still holds the first entry gets
        // the first entry's tree while it is there, the second entry's fetchers a tree of
        // their own, and after that no fetcher of the first entry gets a tree: none is made of
        // an entry other than the one the fetcher copied.
        let second = install(&cache, key, uri, &tar_with(b"second!"));
        assert_ne!(first, second);
        let old = cache
            .tree(key, &first, ArchiveKind::Tar, 1 << 20, 1 << 20)
            .expect("the first entry's tree");
        assert_eq!(fs::read(old.dir.join("pkg/file")).expect("file"), b"first");
        let tree = cache
            .tree(key, &second, ArchiveKind::Tar, 1 << 20, 1 << 20)
            .expect("tree of the new entry");
        assert!(tree.made);
        assert_eq!(
            fs::read(tree.dir.join("pkg/file")).expect("file"),
            b"second!"
        );
        let refused = cache
            .tree(key, &first, ArchiveKind::Tar, 1 << 20, 1 << 20)
            .expect_err("a tree of the replaced entry");
        assert!(refused.to_string().contains("replaced"), "{refused}");
        assert_eq!(
            fs::read(tree.dir.join("pkg/file")).expect("file"),
            b"second!"
        );
    }

    #[test]
    fn a_copy_refuses_a_sandbox_that_holds_a_name_of_the_tree_and_changes_nothing() {
        let tree = tempfile::tempdir().expect("tree");
        fs::create_dir_all(tree.path().join("a/b")).expect("dirs");
        fs::write(tree.path().join("a/b/f"), b"f").expect("file");
        fs::write(tree.path().join("z"), b"z").expect("file");
        let sandbox = tempfile::tempdir().expect("sandbox");
        fs::write(sandbox.path().join("z"), b"mine").expect("file");
        let refused = copy_tree(tree.path(), sandbox.path()).expect_err("z is there");
        assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
        assert!(!sandbox.path().join("a").exists(), "nothing added");
        assert_eq!(fs::read(sandbox.path().join("z")).expect("z"), b"mine");

        fs::remove_file(sandbox.path().join("z")).expect("remove");
        assert_eq!(copy_tree(tree.path(), sandbox.path()).expect("copy"), 4);
        assert_eq!(fs::read(sandbox.path().join("a/b/f")).expect("f"), b"f");
    }
}
