//! Mesos' `/master/state` body made from what changed since the last one,
//! as `/state`'s is (`snapshot::state_body`): the body without its task
//! lists is small, and each framework's task lists and the agents are
//! filled from the JSON of their chunks, kept by the chunk's identity from
//! one body to the next (an agent chunk's also by what is offered on its
//! agents), and so are each framework's sums over its tasks (its used
//! resources and executors, `shapes::SumCache`). A body at 100,000 tasks
//! then costs the chunks that changed and a look at each agent's offers,
//! instead of serializing every task and agent again.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::ser::Error as _;

use super::shapes::{
    self, Offers, SlaveEntries, SlaveInputs, SumCache, slave_entries_json, slave_inputs,
    task_entry_row,
};
use crate::snapshot::kept_json::{Listed, TaskPart};
use crate::snapshot::state_body::{
    ChunkJsons, Held, Holes, Retired, Rope, Rows, assemble, fill, push_items, room_as, share,
};
use crate::snapshot::{AgentView, SharedList, StateSnapshot, TaskView};

/// What the last body held: the JSON of its task chunks, one map per
/// part (a chunk of a framework's live tasks shows in two: reachable and
/// not), and of its agent chunks with the inputs each entry was made from
/// (an agent's entry shows the offers on it, which change without the
/// agent's view changing).
#[derive(Default)]
pub struct ChunkCache {
    reachable: ChunkJsons<TaskView>,
    unreachable: ChunkJsons<TaskView>,
    all: ChunkJsons<TaskView>,
    agents: HashMap<usize, AgentChunk>,
    /// Each framework's sums over its tasks, per chunk (`shapes::SumCache`).
    sums: SumCache,
}

/// An agent chunk's entries and what they were made from.
struct AgentChunk {
    /// Held weakly so that its address is not reused, nor the chunk
    /// edited in place, while this entry lives (`state_body::Held`).
    _chunk: Held<AgentView>,
    inputs: Vec<SlaveInputs>,
    json: Bytes,
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
        self.reachable.len() + self.unreachable.len() + self.all.len() + self.agents.len()
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
    let state = shapes::state(snapshot, started, &mut cache.sums);
    cache.sums.end_body();
    fill_holes(&state, snapshot, Some(&state.slaves), cache)
}

/// Mesos' `/master/slaves` (every agent) for `snapshot`, the same bytes as
/// [`shapes::slaves`] with no `slave_id`, made as [`make`] makes
/// `/master/state`'s agents: an agent chunk's entries are made again only
/// when the chunk or what is offered on its agents changed.
pub fn make_slaves(snapshot: &StateSnapshot, cache: &mut ChunkCache) -> serde_json::Result<Rope> {
    let slaves = shapes::all_slaves(snapshot);
    fill_holes(&slaves, snapshot, Some(&slaves.slaves), cache)
}

/// Mesos' `/master/frameworks` (every framework) for `snapshot`, the same
/// bytes as its whole serialization, made as [`make`] makes
/// `/master/state`.
pub fn make_frameworks(
    snapshot: &StateSnapshot,
    cache: &mut ChunkCache,
) -> serde_json::Result<Rope> {
    let frameworks = shapes::frameworks(snapshot, None, &mut cache.sums);
    cache.sums.end_body();
    fill_holes(&frameworks, snapshot, None, cache)
}

/// `value`'s JSON as a rope, its Mesos lists filled from `cache` (the
/// agents' as `agents` shows them, which a body with agents has).
fn fill_holes<T: serde::Serialize>(
    value: &T,
    snapshot: &StateSnapshot,
    agents: Option<&SlaveEntries<'_>>,
    cache: &mut ChunkCache,
) -> serde_json::Result<Rope> {
    let kept = ChunkCache {
        reachable: room_as(&cache.reachable),
        unreachable: room_as(&cache.unreachable),
        all: room_as(&cache.all),
        ..ChunkCache::default()
    };
    let mut lists = MesosLists {
        snapshot,
        agents,
        old: cache,
        kept,
        retired: None,
    };
    let rope = assemble(value, &mut lists)?;
    let mut kept = lists.kept;
    kept.sums = std::mem::take(&mut cache.sums);
    *cache = kept;
    Ok(rope)
}

/// A Mesos body's kept lists, filled from the last body's chunks.
struct MesosLists<'a, 'o> {
    snapshot: &'a StateSnapshot,
    agents: Option<&'a SlaveEntries<'o>>,
    old: &'a mut ChunkCache,
    kept: ChunkCache,
    /// The last body's task chunks, per part, that this one does not
    /// share, once every list shared what it could.
    retired: Option<RetiredParts>,
}

/// Retired task chunks, one set per part (as `ChunkCache` keeps them).
struct RetiredParts {
    reachable: Retired<TaskView>,
    unreachable: Retired<TaskView>,
    all: Retired<TaskView>,
}

impl RetiredParts {
    fn new(old: &mut ChunkCache) -> Self {
        let mut take = |part| Retired::new(std::mem::take(old.part(part)));
        Self {
            reachable: take(TaskPart::Reachable),
            unreachable: take(TaskPart::Unreachable),
            all: take(TaskPart::All),
        }
    }

    fn part(&self, part: TaskPart) -> &Retired<TaskView> {
        match part {
            TaskPart::Reachable => &self.reachable,
            TaskPart::Unreachable => &self.unreachable,
            TaskPart::All => &self.all,
        }
    }
}

/// The rows of Mesos' task entries of one part: an entry shares nothing
/// with the next view's, so a row is copied only for the very view it was
/// made from.
struct EntryRows(TaskPart);

impl Rows<TaskView> for EntryRows {
    fn shared(&self, task: &TaskView) -> usize {
        std::ptr::from_ref(task) as usize
    }
    fn write(
        &self,
        task: &TaskView,
        shared: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<usize> {
        let start = out.len();
        match shared {
            Some(row) => out.extend_from_slice(row),
            None => task_entry_row(task, self.0, out)?,
        }
        Ok(out.len() - start)
    }
}

impl Holes for MesosLists<'_, '_> {
    fn share(&mut self, list: &Listed) {
        if let Listed::MesosTasks(list, part) = list {
            share(list, self.old.part(*part), self.kept.part(*part));
        }
    }

    fn fill(&mut self, list: Listed, pieces: &mut Vec<Bytes>) -> serde_json::Result<()> {
        let old = &mut *self.old;
        let retired = self.retired.get_or_insert_with(|| RetiredParts::new(old));
        match (list, self.agents) {
            (Listed::MesosTasks(list, part), _) => {
                let retired = retired.part(part);
                fill(
                    &list,
                    retired,
                    self.kept.part(part),
                    pieces,
                    &EntryRows(part),
                )
            }
            (Listed::MesosAgents(list), Some(entries)) => fill_agents(
                self.snapshot,
                entries,
                &list,
                self.old,
                &mut self.kept,
                pieces,
            ),
            (Listed::MesosAgents(_), None) => Err(serde_json::Error::custom(
                "Mesos' agents in a body made without the offers",
            )),
            (Listed::Tasks(_) | Listed::Agents(_), _) => Err(serde_json::Error::custom(
                "a list in Agora's shape inside a Mesos body",
            )),
        }
    }
}

/// Puts the `slaves` entries of `list`'s chunks in `pieces`, as `entries`
/// shows them: a chunk's JSON from the last body when the chunk and every
/// entry's inputs are the same, else made now; either way kept in `kept`.
/// (A cache serves one endpoint, so its entries are all of one shape.)
fn fill_agents(
    snapshot: &StateSnapshot,
    entries: &SlaveEntries<'_>,
    list: &SharedList<AgentView>,
    cache: &mut ChunkCache,
    kept: &mut ChunkCache,
    pieces: &mut Vec<Bytes>,
) -> serde_json::Result<()> {
    let offers: &Offers<'_> = entries.offers();
    let mut first = true;
    for chunk in list.chunks() {
        let key = Arc::as_ptr(chunk) as usize;
        let agents = || chunk.iter().map(AsRef::as_ref);
        let inputs = slave_inputs(snapshot, offers, agents());
        let reusable = cache.agents.remove(&key).filter(|old| {
            old.inputs.len() == inputs.len()
                && old.inputs.iter().zip(&inputs).all(|(a, b)| a.same_as(b))
        });
        let made = match reusable {
            Some(old) => old,
            None => AgentChunk {
                _chunk: Arc::downgrade(chunk),
                json: Bytes::from(slave_entries_json(
                    snapshot,
                    offers,
                    entries.full(),
                    agents(),
                )?),
                inputs,
            },
        };
        push_items(pieces, made.json.clone(), &mut first);
        kept.agents.insert(key, made);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
