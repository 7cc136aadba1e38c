//! When the actor wakes for the state machine's timers: at its next
//! deadline ([`Master::next_deadline`](crate::state::Master::next_deadline)),
//! not on a fixed beat. Asking for the deadline looks at every agent, offer
//! and framework, so after inputs (which may bring a deadline closer: an
//! agent registers, a framework disconnects) it is asked again no sooner
//! than [`RECHECK`] after the last time; a timer falls due at most that late,
//! as with the fixed 250 ms beat this replaced, and an idle master sleeps.

use std::time::Duration;

use tokio::time::Instant;

/// After inputs, the next deadline is asked again at most this long after
/// it was last asked.
pub(super) const RECHECK: Duration = Duration::from_millis(250);
/// The longest the actor sleeps without asking (a safety net).
pub(super) const SAFETY_CAP: Duration = Duration::from_secs(2);
/// The shortest sleep: a deadline that a tick did not clear (a bug) costs a
/// wake-up this often, not a busy loop.
pub(super) const MIN_GAP: Duration = Duration::from_millis(10);

/// The actor's plan for its next timer turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimerPlan {
    /// When the actor wakes to tick.
    wake: Instant,
    /// When the state machine was last asked for its deadline.
    asked_at: Instant,
}

impl TimerPlan {
    /// A plan that wakes at once (the first turn asks for the deadline).
    pub(super) fn new(now: Instant) -> Self {
        TimerPlan {
            wake: now,
            asked_at: now,
        }
    }

    pub(super) fn wake(&self) -> Instant {
        self.wake
    }

    /// The state machine was asked at `now`: its next deadline is `deadline`.
    pub(super) fn asked(&mut self, now: Instant, deadline: Option<Instant>) {
        self.asked_at = now;
        let cap = now + SAFETY_CAP;
        self.wake = deadline.map_or(cap, |d| d.min(cap)).max(now + MIN_GAP);
    }

    /// Inputs were handled: a deadline may have come closer.
    pub(super) fn inputs_arrived(&mut self) {
        self.wake = self.wake.min(self.asked_at + RECHECK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_at_the_deadline_within_the_cap_and_never_spins() {
        let t0 = Instant::now();
        let mut plan = TimerPlan::new(t0);
        assert_eq!(plan.wake(), t0);
        plan.asked(t0, Some(t0 + Duration::from_millis(700)));
        assert_eq!(plan.wake(), t0 + Duration::from_millis(700));
        // Nothing pending: the safety cap.
        plan.asked(t0, None);
        assert_eq!(plan.wake(), t0 + SAFETY_CAP);
        plan.asked(t0, Some(t0 + Duration::from_secs(3600)));
        assert_eq!(plan.wake(), t0 + SAFETY_CAP);
        // Already due (not cleared by the tick): soon, but not at once.
        plan.asked(t0 + Duration::from_secs(1), Some(t0));
        assert_eq!(plan.wake(), t0 + Duration::from_secs(1) + MIN_GAP);
    }

    #[test]
    fn inputs_bring_the_wake_up_to_a_recheck_of_the_deadline() {
        let t0 = Instant::now();
        let mut plan = TimerPlan::new(t0);
        plan.asked(t0, None);
        plan.inputs_arrived();
        assert_eq!(plan.wake(), t0 + RECHECK);
        // A nearer wake-up stays.
        plan.asked(t0, Some(t0 + Duration::from_millis(100)));
        plan.inputs_arrived();
        assert_eq!(plan.wake(), t0 + Duration::from_millis(100));
        // Inputs come long after the last ask: the wake-up is due at once
        // (it is in the past), so the deadline is asked right away.
        let later = t0 + Duration::from_secs(1);
        plan.asked(t0, None);
        plan.inputs_arrived();
        assert!(plan.wake() <= later);
    }
}
