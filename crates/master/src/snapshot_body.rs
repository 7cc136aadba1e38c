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
/// snapshot share one serialization. It is made on a blocking thread
/// (100k tasks take milliseconds to tens of them) while the lock is held,
/// so concurrent pollers wait for one body. A `Weak` keeps the snapshot's
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
        })))
    }
}

/// The last body and the snapshot it was made from, and what it kept.
struct Made<B, K> {
    last: Option<(std::sync::Weak<StateSnapshot>, B)>,
    kept: K,
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
        let (body, kept) = off_workers(move || {
            let body = make(current.as_ref(), &mut kept);
            (body, kept)
        })
        .await?;
        // Kept even when this body failed: what it holds is still right,
        // only perhaps less of it.
        made.kept = kept;
        let body = body.map_err(cannot_serialize)?;
        made.last = Some((made_from, body.clone()));
        Ok(body)
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
    let remaining = rope.len() as u64;
    let body = RopeBody {
        rope,
        next: 0,
        remaining,
    };
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

/// A rope as an HTTP body: one frame per piece.
struct RopeBody {
    rope: Rope,
    /// The next piece to send.
    next: usize,
    /// Bytes not sent yet.
    remaining: u64,
}

impl http_body::Body for RopeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(piece) = this.rope.pieces().get(this.next).cloned() else {
            return Poll::Ready(None);
        };
        this.next += 1;
        this.remaining = this.remaining.saturating_sub(piece.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(piece))))
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
