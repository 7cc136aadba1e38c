//! `/state`'s body made from what changed since the last one.
//!
//! A body at 100,000 tasks is about 35 MB, nearly all of it task and agent
//! rows. Made whole per published snapshot, every poll paid for copying
//! those rows into a fresh buffer (and the page faults of a 35 MB
//! allocation) though only the rows of changed views differ. Here a body
//! is a [`Rope`]: the snapshot's own small fields serialized with each kept
//! list left as a hole (`kept_json::with_holes`), and each hole filled with
//! the JSON of the list's chunks. A chunk's JSON is kept in a
//! [`ChunkCache`] from one body to the next, by the chunk's identity: the
//! read model changes a chunk by making a new one (copy on write), and
//! the cache holds a weak reference to each chunk it made JSON for, so no
//! chunk it knows can be edited in place and then mistaken for the old
//! one ([`Held`]). A body then costs the chunks that changed, and is sent
//! as it is, piece by piece.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::kept_json::{self, Hole, KeepsJson, Listed};
use super::list::Chunk;
use super::{AgentView, SharedList, StateSnapshot, TaskView};

/// A body in pieces, sent in order; cheap to clone (its pieces are shared).
#[derive(Clone, Debug, Default)]
pub struct Rope {
    pieces: Arc<[Bytes]>,
    len: usize,
}

impl Rope {
    /// The pieces, in order; none is empty.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body in one buffer (for tests and for callers that need one).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len);
        for piece in self.pieces.iter() {
            all.extend_from_slice(piece);
        }
        all
    }
}

impl From<Vec<u8>> for Rope {
    fn from(body: Vec<u8>) -> Self {
        Self::from(vec![Bytes::from(body)])
    }
}

impl From<Vec<Bytes>> for Rope {
    fn from(mut pieces: Vec<Bytes>) -> Self {
        pieces.retain(|p| !p.is_empty());
        let len = pieces.iter().map(Bytes::len).sum();
        Self {
            pieces: pieces.into(),
            len,
        }
    }
}

/// The JSON of the chunks the last body held, by chunk identity: each
/// entry holds its chunk weakly ([`Held`]). A chunk's
/// JSON is its items', each preceded by a comma (the first chunk of a list
/// is sent without it).
#[derive(Default)]
pub struct ChunkCache {
    tasks: ChunkJsons<TaskView>,
    agents: ChunkJsons<AgentView>,
}

impl ChunkCache {
    /// How many chunks it holds (for tests).
    pub fn len(&self) -> usize {
        self.tasks.len() + self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `/state`'s body for `snapshot`, the same bytes as `serde_json::to_vec`
/// of it; the chunks `cache` holds are not made again, and afterwards it
/// holds this body's chunks only.
pub fn make(snapshot: &StateSnapshot, cache: &mut ChunkCache) -> serde_json::Result<Rope> {
    let mut kept = ChunkCache::default();
    let rope = assemble(snapshot, |list, pieces| match list {
        Listed::Tasks(list) => fill(&list, &mut cache.tasks, &mut kept.tasks, pieces, chunk_json),
        Listed::Agents(list) => fill(
            &list,
            &mut cache.agents,
            &mut kept.agents,
            pieces,
            chunk_json,
        ),
        Listed::MesosTasks(..) | Listed::MesosAgents(..) => Err(serde::ser::Error::custom(
            "a list in Mesos' shape inside Agora's /state",
        )),
    })?;
    *cache = kept;
    Ok(rope)
}

/// `value`'s JSON as a rope: serialized with its kept lists left as holes
/// (the body without its lists is small), each hole's pieces put in by
/// `fill_hole`.
pub(crate) fn assemble<T: Serialize>(
    value: &T,
    mut fill_hole: impl FnMut(Listed, &mut Vec<Bytes>) -> serde_json::Result<()>,
) -> serde_json::Result<Rope> {
    let (head, holes) = kept_json::with_holes(value, 64 * 1024)?;
    let head = Bytes::from(head);
    let mut pieces = Vec::new();
    let mut at = 0;
    for Hole { at: hole, list } in holes {
        pieces.push(head.slice(at..hole));
        at = hole;
        fill_hole(list, &mut pieces)?;
    }
    pieces.push(head.slice(at..));
    Ok(Rope::from(pieces))
}

/// What a cache entry holds of its chunk: a weak reference. While it
/// lives, the chunk's address is not reused, and the chunk cannot be
/// edited in place (`Arc::make_mut` moves a value that weak references
/// point to into a new allocation; `Arc::get_mut` refuses), so an entry
/// found by address is the chunk it was made from, unchanged. It keeps
/// none of the chunk's views alive: those die with the last snapshot that
/// holds them, freed where the snapshot is (the actor), not here.
pub(crate) type Held<T> = std::sync::Weak<Vec<Arc<T>>>;

/// A chunk's JSON by the chunk's identity (see [`ChunkCache`]).
pub(crate) type ChunkJsons<T> = HashMap<usize, (Held<T>, Bytes)>;

/// Puts the JSON of `list`'s chunks in `pieces`: from `kept` (made for this
/// body already: two lists may share a chunk) or `old` (the last body's),
/// else made now by `make` (the chunk's items, each preceded by a comma);
/// either way kept in `kept`.
pub(crate) fn fill<T>(
    list: &SharedList<T>,
    old: &mut ChunkJsons<T>,
    kept: &mut ChunkJsons<T>,
    pieces: &mut Vec<Bytes>,
    make: impl Fn(&Chunk<T>) -> serde_json::Result<Bytes>,
) -> serde_json::Result<()> {
    let mut first = true;
    for chunk in list.chunks() {
        let key = Arc::as_ptr(chunk) as usize;
        let json = match kept.get(&key) {
            Some((_, json)) => json.clone(),
            None => {
                let json = match old.remove(&key) {
                    Some((_, json)) => json,
                    None => make(chunk)?,
                };
                kept.insert(key, (Arc::downgrade(chunk), json.clone()));
                json
            }
        };
        push_items(pieces, json, &mut first);
    }
    Ok(())
}

/// Puts a chunk's items' JSON (each preceded by a comma) in `pieces`, the
/// list's first item without its comma; `first` says whether none was put
/// yet. An empty chunk JSON (no item shown) puts nothing.
pub(crate) fn push_items(pieces: &mut Vec<Bytes>, json: Bytes, first: &mut bool) {
    if json.is_empty() {
        return;
    }
    pieces.push(if *first { json.slice(1..) } else { json });
    *first = false;
}

/// Room for one item's JSON in a chunk's buffer: more than most take (a
/// task's is about 300 bytes, an agent's 600), so the buffer seldom grows.
const ITEM_ROOM: usize = 1024;

/// A chunk's items' JSON, each preceded by a comma.
fn chunk_json<T: KeepsJson>(chunk: &Chunk<T>) -> serde_json::Result<Bytes> {
    let mut json = Vec::with_capacity(chunk.len() * ITEM_ROOM);
    for item in chunk.iter() {
        json.push(b',');
        item.append_json(&mut json)?;
    }
    // The cache keeps every chunk's JSON (the whole list's): without the
    // spare room.
    json.shrink_to_fit();
    Ok(Bytes::from(json))
}

#[cfg(test)]
mod tests;
