//! The ZooKeeper backend: the contender and detector loops over
//! `zookeeper-client`. Nothing of that crate leaves this module and
//! `registry::zk`.
//!
//! Layout under the URL's path (Mesos' group layout, so Mesos-aware tools
//! find the leader): `json.info_<seq>` EPHEMERAL_SEQUENTIAL nodes, one per
//! contending master, holding [`MasterRecord`] JSON; the lowest `<seq>` leads.

use std::future::Future;
use std::time::Duration;

use agora_core::Backoff;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client as zk;

use crate::leadership::Leadership;
use crate::record::MasterRecord;
use crate::url::ZkUrl;

/// Name prefix of election nodes (Mesos' `MASTER_INFO_JSON_LABEL` + `_`).
pub(crate) const MEMBER_PREFIX: &str = "json.info_";

/// How long a closing contender waits for its node's deletion.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before retrying after a transient error (connection loss, throttling).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Bounds of the backoff between failed connection attempts.
const CONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Session timeout used when none is configured (Mesos' `--zk_session_timeout`).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// How to talk to ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZkOptions {
    /// Requested session timeout; the server clamps it to its
    /// `[minSessionTimeout, maxSessionTimeout]`. A crashed leader's node
    /// disappears (and a successor leads) about this long after the crash.
    pub session_timeout: Duration,
}

impl Default for ZkOptions {
    fn default() -> Self {
        Self {
            session_timeout: DEFAULT_SESSION_TIMEOUT,
        }
    }
}

impl ZkOptions {
    /// Sets [`session_timeout`](Self::session_timeout).
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }
}

/// The runtime every ZooKeeper session is served on: one thread of its
/// own. A session answers the server's pings and notices its replies from
/// the task that serves it; on the process's runtime that task waited
/// behind the master's own work, and a leader busy re-admitting 10,000
/// agents heard nothing from ZooKeeper for 1.6 s, dropped the connection
/// and at times its session, and stepped down. The kernel schedules this
/// thread on its own, whatever the other tasks do.
fn session_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("zookeeper")
                .enable_all()
                .build()
                .inspect_err(|e| warn!(error = %e, "cannot start the zookeeper session thread; sessions share the process's runtime"))
                .ok()
        })
        .as_ref()
}

/// Opens a session to the URL's servers (no chroot: paths are absolute),
/// served on [`session_runtime`]; the client may be used from anywhere.
pub(crate) async fn connect(url: &ZkUrl, options: &ZkOptions) -> Result<zk::Client, zk::Error> {
    let connector = zk::Client::connector()
        .with_session_timeout(options.session_timeout)
        .to_owned();
    let servers = url.connect_string();
    let Some(runtime) = session_runtime() else {
        return connector.connect(&servers).await;
    };
    runtime
        .spawn(async move { connector.connect(&servers).await })
        .await
        // Only a runtime shutting down cancels it (the process exits).
        .unwrap_or(Err(zk::Error::ClientClosed))
}

/// Opens a session, retrying with backoff; `None` once cancelled.
async fn connect_retrying(
    url: &ZkUrl,
    options: &ZkOptions,
    cancel: &CancellationToken,
) -> Option<zk::Client> {
    let mut backoff = Backoff::new(CONNECT_BACKOFF_MIN, CONNECT_BACKOFF_MAX);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return None,
            result = connect(url, options) => match result {
                Ok(client) => {
                    debug!(zk = %url, session = %client.session_id(), "zookeeper session established");
                    return Some(client);
                }
                Err(error) => warn!(zk = %url, %error, retry_in = ?backoff.current(), "cannot connect to zookeeper"),
            },
        }
        if !pause(cancel, backoff.next_delay()).await {
            return None;
        }
    }
}

/// Sleeps for `duration`; false when cancelled meanwhile.
async fn pause(cancel: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}

/// The persistent-node options used for directories.
pub(crate) fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Whether an error may go away on its own within the same session.
pub(crate) fn is_transient(error: &zk::Error) -> bool {
    matches!(
        error,
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Throttled
    )
}

/// The election members under `path`, as `(sequence, child name)`, lowest first.
/// Children that are not `json.info_<number>` are ignored.
pub(crate) fn members(children: Vec<String>) -> Vec<(u64, String)> {
    let mut members: Vec<(u64, String)> = children
        .into_iter()
        .filter_map(|name| {
            let seq = name.strip_prefix(MEMBER_PREFIX)?.parse::<u64>().ok()?;
            Some((seq, name))
        })
        .collect();
    members.sort();
    members
}

fn publish<T: PartialEq>(tx: &watch::Sender<T>, value: T) {
    tx.send_if_modified(|current| {
        if *current == value {
            false
        } else {
            *current = value;
            true
        }
    });
}

/// How one session's worth of work ended.
enum Outcome {
    /// The handle went away; the task must stop.
    Cancelled,
    /// The session is unusable (expired, closed, or in an unexpected
    /// state): start over with a new one.
    Rejoin(String),
}

/// What to do after a failed request.
async fn after_error(
    error: zk::Error,
    states: &mut zk::StateWatcher,
    cancel: &CancellationToken,
) -> Result<(), Outcome> {
    if !is_transient(&error) {
        return Err(Outcome::Rejoin(error.to_string()));
    }
    debug!(%error, "transient zookeeper error; retrying");
    tokio::select! {
        () = cancel.cancelled() => Err(Outcome::Cancelled),
        _ = states.changed() => Ok(()),
        () = tokio::time::sleep(RETRY_PAUSE) => Ok(()),
    }
}

/// Waits until the session is connected. `Err` when it terminated or the
/// task was cancelled; `on_wait` runs once before waiting, if it must wait.
async fn until_connected(
    states: &mut zk::StateWatcher,
    cancel: &CancellationToken,
    mut on_wait: impl FnMut(),
) -> Result<(), Outcome> {
    let mut waited = false;
    loop {
        // `state()` marks the latest state seen: a change after this point
        // wakes `states.changed()` below and in the caller.
        let state = states.state();
        if state.is_terminated() {
            return Err(Outcome::Rejoin(format!("session {state}")));
        }
        if state == zk::SessionState::SyncConnected {
            return Ok(());
        }
        if !waited {
            on_wait();
            waited = true;
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(Outcome::Cancelled),
            _ = states.changed() => {}
        }
    }
}

/// Resolves when `watcher` fires, or never when there is none.
async fn maybe_changed(watcher: Option<zk::OneshotWatcher>) -> zk::WatchedEvent {
    match watcher {
        Some(watcher) => watcher.changed().await,
        None => std::future::pending().await,
    }
}

/// The contender task: one session per iteration until cancelled.
pub(crate) async fn run_contender(
    url: ZkUrl,
    record: MasterRecord,
    options: ZkOptions,
    tx: watch::Sender<Leadership>,
    cancel: CancellationToken,
) {
    let data = record.to_json();
    loop {
        publish(&tx, Leadership::Follower { leader: None });
        let Some(client) = connect_retrying(&url, &options, &cancel).await else {
            return;
        };
        let mut node = None;
        let outcome = contend(&client, &url, &data, &tx, &cancel, &mut node).await;
        // Whatever happened, this session no longer leads.
        publish(&tx, Leadership::Follower { leader: None });
        match outcome {
            Outcome::Cancelled => {
                if let Some(node) = node {
                    match tokio::time::timeout(CLOSE_TIMEOUT, client.delete(&node, None)).await {
                        Ok(Ok(()) | Err(zk::Error::NoNode)) => {
                            info!(zk = %url, node, "withdrew from the election");
                        }
                        Ok(Err(error)) => {
                            warn!(zk = %url, node, %error, "cannot delete election node; it goes with the session");
                        }
                        Err(_) => {
                            warn!(zk = %url, node, "timed out deleting election node; it goes with the session");
                        }
                    }
                }
                // Dropping the last client handle closes the session.
                return;
            }
            Outcome::Rejoin(reason) => {
                warn!(zk = %url, reason, "leaving the election session; rejoining with a new session");
                drop(client);
                if !pause(&cancel, CONNECT_BACKOFF_MIN).await {
                    return;
                }
            }
        }
    }
}

/// Creates this session's election node and follows the election until the
/// session is unusable or the task is cancelled. `node` is set to the
/// node's path once created.
async fn contend(
    client: &zk::Client,
    url: &ZkUrl,
    data: &[u8],
    tx: &watch::Sender<Leadership>,
    cancel: &CancellationToken,
    node: &mut Option<String>,
) -> Outcome {
    match contend_inner(client, url, data, tx, cancel, node).await {
        Ok(never) => match never {},
        Err(outcome) => outcome,
    }
}

async fn contend_inner(
    client: &zk::Client,
    url: &ZkUrl,
    data: &[u8],
    tx: &watch::Sender<Leadership>,
    cancel: &CancellationToken,
    node: &mut Option<String>,
) -> Result<std::convert::Infallible, Outcome> {
    let dir = url.path();
    let mut states = client.state_watcher();
    let unusable = |error: zk::Error| Outcome::Rejoin(error.to_string());

    // A failure here (even a connection loss that may have created the node)
    // ends the session, which removes any node it created: no orphan can
    // outrank the node of the next session.
    cancellable(cancel, client.mkdir(dir, &persistent()))
        .await?
        .map_err(unusable)?;
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let prefix = format!("{dir}/{MEMBER_PREFIX}");
    let (_, sequence) = cancellable(cancel, client.create(&prefix, data, &ephemeral))
        .await?
        .map_err(unusable)?;
    let epoch = u64::try_from(sequence.into_i64())
        .map_err(|_| Outcome::Rejoin(format!("negative sequence {sequence}")))?;
    let me = format!("{dir}/{MEMBER_PREFIX}{sequence}");
    *node = Some(me.clone());
    info!(zk = %url, node = me, epoch, session = %client.session_id(), "joined the election");

    loop {
        until_connected(&mut states, cancel, || {
            publish(tx, Leadership::Follower { leader: None });
        })
        .await?;

        let children = match client.list_children(dir).await {
            Ok(children) => members(children),
            Err(error) => {
                after_error(error, &mut states, cancel).await?;
                continue;
            }
        };
        let Some(position) = children.iter().position(|(seq, _)| *seq == epoch) else {
            return Err(Outcome::Rejoin(format!("election node {me} is gone")));
        };

        if position == 0 {
            // Watch our own node too: if an operator deletes it we must
            // not go on leading.
            let watcher = match client.check_and_watch_stat(&me).await {
                Ok((Some(_), watcher)) => watcher,
                Ok((None, _)) => {
                    return Err(Outcome::Rejoin(format!("election node {me} is gone")));
                }
                Err(error) => {
                    after_error(error, &mut states, cancel).await?;
                    continue;
                }
            };
            publish(tx, Leadership::Leading { epoch });
            info!(zk = %url, epoch, "leading");
            tokio::select! {
                () = cancel.cancelled() => return Err(Outcome::Cancelled),
                state = states.changed() => {
                    // Any session event, a disconnection above all, ends
                    // leadership until the next check says otherwise.
                    publish(tx, Leadership::Follower { leader: None });
                    warn!(zk = %url, epoch, %state, "zookeeper session changed; stopped leading");
                }
                event = watcher.changed() => {
                    publish(tx, Leadership::Follower { leader: None });
                    warn!(zk = %url, epoch, event = ?event.event_type, "own election node changed; stopped leading");
                }
            }
            continue;
        }

        let (_, leader_name) = &children[0];
        let (_, predecessor_name) = &children[position - 1];
        let leader_path = format!("{dir}/{leader_name}");
        let leader = match client.get_data(&leader_path).await {
            Ok((bytes, _)) => match MasterRecord::from_json(&bytes) {
                Ok(record) => Some(record),
                Err(error) => {
                    warn!(zk = %url, node = leader_path, %error, "leader's election node holds no valid master record");
                    None
                }
            },
            Err(zk::Error::NoNode) => continue,
            Err(error) => {
                after_error(error, &mut states, cancel).await?;
                continue;
            }
        };
        // Watch only the predecessor (no herd when the leader goes), plus
        // the leader itself so that `leader` stays current.
        let predecessor = match client
            .check_and_watch_stat(&format!("{dir}/{predecessor_name}"))
            .await
        {
            Ok((Some(_), watcher)) => watcher,
            Ok((None, _)) => continue,
            Err(error) => {
                after_error(error, &mut states, cancel).await?;
                continue;
            }
        };
        let leader_watch = if position > 1 {
            match client.check_and_watch_stat(&leader_path).await {
                Ok((Some(_), watcher)) => Some(watcher),
                Ok((None, _)) => continue,
                Err(error) => {
                    after_error(error, &mut states, cancel).await?;
                    continue;
                }
            }
        } else {
            None
        };
        publish(tx, Leadership::Follower { leader });
        tokio::select! {
            () = cancel.cancelled() => return Err(Outcome::Cancelled),
            _ = states.changed() => {}
            _ = predecessor.changed() => {}
            _ = maybe_changed(leader_watch) => {}
        }
    }
}

/// Runs `future` unless cancelled first.
async fn cancellable<T>(
    cancel: &CancellationToken,
    future: impl Future<Output = T>,
) -> Result<T, Outcome> {
    tokio::select! {
        () = cancel.cancelled() => Err(Outcome::Cancelled),
        value = future => Ok(value),
    }
}

/// The detector task: one session per iteration until cancelled.
pub(crate) async fn run_detector(
    url: ZkUrl,
    options: ZkOptions,
    tx: watch::Sender<Option<MasterRecord>>,
    cancel: CancellationToken,
) {
    loop {
        let Some(client) = connect_retrying(&url, &options, &cancel).await else {
            return;
        };
        match detect(&client, &url, &tx, &cancel).await {
            Ok(never) => match never {},
            Err(Outcome::Cancelled) => return,
            Err(Outcome::Rejoin(reason)) => {
                // Without a session the leader is unknown.
                publish(&tx, None);
                warn!(zk = %url, reason, "leader detection session ended; reconnecting");
                drop(client);
                if !pause(&cancel, CONNECT_BACKOFF_MIN).await {
                    return;
                }
            }
        }
    }
}

async fn detect(
    client: &zk::Client,
    url: &ZkUrl,
    tx: &watch::Sender<Option<MasterRecord>>,
    cancel: &CancellationToken,
) -> Result<std::convert::Infallible, Outcome> {
    let dir = url.path();
    let mut states = client.state_watcher();
    loop {
        // While disconnected the last leader stays published: the session
        // (and so the leader's node) may well be alive; after reconnection
        // the children are read again.
        until_connected(&mut states, cancel, || {
            debug!(zk = %url, "disconnected from zookeeper; keeping the last known leader");
        })
        .await?;

        let (children, watcher) = match client.list_and_watch_children(dir).await {
            Ok(found) => found,
            Err(zk::Error::NoNode) => {
                // No master ever joined: wait for the directory.
                match client.check_and_watch_stat(dir).await {
                    Ok((Some(_), _)) => continue,
                    Ok((None, watcher)) => {
                        publish(tx, None);
                        tokio::select! {
                            () = cancel.cancelled() => return Err(Outcome::Cancelled),
                            _ = states.changed() => {}
                            _ = watcher.changed() => {}
                        }
                        continue;
                    }
                    Err(error) => {
                        after_error(error, &mut states, cancel).await?;
                        continue;
                    }
                }
            }
            Err(error) => {
                after_error(error, &mut states, cancel).await?;
                continue;
            }
        };
        let leader = match members(children).into_iter().next() {
            None => None,
            Some((_, name)) => {
                let path = format!("{dir}/{name}");
                match client.get_data(&path).await {
                    Ok((bytes, _)) => match MasterRecord::from_json(&bytes) {
                        Ok(record) => Some(record),
                        Err(error) => {
                            warn!(zk = %url, node = path, %error, "leader's election node holds no valid master record");
                            None
                        }
                    },
                    Err(zk::Error::NoNode) => continue,
                    Err(error) => {
                        after_error(error, &mut states, cancel).await?;
                        continue;
                    }
                }
            }
        };
        if *tx.borrow() != leader {
            info!(zk = %url, leader = leader.as_ref().map(|r| r.endpoint()), "leader changed");
        }
        publish(tx, leader);
        tokio::select! {
            () = cancel.cancelled() => return Err(Outcome::Cancelled),
            _ = states.changed() => {}
            _ = watcher.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_numeric_and_sorted() {
        let children = [
            "json.info_0000000012",
            "registry",
            "json.info_0000000003",
            "info_0000000001",
            "log_replicas",
            "json.info_x",
            "json.info_0000000000000000010",
        ]
        .map(String::from)
        .to_vec();
        let seqs: Vec<u64> = members(children).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [3, 10, 12]);
    }
}
