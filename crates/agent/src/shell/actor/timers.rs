//! Deadlines, not ticks: the actor sleeps until the earliest of what it
//! waits for, and wakes earlier only for a command.
//!
//! - the state machine's next deadline ([`AgentState::next_deadline`]: a
//!   status update to resend, an executor's re-subscription time or
//!   shutdown grace), re-read whenever the state changed and the snapshot
//!   is published, so a deadline is seen at most one snapshot interval
//!   (`publish.rs`: 20 ms, longer when the snapshot is costly to build)
//!   after the input that set it: the deadlines are seconds long;
//! - the next measure of the work dir's disk, every [`DISK_CHECK_INTERVAL`];
//! - the next publication of the snapshot, while it is out of date.
//!
//! [`AgentState::next_deadline`]: crate::state::AgentState::next_deadline

use std::time::Duration;

use tokio::time::Instant;

use super::Actor;
use crate::state::Effect;

/// How often the work dir's filesystem is measured (full disks refuse
/// tasks; sandboxes are collected sooner the fuller it is).
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The longest the actor sleeps without looking at its deadlines: a
/// safety cap (the disk check already wakes it this often).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// What the actor waits for, besides commands.
#[derive(Debug)]
pub(in crate::shell) struct Timers {
    /// The state machine's next deadline (agent uptime) as last read.
    state_due: Option<Duration>,
    /// When the disk is measured next.
    disk_due: Instant,
}

impl Timers {
    /// The disk is measured at once; the state's deadline is read at the
    /// first publication.
    pub(in crate::shell) fn new() -> Self {
        Self {
            state_due: None,
            disk_due: Instant::now(),
        }
    }
}

impl Actor {
    /// When the loop must wake if no command comes first.
    pub(in crate::shell) fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = (self.timers.disk_due).min(now + MAX_SLEEP);
        if let Some(due) = self.timers.state_due {
            wake = wake.min(self.started + due);
        }
        if self.dirty {
            wake = wake.min(self.last_snapshot + self.snapshot_interval());
        }
        wake
    }

    /// Re-reads the state machine's next deadline (after it changed).
    pub(in crate::shell) fn refresh_deadline(&mut self) {
        self.timers.state_due = self.state.next_deadline();
    }

    /// Whatever is due now: the state machine's timers, the disk check.
    /// (A snapshot due is published by the loop after every wake.)
    pub(in crate::shell) fn deadlines_due(&mut self, out: &mut Vec<Effect>) {
        let now = self.now();
        if self.timers.state_due.is_some_and(|due| due <= now) {
            self.state.on_tick(now, out);
            self.dirty = true;
            self.refresh_deadline();
            // `on_tick` moves every due deadline past `now`; should one
            // stay behind, it is retried a cap later instead of spinning.
            if let Some(due) = self.timers.state_due.filter(|due| *due <= now) {
                tracing::debug!(
                    due_ms = due.as_millis() as u64,
                    "a deadline stayed due after the tick"
                );
                self.timers.state_due = Some(now + MAX_SLEEP);
            }
        }
        if self.timers.disk_due <= Instant::now() {
            self.measure_disk();
            self.timers.disk_due = Instant::now() + DISK_CHECK_INTERVAL;
        }
    }
}
