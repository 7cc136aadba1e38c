use std::sync::Arc;

use proptest::prelude::*;

use super::{ChunkCache, make};
use crate::mesos_v0::state_json;
use crate::mesos_v0::tests::fixture;
use crate::snapshot::test_views::task;
use crate::snapshot::{FrameworkView, SharedList, StateSnapshot, TaskView};

const STARTED: f64 = 42.5;

/// The fixture (agents, offers, a completed framework, a custom executor)
/// with a framework of `n` tasks over several chunks, every seventh
/// unreachable, and some completed ones.
fn big(n: usize) -> StateSnapshot {
    let mut s = fixture();
    let mut frameworks: Vec<FrameworkView> = s.frameworks.iter().cloned().collect();
    let mut f = frameworks[0].clone();
    f.id = "f2".to_owned();
    f.tasks = (0..n)
        .map(|i| {
            let state = if i % 7 == 3 {
                "TASK_UNREACHABLE"
            } else {
                "TASK_RUNNING"
            };
            let mut t = task(&format!("f2-task-{i:05}"), state);
            t.framework_id = "f2".to_owned();
            if i % 5 == 0 {
                t.executor_id = format!("exec-{}", i % 3);
            }
            t
        })
        .collect();
    f.completed_tasks = (0..n / 4)
        .map(|i| task(&format!("f2-done-{i:05}"), "TASK_FINISHED"))
        .collect();
    frameworks.push(f);
    s.frameworks = frameworks.into();
    s
}

fn whole(s: &StateSnapshot) -> Vec<u8> {
    state_json(s, STARTED).expect("serializes")
}

#[test]
fn a_body_is_the_same_bytes_as_the_whole_serialization() {
    for s in [fixture(), big(300), StateSnapshot::default()] {
        let mut cache = ChunkCache::default();
        let rope = make(&s, STARTED, &mut cache).expect("body");
        assert_eq!(rope.to_vec(), whole(&s));
        assert!(rope.pieces().iter().all(|p| !p.is_empty()));
    }
    let s = big(300);
    let value: serde_json::Value = serde_json::from_slice(
        &make(&s, STARTED, &mut ChunkCache::default())
            .expect("body")
            .to_vec(),
    )
    .expect("json");
    let f2 = &value["frameworks"][1];
    assert_eq!(f2["tasks"].as_array().map(Vec::len), Some(257));
    assert_eq!(f2["unreachable_tasks"].as_array().map(Vec::len), Some(43));
    assert_eq!(f2["completed_tasks"].as_array().map(Vec::len), Some(75));
    assert_eq!(f2["unreachable_tasks"][0]["state"], "TASK_UNREACHABLE");
}

#[test]
fn an_unchanged_snapshot_makes_no_task_json_again() {
    let s = big(300);
    let mut cache = ChunkCache::default();
    let first = make(&s, STARTED, &mut cache).expect("first");
    let held = cache.len();
    // Each chunk of live tasks shows in two parts; completed ones in one.
    let chunks = |l: &SharedList<TaskView>| l.chunks().len();
    let expected: usize = s
        .frameworks
        .iter()
        .chain(&s.completed_frameworks)
        .map(|f| 2 * chunks(&f.tasks) + chunks(&f.completed_tasks))
        .sum();
    assert_eq!(held, expected);
    let again = make(&s, STARTED, &mut cache).expect("again");
    assert_eq!(again.to_vec(), first.to_vec());
    assert_eq!(cache.len(), held);
    // Only the head is made again: every task piece is the first body's.
    let holes = 3 * (s.frameworks.len() + s.completed_frameworks.len());
    assert_eq!(made_again(&first, &again), holes + 1);
}

#[test]
fn a_changed_task_remakes_its_chunk_only() {
    let s = big(300);
    let mut cache = ChunkCache::default();
    let first = make(&s, STARTED, &mut cache).expect("first");
    let mut next = s.clone();
    let mut frameworks: Vec<FrameworkView> = next.frameworks.iter().cloned().collect();
    let mut gone = task("f2-task-00151", "TASK_UNREACHABLE");
    gone.framework_id = "f2".to_owned();
    frameworks[1].tasks.upsert(Arc::new(gone));
    next.frameworks = frameworks.into();

    let second = make(&next, STARTED, &mut cache).expect("second");
    assert_eq!(second.to_vec(), whole(&next));
    let value: serde_json::Value = serde_json::from_slice(&second.to_vec()).expect("json");
    let f2 = &value["frameworks"][1];
    assert_eq!(f2["tasks"].as_array().map(Vec::len), Some(256));
    assert_eq!(f2["unreachable_tasks"].as_array().map(Vec::len), Some(44));
    // Made again: the head's pieces (one more than the holes) and the
    // changed chunk's two parts; every other piece lies in the first
    // body's bytes.
    let holes = 3 * (next.frameworks.len() + next.completed_frameworks.len());
    assert_eq!(made_again(&first, &second), holes + 1 + 2);
}

/// How many of `second`'s pieces do not lie inside one of `first`'s (a
/// list's first piece is its chunk's bytes less the leading comma).
fn made_again(
    first: &crate::snapshot::state_body::Rope,
    second: &crate::snapshot::state_body::Rope,
) -> usize {
    let within = |p: &bytes::Bytes| {
        let at = p.as_ptr() as usize;
        first.pieces().iter().any(|q| {
            let start = q.as_ptr() as usize;
            at >= start && at + p.len() <= start + q.len()
        })
    };
    second.pieces().iter().filter(|p| !within(p)).count()
}

/// A change the read model may make to a framework's tasks.
#[derive(Debug, Clone)]
enum Change {
    Upsert { task: usize, state: usize },
    Remove { task: usize },
    Complete { task: usize },
}

const STATES: [&str; 4] = [
    "TASK_RUNNING",
    "TASK_UNREACHABLE",
    "TASK_STAGING",
    "TASK_FINISHED",
];

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..400usize, 0..STATES.len()).prop_map(|(task, state)| Change::Upsert { task, state }),
        (0..400usize).prop_map(|task| Change::Remove { task }),
        (0..400usize).prop_map(|task| Change::Complete { task }),
    ]
}

fn apply(s: &mut StateSnapshot, change: &Change) {
    let mut frameworks: Vec<FrameworkView> = s.frameworks.iter().cloned().collect();
    let f = &mut frameworks[1];
    let id = |n: usize| format!("f2-task-{n:05}");
    match change {
        Change::Upsert { task: n, state } => {
            let mut t = task(&id(*n), STATES[*state]);
            t.framework_id = "f2".to_owned();
            t.executor_id = format!("exec-{}", n % 4);
            f.tasks.upsert(Arc::new(t));
        }
        Change::Remove { task: n } => {
            f.tasks.remove_key(&id(*n));
        }
        Change::Complete { task: n } => {
            if let Some(t) = f.tasks.remove_key(&id(*n)) {
                f.completed_tasks.upsert(t);
            }
        }
    }
    s.frameworks = frameworks.into();
}

proptest! {
    /// After any run of changes, every body in a row is the same bytes as
    /// the whole serialization of its snapshot.
    #[test]
    fn bodies_in_a_row_equal_the_whole_serialization(
        rounds in proptest::collection::vec(proptest::collection::vec(change(), 0..40), 1..6),
    ) {
        let mut s = big(200);
        let mut cache = ChunkCache::default();
        for changes in &rounds {
            for c in changes {
                apply(&mut s, c);
            }
            let body = make(&s, STARTED, &mut cache).expect("body");
            prop_assert_eq!(body.to_vec(), whole(&s));
        }
    }
}
