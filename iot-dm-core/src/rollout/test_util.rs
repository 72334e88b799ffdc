//! Helpers shared by the rollout tests.

use serde_json::{json, Value};

use super::*;
use crate::clock::Timestamp;

/// 2024-03-01T00:00:00Z, a Friday.
pub(crate) const T0_SECS: i64 = 1_709_251_200;

/// `secs` after [`T0_SECS`].
pub(crate) fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(T0_SECS + secs)
}

pub(crate) fn t0() -> Timestamp {
    at(0)
}

/// A device twin `d{i}` with `tags` and reported `props`.
pub(crate) fn twin(i: usize, tags: Value, reported: Value) -> Twin {
    serde_json::from_value(json!({
        "deviceId": format!("d{i}"),
        "tags": tags,
        "properties": {"reported": reported},
    }))
    .unwrap()
}

/// `n` plain twins.
pub(crate) fn twins(n: usize) -> Vec<Twin> {
    (0..n).map(|i| twin(i, json!({}), json!({}))).collect()
}

pub(crate) fn policy(v: Value) -> RolloutPolicy {
    serde_json::from_value(v).unwrap()
}

/// A rollout of `n` plain devices created at t0.
pub(crate) fn plan(p: Value, n: usize) -> Rollout {
    let mut r = Rollout::new(policy(p), None, t0()).unwrap();
    r.add_devices(&twins(n), t0()).unwrap();
    r
}

/// All changes so far.
pub(crate) fn drain(r: &mut Rollout) -> Vec<Change> {
    std::iter::from_fn(|| r.poll_change()).collect()
}

/// Every state count adds up to the total, and `device()` agrees with `stats()`.
pub(crate) fn assert_conserved(r: &Rollout) {
    let s = r.stats();
    let sum = s.pending
        + s.waiting_for_window
        + s.gated
        + s.running
        + s.verifying
        + s.succeeded
        + s.failed
        + s.timed_out
        + s.canceled;
    assert_eq!(sum, s.total, "{s:?}");
    let running = (0..r.len())
        .filter(|i| r.device(DeviceIndex(*i as u32)).unwrap().state == DeviceState::Running)
        .count() as u64;
    assert_eq!(running, s.running);
}

/// The most starts in any half-open 60 s interval of `times` (sorted).
pub(crate) fn max_per_minute(times: &[Timestamp]) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi].ticks() - times[lo].ticks() >= 60 * crate::clock::TICKS_PER_SEC {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
