//! Writes the registry for one leadership term, in the order the state
//! machine asked, and says how each write ended.
//!
//! *Invariant:* an operator is told 200 only after every write its call
//! caused is durable (the writer answers a [`RegistryWrite::Flushed`] marker
//! queued behind them). A write that cannot be made ends the writer with a
//! [`RegistryFailure`]: the term's supervisor (`leadership.rs`) then steps
//! down, so the in-memory change nobody could persist is dropped with the
//! term and the next leader starts from what the store holds. A `Conflict`
//! (another master wrote the key) is never answered by overwriting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_coord::{MAX_VALUE_BYTES, RegistryError, RegistryStore, Version};
use agora_core::Backoff;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::state::{Master, OperatorCall, RegistryAgent, RegistryPolicy, RegistryQuota};

/// One write to the registry, in the order the state machine asked for it.
#[derive(Debug)]
pub(crate) enum RegistryWrite {
    Agent(RegistryAgent),
    /// Delete an agent's entry (by id): the registry gc forgot it.
    Forget(String),
    Policy(RegistryPolicy),
    /// Answered once every write queued before it is durable, or with why
    /// one of them could not be made.
    Flushed(oneshot::Sender<Result<(), String>>),
}

/// Why the writer stopped: the term must end.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RegistryFailure {
    #[error("registry key {key} was changed by someone else (another master?); not overwriting it")]
    Conflict { key: String },
    #[error("cannot write registry key {key}: {reason}")]
    Failed { key: String, reason: String },
}

/// How long a write is retried (an unreachable store, a full disk) before
/// the writer gives up and the master steps down.
const RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Registry keys of agents: `agent:<id>` (the store allows `[A-Za-z0-9._:-]`).
pub(crate) fn agent_key(id: &str) -> String {
    format!("agent:{id}")
}

/// The bytes to store (`None`: delete the key), or why they cannot be made.
type Encoded = Result<Option<Vec<u8>>, serde_json::Error>;

/// A write's key and bytes; `None` for a flush marker.
fn encode(entry: &RegistryWrite) -> Option<(String, Encoded)> {
    Some(match entry {
        RegistryWrite::Flushed(_) => return None,
        RegistryWrite::Agent(agent) => (agent_key(&agent.id), serde_json::to_vec(agent).map(Some)),
        RegistryWrite::Forget(id) => (agent_key(id), Ok(None)),
        RegistryWrite::Policy(policy) => match policy {
            RegistryPolicy::Weights(weights) => {
                (policy.key(), serde_json::to_vec(weights).map(Some))
            }
            RegistryPolicy::Quota {
                quota: Some(quota), ..
            } => (policy.key(), serde_json::to_vec(quota).map(Some)),
            RegistryPolicy::Quota { quota: None, .. } => (policy.key(), Ok(None)),
        },
    })
}

/// Writes `entries` in order until the channel closes (the term ended:
/// `Ok`) or a write cannot be made (`Err`: step down).
pub(crate) async fn write_registry(
    store: Arc<dyn RegistryStore>,
    mut versions: HashMap<String, Version>,
    mut entries: mpsc::UnboundedReceiver<RegistryWrite>,
) -> Result<(), RegistryFailure> {
    while let Some(entry) = entries.recv().await {
        if let RegistryWrite::Flushed(done) = entry {
            let _ = done.send(Ok(()));
            continue;
        }
        let Some((key, value)) = encode(&entry) else {
            continue;
        };
        let outcome = match value {
            Ok(value) => write_one(store.as_ref(), &mut versions, &key, value).await,
            Err(e) => Err(RegistryFailure::Failed {
                key,
                reason: format!("cannot encode the entry: {e}"),
            }),
        };
        if let Err(failure) = outcome {
            tracing::error!(error = %failure, "registry write failed; this master steps down");
            // Whoever waits on a write queued so far learns why it failed;
            // later ones see the channel closed.
            entries.close();
            while let Ok(entry) = entries.try_recv() {
                if let RegistryWrite::Flushed(done) = entry {
                    let _ = done.send(Err(failure.to_string()));
                }
            }
            return Err(failure);
        }
    }
    Ok(())
}

/// One compare-and-set write (`None`: delete), retried while the store is
/// unreachable or the disk refuses, within [`RETRY_BUDGET`].
async fn write_one(
    store: &dyn RegistryStore,
    versions: &mut HashMap<String, Version>,
    key: &str,
    value: Option<Vec<u8>>,
) -> Result<(), RegistryFailure> {
    let deadline = Instant::now() + RETRY_BUDGET;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    // After an `Unavailable` the write may have happened anyway.
    let mut outcome_unknown = false;
    loop {
        let result = match &value {
            None => store.delete(key, None).await.map(|()| None),
            Some(value) => store
                .put(key, value.clone(), versions.get(key).copied())
                .await
                .map(Some),
        };
        let error = match result {
            Ok(Some(version)) => {
                versions.insert(key.to_string(), version);
                return Ok(());
            }
            Ok(None) => {
                versions.remove(key);
                return Ok(());
            }
            Err(RegistryError::Conflict { .. }) => {
                // Our own earlier attempt may be what changed the version.
                if outcome_unknown && let Some(version) = ours(store, key, &value).await {
                    match version {
                        Some(version) => versions.insert(key.to_string(), version),
                        None => versions.remove(key),
                    };
                    return Ok(());
                }
                return Err(RegistryFailure::Conflict {
                    key: key.to_string(),
                });
            }
            Err(e @ (RegistryError::Unavailable { .. } | RegistryError::Io { .. })) => e,
            // Too large, an invalid key, a corrupt store: retrying cannot help.
            Err(e) => {
                return Err(RegistryFailure::Failed {
                    key: key.to_string(),
                    reason: e.to_string(),
                });
            }
        };
        outcome_unknown |= matches!(error, RegistryError::Unavailable { .. });
        let delay = backoff.next_delay();
        if Instant::now() + delay > deadline {
            return Err(RegistryFailure::Failed {
                key: key.to_string(),
                reason: format!("{error} (still failing after {RETRY_BUDGET:?})"),
            });
        }
        tracing::warn!(key = %key, error = %error, "registry write failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Whether the store holds exactly `value` under `key` (`None`: absent):
/// `Some(its version)` if so.
async fn ours(
    store: &dyn RegistryStore,
    key: &str,
    value: &Option<Vec<u8>>,
) -> Option<Option<Version>> {
    let entries = store.load().await.ok()?;
    let stored = entries.into_iter().find(|e| e.key == key);
    match (stored, value) {
        (None, None) => Some(None),
        (Some(entry), Some(value)) if entry.value == *value => Some(Some(entry.version)),
        _ => None,
    }
}

/// Refuses, before it changes anything, an operator call whose registry
/// entry would be larger than the store accepts (60,000 weights): such a
/// write could never be made, and failing it after the fact would cost a
/// failover. Reservations are not sized here: an agent's entry grows by at
/// most the reservation's text, and a write that still fails steps down.
pub(crate) fn check_entry_sizes(master: &Master, call: &OperatorCall) -> Result<(), String> {
    let sizes: Vec<(String, usize)> = match call {
        OperatorCall::SetWeights(weights) => {
            let mut all = master.weights();
            all.extend(weights.iter().cloned());
            let size = serde_json::to_vec(&all).map_or(usize::MAX, |v| v.len());
            vec![("the role weights".to_string(), size)]
        }
        OperatorCall::UpdateQuotas { quotas, .. } => quotas
            .iter()
            .map(|(role, quota)| {
                let entry = RegistryQuota {
                    role: role.clone(),
                    guarantee: quota.guarantee.to_string(),
                    limit: quota.limit.to_string(),
                };
                let size = serde_json::to_vec(&entry).map_or(usize::MAX, |v| v.len());
                (format!("the quota of role '{role}'"), size)
            })
            .collect(),
        OperatorCall::RemoveQuota(_)
        | OperatorCall::Reserve { .. }
        | OperatorCall::Unreserve { .. }
        | OperatorCall::Teardown { .. }
        | OperatorCall::KillTask { .. }
        | OperatorCall::MarkAgentGone { .. } => Vec::new(),
    };
    match sizes.into_iter().find(|(_, size)| *size > MAX_VALUE_BYTES) {
        Some((what, size)) => Err(format!(
            "{what} would take {size} bytes in the registry, more than the {MAX_VALUE_BYTES} it accepts per entry"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use agora_coord::MemoryRegistryStore;

    use super::*;
    use crate::state::RegistryAgentState;

    #[tokio::test]
    async fn a_forgotten_agent_s_entry_is_deleted() {
        let store = Arc::new(MemoryRegistryStore::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let agent = RegistryAgent {
            id: "m1-S0".into(),
            hostname: "h".into(),
            port: 5051,
            resources: "cpus:1".into(),
            state: RegistryAgentState::Gone { since: 1.0 },
        };
        tx.send(RegistryWrite::Agent(agent)).expect("send");
        let (done, written) = oneshot::channel();
        tx.send(RegistryWrite::Flushed(done)).expect("send");
        let writer = tokio::spawn(write_registry(store.clone(), HashMap::new(), rx));
        written.await.expect("answered").expect("written");
        assert_eq!(store.load().await.expect("load").len(), 1);

        tx.send(RegistryWrite::Forget("m1-S0".into()))
            .expect("send");
        drop(tx);
        writer.await.expect("writer").expect("no failure");
        assert!(store.load().await.expect("load").is_empty());
    }
}
