//! Maintenance windows: weekly and cron openings, evaluated in a device's local time.

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::policy::{PolicyError, WindowPolicy};
use crate::clock::Timestamp;

/// Days searched ahead for a cron opening: eight years covers February 29th.
const CRON_SEARCH_DAYS: i32 = 8 * 366;

/// When a window opens, as sets of local times (bit `i` set = value `i` allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Openings {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days_of_month: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    days_of_week: u8,
    /// Whether both day fields are restricted (then a day matches if either does).
    either_day: bool,
}

/// A compiled maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    openings: Openings,
    duration_secs: i64,
}

/// Where a time stands relative to a set of windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Open now; the answer holds until `until` (a window's end).
    Open { until: Timestamp },
    /// Closed; the next opening, if any can be found.
    Closed { opens: Option<Timestamp> },
}

fn invalid(field: &str, value: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The bits of one cron field (`lo..=hi`).
fn cron_field(field: &str, expr: &str, text: &str, lo: u32, hi: u32) -> Result<u64, PolicyError> {
    let num = |s: &str| -> Result<u32, PolicyError> {
        let n: u32 = s
            .parse()
            .map_err(|_| invalid(field, expr, format!("{text:?}: expected a number")))?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(invalid(
                field,
                expr,
                format!("{text:?}: {n} is outside {lo}..={hi}"),
            ))
        }
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| invalid(field, expr, format!("{part:?}: bad step")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None if step > 1 => (num(r)?, hi),
                None => {
                    let n = num(r)?;
                    (n, n)
                }
            },
        };
        if a > b {
            return Err(invalid(field, expr, format!("{part:?}: empty range")));
        }
        for v in (a..=b).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn day_bit(name: &str) -> Option<u8> {
    const DAYS: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    let lower = name.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == lower || d[..3] == lower)
        .map(|i| 1 << i)
}

fn days_in_month(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Window {
    pub(crate) fn compile(field: &str, w: &WindowPolicy) -> Result<Window, PolicyError> {
        if !(1..=1440).contains(&w.duration_minutes) {
            return Err(super::policy::out_of_range(
                format!("{field}.durationMinutes"),
                "1..=1440",
            ));
        }
        let openings = match (&w.cron, &w.days_of_week, &w.start_time) {
            (Some(cron), None, None) => Self::cron(&format!("{field}.cron"), cron)?,
            (None, Some(days), Some(start)) => Self::weekly(field, days, start)?,
            (None, _, _) => {
                return Err(PolicyError::Missing {
                    field: format!(
                        "{field}.{}",
                        if w.days_of_week.is_some() {
                            "startTime"
                        } else {
                            "daysOfWeek"
                        }
                    ),
                    context: "for a window without cron",
                })
            }
            (Some(_), _, _) => {
                return Err(PolicyError::Conflict {
                    field: field.to_string(),
                    reason: "cron excludes daysOfWeek and startTime",
                })
            }
        };
        Ok(Window {
            openings,
            duration_secs: (w.duration_minutes * 60) as i64,
        })
    }

    fn weekly(field: &str, days: &[String], start: &str) -> Result<Openings, PolicyError> {
        let f = format!("{field}.daysOfWeek");
        if days.is_empty() {
            return Err(invalid(&f, "[]", "at least one day"));
        }
        let mut days_of_week = 0u8;
        for d in days {
            days_of_week |= day_bit(d).ok_or_else(|| invalid(&f, d, "expected mon..sun"))?;
        }
        let f = format!("{field}.startTime");
        let bad = || invalid(&f, start, "expected HH:MM, 00:00..=23:59");
        let (h, m) = start.split_once(':').ok_or_else(bad)?;
        let two = |s: &str, max: u32| -> Option<u32> {
            (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
                .filter(|v| *v <= max)
        };
        let (h, m) = (two(h, 23).ok_or_else(bad)?, two(m, 59).ok_or_else(bad)?);
        Ok(Openings {
            minutes: 1 << m,
            hours: 1 << h,
            days_of_month: u32::MAX,
            months: u16::MAX,
            days_of_week,
            either_day: false,
        })
    }

    fn cron(field: &str, expr: &str) -> Result<Openings, PolicyError> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [mi, h, dom, mon, dow] = parts[..] else {
            return Err(invalid(
                field,
                expr,
                "expected 5 fields: minute hour day month weekday",
            ));
        };
        let dow_bits = cron_field(field, expr, dow, 0, 7)?;
        let o = Openings {
            minutes: cron_field(field, expr, mi, 0, 59)?,
            hours: cron_field(field, expr, h, 0, 23)? as u32,
            days_of_month: cron_field(field, expr, dom, 1, 31)? as u32,
            months: cron_field(field, expr, mon, 1, 12)? as u16,
            days_of_week: ((dow_bits | (dow_bits >> 7)) & 0x7f) as u8,
            either_day: !dom.starts_with('*') && !dow.starts_with('*'),
        };
        let dom_only = !o.either_day && dow.starts_with('*');
        let possible = (1..=12u32).any(|m| {
            o.months & (1 << m) != 0
                && (1..=days_in_month(m)).any(|d| o.days_of_month & (1 << d) != 0)
        });
        if dom_only && !possible {
            return Err(invalid(field, expr, "no month has such a day"));
        }
        Ok(o)
    }

    fn opens_on(&self, d: Date) -> bool {
        let o = &self.openings;
        let month = o.months & (1 << d.month()) != 0;
        let dom = o.days_of_month & (1 << d.day()) != 0;
        let dow = o.days_of_week & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        month && if o.either_day { dom || dow } else { dom && dow }
    }

    /// The openings on local day `d`, in increasing local time, as UTC timestamps.
    fn openings_on<'a>(
        &'a self,
        tz: &'a TimeZone,
        d: Date,
    ) -> impl DoubleEndedIterator<Item = Timestamp> + 'a {
        let open = self.opens_on(d);
        let o = &self.openings;
        (0..24i8)
            .filter(move |h| open && o.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i8)
                    .filter(move |m| o.minutes & (1 << m) != 0)
                    .map(move |m| (h, m))
            })
            .filter_map(move |(h, m)| {
                let ts = tz
                    .to_ambiguous_timestamp(d.at(h, m, 0, 0))
                    .compatible()
                    .ok()?;
                Some(Timestamp::from_unix_secs(ts.as_second()))
            })
    }

    fn position(&self, tz: &TimeZone, t: Timestamp, today: Date) -> Position {
        // The latest opening at or before t: a window open at t opened at most a day (plus a
        // DST shift) ago, so two local days back suffice.
        let latest = (0..=2)
            .filter_map(|back| today.checked_sub(jiff::Span::new().days(back)).ok())
            .filter_map(|d| self.openings_on(tz, d).rev().find(|s| *s <= t))
            .max();
        if let Some(s) = latest {
            let until = Timestamp::from_unix_secs(s.unix_secs() + self.duration_secs);
            if until > t {
                return Position::Open { until };
            }
        }
        let mut d = today.yesterday().unwrap_or(today);
        for _ in 0..=CRON_SEARCH_DAYS {
            if let Some(s) = self.openings_on(tz, d).find(|s| *s > t) {
                return Position::Closed { opens: Some(s) };
            }
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => break,
            }
        }
        Position::Closed { opens: None }
    }
}

/// Where `t` stands for a device in `tz` against `windows` (none: always open).
///
/// Open: until the earliest end among the open windows (the answer may be re-asked then).
/// Closed: the earliest opening of any window.
pub(crate) fn position(windows: &[Window], tz: &TimeZone, t: Timestamp) -> Position {
    let Ok(jt) = jiff::Timestamp::from_second(t.unix_secs()) else {
        return Position::Closed { opens: None };
    };
    let today = tz.to_datetime(jt).date();
    let mut open: Option<Timestamp> = None;
    let mut opens: Option<Timestamp> = None;
    for w in windows {
        match w.position(tz, t, today) {
            Position::Open { until } => open = Some(open.map_or(until, |o| o.min(until))),
            Position::Closed { opens: Some(s) } => opens = Some(opens.map_or(s, |o| o.min(s))),
            Position::Closed { opens: None } => {}
        }
    }
    match open {
        Some(until) => Position::Open { until },
        None => Position::Closed { opens },
    }
}
