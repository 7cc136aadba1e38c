//! [`SharedList`]: the read model's lists (agents, frameworks, tasks,
//! offers), shared between successive snapshots.
//!
//! A list is a spine of chunks, each chunk a short run of items behind
//! `Arc`s. Cloning a list is O(1) (one reference count); changing k items
//! of a list that a published snapshot still shares copies the spine once
//! (n / [`CHUNK`] pointers) and the k chunks touched ([`CHUNK`] pointers
//! each), never an item. So a snapshot built from the previous one costs
//! what changed, while readers iterate it as they would a `Vec`.
//!
//! Keyed lists ([`Keyed`]) are kept in the order of their items' keys (the
//! order of the master's `BTreeMap`s, whose ids order as their strings);
//! the completed lists are in arrival order, pushed at the back and popped
//! at the front.
//!
//! Each chunk also carries the newest [`ListItem::date`] of any item it has
//! held (its *newest*): never older than any of its items' dates, kept in
//! O(1) per change, so that a reader after the newest items (the UI's task
//! list, newest first) can skip the chunks that cannot hold them instead of
//! reading every item.

use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Items per chunk at most, unless the item says otherwise
/// ([`ListItem::CHUNK`]).
const CHUNK: usize = 64;

/// An item kept in key order (its id).
pub trait Keyed {
    fn key(&self) -> &str;
}

/// What a list needs of its items.
pub trait ListItem {
    /// Items per chunk at most before a chunk splits in two halves. Smaller
    /// chunks cost more pointers and pieces; larger ones make each change
    /// cost more to whatever is made per chunk (a body's JSON and its gzip,
    /// `state_body.rs`): an item type changed here and there all over its
    /// list (agents, as tasks land on them) wants small ones.
    const CHUNK: usize = CHUNK;

    /// The item's date for the newest-first readers (a task's status time);
    /// other items have none. Dates compare by `f64::total_cmp`, and an
    /// unknown date is the oldest (`NEG_INFINITY`), as the UI sorts them.
    fn date(&self) -> Option<f64> {
        None
    }
}

/// `item`'s date as chunks compare them.
fn date_of<T: ListItem>(item: &T) -> f64 {
    item.date().unwrap_or(f64::NEG_INFINITY)
}

/// The later of two dates, by `total_cmp`.
fn later(a: f64, b: f64) -> f64 {
    if a.total_cmp(&b).is_ge() { a } else { b }
}

/// A date no other is later than (`total_cmp`'s greatest value): the
/// newest of a chunk whose items may have been edited in place (tests).
#[cfg(test)]
const LATEST: f64 = f64::from_bits(u64::MAX >> 1);

/// A run of a list's items, shared between the snapshots that hold it
/// unchanged: a chunk that a snapshot changes is a new chunk.
pub(crate) type Chunk<T> = Arc<Vec<Arc<T>>>;

/// A persistent list: see the module docs. Invariant: no chunk is empty,
/// none holds more than `T::CHUNK` items, and `len` is their sum;
/// `newest[c]` is chunk `c`'s newest (no item of it has a later date).
pub struct SharedList<T> {
    chunks: Arc<Vec<Chunk<T>>>,
    newest: Arc<Vec<f64>>,
    len: usize,
}

impl<T> Clone for SharedList<T> {
    fn clone(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
            newest: self.newest.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for SharedList<T> {
    fn default() -> Self {
        Self {
            chunks: Arc::new(Vec::new()),
            newest: Arc::new(Vec::new()),
            len: 0,
        }
    }
}

impl<T> SharedList<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items in order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            chunks: self.chunks.iter(),
            front: [].iter(),
            back: [].iter(),
            remaining: self.len,
        }
    }

    /// The items in order, as the `Arc`s the list shares.
    pub fn arcs(&self) -> impl Iterator<Item = &Arc<T>> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The item at `index`, O(n / CHUNK).
    pub fn get(&self, index: usize) -> Option<&T> {
        let (c, i) = self.locate(index)?;
        Some(&self.chunks[c][i])
    }

    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    /// The list's chunks, in order (what a body made per chunk keeps,
    /// `state_body.rs`).
    pub fn chunks(&self) -> &[Chunk<T>] {
        &self.chunks
    }

    /// The chunks with their newest dates (see the module docs), in order.
    pub fn dated_chunks(&self) -> impl Iterator<Item = (f64, &[Arc<T>])> {
        self.newest
            .iter()
            .copied()
            .zip(self.chunks.iter().map(|c| c.as_slice()))
    }

    /// Whether both share the same spine (then they hold the same items).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chunks, &other.chunks)
    }

    /// (chunk, index within it) of the item at `index`.
    fn locate(&self, mut index: usize) -> Option<(usize, usize)> {
        if index >= self.len {
            return None;
        }
        for (c, chunk) in self.chunks.iter().enumerate() {
            if index < chunk.len() {
                return Some((c, index));
            }
            index -= chunk.len();
        }
        None
    }
}

impl<T: ListItem> SharedList<T> {
    /// A list of these items, in this order.
    pub fn from_arcs(items: impl IntoIterator<Item = Arc<T>>) -> Self {
        let mut chunks = Vec::new();
        let mut newest = Vec::new();
        let mut chunk = Vec::with_capacity(T::CHUNK);
        let mut date = f64::NEG_INFINITY;
        let mut len = 0;
        for item in items {
            date = later(date, date_of(item.as_ref()));
            chunk.push(item);
            len += 1;
            if chunk.len() == T::CHUNK {
                chunks.push(Arc::new(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(T::CHUNK),
                )));
                newest.push(std::mem::replace(&mut date, f64::NEG_INFINITY));
            }
        }
        if !chunk.is_empty() {
            chunks.push(Arc::new(chunk));
            newest.push(date);
        }
        Self {
            chunks: Arc::new(chunks),
            newest: Arc::new(newest),
            len,
        }
    }

    /// Adds an item at the back (arrival-ordered lists).
    pub fn push_back(&mut self, item: Arc<T>) {
        let date = date_of(item.as_ref());
        let chunks = Arc::make_mut(&mut self.chunks);
        let newest = Arc::make_mut(&mut self.newest);
        match (chunks.last_mut(), newest.last_mut()) {
            (Some(last), Some(n)) if last.len() < T::CHUNK => {
                Arc::make_mut(last).push(item);
                *n = later(*n, date);
            }
            _ => {
                chunks.push(Arc::new(vec![item]));
                newest.push(date);
            }
        }
        self.len += 1;
    }

    /// Removes the item at the front (arrival-ordered lists).
    pub fn pop_front(&mut self) -> Option<Arc<T>> {
        if self.len == 0 {
            return None;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        let first = Arc::make_mut(&mut chunks[0]);
        let item = first.remove(0);
        if first.is_empty() {
            chunks.remove(0);
            Arc::make_mut(&mut self.newest).remove(0);
        }
        self.len -= 1;
        Some(item)
    }

    /// Keeps the items `keep` says yes to (a reader's filtered copy).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let kept: Vec<Arc<T>> = self.arcs().filter(|a| keep(a)).cloned().collect();
        *self = Self::from_arcs(kept);
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Removes the item at (chunk, index); an emptied chunk goes, a small
    /// one is merged into its successor when both fit in one.
    fn remove_at(&mut self, c: usize, i: usize) -> Arc<T> {
        let chunks = Arc::make_mut(&mut self.chunks);
        let newest = Arc::make_mut(&mut self.newest);
        let item = Arc::make_mut(&mut chunks[c]).remove(i);
        self.len -= 1;
        let left = chunks[c].len();
        if left == 0 {
            chunks.remove(c);
            newest.remove(c);
        } else if left < T::CHUNK / 4
            && c + 1 < chunks.len()
            && left + chunks[c + 1].len() <= T::CHUNK
        {
            let next = chunks.remove(c + 1);
            Arc::make_mut(&mut chunks[c]).extend(next.iter().cloned());
            let next = newest.remove(c + 1);
            newest[c] = later(newest[c], next);
        }
        item
    }

    /// Inserts an item at (chunk, index), splitting a full chunk in halves.
    fn insert_at(&mut self, c: usize, i: usize, item: Arc<T>) {
        let date = date_of(item.as_ref());
        let chunks = Arc::make_mut(&mut self.chunks);
        let newest = Arc::make_mut(&mut self.newest);
        if chunks.is_empty() {
            chunks.push(Arc::new(vec![item]));
            newest.push(date);
            self.len += 1;
            return;
        }
        let chunk = Arc::make_mut(&mut chunks[c]);
        chunk.insert(i, item);
        newest[c] = later(newest[c], date);
        if chunk.len() > T::CHUNK {
            // Both halves keep the whole chunk's newest: still never older
            // than any of their items.
            let tail = chunk.split_off(chunk.len() / 2);
            chunks.insert(c + 1, Arc::new(tail));
            newest.insert(c + 1, newest[c]);
        }
        self.len += 1;
    }
}

/// Editing items in place is for tests only: the master replaces a changed
/// item with a new one, which is what lets an item keep what was made from
/// it (a task's JSON, `kept_json.rs`).
#[cfg(test)]
impl<T: Clone + ListItem> SharedList<T> {
    /// The item at `index`, copied first if a snapshot shares it. Its
    /// chunk's newest becomes the latest date of all (the caller may change
    /// the item's date).
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        let (c, i) = self.locate(index)?;
        Arc::make_mut(&mut self.newest)[c] = LATEST;
        let chunks = Arc::make_mut(&mut self.chunks);
        Some(Arc::make_mut(&mut Arc::make_mut(&mut chunks[c])[i]))
    }

    /// Every item, each copied first if shared (see [`SharedList::get_mut`]).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        Arc::make_mut(&mut self.newest).fill(LATEST);
        Arc::make_mut(&mut self.chunks)
            .iter_mut()
            .flat_map(|c| Arc::make_mut(c).iter_mut())
            .map(Arc::make_mut)
    }
}

impl<T: Keyed + ListItem> SharedList<T> {
    /// Where `key` is or would go: (chunk, index, found).
    fn search(&self, key: &str) -> (usize, usize, bool) {
        // The first chunk whose last key is not below `key`.
        let c = self.chunks.partition_point(|chunk| below(chunk, key));
        self.search_in(c, key)
    }

    /// [`SharedList::search`] from chunk `from` on, if every chunk before it
    /// is below `key` (else from the start): galloping, so a key near the
    /// last one searched costs a few looks instead of a whole binary search.
    /// A look at a chunk reads the chunk, its last item and that item's key,
    /// each elsewhere in memory: at 100,000 tasks a search from the start
    /// looks at about 11 chunks, then about 6 rows.
    fn search_from(&self, key: &str, from: usize) -> (usize, usize, bool) {
        let chunks = &self.chunks;
        let sound = from > 0 && chunks.get(from - 1).is_some_and(|c| below(c, key));
        if !sound {
            return self.search(key);
        }
        // Invariant: every chunk before `lo` is below `key`.
        let mut lo = from;
        let mut step = 1;
        let c = loop {
            let hi = lo.saturating_add(step).min(chunks.len());
            if hi == lo {
                break lo;
            }
            if below(&chunks[hi - 1], key) {
                lo = hi;
                step = step.saturating_mul(2);
            } else {
                break lo + chunks[lo..hi - 1].partition_point(|chunk| below(chunk, key));
            }
        };
        self.search_in(c, key)
    }

    /// Where `key` is or would go, `c` being the first chunk whose last key
    /// is not below it (or past the last).
    fn search_in(&self, c: usize, key: &str) -> (usize, usize, bool) {
        let chunks = &self.chunks;
        if c == chunks.len() {
            // Past every key: the end of the last chunk.
            return match chunks.last() {
                Some(last) => (c - 1, last.len(), false),
                None => (0, 0, false),
            };
        }
        match chunks[c].binary_search_by(|item| item.key().cmp(key)) {
            Ok(i) => (c, i, true),
            Err(i) => (c, i, false),
        }
    }

    /// Changes in increasing key order, each search starting where the
    /// last one ended ([`Sweep`]).
    pub fn sweep(&mut self) -> Sweep<'_, T> {
        Sweep {
            list: self,
            from: 0,
        }
    }

    pub fn get_key(&self, key: &str) -> Option<&T> {
        self.get_arc(key).map(|a| a.as_ref())
    }

    pub fn get_arc(&self, key: &str) -> Option<&Arc<T>> {
        match self.search(key) {
            (c, i, true) => Some(&self.chunks[c][i]),
            _ => None,
        }
    }

    /// Puts `item` in its key's place, replacing the item with that key.
    pub fn upsert(&mut self, item: Arc<T>) {
        let at = self.search(item.key());
        self.put(at, item);
    }

    /// Puts `item` where [`SharedList::search`] found its key.
    fn put(&mut self, (c, i, found): (usize, usize, bool), item: Arc<T>) {
        if found {
            let n = &mut Arc::make_mut(&mut self.newest)[c];
            *n = later(*n, date_of(item.as_ref()));
            let chunks = Arc::make_mut(&mut self.chunks);
            Arc::make_mut(&mut chunks[c])[i] = item;
        } else {
            self.insert_at(c, i, item);
        }
    }

    pub fn remove_key(&mut self, key: &str) -> Option<Arc<T>> {
        match self.search(key) {
            (c, i, true) => Some(self.remove_at(c, i)),
            _ => None,
        }
    }

    /// The list of the items of `sources` (by key, in key order): each is
    /// `fresh`'s item (given this list's item of that key, if any), else
    /// this list's item of that key, else `make`'s. A merge in one pass,
    /// for when much changed.
    pub fn merged<'a, S>(
        &self,
        sources: impl IntoIterator<Item = (&'a str, S)>,
        mut fresh: impl FnMut(&S, Option<&T>) -> Option<Arc<T>>,
        mut make: impl FnMut(&S) -> Arc<T>,
    ) -> Self {
        let mut old = self.arcs().peekable();
        Self::from_arcs(sources.into_iter().map(|(key, source)| {
            while old.next_if(|o| o.key() < key).is_some() {}
            let kept = old.next_if(|o| o.key() == key);
            if let Some(item) = fresh(&source, kept.map(|k| k.as_ref())) {
                return item;
            }
            match kept {
                Some(kept) => kept.clone(),
                None => make(&source),
            }
        }))
    }
}

/// Whether every key of `chunk` is below `key`.
fn below<T: Keyed>(chunk: &Chunk<T>, key: &str) -> bool {
    chunk.last().is_some_and(|last| last.key() < key)
}

/// A list changed key by key in increasing order (the read model applies
/// its changes from sorted sets): each search starts at the chunk where
/// the last change was, which no key after it can be before. Sound in any
/// order: a search checks that the chunk before its start is below its
/// key, and searches the whole list when it is not.
pub struct Sweep<'a, T> {
    list: &'a mut SharedList<T>,
    /// Where the last change was: every chunk before it was below the last
    /// key (an insertion, a split or a removal there leaves that so).
    from: usize,
}

impl<T: Keyed + ListItem> Sweep<'_, T> {
    /// Puts `item` in its key's place, replacing the item with that key.
    pub fn upsert(&mut self, item: Arc<T>) {
        let at = self.list.search_from(item.key(), self.from);
        self.from = at.0;
        self.list.put(at, item);
    }

    /// Puts `make`'s item in `key`'s place, `make` given the item with that
    /// key (if any); one search for both. An item made with another key
    /// is put in that key's place.
    pub fn upsert_with(&mut self, key: &str, make: impl FnOnce(Option<&T>) -> Arc<T>) {
        let at = self.list.search_from(key, self.from);
        let before = match at {
            (c, i, true) => Some(self.list.chunks[c][i].as_ref()),
            _ => None,
        };
        let item = make(before);
        if item.key() != key {
            self.list.upsert(item);
            self.from = 0;
            return;
        }
        self.from = at.0;
        self.list.put(at, item);
    }

    /// Removes the item with `key`, if any.
    pub fn remove(&mut self, key: &str) -> Option<Arc<T>> {
        match self.list.search_from(key, self.from) {
            (c, i, true) => {
                self.from = c;
                Some(self.list.remove_at(c, i))
            }
            (c, _, false) => {
                self.from = c;
                None
            }
        }
    }
}

/// Iterator over a [`SharedList`]'s items in order.
pub struct Iter<'a, T> {
    chunks: std::slice::Iter<'a, Chunk<T>>,
    front: std::slice::Iter<'a, Arc<T>>,
    back: std::slice::Iter<'a, Arc<T>>,
    remaining: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(item) = self.front.next() {
                self.remaining -= 1;
                return Some(item);
            }
            match self.chunks.next() {
                Some(chunk) => self.front = chunk.iter(),
                None => {
                    let item = self.back.next()?;
                    self.remaining -= 1;
                    return Some(item);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<'a, T> DoubleEndedIterator for Iter<'a, T> {
    fn next_back(&mut self) -> Option<&'a T> {
        loop {
            if let Some(item) = self.back.next_back() {
                self.remaining -= 1;
                return Some(item);
            }
            match self.chunks.next_back() {
                Some(chunk) => self.back = chunk.iter(),
                None => {
                    let item = self.front.next_back()?;
                    self.remaining -= 1;
                    return Some(item);
                }
            }
        }
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

impl<'a, T> IntoIterator for &'a SharedList<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: ListItem> FromIterator<T> for SharedList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        Self::from_arcs(items.into_iter().map(Arc::new))
    }
}

impl<T: ListItem> From<Vec<T>> for SharedList<T> {
    fn from(items: Vec<T>) -> Self {
        items.into_iter().collect()
    }
}

impl<T> std::ops::Index<usize> for SharedList<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        self.get(index).expect("index within the list")
    }
}

#[cfg(test)]
impl<T: Clone + ListItem> std::ops::IndexMut<usize> for SharedList<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        self.get_mut(index).expect("index within the list")
    }
}

impl<T: PartialEq> PartialEq for SharedList<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && (self.ptr_eq(other)
                || self
                    .arcs()
                    .zip(other.arcs())
                    .all(|(a, b)| Arc::ptr_eq(a, b) || a == b))
    }
}

impl<T: fmt::Debug> fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Serialized as a sequence, exactly as a `Vec` of the items would be.
impl<T: Serialize> Serialize for SharedList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for item in self {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests;
