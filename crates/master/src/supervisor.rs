//! Tasks that stand or fall together: the master's server and, while it
//! leads, its term's actor and registry writer. Whichever ends first (it
//! returned, failed or panicked) ends them all: a leader that can no longer
//! serve, act or write its registry must not keep its leadership, so the
//! term ends with an error and the process exits (its ZooKeeper session
//! closes with it, and another master takes over).

use std::time::Duration;

use futures::future::select_all;
use tokio::task::JoinHandle;

/// How the first supervised task ended.
#[derive(Debug)]
pub(crate) enum Ended<E> {
    /// It returned without an error: it stopped when it should not have.
    Stopped { task: &'static str },
    /// It returned an error.
    Failed { task: &'static str, error: E },
    /// It panicked, or was aborted.
    Died { task: &'static str, reason: String },
}

impl<E> Ended<E> {
    pub(crate) fn task(&self) -> &'static str {
        match self {
            Ended::Stopped { task } | Ended::Failed { task, .. } | Ended::Died { task, .. } => task,
        }
    }
}

struct Watched<E> {
    task: &'static str,
    handle: JoinHandle<Result<(), E>>,
    /// The task whose end makes this one stop (its input closes): when this
    /// one stops first, that task's end is the cause to report.
    stops_after: Option<&'static str>,
}

/// How long a stop waits for the end of the task it follows.
const CAUSE_WAIT: Duration = Duration::from_secs(5);

/// Watched tasks, by name. Dropping it aborts those still running.
pub(crate) struct Supervisor<E> {
    tasks: Vec<Watched<E>>,
}

impl<E> Default for Supervisor<E> {
    fn default() -> Self {
        Supervisor { tasks: Vec::new() }
    }
}

impl<E: Send + 'static> Supervisor<E> {
    /// Watches a spawned task under the name `task`.
    pub(crate) fn watch(&mut self, task: &'static str, handle: JoinHandle<Result<(), E>>) {
        self.tasks.push(Watched {
            task,
            handle,
            stops_after: None,
        });
    }

    /// Watches a task that stops by itself only once `after` has ended (it
    /// reads what `after` sends and ends when that input closes). If it is
    /// the first to end and it merely stopped, [`Supervisor::first_end`]
    /// reports how `after` ended instead: the cause, not the consequence
    /// (an actor that panicked, not the registry writer it fed).
    pub(crate) fn watch_after(
        &mut self,
        task: &'static str,
        handle: JoinHandle<Result<(), E>>,
        after: &'static str,
    ) {
        self.tasks.push(Watched {
            task,
            handle,
            stops_after: Some(after),
        });
    }

    /// Waits for the first watched task to end (never, while none is
    /// watched); it is watched no more, the others keep running.
    pub(crate) async fn first_end(&mut self) -> Ended<E> {
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        let (result, index, _) = select_all(self.tasks.iter_mut().map(|w| &mut w.handle)).await;
        let watched = self.tasks.swap_remove(index);
        let first = ended(watched.task, result);
        if let (Ended::Stopped { .. }, Some(after)) = (&first, watched.stops_after)
            && let Some(cause) = self.join_within(after, CAUSE_WAIT).await
        {
            return cause;
        }
        first
    }

    /// Waits for the task named `task` to end, after it was asked to; how
    /// it ended (`None` when it is not watched: it already ended).
    pub(crate) async fn join(&mut self, task: &'static str) -> Option<Ended<E>> {
        let index = self.tasks.iter().position(|w| w.task == task)?;
        let watched = self.tasks.swap_remove(index);
        Some(ended(task, watched.handle.await))
    }

    /// [`join`](Self::join), for at most `limit`: past it, the task is
    /// aborted and `None` returned.
    pub(crate) async fn join_within(
        &mut self,
        task: &'static str,
        limit: Duration,
    ) -> Option<Ended<E>> {
        let index = self.tasks.iter().position(|w| w.task == task)?;
        let mut watched = self.tasks.swap_remove(index);
        match tokio::time::timeout(limit, &mut watched.handle).await {
            Ok(result) => Some(ended(task, result)),
            Err(_) => {
                tracing::warn!(task, "did not stop in time; aborted");
                watched.handle.abort();
                None
            }
        }
    }

    /// Whether a task of this name is watched (it has not ended).
    #[cfg(test)]
    pub(crate) fn watches(&self, task: &'static str) -> bool {
        self.tasks.iter().any(|w| w.task == task)
    }
}

impl<E> Drop for Supervisor<E> {
    fn drop(&mut self) {
        for watched in &self.tasks {
            watched.handle.abort();
        }
    }
}

fn ended<E>(task: &'static str, result: Result<Result<(), E>, tokio::task::JoinError>) -> Ended<E> {
    match result {
        Ok(Ok(())) => Ended::Stopped { task },
        Ok(Err(error)) => Ended::Failed { task, error },
        Err(join) => Ended::Died {
            task,
            reason: panic_message(join),
        },
    }
}

/// What a task's panic said, or why it did not finish.
fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => match payload.downcast::<String>() {
            Ok(message) => format!("panicked: {message}"),
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(message) => format!("panicked: {message}"),
                Err(_) => "panicked".to_string(),
            },
        },
        Err(join) => join.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    /// A fake task that runs until `stop` is cancelled, then returns `then`.
    fn fake(stop: &CancellationToken, then: Result<(), String>) -> JoinHandle<Result<(), String>> {
        let stop = stop.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            then
        })
    }

    #[tokio::test]
    async fn the_first_task_to_end_is_reported_and_the_others_keep_running() {
        let (a, b, c) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let mut supervisor = Supervisor::default();
        supervisor.watch("actor", fake(&a, Ok(())));
        supervisor.watch("registry writer", fake(&b, Err("store refused".into())));
        supervisor.watch("server", fake(&c, Ok(())));
        b.cancel();
        match supervisor.first_end().await {
            Ended::Failed { task, error } => {
                assert_eq!(task, "registry writer");
                assert_eq!(error, "store refused");
            }
            other => panic!("{other:?}"),
        }
        assert!(!supervisor.watches("registry writer"));
        assert!(supervisor.watches("actor") && supervisor.watches("server"));
        // A task that returns is a task that stopped.
        c.cancel();
        let ended = supervisor.first_end().await;
        assert!(
            matches!(ended, Ended::Stopped { task: "server" }),
            "{ended:?}"
        );
        // The rest is waited for when asked to stop.
        a.cancel();
        let ended = supervisor.join("actor").await;
        assert!(
            matches!(ended, Some(Ended::Stopped { task: "actor" })),
            "{ended:?}"
        );
        assert!(!supervisor.watches("actor"));
        assert!(supervisor.join("actor").await.is_none());
    }

    #[tokio::test]
    async fn a_panic_is_reported_with_its_message() {
        let running = CancellationToken::new();
        let mut supervisor: Supervisor<String> = Supervisor::default();
        supervisor.watch("server", fake(&running, Ok(())));
        supervisor.watch(
            "actor",
            tokio::spawn(async { panic!("the books do not balance") }),
        );
        let ended = supervisor.first_end().await;
        assert_eq!(ended.task(), "actor");
        match ended {
            Ended::Died { reason, .. } => {
                assert!(reason.contains("the books do not balance"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(supervisor.watches("server"));
    }

    #[tokio::test]
    async fn dropping_the_supervisor_aborts_what_still_runs() {
        let never = CancellationToken::new();
        let handle = fake(&never, Ok(()));
        let abort = handle.abort_handle();
        let mut supervisor = Supervisor::default();
        supervisor.watch("server", handle);
        drop(supervisor);
        tokio::time::timeout(Duration::from_secs(60), async {
            while !abort.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("aborted");
    }

    #[tokio::test]
    async fn a_task_that_does_not_stop_in_time_is_aborted() {
        tokio::time::pause();
        let never = CancellationToken::new();
        let handle = fake(&never, Ok(()));
        let abort = handle.abort_handle();
        let mut supervisor = Supervisor::default();
        supervisor.watch("registry writer", handle);
        let ended = supervisor
            .join_within("registry writer", Duration::from_secs(5))
            .await;
        assert!(ended.is_none(), "{ended:?}");
        assert!(!supervisor.watches("registry writer"));
        tokio::time::resume();
        tokio::time::timeout(Duration::from_secs(60), async {
            while !abort.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("aborted");
    }

    #[tokio::test]
    async fn a_follower_that_stops_first_reports_the_end_it_followed() {
        let actor_goes = CancellationToken::new();
        let mut supervisor: Supervisor<String> = Supervisor::default();
        // The writer stops as soon as it starts, and only then the actor
        // panics: the writer's stop is seen first.
        let go = actor_goes.clone();
        supervisor.watch_after(
            "registry writer",
            tokio::spawn(async move {
                go.cancel();
                Ok(())
            }),
            "actor",
        );
        let go = actor_goes.clone();
        supervisor.watch(
            "actor",
            tokio::spawn(async move {
                go.cancelled().await;
                panic!("the actor broke")
            }),
        );
        let ended = supervisor.first_end().await;
        match &ended {
            Ended::Died { task, reason } => {
                assert_eq!(*task, "actor");
                assert!(reason.contains("the actor broke"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!supervisor.watches("actor"));
    }

    #[tokio::test]
    async fn a_follower_that_fails_is_its_own_cause() {
        let mut supervisor: Supervisor<String> = Supervisor::default();
        let stay = CancellationToken::new();
        supervisor.watch_after(
            "registry writer",
            tokio::spawn(async { Err("store refused".to_string()) }),
            "actor",
        );
        supervisor.watch("actor", fake(&stay, Ok(())));
        let ended = supervisor.first_end().await;
        assert!(
            matches!(&ended, Ended::Failed { task: "registry writer", error } if error == "store refused"),
            "{ended:?}"
        );
        assert!(supervisor.watches("actor"), "the actor still runs");
    }
}
