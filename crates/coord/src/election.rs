//! Leader election (the [`Contender`] a master holds) and leader detection
//! (the [`LeaderDetector`] agents, frameworks and masters hold).
//!
//! Both are handles on a background task that follows ZooKeeper
//! ([`Contender::zookeeper`], [`LeaderDetector::zookeeper`]); a detector can
//! also report a fixed leader ([`LeaderDetector::fixed`], for `--master
//! host:port`), so callers hold one concrete type whatever the deployment.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::leadership::Leadership;
use crate::record::MasterRecord;
use crate::url::ZkUrl;
use crate::zk::{self, ZkOptions};

/// A master's candidacy. While it lives, the master takes part in the
/// election; [`leadership`](Self::leadership) says whether it leads.
///
/// Dropping it withdraws the candidacy in the background; call
/// [`close`](Self::close) to withdraw and wait until the election node is
/// gone (a graceful hand-over takes milliseconds, not a session timeout).
/// A process that exits (or shuts its runtime down) right after a drop may
/// leave the node behind until its session times out: close before exiting.
#[derive(Debug)]
pub struct Contender {
    leadership: watch::Receiver<Leadership>,
    /// The task following the election; dropping it withdraws.
    task: TaskGuard,
}

impl Contender {
    /// Joins the election under `url.path()` with `record` as this master's
    /// advertisement (`<path>/json.info_<seq>`, EPHEMERAL_SEQUENTIAL).
    ///
    /// Returns at once, as a follower; a background task connects (retrying
    /// with backoff while ZooKeeper is unreachable), creates the node and
    /// follows the election. On session expiry it rejoins with a new session
    /// (new node, new epoch).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn zookeeper(url: &ZkUrl, record: MasterRecord, options: ZkOptions) -> Self {
        let (tx, rx) = watch::channel(Leadership::Follower { leader: None });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(zk::run_contender(
            url.clone(),
            record,
            options,
            tx,
            cancel.clone(),
        ));
        Self {
            leadership: rx,
            task: TaskGuard {
                cancel,
                task: Some(task),
            },
        }
    }

    /// A receiver of this contender's role; every change is published.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// The role right now.
    pub fn current(&self) -> Leadership {
        self.leadership.borrow().clone()
    }

    /// Withdraws: stops leading, deletes the election node and closes the
    /// session; returns once that is done (bounded by a few seconds when
    /// ZooKeeper is unreachable, after which the session timeout cleans up).
    pub async fn close(mut self) {
        self.task.stop().await;
    }
}

/// Follows who leads: the master of the lowest `json.info_*` node.
///
/// Over ZooKeeper it keeps the last known leader while briefly disconnected
/// (a leader elected meanwhile is picked up on reconnection, when the
/// children are read again), reports `None` when its session expires, and
/// reconnects with a new session by itself.
#[derive(Debug)]
pub struct LeaderDetector {
    leader: watch::Receiver<Option<MasterRecord>>,
    _owner: DetectorOwner,
}

/// What keeps a detector's channel fed (and open) while the detector lives.
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "held only for its lifetime: dropping it stops the feed"
)]
enum DetectorOwner {
    Task(TaskGuard),
    Fixed(watch::Sender<Option<MasterRecord>>),
}

impl LeaderDetector {
    /// Follows the election under `url.path()`. Returns at once (leader
    /// `None`); a background task connects, retrying while ZooKeeper is
    /// unreachable.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn zookeeper(url: &ZkUrl, options: ZkOptions) -> Self {
        let (tx, rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(zk::run_detector(url.clone(), options, tx, cancel.clone()));
        Self {
            leader: rx,
            _owner: DetectorOwner::Task(TaskGuard {
                cancel,
                task: Some(task),
            }),
        }
    }

    /// A detector that always reports `leader` (for `--master host:port`).
    pub fn fixed(leader: Option<MasterRecord>) -> Self {
        let (tx, rx) = watch::channel(leader);
        Self {
            leader: rx,
            _owner: DetectorOwner::Fixed(tx),
        }
    }

    /// A receiver of the current leader; every change is published. The
    /// channel stays open while this detector lives.
    pub fn leader(&self) -> watch::Receiver<Option<MasterRecord>> {
        self.leader.clone()
    }

    /// The leader right now, if known.
    pub fn current(&self) -> Option<MasterRecord> {
        self.leader.borrow().clone()
    }

    /// Waits until a leader is known (returning it at once if one is), or
    /// `None` after `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<MasterRecord> {
        let mut rx = self.leader.clone();
        let found = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(leader)) => leader.clone(),
            _ => None,
        }
    }
}

/// A background task that is cancelled when its handle goes away.
#[derive(Debug)]
struct TaskGuard {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TaskGuard {
    async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
            && error.is_panic()
        {
            tracing::error!(%error, "coordination task panicked");
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
