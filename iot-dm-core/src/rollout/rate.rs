//! The rate rule (constant or exponential ramp) and the start-rate limiter: a one-minute token bucket whose tokens come back one minute after
//! they were spent.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::policy::{in_range, out_of_range, PolicyError, RatePolicy, MAX_RATE_PER_MINUTE};
use crate::clock::Timestamp;

/// Ticks in a minute.
const MINUTE: i64 = 60 * crate::clock::TICKS_PER_SEC;
/// Ticks in a second.
const SECOND: i64 = crate::clock::TICKS_PER_SEC;

/// The starts of the last minute, grouped by second.
///
/// The bucket holds one minute's worth of tokens (the rate per minute). A start spends one, and
/// the token comes back 60 s after the start. So in any 60 s interval `[a, a + 60 s)` at most
/// `rate` devices start, and a full bucket allows a burst of one minute's worth, never more.
/// Starts within the same second are kept as one entry stamped with the latest of them, so the
/// whole group's tokens come back 60 s after that latest start (a little late for the earlier
/// ones, never early); the state is at most 61 entries whatever the rate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Limiter {
    spent: VecDeque<(Timestamp, u32)>,
}

impl Limiter {
    /// Tokens spent and not yet back at `now`.
    fn in_window(&self, now: Timestamp) -> u64 {
        self.spent
            .iter()
            .filter(|(t, _)| t.ticks().saturating_add(MINUTE) > now.ticks())
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Forgets the starts whose tokens are back at `now`.
    fn expire(&mut self, now: Timestamp) {
        while let Some((t, _)) = self.spent.front() {
            if t.ticks().saturating_add(MINUTE) <= now.ticks() {
                self.spent.pop_front();
            } else {
                break;
            }
        }
    }

    /// Tokens available at `now` with `rate` tokens per minute.
    pub(crate) fn available(&mut self, now: Timestamp, rate: u64) -> u64 {
        self.expire(now);
        rate.saturating_sub(self.in_window(now))
    }

    /// Tokens available at `now` without changing anything.
    pub(crate) fn peek_available(&self, now: Timestamp, rate: u64) -> u64 {
        rate.saturating_sub(self.in_window(now))
    }

    /// Spends one token at `now`.
    pub(crate) fn spend(&mut self, now: Timestamp) {
        if let Some((t, n)) = self.spent.back_mut() {
            if now.ticks().div_euclid(SECOND) == t.ticks().div_euclid(SECOND) && *n < u32::MAX {
                *t = (*t).max(now);
                *n += 1;
                return;
            }
        }
        self.spent.push_back((now, 1));
    }

    /// When the next token comes back, if any is out.
    pub(crate) fn next_return(&self, now: Timestamp) -> Option<Timestamp> {
        self.spent
            .iter()
            .map(|(t, _)| Timestamp::from_ticks(t.ticks().saturating_add(MINUTE)))
            .find(|back| *back > now)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (Timestamp, u32)> + '_ {
        self.spent.iter().copied()
    }

    pub(crate) fn from_entries(entries: Vec<(Timestamp, u32)>) -> Limiter {
        let mut spent: Vec<_> = entries;
        spent.sort_by_key(|(t, _)| *t);
        Limiter {
            spent: spent.into(),
        }
    }
}

/// How the rate evolves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RateRule {
    Fixed(u64),
    Ramp {
        base: u64,
        factor: f64,
        every: u64,
        on_succeeded: bool,
        cap: u64,
    },
}

impl RateRule {
    /// The rate in devices per minute after `notified` starts and `succeeded` successes.
    pub(crate) fn per_minute(&self, notified: u64, succeeded: u64) -> u64 {
        match *self {
            RateRule::Fixed(n) => n,
            RateRule::Ramp {
                base,
                factor,
                every,
                on_succeeded,
                cap,
            } => {
                let count = if on_succeeded { succeeded } else { notified };
                let steps = i32::try_from(count / every.max(1)).unwrap_or(i32::MAX);
                let rate = base as f64 * factor.powi(steps);
                if rate.is_finite() && rate < cap as f64 {
                    (rate.floor() as u64).clamp(1, cap)
                } else {
                    cap
                }
            }
        }
    }
}

const RATE_LIMIT: &str = "1..=1000000";

impl RatePolicy {
    pub(crate) fn compile(&self) -> Result<RateRule, PolicyError> {
        const P: &str = "rolloutPolicy.rate";
        let max = self
            .max_per_minute
            .map(|v| {
                in_range(
                    &format!("{P}.maxPerMinute"),
                    v,
                    1,
                    MAX_RATE_PER_MINUTE,
                    RATE_LIMIT,
                )
            })
            .transpose()?;
        let ramp = self.base_rate_per_minute.is_some()
            || self.increment_factor.is_some()
            || self.rate_increase_criteria.is_some();
        if !ramp {
            return max
                .map(RateRule::Fixed)
                .ok_or_else(|| PolicyError::Missing {
                    field: format!("{P}.maxPerMinute"),
                    context: "when rolloutPolicy.rate is given without an exponential ramp",
                });
        }
        let missing = |name: &str| PolicyError::Missing {
            field: format!("{P}.{name}"),
            context: "for an exponential ramp",
        };
        let cap = max.unwrap_or(MAX_RATE_PER_MINUTE);
        let base = self
            .base_rate_per_minute
            .ok_or_else(|| missing("baseRatePerMinute"))?;
        let base = in_range(
            &format!("{P}.baseRatePerMinute"),
            base,
            1,
            cap,
            "1..=maxPerMinute",
        )?;
        let factor = self
            .increment_factor
            .ok_or_else(|| missing("incrementFactor"))?;
        if !(factor.is_finite() && factor > 1.0 && factor <= 5.0) {
            return Err(out_of_range(
                format!("{P}.incrementFactor"),
                "more than 1 and at most 5",
            ));
        }
        let criteria = self
            .rate_increase_criteria
            .as_ref()
            .ok_or_else(|| missing("rateIncreaseCriteria"))?;
        let c = format!("{P}.rateIncreaseCriteria");
        let (every, on_succeeded, name) = match (
            criteria.number_of_notified_devices,
            criteria.number_of_succeeded_devices,
        ) {
            (Some(n), None) => (n, false, "numberOfNotifiedDevices"),
            (None, Some(n)) => (n, true, "numberOfSucceededDevices"),
            (None, None) => {
                return Err(PolicyError::Missing {
                    field: c,
                    context: "to hold numberOfNotifiedDevices or numberOfSucceededDevices",
                })
            }
            (Some(_), Some(_)) => {
                return Err(PolicyError::Conflict {
                    field: c,
                    reason: "numberOfNotifiedDevices and numberOfSucceededDevices are exclusive",
                })
            }
        };
        let every = in_range(
            &format!("{c}.{name}"),
            every,
            1,
            MAX_RATE_PER_MINUTE,
            RATE_LIMIT,
        )?;
        Ok(RateRule::Ramp {
            base,
            factor,
            every,
            on_succeeded,
            cap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_back_a_minute_after_use() {
        let mut l = Limiter::default();
        let t0 = Timestamp::from_unix_secs(1000);
        assert_eq!(l.available(t0, 3), 3);
        l.spend(t0);
        l.spend(t0);
        assert_eq!(l.available(t0, 3), 1);
        let t1 = Timestamp::from_unix_secs(1030);
        l.spend(t1);
        assert_eq!(l.available(t1, 3), 0);
        assert_eq!(l.next_return(t1), Some(Timestamp::from_unix_secs(1060)));
        assert_eq!(l.available(Timestamp::from_unix_secs(1059), 3), 0);
        assert_eq!(l.available(Timestamp::from_unix_secs(1060), 3), 2);
        assert_eq!(l.available(Timestamp::from_unix_secs(1090), 3), 3);
        assert_eq!(l.entries().count(), 0);
    }

    #[test]
    fn one_entry_per_second() {
        let mut l = Limiter::default();
        for ms in 0..1000 {
            l.spend(Timestamp::from_unix_millis(5_000 + ms));
        }
        assert_eq!(l.entries().count(), 1);
        // the whole group comes back a minute after its latest start
        let late = Timestamp::from_unix_millis(65_000);
        assert_eq!(l.peek_available(late, 1000), 0);
        assert_eq!(
            l.peek_available(Timestamp::from_unix_millis(65_999), 1000),
            1000
        );
    }
}
