//! Leadership terms. With `--zk`, the master contends for leadership; while it
//! follows it serves only `/health`, `/state` (naming the leader) and
//! redirects, and refuses gRPC calls with the leader's address. Once elected
//! it loads the registry, starts a fresh state machine for the term, and
//! serves. The moment its ZooKeeper session is disconnected it stops acting:
//! the gate closes at once and the process exits, to rejoin as a follower
//! (a deposed leader can do no harm: it no longer accepts any call).
//!
//! Without ZooKeeper the master leads at once; its registry is a file under
//! `--work-dir` (or memory only, when no work dir is given).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_allocator::DrfAllocator;
use agora_coord::{
    Contender, FileRegistryStore, Leadership, MasterRecord, MemoryRegistryStore, RegistryStore,
    Version, ZkOptions, ZkRegistryStore,
};
use agora_core::Backoff;
use agora_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::actor::start_actor;
use crate::error::ShellError;
use crate::metrics::MasterMetrics;
use crate::options::MasterOptions;
use crate::protocol::Gate;
use crate::registry_writer::write_registry;
use crate::snapshot::StateSnapshot;
use crate::state::{
    Master, MasterConfig, Now, QUOTA_KEY_PREFIX, RegistryAgent, RegistryQuota, WEIGHTS_KEY,
};
use crate::supervisor::{Ended, Supervisor};

pub(crate) struct Terms {
    pub(crate) options: MasterOptions,
    pub(crate) master_id: String,
    pub(crate) gate: watch::Sender<Gate>,
    pub(crate) snapshot: watch::Sender<Arc<StateSnapshot>>,
    pub(crate) shutdown: CancellationToken,
    /// The registry store; chosen from the options when `None`.
    pub(crate) store: Option<Arc<dyn RegistryStore>>,
    /// This master's measurements: leader changes are counted here, the
    /// term's actor records into them.
    pub(crate) metrics: Arc<MasterMetrics>,
}

impl Terms {
    /// Moves the gate (who may act), counting a change of leader.
    fn set_gate(&self, gate: Gate) {
        self.metrics.gate_changed(&gate);
        self.gate.send_replace(gate);
    }

    fn master_info(&self, epoch: Option<u64>) -> pb::MasterInfo {
        let options = &self.options;
        let ip = match options.advertise.ip() {
            std::net::IpAddr::V4(v4) => u32::from(v4),
            std::net::IpAddr::V6(_) => 0,
        };
        pb::MasterInfo {
            epoch,
            id: self.master_id.clone(),
            ip,
            port: u32::from(options.advertise.port()),
            pid: Some(format!("master@{}", options.advertise)),
            hostname: Some(options.hostname.clone()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            address: Some(pb::Address {
                hostname: Some(options.hostname.clone()),
                ip: Some(options.advertise.ip().to_string()),
                port: i32::from(options.advertise.port()),
            }),
        }
    }

    fn store(&self) -> Arc<dyn RegistryStore> {
        match (&self.options.zk, &self.options.work_dir) {
            (Some(url), _) => Arc::new(ZkRegistryStore::new(url, self.zk_options())),
            (None, Some(dir)) => Arc::new(FileRegistryStore::new(dir.join("registry"))),
            (None, None) => {
                tracing::warn!("no --work-dir and no --zk: the registry is kept in memory only");
                Arc::new(MemoryRegistryStore::new())
            }
        }
    }

    fn zk_options(&self) -> ZkOptions {
        ZkOptions::default().with_session_timeout(self.options.zk_session_timeout)
    }

    /// Follows and leads until shut down, deposed, or until one of `tasks`
    /// (the server, and each term's actor and registry writer) ends.
    pub(crate) async fn run(self, tasks: &mut Supervisor<ShellError>) -> Result<(), ShellError> {
        let store = self.store.clone().unwrap_or_else(|| self.store());
        let contender = self.options.zk.as_ref().map(|url| {
            let record = MasterRecord::new(
                self.master_id.clone(),
                self.options.hostname.clone(),
                self.options.advertise.ip(),
                self.options.advertise.port(),
                env!("CARGO_PKG_VERSION"),
            )
            // Detectors then reach this master at https.
            .with_tls(self.options.tls.serves_tls());
            Contender::zookeeper(url, record, self.zk_options())
        });
        // Without ZooKeeper this master leads for as long as it runs.
        let (_always, standalone) = watch::channel(Leadership::Leading { epoch: 0 });
        let mut leadership = contender.as_ref().map_or(standalone, Contender::leadership);
        let outcome = self
            .serve_terms(&mut leadership, store, contender.is_some(), tasks)
            .await;
        if let Some(contender) = contender {
            if !matches!(outcome, Err(ShellError::LostLeadership)) {
                // Deleting our node at once hands over within moments, not
                // after a session timeout (a failed term too: the next
                // master should lead at once). Bounded: ZooKeeper may be gone.
                if tokio::time::timeout(Duration::from_secs(2), contender.close())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "could not withdraw from the election in time; the session will expire"
                    );
                }
            } else {
                // Deposed: our node is already gone or will expire with the session.
                drop(contender);
            }
        }
        outcome
    }

    async fn serve_terms(
        &self,
        leadership: &mut watch::Receiver<Leadership>,
        store: Arc<dyn RegistryStore>,
        with_zk: bool,
        tasks: &mut Supervisor<ShellError>,
    ) -> Result<(), ShellError> {
        // Follow until elected.
        let epoch = loop {
            let current = leadership.borrow_and_update().clone();
            match current {
                Leadership::Leading { epoch } => break epoch,
                Leadership::Follower { leader } => {
                    let leader = leader.map(|r| r.endpoint());
                    tracing::info!(leader = ?leader, "following");
                    self.snapshot.send_replace(Arc::new(StateSnapshot::follower(
                        &self.master_id,
                        &self.options.hostname,
                        leader.as_deref(),
                    )));
                    self.set_gate(Gate::Following { leader });
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                changed = leadership.changed() => if changed.is_err() { return Err(ShellError::LostLeadership) },
                // The server is supervised while following too.
                ended = tasks.first_end() => {
                    let error = term_failure(ended);
                    tracing::error!(error = %error, "the master cannot serve");
                    return Err(error);
                }
            }
        };
        tracing::info!(epoch, "elected leading master; loading the registry");
        self.set_gate(Gate::Recovering);
        let Some(entries) = self.load_registry(&store, leadership).await? else {
            return Ok(());
        };
        let mut config = MasterConfig::new(self.master_info(with_zk.then_some(epoch)));
        config.agent_ping_timeout = self.options.agent_ping_timeout;
        config.max_agent_ping_timeouts = self.options.max_agent_ping_timeouts;
        config.agent_removal_timeout = self.options.agent_removal_timeout;
        config.max_completed_frameworks = self.options.max_completed_frameworks;
        config.max_completed_tasks_per_framework = self.options.max_completed_tasks_per_framework;
        config.registry_max_agent_age = self.options.registry_max_agent_age;
        config.registry_max_agent_count = self.options.registry_max_agent_count;
        config.registry_gc_interval = self.options.registry_gc_interval;
        config.acls = self.options.acls.clone();
        config.shell_flags = self.options.flags();
        config.offer_timeout = self.options.offer_timeout;
        config.epoch = with_zk.then_some(epoch);
        config.framework_id_seed = rand::random();
        // Seeded from the epoch: a term's agent visiting order is reproducible from its logs.
        let mut master = Master::new(config, Box::new(DrfAllocator::with_seed(epoch ^ 0x5eed)));
        let agents: Vec<RegistryAgent> = entries
            .iter()
            .filter(|(key, _, _)| key.starts_with("agent:"))
            .filter_map(|(_, value, _)| match serde_json::from_slice(value) {
                Ok(agent) => Some(agent),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable registry entry skipped");
                    None
                }
            })
            .collect();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        master.recover(
            Now {
                monotonic: Duration::ZERO,
                wall,
            },
            agents,
            self.options.agent_reregister_timeout,
        );
        let (weights, quotas) = policy_entries(&entries);
        master.recover_policy(weights, quotas);
        let versions: HashMap<String, Version> = entries
            .into_iter()
            .map(|(key, _, version)| (key, version))
            .collect();
        let (registry_tx, registry_rx) = mpsc::unbounded_channel();
        let term = self.shutdown.child_token();
        let writer = tokio::spawn(async move {
            write_registry(store, versions, registry_rx)
                .await
                .map_err(|failure| ShellError::Registry(failure.to_string()))
        });
        // The writer ends when the actor's sender is dropped: if it is seen
        // to stop first, the actor's end is what ended the term.
        tasks.watch_after(REGISTRY_WRITER, writer, ACTOR);
        let (commands, actor) = start_actor(
            master,
            self.options.allocation_interval,
            self.snapshot.clone(),
            registry_tx,
            self.metrics.clone(),
            term.clone(),
        );
        tasks.watch(ACTOR, actor);
        self.set_gate(Gate::Leading { commands });
        tracing::info!(epoch, "leading");
        // Lead until shut down or deposed, or until a task of the term ends
        // (the server, the actor, the registry writer): a leader that can no
        // longer serve or act (a task panicked, its registry cannot be
        // written) must not keep the leadership: it steps down and the
        // process exits.
        let outcome = tokio::select! {
            // First: a shutdown also ends the actor, which is no failure.
            biased;
            _ = self.shutdown.cancelled() => Ok(()),
            lost = lost_leadership(leadership) => lost,
            ended = tasks.first_end() => {
                tracing::warn!(epoch, task = ended.task(), "a task of the term ended");
                Err(term_failure(ended))
            }
        };
        // Stop acting at once: no call gets through from here on.
        self.set_gate(Gate::Following { leader: None });
        if let Err(e) = &outcome {
            tracing::error!(epoch, error = %e, "leadership term ended");
        }
        term.cancel();
        tasks.join(ACTOR).await;
        // Readers must not see a deposed leader claim to lead.
        self.snapshot.send_replace(Arc::new(StateSnapshot::follower(
            &self.master_id,
            &self.options.hostname,
            None,
        )));
        // Entries queued before the end are still written (the writer ends when the actor's sender is dropped).
        tasks
            .join_within(REGISTRY_WRITER, Duration::from_secs(5))
            .await;
        outcome
    }

    /// Loads the registry, retrying while this master still leads. `None`
    /// when shut down meanwhile.
    async fn load_registry(
        &self,
        store: &Arc<dyn RegistryStore>,
        leadership: &mut watch::Receiver<Leadership>,
    ) -> Result<Option<Vec<(String, Vec<u8>, Version)>>, ShellError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match store.load().await {
                Ok(entries) => {
                    return Ok(Some(
                        entries
                            .into_iter()
                            .filter(|e| {
                                e.key.starts_with("agent:")
                                    || e.key == WEIGHTS_KEY
                                    || e.key.starts_with(QUOTA_KEY_PREFIX)
                            })
                            .map(|e| (e.key, e.value, e.version))
                            .collect(),
                    ));
                }
                Err(e) => tracing::warn!(error = %e, "cannot load the registry; retrying"),
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
                changed = leadership.changed() => {
                    if changed.is_err() || !leadership.borrow_and_update().is_leading() {
                        return Err(ShellError::LostLeadership);
                    }
                }
            }
        }
    }
}

/// The names of the term's tasks (the server's is [`SERVER`]).
const ACTOR: &str = "actor";
const REGISTRY_WRITER: &str = "registry writer";
/// The server (gRPC and HTTP), supervised from before the first term.
pub(crate) const SERVER: &str = "server";

/// The error a term ends with when one of its tasks ended first.
fn term_failure(ended: Ended<ShellError>) -> ShellError {
    match ended {
        Ended::Stopped { task } => ShellError::TermFailed {
            task,
            reason: "it stopped".into(),
        },
        Ended::Failed { error, .. } => error,
        Ended::Died { task, reason } => ShellError::TermFailed { task, reason },
    }
}

/// Resolves once this master no longer leads.
async fn lost_leadership(leadership: &mut watch::Receiver<Leadership>) -> Result<(), ShellError> {
    loop {
        if leadership.changed().await.is_err() || !leadership.borrow_and_update().is_leading() {
            return Err(ShellError::LostLeadership);
        }
    }
}

/// Weights and quotas among the registry's entries (unreadable ones skipped).
fn policy_entries(
    entries: &[(String, Vec<u8>, Version)],
) -> (std::collections::BTreeMap<String, f64>, Vec<RegistryQuota>) {
    let mut weights = std::collections::BTreeMap::new();
    let mut quotas = Vec::new();
    for (key, value, _) in entries {
        if key == WEIGHTS_KEY {
            match serde_json::from_slice(value) {
                Ok(w) => weights = w,
                Err(e) => tracing::warn!(error = %e, "unreadable registry weights skipped"),
            }
        } else if key.starts_with(QUOTA_KEY_PREFIX) {
            match serde_json::from_slice::<RegistryQuota>(value) {
                Ok(q) => quotas.push(q),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "unreadable registry quota skipped")
                }
            }
        }
    }
    (weights, quotas)
}
