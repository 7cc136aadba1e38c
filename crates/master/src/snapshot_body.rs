//! Bodies made from a published snapshot, once per snapshot whoever asks
//! (`/state`, the Mesos `/state` and `/master/state`), and `/state`'s sent
//! piece by piece, in gzip to the clients that take it ([`gzip`]).

pub mod gzip;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use http_body::{Frame, SizeHint};

use crate::snapshot::StateSnapshot;
use crate::snapshot::state_body::Rope;

/// A body made from a snapshot (`/state`'s JSON, the Mesos `/state`'s),
/// made once per published snapshot whoever polls: pollers of an unchanged
/// snapshot share one serialization. It is made on a thread of the
/// cache's own ([`BodyThread`]; 100k tasks take milliseconds to tens of
/// them) while the lock is held, so concurrent pollers wait for one body. A `Weak` keeps the snapshot's
/// address from being reused (so pointer equality cannot mistake a new
/// snapshot for the old one) without keeping its contents. `K` is what a
/// body keeps for the next one (`/state`'s chunk JSON), handed to each
/// making in turn.
pub(crate) struct SnapshotBody<B, K = ()>(Arc<tokio::sync::Mutex<Made<B, K>>>);

impl<B, K> Clone for SnapshotBody<B, K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<B, K: Default> Default for SnapshotBody<B, K> {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Mutex::new(Made {
            last: None,
            kept: K::default(),
            thread: None,
        })))
    }
}

/// The last body and the snapshot it was made from, what it kept, and
/// the thread that makes the bodies (started with the first).
struct Made<B, K> {
    last: Option<(std::sync::Weak<StateSnapshot>, B)>,
    kept: K,
    thread: Option<BodyThread>,
}

impl<B, K> SnapshotBody<B, K>
where
    B: Clone + Send + 'static,
    K: Default + Send + 'static,
{
    /// The body of `current`, made by `make` unless it already was; a
    /// failure is logged and answered with 500.
    pub(crate) async fn get(
        &self,
        current: Arc<StateSnapshot>,
        make: impl FnOnce(&StateSnapshot, &mut K) -> serde_json::Result<B> + Send + 'static,
    ) -> Result<B, Response> {
        let mut made = self.0.lock().await;
        if let Some((made_from, body)) = made.last.as_ref()
            && std::ptr::eq(made_from.as_ptr(), Arc::as_ptr(&current))
        {
            return Ok(body.clone());
        }
        let made_from = Arc::downgrade(&current);
        let mut kept = std::mem::take(&mut made.kept);
        let making = move || {
            let body = make(current.as_ref(), &mut kept);
            (body, kept)
        };
        if made.thread.is_none() {
            made.thread = BodyThread::start()
                .inspect_err(|e| tracing::warn!(error = %e, "cannot start a body thread"))
                .ok();
        }
        let (body, kept) = match &made.thread {
            Some(thread) => thread.run(making).await?,
            // No thread of its own: a blocking thread of the pool's.
            None => off_workers(making).await?,
        };
        // Kept even when this body failed: what it holds is still right,
        // only perhaps less of it.
        made.kept = kept;
        let body = body.map_err(cannot_serialize)?;
        made.last = Some((made_from, body.clone()));
        Ok(body)
    }
}

/// What a thread of [`BodyThread`]'s runs.
type Job = Box<dyn FnOnce() + Send>;

/// The thread a cache's bodies are made on, one after another; it ends
/// when the cache is dropped (the channel's only sender).
///
/// On the blocking pool each body ran on whichever of its threads was
/// free, about ten of them in turn, each with an allocator arena of its
/// own: a body's buffers came from an arena that the previous bodies'
/// memory had not been freed into, so the heap grew and faulted in fresh
/// pages for every body, and whatever the last body left in a thread's
/// caches was elsewhere. On one thread each body's buffers reuse what the
/// bodies before it freed.
struct BodyThread(std::sync::mpsc::Sender<Job>);

impl BodyThread {
    fn start() -> std::io::Result<Self> {
        let (jobs, next) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("agora-bodies".to_owned())
            .spawn(move || {
                // Bounded by the cache: `recv` fails once it is dropped.
                while let Ok(job) = next.recv() {
                    // A job that panics drops its answer's sender: its
                    // caller answers 500, and the thread goes on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(Self(jobs))
    }

    /// Runs `make` on the thread, after the bodies queued before it; a
    /// `make` that panics is logged and answered with 500.
    async fn run<T: Send + 'static>(
        &self,
        make: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Response> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(make());
        });
        if self.0.send(job).is_err() {
            tracing::error!("the body thread is gone");
            return Err(internal_error());
        }
        answered.await.map_err(|_| {
            tracing::error!("state serialization did not finish");
            internal_error()
        })
    }
}

/// Runs `make` on a blocking thread (a body at 100k tasks takes
/// milliseconds to tens of them); a `make` that panics is logged and
/// answered with 500.
pub(crate) async fn off_workers<T: Send + 'static>(
    make: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(make).await.map_err(|e| {
        tracing::error!(error = %e, "state serialization did not finish");
        internal_error()
    })
}

/// A read endpoint's answer, made on a blocking thread: whatever walks the
/// snapshot (every task, every agent: tens of milliseconds at 100,000
/// tasks) must not hold one of the async workers, which serve the agents'
/// and frameworks' streams meanwhile.
pub(crate) use agora_net::off_workers::answer as answer_off_workers;

/// The answer when a body cannot be made: logged, and 500 with a JSON
/// error (as the operator endpoints' errors).
pub(crate) fn cannot_serialize(e: serde_json::Error) -> Response {
    tracing::error!(error = %e, "cannot serialize the state");
    internal_error()
}

fn internal_error() -> Response {
    let error = serde_json::json!({ "error": "cannot serialize the state" });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(error)).into_response()
}

/// How a rope's JSON is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    /// The rope is the JSON's gzip ([`gzip::gzip`]).
    Gzip,
}

/// A JSON response whose body is `rope`'s pieces, sent as they are (no
/// copy into one buffer), with its length known up front; it varies with
/// what the client takes.
pub(crate) fn json_rope(rope: Rope, coding: Coding) -> Response {
    let body = RopeBody::new(rope);
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::VARY, "accept-encoding"),
        ],
        Body::new(body),
    )
        .into_response();
    if coding == Coding::Gzip {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    response
}

/// A frame of a rope's body holds pieces shorter than this copied
/// together, up to [`FRAME`] bytes; a piece this long or longer goes out
/// as a frame of its own, uncopied.
pub(crate) const SMALL_PIECE: usize = 16 * 1024;

/// Where the frames of a body that went out as pieces of it, uncopied
/// (the long ones), begin: for the tests that check that a body was
/// served from its cache.
#[cfg(test)]
pub(crate) fn long_frame_addresses(frames: &[Bytes]) -> Vec<usize> {
    frames
        .iter()
        .filter(|f| f.len() >= SMALL_PIECE)
        .map(|f| f.as_ptr() as usize)
        .collect()
}

/// How many bytes of small pieces a frame gathers at most.
const FRAME: usize = 64 * 1024;

/// A rope as an HTTP body. A gzip rope is mostly segments of a few
/// kilobytes (a compressed chunk), and HTTP/1 queues at most 16 frames for
/// a `writev`: one frame per piece made a `/state` poll of 2,279 pieces
/// about 140 writes, each pushing a few segments through the loopback's
/// TCP stack. Small pieces are copied into frames of up to [`FRAME`]
/// bytes; long ones (a JSON chunk) are sent as they are.
struct RopeBody {
    rope: Rope,
    /// The next piece to send.
    next: usize,
    /// Bytes not sent yet.
    remaining: u64,
}

impl RopeBody {
    fn new(rope: Rope) -> Self {
        let remaining = rope.len() as u64;
        Self {
            rope,
            next: 0,
            remaining,
        }
    }

    /// The next frame: the next piece if it is long, else the small pieces
    /// from it on, copied together up to [`FRAME`] bytes (at least one).
    fn next_frame(&mut self) -> Option<Bytes> {
        let pieces = self.rope.pieces();
        let first = pieces.get(self.next)?;
        if first.len() >= SMALL_PIECE {
            self.next += 1;
            return Some(first.clone());
        }
        let mut end = self.next;
        let mut len = 0;
        while let Some(piece) = pieces.get(end) {
            if piece.len() >= SMALL_PIECE || (len > 0 && len + piece.len() > FRAME) {
                break;
            }
            len += piece.len();
            end += 1;
        }
        let frame = if end == self.next + 1 {
            first.clone()
        } else {
            let mut frame = Vec::with_capacity(len);
            for piece in &pieces[self.next..end] {
                frame.extend_from_slice(piece);
            }
            Bytes::from(frame)
        };
        self.next = end;
        Some(frame)
    }
}

impl http_body::Body for RopeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(frame) = this.next_frame() else {
            return Poll::Ready(None);
        };
        this.remaining = this.remaining.saturating_sub(frame.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.rope.pieces().len()
    }

    fn size_hint(&self) -> SizeHint {
        // Exact, so that the length goes out as Content-Length.
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests;
