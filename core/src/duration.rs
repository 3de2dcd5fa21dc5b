//! Go's duration syntax, as Consul's JSON, HCL and query strings use it (`"10s"`, `"1m30s"`,
//! `"1.5h"`, `"300ms"`) and as Consul prints it (`Duration.String`: `"1m30s"`, `"1.5ms"`,
//! `"0s"`). Parsing follows Go's `time.ParseDuration`; durations here are never negative
//! (Consul has no use for one: a negative TTL, interval or timeout is bad input).

use std::time::Duration;

/// The largest duration Go can represent (`math.MaxInt64` nanoseconds, about 292 years).
pub const GO_DURATION_MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Why text is not a duration; the message is Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not the syntax.
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    /// A number without a unit (only `0` may have none).
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    /// A unit Go does not know.
    #[error("time: unknown unit {unit:?} in duration {text:?}")]
    UnknownUnit {
        /// The unit.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// Negative (Go accepts it; nothing in Consul's API means it).
    #[error("time: negative duration {0:?}")]
    Negative(String),
    /// Over [`GO_DURATION_MAX`].
    #[error("time: invalid duration {0:?}")]
    Overflow(String),
}

/// Parses Go's duration syntax: a sequence of decimal numbers, each with an optional fraction
/// and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`); `"0"` alone needs no unit.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    let mut rest = text;
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('-') {
        if stripped == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(DurationError::Negative(text.to_owned()));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let whole_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (whole, after) = rest.split_at(whole_end);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let end = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
                after.split_at(end)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(text.to_owned()));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(DurationError::UnknownUnit { unit: unit.to_owned(), text: text.to_owned() }),
        };
        let overflow = || DurationError::Overflow(text.to_owned());
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| overflow())? };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // The fraction's digits past what the unit can resolve are dropped, as Go does.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        if total_nanos > GO_DURATION_MAX.as_nanos() {
            return Err(overflow());
        }
        rest = after;
    }
    Ok(Duration::from_nanos(u64::try_from(total_nanos).expect("bounded by GO_DURATION_MAX")))
}

/// Formats as Go's `Duration.String`: `"0s"`, `"750ns"`, `"1.5µs"`, `"300ms"`, `"1m30s"`,
/// `"2h0m0s"`.
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos().min(GO_DURATION_MAX.as_nanos());
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit_nanos, unit) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        return format!("{}{unit}", decimal(nanos, unit_nanos));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = decimal(nanos % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, minutes) => format!("{minutes}m{seconds}s"),
        (hours, minutes) => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// `value / unit` with the fraction's trailing zeros dropped (`1500, 1000` → `"1.5"`).
fn decimal(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_go_parses() {
        let cases = [
            ("0", 0),
            ("10s", 10_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("300ms", 300_000_000),
            ("2h45m", 9_900_000_000_000),
            ("1µs", 1_000),
            ("1us", 1_000),
            ("5ns", 5),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("+3s", 3_000_000_000),
            ("1.0000000009s", 1_000_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
    }

    #[test]
    fn refuses_what_go_refuses_with_its_messages() {
        assert_eq!(parse("").unwrap_err().to_string(), "time: invalid duration \"\"");
        assert_eq!(parse("10").unwrap_err().to_string(), "time: missing unit in duration \"10\"");
        assert_eq!(parse("3d").unwrap_err().to_string(), "time: unknown unit \"d\" in duration \"3d\"");
        assert_eq!(parse("-5s"), Err(DurationError::Negative("-5s".into())));
        assert!(parse(".s").is_err());
        assert!(parse("s").is_err());
        assert!(parse("9999999999999h").is_err());
        assert!(parse("1s2").is_err());
    }

    #[test]
    fn formats_as_go_prints() {
        let cases = [
            (0, "0s"),
            (750, "750ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (10_000_000_000, "10s"),
            (90_000_000_000, "1m30s"),
            (7_200_000_000_000, "2h0m0s"),
            (86_400_000_000_000, "24h0m0s"),
            (1_500_000_000, "1.5s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format(Duration::from_nanos(nanos)), text);
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "round trip {text}");
        }
    }
}
