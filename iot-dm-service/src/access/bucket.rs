//! [`TokenBucket`]: the per-policy rate limiter.

use std::sync::Mutex;
use std::time::Duration;

use iot_dm_core::clock::Timestamp;

use super::RateLimit;

/// A token bucket: starts full with `burst` tokens, gains `per_second` tokens a second up to
/// `burst`, and each request takes one. Time comes from the caller (the hub's clock), so tests
/// move it by hand. The state sits behind a mutex held for a few arithmetic operations.
///
/// ```
/// use std::time::Duration;
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_service::access::{RateLimit, TokenBucket};
/// let t0 = Timestamp::from_unix_secs(1_700_000_000);
/// let bucket = TokenBucket::new(RateLimit { per_second: 1, burst: 2 }, t0);
/// assert!(bucket.try_acquire(t0).is_ok());
/// assert!(bucket.try_acquire(t0).is_ok());
/// assert_eq!(bucket.try_acquire(t0), Err(Duration::from_secs(1)));
/// assert!(bucket.try_acquire(t0 + Duration::from_secs(1)).is_ok());
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Tokens, in millionths.
    micros: u64,
    last: Timestamp,
}

const MICRO: u64 = 1_000_000;

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Timestamp) -> TokenBucket {
        TokenBucket {
            limit,
            state: Mutex::new(State {
                micros: u64::from(limit.burst.max(1)) * MICRO,
                last: now,
            }),
        }
    }

    /// The limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_acquire(&self, now: Timestamp) -> Result<(), Duration> {
        let per_second = u64::from(self.limit.per_second.max(1));
        let capacity = u64::from(self.limit.burst.max(1)) * MICRO;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.since(state.last);
        if now > state.last {
            state.last = now;
        }
        // micro-tokens gained: elapsed_us * per_second (saturating; the bucket caps anyway)
        let gained = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(per_second);
        state.micros = state.micros.saturating_add(gained).min(capacity);
        if state.micros >= MICRO {
            state.micros -= MICRO;
            Ok(())
        } else {
            let missing = MICRO - state.micros;
            Err(Duration::from_micros(missing.div_ceil(per_second)))
        }
    }

    /// Whole tokens in the bucket at `now` (without taking any).
    pub fn available(&self, now: Timestamp) -> u64 {
        let per_second = u64::from(self.limit.per_second.max(1));
        let capacity = u64::from(self.limit.burst.max(1)) * MICRO;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let gained = u64::try_from(now.since(state.last).as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(per_second);
        state.micros.saturating_add(gained).min(capacity) / MICRO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

    #[test]
    fn burst_then_refill_at_the_rate() {
        let bucket = TokenBucket::new(
            RateLimit {
                per_second: 10,
                burst: 5,
            },
            T0,
        );
        for _ in 0..5 {
            bucket.try_acquire(T0).unwrap();
        }
        assert_eq!(bucket.try_acquire(T0), Err(Duration::from_millis(100)));
        // 50 ms: half a token
        let t = T0 + Duration::from_millis(50);
        assert_eq!(bucket.try_acquire(t), Err(Duration::from_millis(50)));
        let t = T0 + Duration::from_millis(100);
        bucket.try_acquire(t).unwrap();
        assert!(bucket.try_acquire(t).is_err());
        // a long pause refills only up to the burst
        let t = T0 + Duration::from_secs(3600);
        assert_eq!(bucket.available(t), 5);
        for _ in 0..5 {
            bucket.try_acquire(t).unwrap();
        }
        assert!(bucket.try_acquire(t).is_err());
    }

    #[test]
    fn a_clock_going_back_gains_nothing() {
        let bucket = TokenBucket::new(
            RateLimit {
                per_second: 1,
                burst: 1,
            },
            T0,
        );
        bucket.try_acquire(T0).unwrap();
        let earlier = Timestamp::from_unix_secs(1_600_000_000);
        assert!(bucket.try_acquire(earlier).is_err());
        assert!(bucket.try_acquire(T0).is_err());
        bucket.try_acquire(T0 + Duration::from_secs(1)).unwrap();
    }
}
