//! What a framework's Mesos entry adds up over its live tasks, kept per
//! chunk of the task list from one body to the next.
//!
//! `used_resources` (the resources of the tasks that are not unreachable)
//! and `executors` (the custom executors the tasks run under) are over
//! every live task: at 100,000 tasks, a pass over all of them for each
//! body of `/master/state` or `/master/frameworks`, though few changed.
//! Here each chunk of a framework's task list is summed once and its sums
//! kept by the chunk's identity (the chunk held weakly, as a body's chunk
//! JSON is, `state_body::Held`), and a framework's sums are its chunks':
//! a body costs the chunks that changed and a look at each of the others.
//! Resources are added exactly (`SummaryTotal`), so the sums do not
//! depend on where the chunks begin and end: a body made from kept sums
//! is the same bytes as one made in one pass.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use agora_core::resources::SummaryTotal;

use super::ExecutorEntry;
use crate::snapshot::kept_json::TaskPart;
use crate::snapshot::state_body::Held;
use crate::snapshot::{SharedList, TaskView};

/// What a run of tasks adds up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TaskSums {
    /// The resources of those not unreachable.
    pub(crate) used: SummaryTotal,
    /// The custom executors they run under.
    pub(crate) executors: BTreeSet<ExecutorEntry>,
}

impl TaskSums {
    /// The sums of every task of `list`, in one pass (for a body made
    /// once, with nothing to keep).
    pub(crate) fn of_list(list: &SharedList<TaskView>) -> Self {
        Self::of(list.iter())
    }

    fn of<'t>(tasks: impl IntoIterator<Item = &'t TaskView>) -> Self {
        let mut sums = Self::default();
        for task in tasks {
            if TaskPart::Reachable.shows(task) {
                sums.used.add_summary(&task.resources);
            }
            if super::custom_executor(task) {
                sums.executors.insert(ExecutorEntry {
                    executor_id: task.executor_id.to_string(),
                    framework_id: task.framework_id.to_string(),
                    slave_id: task.agent_id.to_string(),
                });
            }
        }
        sums
    }

    fn add(&mut self, other: &TaskSums) {
        self.used.add(&other.used);
        self.executors.extend(other.executors.iter().cloned());
    }
}

/// Each task chunk's sums, by the chunk's identity: the last body's, and
/// this body's so far.
#[derive(Default)]
pub struct SumCache {
    last: Chunks,
    this: Chunks,
}

type Chunks = HashMap<usize, (Held<TaskView>, Arc<TaskSums>)>;

impl SumCache {
    /// The sums of `list`'s tasks: each chunk's kept, or made now.
    pub(crate) fn of(&mut self, list: &SharedList<TaskView>) -> TaskSums {
        let mut sums = TaskSums::default();
        for chunk in list.chunks() {
            let key = Arc::as_ptr(chunk) as usize;
            let kept = match self.this.get(&key) {
                Some((_, kept)) => kept.clone(),
                None => {
                    let kept = match self.last.remove(&key) {
                        Some((_, kept)) => kept,
                        None => Arc::new(TaskSums::of(chunk.iter().map(AsRef::as_ref))),
                    };
                    self.this.insert(key, (Arc::downgrade(chunk), kept.clone()));
                    kept
                }
            };
            sums.add(&kept);
        }
        sums
    }

    /// Ends a body: afterwards it holds the chunks this body summed only.
    pub(crate) fn end_body(&mut self) {
        self.last = std::mem::take(&mut self.this);
    }

    /// How many chunks' sums it holds (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.last.len() + self.this.len()
    }
}

#[cfg(test)]
mod tests;
