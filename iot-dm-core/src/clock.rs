//! Time without I/O: the [`Timestamp`] type and the [`Clock`] seam.
//!
//! The core never reads the system clock on its own. Code that needs "now" takes a
//! [`Timestamp`] argument or a [`Clock`], so SAS expiry, lifecycle timers and job schedules are
//! tested deterministically with a [`ManualClock`].
//!
//! Timestamps print the way IoT Hub prints them: UTC ISO 8601 with a `Z`, and 3 to 7 fractional
//! digits (`2016-03-30T16:24:48.789Z`, `2024-05-10T07:11:30.9707312Z`).

use std::fmt;
use std::num::NonZeroI64;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// 100-nanosecond ticks in one second (IoT Hub prints 7 fractional digits).
pub(crate) const TICKS_PER_SEC: i64 = 10_000_000;

/// A point in time, in 100-nanosecond ticks since the Unix epoch (UTC).
///
/// The range covers year 1 (IoT Hub's `0001-01-01T00:00:00` "never") to year 9999.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// let t: Timestamp = "2016-03-30T16:24:48.789Z".parse()?;
/// assert_eq!(t.to_string(), "2016-03-30T16:24:48.789Z");
/// assert_eq!(Timestamp::from_unix_secs(0).to_string(), "1970-01-01T00:00:00.000Z");
/// # Ok::<(), iot_dm_core::clock::TimestampError>(())
/// ```
///
/// A timestamp is 8 bytes and so is an `Option<Timestamp>`: the tick count is kept with its sign
/// bit flipped in a `NonZeroI64`, which leaves the one value `i64::MIN` free for `None`. That
/// tick count (some 29,000 years before year 1) is clamped to the next one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp(NonZeroI64);

/// Ticks as stored: the sign bit flipped, so `i64::MIN` (clamped away) is the zero niche.
const fn stored(ticks: i64) -> NonZeroI64 {
    let ticks = if ticks == i64::MIN {
        i64::MIN + 1
    } else {
        ticks
    };
    match NonZeroI64::new(ticks ^ i64::MIN) {
        Some(v) => v,
        // unreachable: only i64::MIN maps to zero, and it was clamped above
        None => NonZeroI64::MAX,
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Timestamp::EPOCH
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ticks().cmp(&other.ticks())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Timestamp").field(&self.ticks()).finish()
    }
}

/// A string that is not an ISO 8601 UTC timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The text does not have the shape `YYYY-MM-DDTHH:MM:SS[.fffffff][Z]`.
    #[error("invalid timestamp {text:?}: expected YYYY-MM-DDTHH:MM:SS[.fffffff]Z")]
    Format {
        /// The rejected text.
        text: String,
    },
    /// A field is outside its range (month 1-12, day 1-31, hour 0-23, ...).
    #[error("invalid timestamp {text:?}: {field} out of range")]
    Range {
        /// The rejected text.
        text: String,
        /// The field that is out of range.
        field: &'static str,
    },
}

impl Timestamp {
    /// IoT Hub's "never" value, `0001-01-01T00:00:00`.
    pub const NEVER: Timestamp = Timestamp(stored(-621_355_968_000_000_000));

    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(stored(0));

    /// From whole seconds since the Unix epoch.
    pub const fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp(stored(secs.saturating_mul(TICKS_PER_SEC)))
    }

    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(ms: i64) -> Timestamp {
        Timestamp(stored(ms.saturating_mul(10_000)))
    }

    /// From 100-ns ticks since the Unix epoch.
    pub const fn from_ticks(ticks: i64) -> Timestamp {
        Timestamp(stored(ticks))
    }

    /// 100-ns ticks since the Unix epoch.
    pub const fn ticks(self) -> i64 {
        self.0.get() ^ i64::MIN
    }

    /// Whole seconds since the Unix epoch (rounded towards negative infinity).
    pub const fn unix_secs(self) -> i64 {
        self.ticks().div_euclid(TICKS_PER_SEC)
    }

    /// Milliseconds since the Unix epoch (rounded towards negative infinity).
    pub const fn unix_millis(self) -> i64 {
        self.ticks().div_euclid(10_000)
    }

    /// This time plus `d` (saturating; also available as `t + d`).
    pub fn saturating_add(self, d: std::time::Duration) -> Timestamp {
        let ticks = i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX);
        Timestamp::from_ticks(self.ticks().saturating_add(ticks))
    }

    /// The duration from `earlier` to `self`, or zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        let ticks = self.ticks().saturating_sub(earlier.ticks()).max(0);
        // ticks is non-negative here
        let ticks = u64::try_from(ticks).unwrap_or(0);
        std::time::Duration::from_nanos(ticks.saturating_mul(100))
    }

    /// The current system time. This is the one place the core reads a clock; prefer a
    /// [`Clock`] so callers can substitute a [`ManualClock`] in tests.
    pub fn now() -> Timestamp {
        SystemClock.now()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). Days past the
/// end of a month roll over into the next (`2015-02-30` is `2015-03-02`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl std::ops::Add<std::time::Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: std::time::Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl Timestamp {
    /// The text of a timestamp of the years 0 to 9999 (every one a hub makes), written without
    /// allocating: records carry several, and a job writes millions of records.
    fn format_short(&self, buf: &mut [u8; 28]) -> Option<usize> {
        let secs = self.ticks().div_euclid(TICKS_PER_SEC);
        let frac = self.ticks().rem_euclid(TICKS_PER_SEC);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return None;
        }
        let mut put = |at: usize, v: i64, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, y, 4);
        put(5, m, 2);
        put(8, d, 2);
        put(11, sod / 3600, 2);
        put(14, (sod / 60) % 60, 2);
        put(17, sod % 60, 2);
        put(20, frac, 7);
        buf[4] = b'-';
        buf[7] = b'-';
        buf[10] = b'T';
        buf[13] = b':';
        buf[16] = b':';
        buf[19] = b'.';
        // at least millisecond precision, trailing zeros past the 3rd digit trimmed
        let mut end = 27;
        while end > 23 && buf[end - 1] == b'0' {
            end -= 1;
        }
        buf[end] = b'Z';
        Some(end + 1)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 28];
        if let Some(n) = self.format_short(&mut buf) {
            if let Ok(text) = std::str::from_utf8(&buf[..n]) {
                return f.write_str(text);
            }
        }
        self.format_any(f)
    }
}

impl Timestamp {
    /// The text of any timestamp (the years [`Timestamp::format_short`] leaves out too).
    fn format_any(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.ticks().div_euclid(TICKS_PER_SEC);
        let frac = self.ticks().rem_euclid(TICKS_PER_SEC);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )?;
        // At least millisecond precision, at most 7 digits, trailing zeros past the 3rd trimmed.
        let mut digits = format!("{frac:07}");
        while digits.len() > 3 && digits.ends_with('0') {
            digits.pop();
        }
        write!(f, ".{digits}Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Accepts `YYYY-MM-DDTHH:MM:SS`, an optional fraction of any length (digits past the 7th
    /// are dropped), and an optional `Z`. A space is accepted in place of the `T`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fmt_err = || TimestampError::Format {
            text: text.to_string(),
        };
        let b = text.as_bytes();
        if b.len() < 19 {
            return Err(fmt_err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let s = &b[r];
            if s.iter().all(u8::is_ascii_digit) {
                Ok(s.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
            } else {
                Err(fmt_err())
            }
        };
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
            return Err(fmt_err());
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(fmt_err());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let range = |field| TimestampError::Range {
            text: text.to_string(),
            field,
        };
        if !(1..=12).contains(&mo) {
            return Err(range("month"));
        }
        if !(1..=31).contains(&d) {
            return Err(range("day"));
        }
        if h > 23 {
            return Err(range("hour"));
        }
        if mi > 59 {
            return Err(range("minute"));
        }
        if s > 60 {
            return Err(range("second"));
        }
        let mut rest = &b[19..];
        let mut frac_ticks = 0i64;
        if let Some((b'.', tail)) = rest.split_first() {
            let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return Err(fmt_err());
            }
            for i in 0..7 {
                let digit = tail
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |c| i64::from(c - b'0'));
                frac_ticks = frac_ticks * 10 + digit;
            }
            rest = &tail[n..];
        }
        match rest {
            b"" | b"Z" | b"z" => {}
            _ => return Err(fmt_err()),
        }
        let days = days_from_civil(y, mo, d);
        let secs = days * 86_400 + h * 3600 + mi * 60 + s;
        Ok(Timestamp::from_ticks(secs * TICKS_PER_SEC + frac_ticks))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 28];
        match self.format_short(&mut buf) {
            Some(n) => match std::str::from_utf8(&buf[..n]) {
                Ok(text) => s.serialize_str(text),
                Err(_) => s.collect_str(self),
            },
            None => s.collect_str(self),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A source of the current time.
///
/// ```
/// use iot_dm_core::clock::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
/// let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now().unix_secs(), 1_700_000_005);
/// ```
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp::EPOCH + d,
            Err(e) => {
                Timestamp::from_ticks(-i64::try_from(e.duration().as_nanos() / 100).unwrap_or(0))
            }
        }
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start.ticks())))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        let ticks = i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX);
        self.0.fetch_add(ticks, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.ticks(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_ticks(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod short_format_tests {
    use super::Timestamp;
    use std::fmt;

    struct Any(Timestamp);
    impl fmt::Display for Any {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.format_any(f)
        }
    }

    #[test]
    fn the_short_format_writes_what_the_general_one_does() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut ticks = vec![0, 1, 9_999_999, 10_000_000, -1, 17_000_000_000_000_000];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // years 1970 to about 2500, any fraction, and whole milliseconds
            let t = (x % 167_000_000_000_000_000) as i64;
            ticks.push(t);
            ticks.push(t - t % 10_000);
        }
        for t in ticks {
            let ts = Timestamp::from_ticks(t);
            assert_eq!(ts.to_string(), Any(ts).to_string(), "{t}");
            let json = serde_json::to_string(&ts).unwrap();
            assert_eq!(json, format!("\"{}\"", Any(ts)), "{t}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_costs_nothing_and_order_is_by_ticks() {
        assert_eq!(std::mem::size_of::<Option<Timestamp>>(), 8);
        let ts = [i64::MIN + 1, -5, -1, 0, 1, 7, i64::MAX].map(Timestamp::from_ticks);
        for (a, b) in ts.iter().zip(ts.iter().skip(1)) {
            assert!(a < b, "{a:?} < {b:?}");
        }
        for t in ts {
            assert_eq!(Timestamp::from_ticks(t.ticks()), t);
        }
        assert_eq!(Timestamp::from_ticks(-5).ticks(), -5);
        assert_eq!(Timestamp::from_ticks(i64::MIN).ticks(), i64::MIN + 1);
        assert_eq!(Timestamp::default(), Timestamp::EPOCH);
        assert_eq!(Timestamp::EPOCH.ticks(), 0);
        assert_eq!(format!("{:?}", Timestamp::from_ticks(42)), "Timestamp(42)");
    }

    #[test]
    fn round_trips_reference_forms() {
        for s in [
            "2016-03-30T16:24:48.789Z",
            "2024-05-10T07:11:30.9707312Z",
            "1970-01-01T00:00:00.000Z",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "1969-12-31T23:59:59.500Z",
        ] {
            let t: Timestamp = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn lenient_inputs() {
        let never: Timestamp = "0001-01-01T00:00:00".parse().unwrap();
        assert_eq!(never, Timestamp::NEVER);
        // the reference's sample twin uses February 30th; it rolls over
        let t: Timestamp = "2015-02-30T16:24:48.789Z".parse().unwrap();
        assert_eq!(t.to_string(), "2015-03-02T16:24:48.789Z");
        let t: Timestamp = "2020-01-01T00:00:00.123456789Z".parse().unwrap();
        assert_eq!(t.to_string(), "2020-01-01T00:00:00.1234567Z");
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2020-13-01T00:00:00Z",
            "2020-01-01X00:00:00Z",
            "2020-01-01T00:00:00.Z",
            "2020-01-01T00:00:00+01:00",
            "20a0-01-01T00:00:00Z",
        ] {
            assert!(s.parse::<Timestamp>().is_err(), "{s}");
        }
    }

    #[test]
    fn arithmetic() {
        let t = Timestamp::from_unix_secs(10);
        assert_eq!(
            (t + std::time::Duration::from_millis(1500)).unix_millis(),
            11_500
        );
        assert_eq!(t.since(Timestamp::from_unix_secs(4)).as_secs(), 6);
        assert_eq!(Timestamp::from_unix_secs(4).since(t).as_secs(), 0);
    }
}
