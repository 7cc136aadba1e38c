//! Executor processes the agent did not start in this run (recovered
//! from the checkpoint) or must kill: identified by pid and start time,
//! killed with their whole session, watched through a pidfd.

use std::path::PathBuf;
use std::time::Duration;

use agora_proto::v1 as pb;

use rustix::process::Pid;

use crate::containers::OomProbe;
use crate::launch;
use crate::procfs;

/// What explaining an executor's exit reads, beyond its exit status: its
/// container's OOM count and the failure its launch wrapper may have left
/// in the sandbox. Blocking (cgroup files, the sandbox's disk): run on a
/// worker, or at start before the loop runs.
pub(super) struct ExitProbe {
    pub oom: Option<OomProbe>,
    pub sandbox: Option<PathBuf>,
}

impl ExitProbe {
    /// Why the executor's process ended: the memory limit, or its launch
    /// wrapper's failure; else `description` (its exit status).
    pub(super) fn explain(self, description: String) -> (Option<pb::task_status::Reason>, String) {
        if self.oom.as_ref().is_some_and(OomProbe::oom_killed) {
            return (
                Some(pb::task_status::Reason::ContainerLimitationMemory),
                format!("memory limit exceeded: the container was OOM-killed ({description})"),
            );
        }
        if let Some(sandbox) = &self.sandbox {
            let path = crate::containers::launch_failure_path(sandbox);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let _ = std::fs::remove_file(&path);
                if let Ok(failure) = serde_json::from_str::<launch::LaunchFailure>(&text) {
                    return (Some(failure.reason()), failure.message);
                }
            }
        }
        (None, description)
    }
}

/// What runs an executor: a process of its own, or a run hosted by the
/// supervisor (`actor/hosting.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ExecutorProcess {
    Own(ProcessRef),
    Hosted { run_id: String },
}

/// How a hosted run's processes are killed without its supervisor's help.
#[derive(Debug, Clone, Copy)]
pub(super) enum HostedKill {
    /// The task's process group.
    Task(ProcessRef),
    /// A supervisor left by an earlier agent, with everything in its
    /// session: all it hosts is being killed and it does not answer.
    Supervisor(ProcessRef),
}

impl HostedKill {
    /// Blocking (`/proc` reads): on a worker.
    pub(super) fn run(self) {
        match self {
            HostedKill::Task(task) => task.kill_group(),
            HostedKill::Supervisor(supervisor) => supervisor.kill(),
        }
    }
}

/// A process and its start time: a pid with another start time is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcessRef {
    pub pid: u32,
    pub start_time: Option<u64>,
}

impl ProcessRef {
    /// The process a recorded run names (a hosted run's: its
    /// supervisor), once it has one; a start time of 0 is unknown.
    pub(super) fn of_run(run: &crate::checkpoint::ExecutorRun) -> Option<ProcessRef> {
        Some(ProcessRef {
            pid: run.pid?,
            start_time: (run.start_time != 0).then_some(run.start_time),
        })
    }

    /// Kills the process group this process leads (a hosted executor's
    /// task), if it is still ours.
    pub(super) fn kill_group(self) {
        if let Some(expected) = self.start_time
            && procfs::process_start_time(self.pid) != Some(expected)
        {
            return;
        }
        if let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// Kills the executor and everything in its session: the executor
    /// leads a session of its own (setsid), and its task runs in it, in a
    /// process group of its own.
    pub(super) fn kill(self) {
        if let Some(expected) = self.start_time
            && procfs::process_start_time(self.pid) != Some(expected)
        {
            return; // gone, and its pid may belong to someone else now
        }
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return;
        };
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
        for member in procfs::session_members(self.pid) {
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
        let now = procfs::process_start_time(process.pid);
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
