use std::sync::Arc;

use agora_core::resources::SummaryValue;

use super::{SumCache, TaskSums};
use crate::snapshot::test_views::{refix, task};
use crate::snapshot::{SharedList, TaskView};

/// `n` tasks with 0.1 cpus each (a float sum of those drifts), every
/// seventh unreachable and every fifth under a custom executor.
fn tasks(n: usize) -> SharedList<TaskView> {
    (0..n)
        .map(|i| {
            let state = if i % 7 == 3 {
                "TASK_UNREACHABLE"
            } else {
                "TASK_RUNNING"
            };
            let mut t = task(&format!("t-{i:05}"), state);
            refix(&mut t, |f| {
                Arc::make_mut(&mut f.resources)
                    .insert("cpus".to_owned(), SummaryValue::Number(0.1));
                if i % 5 == 0 {
                    f.executor_id = agora_core::ExecutorId::new(format!("exec-{}", i % 3));
                }
            });
            t
        })
        .collect()
}

#[test]
fn kept_chunk_sums_add_up_to_one_pass_and_only_changed_chunks_are_summed_again() {
    let list = tasks(300);
    let whole = TaskSums::of_list(&list);
    let reachable = (0..300).filter(|i| i % 7 != 3).count();
    assert_eq!(
        whole.used.to_summary()["cpus"],
        SummaryValue::Number(reachable as f64 / 10.0)
    );
    assert_eq!(whole.executors.len(), 3);

    let mut cache = SumCache::default();
    assert_eq!(cache.of(&list), whole);
    cache.end_body();
    let chunks = list.chunks().len();
    assert!(chunks > 1, "the list spans chunks");
    assert_eq!(cache.len(), chunks);

    // One task becomes unreachable: its chunk alone is new, the others'
    // sums are the kept ones.
    let mut changed = list.clone();
    let mut gone = changed.get_key("t-00151").expect("a task").clone();
    gone.state = "TASK_UNREACHABLE";
    changed.upsert(Arc::new(gone));
    let before: Vec<usize> = list
        .chunks()
        .iter()
        .map(|c| Arc::as_ptr(c) as usize)
        .collect();
    let new_chunks = changed
        .chunks()
        .iter()
        .filter(|c| !before.contains(&(Arc::as_ptr(c) as usize)))
        .count();
    assert_eq!(new_chunks, 1);
    let sums = cache.of(&changed);
    assert_eq!(sums, TaskSums::of_list(&changed));
    assert_eq!(
        sums.used.to_summary()["cpus"],
        SummaryValue::Number((reachable - 1) as f64 / 10.0)
    );
    cache.end_body();
    assert_eq!(cache.len(), chunks, "the replaced chunk's sums are dropped");
}
