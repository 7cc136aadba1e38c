//! Seconds from the wire or a flag (an `f64`) as a `Duration`, checked.
//!
//! `Duration::from_secs_f64` panics on NaN, negative and huge values, and
//! adding a huge `Duration` to a clock reading overflows: both are one
//! framework's call away from killing a master. Every conversion of an
//! outside number of seconds goes through [`duration_from_secs`] (the std
//! constructors are disallowed in `clippy.toml`), and every deadline is
//! computed with [`deadline`].

use std::time::Duration;

/// The longest duration an outside number of seconds becomes: 100 years.
/// Far above any timeout or filter anyone means, and far below where adding
/// it to a monotonic clock reading could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `secs` as a `Duration`: `None` for NaN or a negative number (the caller
/// picks its default or refuses); `+inf` and anything above
/// [`MAX_DURATION`] become [`MAX_DURATION`]. Never panics.
pub fn duration_from_secs(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    if secs >= MAX_DURATION.as_secs_f64() {
        return Some(MAX_DURATION);
    }
    // In range: finite, non-negative and below the cap, so this cannot fail.
    Some(Duration::try_from_secs_f64(secs).unwrap_or(MAX_DURATION))
}

/// `now + after`, saturating instead of overflowing.
pub fn deadline(now: Duration, after: Duration) -> Duration {
    now.saturating_add(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_seconds_never_panic_and_saturate_at_the_cap() {
        assert_eq!(duration_from_secs(f64::NAN), None);
        assert_eq!(duration_from_secs(-1.0), None);
        assert_eq!(duration_from_secs(f64::NEG_INFINITY), None);
        assert_eq!(duration_from_secs(-0.0), Some(Duration::ZERO));
        assert_eq!(duration_from_secs(0.0), Some(Duration::ZERO));
        assert_eq!(duration_from_secs(1.5), Some(Duration::from_millis(1500)));
        for huge in [1.8e19, 1e19, 1e300, f64::MAX, f64::INFINITY] {
            assert_eq!(duration_from_secs(huge), Some(MAX_DURATION), "{huge}");
        }
        assert_eq!(
            duration_from_secs(f64::MIN_POSITIVE),
            Some(Duration::ZERO),
            "below a nanosecond rounds to zero"
        );
    }

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline(Duration::MAX, MAX_DURATION), Duration::MAX);
        assert_eq!(
            deadline(Duration::from_secs(1), Duration::from_secs(2)),
            Duration::from_secs(3)
        );
    }
}
