//! Exponential backoff between retries, as arithmetic only.
//!
//! Every retry loop in Agora (registry writes, ZooKeeper connections, the
//! agent's master session, executors re-subscribing, the scheduler SDK)
//! takes its delays from [`Backoff`]. It reads no clock and draws no random
//! numbers: the caller sleeps, and a caller that wants jitter passes in a
//! fraction from its own random source, so the sequence is deterministic
//! under test.

use std::time::Duration;

/// Delays that start at `initial` and double after every attempt, capped at
/// `max`; [`reset`](Self::reset) starts over (after a success).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// The delay the next attempt waits (before any jitter).
    base: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max` (`max` is raised
    /// to `initial` if smaller).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            base: initial,
        }
    }

    /// The delay the next attempt will wait (without jitter); for logs.
    pub fn current(&self) -> Duration {
        self.base
    }

    /// The delay to wait now, in full; the next one doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = base.saturating_mul(2).min(self.max);
        base
    }

    /// Like [`next_delay`](Self::next_delay) with "equal jitter": `unit` is a
    /// random fraction in `[0, 1]` (clamped; NaN counts as 0) and the delay
    /// is `base / 2 + unit * base / 2`, so many clients cut off at once do
    /// not retry in lock-step, yet none waits less than half the base.
    pub fn next_delay_jittered(&mut self, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.next_delay().mul_f64(0.5 + 0.5 * unit)
    }

    /// Starts over from the initial delay.
    pub fn reset(&mut self) {
        self.base = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        let delays: Vec<_> = (0..9).map(|_| b.next_delay()).collect();
        let want = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(|ms| ms * MS);
        assert_eq!(delays, want);
    }

    #[test]
    fn current_is_the_next_delay_without_advancing() {
        let mut b = Backoff::new(50 * MS, 2000 * MS);
        assert_eq!(b.current(), 50 * MS);
        assert_eq!(b.current(), 50 * MS);
        assert_eq!(b.next_delay(), 50 * MS);
        assert_eq!(b.current(), 100 * MS);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        b.next_delay();
        b.next_delay();
        assert_eq!(b.current(), 400 * MS);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
        assert_eq!(b.next_delay(), 200 * MS);
    }

    #[test]
    fn max_below_initial_is_raised() {
        let mut flat = Backoff::new(300 * MS, 10 * MS);
        assert_eq!(flat.next_delay(), 300 * MS);
        assert_eq!(flat.next_delay(), 300 * MS);
    }

    #[test]
    fn huge_delays_saturate_at_the_cap() {
        let mut b = Backoff::new(Duration::MAX / 2 + MS, Duration::MAX);
        b.next_delay();
        assert_eq!(b.next_delay(), Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
    }

    #[test]
    fn jitter_stays_within_half_to_full_base() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        assert_eq!(b.next_delay_jittered(0.0), 50 * MS);
        assert_eq!(b.next_delay_jittered(0.5), 150 * MS);
        assert_eq!(b.next_delay_jittered(1.0), 400 * MS);
        // Out-of-range and NaN fractions are clamped, never escape the bounds.
        assert_eq!(b.next_delay_jittered(7.0), 800 * MS);
        assert_eq!(b.next_delay_jittered(-1.0), 800 * MS);
        assert_eq!(b.next_delay_jittered(f64::NAN), 1600 * MS);
        // Jitter does not change the doubling underneath.
        assert_eq!(b.current(), 5000 * MS);
    }

    #[test]
    fn jittered_delays_respect_bounds_for_any_fraction() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        let mut base = 100 * MS;
        for i in 0..=40 {
            let unit = f64::from(i) / 40.0;
            let d = b.next_delay_jittered(unit);
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
            base = (base * 2).min(5000 * MS);
        }
    }
}
