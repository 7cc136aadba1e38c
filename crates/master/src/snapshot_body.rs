//! Bodies made from a published snapshot, once per snapshot whoever asks
//! (`/state`, the Mesos `/state` and `/master/state`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};

use crate::snapshot::StateSnapshot;

/// A body made from a snapshot (`/state`'s JSON, the Mesos `/state`'s),
/// made once per published snapshot whoever polls: pollers of an unchanged
/// snapshot share one serialization. It is made on a blocking thread
/// (100k tasks take tens of milliseconds) while the lock is held, so
/// concurrent pollers wait for one body. A `Weak` keeps the snapshot's
/// address from being reused (so pointer equality cannot mistake a new
/// snapshot for the old one) without keeping its contents.
#[derive(Clone, Default)]
pub(crate) struct SnapshotBody(Arc<tokio::sync::Mutex<Option<MadeFrom>>>);

/// A body and the snapshot it was made from.
type MadeFrom = (std::sync::Weak<StateSnapshot>, Bytes);

impl SnapshotBody {
    /// The body of `current`, made by `make` unless it already was; a
    /// failure is logged and answered with 500.
    pub(crate) async fn get(
        &self,
        current: Arc<StateSnapshot>,
        make: impl FnOnce(&StateSnapshot) -> serde_json::Result<Vec<u8>> + Send + 'static,
    ) -> Result<Bytes, Response> {
        let mut cached = self.0.lock().await;
        if let Some((made_from, body)) = cached.as_ref()
            && std::ptr::eq(made_from.as_ptr(), Arc::as_ptr(&current))
        {
            return Ok(body.clone());
        }
        let made_from = Arc::downgrade(&current);
        let body = match tokio::task::spawn_blocking(move || make(current.as_ref())).await {
            Ok(Ok(body)) => Bytes::from(body),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot serialize the state");
                return Err(cannot_serialize());
            }
            Err(e) => {
                tracing::error!(error = %e, "state serialization did not finish");
                return Err(cannot_serialize());
            }
        };
        *cached = Some((made_from, body.clone()));
        Ok(body)
    }
}

/// The answer when a body cannot be made (as the operator endpoints' errors).
fn cannot_serialize() -> Response {
    let error = serde_json::json!({ "error": "cannot serialize the state" });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(error)).into_response()
}
