//! The keeper: `agora supervisor` as the agent starts it.
//!
//! A small single-threaded process above the worker (`agora supervisor
//! --worker`, the process that hosts the executors). It is a child
//! subreaper: when a worker dies, its tasks are re-parented here rather
//! than to init, so they keep running and their exits are not lost. The
//! keeper reaps them, starts another worker, and tells it every orphan's
//! exit ([`crate::orphans`]); that worker attaches to the agent saying it is
//! adopting, and the agent hands it back the runs whose tasks it knows.
//!
//! *Invariants:*
//! - the keeper never runs a task or speaks to the agent: it starts
//!   workers, reaps, and forwards exits, so it has little that can fail;
//! - only the first worker gets the agent's socket pair (the keeper lets
//!   go of its copy at once, so the agent sees the pair close when that
//!   worker dies); later ones dial the agent's port with the same token;
//! - a worker that exits (drained, refused) ends the keeper with its
//!   status; one that dies (a signal, a panic) is started again, at most
//!   [`MAX_RESTARTS`] times within [`RESTART_WINDOW`];
//! - a worker dies with its keeper (`PR_SET_PDEATHSIG`): the agent, which
//!   watches the keeper, then ends every run, as when one process was all.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitOptions};

use crate::orphans::{MAX_EXITS, OrphanExit};

/// The keeper's pid, as its workers are told it.
pub const ENV_KEEPER_PID: &str = "AGORA_SUPERVISOR_KEEPER_PID";
/// How many workers this keeper started before this one (0: the first,
/// whose standard input is the agent's socket pair; a later one reads
/// orphans' exits from its standard input).
pub const ENV_GENERATION: &str = "AGORA_SUPERVISOR_GENERATION";
/// The argument that makes `agora supervisor` a worker.
pub const WORKER_ARG: &str = "--worker";

pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(20);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(1);
/// The status a Rust program exits with when it panics.
const PANIC_STATUS: i32 = 101;

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEnd {
    /// It exited by itself with this status: it meant to.
    Exited(i32),
    /// Killed by a signal, or it panicked.
    Died,
}

impl WorkerEnd {
    /// From a raw wait status.
    fn of(raw: i32) -> Self {
        let status: std::process::ExitStatus = std::os::unix::process::ExitStatusExt::from_raw(raw);
        match status.code() {
            Some(PANIC_STATUS) | None => Self::Died,
            Some(code) => Self::Exited(code),
        }
    }
}

/// What the keeper does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Restart { after: Duration },
    Exit(i32),
}

/// The restart policy, kept apart from the clock and the processes.
#[derive(Debug, Default)]
pub struct Restarts {
    recent: VecDeque<Instant>,
}

impl Restarts {
    pub fn after(&mut self, now: Instant, end: WorkerEnd) -> Next {
        if let WorkerEnd::Exited(code) = end {
            return Next::Exit(code);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= RESTART_WINDOW)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= MAX_RESTARTS {
            return Next::Exit(1);
        }
        let after = FIRST_RESTART_DELAY
            .saturating_mul(1 << self.recent.len())
            .min(MAX_RESTART_DELAY);
        self.recent.push_back(now);
        Next::Restart { after }
    }
}

/// Runs the keeper until its worker ends for good; returns the exit
/// status. Runs before any runtime or thread is started.
pub fn run_keeper() -> i32 {
    // A session of our own: the agent's process group and terminal do not
    // reach us, our workers or the tasks they start.
    let _ = rustix::process::setsid();
    let me = rustix::process::getpid();
    if let Err(e) = rustix::process::set_child_subreaper(Some(me)) {
        // Still works; a dead worker's tasks then go to init and its runs
        // fail instead of being adopted.
        tracing::warn!(error = %e, "cannot become a child subreaper");
    }
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => {
            tracing::error!(error = %e, "cannot find the agora program");
            return 1;
        }
    };
    let mut seen: VecDeque<OrphanExit> = VecDeque::new();
    let mut restarts = Restarts::default();
    let mut generation: u64 = 0;
    loop {
        let (worker, mut pipe) = match spawn_worker(&program, me, generation) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, generation, "cannot start a supervisor worker");
                return 1;
            }
        };
        if generation == 0 {
            release_stdin();
        }
        tracing::info!(
            worker = worker.as_raw_nonzero().get(),
            generation,
            "supervisor worker started"
        );
        if let Some(pipe) = pipe.as_mut() {
            for exit in &seen {
                if pipe.write_all(exit.line().as_bytes()).is_err() {
                    break;
                }
            }
        }
        let end = reap_until(worker, &mut seen, &mut pipe);
        drop(pipe);
        match restarts.after(Instant::now(), end) {
            Next::Exit(code) => {
                tracing::info!(code, "supervisor worker ended; keeper exits");
                return code;
            }
            Next::Restart { after } => {
                tracing::warn!(generation, "supervisor worker died; starting another");
                // A back-off between restarts, not a synchronisation: the
                // orphans exiting meanwhile are reaped once it is over.
                std::thread::sleep(after);
            }
        }
        generation += 1;
    }
}

/// Reaps every child until `worker` ends, telling the worker each other
/// exit (its orphaned tasks, and whatever they left behind).
fn reap_until(
    worker: Pid,
    seen: &mut VecDeque<OrphanExit>,
    pipe: &mut Option<std::io::PipeWriter>,
) -> WorkerEnd {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == worker => return WorkerEnd::of(status.as_raw()),
            Ok(Some((pid, status))) => {
                let exit = OrphanExit {
                    pid: pid.as_raw_nonzero().get().unsigned_abs(),
                    raw_status: status.as_raw(),
                };
                tracing::debug!(pid = exit.pid, "reaped an orphan");
                seen.push_back(exit);
                if seen.len() > MAX_EXITS {
                    seen.pop_front();
                }
                // A worker that died has no reader: the next one gets it
                // from `seen`. The first worker has no pipe: it adopts
                // nothing (what it sees here are its tasks' daemons).
                if let Some(pipe) = pipe.as_mut() {
                    let _ = pipe.write_all(exit.line().as_bytes());
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                // ECHILD: the worker is gone without our seeing it.
                tracing::error!(error = %e, "waiting for children failed");
                return WorkerEnd::Died;
            }
        }
    }
}

/// Starts a worker; returns its pid and, for a worker after the first,
/// the write end of the pipe that is its standard input.
fn spawn_worker(
    program: &Path,
    keeper: Pid,
    generation: u64,
) -> std::io::Result<(Pid, Option<std::io::PipeWriter>)> {
    let mut command = Command::new(program);
    command
        .arg("supervisor")
        .arg(WORKER_ARG)
        .env(ENV_KEEPER_PID, keeper.as_raw_nonzero().get().to_string())
        .env(ENV_GENERATION, generation.to_string());
    let mut writer = None;
    if generation > 0 {
        let (reader, pipe) = std::io::pipe()?;
        command
            .env_remove(crate::executor::local::ENV_AGENT_CONNECTION)
            .stdin(Stdio::from(reader));
        writer = Some(pipe);
    }
    let child = command.spawn()?;
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("the worker has no pid"))?;
    // Reaped by `reap_until`, not by `Child`.
    drop(child);
    Ok((pid, writer))
}

/// The first worker has the agent's socket pair: ours goes, so that the
/// agent sees the pair close when that worker dies.
fn release_stdin() {
    match std::fs::File::open("/dev/null") {
        Ok(null) => {
            if let Err(e) = rustix::stdio::dup2_stdin(&null) {
                tracing::warn!(error = %e, "cannot let go of the agent's connection");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot open /dev/null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_meant_to_exit_ends_the_keeper_with_its_status() {
        let mut restarts = Restarts::default();
        let now = Instant::now();
        assert_eq!(restarts.after(now, WorkerEnd::Exited(0)), Next::Exit(0));
        assert_eq!(restarts.after(now, WorkerEnd::Exited(1)), Next::Exit(1));
    }

    #[test]
    fn a_dying_worker_is_restarted_with_backoff_until_it_dies_too_often() {
        let mut restarts = Restarts::default();
        let start = Instant::now();
        let mut delays = Vec::new();
        for i in 0..MAX_RESTARTS {
            match restarts.after(start + Duration::from_secs(i as u64), WorkerEnd::Died) {
                Next::Restart { after } => delays.push(after),
                Next::Exit(code) => panic!("gave up after {i} restarts with {code}"),
            }
        }
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX_RESTART_DELAY));
        // One more within the window: the keeper gives up.
        assert_eq!(
            restarts.after(start + Duration::from_secs(10), WorkerEnd::Died),
            Next::Exit(1)
        );
        // Once the window has passed, restarts are allowed again.
        assert!(matches!(
            restarts.after(
                start + RESTART_WINDOW + Duration::from_secs(10),
                WorkerEnd::Died
            ),
            Next::Restart { .. }
        ));
    }

    #[test]
    fn a_signal_or_a_panic_is_a_death_any_other_status_an_exit() {
        // Raw wait statuses: exit code in the second byte, signal in the first.
        assert_eq!(WorkerEnd::of(0), WorkerEnd::Exited(0));
        assert_eq!(WorkerEnd::of(1 << 8), WorkerEnd::Exited(1));
        assert_eq!(WorkerEnd::of(101 << 8), WorkerEnd::Died);
        assert_eq!(WorkerEnd::of(9), WorkerEnd::Died);
    }
}
