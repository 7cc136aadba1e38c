//! The master's registry: a small versioned key-value store with
//! compare-and-set writes.
//!
//! Three implementations behind one object-safe trait, so the master can
//! hold an `Arc<dyn RegistryStore>`: [`ZkRegistryStore`] (one znode per key
//! under `<path>/registry/`), [`FileRegistryStore`] (a snapshot and an
//! append-only log in a directory) and [`MemoryRegistryStore`].

#[cfg(any(test, feature = "testing"))]
pub(crate) mod contract;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod faulty;
mod file;
mod memory;
mod zk;

use std::fmt;
use std::path::PathBuf;

use futures::future::BoxFuture;

pub use file::{FileRegistryStore, REGISTRY_FILE, REGISTRY_LOG};
pub use memory::MemoryRegistryStore;
pub use zk::{REGISTRY_DIR, ZkRegistryStore};

/// Largest value a store accepts (512 KiB): far below ZooKeeper's 1 MB
/// node limit, and the same for every implementation so that behaviour does
/// not depend on the deployment.
pub const MAX_VALUE_BYTES: usize = 512 * 1024;

/// Longest key a store accepts.
pub const MAX_KEY_BYTES: usize = 200;

/// A key's version: 0 when created, +1 on every successful `put`.
///
/// Versions are only comparable for the same key in the same store; a key
/// deleted and created again starts at 0 again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The key (see [`validate_key`] for the accepted form).
    pub key: String,
    /// The stored bytes (at most [`MAX_VALUE_BYTES`]).
    pub value: Vec<u8>,
    /// The version to pass as `expected` to change or delete it.
    pub version: Version,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Compare-and-set failed: the key's current version (or existence)
    /// differs from what the caller expected. Nothing was changed; reload.
    #[error("registry key {key:?} changed concurrently (expected version {expected:?})")]
    Conflict {
        /// The key.
        key: String,
        /// The version the caller expected (`None`: expected absent).
        expected: Option<Version>,
    },
    /// The key is empty, too long, or has characters outside `[A-Za-z0-9._:-]`.
    #[error("invalid registry key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value is larger than [`MAX_VALUE_BYTES`].
    #[error("registry value for {key:?} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The backing service cannot be reached or the session broke. For a
    /// write the outcome is unknown: reload before retrying.
    #[error("registry unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
    /// A file system operation failed.
    #[error("registry i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The stored registry cannot be decoded.
    #[error("registry at {location} is corrupt: {reason}")]
    Corrupt {
        /// Where it is stored (file path or znode).
        location: String,
        /// What is wrong.
        reason: String,
    },
}

/// A versioned key-value store with compare-and-set writes.
///
/// Object-safe (`Arc<dyn RegistryStore>`). Every write is atomic per key;
/// on any error nothing changed, except [`RegistryError::Unavailable`] on a
/// write, whose outcome is unknown.
pub trait RegistryStore: fmt::Debug + Send + Sync {
    /// Every entry, sorted by key.
    fn load(&self) -> BoxFuture<'_, Result<Vec<RegistryEntry>, RegistryError>>;

    /// Stores `value` under `key` if the key is at version `expected`
    /// (`None`: only if the key does not exist) and returns the new version.
    /// [`RegistryError::Conflict`] otherwise.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, RegistryError>>;

    /// Deletes `key` if it is at version `expected` (`None`: whatever its
    /// version). Deleting a missing key succeeds when `expected` is `None`
    /// and is a [`RegistryError::Conflict`] otherwise.
    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;
}

/// Checks a key: 1 to [`MAX_KEY_BYTES`] bytes of `[A-Za-z0-9._:-]`, not
/// `.` or `..` (keys become znode names and must be safe there).
pub fn validate_key(key: &str) -> Result<(), RegistryError> {
    let invalid = |reason| {
        Err(RegistryError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return invalid("longer than 200 bytes");
    }
    if key == "." || key == ".." {
        return invalid("reserved name");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return invalid("characters outside [A-Za-z0-9._:-]");
    }
    Ok(())
}

/// Checks a key and a value's size.
fn validate(key: &str, value: &[u8]) -> Result<(), RegistryError> {
    validate_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(RegistryError::TooLarge {
            key: key.to_owned(),
            size: value.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["agent:abc-S0", "weights", "a.b_c", &"k".repeat(200)] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ä", &"k".repeat(201)] {
            assert!(
                matches!(validate_key(bad), Err(RegistryError::InvalidKey { .. })),
                "{bad}"
            );
        }
    }
}
