use std::sync::Arc;

use super::{ChunkCache, ChunkJsons, KeptRows, Retired, Rows, fill, make, share};
use crate::snapshot::test_views::{agent, task};
use crate::snapshot::{FrameworkView, SharedList, StateSnapshot, TaskView, test_views};

fn framework(id: &str, tasks: usize, completed: usize) -> FrameworkView {
    test_views::framework(
        id,
        (0..tasks)
            .map(|n| task(&format!("{id}-task-{n:05}"), "TASK_RUNNING"))
            .collect(),
        (0..completed)
            .map(|n| task(&format!("{id}-done-{n:05}"), "TASK_FINISHED"))
            .collect(),
    )
}

/// Two frameworks with several chunks of tasks each, one with none, a
/// completed framework, and agents over several chunks.
fn snapshot() -> StateSnapshot {
    StateSnapshot {
        id: "master-1".to_owned(),
        hostname: "m".to_owned(),
        agents: (0..150).map(|n| agent(&format!("agent-{n:04}"))).collect(),
        frameworks: vec![
            framework("fw-a", 300, 70),
            framework("fw-b", 1, 0),
            framework("fw-c", 0, 0),
        ]
        .into(),
        completed_frameworks: vec![framework("fw-z", 0, 5)].into(),
        ..StateSnapshot::default()
    }
}

fn plain(s: &StateSnapshot) -> Vec<u8> {
    serde_json::to_vec(s).expect("serializes")
}

/// Where each piece's bytes live: a piece made again lives elsewhere.
fn addresses(rope: &super::Rope) -> Vec<usize> {
    rope.pieces().iter().map(|p| p.as_ptr() as usize).collect()
}

#[test]
fn a_body_is_the_same_bytes_as_the_snapshots_json() {
    let s = snapshot();
    let mut cache = ChunkCache::default();
    let rope = make(&s, &mut cache).expect("body");
    assert_eq!(rope.to_vec(), plain(&s));
    assert_eq!(rope.len(), plain(&s).len());
    assert!(rope.pieces().iter().all(|p| !p.is_empty()));
    let value: serde_json::Value = serde_json::from_slice(&rope.to_vec()).expect("json");
    assert_eq!(
        value["frameworks"][0]["tasks"].as_array().map(Vec::len),
        Some(300)
    );
    assert_eq!(value["frameworks"][2]["tasks"], serde_json::json!([]));
    assert_eq!(value["agents"].as_array().map(Vec::len), Some(150));
    // Every chunk of every list is kept for the next body.
    let chunks = |l: &SharedList<TaskView>| l.chunks().len();
    let expected = s.agents.chunks().len()
        + s.frameworks
            .iter()
            .chain(&s.completed_frameworks)
            .map(|f| chunks(&f.tasks) + chunks(&f.completed_tasks))
            .sum::<usize>();
    assert_eq!(cache.len(), expected);
}

#[test]
fn an_unchanged_snapshot_reuses_every_chunk() {
    let s = snapshot();
    let mut cache = ChunkCache::default();
    let first = make(&s, &mut cache).expect("first");
    let again = make(&s, &mut cache).expect("again");
    assert_eq!(first.to_vec(), again.to_vec());
    // Only the head (the snapshot's own fields) is made again: list
    // pieces are the same bytes.
    let reused = addresses(&first)
        .iter()
        .zip(addresses(&again))
        .filter(|(a, b)| **a == *b)
        .count();
    let lists = s.agents.chunks().len()
        + s.frameworks
            .iter()
            .chain(&s.completed_frameworks)
            .map(|f| f.tasks.chunks().len() + f.completed_tasks.chunks().len())
            .sum::<usize>();
    assert_eq!(reused, lists);
}

#[test]
fn a_changed_view_remakes_its_chunk_only() {
    let s = snapshot();
    let mut cache = ChunkCache::default();
    let first = make(&s, &mut cache).expect("first");

    // What the read model does: a new view in the old one's place.
    let mut next = s.clone();
    let mut frameworks: Vec<FrameworkView> = next.frameworks.iter().cloned().collect();
    let mut changed = task("fw-a-task-00150", "TASK_KILLED");
    changed.message = Some("changed".to_owned());
    frameworks[0].tasks.upsert(Arc::new(changed));
    next.frameworks = frameworks.into();
    let mut moved = agent("agent-0007");
    moved.status = "disconnected";
    next.agents.upsert(Arc::new(moved));

    let second = make(&next, &mut cache).expect("second");
    assert_eq!(second.to_vec(), plain(&next));
    let value: serde_json::Value = serde_json::from_slice(&second.to_vec()).expect("json");
    assert_eq!(value["frameworks"][0]["tasks"][150]["state"], "TASK_KILLED");
    assert_eq!(value["agents"][7]["status"], "disconnected");
    // Two chunks were made again (the task's and the agent's); the others
    // are the first body's bytes.
    let before: std::collections::HashSet<usize> = addresses(&first).into_iter().collect();
    let fresh = addresses(&second)
        .iter()
        .filter(|a| !before.contains(a))
        .count();
    // The head is made again too, in pieces between the holes.
    let head_pieces = second.pieces().len() - cache.len();
    assert_eq!(fresh, 2 + head_pieces);
}

#[test]
fn a_list_shrunk_to_nothing_is_an_empty_array() {
    let s = snapshot();
    let mut cache = ChunkCache::default();
    make(&s, &mut cache).expect("first");
    let mut next = s.clone();
    next.agents = SharedList::new();
    let body = make(&next, &mut cache).expect("second");
    assert_eq!(body.to_vec(), plain(&next));
    let value: serde_json::Value = serde_json::from_slice(&body.to_vec()).expect("json");
    assert_eq!(value["agents"], serde_json::json!([]));
}

/// The cache holds the last body's chunks, and with them their views,
/// until the next body: a chunk that only its list holds besides the cache
/// is still never changed in place behind the cache's back (the change
/// makes a new chunk, and a new view), the next body shows it, and the
/// view it replaced is freed with that body's making.
#[test]
fn the_cache_holds_the_last_bodys_views_until_the_next() {
    let mut s = snapshot();
    let mut cache = ChunkCache::default();
    make(&s, &mut cache).expect("first body");

    // The list and the cache hold the first agent's chunk now.
    let replaced = Arc::downgrade(s.agents.arcs().next().expect("an agent"));
    let mut changed = s.agents.first().cloned().expect("an agent");
    changed.hostname = "moved".to_owned();
    s.agents.upsert(Arc::new(changed));
    assert!(
        replaced.upgrade().is_some(),
        "the cache holds the last body's views"
    );
    let second = make(&s, &mut cache).expect("second body");
    assert_eq!(second.to_vec(), plain(&s));
    let value: serde_json::Value = serde_json::from_slice(&second.to_vec()).expect("json");
    assert_eq!(value["agents"][0]["hostname"], "moved");
    assert!(
        replaced.upgrade().is_none(),
        "a view replaced before the second body outlived it"
    );
}

/// Agora's rows, counting those written whole and those written after a
/// beginning copied from an earlier row.
#[derive(Default)]
struct Counted {
    whole: std::cell::Cell<usize>,
    after_beginning: std::cell::Cell<usize>,
}

impl Rows<TaskView> for Counted {
    fn shared(&self, task: &TaskView) -> usize {
        KeptRows.shared(task)
    }
    fn write(
        &self,
        task: &TaskView,
        shared: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<usize> {
        let count = match shared {
            Some(_) => &self.after_beginning,
            None => &self.whole,
        };
        count.set(count.get() + 1);
        KeptRows.write(task, shared, out)
    }
}

/// A chunk made again copies the rows of the items it shares with a chunk
/// of the last body, and writes only the others: a replaced item, an
/// inserted one, and every row after a split. A task whose view changed
/// but not its fixed part copies its row's beginning.
#[test]
fn a_changed_chunk_writes_only_its_new_rows() {
    let tasks = |s: &StateSnapshot| s.frameworks[0].tasks.clone();
    let rows = Counted::default();
    let written = &rows.whole;
    let body = |list: &SharedList<TaskView>, old: &mut ChunkJsons<TaskView>| {
        let mut kept = ChunkJsons::default();
        share(list, old, &mut kept);
        let retired = Retired::new(std::mem::take(old));
        let mut pieces = Vec::new();
        fill(list, &retired, &mut kept, &mut pieces, &rows).expect("fills");
        *old = kept;
        let mut json = b"[".to_vec();
        json.extend(pieces.iter().flat_map(|p| p.iter()));
        json.push(b']');
        json
    };
    let whole = |list: &SharedList<TaskView>| serde_json::to_vec(list).expect("json");

    let s = snapshot();
    let mut list = tasks(&s);
    let mut old = ChunkJsons::default();
    assert_eq!(body(&list, &mut old), whole(&list));
    assert_eq!(written.replace(0), 300, "the first body writes every row");

    list.upsert(Arc::new(task("fw-a-task-00150", "TASK_KILLED")));
    list.upsert(Arc::new(task("fw-a-task-00150x", "TASK_STAGING")));
    assert_eq!(body(&list, &mut old), whole(&list));
    assert_eq!(written.replace(0), 2, "one replaced, one inserted");
    assert_eq!(rows.after_beginning.get(), 0);

    // A status update: a new view sharing the fixed part. Its row copies
    // the beginning the last body wrote and writes the rest.
    let before = list.get_key("fw-a-task-00151").expect("a task").clone();
    let mut updated = TaskView::clone(&before);
    updated.state = "TASK_FINISHED";
    updated.message = Some("done, \"really\"".to_owned());
    list.upsert(Arc::new(updated));
    assert!(Arc::ptr_eq(
        &list.get_key("fw-a-task-00151").expect("the task").fixed,
        &before.fixed
    ));
    assert_eq!(body(&list, &mut old), whole(&list));
    assert_eq!(written.replace(0), 0);
    assert_eq!(rows.after_beginning.replace(0), 1);

    // Inserting until a chunk splits: only the inserted rows are written.
    let chunks = list.chunks().len();
    for n in 0..40 {
        list.upsert(Arc::new(task(
            &format!("fw-a-task-00010-{n:02}"),
            "TASK_STAGING",
        )));
    }
    assert!(list.chunks().len() > chunks, "a chunk split");
    assert_eq!(body(&list, &mut old), whole(&list));
    assert_eq!(written.replace(0), 40);

    // Nothing changed: nothing written.
    assert_eq!(body(&list, &mut old), whole(&list));
    assert_eq!(written.get(), 0);
}

/// A change the read model makes between two bodies: a task's state, a
/// task inserted or removed, a task completed, an agent's status.
#[derive(Debug, Clone)]
enum Change {
    Upsert {
        task: usize,
        state: usize,
    },
    /// A status update: a new view sharing the task's fixed part.
    Update {
        task: usize,
        state: usize,
    },
    Remove {
        task: usize,
    },
    Complete {
        task: usize,
    },
    Agent {
        agent: usize,
        status: usize,
    },
}

const STATES: [&str; 3] = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"];
const AGENT_STATES: [&str; 2] = ["active", "disconnected"];

fn change() -> impl proptest::strategy::Strategy<Value = Change> {
    use proptest::prelude::*;
    prop_oneof![
        (0..400usize, 0..STATES.len()).prop_map(|(task, state)| Change::Upsert { task, state }),
        (0..400usize, 0..STATES.len()).prop_map(|(task, state)| Change::Update { task, state }),
        (0..400usize).prop_map(|task| Change::Remove { task }),
        (0..400usize).prop_map(|task| Change::Complete { task }),
        (0..200usize, 0..AGENT_STATES.len())
            .prop_map(|(agent, status)| Change::Agent { agent, status }),
    ]
}

fn apply(s: &mut StateSnapshot, change: &Change) {
    if let Change::Agent { agent: n, status } = change {
        let mut a = agent(&format!("agent-{n:04}"));
        a.status = AGENT_STATES[*status];
        s.agents.upsert(Arc::new(a));
        return;
    }
    let mut frameworks: Vec<FrameworkView> = s.frameworks.iter().cloned().collect();
    let f = &mut frameworks[0];
    let id = |n: usize| format!("fw-a-task-{n:05}");
    match change {
        Change::Upsert { task: n, state } => {
            f.tasks.upsert(Arc::new(task(&id(*n), STATES[*state])))
        }
        Change::Update { task: n, state } => {
            if let Some(old) = f.tasks.get_key(&id(*n)) {
                let mut updated = TaskView::clone(old);
                updated.state = STATES[*state];
                updated.status_time = Some(*n as f64 + 0.5);
                f.tasks.upsert(Arc::new(updated));
            }
        }
        Change::Remove { task: n } => {
            f.tasks.remove_key(&id(*n));
        }
        Change::Complete { task: n } => {
            if let Some(t) = f.tasks.remove_key(&id(*n)) {
                f.completed_tasks.upsert(t);
            }
        }
        Change::Agent { .. } => {}
    }
    s.frameworks = frameworks.into();
}

proptest::proptest! {
    /// After any run of changes, every body in a row is the same bytes as
    /// the whole serialization of its snapshot, whichever rows it copied.
    #[test]
    fn bodies_in_a_row_equal_the_whole_serialization(
        rounds in proptest::collection::vec(proptest::collection::vec(change(), 0..40), 1..6),
    ) {
        let mut s = snapshot();
        let mut cache = ChunkCache::default();
        for changes in &rounds {
            for c in changes {
                apply(&mut s, c);
            }
            let body = make(&s, &mut cache).expect("body");
            proptest::prop_assert_eq!(body.to_vec(), plain(&s));
        }
    }
}
