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
//! the cache holds each chunk it made JSON for, so no chunk it knows can
//! be edited in place and then mistaken for the old one ([`MadeChunk`]).
//! A changed chunk's rows that did not change are copied from the old
//! chunk's JSON ([`Retired`]). A body then costs the rows that changed,
//! and is sent as it is, piece by piece.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::kept_json::{self, Hole, KeepsJson, Listed};
use super::list::Chunk;
use super::{AgentView, SharedList, StateSnapshot, TaskView};
use crate::by_address::{self, AddressMap};

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

/// The JSON of the chunks the last body held, by chunk identity
/// ([`MadeChunk`]). A chunk's JSON is its items', each preceded by a comma
/// (the first chunk of a list is sent without it).
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
/// of it; the chunks `cache` holds are not made again, the rows of those
/// it held that are unchanged are copied, and afterwards it holds this
/// body's chunks only.
pub fn make(snapshot: &StateSnapshot, cache: &mut ChunkCache) -> serde_json::Result<Rope> {
    let kept = ChunkCache {
        tasks: room_as(&cache.tasks),
        agents: room_as(&cache.agents),
    };
    let mut lists = StateLists {
        old: cache,
        kept,
        retired: None,
    };
    let rope = assemble(snapshot, &mut lists)?;
    let kept = lists.kept;
    *cache = kept;
    Ok(rope)
}

/// `/state`'s kept lists, filled from the last body's chunks.
struct StateLists<'a> {
    old: &'a mut ChunkCache,
    kept: ChunkCache,
    /// The last body's chunks that this one does not share, once every
    /// list shared what it could.
    retired: Option<(Retired<TaskView>, Retired<AgentView>)>,
}

impl Holes for StateLists<'_> {
    fn share(&mut self, list: &Listed) {
        match list {
            Listed::Tasks(list) => share(list, &mut self.old.tasks, &mut self.kept.tasks),
            Listed::Agents(list) => share(list, &mut self.old.agents, &mut self.kept.agents),
            Listed::MesosTasks(..) | Listed::MesosAgents(..) => {}
        }
    }

    fn fill(&mut self, list: Listed, pieces: &mut Vec<Bytes>) -> serde_json::Result<()> {
        let (tasks, agents) = self.retired.get_or_insert_with(|| {
            (
                Retired::new(std::mem::take(&mut self.old.tasks)),
                Retired::new(std::mem::take(&mut self.old.agents)),
            )
        });
        match list {
            Listed::Tasks(list) => fill(&list, tasks, &mut self.kept.tasks, pieces, &KeptRows),
            Listed::Agents(list) => fill(&list, agents, &mut self.kept.agents, pieces, &KeptRows),
            Listed::MesosTasks(..) | Listed::MesosAgents(..) => Err(serde::ser::Error::custom(
                "a list in Mesos' shape inside Agora's /state",
            )),
        }
    }
}

/// How a list's rows are written and found again in an earlier body's.
pub(crate) trait Rows<T> {
    /// The address of what begins `item`'s row and that a later item may
    /// share (see [`KeepsJson::shared`]); the item's own address where
    /// rows share nothing.
    fn shared(&self, item: &T) -> usize;
    /// Appends `item`'s row (a comma, then its JSON; or nothing, for an
    /// item its list does not show), `shared` being the beginning of an
    /// earlier row with the same [`Rows::shared`], to copy; returns the
    /// length of that beginning in what it appended.
    fn write(
        &self,
        item: &T,
        shared: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<usize>;
}

/// The rows of Agora's `/state`: each view's [`KeepsJson`].
struct KeptRows;

impl<T: KeepsJson> Rows<T> for KeptRows {
    fn shared(&self, item: &T) -> usize {
        item.shared()
    }
    fn write(
        &self,
        item: &T,
        shared: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<usize> {
        item.append_row(shared, out)
    }
}

/// What a body does with the kept lists it left as holes: every list
/// [`share`]s first, then each is filled in order.
pub(crate) trait Holes {
    /// Takes over the last body's chunks that `list` still holds, before
    /// any list is filled.
    fn share(&mut self, list: &Listed);
    /// Puts `list`'s JSON in `pieces`.
    fn fill(&mut self, list: Listed, pieces: &mut Vec<Bytes>) -> serde_json::Result<()>;
}

/// `value`'s JSON as a rope: serialized with its kept lists left as holes
/// (the body without its lists is small), each hole's pieces put in by
/// `holes`, after every list shared what it could of the last body.
pub(crate) fn assemble<T: Serialize>(
    value: &T,
    holes: &mut impl Holes,
) -> serde_json::Result<Rope> {
    let (head, found) = kept_json::with_holes(value, 64 * 1024)?;
    for hole in &found {
        holes.share(&hole.list);
    }
    let head = Bytes::from(head);
    let mut pieces = Vec::new();
    let mut at = 0;
    for Hole { at: hole, list } in found {
        pieces.push(head.slice(at..hole));
        at = hole;
        holes.fill(list, &mut pieces)?;
    }
    pieces.push(head.slice(at..));
    Ok(Rope::from(pieces))
}

/// What a cache entry holds of its chunk without keeping it: a weak
/// reference. While it lives, the chunk's address is not reused, and the
/// chunk cannot be edited in place (`Arc::make_mut` moves a value that weak
/// references point to into a new allocation; `Arc::get_mut` refuses), so
/// an entry found by address is the chunk it was made from, unchanged.
pub(crate) type Held<T> = std::sync::Weak<Vec<Arc<T>>>;

/// A chunk's JSON by the chunk's identity (see [`MadeChunk`]).
pub(crate) type ChunkJsons<T> = AddressMap<usize, MadeChunk<T>>;

/// A chunk's JSON as a body made it: its rows, each an item's JSON preceded
/// by a comma (or nothing, for an item its list does not show).
pub(crate) struct MadeChunk<T> {
    /// The chunk itself, held: while this entry lives the chunk's address
    /// is not reused and the chunk is not edited in place (`Arc::make_mut`
    /// copies a chunk that is shared), so an entry found by address is the
    /// chunk it was made from, unchanged; and its items live on, so that an
    /// item's address names the item a row was made from ([`Retired`]).
    /// It keeps the views of the last body alive until the next body is
    /// made (the ones since replaced: what changed in between).
    chunk: Chunk<T>,
    json: Bytes,
    /// Where each row ends in `json`; a row begins where the one before
    /// it ends, the first at 0.
    ends: Box<[u32]>,
    /// How long each row's beginning is that a later item with the same
    /// [`Rows::shared`] may copy.
    beginnings: Box<[u32]>,
}

/// An empty map with room for as many chunks as `old` holds: a body holds
/// about as many as the last one.
pub(crate) fn room_as<T>(old: &ChunkJsons<T>) -> ChunkJsons<T> {
    by_address::with_room(old.len())
}

/// Moves the chunks of `list` that `old` holds into `kept`: what a body
/// shares with the last one. What stays in `old` is what changed since.
pub(crate) fn share<T>(list: &SharedList<T>, old: &mut ChunkJsons<T>, kept: &mut ChunkJsons<T>) {
    for chunk in list.chunks() {
        let key = key_of(chunk);
        if let Some(made) = old.remove(&key) {
            kept.insert(key, made);
        }
    }
}

fn key_of<T>(chunk: &Chunk<T>) -> usize {
    Arc::as_ptr(chunk) as usize
}

/// The last body's chunks that this body does not share, and an index of
/// their rows by what begins them ([`Rows::shared`]), made on the first
/// look. A chunk that changed since the last body is mostly the same items
/// (a few replaced, one inserted): their rows are copied from the old
/// chunk's JSON instead of being written again from views the actor made
/// on another core (read cold, about six times slower per view than
/// warm), and a task whose state changed copies the beginning of its old
/// row (its fixed part's fields).
pub(crate) struct Retired<T> {
    chunks: Vec<MadeChunk<T>>,
    rows: std::cell::OnceCell<AddressMap<usize, (usize, usize)>>,
}

/// What the retired chunks hold for an item.
enum Found<'a> {
    /// The row made from this very item, and its beginning's length.
    Row(&'a [u8], usize),
    /// The beginning of the row of an item that shared it.
    Beginning(&'a [u8]),
}

impl<T> Retired<T> {
    pub(crate) fn new(old: ChunkJsons<T>) -> Self {
        Self {
            chunks: old.into_values().collect(),
            rows: std::cell::OnceCell::new(),
        }
    }

    /// What a retired chunk holds of `item`'s row, if anything. Sound
    /// because the retired chunks hold their items, and with them what
    /// their rows' beginnings were made from: an address found here is
    /// alive, not reused, and a view or a fixed part is never edited in
    /// place (the read model replaces them), so a row is still its item's
    /// JSON and a beginning still its shared part's. Every look passes the
    /// same `rows` (a cache is filled by one kind of row): the index is
    /// made by the first.
    fn find(&self, item: &Arc<T>, rows: &impl Rows<T>) -> Option<Found<'_>> {
        if self.chunks.is_empty() {
            return None;
        }
        let index = self.rows.get_or_init(|| {
            let count = self.chunks.iter().map(|c| c.chunk.len()).sum();
            let mut index = by_address::with_room(count);
            for (c, made) in self.chunks.iter().enumerate() {
                for (r, old) in made.chunk.iter().enumerate() {
                    index.insert(rows.shared(old), (c, r));
                }
            }
            index
        });
        let &(c, r) = index.get(&rows.shared(item))?;
        let made = self.chunks.get(c)?;
        let end = *made.ends.get(r)? as usize;
        let start = match r {
            0 => 0,
            r => *made.ends.get(r - 1)? as usize,
        };
        let row = made.json.get(start..end)?;
        let beginning = *made.beginnings.get(r)? as usize;
        if Arc::ptr_eq(made.chunk.get(r)?, item) {
            return Some(Found::Row(row, beginning));
        }
        row.get(..beginning).map(Found::Beginning)
    }
}

/// Puts the JSON of `list`'s chunks in `pieces`: from `kept` (shared with
/// the last body, or made for this one already: two lists may share a
/// chunk), else made now, row by row, each row copied from `retired` when
/// it holds the item's, else written by `rows` (from the beginning that
/// `retired` holds, if any); kept in `kept`.
pub(crate) fn fill<T>(
    list: &SharedList<T>,
    retired: &Retired<T>,
    kept: &mut ChunkJsons<T>,
    pieces: &mut Vec<Bytes>,
    rows: &impl Rows<T>,
) -> serde_json::Result<()> {
    let mut first = true;
    for chunk in list.chunks() {
        let key = key_of(chunk);
        let json = match kept.get(&key) {
            Some(made) => made.json.clone(),
            None => {
                let made = make_chunk(chunk, retired, rows)?;
                let json = made.json.clone();
                kept.insert(key, made);
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

thread_local! {
    /// Where a chunk's rows are written before they are copied into a
    /// buffer of their exact size: reused from chunk to chunk, so the
    /// writing touches no fresh memory, and the chunk's buffer is one
    /// allocation that fits the holes older chunks left (a buffer sized
    /// for the worst case and then shrunk did not, and grew the heap).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A row's offset within its chunk's JSON as kept.
fn offset(at: usize) -> serde_json::Result<u32> {
    u32::try_from(at).map_err(|_| serde::ser::Error::custom("a chunk's JSON over 4 GiB"))
}

/// A chunk's rows: copied from `retired` where it made them, else written
/// (from the beginning `retired` holds, if any).
fn make_chunk<T>(
    chunk: &Chunk<T>,
    retired: &Retired<T>,
    rows: &impl Rows<T>,
) -> serde_json::Result<MadeChunk<T>> {
    SCRATCH.with(|scratch| {
        // A body is made on one thread and rows do not make bodies, so the
        // buffer is never borrowed twice; a fresh one if it were.
        let mut borrowed = scratch.try_borrow_mut();
        let mut own = Vec::new();
        let json = match borrowed.as_deref_mut() {
            Ok(json) => json,
            Err(_) => &mut own,
        };
        json.clear();
        let mut ends = Vec::with_capacity(chunk.len());
        let mut beginnings = Vec::with_capacity(chunk.len());
        for item in chunk.iter() {
            let beginning = match retired.find(item, rows) {
                Some(Found::Row(row, beginning)) => {
                    json.extend_from_slice(row);
                    beginning
                }
                Some(Found::Beginning(beginning)) => rows.write(item, Some(beginning), json)?,
                None => rows.write(item, None, json)?,
            };
            ends.push(offset(json.len())?);
            beginnings.push(offset(beginning)?);
        }
        Ok(MadeChunk {
            chunk: chunk.clone(),
            json: Bytes::copy_from_slice(json),
            ends: ends.into(),
            beginnings: beginnings.into(),
        })
    })
}

#[cfg(test)]
mod tests;
