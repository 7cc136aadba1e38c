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

/// Why a text is not a duration as Mesos writes one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("'{0}' is not a duration like 30secs, 500ms or 2days")]
    NotADuration(String),
    #[error("'{text}' has no known unit (use ns, us, ms, secs, mins, hrs, days or weeks)")]
    UnknownUnit { text: String },
    #[error("'{0}' is longer than 100 years")]
    TooLong(String),
}

/// A duration as Mesos prints one (its flags in `/flags`, GET_FLAGS and
/// the state): a whole number in the largest unit that holds it exactly
/// (`2secs`, `100ms`, `2mins`, `2weeks`), what [`parse_mesos_duration`]
/// reads back.
pub fn mesos_duration(duration: Duration) -> String {
    const UNITS: [(u128, &str); 8] = [
        (604_800_000_000_000, "weeks"),
        (86_400_000_000_000, "days"),
        (3_600_000_000_000, "hrs"),
        (60_000_000_000, "mins"),
        (1_000_000_000, "secs"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let nanos = duration.as_nanos();
    UNITS
        .iter()
        .find(|(size, _)| nanos >= *size && nanos.is_multiple_of(*size))
        .map_or_else(
            || "0secs".to_string(),
            |(size, unit)| format!("{}{unit}", nanos / size),
        )
}

/// A duration as Mesos writes one (its flags, `/metrics/snapshot?timeout=`,
/// `MESOS_*` variables): a number, then one of Mesos' units `ns`, `us`,
/// `ms`, `secs`, `mins`, `hrs`, `days`, `weeks` (`30secs`, `500ms`,
/// `1.5hrs`; a space before the unit is allowed). No sign, no exponent:
/// a negative or absurd number is not a duration. Above [`MAX_DURATION`]
/// is refused, not capped: a duration that long is a mistake.
pub fn parse_mesos_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let not_one = || DurationError::NotADuration(text.to_owned());
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| not_one())?;
    let seconds_per_unit = match unit.trim_start() {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "secs" => 1.0,
        "mins" => 60.0,
        "hrs" => 3600.0,
        "days" => 86_400.0,
        "weeks" => 604_800.0,
        _ => {
            return Err(DurationError::UnknownUnit {
                text: text.to_owned(),
            });
        }
    };
    let secs = number * seconds_per_unit;
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::TooLong(text.to_owned()));
    }
    duration_from_secs(secs).ok_or_else(not_one)
}

/// `now + after`, saturating instead of overflowing.
pub fn deadline(now: Duration, after: Duration) -> Duration {
    now.saturating_add(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_durations_take_mesos_units_and_refuse_the_rest() {
        let ok = |text: &str| parse_mesos_duration(text).expect(text);
        assert_eq!(ok("15mins"), Duration::from_secs(900));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5hrs"), Duration::from_secs(5400));
        assert_eq!(ok(" 2 days "), Duration::from_secs(172_800));
        assert_eq!(ok("1weeks"), Duration::from_secs(604_800));
        assert_eq!(ok("0secs"), Duration::ZERO);
        for unknown in ["15", "3fortnights", "5s", "5 sec"] {
            assert!(
                matches!(
                    parse_mesos_duration(unknown),
                    Err(DurationError::UnknownUnit { .. })
                ),
                "{unknown}"
            );
        }
        for not_one in [
            "",
            "mins",
            "-1secs",
            "abc",
            "1.2.3secs",
            "NaNsecs",
            "infsecs",
        ] {
            assert!(
                matches!(
                    parse_mesos_duration(not_one),
                    Err(DurationError::NotADuration(_))
                ),
                "{not_one}"
            );
        }
        // No exponent: `e300weeks` is no unit.
        assert!(matches!(
            parse_mesos_duration("1e300weeks"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_mesos_duration("999999999999weeks"),
            Err(DurationError::TooLong("999999999999weeks".to_owned()))
        );
    }

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
