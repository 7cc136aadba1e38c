//! Exponential backoff with jitter for re-subscription attempts: the shared
//! [`agora_core::Backoff`] arithmetic with a random fraction for its jitter.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff: the base delay starts at `initial` and doubles after
/// every attempt up to `max`; each returned delay is drawn uniformly from
/// `[base / 2, base]` ("equal jitter"), so many frameworks cut off at once do
/// not reconnect in lock-step.
#[derive(Debug, Clone)]
pub struct Backoff(agora_core::Backoff);

impl Backoff {
    /// A backoff starting at `initial` and capped at `max` (`max` is raised to
    /// `initial` if smaller).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self(agora_core::Backoff::new(initial, max))
    }

    /// The delay to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(random_unit())
    }

    /// Like [`next_delay`](Self::next_delay) with the jitter given as a
    /// fraction in `[0, 1]` (clamped): 0 gives `base / 2`, 1 gives `base`.
    pub fn next_delay_with(&mut self, jitter: f64) -> Duration {
        self.0.next_delay_jittered(jitter)
    }

    /// Starts over from the initial delay (after a successful attempt).
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

/// A number in `[0, 1)` from the process' randomly seeded hasher: plenty for
/// jitter, and no dependency on an RNG crate.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    // 53 random bits make an evenly spread f64 in [0, 1).
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        let full: Vec<_> = (0..9).map(|_| b.next_delay_with(1.0)).collect();
        let want = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(|ms| ms * MS);
        assert_eq!(full, want);
    }

    #[test]
    fn jitter_stays_within_half_to_full_base() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        assert_eq!(b.next_delay_with(0.0), 50 * MS);
        assert_eq!(b.next_delay_with(0.5), 150 * MS);
        // Out-of-range and NaN jitter is clamped rather than escaping the bounds.
        assert_eq!(b.next_delay_with(7.0), 400 * MS);
        assert_eq!(b.next_delay_with(-1.0), 400 * MS);
        assert_eq!(b.next_delay_with(f64::NAN), 800 * MS);
    }

    #[test]
    fn random_delays_respect_bounds() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        let mut base = 100 * MS;
        for _ in 0..50 {
            let d = b.next_delay();
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
            base = (base * 2).min(5000 * MS);
        }
    }

    #[test]
    fn reset_starts_over_and_max_below_initial_is_raised() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        b.next_delay_with(1.0);
        b.next_delay_with(1.0);
        b.reset();
        assert_eq!(b.next_delay_with(1.0), 100 * MS);

        let mut flat = Backoff::new(300 * MS, 10 * MS);
        assert_eq!(flat.next_delay_with(1.0), 300 * MS);
        assert_eq!(flat.next_delay_with(1.0), 300 * MS);
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
