use std::path::Path;

use agora_core::{AgentId, ExecutorId, FrameworkId, TaskId};
use agora_proto::v1 as pb;

use super::*;

fn framework() -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        id: FrameworkId::new("f1").to_field(),
        name: "fw".into(),
        ..Default::default()
    }
}

fn task_info(id: &str) -> pb::TaskInfo {
    pb::TaskInfo {
        name: id.into(),
        task_id: Some(pb::TaskId { value: id.into() }),
        ..Default::default()
    }
}

fn update(uuid: u8, state: pb::TaskState) -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: Some(pb::TaskId { value: "t1".into() }),
        state: Some(state as i32),
        uuid: Some(vec![uuid; 16]),
        ..Default::default()
    }
}

fn records() -> Vec<Checkpoint> {
    let f = FrameworkId::new("f1");
    let e = ExecutorId::new("t1");
    vec![
        Checkpoint::AgentId(AgentId::new("a1")),
        Checkpoint::Framework(framework()),
        Checkpoint::Executor {
            info: None,
            framework_id: f.clone(),
            executor_id: e.clone(),
            task_id: TaskId::new("t1"),
            run: Some(ExecutorRun {
                run_id: "r".into(),
                sandbox: "/s".into(),
                pid: Some(10),
                start_time: 20,
                hosted: false,
            }),
        },
        Checkpoint::Task {
            framework_id: f.clone(),
            executor_id: e.clone(),
            info: task_info("t1"),
        },
        Checkpoint::TaskUpdates {
            framework_id: f,
            executor_id: e,
            task_id: TaskId::new("t1"),
            state: pb::TaskState::TaskRunning,
            pending: vec![
                update(1, pb::TaskState::TaskStarting),
                update(2, pb::TaskState::TaskRunning),
            ],
            // 0 was acknowledged by the master already.
            received: vec![vec![0; 16], vec![1; 16], vec![2; 16]],
        },
    ]
}

fn write_all(store: &mut dyn MetaStore, records: &[Checkpoint]) {
    for record in records {
        apply(store, record).expect("write");
    }
}

fn check_full(recovered: &Recovered) {
    assert_eq!(recovered.agent_id, Some(AgentId::new("a1")));
    assert_eq!(recovered.frameworks, vec![framework()]);
    assert_eq!(recovered.executors.len(), 1);
    assert_eq!(
        recovered.executors[0].run.as_ref().and_then(|r| r.pid),
        Some(10)
    );
    assert_eq!(recovered.tasks.len(), 1);
    assert_eq!(recovered.tasks[0].state, pb::TaskState::TaskRunning);
    assert_eq!(recovered.tasks[0].pending.len(), 2);
    assert_eq!(recovered.tasks[0].pending[1].uuid, Some(vec![2; 16]));
    assert_eq!(
        recovered.tasks[0].received,
        vec![vec![0; 16], vec![1; 16], vec![2; 16]],
        "the uuids taken, acknowledged ones too"
    );
}

#[test]
fn records_round_trip_in_memory_and_on_disk() {
    let mut memory = MemStore::default();
    write_all(&mut memory, &records());
    check_full(&recover(&memory));

    let dir = tempfile::tempdir().expect("temp dir");
    let mut disk = FsStore::new(dir.path().join("meta"));
    write_all(&mut disk, &records());
    check_full(&recover(&disk));
    assert!(
        dir.path()
            .join("meta/frameworks/f1/executors/t1/tasks/t1/task.updates")
            .exists()
    );

    // Removing the task and then the executor leaves only the framework's info.
    let f = FrameworkId::new("f1");
    let e = ExecutorId::new("t1");
    apply(
        &mut disk,
        &Checkpoint::RemoveTask {
            framework_id: f.clone(),
            executor_id: e.clone(),
            task_id: TaskId::new("t1"),
        },
    )
    .expect("remove task");
    apply(
        &mut disk,
        &Checkpoint::RemoveExecutor {
            framework_id: f.clone(),
            executor_id: e,
        },
    )
    .expect("remove executor");
    assert!(!dir.path().join("meta/frameworks/f1/executors").exists());
    let recovered = recover(&disk);
    assert!(recovered.tasks.is_empty() && recovered.executors.is_empty());
    apply(&mut disk, &Checkpoint::RemoveFramework(f)).expect("remove framework");
    assert!(!dir.path().join("meta/frameworks/f1").exists());
}

#[test]
fn damaged_files_are_skipped_without_panicking() {
    let mut store = MemStore::default();
    write_all(&mut store, &records());
    let task_dir = Path::new("frameworks/f1/executors/t1/tasks/t1");
    // Garbage where protobuf and JSON are expected.
    store.files.insert(
        Path::new("frameworks/f1/executors/t1/executor.info").into(),
        b"{not json".to_vec(),
    );
    store
        .files
        .insert(task_dir.join("task.updates"), vec![0xff; 7]);
    store
        .files
        .insert(Path::new("slaves/latest").into(), vec![0xc3, 0x28]);
    // A task directory without its info, and a stray temp file.
    store.files.insert(
        Path::new("frameworks/f1/executors/t1/tasks/t2/task.updates").into(),
        Vec::new(),
    );
    store
        .files
        .insert(task_dir.join("task.info.tmp"), b"partial".to_vec());
    let recovered = recover(&store);
    assert_eq!(recovered.agent_id, None);
    assert!(recovered.executors.is_empty(), "corrupt executor skipped");
    assert_eq!(recovered.tasks.len(), 1, "the task with its info is kept");
    assert_eq!(recovered.tasks[0].state, pb::TaskState::TaskStaging);

    // A truncated protobuf task info is skipped too.
    let mut store = MemStore::default();
    write_all(&mut store, &records());
    let info = store
        .files
        .get_mut(&task_dir.join("task.info"))
        .expect("written");
    info.truncate(info.len() / 2);
    info.push(0xff);
    assert!(recover(&store).tasks.is_empty());
}

#[test]
fn ids_that_cannot_be_path_components_are_refused() {
    let mut store = MemStore::default();
    for bad in ["..", "a/b", ""] {
        let record = Checkpoint::Framework(pb::FrameworkInfo {
            id: Some(pb::FrameworkId { value: bad.into() }),
            ..Default::default()
        });
        assert!(apply(&mut store, &record).is_err(), "{bad:?}");
    }
    assert!(store.files.is_empty());
}

#[test]
fn a_batch_keeps_only_the_last_write_of_each_task_queue() {
    let f = FrameworkId::new("f1");
    let e = ExecutorId::new("t1");
    let updates = |n: usize| Checkpoint::TaskUpdates {
        framework_id: f.clone(),
        executor_id: e.clone(),
        task_id: TaskId::new("t1"),
        state: pb::TaskState::TaskRunning,
        pending: (0..n)
            .map(|i| update(i as u8, pb::TaskState::TaskRunning))
            .collect(),
        received: Vec::new(),
    };
    let remove = Checkpoint::RemoveTask {
        framework_id: f.clone(),
        executor_id: e.clone(),
        task_id: TaskId::new("t1"),
    };
    let agent = Checkpoint::AgentId(AgentId::new("a1"));
    let batch = vec![
        updates(1),
        agent.clone(),
        updates(2),
        updates(3),
        remove.clone(),
        updates(4),
    ];
    assert_eq!(
        coalesce(batch),
        vec![updates(3), agent, remove, updates(4)],
        "the last write before the removal takes the first one's place"
    );
    // Whatever the coalescing, the files end up as with every write.
    let mut all = MemStore::default();
    let mut fewer = MemStore::default();
    let batch = records()
        .into_iter()
        .chain([updates(1), updates(2)])
        .collect::<Vec<_>>();
    write_all(&mut all, &batch);
    write_all(&mut fewer, &coalesce(batch));
    assert_eq!(all.files, fewer.files);
}

/// Task definitions (with their environment's secrets) are readable by the
/// agent's user only, and a checkpoint left world-readable by an older
/// agent is made private before it is used.
#[test]
fn the_checkpoint_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("meta");
    let mut store = FsStore::new(root.clone());
    for record in records() {
        apply(&mut store, &record).expect("apply");
    }
    let mode = |path: &Path| {
        std::fs::symlink_metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o7777
    };
    let mut seen = 0;
    let mut check = |path: &Path| {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(path), want, "{}", path.display());
        seen += 1;
    };
    fn visit(path: &Path, check: &mut dyn FnMut(&Path)) {
        check(path);
        if path.is_dir() {
            for entry in std::fs::read_dir(path).expect("read dir") {
                visit(&entry.expect("entry").path(), check);
            }
        }
    }
    visit(&root, &mut check);
    assert!(seen > 5, "the records wrote files");

    // An older agent's modes: world-readable files and directories.
    let task_file = std::fs::read_dir(&root)
        .expect("root")
        .next()
        .expect("an entry")
        .expect("entry")
        .path();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&task_file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let loose = root.join("loose");
    std::fs::write(&loose, b"x").expect("write");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(store.harden().expect("harden") >= 3);
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&loose), 0o600);
    assert_eq!(store.harden().expect("harden again"), 0);

    // A rewrite of an existing file leaves it private too.
    std::fs::set_permissions(root.join("slaves"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    apply(&mut store, &Checkpoint::AgentId(AgentId::new("a2"))).expect("apply");
    assert_eq!(mode(&root.join("slaves/latest")), 0o600);
}

#[test]
fn removing_a_path_removes_exactly_it_and_what_is_under_it() {
    let mut store = MemStore::default();
    let names = [
        "a", "a/a", "a/b", "a/b/c", "a/b/c/d", "a/b.x", "a/bc", "a/b-", "a/c", "b", "b/a/b",
    ];
    for name in names {
        store
            .write(Path::new(name), name.as_bytes())
            .expect("write");
    }
    store.remove(Path::new("a/b")).expect("remove");
    let left: Vec<&str> = store
        .files
        .keys()
        .map(|p| p.to_str().expect("utf-8"))
        .collect();
    let expected: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !Path::new(n).starts_with("a/b"))
        .collect();
    let mut expected = expected;
    expected.sort_by(|x, y| Path::new(x).cmp(Path::new(y)));
    assert_eq!(left, expected);
    store.remove(Path::new("zzz")).expect("nothing under it");
    store.remove(Path::new("a")).expect("remove");
    assert_eq!(
        store
            .files
            .keys()
            .map(|p| p.to_str().expect("utf-8"))
            .collect::<Vec<_>>(),
        ["b", "b/a/b"]
    );
}

#[test]
fn listing_a_directory_sees_only_what_is_under_it() {
    let mut store = MemStore::default();
    for path in [
        "f/executors/e1/runs/r1/pids",
        "f/executors/e1/runs/r2/pids",
        "f/executors/e1/executor.info",
        "f/executors/e1-2/runs/r3/pids",
        "f/executors/e10/runs/r4/pids",
        "f/executors/e0/runs/r5/pids",
        "g/executors/e1/runs/r6/pids",
    ] {
        store.write(Path::new(path), b"x").expect("write");
    }
    let dirs = |p: &str| store.list_dirs(Path::new(p)).expect("list");
    assert_eq!(dirs("f/executors"), ["e0", "e1", "e1-2", "e10"]);
    assert_eq!(dirs("f/executors/e1/runs"), ["r1", "r2"]);
    // A file is not a directory; a missing directory lists nothing.
    assert_eq!(dirs("f/executors/e1"), ["runs"]);
    assert!(dirs("f/executors/e2").is_empty());
    assert!(dirs("h").is_empty());
}
