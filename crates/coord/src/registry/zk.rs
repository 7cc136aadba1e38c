//! The ZooKeeper registry store: one persistent znode per key under
//! `<path>/registry/`, written with versioned (compare-and-set) operations.

use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tracing::warn;
use zookeeper_client as zk;

use super::{RegistryEntry, RegistryError, RegistryStore, Version, validate, validate_key};
use crate::url::ZkUrl;
use crate::zk::{ZkOptions, connect, persistent};

/// Name of the registry directory under the URL's path.
pub const REGISTRY_DIR: &str = "registry";

/// Entries read per request when the registry is loaded: a new leader
/// reads every agent's entry before it serves, and 10,000 requests of one
/// entry each were most of its time after the election. An entry is
/// usually under a kilobyte; a batch of the largest allowed is 64 MiB.
const READ_BATCH: usize = 128;

/// A registry in ZooKeeper: key `k` is the znode `<path>/registry/k`, its
/// version the znode's data version.
///
/// The store opens its own session on first use and opens a new one after
/// expiry; while ZooKeeper is unreachable, operations fail with
/// [`RegistryError::Unavailable`] (after at most about the session timeout).
#[derive(Debug)]
pub struct ZkRegistryStore {
    url: ZkUrl,
    dir: String,
    options: ZkOptions,
    client: Mutex<Option<zk::Client>>,
}

impl ZkRegistryStore {
    /// A store under `url.path()/registry`; connects lazily.
    pub fn new(url: &ZkUrl, options: ZkOptions) -> Self {
        Self {
            url: url.clone(),
            dir: format!("{}/{REGISTRY_DIR}", url.path()),
            options,
            client: Mutex::new(None),
        }
    }

    /// The znode holding the entries, e.g. `/agora/registry`.
    pub fn directory(&self) -> &str {
        &self.dir
    }

    async fn client(&self) -> Result<zk::Client, RegistryError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref()
            && !client.state().is_terminated()
        {
            return Ok(client.clone());
        }
        *slot = None;
        let client = connect(&self.url, &self.options)
            .await
            .map_err(|error| unavailable(&self.url, &error))?;
        client
            .mkdir(&self.dir, &persistent())
            .await
            .map_err(|error| unavailable(&self.url, &error))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    fn node(&self, key: &str) -> String {
        format!("{}/{key}", self.dir)
    }

    /// Maps errors other than the compare-and-set outcomes.
    async fn fail(&self, error: zk::Error) -> RegistryError {
        if matches!(
            error,
            zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::SessionMoved
        ) {
            // The next operation opens a new session.
            *self.client.lock().await = None;
        }
        unavailable(&self.url, &error)
    }

    /// The entries of `keys`, read in one request (ZooKeeper's multi-read,
    /// 3.6 and later); one request per key from a server that has none.
    /// A key deleted since the listing is left out.
    async fn read_batch(
        &self,
        client: &zk::Client,
        keys: &[String],
    ) -> Result<Vec<RegistryEntry>, RegistryError> {
        let mut reader = client.new_multi_reader();
        for key in keys {
            if let Err(error) = reader.add_get_data(&self.node(key)) {
                return Err(self.fail(error).await);
            }
        }
        let results = match reader.commit().await {
            Ok(results) if results.len() == keys.len() => results,
            // A server before 3.6 answers `Unimplemented`. Whatever else
            // went wrong but the session, a read per entry finds the same
            // entries, or says which one fails and why.
            Ok(results) => {
                warn!(zk = %self.url, asked = keys.len(), answered = results.len(), "a multi-read answered another count; reading one by one");
                return self.read_one_by_one(client, keys).await;
            }
            Err(zk::Error::Unimplemented) => return self.read_one_by_one(client, keys).await,
            Err(
                error @ (zk::Error::ConnectionLoss
                | zk::Error::SessionExpired
                | zk::Error::ClientClosed
                | zk::Error::SessionMoved
                | zk::Error::Timeout),
            ) => return Err(self.fail(error).await),
            Err(error) => {
                warn!(zk = %self.url, %error, "a multi-read failed; reading one by one");
                return self.read_one_by_one(client, keys).await;
            }
        };
        let mut entries = Vec::with_capacity(keys.len());
        for (key, result) in keys.iter().zip(results) {
            match result {
                zk::MultiReadResult::Data { data, stat } => entries.push(RegistryEntry {
                    key: key.clone(),
                    value: data,
                    version: Version(u64::try_from(stat.version).unwrap_or_default()),
                }),
                // Deleted since the listing.
                zk::MultiReadResult::Error {
                    err: zk::Error::NoNode,
                } => {}
                zk::MultiReadResult::Error { err } => return Err(self.fail(err).await),
                // Children (or a kind of answer this client learns later)
                // for a data read: not the answer asked for.
                _ => {
                    return Err(RegistryError::Unavailable {
                        reason: format!(
                            "zookeeper {}: a data read answered something else",
                            self.url
                        ),
                    });
                }
            }
        }
        Ok(entries)
    }

    async fn read_one_by_one(
        &self,
        client: &zk::Client,
        keys: &[String],
    ) -> Result<Vec<RegistryEntry>, RegistryError> {
        let reads = keys.iter().map(|key| self.read_entry(client, key.clone()));
        let entries = futures::future::try_join_all(reads).await?;
        Ok(entries.into_iter().flatten().collect())
    }

    async fn read_entry(
        &self,
        client: &zk::Client,
        key: String,
    ) -> Result<Option<RegistryEntry>, RegistryError> {
        match client.get_data(&self.node(&key)).await {
            Ok((value, stat)) => Ok(Some(RegistryEntry {
                key,
                value,
                version: Version(u64::try_from(stat.version).unwrap_or_default()),
            })),
            // Deleted since the listing.
            Err(zk::Error::NoNode) => Ok(None),
            Err(error) => Err(self.fail(error).await),
        }
    }
}

fn unavailable(url: &ZkUrl, error: &zk::Error) -> RegistryError {
    RegistryError::Unavailable {
        reason: format!("zookeeper {url}: {error}"),
    }
}

fn conflict(key: &str, expected: Option<Version>) -> RegistryError {
    RegistryError::Conflict {
        key: key.to_owned(),
        expected,
    }
}

impl RegistryStore for ZkRegistryStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<RegistryEntry>, RegistryError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let mut keys = match client.list_children(&self.dir).await {
                Ok(keys) => keys,
                Err(zk::Error::NoNode) => return Ok(Vec::new()),
                Err(error) => return Err(self.fail(error).await),
            };
            keys.retain(|key| match validate_key(key) {
                Ok(()) => true,
                Err(error) => {
                    warn!(zk = %self.url, %error, "ignoring a foreign znode in the registry");
                    false
                }
            });
            keys.sort();
            let reads = keys
                .chunks(READ_BATCH)
                .map(|batch| self.read_batch(&client, batch));
            let entries = futures::future::try_join_all(reads).await?;
            Ok(entries.into_iter().flatten().collect())
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, RegistryError>> {
        Box::pin(async move {
            validate(key, &value)?;
            let client = self.client().await?;
            let path = self.node(key);
            let result = match expected {
                None => client
                    .create(&path, &value, &persistent())
                    .await
                    .map(|(stat, _)| stat),
                Some(version) => {
                    let Ok(version) = i32::try_from(version.0) else {
                        return Err(conflict(key, expected));
                    };
                    client.set_data(&path, &value, Some(version)).await
                }
            };
            match result {
                Ok(stat) => Ok(Version(u64::try_from(stat.version).unwrap_or_default())),
                Err(zk::Error::NodeExists | zk::Error::NoNode | zk::Error::BadVersion) => {
                    Err(conflict(key, expected))
                }
                Err(error) => Err(self.fail(error).await),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            validate_key(key)?;
            let client = self.client().await?;
            let version = match expected {
                None => None,
                Some(version) => match i32::try_from(version.0) {
                    Ok(version) => Some(version),
                    Err(_) => return Err(conflict(key, expected)),
                },
            };
            match client.delete(&self.node(key), version).await {
                Ok(()) => Ok(()),
                Err(zk::Error::NoNode) if expected.is_none() => Ok(()),
                Err(zk::Error::NoNode | zk::Error::BadVersion) => Err(conflict(key, expected)),
                Err(error) => Err(self.fail(error).await),
            }
        })
    }
}
