//! Executor processes the agent did not start in this run (recovered
//! from the checkpoint) or must kill: identified by pid and start time,
//! killed with their whole session, watched through a pidfd.

use std::time::Duration;

use rustix::process::Pid;

use crate::checkpoint;

/// A process and its start time: a pid with another start time is not ours.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcessRef {
    pub pid: u32,
    pub start_time: Option<u64>,
}

impl ProcessRef {
    /// Kills the executor and everything in its session: the executor
    /// leads a session of its own (setsid), and its task runs in it, in a
    /// process group of its own.
    pub(super) fn kill(self) {
        if let Some(expected) = self.start_time
            && checkpoint::process_start_time(self.pid) != Some(expected)
        {
            return; // gone, and its pid may belong to someone else now
        }
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return;
        };
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
        for member in checkpoint::session_members(self.pid) {
            if let Some(member) = i32::try_from(member).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(member, rustix::process::Signal::KILL);
            }
        }
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Waits until the process (not our child) exits. A pidfd when the kernel
/// has them, else a bounded poll of `/proc/<pid>/stat`; the start time
/// guards against a reused pid.
pub(super) async fn watch_process(process: ProcessRef) {
    let alive = move || {
        let now = checkpoint::process_start_time(process.pid);
        now.is_some() && (process.start_time.is_none() || now == process.start_time)
    };
    if let Some(pid) = i32::try_from(process.pid).ok().and_then(Pid::from_raw)
        && let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
    {
        // Checked after opening: the pidfd now pins the process we verified.
        if !alive() {
            return;
        }
        // Deprecated because a generic `T` may close its fd behind tokio's
        // back; an `OwnedFd` moved in stays open as long as the `AsyncFd`.
        #[allow(deprecated)]
        let registered = tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE);
        if let Ok(fd) = registered {
            // Readable once the process has exited.
            let _ = fd.readable().await;
            return;
        }
    }
    while alive() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
