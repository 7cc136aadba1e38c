//! The in-memory registry store, and the compare-and-set rules the file
//! store shares.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

use super::{RegistryEntry, RegistryError, RegistryStore, Version, validate, validate_key};

/// The map both the memory and the file store keep: key -> (version, value).
pub(super) type Map = BTreeMap<String, (Version, Vec<u8>)>;

/// The version a compare-and-set `put` of `key` would give it, or the
/// conflict; changes nothing.
pub(super) fn check_put(
    map: &Map,
    key: &str,
    expected: Option<Version>,
) -> Result<Version, RegistryError> {
    let current = map.get(key).map(|(version, _)| *version);
    match (current, expected) {
        (None, None) => Ok(Version(0)),
        (Some(current), Some(expected)) if current == expected => {
            // A version read from disk may be anything; never overflow.
            current
                .0
                .checked_add(1)
                .map(Version)
                .ok_or_else(|| RegistryError::Corrupt {
                    location: key.to_owned(),
                    reason: "the version is at its maximum".to_owned(),
                })
        }
        _ => Err(RegistryError::Conflict {
            key: key.to_owned(),
            expected,
        }),
    }
}

/// What a compare-and-set `delete` of `key` would remove: `Some(its
/// version)`, `None` when it is absent and `expected` is `None`, or the
/// conflict; changes nothing.
pub(super) fn check_delete(
    map: &Map,
    key: &str,
    expected: Option<Version>,
) -> Result<Option<Version>, RegistryError> {
    let current = map.get(key).map(|(version, _)| *version);
    match (current, expected) {
        (None, None) => Ok(None),
        (Some(current), None) => Ok(Some(current)),
        (Some(current), Some(expected)) if current == expected => Ok(Some(current)),
        _ => Err(RegistryError::Conflict {
            key: key.to_owned(),
            expected,
        }),
    }
}

/// Applies a compare-and-set `put` to `map`; on error `map` is unchanged.
pub(super) fn apply_put(
    map: &mut Map,
    key: &str,
    value: Vec<u8>,
    expected: Option<Version>,
) -> Result<Version, RegistryError> {
    validate(key, &value)?;
    let next = check_put(map, key, expected)?;
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
    let existed = check_delete(map, key, expected)?.is_some();
    map.remove(key);
    Ok(existed)
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
