//! A stream's outbox: what an actor has for one peer (a framework's
//! subscription or an agent's session on the master; an executor's event
//! stream or the master session on the agent) that the peer has not taken
//! yet.
//!
//! The actor never waits on a peer, and a peer that is merely slow (a
//! RECONCILE of 5,000 tasks, a launch of 4,200 on one agent) loses nothing:
//! the outbox is unbounded and the stream takes from it as fast as HTTP/2
//! flow control lets it send. Only a peer that has taken nothing for
//! [`STUCK_AFTER`] while messages wait, or that lets [`MAX_QUEUED`] pile
//! up, is stuck: the push that finds it so fails, the actor drops the
//! outbox (and logs why), and the stream ends with [`Stuck`] the next time
//! it is polled, without what was still queued; [`Inbox::stuck_signal`]
//! lets the task that owns a client stream give up the connection at once.
//! The peer re-subscribes or re-registers through the normal path and
//! reconciles what it missed.
//!
//! *Invariant:* nothing pushed is ever dropped except after the outbox was
//! declared stuck or its peer went away, and both are reported to the
//! pusher.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A peer that has taken nothing from a non-empty outbox for this long is
/// stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(120);
/// Messages waiting for one peer at most (a bound on memory: about a
/// RECONCILE of 250,000 tasks).
pub const MAX_QUEUED: usize = 250_000;

/// Why a peer was given up: it let `queued` messages wait and took none for
/// `idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{queued} messages wait and none was taken for {idle:?}")]
pub struct Stuck {
    pub queued: usize,
    pub idle: Duration,
}

/// Why a message could not be queued: either way the outbox is of no more
/// use and the actor drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the stream is gone")]
    Gone,
    #[error(transparent)]
    Stuck(#[from] Stuck),
}

#[derive(Debug)]
struct Backlog {
    queued: usize,
    /// When the peer last took a message, or when the outbox last became
    /// non-empty, whichever is later.
    progress: Instant,
    /// Set once, by the push that found the peer stuck.
    stuck: Option<Stuck>,
}

#[derive(Debug)]
struct Shared {
    backlog: Mutex<Backlog>,
    /// Cancelled when the peer is declared stuck.
    stuck: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The actor's side.
///
/// Messages wait boxed: the channel keeps its slots in blocks of 32, one
/// block allocated from the start, and a message type is often large (an
/// agent's `MasterMessage` is 1,144 bytes inline, so 36 KiB per session
/// before anything was sent: 366 MB of a master's 600 with 10,000 agents).
#[derive(Debug)]
pub struct Outbox<T> {
    tx: mpsc::UnboundedSender<Box<T>>,
    shared: Arc<Shared>,
}

/// The stream's side: a [`Stream`] of what was pushed, in order, that ends
/// once the outbox is dropped and everything was taken, or with one
/// `Err(Stuck)` once the peer was declared stuck.
#[derive(Debug)]
pub struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<Box<T>>,
    shared: Arc<Shared>,
    /// The stuck error was yielded: the stream is over.
    done: bool,
}

/// Fires when an outbox's peer is declared stuck; for the task that owns a
/// client connection, which cannot count on its request stream being
/// polled again to notice.
#[derive(Debug, Clone)]
pub struct StuckSignal(CancellationToken);

impl StuckSignal {
    /// Resolves once the peer is declared stuck (at once if it was).
    pub async fn stuck(&self) {
        self.0.cancelled().await;
    }
}

/// A new outbox and the inbox its stream takes from.
pub fn outbox<T>() -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        backlog: Mutex::new(Backlog {
            queued: 0,
            progress: Instant::now(),
            stuck: None,
        }),
        stuck: CancellationToken::new(),
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        Inbox {
            rx,
            shared,
            done: false,
        },
    )
}

impl<T> Outbox<T> {
    /// Queues `item`; never waits. An error means the peer must be dropped
    /// (the caller logs a [`PushError::Stuck`]: the peer did not leave by
    /// itself).
    pub fn push(&self, item: T) -> Result<(), PushError> {
        let mut backlog = self.shared.lock();
        if let Some(stuck) = backlog.stuck {
            return Err(stuck.into());
        }
        let now = Instant::now();
        if backlog.queued == 0 {
            backlog.progress = now;
        }
        let idle = now.saturating_duration_since(backlog.progress);
        if backlog.queued >= MAX_QUEUED || (backlog.queued > 0 && idle >= STUCK_AFTER) {
            let stuck = Stuck {
                queued: backlog.queued,
                idle,
            };
            backlog.stuck = Some(stuck);
            self.shared.stuck.cancel();
            return Err(stuck.into());
        }
        self.tx.send(Box::new(item)).map_err(|_| PushError::Gone)?;
        backlog.queued += 1;
        Ok(())
    }
}

impl<T> Inbox<T> {
    /// The next message; `None` once the actor dropped the outbox and
    /// everything queued was taken, or after the one `Err(Stuck)`.
    pub async fn recv(&mut self) -> Option<Result<T, Stuck>> {
        std::future::poll_fn(|cx| self.poll_take(cx)).await
    }

    /// A signal that fires when this inbox's peer is declared stuck.
    pub fn stuck_signal(&self) -> StuckSignal {
        StuckSignal(self.shared.stuck.clone())
    }

    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Stuck>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(stuck) = self.shared.lock().stuck {
            // What was queued is not sent: the peer reconciles on its next
            // subscription or registration.
            self.done = true;
            self.rx.close();
            return Poll::Ready(Some(Err(stuck)));
        }
        let Some(item) = std::task::ready!(self.rx.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        let mut backlog = self.shared.lock();
        backlog.queued = backlog.queued.saturating_sub(1);
        backlog.progress = Instant::now();
        Poll::Ready(Some(Ok(*item)))
    }
}

impl<T> Stream for Inbox<T> {
    type Item = Result<T, Stuck>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_take(cx)
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
            got.push(item.expect("not stuck"));
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
        inbox.recv().await.expect("first").expect("not stuck");
        tokio::time::advance(STUCK_AFTER - Duration::from_secs(1)).await;
        outbox.push(3).expect("progress was made");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            outbox.push(4),
            Err(PushError::Stuck(Stuck { queued: 2, .. }))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_peer_is_told_once_and_its_stream_ends() {
        let (outbox, mut inbox) = outbox::<u32>();
        let signal = inbox.stuck_signal();
        outbox.push(1).expect("queued");
        tokio::time::advance(STUCK_AFTER).await;
        let Err(PushError::Stuck(stuck)) = outbox.push(2) else {
            panic!("the peer should be stuck");
        };
        // The owner of a client stream hears it without polling the stream.
        tokio::time::timeout(Duration::from_secs(1), signal.stuck())
            .await
            .expect("the signal fired");
        // Every later push fails the same way, even after progress.
        assert_eq!(outbox.push(3), Err(PushError::Stuck(stuck)));
        assert_eq!(inbox.recv().await, Some(Err(stuck)));
        assert_eq!(inbox.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_empty_outbox_is_not_stuck() {
        let (outbox, mut inbox) = outbox::<u32>();
        outbox.push(1).expect("queued");
        inbox.recv().await.expect("taken").expect("not stuck");
        tokio::time::advance(STUCK_AFTER * 10).await;
        outbox.push(2).expect("nothing was waiting");
        outbox.push(3).expect("the first just arrived");
    }

    #[tokio::test]
    async fn too_many_waiting_is_stuck() {
        let (outbox, _inbox) = outbox::<u32>();
        for n in 0..MAX_QUEUED {
            outbox.push(n as u32).expect("under the bound");
        }
        assert!(matches!(
            outbox.push(0),
            Err(PushError::Stuck(Stuck {
                queued: MAX_QUEUED,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn a_gone_peer_is_reported() {
        let (outbox, inbox) = outbox::<u32>();
        drop(inbox);
        assert_eq!(outbox.push(1), Err(PushError::Gone));
    }
}
