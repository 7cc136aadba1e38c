use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use proptest::prelude::*;

use super::{CHUNK, Keyed, ListItem, SharedList};

#[derive(Debug, Clone, PartialEq)]
struct Item {
    id: String,
    value: u32,
}

impl Keyed for Item {
    fn key(&self) -> &str {
        &self.id
    }
}

/// Its value is its date (values 0 and 1 are undated, to mix them in).
impl ListItem for Item {
    fn date(&self) -> Option<f64> {
        (self.value > 1).then_some(f64::from(self.value))
    }
}

/// No chunk holds an item dated later than the chunk's newest.
fn newest_holds<T: ListItem>(list: &SharedList<T>) {
    assert_eq!(list.dated_chunks().count(), list.chunks.len());
    for (newest, items) in list.dated_chunks() {
        for item in items {
            let date = item.date().unwrap_or(f64::NEG_INFINITY);
            assert!(
                date.total_cmp(&newest).is_le(),
                "{date} in a chunk whose newest is {newest}"
            );
        }
    }
}

fn item(key: u16, value: u32) -> Arc<Item> {
    Arc::new(Item {
        id: format!("k{key:05}"),
        value,
    })
}

/// Checks the list's own invariant and that it holds `model`'s items in order.
fn agrees(list: &SharedList<Item>, model: &BTreeMap<String, u32>) {
    assert!(
        list.chunks
            .iter()
            .all(|c| !c.is_empty() && c.len() <= CHUNK)
    );
    assert_eq!(
        list.chunks.iter().map(|c| c.len()).sum::<usize>(),
        list.len()
    );
    newest_holds(list);
    let items: Vec<(String, u32)> = list.iter().map(|i| (i.id.clone(), i.value)).collect();
    let expected: Vec<(String, u32)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(items, expected);
    assert_eq!(list.iter().len(), model.len());
    let backwards: Vec<&str> = list.iter().rev().map(|i| i.id.as_str()).collect();
    let expected: Vec<&str> = model.keys().rev().map(String::as_str).collect();
    assert_eq!(backwards, expected);
}

/// An item whose lists keep at most four to a chunk.
#[derive(Debug, Clone, PartialEq)]
struct Small(String);

impl Keyed for Small {
    fn key(&self) -> &str {
        &self.0
    }
}

impl ListItem for Small {
    const CHUNK: usize = 4;
}

proptest! {
    /// An item type's own chunk size bounds its lists' chunks, through
    /// splits and merges, and the list still holds its items in order.
    #[test]
    fn an_item_type_sets_its_chunk_size(ops in prop::collection::vec((any::<bool>(), 0u16..100), 0..300)) {
        let mut list = SharedList::new();
        let mut model = BTreeSet::new();
        for (insert, key) in ops {
            let key = format!("k{key:03}");
            if insert {
                list.upsert(Arc::new(Small(key.clone())));
                model.insert(key);
            } else {
                prop_assert_eq!(list.remove_key(&key).is_some(), model.remove(&key));
            }
            prop_assert!(list.chunks.iter().all(|c| !c.is_empty() && c.len() <= Small::CHUNK));
        }
        let items: Vec<String> = list.iter().map(|s| s.0.clone()).collect();
        prop_assert_eq!(items, model.into_iter().collect::<Vec<_>>());
    }

    /// Upserts and removes by key keep the list equal to a `BTreeMap`,
    /// and never change a clone taken before them (what a published
    /// snapshot holds).
    #[test]
    fn keyed_changes_match_a_btreemap(ops in prop::collection::vec((any::<bool>(), 0u16..400, any::<u32>()), 0..600)) {
        let mut list = SharedList::new();
        let mut model = BTreeMap::new();
        let mut published = (list.clone(), model.clone());
        for (n, (insert, key, value)) in ops.into_iter().enumerate() {
            if insert {
                list.upsert(item(key, value));
                model.insert(format!("k{key:05}"), value);
            } else {
                let removed = list.remove_key(&format!("k{key:05}")).map(|i| i.value);
                prop_assert_eq!(removed, model.remove(&format!("k{key:05}")));
            }
            prop_assert_eq!(list.get_key(&format!("k{key:05}")).map(|i| i.value), model.get(&format!("k{key:05}")).copied());
            if n % 37 == 0 {
                agrees(&published.0, &published.1);
                published = (list.clone(), model.clone());
            }
        }
        agrees(&list, &model);
        agrees(&published.0, &published.1);
    }

    /// A sweep's changes keep the list equal to a `BTreeMap` whatever the
    /// keys' order: batches sorted (as the read model sends them, each
    /// search starting where the last was) and unsorted (each search
    /// checking its start), with chunks of four so that inserts split
    /// chunks and removes empty and merge them under the sweep; a made item
    /// under another key goes to that key's place; a clone taken before a
    /// sweep is unchanged.
    #[test]
    fn sweeps_match_a_btreemap(
        batches in prop::collection::vec(
            (any::<bool>(), prop::collection::vec((0u8..3, 0u16..200, any::<u32>()), 0..80)),
            0..12,
        )
    ) {
        let name = |key: u16| format!("k{key:03}");
        let mut list: SharedList<Small> = (0..200).step_by(3).map(|k| Small(name(k))).collect();
        let mut model: BTreeSet<String> = (0..200).step_by(3).map(name).collect();
        for (sorted, mut ops) in batches {
            if sorted {
                ops.sort_by_key(|&(_, key, _)| key);
            }
            let published = (list.clone(), model.clone());
            let mut sweep = list.sweep();
            for (op, key, other) in ops {
                let key_name = name(key);
                match op {
                    0 => {
                        sweep.upsert(Arc::new(Small(key_name.clone())));
                        model.insert(key_name);
                    }
                    1 => {
                        // Now and then an item made under another key.
                        let made = if other % 5 == 0 { name((other % 200) as u16) } else { key_name.clone() };
                        let mut seen = None;
                        sweep.upsert_with(&key_name, |before| {
                            seen = Some(before.map(|b| b.0.clone()));
                            Arc::new(Small(made.clone()))
                        });
                        prop_assert_eq!(seen, Some(model.get(&key_name).cloned()));
                        model.insert(made);
                    }
                    _ => {
                        let removed = sweep.remove(&key_name).map(|s| s.0.clone());
                        prop_assert_eq!(removed, model.take(&key_name));
                    }
                }
            }
            prop_assert!(list.chunks.iter().all(|c| !c.is_empty() && c.len() <= Small::CHUNK));
            let items: Vec<String> = list.iter().map(|s| s.0.clone()).collect();
            prop_assert_eq!(&items, &model.iter().cloned().collect::<Vec<_>>());
            let before: Vec<String> = published.0.iter().map(|s| s.0.clone()).collect();
            prop_assert_eq!(before, published.1.into_iter().collect::<Vec<_>>());
        }
    }

    /// Pushes at the back and pops at the front behave as a `VecDeque`.
    #[test]
    fn arrival_order_matches_a_vecdeque(ops in prop::collection::vec(any::<bool>(), 0..500)) {
        let mut list = SharedList::new();
        let mut model = VecDeque::new();
        let mut published = list.clone();
        for (n, push) in ops.into_iter().enumerate() {
            if push {
                list.push_back(item(0, n as u32));
                model.push_back(n as u32);
            } else {
                prop_assert_eq!(list.pop_front().map(|i| i.value), model.pop_front());
            }
            if n % 11 == 0 {
                published = list.clone();
            }
            prop_assert!(published.len() <= 500);
        }
        newest_holds(&list);
        newest_holds(&published);
        let values: Vec<u32> = list.iter().map(|i| i.value).collect();
        prop_assert_eq!(values, model.into_iter().collect::<Vec<_>>());
    }

    /// A merge keeps unchanged items (the same `Arc`s) and takes the rest
    /// from `fresh` (given the old item of its key) or `make`.
    #[test]
    fn merged_reuses_what_did_not_change(keys in prop::collection::btree_set(0u16..300, 0..200), changed in prop::collection::btree_set(0u16..300, 0..50)) {
        let old = SharedList::from_arcs(keys.iter().map(|&k| item(k, 1)));
        let names: Vec<String> = keys.iter().chain(&changed).map(|k| format!("k{k:05}")).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let changed: std::collections::BTreeSet<String> = changed.iter().map(|k| format!("k{k:05}")).collect();
        let merged = old.merged(
            names.iter().map(|k| (k.as_str(), k)),
            // 2, plus ten times the old item's value when there was one.
            |k, before| changed.contains(*k).then(|| Arc::new(Item { id: k.to_string(), value: 2 + before.map_or(0, |b| 10 * b.value) })),
            |k| Arc::new(Item { id: k.to_string(), value: 3 }),
        );
        prop_assert_eq!(merged.len(), names.len());
        newest_holds(&merged);
        for (got, name) in merged.arcs().zip(&names) {
            prop_assert_eq!(&got.id, name);
            if changed.contains(name) {
                let before = old.get_key(name).map_or(0, |b| 10 * b.value);
                prop_assert_eq!(got.value, 2 + before);
            } else {
                prop_assert!(Arc::ptr_eq(got, old.get_arc(name).expect("kept")));
            }
        }
    }
}

#[test]
fn serializes_as_a_vec_would() {
    #[derive(serde::Serialize)]
    struct Row {
        id: u32,
    }
    impl ListItem for Row {}
    let rows: Vec<Row> = (0..150).map(|id| Row { id }).collect();
    let expected = serde_json::to_string(&rows).expect("serializes");
    let list: SharedList<Row> = rows.into();
    assert_eq!(serde_json::to_string(&list).expect("serializes"), expected);
    assert_eq!(list[149].id, 149);
}
