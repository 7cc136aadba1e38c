use std::sync::Arc;

use super::{ChunkCache, make};
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

/// The cache holds its chunks weakly: a body keeps none of the views it
/// was made from alive once no snapshot holds them, and a chunk that only
/// its list holds (besides the cache) is still never changed in place
/// behind the cache's back: the change makes a new chunk, and the next
/// body shows it.
#[test]
fn the_cache_keeps_no_view_alive_and_sees_a_chunk_its_list_alone_changed() {
    let mut s = snapshot();
    let mut cache = ChunkCache::default();
    make(&s, &mut cache).expect("first body");

    // Only the list holds its chunks now (no snapshot was published).
    let held = s.agents.arcs().next().cloned().expect("an agent");
    assert_eq!(Arc::strong_count(&held), 2, "the list and this test only");
    drop(held);
    let mut changed = s.agents.first().cloned().expect("an agent");
    changed.hostname = "moved".to_owned();
    s.agents.upsert(Arc::new(changed));
    let second = make(&s, &mut cache).expect("second body");
    assert_eq!(second.to_vec(), plain(&s));
    let value: serde_json::Value = serde_json::from_slice(&second.to_vec()).expect("json");
    assert_eq!(value["agents"][0]["hostname"], "moved");

    // Dropping the snapshot frees its views though the cache lives on.
    let weak = Arc::downgrade(s.agents.arcs().next().expect("an agent"));
    drop(s);
    assert!(weak.upgrade().is_none(), "the cache kept a view alive");
    assert!(!cache.is_empty());
}
