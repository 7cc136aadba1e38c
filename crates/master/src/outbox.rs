//! A stream's outbox: what the actor has for one peer (a framework's
//! subscription, an agent's session) and the peer has not taken yet.
//!
//! The actor never waits on a peer, and a peer that is merely slow (a
//! RECONCILE of 5,000 tasks, a launch of 4,200 on one agent) loses nothing:
//! the outbox is unbounded and the stream takes from it as fast as HTTP/2
//! flow control lets it send. Only a peer that has taken nothing for
//! [`STUCK_AFTER`] while messages wait, or that lets [`MAX_QUEUED`] pile
//! up, is dropped (with a warning); it re-subscribes or re-registers
//! through the normal path and reconciles what it missed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

/// A peer that has taken nothing from a non-empty outbox for this long is
/// stuck.
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(120);
/// Messages waiting for one peer at most (a bound on memory: about a
/// RECONCILE of 250,000 tasks).
pub(crate) const MAX_QUEUED: usize = 250_000;

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PushError {
    #[error("the stream is gone")]
    Gone,
    #[error("{queued} messages wait and none was taken for {idle:?}")]
    Stuck { queued: usize, idle: Duration },
}

#[derive(Debug)]
struct Backlog {
    queued: usize,
    /// When the peer last took a message, or when the outbox last became
    /// non-empty, whichever is later.
    progress: Instant,
}

/// The actor's side.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    tx: mpsc::UnboundedSender<Result<T, Status>>,
    backlog: Arc<Mutex<Backlog>>,
}

/// The stream's side.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<Result<T, Status>>,
    backlog: Arc<Mutex<Backlog>>,
}

pub(crate) fn outbox<T>() -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(Mutex::new(Backlog {
        queued: 0,
        progress: Instant::now(),
    }));
    (
        Outbox {
            tx,
            backlog: backlog.clone(),
        },
        Inbox { rx, backlog },
    )
}

fn lock(backlog: &Mutex<Backlog>) -> std::sync::MutexGuard<'_, Backlog> {
    backlog.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Outbox<T> {
    /// Queues `item`; never waits. An error means the peer must be dropped.
    pub(crate) fn push(&self, item: T) -> Result<(), PushError> {
        let mut backlog = lock(&self.backlog);
        let now = Instant::now();
        if backlog.queued == 0 {
            backlog.progress = now;
        }
        let idle = now.saturating_duration_since(backlog.progress);
        if backlog.queued >= MAX_QUEUED || (backlog.queued > 0 && idle >= STUCK_AFTER) {
            return Err(PushError::Stuck {
                queued: backlog.queued,
                idle,
            });
        }
        self.tx.send(Ok(item)).map_err(|_| PushError::Gone)?;
        backlog.queued += 1;
        Ok(())
    }
}

impl<T> Inbox<T> {
    /// The next message; `None` once the actor dropped the outbox and
    /// everything queued was taken.
    pub(crate) async fn recv(&mut self) -> Option<Result<T, Status>> {
        let item = self.rx.recv().await?;
        let mut backlog = lock(&self.backlog);
        backlog.queued = backlog.queued.saturating_sub(1);
        backlog.progress = Instant::now();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_peer_gets_every_message_in_order() {
        let (outbox, mut inbox) = outbox::<u32>();
        // Far more than the old 4,096-message buffer, none taken meanwhile.
        for n in 0..5_000 {
            outbox.push(n).expect("a slow peer is not dropped");
        }
        drop(outbox);
        let mut got = Vec::new();
        while let Some(item) = inbox.recv().await {
            got.push(item.expect("no error queued"));
        }
        assert_eq!(got, (0..5_000).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_nothing_for_minutes_is_stuck() {
        let (outbox, mut inbox) = outbox::<u32>();
        outbox.push(1).expect("queued");
        tokio::time::advance(STUCK_AFTER - Duration::from_secs(1)).await;
        outbox.push(2).expect("not stuck yet");
        // Taking one is progress: the clock starts again.
        inbox.recv().await.expect("first").expect("ok");
        tokio::time::advance(STUCK_AFTER - Duration::from_secs(1)).await;
        outbox.push(3).expect("progress was made");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            outbox.push(4),
            Err(PushError::Stuck { queued: 2, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_empty_outbox_is_not_stuck() {
        let (outbox, mut inbox) = outbox::<u32>();
        outbox.push(1).expect("queued");
        inbox.recv().await.expect("taken").expect("ok");
        tokio::time::advance(STUCK_AFTER * 10).await;
        outbox.push(2).expect("nothing was waiting");
        outbox.push(3).expect("the first just arrived");
    }

    #[tokio::test]
    async fn a_gone_peer_is_reported() {
        let (outbox, inbox) = outbox::<u32>();
        drop(inbox);
        assert_eq!(outbox.push(1), Err(PushError::Gone));
    }
}
