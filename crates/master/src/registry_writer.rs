//! Writes the registry for one leadership term, in the order the state
//! machine asked for each key, and says how each write ended.
//!
//! Writes to different keys are pipelined (up to [`MAX_IN_FLIGHT`] at a
//! time: a ZooKeeper session or the file store's group commit takes them
//! together); writes to one key are made one after the other, in order.
//!
//! *Invariant:* an operator is told 200 only after every write its call
//! caused is durable (the writer answers a [`RegistryWrite::Flushed`] marker
//! once every write queued before it is). An agent's admission waits for
//! its entry (`RegistryWrite::Admit` hands the ticket back once durable).
//! A write that cannot be made ends the writer with a
//! [`RegistryFailure`]: the term's supervisor (`leadership.rs`) then steps
//! down, so the in-memory change nobody could persist is dropped with the
//! term and the next leader starts from what the store holds. A `Conflict`
//! (another master wrote the key) is never answered by overwriting.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use agora_coord::{MAX_VALUE_BYTES, RegistryError, RegistryStore, Version};
use agora_core::Backoff;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::state::{
    AdmissionTicket, Master, OperatorCall, RegistryAgent, RegistryPolicy, RegistryQuota,
};

/// One write to the registry, in the order the state machine asked for it.
#[derive(Debug)]
pub(crate) enum RegistryWrite {
    Agent(RegistryAgent),
    /// An agent's admitted entry; `ticket` goes back on `durable` once the
    /// entry is (see `state/admission.rs`).
    Admit {
        entry: RegistryAgent,
        ticket: AdmissionTicket,
        durable: mpsc::UnboundedSender<AdmissionTicket>,
    },
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

/// Writes under way at once, at most (each to another key). ZooKeeper
/// serves a session's requests in order and its servers accept 1,000
/// outstanding by default.
const MAX_IN_FLIGHT: usize = 256;

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
        RegistryWrite::Agent(agent) | RegistryWrite::Admit { entry: agent, .. } => {
            (agent_key(&agent.id), serde_json::to_vec(agent).map(Some))
        }
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

/// One write to make: its place in the queue, its key and bytes, and who
/// hears that it is durable.
struct Job {
    seq: u64,
    key: String,
    value: Option<Vec<u8>>,
    admitted: Option<(AdmissionTicket, mpsc::UnboundedSender<AdmissionTicket>)>,
}

type Written = (Job, Result<Option<Version>, RegistryFailure>);

/// What the writer has under way: the writes in flight (one per key at
/// most), those queued behind another write to their key, and the flush
/// markers waiting for the writes queued before them.
#[derive(Default)]
struct Pipeline {
    next_seq: u64,
    /// Writes not yet durable, by sequence number.
    unfinished: BTreeSet<u64>,
    /// A key is here while a write to it is in flight; its queue holds the
    /// next writes to it, in order.
    busy: HashMap<String, VecDeque<Job>>,
    /// Flush markers and the sequence number of the first write after them.
    flushes: VecDeque<(u64, oneshot::Sender<Result<(), String>>)>,
}

impl Pipeline {
    /// Answers the flush markers whose writes are all durable.
    fn answer_flushes(&mut self) {
        let first_unfinished = self.unfinished.first().copied().unwrap_or(u64::MAX);
        while let Some((bound, _)) = self.flushes.front() {
            if *bound > first_unfinished {
                break;
            }
            if let Some((_, done)) = self.flushes.pop_front() {
                let _ = done.send(Ok(()));
            }
        }
    }
}

/// Writes `entries` until the channel closes (the term ended: `Ok`) or a
/// write cannot be made (`Err`: step down).
pub(crate) async fn write_registry(
    store: Arc<dyn RegistryStore>,
    mut versions: HashMap<String, Version>,
    mut entries: mpsc::UnboundedReceiver<RegistryWrite>,
) -> Result<(), RegistryFailure> {
    let mut pipeline = Pipeline::default();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Written>> = FuturesUnordered::new();
    let start = |job: Job, versions: &HashMap<String, Version>| -> BoxFuture<'static, Written> {
        let store = store.clone();
        let expected = versions.get(&job.key).copied();
        Box::pin(async move {
            let result = write_one(store.as_ref(), expected, &job.key, job.value.clone()).await;
            (job, result)
        })
    };
    let mut open = true;
    let outcome = loop {
        tokio::select! {
            entry = entries.recv(), if open && in_flight.len() < MAX_IN_FLIGHT => {
                let Some(entry) = entry else {
                    open = false;
                    if in_flight.is_empty() {
                        break Ok(());
                    }
                    continue;
                };
                if let RegistryWrite::Flushed(done) = entry {
                    pipeline.flushes.push_back((pipeline.next_seq, done));
                    pipeline.answer_flushes();
                    continue;
                }
                let Some((key, value)) = encode(&entry) else {
                    continue;
                };
                let value = match value {
                    Ok(value) => value,
                    Err(e) => break Err(RegistryFailure::Failed {
                        key,
                        reason: format!("cannot encode the entry: {e}"),
                    }),
                };
                let admitted = match entry {
                    RegistryWrite::Admit { ticket, durable, .. } => Some((ticket, durable)),
                    _ => None,
                };
                let job = Job { seq: pipeline.next_seq, key, value, admitted };
                pipeline.next_seq += 1;
                pipeline.unfinished.insert(job.seq);
                match pipeline.busy.get_mut(&job.key) {
                    Some(queue) => queue.push_back(job),
                    None => {
                        pipeline.busy.insert(job.key.clone(), VecDeque::new());
                        in_flight.push(start(job, &versions));
                    }
                }
            }
            Some((job, result)) = in_flight.next(), if !in_flight.is_empty() => {
                match result {
                    Err(failure) => break Err(failure),
                    Ok(Some(version)) => {
                        versions.insert(job.key.clone(), version);
                    }
                    Ok(None) => {
                        versions.remove(&job.key);
                    }
                }
                pipeline.unfinished.remove(&job.seq);
                if let Some((ticket, durable)) = job.admitted {
                    let _ = durable.send(ticket);
                }
                let next = pipeline.busy.get_mut(&job.key).and_then(VecDeque::pop_front);
                match next {
                    Some(next) => in_flight.push(start(next, &versions)),
                    None => {
                        pipeline.busy.remove(&job.key);
                    }
                }
                pipeline.answer_flushes();
                if !open && in_flight.is_empty() {
                    break Ok(());
                }
            }
            else => break Ok(()),
        }
    };
    if let Err(failure) = &outcome {
        tracing::error!(error = %failure, "registry write failed; this master steps down");
        // Whoever waits on a write queued so far learns why it failed;
        // later ones see the channel closed.
        entries.close();
        let why = failure.to_string();
        for (_, done) in pipeline.flushes.drain(..) {
            let _ = done.send(Err(why.clone()));
        }
        while let Ok(entry) = entries.try_recv() {
            if let RegistryWrite::Flushed(done) = entry {
                let _ = done.send(Err(why.clone()));
            }
        }
    }
    outcome
}

/// One compare-and-set write (`None`: delete), retried while the store is
/// unreachable or the disk refuses, within [`RETRY_BUDGET`].
/// Returns the key's new version (`None`: deleted).
async fn write_one(
    store: &dyn RegistryStore,
    expected: Option<Version>,
    key: &str,
    value: Option<Vec<u8>>,
) -> Result<Option<Version>, RegistryFailure> {
    let deadline = Instant::now() + RETRY_BUDGET;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    // After an `Unavailable` the write may have happened anyway.
    let mut outcome_unknown = false;
    loop {
        let result = match &value {
            None => store.delete(key, None).await.map(|()| None),
            Some(value) => store.put(key, value.clone(), expected).await.map(Some),
        };
        let error = match result {
            Ok(version) => return Ok(version),
            Err(RegistryError::Conflict { .. }) => {
                // Our own earlier attempt may be what changed the version.
                if outcome_unknown && let Some(version) = ours(store, key, &value).await {
                    return Ok(version);
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
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use agora_coord::{MemoryRegistryStore, RegistryEntry};

    use super::*;
    use crate::state::RegistryAgentState;

    /// A memory store whose writes take 0-7 ms, varying with each write,
    /// so that writes under way at once finish out of order; it counts the
    /// most writes it saw under way together.
    #[derive(Debug, Default)]
    struct SlowStore {
        inner: MemoryRegistryStore,
        writes: AtomicU64,
        under_way: AtomicUsize,
        most_under_way: AtomicUsize,
    }

    impl SlowStore {
        async fn pause(&self) {
            let n = self.writes.fetch_add(1, Ordering::Relaxed);
            let now = self.under_way.fetch_add(1, Ordering::Relaxed) + 1;
            self.most_under_way.fetch_max(now, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(n * 7919 % 8)).await;
            self.under_way.fetch_sub(1, Ordering::Relaxed);
        }
    }

    impl RegistryStore for SlowStore {
        fn load(&self) -> BoxFuture<'_, Result<Vec<RegistryEntry>, RegistryError>> {
            self.inner.load()
        }

        fn put<'a>(
            &'a self,
            key: &'a str,
            value: Vec<u8>,
            expected: Option<Version>,
        ) -> BoxFuture<'a, Result<Version, RegistryError>> {
            Box::pin(async move {
                self.pause().await;
                self.inner.put(key, value, expected).await
            })
        }

        fn delete<'a>(
            &'a self,
            key: &'a str,
            expected: Option<Version>,
        ) -> BoxFuture<'a, Result<(), RegistryError>> {
            Box::pin(async move {
                self.pause().await;
                self.inner.delete(key, expected).await
            })
        }
    }

    fn agent(id: &str, resources: &str) -> RegistryAgent {
        RegistryAgent {
            id: id.into(),
            hostname: "h".into(),
            port: 5051,
            resources: resources.into(),
            state: RegistryAgentState::Admitted,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_to_many_keys_are_pipelined_and_each_key_keeps_its_order() {
        let store = Arc::new(SlowStore::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (durable_tx, mut durable_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_registry(store.clone(), HashMap::new(), rx));
        // 600 agents admitted, then each written twice more (a stale
        // version, had the order of one key's writes been lost, is a
        // conflict that ends the writer); a flush marker after each round.
        let mut flushes = Vec::new();
        for round in 0..3 {
            for n in 0..600 {
                let entry = agent(&format!("m1-S{n}"), &format!("cpus:{}", round + 1));
                let write = if round == 0 {
                    RegistryWrite::Admit {
                        entry,
                        ticket: AdmissionTicket {
                            agent_id: agora_core::AgentId::new(format!("m1-S{n}")),
                            seq: n,
                        },
                        durable: durable_tx.clone(),
                    }
                } else {
                    RegistryWrite::Agent(entry)
                };
                tx.send(write).expect("send");
            }
            let (done, flushed) = oneshot::channel();
            tx.send(RegistryWrite::Flushed(done)).expect("send");
            flushes.push(flushed);
        }
        let mut first = flushes.remove(0);
        // The first round's flush comes after all of its 600 admissions.
        let mut tickets = 0;
        loop {
            tokio::select! {
                ticket = durable_rx.recv() => {
                    ticket.expect("ticket");
                    tickets += 1;
                }
                answer = &mut first => {
                    answer.expect("answered").expect("durable");
                    break;
                }
            }
        }
        while durable_rx.try_recv().is_ok() {
            tickets += 1;
        }
        assert_eq!(
            tickets, 600,
            "every admission's ticket came back before its flush"
        );
        for flushed in flushes {
            flushed.await.expect("answered").expect("durable");
        }
        drop(tx);
        writer.await.expect("writer").expect("no failure");
        let entries = store.load().await.expect("load");
        assert_eq!(entries.len(), 600);
        for entry in entries {
            let stored: RegistryAgent = serde_json::from_slice(&entry.value).expect("decode");
            assert_eq!(
                stored.resources, "cpus:3",
                "{} kept its last write",
                entry.key
            );
        }
        let most = store.most_under_way.load(Ordering::Relaxed);
        assert!(
            (2..=MAX_IN_FLIGHT).contains(&most),
            "{most} writes under way at once"
        );
    }

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
