//! The master's books that remember what changed, for the read model
//! (`crate::snapshot`'s incremental build): a [`Tracked`] map records each
//! key it hands out for writing, a [`History`] counts what was ever pushed.
//!
//! They are how a change reaches the read model without every handler
//! having to report it: whatever can write an entry has marked it. Reads go
//! through `Deref` and mark nothing. Whoever owns the read model takes the
//! marks after each batch of inputs (`Master::take_changes`); until then
//! they accumulate, bounded by the keys written.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Deref;

use agora_core::{AgentId, FrameworkId, OfferId, TaskId};

use super::Master;

/// A `BTreeMap` that records the keys written through it since
/// [`Tracked::take_changed`]: a key is marked when it is inserted, removed
/// or handed out by `get_mut`, whether or not the entry then changes.
#[derive(Debug, Clone)]
pub struct Tracked<K, V> {
    map: BTreeMap<K, V>,
    changed: BTreeSet<K>,
}

impl<K, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }
}

impl<K, V> Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;

    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let (found, _) = self.map.get_key_value(key)?;
        if !self.changed.contains(key) {
            self.changed.insert(found.clone());
        }
        self.map.get_mut(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.changed.insert(key.clone());
        self.map.insert(key, value)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let (key, value) = self.map.remove_entry(key)?;
        self.changed.insert(key);
        Some(value)
    }

    /// One entry for writing, marked unseen: as [`Self::values_mut_unseen`],
    /// only for fields that no view shows.
    pub fn get_mut_unseen<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.get_mut(key)
    }

    /// Every entry for writing, marked unseen: only for fields that no
    /// view shows (an agent's ping bookkeeping), so that a pass over all
    /// of them does not make the next publish rebuild all of them.
    pub fn values_mut_unseen(&mut self) -> impl Iterator<Item = &mut V> {
        self.map.values_mut()
    }

    /// The keys written since the last call (present or removed since).
    pub fn take_changed(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.changed)
    }

    /// Marks every key, as if each had been written (a new reader).
    pub fn mark_all(&mut self) {
        self.changed = self.map.keys().cloned().collect();
    }
}

/// A bounded history (completed tasks, completed frameworks): pushed at
/// the back, dropped from the front, and counting every push ever made, so
/// a reader that saw `n` pushes knows the newest `pushed() - n` entries
/// (those still kept) are new to it and the oldest entries beyond its
/// length went. The rare removal from the middle ([`History::retain`])
/// counts as a rewrite, after which a reader starts over.
#[derive(Debug, Clone)]
pub struct History<T> {
    items: VecDeque<T>,
    pushed: u64,
    rewrites: u64,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            pushed: 0,
            rewrites: 0,
        }
    }
}

impl<T> Deref for History<T> {
    type Target = VecDeque<T>;

    fn deref(&self) -> &VecDeque<T> {
        &self.items
    }
}

impl<T> History<T> {
    pub fn push_back(&mut self, item: T) {
        self.items.push_back(item);
        self.pushed += 1;
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// How many entries were ever pushed.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Keeps the entries `keep` says yes to; a removal is a rewrite.
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        let before = self.items.len();
        self.items.retain(keep);
        if self.items.len() != before {
            self.rewrites += 1;
        }
    }

    /// How many times entries were removed from anywhere but the front.
    pub fn rewrites(&self) -> u64 {
        self.rewrites
    }

    /// Every entry for writing, unseen (as [`Tracked::values_mut_unseen`]):
    /// only to take the marks of what entries hold (`Master::take_changes`).
    pub(crate) fn iter_mut_unseen(&mut self) -> impl Iterator<Item = &mut T> {
        self.items.iter_mut()
    }
}

impl<'a, K, V> IntoIterator for &'a Tracked<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::collections::btree_map::Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<'a, T> IntoIterator for &'a History<T> {
    type Item = &'a T;
    type IntoIter = std::collections::vec_deque::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// What changed in the books since the last [`Master::take_changes`]: the
/// read model rebuilds the views of these entries and no others.
#[derive(Debug, Default)]
pub struct Changes {
    /// Agents written (present or removed since).
    pub agents: BTreeSet<AgentId>,
    /// Agents whose free resources the allocator may have changed.
    pub free: BTreeSet<AgentId>,
    /// Offers made or removed.
    pub offers: BTreeSet<OfferId>,
    /// Tasks written, by framework (live frameworks and completed ones).
    pub tasks: BTreeMap<FrameworkId, BTreeSet<TaskId>>,
}

impl Master {
    /// Takes the marks of what changed since the last call (see the module
    /// docs). O(frameworks) plus what changed.
    pub fn take_changes(&mut self) -> Changes {
        let mut tasks = BTreeMap::new();
        let live = self.frameworks.values_mut();
        let completed = self.completed_frameworks.iter_mut_unseen();
        for framework in live.chain(completed) {
            let mut changed = framework.tasks.take_changed();
            if changed.is_empty() {
                continue;
            }
            // Moved whole, not inserted key by key: a busy framework changes
            // thousands of tasks between two publishes. (A framework id is
            // live or completed, so the entry is nearly always vacant.)
            match tasks.entry(framework.id.clone()) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(changed);
                }
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    entry.get_mut().append(&mut changed);
                }
            }
        }
        Changes {
            agents: self.agents.take_changed(),
            free: self.allocator.take_touched(),
            offers: self.offers.take_changed(),
            tasks,
        }
    }

    /// Marks everything as changed (a read model that starts from nothing).
    pub fn mark_all_changed(&mut self) {
        self.agents.mark_all();
        self.offers.mark_all();
        for framework in self.frameworks.values_mut() {
            framework.tasks.mark_all();
        }
    }
}
