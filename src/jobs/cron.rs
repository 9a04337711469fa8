//! Schedules in UTC: 5-field cron expressions (minute hour day-of-month month day-of-week, as the
//! original validated them with croniter) and fixed intervals (`service_type = 'interval'`).
//!
//! Written here rather than taken from a crate: the semantics are small and must match what
//! operators already wrote for croniter/Vixie cron — `*`, lists, ranges, steps (`*/5`, `10-50/20`,
//! `7/15`), month and weekday names, `7` as Sunday, the `@hourly`-style macros, and the classic
//! day rule: when both day-of-month and day-of-week are restricted, a day matching either runs.
//! Everything is UTC; there is no daylight-saving ambiguity to resolve.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};

/// Longest accepted schedule text.
pub const MAX_LEN: usize = 200;
/// Shortest and longest interval schedules.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86400);
/// How far ahead `next_after` searches (a schedule such as Feb 29 runs every four years).
const SEARCH_DAYS: u32 = 366 * 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(pub String);

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CronError {}

/// A parsed 5-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
    },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, CronError> {
        if let Ok(n) = text.parse::<u32>() {
            if n < self.min || n > self.max {
                return Err(CronError(format!(
                    "{} {n} is out of range {}-{}",
                    self.name, self.min, self.max
                )));
            }
            return Ok(n);
        }
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            // Month names start at 1, weekday names at 0 (Sunday).
            return Ok(i as u32 + if self.min == 1 { 1 } else { 0 });
        }
        Err(CronError(format!("'{text}' is not a valid {}", self.name)))
    }

    /// The set of values as a bit mask, and whether the field began with `*`.
    fn parse(&self, text: &str) -> Result<(u64, bool), CronError> {
        let mut mask = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(CronError(format!("empty item in {} '{text}'", self.name)));
            }
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s.parse().map_err(|_| {
                        CronError(format!("step '{s}' in {} is not a number", self.name))
                    })?;
                    if step == 0 || step > self.max {
                        return Err(CronError(format!(
                            "step {step} in {} must be between 1 and {}",
                            self.name, self.max
                        )));
                    }
                    (r, step)
                }
                None => (item, 1),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(CronError(format!(
                        "range {range} in {} goes backwards",
                        self.name
                    )));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `7/15` means from 7 to the end in steps of 15, as in Vixie cron and croniter.
                if item.contains('/') {
                    (a, self.max)
                } else {
                    (a, a)
                }
            };
            let mut v = lo;
            while v <= hi {
                mask |= 1 << v;
                v += step;
            }
        }
        Ok((mask, text.starts_with('*')))
    }
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let text = text.trim();
        if text.len() > MAX_LEN {
            return Err(CronError(format!(
                "the expression is longer than {MAX_LEN} characters"
            )));
        }
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            other if other.starts_with('@') => {
                return Err(CronError(format!(
                    "unknown macro {other}; use @hourly, @daily, @weekly, @monthly or @yearly"
                )));
            }
            _ => text.to_owned(),
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        }
        let mut masks = [(0u64, false); 5];
        for (i, (field, part)) in FIELDS.iter().zip(&parts).enumerate() {
            masks[i] = field.parse(part)?;
        }
        let mut weekdays = masks[4].0;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Cron {
            minutes: masks[0].0,
            hours: masks[1].0 as u32,
            days: masks[2].0 as u32,
            months: masks[3].0 as u16,
            weekdays: weekdays as u8,
            days_restricted: !masks[2].1,
            weekdays_restricted: !masks[4].1,
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.days_restricted && self.weekdays_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first minute strictly after `t` that the expression selects.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = t
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .map(|t| t + chrono::Duration::minutes(1))?;
        let mut date = start.date_naive();
        for day in 0..SEARCH_DAYS {
            if self.months & (1 << date.month()) != 0 && self.day_matches(date) {
                let (h0, m0) = if day == 0 {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                for h in h0..24 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    let from = if h == h0 { m0 } else { 0 };
                    for m in from..60 {
                        if self.minutes & (1 << m) != 0 {
                            return Utc.from_utc_datetime(&date.and_hms_opt(h, m, 0)?).into();
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// What a `sync_services` row's `service_type` and `schedule_config` mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    Cron(Cron),
    /// Every N, on multiples of N since the Unix epoch, so every scheduler agrees on the ticks.
    Every(Duration),
}

impl Timing {
    pub fn parse(service_type: &str, schedule: &str) -> Result<Timing, CronError> {
        match service_type {
            "cron" => Cron::parse(schedule).map(Timing::Cron),
            "interval" => {
                let d = crate::config::value::parse_duration(schedule).ok_or_else(|| {
                    CronError(format!(
                        "'{schedule}' is not an interval; write seconds (300) or 5m, 1h"
                    ))
                })?;
                if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) || d.subsec_nanos() != 0 {
                    return Err(CronError(format!(
                        "interval {d:?} must be whole seconds between {}s and {} days",
                        MIN_INTERVAL.as_secs(),
                        MAX_INTERVAL.as_secs() / 86400
                    )));
                }
                Ok(Timing::Every(d))
            }
            other => Err(CronError(format!(
                "service_type '{other}' is not cron or interval"
            ))),
        }
    }

    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Cron(c) => c.next_after(t),
            Timing::Every(d) => {
                let secs = d.as_secs() as i64;
                let next = (t.timestamp().div_euclid(secs) + 1) * secs;
                Utc.timestamp_opt(next, 0).single()
            }
        }
    }

    /// The last tick at or before `now` that comes after `since`, if any: after downtime a missed
    /// schedule runs once, for its latest tick, not once per missed tick.
    pub fn latest_due(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut due = None;
        let mut t = since;
        // Bounded: a per-minute schedule after a year of downtime is about 500 000 steps; beyond
        // the bound the latest tick found so far is used (it is still one run).
        for _ in 0..1_000_000 {
            match self.next_after(t) {
                Some(n) if n <= now => {
                    due = Some(n);
                    t = n;
                }
                _ => break,
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, from: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .next_after(at(from))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn the_original_schedules_parse_and_fire_when_expected() {
        assert_eq!(
            next("*/5 * * * *", "2025-01-01T10:02:30Z"),
            "2025-01-01T10:05:00+00:00"
        );
        assert_eq!(
            next("*/5 * * * *", "2025-01-01T10:05:00Z"),
            "2025-01-01T10:10:00+00:00"
        );
        assert_eq!(
            next("0 5,17 * * *", "2025-01-01T05:00:00Z"),
            "2025-01-01T17:00:00+00:00"
        );
        assert_eq!(
            next("0 5,17 * * *", "2025-01-01T17:00:01Z"),
            "2025-01-02T05:00:00+00:00"
        );
        assert_eq!(
            next("20,50 * * * *", "2025-01-01T10:21:00Z"),
            "2025-01-01T10:50:00+00:00"
        );
        // 2025-01-06 is a Monday.
        assert_eq!(
            next("0 18 * * 1", "2025-01-01T00:00:00Z"),
            "2025-01-06T18:00:00+00:00"
        );
        assert_eq!(
            next("30 22 * * mon", "2025-01-06T22:30:00Z"),
            "2025-01-13T22:30:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jan *", "2025-03-01T00:00:00Z"),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", "2025-03-01T00:00:00Z"),
            "2025-03-01T01:00:00+00:00"
        );
    }

    #[test]
    fn steps_ranges_and_sunday_as_seven() {
        assert_eq!(
            next("10-50/20 * * * *", "2025-01-01T10:11:00Z"),
            "2025-01-01T10:30:00+00:00"
        );
        assert_eq!(
            next("7/15 * * * *", "2025-01-01T10:08:00Z"),
            "2025-01-01T10:22:00+00:00"
        );
        // 2025-01-05 is a Sunday.
        assert_eq!(
            next("0 0 * * 7", "2025-01-01T00:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 0", "2025-01-01T00:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
    }

    #[test]
    fn restricted_day_of_month_and_weekday_match_either() {
        // The 15th, or any Friday (2025-01-03 is a Friday).
        assert_eq!(
            next("0 12 15 * fri", "2025-01-01T00:00:00Z"),
            "2025-01-03T12:00:00+00:00"
        );
        // Only one restricted: both must hold (*/2 counts as unrestricted, as in Vixie cron).
        assert_eq!(
            next("0 12 */2 * fri", "2025-01-01T00:00:00Z"),
            "2025-01-03T12:00:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2025-01-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        for (expr, needle) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute 60 is out of range"),
            ("* 24 * * *", "hour 24"),
            ("* * 0 * *", "day of month 0"),
            ("* * * 13 *", "month 13"),
            ("* * * * 8", "day of week 8"),
            ("*/0 * * * *", "step 0"),
            ("5-1 * * * *", "goes backwards"),
            ("a * * * *", "'a' is not a valid minute"),
            ("1,,2 * * * *", "empty item"),
            ("@sometimes", "unknown macro"),
        ] {
            let err = Cron::parse(expr).unwrap_err().to_string();
            assert!(err.contains(needle), "{expr}: {err}");
        }
        assert!(Cron::parse(&"1,".repeat(150)).is_err());
    }

    #[test]
    fn impossible_dates_have_no_next_run() {
        assert!(
            Cron::parse("0 0 31 2 *")
                .unwrap()
                .next_after(at("2025-01-01T00:00:00Z"))
                .is_none()
        );
    }

    #[test]
    fn intervals_tick_on_epoch_multiples() {
        let t = Timing::parse("interval", "300").unwrap();
        assert_eq!(
            t.next_after(at("2025-01-01T10:02:30Z"))
                .unwrap()
                .to_rfc3339(),
            "2025-01-01T10:05:00+00:00"
        );
        assert!(Timing::parse("interval", "1").is_err());
        assert!(Timing::parse("weekly", "1").is_err());
    }

    #[test]
    fn a_missed_schedule_is_due_once_for_its_latest_tick() {
        let t = Timing::parse("cron", "*/5 * * * *").unwrap();
        let due = t.latest_due(at("2025-01-01T10:00:00Z"), at("2025-01-01T12:07:00Z"));
        assert_eq!(due.unwrap().to_rfc3339(), "2025-01-01T12:05:00+00:00");
        assert_eq!(
            t.latest_due(at("2025-01-01T10:00:00Z"), at("2025-01-01T10:04:59Z")),
            None
        );
    }
}
