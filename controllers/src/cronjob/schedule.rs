//! A CronJob's schedule as Kubernetes reads it (robfig/cron's standard parser): five fields
//! or a macro (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
//! `@hourly`), or `@every <duration>`, evaluated in `spec.timeZone` (UTC when unset).
//!
//! The five-field and macro forms are parsed and stepped by the `croner` crate, which keeps
//! cron's rule that a restricted day-of-month and a restricted day-of-week match either one.
//! `@every` is a constant delay from the previous time, as robfig/cron's ConstantDelaySchedule
//! is, and has no cron pattern to hand to the crate.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A parsed schedule with its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    form: Form,
    zone: Tz,
}

#[derive(Debug, Clone)]
enum Form {
    Cron(Box<Cron>),
    Every(Duration),
}

/// Why a schedule or time zone cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
    #[error("{0}")]
    Unparseable(String),
}

impl Schedule {
    /// Parses `spec` for `time_zone` (None: UTC).
    pub fn parse(spec: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let zone = match time_zone {
            None => Tz::UTC,
            Some(name) => {
                Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))?
            }
        };
        let spec = spec.trim();
        if let Some(every) = spec.strip_prefix("@every ") {
            let delay = parse_go_duration(every.trim()).ok_or_else(|| {
                ScheduleError::Unparseable(format!("failed to parse duration {spec}"))
            })?;
            // robfig/cron rounds the delay to whole seconds, at least one.
            let delay = Duration::from_secs(delay.as_secs().max(1));
            return Ok(Schedule {
                form: Form::Every(delay),
                zone,
            });
        }
        let pattern = match spec {
            "@midnight" => "@daily",
            other => other,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(pattern)
            .map_err(|e| ScheduleError::Unparseable(e.to_string()))?;
        Ok(Schedule {
            form: Form::Cron(Box::new(cron)),
            zone,
        })
    }

    /// The first scheduled time strictly after `after`, or None if there is none (a date that
    /// never exists, such as February 30th).
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.form {
            Form::Every(delay) => {
                let base = after.with_nanosecond(0).unwrap_or(after);
                Some(base + TimeDelta::from_std(*delay).ok()?)
            }
            Form::Cron(cron) => {
                let local = after.with_timezone(&self.zone);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }

    /// The time zone the schedule is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }
}

/// Go's `time.ParseDuration` for the units a schedule would use.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, seconds) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn next(spec: &str, zone: Option<&str>, after: &str) -> String {
        Schedule::parse(spec, zone)
            .ok()
            .and_then(|s| s.next(at(after)))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    }

    #[test]
    fn five_fields_step_to_the_next_matching_minute() {
        assert_eq!(
            next("* * * * *", None, "2024-05-01T10:00:00Z"),
            "2024-05-01T10:01:00+00:00"
        );
        assert_eq!(
            next("* * * * *", None, "2024-05-01T10:00:30Z"),
            "2024-05-01T10:01:00+00:00"
        );
        assert_eq!(
            next("*/15 2 * * *", None, "2024-05-01T02:50:00Z"),
            "2024-05-02T02:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jan *", None, "2024-05-01T00:00:00Z"),
            "2025-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn restricted_day_of_month_and_day_of_week_match_either() {
        // 2024-05-01 is a Wednesday: the 13th (Monday) and Friday the 3rd both match.
        assert_eq!(
            next("0 0 13 * 5", None, "2024-05-01T00:00:00Z"),
            "2024-05-03T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 13 * *", None, "2024-05-01T00:00:00Z"),
            "2024-05-13T00:00:00+00:00"
        );
    }

    #[test]
    fn macros_and_every() {
        assert_eq!(
            next("@hourly", None, "2024-05-01T10:20:00Z"),
            "2024-05-01T11:00:00+00:00"
        );
        assert_eq!(
            next("@midnight", None, "2024-05-01T10:20:00Z"),
            "2024-05-02T00:00:00+00:00"
        );
        assert_eq!(
            next("@weekly", None, "2024-05-01T10:20:00Z"),
            "2024-05-05T00:00:00+00:00"
        );
        assert_eq!(
            next("@every 1h30m", None, "2024-05-01T10:20:00.5Z"),
            "2024-05-01T11:50:00+00:00"
        );
    }

    #[test]
    fn the_time_zone_decides_the_wall_clock() {
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            next("0 9 * * *", Some("Asia/Tokyo"), "2024-05-01T01:00:00Z"),
            "2024-05-02T00:00:00+00:00"
        );
        assert!(matches!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")),
            Err(ScheduleError::UnknownTimeZone(_))
        ));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Schedule::parse("* * *", None).is_err());
        assert!(Schedule::parse("@every soon", None).is_err());
    }
}
