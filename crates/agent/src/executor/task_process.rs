//! The task's process as the command executor waits for it: a child it
//! started, or a task it adopted after the worker that started it died
//! (`crate::host`), whose exit the keeper reaps and reports.
//!
//! *Invariants:*
//! - a child is not reaped when it is seen to end: its exit is read with
//!   `WNOWAIT` through a pidfd, and the zombie stays until the executor is
//!   done (its terminal update acknowledged; dropping the process reaps
//!   it). If the worker dies in between, the zombie goes to the keeper,
//!   which reaps it and hands the exit to the next worker: an exit is never
//!   lost with a worker;
//! - one descriptor per task: the child is a `std` one (tokio's keeps a
//!   pidfd of its own), so 10,000 tasks fit under a 20,000 limit;
//! - every child is reaped: when the process is dropped before it has
//!   ended (its executor aborted), a task of the runtime reaps it then.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, WaitIdStatus};
use tokio::io::unix::AsyncFd;

use agora_proto::v1 as pb;
use std::process::Child;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::orphans::OrphanExit;

/// A run's task to adopt: what the agent launched, its process, and where
/// its exit will come from.
#[derive(Debug)]
pub struct AdoptedTask {
    pub task: pb::TaskInfo,
    pub pid: u32,
    exit: Mutex<Option<oneshot::Receiver<OrphanExit>>>,
    /// Set when the task was already gone when adopted: past it, its exit
    /// is lost.
    lost_at: Option<Instant>,
}

impl AdoptedTask {
    pub fn new(
        task: pb::TaskInfo,
        pid: u32,
        exit: oneshot::Receiver<OrphanExit>,
        lost_at: Option<Instant>,
    ) -> Self {
        Self {
            task,
            pid,
            exit: Mutex::new(Some(exit)),
            lost_at,
        }
    }

    /// The process to wait for, once.
    pub(super) fn take_process(&self) -> Option<TaskProcess> {
        let exit = self
            .exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        Some(TaskProcess::Adopted {
            exit,
            lost_at: self.lost_at,
        })
    }
}

pub(super) enum TaskProcess {
    Spawned {
        child: Child,
        /// Where its end is read without reaping it (`None` where pidfds
        /// are not available, before Linux 5.3: then its end is polled).
        pidfd: Option<AsyncFd<OwnedFd>>,
    },
    Adopted {
        exit: oneshot::Receiver<OrphanExit>,
        lost_at: Option<Instant>,
    },
}

fn lost() -> io::Error {
    io::Error::other("its exit status was lost with the supervisor worker that started it")
}

/// The end of the process behind `pidfd`, if it has ended; the process
/// stays a zombie.
fn peek(pidfd: &OwnedFd) -> io::Result<Option<ExitStatus>> {
    peek_id(WaitId::PidFd(pidfd.as_fd()))
}

fn peek_id(id: WaitId<'_>) -> io::Result<Option<ExitStatus>> {
    let status = rustix::process::waitid(
        id,
        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG,
    )?;
    Ok(status.map(|s| exit_status(&s)))
}

/// Registers a pidfd with the runtime. tokio deprecated the safe
/// constructor because a registered descriptor must not be closed or
/// replaced behind the registration; an `OwnedFd` owned by the `AsyncFd`
/// cannot be, which is the case tokio's note says is sound (this crate
/// forbids `unsafe`, so `register` is not an option).
#[allow(deprecated)]
fn watch(pidfd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::with_interest(pidfd, tokio::io::Interest::READABLE)
}

/// How often the end of a child is looked for without a pidfd.
const POLL_WITHOUT_PIDFD: std::time::Duration = std::time::Duration::from_millis(50);

/// [`peek`] by pid, for kernels without pidfds.
fn peek_pid(pid: u32) -> io::Result<Option<ExitStatus>> {
    let pid = Pid::from_raw(i32::try_from(pid).unwrap_or(0))
        .ok_or_else(|| io::Error::other("the task has no pid"))?;
    peek_id(WaitId::Pid(pid))
}

/// Reaps a child: now if it has ended, else once it does, on the runtime.
fn reap(child: &mut Child, pidfd: Option<AsyncFd<OwnedFd>>) {
    if let Ok(Some(_)) | Err(_) = child.try_wait() {
        return;
    }
    let pid = child.id();
    match (pidfd, tokio::runtime::Handle::try_current()) {
        (Some(pidfd), Ok(runtime)) => {
            runtime.spawn(async move {
                let _ = pidfd.readable().await;
                if let Some(pid) = Pid::from_raw(i32::try_from(pid).unwrap_or(0)) {
                    let _ =
                        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
                }
            });
        }
        _ => tracing::warn!(
            pid,
            "a task process could not be reaped; it stays a zombie until this process exits"
        ),
    }
}

impl Drop for TaskProcess {
    fn drop(&mut self) {
        if let Self::Spawned { child, pidfd } = self {
            reap(child, pidfd.take());
        }
    }
}

fn exit_status(status: &WaitIdStatus) -> ExitStatus {
    let raw = match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => (code & 0xff) << 8,
        (None, Some(signal)) if status.dumped() => signal | 0x80,
        (None, Some(signal)) => signal,
        (None, None) => 0,
    };
    ExitStatus::from_raw(raw)
}

impl TaskProcess {
    pub(super) fn spawned(child: Child) -> Self {
        let pidfd = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0))
            .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok())
            .and_then(|fd| watch(fd).ok());
        Self::Spawned { child, pidfd }
    }

    /// Waits for the process to end (cancel-safe).
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Self::Spawned {
                pidfd: Some(pidfd), ..
            } => loop {
                let mut ready = pidfd.readable().await?;
                if let Some(status) = peek(pidfd.get_ref())? {
                    return Ok(status);
                }
                ready.clear_ready();
            },
            Self::Spawned { child, pidfd: None } => {
                let mut poll = tokio::time::interval(POLL_WITHOUT_PIDFD);
                loop {
                    poll.tick().await;
                    if let Some(status) = peek_pid(child.id())? {
                        return Ok(status);
                    }
                }
            }
            Self::Adopted { exit, lost_at } => {
                let deadline = *lost_at;
                let give_up = async move {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    reported = exit => reported.map(|e| e.status()).map_err(|_| lost()),
                    () = give_up => Err(lost()),
                }
            }
        }
    }

    /// The process's end, if it has ended.
    pub(super) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Self::Spawned {
                pidfd: Some(pidfd), ..
            } => peek(pidfd.get_ref()),
            Self::Spawned { child, pidfd: None } => peek_pid(child.id()),
            Self::Adopted { exit, lost_at } => match exit.try_recv() {
                Ok(reported) => Ok(Some(reported.status())),
                Err(oneshot::error::TryRecvError::Empty) => match lost_at {
                    Some(deadline) if Instant::now() >= *deadline => Err(lost()),
                    _ => Ok(None),
                },
                Err(oneshot::error::TryRecvError::Closed) => Err(lost()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_childs_end_is_read_without_reaping_it() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("sh starts");
        let pid = child.id();
        let mut process = TaskProcess::spawned(child);
        assert!(
            matches!(process, TaskProcess::Spawned { pidfd: Some(_), .. }),
            "pidfd"
        );
        let status = process.wait().await.expect("ends");
        assert_eq!(status.code(), Some(7));
        // Still a zombie: its exit can be read again, and /proc has it.
        assert_eq!(
            process.try_wait().expect("peek").and_then(|s| s.code()),
            Some(7)
        );
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("zombie in /proc");
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        assert_eq!(state, Some("Z"), "{stat}");
        // Dropped, it is reaped.
        drop(process);
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "reaped");
    }

    #[tokio::test]
    async fn a_process_dropped_before_it_ends_is_reaped_once_it_does() {
        let child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .expect("sleep starts");
        let pid = child.id();
        drop(TaskProcess::spawned(child));
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::metadata(format!("/proc/{pid}")).is_ok() {
            assert!(Instant::now() < deadline, "{pid} never reaped");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_signal_is_read_as_a_signal() {
        let child = std::process::Command::new("sh")
            .args(["-c", "kill -KILL $$"])
            .spawn()
            .expect("sh starts");
        let mut process = TaskProcess::spawned(child);
        let status = process.wait().await.expect("ends");
        assert_eq!(status.signal(), Some(9));
        assert_eq!(status.code(), None);
    }

    #[tokio::test]
    async fn an_adopted_task_ends_with_the_exit_the_keeper_reports() {
        let (tx, rx) = oneshot::channel();
        let adopted = AdoptedTask::new(pb::TaskInfo::default(), 42, rx, None);
        let mut process = adopted.take_process().expect("once");
        assert!(adopted.take_process().is_none(), "only once");
        assert!(matches!(process.try_wait(), Ok(None)));
        let _ = tx.send(OrphanExit {
            pid: 42,
            raw_status: 3 << 8,
        });
        let status = process.wait().await.expect("reported");
        assert_eq!(status.code(), Some(3));
        assert_eq!(ExitStatus::from_raw(3 << 8), status);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_gone_before_adoption_whose_exit_never_comes_is_lost() {
        let (_tx, rx) = oneshot::channel();
        let lost_at = Instant::now() + std::time::Duration::from_secs(10);
        let adopted = AdoptedTask::new(pb::TaskInfo::default(), 42, rx, Some(lost_at));
        let mut process = adopted.take_process().expect("once");
        let error = process.wait().await.expect_err("lost");
        assert!(error.to_string().contains("lost"), "{error}");
        assert!(Instant::now() >= lost_at);
    }
}
