//! Go's duration syntax (`300ms`, `5s`, `1m30s`, `1.5h`), as Kubernetes' flags and KWOK's
//! annotations write durations; used for the scheduler's and the sim's timing flags and the
//! sim's run-time annotation.

use std::time::Duration;

/// Why a string is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: expected numbers with units, e.g. 300ms, 5s, 1m30s")]
    Syntax(String),
    #[error("invalid duration {0:?}: unknown unit {1:?} (valid: ns, us, ms, s, m, h)")]
    Unit(String, String),
    #[error("invalid duration {0:?}: negative durations mean nothing here")]
    Negative(String),
    #[error("invalid duration {0:?}: too long")]
    Overflow(String),
}

/// [`parse`] for clap's `value_parser`: the error as text.
pub fn flag(text: &str) -> Result<Duration, String> {
    parse(text).map_err(|e| e.to_string())
}

/// Parses a Go duration. Unlike Go, a sign is refused: every duration here is a wait.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let overflow = || DurationError::Overflow(text.to_string());
    let body = match text.strip_prefix('+') {
        Some(rest) => rest,
        None if text.starts_with('-') => return Err(DurationError::Negative(text.to_string())),
        None => text,
    };
    // Go accepts a bare zero without a unit, and nothing else without one.
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(syntax());
    }
    let mut nanos: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = unit_nanos(unit)
            .ok_or_else(|| DurationError::Unit(text.to_string(), unit.to_string()))?;
        nanos = nanos
            .checked_add(scaled(number, scale).ok_or_else(syntax)?)
            .ok_or_else(overflow)?;
        rest = tail;
    }
    let nanos = u64::try_from(nanos).map_err(|_| overflow())?;
    Ok(Duration::from_nanos(nanos))
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// `number` (digits, at most one dot, at least one digit) times `scale` nanoseconds; the
/// fraction is truncated below a nanosecond, as Go truncates it.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(scale)?;
    let mut place = scale;
    for digit in fraction.bytes() {
        place /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * place)?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_units_parse_as_go_reads_them() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn compound_and_fractional_durations_add_up() {
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("+40s"), Ok(Duration::from_secs(40)));
    }

    #[test]
    fn malformed_durations_are_refused_with_the_reason() {
        assert!(matches!(parse(""), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("5"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("1.2.3s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("5d"), Err(DurationError::Unit(_, u)) if u == "d"));
        assert!(matches!(parse("-5s"), Err(DurationError::Negative(_))));
        assert!(matches!(
            parse("99999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }
}
