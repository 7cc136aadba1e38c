use proptest::prelude::*;

use super::format::{self, Snapshot};
use super::*;
use crate::registry::MemoryRegistryStore;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

async fn load(dir: &Path) -> Result<Vec<RegistryEntry>, RegistryError> {
    FileRegistryStore::new(dir).load().await
}

fn summary(entries: &[RegistryEntry]) -> Vec<(String, u64, Vec<u8>)> {
    entries
        .iter()
        .map(|e| (e.key.clone(), e.version.0, e.value.clone()))
        .collect()
}

fn expect_corrupt(result: Result<Vec<RegistryEntry>, RegistryError>, file: &str, what: &str) {
    match result {
        Err(RegistryError::Corrupt { location, reason }) => {
            assert!(location.ends_with(file), "{what}: {location}");
            assert!(!reason.is_empty(), "{what}");
        }
        other => panic!("{what}: expected corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn file_store_follows_the_contract() {
    let dir = dir();
    let store = FileRegistryStore::new(dir.path().join("reg"));
    crate::registry::contract::check_registry_store(&store).await;
    // A second store on the same directory sees the same entries.
    assert_eq!(
        load(&dir.path().join("reg")).await.expect("load"),
        store.load().await.expect("load")
    );
}

#[tokio::test]
async fn missing_files_are_empty_and_leftover_temps_are_ignored() {
    let dir = dir();
    assert!(load(dir.path()).await.expect("empty").is_empty());
    let store = FileRegistryStore::new(dir.path());
    store.put("a", b"1".to_vec(), None).await.expect("put");

    // A crash while either temporary file was being written.
    fs::write(dir.path().join(SNAPSHOT_TEMP), b"half-written garbage").expect("write temp");
    fs::write(dir.path().join(LOG_TEMP), b"more garbage").expect("write temp");
    let reopened = FileRegistryStore::new(dir.path());
    let loaded = reopened.load().await.expect("load ignores the temp files");
    assert_eq!(summary(&loaded), [("a".into(), 0, b"1".to_vec())]);
    reopened
        .put("a", b"2".to_vec(), Some(Version(0)))
        .await
        .expect("put");
    assert_eq!(
        summary(&load(dir.path()).await.expect("load")),
        [("a".into(), 1, b"2".to_vec())]
    );
}

#[tokio::test]
async fn corrupt_snapshots_are_reported() {
    let dir = dir();
    let store = FileRegistryStore::new(dir.path());
    store.put("a", b"value".to_vec(), None).await.expect("put");
    let good = fs::read(store.path()).expect("read");

    let mut flipped = good.clone();
    flipped[20] ^= 0xff;
    let cases: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 3].to_vec()),
        ("flipped", flipped),
        ("foreign", b"{\"json\": true, \"not\": \"ours\"}".to_vec()),
    ];
    for (name, bytes) in cases {
        fs::write(store.path(), &bytes).expect("write");
        let fresh = FileRegistryStore::new(dir.path());
        expect_corrupt(fresh.load().await, REGISTRY_FILE, name);
        // Writes refuse to build on a corrupt registry too.
        assert!(
            matches!(
                fresh.put("b", Vec::new(), None).await,
                Err(RegistryError::Corrupt { .. })
            ),
            "{name}"
        );
    }
}

/// Puts `a`..`e` (the last one twice) and deletes `b`, through one store.
async fn five_writes(dir: &Path) -> Vec<RegistryEntry> {
    let store = FileRegistryStore::new(dir);
    for key in ["a", "b", "c", "d", "e"] {
        store
            .put(key, key.repeat(40).into_bytes(), None)
            .await
            .expect("put");
    }
    store
        .put("e", b"again".to_vec(), Some(Version(0)))
        .await
        .expect("put");
    store.delete("b", Some(Version(0))).await.expect("delete");
    store.load().await.expect("load")
}

#[tokio::test]
async fn a_torn_last_record_is_cut_away() {
    let dir = dir();
    let before = five_writes(dir.path()).await;
    let log_path = dir.path().join(REGISTRY_LOG);
    let whole = fs::read(&log_path).expect("read log");

    // A crash mid-append leaves part of the next record: its first bytes,
    // all but its last byte, or space the file system extended with zeros.
    let mut next = Vec::new();
    format::encode_put("f", Version(0), &[b'f'; 300], &mut next);
    for (name, tail) in [
        ("a few bytes", next[..5].to_vec()),
        ("all but one byte", next[..next.len() - 1].to_vec()),
        ("zeros", vec![0; 4096]),
        ("damaged", {
            let mut damaged = next.clone();
            damaged[40] ^= 1;
            damaged
        }),
    ] {
        let mut torn = whole.clone();
        torn.extend_from_slice(&tail);
        fs::write(&log_path, &torn).expect("write");
        let store = FileRegistryStore::new(dir.path());
        assert_eq!(store.load().await.expect(name), before, "{name}");
        assert_eq!(
            fs::read(&log_path).expect("read"),
            whole,
            "{name}: cut back"
        );
        // Appends continue after the last whole record.
        store
            .put("f", b"new".to_vec(), None)
            .await
            .expect("put after a torn tail");
        let after = load(dir.path()).await.expect("load");
        assert_eq!(after.len(), before.len() + 1, "{name}");
        store.delete("f", None).await.expect("delete");
        fs::write(&log_path, &whole).expect("restore");
    }
}

#[tokio::test]
async fn a_damaged_record_before_the_last_is_corrupt() {
    let dir = dir();
    five_writes(dir.path()).await;
    let log_path = dir.path().join(REGISTRY_LOG);
    let whole = fs::read(&log_path).expect("read log");
    let header = format::LOG_HEADER_BYTES;
    for (name, at) in [
        ("first record's length", header),
        ("first record's checksum", header + 8),
        ("first record's value", header + 30),
        ("a middle record", whole.len() / 2),
    ] {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x10;
        fs::write(&log_path, &damaged).expect("write");
        expect_corrupt(load(dir.path()).await, REGISTRY_LOG, name);
        // Nothing was cut.
        assert_eq!(fs::read(&log_path).expect("read"), damaged, "{name}");
    }
    let mut header_damaged = whole.clone();
    header_damaged[12] ^= 1;
    fs::write(&log_path, &header_damaged).expect("write");
    expect_corrupt(load(dir.path()).await, REGISTRY_LOG, "header");
}

#[tokio::test]
async fn a_crash_between_the_snapshot_and_the_new_log_loses_nothing() {
    let dir = dir();
    let before = five_writes(dir.path()).await;
    let snapshot =
        format::decode_snapshot(&fs::read(dir.path().join(REGISTRY_FILE)).expect("read"))
            .expect("decode");
    let log_path = dir.path().join(REGISTRY_LOG);
    let old_log = fs::read(&log_path).expect("read log");
    assert_eq!(format::decode_log_header(&old_log), Ok(snapshot.generation));

    // The compaction wrote and renamed the next snapshot, then the master
    // died before the new log replaced the old one.
    let map: Map = before
        .iter()
        .map(|e| (e.key.clone(), (e.version, e.value.clone())))
        .collect();
    let next = snapshot.generation + 1;
    fs::write(
        dir.path().join(REGISTRY_FILE),
        format::encode_snapshot(next, &map),
    )
    .expect("write snapshot");
    let store = FileRegistryStore::new(dir.path());
    assert_eq!(store.load().await.expect("load"), before);
    // The stale log is replaced by the first write, and nothing returns.
    store
        .put("a", b"later".to_vec(), Some(Version(0)))
        .await
        .expect("put");
    let log = fs::read(&log_path).expect("read log");
    assert_eq!(format::decode_log_header(&log), Ok(next));
    let after = load(dir.path()).await.expect("load");
    assert_eq!(after[0].value, b"later");
    assert_eq!(after.len(), before.len());

    // A log newer than its snapshot: the snapshot was lost or replaced.
    fs::write(&log_path, format::encode_log_header(next + 1)).expect("write");
    expect_corrupt(load(dir.path()).await, REGISTRY_LOG, "newer log");
    fs::remove_file(dir.path().join(REGISTRY_FILE)).expect("remove");
    expect_corrupt(load(dir.path()).await, REGISTRY_LOG, "log alone");
}

#[tokio::test]
async fn compaction_keeps_everything_and_bounds_the_log() {
    let dir = dir();
    let store = FileRegistryStore::with_compact_min(dir.path().to_owned(), 4096);
    let memory = MemoryRegistryStore::new();
    let mut versions = std::collections::HashMap::new();
    for round in 0..200u64 {
        let key = format!("agent:{}", round % 17);
        let value = vec![(round % 251) as u8; 100 + (round as usize % 5) * 50];
        let expected = versions.get(&key).copied();
        if round % 7 == 3 {
            store.delete(&key, None).await.expect("delete");
            memory.delete(&key, None).await.expect("delete");
            versions.remove(&key);
        } else {
            let version = store.put(&key, value.clone(), expected).await.expect("put");
            assert_eq!(
                memory.put(&key, value, expected).await.expect("put"),
                version
            );
            versions.insert(key, version);
        }
    }
    let want = memory.load().await.expect("load");
    assert_eq!(store.load().await.expect("load"), want);
    assert_eq!(load(dir.path()).await.expect("reload"), want);
    let snapshot = format::decode_snapshot(&fs::read(store.path()).expect("read")).expect("decode");
    assert!(
        snapshot.generation > 2,
        "compacted: {}",
        snapshot.generation
    );
    let live: u64 = want
        .iter()
        .map(|e| format::put_frame_len(&e.key, &e.value))
        .sum();
    let log_len = fs::metadata(store.log_path()).expect("stat").len();
    assert!(
        log_len <= 4096.max(2 * live) + 1024,
        "log {log_len} bytes for {live} live"
    );
}

#[tokio::test]
async fn an_old_registry_is_read_and_migrated_on_the_first_write() {
    let dir = dir();
    let mut old = Map::new();
    old.insert("agent:S1".into(), (Version(4), b"{\"id\":\"S1\"}".to_vec()));
    old.insert("weights".into(), (Version(0), b"[]".to_vec()));
    fs::write(
        dir.path().join(REGISTRY_FILE),
        format::encode_snapshot_v1(&old),
    )
    .expect("write");
    let store = FileRegistryStore::new(dir.path());
    let loaded = store.load().await.expect("load v1");
    assert_eq!(
        summary(&loaded),
        [
            ("agent:S1".into(), 4, b"{\"id\":\"S1\"}".to_vec()),
            ("weights".into(), 0, b"[]".to_vec())
        ]
    );
    assert!(!store.log_path().exists(), "reading changes nothing");

    store
        .put("agent:S1", b"{}".to_vec(), Some(Version(4)))
        .await
        .expect("put");
    let snapshot = format::decode_snapshot(&fs::read(store.path()).expect("read")).expect("decode");
    assert_eq!(
        snapshot,
        Snapshot {
            generation: 1,
            map: old
        },
        "the old registry became the first snapshot"
    );
    let reloaded = load(dir.path()).await.expect("reload");
    assert_eq!(reloaded[0].version, Version(5));
    assert_eq!(reloaded[0].value, b"{}");
    assert_eq!(reloaded[1].key, "weights");
}

#[tokio::test]
async fn writers_share_an_fsync() {
    let dir = dir();
    let store = FileRegistryStore::new(dir.path());
    store.put("first", Vec::new(), None).await.expect("put");
    let syncs = store.syncs();
    store
        .put_pair(("a", b"1".to_vec()), ("b", b"2".to_vec()))
        .await
        .expect("puts");
    assert_eq!(store.syncs(), syncs + 1, "one fsync for both records");
    assert_eq!(load(dir.path()).await.expect("load").len(), 3);

    // Many writers at once: every one resolves, durable.
    let writes = (0..64).map(|i| {
        let store = store.clone();
        async move {
            store
                .put(&format!("k{i}"), vec![1; 300], None)
                .await
                .expect("put")
        }
    });
    futures::future::join_all(writes).await;
    assert_eq!(load(dir.path()).await.expect("load").len(), 67);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_takes_one_blocking_thread_at_a_time() {
    let dir = dir();
    let store = FileRegistryStore::new(dir.path());
    // Spawned, so that the writes start from both workers at once, as an
    // agent session's do.
    let writes: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.put(&format!("agent:{i}"), vec![7; 200], None).await })
        })
        .collect();
    for write in writes {
        write.await.expect("write task").expect("put");
    }
    assert_eq!(load(dir.path()).await.expect("load").len(), 200);
    assert_eq!(
        store.most_running(),
        1,
        "operations waited on blocking threads"
    );
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Put {
        key: usize,
        len: usize,
        expected: Expect,
    },
    Delete {
        key: usize,
        expected: Expect,
    },
    /// Drop the store and open the directory again (as after a restart).
    Reopen,
}

/// What a write expects of its key.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `None`.
    Nothing,
    /// The version the key is at (`Version(0)` when absent).
    Current,
    /// A version it is not at.
    Stale,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        1 => Just(Expect::Nothing),
        3 => Just(Expect::Current),
        1 => Just(Expect::Stale)
    ];
    prop_oneof![
        6 => (0..5usize, 0..120usize, expect.clone())
            .prop_map(|(key, len, expected)| Op::Put { key, len, expected }),
        2 => (0..5usize, expect).prop_map(|(key, expected)| Op::Delete { key, expected }),
        1 => Just(Op::Reopen),
    ]
}

fn outcome<T: std::fmt::Debug>(result: &Result<T, RegistryError>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(RegistryError::Conflict { .. }) => "conflict".to_owned(),
        Err(error) => format!("error {error}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of puts and deletes, with reopens anywhere and a log
    /// small enough to be compacted often, behaves as the memory store.
    #[test]
    fn the_file_store_behaves_as_the_memory_store(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let dir = dir();
            let open = || FileRegistryStore::with_compact_min(dir.path().to_owned(), 300);
            let mut store = open();
            let memory = MemoryRegistryStore::new();
            for (step, op) in ops.into_iter().enumerate() {
                let current = |key: &str, entries: &[RegistryEntry]| {
                    entries.iter().find(|e| e.key == key).map(|e| e.version)
                };
                let model = memory.load().await.expect("load");
                let expected = |key: &str, expect: Expect| match expect {
                    Expect::Nothing => None,
                    Expect::Current => Some(current(key, &model).unwrap_or(Version(0))),
                    Expect::Stale => Some(Version(current(key, &model).map_or(3, |v| v.0 + 2))),
                };
                match op {
                    Op::Put { key, len, expected: expect } => {
                        let key = format!("k{key}");
                        let value = vec![step as u8; len];
                        let expected = expected(&key, expect);
                        let got = store.put(&key, value.clone(), expected).await;
                        let want = memory.put(&key, value, expected).await;
                        assert_eq!(outcome(&got), outcome(&want), "step {step}");
                    }
                    Op::Delete { key, expected: expect } => {
                        let key = format!("k{key}");
                        let expected = expected(&key, expect);
                        let got = store.delete(&key, expected).await;
                        let want = memory.delete(&key, expected).await;
                        assert_eq!(outcome(&got), outcome(&want), "step {step}");
                    }
                    Op::Reopen => {
                        store = open();
                        assert_eq!(
                            store.load().await.expect("reload"),
                            memory.load().await.expect("load"),
                            "step {step}"
                        );
                    }
                }
            }
            assert_eq!(
                load(dir.path()).await.expect("reload"),
                memory.load().await.expect("load")
            );
        });
    }
}
