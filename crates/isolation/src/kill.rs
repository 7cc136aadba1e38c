//! Killing every process of a container, fork bombs included, and removing its cgroups.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::cgroupfs::CgroupDir;
use crate::container::{Backend, Container};
use crate::layout::{Controller, Version};
use crate::{IsolationError, parse};

/// How long `destroy` waits in all for the processes to die and the cgroups to go.
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);

/// Poll interval while waiting on the kernel (processes exiting, freezer settling).
const POLL: Duration = Duration::from_millis(1);

/// Upper bound on kill rounds, on top of the deadline.
const MAX_ROUNDS: u32 = 10_000;

impl Container {
    /// Kills every process of the container and waits until none is left.
    ///
    /// Cgroups: v2 `cgroup.kill` when the container has it (one atomic kill of the whole
    /// subtree); otherwise freeze (v1 freezer or v2 `cgroup.freeze`) so nothing can fork, SIGKILL
    /// every pid in `cgroup.procs`, thaw so the signals are acted on, and repeat until empty.
    /// Posix: SIGKILL the registered pids and their process groups and sessions until none is
    /// alive. The calling process is never signalled. Gives `KillTimeout` with the survivors
    /// when `deadline` passes.
    pub fn kill_all(&self, deadline: Duration) -> Result<(), IsolationError> {
        self.kill_all_with(deadline, true)
    }

    /// `kill_all`, optionally without `cgroup.kill` (to test the freezer path on new kernels).
    pub(crate) fn kill_all_with(
        &self,
        deadline: Duration,
        use_cgroup_kill: bool,
    ) -> Result<(), IsolationError> {
        let start = Instant::now();
        let me = std::process::id();
        let killer = self.v2_kill_dir().filter(|_| use_cgroup_kill);
        let freezer = self.freezer();
        for _round in 0..MAX_ROUNDS {
            let pids = self.pids_except(me);
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= deadline {
                return Err(IsolationError::KillTimeout {
                    id: self.id().to_owned(),
                    pids,
                    waited: start.elapsed(),
                });
            }
            if let Some(d) = killer {
                if let Err(e) = d.write("cgroup.kill", "1") {
                    tracing::warn!(container = %self.id(), error = %e, "cgroup.kill failed, signalling");
                    signal_all(&pids);
                }
            } else if let Some(f) = freezer {
                f.freeze(start, deadline);
                signal_all(&self.pids_except(me));
                f.thaw();
            } else {
                if let Backend::Posix = self.backend() {
                    signal_groups(&self.tracked());
                }
                signal_all(&pids);
            }
            wait_until(start, deadline, Duration::from_millis(50), || {
                self.pids_except(me).is_empty()
            });
        }
        Err(IsolationError::KillTimeout {
            id: self.id().to_owned(),
            pids: self.pids_except(me),
            waited: start.elapsed(),
        })
    }

    /// `kill_all`, then removes the container's cgroup in every hierarchy, within
    /// `DESTROY_TIMEOUT`. Blocking (up to that long): callers with an event loop run it on a
    /// worker. It takes `&self` so that a handle shared with a statistics reader can be
    /// destroyed; once destroyed, the handle reads nothing.
    pub fn destroy(&self) -> Result<(), IsolationError> {
        self.destroy_within(DESTROY_TIMEOUT)
    }

    /// `destroy` with an explicit overall deadline. Removing a cgroup that is still busy
    /// (processes being reaped) is retried, polling, until the deadline.
    pub fn destroy_within(&self, deadline: Duration) -> Result<(), IsolationError> {
        let start = Instant::now();
        self.kill_all(deadline)?;
        // v2 cgroup first doesn't matter: each hierarchy is independent.
        for d in self.dirs() {
            remove_dir(d, start, deadline)?;
        }
        tracing::debug!(container = %self.id(), "container destroyed");
        Ok(())
    }

    fn pids_except(&self, me: u32) -> Vec<u32> {
        let mut pids = self.pids();
        pids.retain(|&p| p != me);
        pids
    }

    fn v2_kill_dir(&self) -> Option<&CgroupDir> {
        self.dirs()
            .iter()
            .find(|d| d.version == Version::V2 && d.has("cgroup.kill"))
    }

    fn freezer(&self) -> Option<Freezer<'_>> {
        if let Some(d) = self.dir(Controller::Freezer) {
            return Some(Freezer(d));
        }
        // A v2 cgroup can freeze itself even when the freezer was not placed there.
        self.dirs()
            .iter()
            .find(|d| d.version == Version::V2 && d.has("cgroup.freeze"))
            .map(Freezer)
    }
}

#[derive(Clone, Copy)]
struct Freezer<'a>(&'a CgroupDir);

impl Freezer<'_> {
    /// Freezes and waits (bounded) until the kernel reports the cgroup frozen. Failing to freeze
    /// only makes the round racy, so it is logged, not fatal.
    fn freeze(&self, start: Instant, deadline: Duration) {
        let d = self.0;
        let (file, value) = match d.version {
            Version::V1 => ("freezer.state", "FROZEN"),
            Version::V2 => ("cgroup.freeze", "1"),
        };
        if let Err(e) = d.write(file, value) {
            tracing::warn!(error = %e, "cannot freeze container");
            return;
        }
        let frozen = wait_until(start, deadline, Duration::from_millis(100), || {
            match d.version {
                Version::V1 => d
                    .read("freezer.state")
                    .is_some_and(|s| s.trim() == "FROZEN"),
                Version::V2 => {
                    d.read("cgroup.events")
                        .and_then(|t| parse::keyed(&t, "frozen"))
                        == Some(1)
                }
            }
        });
        if !frozen {
            tracing::debug!(path = %d.path.display(), "freezer did not settle, killing anyway");
        }
    }

    fn thaw(&self) {
        let d = self.0;
        let result = match d.version {
            Version::V1 => d.write("freezer.state", "THAWED"),
            Version::V2 => d.write("cgroup.freeze", "0"),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot thaw container");
        }
    }
}

fn signal_all(pids: &[u32]) {
    for &pid in pids {
        if let Some(p) = to_pid(pid) {
            // ESRCH: already gone, which is what we want.
            let _ = kill_process(p, Signal::KILL);
        }
    }
}

/// SIGKILL to the process groups the posix container's registered pids lead.
fn signal_groups(leaders: &[u32]) {
    for &pid in leaders {
        if let Some(p) = to_pid(pid) {
            let _ = rustix::process::kill_process_group(p, Signal::KILL);
        }
    }
}

fn to_pid(pid: u32) -> Option<Pid> {
    let me = std::process::id();
    if pid == me || pid <= 1 {
        return None;
    }
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Polls `done` every `POLL` for at most `slice`, never past `start + deadline`.
fn wait_until(
    start: Instant,
    deadline: Duration,
    slice: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let slice_end = Instant::now() + slice;
    let end = (start + deadline).min(slice_end);
    for _poll in 0..MAX_ROUNDS {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            break;
        }
        thread::sleep(POLL);
    }
    done()
}

fn remove_dir(d: &CgroupDir, start: Instant, deadline: Duration) -> Result<(), IsolationError> {
    for _attempt in 0..MAX_ROUNDS {
        match std::fs::remove_dir(&d.path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                if start.elapsed() >= deadline {
                    return Err(IsolationError::Busy {
                        path: d.path.clone(),
                        waited: start.elapsed(),
                    });
                }
                thread::sleep(POLL);
            }
            Err(e) => return Err(IsolationError::io("remove", &d.path, e)),
        }
    }
    Err(IsolationError::Busy {
        path: d.path.clone(),
        waited: start.elapsed(),
    })
}

#[cfg(test)]
#[path = "v2_tests.rs"]
mod v2_tests;
