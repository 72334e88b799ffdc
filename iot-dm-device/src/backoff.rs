//! Exponential reconnect back-off with jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delays between reconnect attempts: `min * 2^n`, capped at `max`, each drawn uniformly from
/// the upper half of that value ("equal jitter"), so devices that lost the hub together do not
/// come back together, and no delay is shorter than half the nominal one.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        // A per-process random seed without a dependency: std's hasher keys are random.
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Backoff::with_seed(min, max, h.finish())
    }

    pub(crate) fn with_seed(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The nominal (un-jittered) delay of the next attempt.
    fn nominal(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; each call moves one step up.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        let spread = u64::try_from((nominal - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            self.next_random() % (spread + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// Back to the first step (after a session that lasted).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// xorshift64*: plenty for jitter.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(8), 7);
        let nominal: Vec<u64> = (0..6)
            .map(|_| {
                let n = b.nominal().as_secs();
                b.next_delay();
                n
            })
            .collect();
        assert_eq!(nominal, [1, 2, 4, 8, 8, 8]);
        b.reset();
        assert_eq!(b.nominal(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::with_seed(Duration::from_secs(10), Duration::from_secs(10), 42);
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    proptest! {
        #[test]
        fn delays_stay_within_half_and_full_nominal(
            min_ms in 0u64..5_000, extra_ms in 0u64..120_000, seed: u64, steps in 1usize..40,
        ) {
            let min = Duration::from_millis(min_ms);
            let max = Duration::from_millis(min_ms + extra_ms);
            let mut b = Backoff::with_seed(min, max, seed);
            for _ in 0..steps {
                let nominal = b.nominal();
                let d = b.next_delay();
                prop_assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
                prop_assert!(d <= max);
            }
        }
    }
}
