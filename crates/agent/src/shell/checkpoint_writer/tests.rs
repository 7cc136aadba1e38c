use agora_core::{AgentId, ExecutorId, FrameworkId, TaskId};
use agora_proto::v1 as pb;

use super::*;
use crate::checkpoint::MetaStore;

fn records() -> Vec<Checkpoint> {
    let framework_id = FrameworkId::new("f1");
    let executor_id = ExecutorId::new("t1");
    vec![
        Checkpoint::AgentId(AgentId::new("a1")),
        Checkpoint::Framework(pb::FrameworkInfo {
            id: framework_id.to_field(),
            name: "fw".into(),
            ..Default::default()
        }),
        Checkpoint::Executor {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            task_id: TaskId::new("t1"),
            info: None,
            run: None,
        },
        Checkpoint::Task {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            info: pb::TaskInfo {
                name: "t1".into(),
                task_id: Some(pb::TaskId { value: "t1".into() }),
                ..Default::default()
            },
        },
        Checkpoint::TaskUpdates {
            framework_id,
            executor_id,
            task_id: TaskId::new("t1"),
            state: pb::TaskState::TaskRunning,
            pending: vec![pb::TaskStatus {
                task_id: Some(pb::TaskId { value: "t1".into() }),
                state: Some(pb::TaskState::TaskRunning as i32),
                uuid: Some(vec![7; 16]),
                ..Default::default()
            }],
            received: vec![vec![7; 16]],
        },
    ]
}

fn check(recovered: &Recovered) {
    assert_eq!(recovered.agent_id, Some(AgentId::new("a1")));
    assert_eq!(recovered.frameworks.len(), 1);
    assert_eq!(recovered.executors.len(), 1);
    assert_eq!(recovered.tasks.len(), 1);
    assert_eq!(recovered.tasks[0].state, pb::TaskState::TaskRunning);
    assert_eq!(recovered.tasks[0].pending[0].uuid, Some(vec![7; 16]));
}

fn this_boot() -> String {
    procfs::current_boot_id().expect("boot id")
}

#[test]
fn an_older_agents_checkpoint_files_are_carried_into_the_journal_once() {
    let work_dir = tempfile::tempdir().expect("temp dir");
    let meta = work_dir.path().join("meta");
    let mut files = FsStore::new(meta.clone());
    files
        .write(
            std::path::Path::new(checkpoint::BOOT_ID),
            this_boot().as_bytes(),
        )
        .expect("boot id");
    for record in records() {
        checkpoint::apply(&mut files, &record).expect("write the old layout");
    }
    assert!(
        meta.join("frameworks/f1/executors/t1/tasks/t1/task.updates")
            .exists()
    );

    let (store, recovered) = open_checkpoint(work_dir.path()).expect("open");
    check(&recovered);
    assert!(!meta.join("frameworks").exists() && !meta.join("slaves").exists());
    assert!(meta.join(checkpoint::journal::JOURNAL).exists());
    drop(store);

    // The next start reads the journal alone, and finds the same.
    let (_store, recovered) = open_checkpoint(work_dir.path()).expect("reopen");
    check(&recovered);
}

#[test]
fn records_written_through_the_journal_are_recovered_at_the_next_start() {
    let work_dir = tempfile::tempdir().expect("temp dir");
    let (mut store, recovered) = open_checkpoint(work_dir.path()).expect("open");
    assert_eq!(recovered, Recovered::default());
    for record in records() {
        checkpoint::apply(&mut store, &record).expect("append");
    }
    store.flush().expect("flush");
    drop(store);
    let (_store, recovered) = open_checkpoint(work_dir.path()).expect("reopen");
    check(&recovered);
}

#[test]
fn a_checkpoint_from_another_boot_is_discarded() {
    let work_dir = tempfile::tempdir().expect("temp dir");
    let meta = work_dir.path().join("meta");
    {
        let (mut store, _) = open_checkpoint(work_dir.path()).expect("open");
        for record in records() {
            checkpoint::apply(&mut store, &record).expect("append");
        }
        store.flush().expect("flush");
    }
    std::fs::write(meta.join(checkpoint::BOOT_ID), "another-boot").expect("boot id");
    let (_store, recovered) = open_checkpoint(work_dir.path()).expect("open");
    assert_eq!(recovered, Recovered::default());
    assert_eq!(
        std::fs::read_to_string(meta.join(checkpoint::BOOT_ID)).expect("boot id"),
        this_boot()
    );
}

#[test]
fn a_second_agent_on_the_same_work_directory_changes_nothing() {
    let work_dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = open_checkpoint(work_dir.path()).expect("open");
    for record in records() {
        checkpoint::apply(&mut store, &record).expect("append");
    }
    store.flush().expect("flush");
    let journal = work_dir
        .path()
        .join("meta")
        .join(checkpoint::journal::JOURNAL);
    let before = std::fs::read(&journal).expect("journal");
    let error = open_checkpoint(work_dir.path())
        .err()
        .expect("the second agent is refused");
    assert!(error.to_string().contains("another agent"), "{error}");
    assert_eq!(std::fs::read(&journal).expect("journal"), before);
}
