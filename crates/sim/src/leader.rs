//! Where the simulated agents find the leading master, as `agora agent`
//! does: a fixed `host:port`, or whoever leads according to ZooKeeper
//! (`zk://host:2181/agora`, through `agora_coord::LeaderDetector`). One
//! detector serves every simulated agent; each session watches the
//! endpoint it publishes.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::SimError;

/// The leader's gRPC endpoint (`http://host:port`), `None` while no leader
/// is known. A session re-registers when it changes to another endpoint.
pub(crate) type Endpoint = watch::Receiver<Option<String>>;

fn endpoint_of(address: &str) -> String {
    let rest = address.strip_prefix("http://").unwrap_or(address);
    format!("http://{rest}")
}

/// Starts following the leader named by `master`; the watch lives until
/// `shutdown`.
pub(crate) fn follow(master: &str, shutdown: CancellationToken) -> Result<Endpoint, SimError> {
    if !master.starts_with("zk://") {
        let (tx, rx) = watch::channel(Some(endpoint_of(master)));
        // The sender lives as long as the simulator: a closed watch would
        // read as "the leader moved" to every session.
        tokio::spawn(async move {
            shutdown.cancelled().await;
            drop(tx);
        });
        return Ok(rx);
    }
    let url = agora_coord::ZkUrl::parse(master).map_err(|e| SimError::Master {
        master: master.to_string(),
        reason: e.to_string(),
    })?;
    let detector = agora_coord::LeaderDetector::zookeeper(&url, agora_coord::ZkOptions::default());
    let mut leader = detector.leader();
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        // The detector stops when dropped: it lives in this task.
        let _detector = detector;
        loop {
            let endpoint = leader
                .borrow_and_update()
                .as_ref()
                .map(|l| endpoint_of(&l.endpoint()));
            tracing::info!(leader = ?endpoint, "leading master");
            tx.send_replace(endpoint);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leader.changed() => if changed.is_err() { return },
            }
        }
    });
    Ok(rx)
}
