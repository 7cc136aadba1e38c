//! A registry store that fails on demand, for tests of what a master does
//! when its registry cannot be written.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

use super::{RegistryEntry, RegistryError, RegistryStore, Version};

/// How writes fail while a fault is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFault {
    /// Every write fails as a full disk would ([`RegistryError::Io`]).
    DiskFull,
    /// Every write fails as an unreachable ZooKeeper would
    /// ([`RegistryError::Unavailable`]: outcome unknown, nothing written).
    Unavailable,
}

/// Wraps a store; while a fault is set, `put` and `delete` fail with it
/// (nothing reaches the inner store) and `load` still works. Clones share
/// the fault.
#[derive(Debug, Clone)]
pub struct FaultyRegistryStore {
    inner: Arc<dyn RegistryStore>,
    fault: Arc<Mutex<Option<RegistryFault>>>,
}

impl FaultyRegistryStore {
    /// Wraps `inner`, with no fault set.
    pub fn new(inner: Arc<dyn RegistryStore>) -> Self {
        Self {
            inner,
            fault: Arc::new(Mutex::new(None)),
        }
    }

    /// Sets (or with `None` clears) the fault writes fail with.
    pub fn set_fault(&self, fault: Option<RegistryFault>) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    fn failure(&self, key: &str) -> Option<RegistryError> {
        let fault = *self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        fault.map(|fault| match fault {
            RegistryFault::DiskFull => RegistryError::Io {
                path: PathBuf::from(format!("registry/{key}")),
                source: std::io::Error::from_raw_os_error(28),
            },
            RegistryFault::Unavailable => RegistryError::Unavailable {
                reason: "injected fault".into(),
            },
        })
    }
}

impl RegistryStore for FaultyRegistryStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<RegistryEntry>, RegistryError>> {
        self.inner.load()
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, RegistryError>> {
        match self.failure(key) {
            Some(error) => Box::pin(async move { Err(error) }),
            None => self.inner.put(key, value, expected),
        }
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        match self.failure(key) {
            Some(error) => Box::pin(async move { Err(error) }),
            None => self.inner.delete(key, expected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryRegistryStore;

    #[tokio::test]
    async fn writes_fail_while_a_fault_is_set_and_reach_the_store_after() {
        let inner = MemoryRegistryStore::new();
        let store = FaultyRegistryStore::new(Arc::new(inner.clone()));
        store.set_fault(Some(RegistryFault::DiskFull));
        assert!(matches!(
            store.put("k", b"v".to_vec(), None).await,
            Err(RegistryError::Io { .. })
        ));
        assert!(inner.load().await.expect("load").is_empty());
        store.set_fault(None);
        crate::registry::contract::check_registry_store(&store).await;
    }
}
