//! Answers made off the async workers.
//!
//! A daemon's async workers serve every stream it holds (agents' and
//! frameworks' on a master, executors' on an agent). A read that walks the
//! whole state (every task, every agent) or makes an ACL-filtered copy of
//! it takes tens of milliseconds at scale; made on a worker, it holds that
//! worker, and a few clients reading in a loop hold them all. Every such
//! read is made with [`answer`], on tokio's blocking threads.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `make`'s answer, made on a blocking thread; a `make` that panics is
/// logged and answered with 500.
pub async fn answer(make: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(make).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "an answer made off the async workers did not finish");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the answer could not be made\n",
            )
                .into_response()
        }
    }
}

/// Asserts that each of `requests`, made by `request`, is answered off the
/// async workers: on a runtime with one worker and one blocking thread,
/// which a blocker holds, a task spawned after the request runs before the
/// answer is ready, and the answer comes once the blocker lets go. An
/// answer made on the worker is ready in the request's first poll, before
/// that task runs. For the daemons' tests (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub fn assert_answered<F>(requests: &[&'static str], request: impl Fn(&'static str) -> F)
where
    F: std::future::Future<Output = StatusCode> + Send + 'static,
{
    for what in requests {
        assert_one_answered(what, request(what));
    }
}

#[cfg(any(test, feature = "testing"))]
fn assert_one_answered<F>(what: &str, request: F)
where
    F: std::future::Future<Output = StatusCode> + Send + 'static,
{
    use std::sync::{Arc, Mutex};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let order = runtime.block_on(async move {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || released.recv());
        let answer = {
            let order = order.clone();
            tokio::spawn(async move {
                let status = request.await;
                order.lock().expect("order").push("answer");
                status
            })
        };
        let other = {
            let order = order.clone();
            tokio::spawn(async move { order.lock().expect("order").push("other task") })
        };
        other.await.expect("other task");
        release.send(()).expect("the blocker waits");
        blocker.await.expect("blocker").expect("released");
        assert_eq!(
            answer.await.expect("request task"),
            StatusCode::OK,
            "{what}"
        );
        let seen = order.lock().expect("order").clone();
        drop(order);
        seen
    });
    assert_eq!(
        order,
        ["other task", "answer"],
        "{what} was answered on the async worker"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_made_off_the_workers_passes_and_one_made_on_them_fails() {
        assert_answered(&["off"], |_| async {
            answer(|| StatusCode::OK.into_response()).await.status()
        });
        let on_the_worker = std::panic::catch_unwind(|| {
            assert_answered(&["on"], |_| async { StatusCode::OK });
        });
        assert!(
            on_the_worker.is_err(),
            "an answer made on the worker passed"
        );
    }

    #[tokio::test]
    async fn a_panicking_make_is_a_500() {
        let response = answer(|| panic!("boom")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
