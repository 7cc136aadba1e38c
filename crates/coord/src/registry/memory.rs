//! The in-memory registry store, and the compare-and-set rules the file
//! store shares.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

use super::{RegistryEntry, RegistryError, RegistryStore, Version, validate, validate_key};

/// The map both the memory and the file store keep: key -> (version, value).
pub(super) type Map = BTreeMap<String, (Version, Vec<u8>)>;

/// Applies a compare-and-set `put` to `map`; on error `map` is unchanged.
pub(super) fn apply_put(
    map: &mut Map,
    key: &str,
    value: Vec<u8>,
    expected: Option<Version>,
) -> Result<Version, RegistryError> {
    validate(key, &value)?;
    let current = map.get(key).map(|(version, _)| *version);
    let next = match (current, expected) {
        (None, None) => Version(0),
        (Some(current), Some(expected)) if current == expected => Version(current.0 + 1),
        _ => {
            return Err(RegistryError::Conflict {
                key: key.to_owned(),
                expected,
            });
        }
    };
    map.insert(key.to_owned(), (next, value));
    Ok(next)
}

/// Applies a compare-and-set `delete` to `map`; on error `map` is unchanged.
/// Returns whether the key existed.
pub(super) fn apply_delete(
    map: &mut Map,
    key: &str,
    expected: Option<Version>,
) -> Result<bool, RegistryError> {
    validate_key(key)?;
    let current = map.get(key).map(|(version, _)| *version);
    match (current, expected) {
        (None, None) => Ok(false),
        (Some(_), None) => Ok(map.remove(key).is_some()),
        (Some(current), Some(expected)) if current == expected => Ok(map.remove(key).is_some()),
        _ => Err(RegistryError::Conflict {
            key: key.to_owned(),
            expected,
        }),
    }
}

/// The entries of `map`, sorted by key.
pub(super) fn entries(map: &Map) -> Vec<RegistryEntry> {
    map.iter()
        .map(|(key, (version, value))| RegistryEntry {
            key: key.clone(),
            value: value.clone(),
            version: *version,
        })
        .collect()
}

/// A registry kept in memory, for tests and for masters without
/// persistence. Clones share the same entries.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistryStore {
    map: Arc<Mutex<Map>>,
}

impl MemoryRegistryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut Map) -> T) -> T {
        f(&mut self.map.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl RegistryStore for MemoryRegistryStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<RegistryEntry>, RegistryError>> {
        let result = self.with_map(|map| entries(map));
        Box::pin(async move { Ok(result) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, RegistryError>> {
        let result = self.with_map(|map| apply_put(map, key, value, expected));
        Box::pin(async move { result })
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        let result = self.with_map(|map| apply_delete(map, key, expected).map(drop));
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_follows_the_contract() {
        crate::registry::contract::check_registry_store(&MemoryRegistryStore::new()).await;
    }
}
