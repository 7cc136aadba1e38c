use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::checkpoint::MetaStore;

fn put(store: &mut dyn MetaStore, path: &str, bytes: &[u8]) {
    store.write(Path::new(path), bytes).expect("write");
}

fn open(meta: &Path) -> Result<(JournalStore, MemStore), JournalError> {
    JournalStore::open_with(meta, None, COMPACT_MIN)
}

fn open_small(meta: &Path, compact_min: u64) -> Result<(JournalStore, MemStore), JournalError> {
    JournalStore::open_with(meta, None, compact_min)
}

/// What a restarted agent would find, read without opening the journal
/// for writing (which would compact it under the store still writing).
fn image_of(meta: &Path) -> MemStore {
    JournalStore::read_image(meta).expect("read")
}

#[test]
fn writes_and_removals_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, image) = open(dir.path()).expect("open");
    assert!(image.files.is_empty());
    put(&mut store, "slaves/latest", b"a1");
    put(&mut store, "frameworks/f1/framework.info", b"f");
    put(&mut store, "frameworks/f1/executors/e1/executor.info", b"e");
    put(
        &mut store,
        "frameworks/f1/executors/e1/tasks/t1/task.info",
        b"t",
    );
    put(
        &mut store,
        "frameworks/f1/executors/e1/tasks/t1/task.updates",
        b"u1",
    );
    put(
        &mut store,
        "frameworks/f1/executors/e1/tasks/t1/task.updates",
        b"u2",
    );
    store.flush().expect("flush");
    // A removal takes everything under the path with it.
    store
        .remove(Path::new("frameworks/f1/executors/e1/tasks"))
        .expect("remove");
    store.flush().expect("flush");
    drop(store);

    let image = image_of(dir.path());
    let mut expected = MemStore::default();
    put(&mut expected, "slaves/latest", b"a1");
    put(&mut expected, "frameworks/f1/framework.info", b"f");
    put(
        &mut expected,
        "frameworks/f1/executors/e1/executor.info",
        b"e",
    );
    assert_eq!(image.files, expected.files);
}

#[test]
fn nothing_counts_before_a_flush() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = open(dir.path()).expect("open");
    put(&mut store, "slaves/latest", b"a1");
    // Another process (a restarted agent) sees only flushed frames.
    assert!(image_of(dir.path()).files.is_empty());
    store.flush().expect("flush");
    assert_eq!(image_of(dir.path()).files.len(), 1);
}

#[test]
fn a_torn_last_frame_is_cut_off_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL);
    {
        let (mut store, _) = open(dir.path()).expect("open");
        put(&mut store, "a", b"1");
        put(&mut store, "b", b"2");
        store.flush().expect("flush");
    }
    let whole = std::fs::read(&path).expect("read");
    // The last frame loses its last byte, as after a crash mid-write.
    std::fs::write(&path, &whole[..whole.len() - 1]).expect("tear");
    let (mut store, image) = open(dir.path()).expect("reopen");
    assert_eq!(
        image.files.keys().collect::<Vec<_>>(),
        vec![&PathBuf::from("a")]
    );
    put(&mut store, "c", b"3");
    store.flush().expect("flush");
    drop(store);
    let image = image_of(dir.path());
    assert_eq!(
        image.files.keys().collect::<Vec<_>>(),
        vec![&PathBuf::from("a"), &PathBuf::from("c")]
    );
}

#[test]
fn a_frame_with_a_wrong_checksum_ends_the_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL);
    {
        let (mut store, _) = open(dir.path()).expect("open");
        put(&mut store, "a", b"1");
        store.flush().expect("flush");
        put(&mut store, "b", b"2");
        store.flush().expect("flush");
    }
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage");
    let image = image_of(dir.path());
    assert_eq!(
        image.files.keys().collect::<Vec<_>>(),
        vec![&PathBuf::from("a")]
    );
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL);
    std::fs::write(&path, b"something else entirely").expect("write");
    let error = open(dir.path()).err().expect("an unknown file is refused");
    assert!(matches!(error, JournalError::UnknownFormat { .. }));
    assert!(error.to_string().contains("move it away"), "{error}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        b"something else entirely"
    );
}

#[test]
fn a_second_agent_on_the_same_work_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lock = WorkDirLock::acquire(dir.path()).expect("lock");
    let (_store, _) = JournalStore::open(dir.path(), lock).expect("open");
    let error = WorkDirLock::acquire(dir.path()).expect_err("a second writer is refused");
    assert!(matches!(error, JournalError::InUse { .. }), "{error}");
    assert!(error.to_string().contains("another agent"), "{error}");
}

#[test]
fn the_journal_is_private_to_root() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = open(dir.path()).expect("open");
    put(&mut store, "a", b"1");
    store.flush().expect("flush");
    let mode = std::fs::metadata(dir.path().join(JOURNAL))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, META_FILE_MODE);
}

#[test]
fn compaction_keeps_the_image_and_bounds_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL);
    let (mut store, _) = open_small(dir.path(), 4096).expect("open");
    let mut largest = 0;
    // The same ten files rewritten over and over: the live image stays
    // small, so the journal must be compacted again and again.
    for round in 0..500u32 {
        for file in 0..10 {
            put(
                &mut store,
                &format!("frameworks/f/executors/e{file}/executor.info"),
                format!("round {round}").as_bytes(),
            );
        }
        store.flush().expect("flush");
        largest = largest.max(std::fs::metadata(&path).expect("stat").len());
    }
    assert!(
        largest < 64 * 1024,
        "the journal grew to {largest} bytes for a live image of ten small files"
    );
    let image = image_of(dir.path());
    assert_eq!(image.files.len(), 10);
    assert!(image.files.values().all(|bytes| bytes == b"round 499"));
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>),
    Remove(String),
    Flush,
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["f", "e", "t", "x.info"]), 1..4)
        .prop_map(|parts| parts.join("/"))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path_strategy(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(p, b)| Op::Put(p, b)),
        1 => path_strategy().prop_map(Op::Remove),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    /// Replaying the journal gives what the same history gives in memory,
    /// as of the last flush; cutting the file anywhere after that loses
    /// nothing that was flushed before the cut frame.
    #[test]
    fn replay_matches_the_history_in_memory(
        ops in prop::collection::vec(op_strategy(), 0..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, _) = open_small(dir.path(), 512).expect("open");
        let mut memory = MemStore::default();
        let mut flushed = MemStore::default();
        for op in &ops {
            match op {
                Op::Put(path, bytes) => {
                    put(&mut store, path, bytes);
                    put(&mut memory, path, bytes);
                }
                Op::Remove(path) => {
                    store.remove(Path::new(path)).expect("remove");
                    memory.remove(Path::new(path)).expect("remove");
                }
                Op::Flush => {
                    store.flush().expect("flush");
                    flushed = memory.clone();
                }
            }
        }
        drop(store);
        let image = image_of(dir.path());
        prop_assert_eq!(&image.files, &flushed.files);

        // Any prefix of the file replays to some state without an error, and
        // the reopened journal is again a valid one.
        let path = dir.path().join(JOURNAL);
        let bytes = std::fs::read(&path).expect("read");
        let at = MAGIC.len() + cut.index(bytes.len() - MAGIC.len() + 1);
        std::fs::write(&path, &bytes[..at]).expect("cut");
        let (_, first) = open(dir.path()).expect("reopen after a cut");
        let second = image_of(dir.path());
        prop_assert_eq!(first.files, second.files);
    }
}
