//! Mesos' `/master/state` body made from what changed since the last one,
//! as `/state`'s is (`snapshot::state_body`): the body without its task
//! lists is small, and each framework's task lists are filled from the
//! JSON of their chunks, kept by the chunk's identity from one body to the
//! next. A body at 100,000 tasks then costs the chunks that changed, the
//! agents (their offered resources change with every offer) and one pass
//! over the tasks for each framework's used resources and executors,
//! instead of serializing every task again.

use bytes::Bytes;
use serde::ser::Error as _;

use super::shapes::{self, task_entries_json};
use crate::snapshot::kept_json::{Listed, TaskPart};
use crate::snapshot::state_body::{ChunkJsons, Rope, assemble, fill};
use crate::snapshot::{StateSnapshot, TaskView};

/// The JSON of the task chunks the last body held, one map per part (a
/// chunk of a framework's live tasks shows in two: reachable and not).
#[derive(Default)]
pub struct ChunkCache {
    reachable: ChunkJsons<TaskView>,
    unreachable: ChunkJsons<TaskView>,
    all: ChunkJsons<TaskView>,
}

impl ChunkCache {
    fn part(&mut self, part: TaskPart) -> &mut ChunkJsons<TaskView> {
        match part {
            TaskPart::Reachable => &mut self.reachable,
            TaskPart::Unreachable => &mut self.unreachable,
            TaskPart::All => &mut self.all,
        }
    }

    /// How many chunks' JSON it holds (for tests).
    pub fn len(&self) -> usize {
        self.reachable.len() + self.unreachable.len() + self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Mesos' `/master/state` for `snapshot`, the same bytes as
/// [`super::state_json`]; the chunks `cache` holds are not made again, and
/// afterwards it holds this body's chunks only.
pub fn make(
    snapshot: &StateSnapshot,
    started: f64,
    cache: &mut ChunkCache,
) -> serde_json::Result<Rope> {
    let mut kept = ChunkCache::default();
    let rope = assemble(&shapes::state(snapshot, started), |list, pieces| {
        let Listed::MesosTasks(list, part) = list else {
            return Err(serde_json::Error::custom(
                "a list in Agora's shape inside Mesos' /master/state",
            ));
        };
        fill(&list, cache.part(part), kept.part(part), pieces, |chunk| {
            task_entries_json(chunk.iter().map(AsRef::as_ref), part).map(Bytes::from)
        })
    })?;
    *cache = kept;
    Ok(rope)
}

#[cfg(test)]
mod tests;
