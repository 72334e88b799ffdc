//! Laws of the planner over random schedules and outcomes.

use proptest::prelude::*;
use serde_json::json;

use super::test_util::*;
use super::*;

/// One step of a driver: move time on, poll for starts, report outcomes of devices in flight.
#[derive(Debug, Clone)]
struct Step {
    dt_ms: i64,
    max: usize,
    /// Per in-flight device, in order: 0 no news, 1 succeeded, 2 failed, 3 timed out.
    outcomes: Vec<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (0i64..40_000, 0usize..6, prop::collection::vec(0u8..4, 0..8)).prop_map(
        |(dt_ms, max, outcomes)| Step {
            dt_ms,
            max,
            outcomes,
        },
    )
}

/// What a run saw.
#[derive(Debug, Default, PartialEq)]
struct Trace {
    starts: Vec<(Timestamp, Start)>,
    changes: Vec<Change>,
}

/// Runs `steps` on `r`; `check` sees the rollout after each step. `restore_at` swaps the
/// rollout for its serialized-and-restored copy before that step.
fn run(
    r: &mut Rollout,
    steps: &[Step],
    restore_at: Option<usize>,
    mut check: impl FnMut(&Rollout, &[Start]),
) -> Trace {
    let mut trace = Trace::default();
    let mut now = t0();
    let mut in_flight: Vec<Start> = Vec::new();
    for (k, s) in steps.iter().enumerate() {
        if restore_at == Some(k) {
            *r = serde_json::from_str(&serde_json::to_string(&*r).unwrap()).unwrap();
        }
        now = Timestamp::from_ticks(now.ticks() + s.dt_ms * 10_000);
        let started = r.poll_start(now, s.max);
        trace.starts.extend(started.iter().map(|st| (now, *st)));
        in_flight.extend(&started);
        let mut keep = Vec::new();
        for (j, st) in in_flight.drain(..).enumerate() {
            let o = match s.outcomes.get(j).copied().unwrap_or(0) {
                1 => Outcome::Succeeded,
                2 => Outcome::Failed,
                3 => Outcome::TimedOut,
                _ => {
                    keep.push(st);
                    continue;
                }
            };
            // an attempt that timed out meanwhile is refused; that is fine
            let _ = r.on_outcome(st.device, st.attempt, o, now);
        }
        in_flight = keep;
        trace.changes.extend(std::iter::from_fn(|| r.poll_change()));
        check(r, &started);
    }
    trace
}

/// A rate-limited rollout with retries and a timeout, its device count and a driver's steps.
#[derive(Debug, Clone)]
struct Scenario {
    rate: u64,
    retries: (u64, u64),
    policy: serde_json::Value,
    n: usize,
    steps: Vec<Step>,
}

fn scenario(max_devices: usize, max_steps: usize) -> impl Strategy<Value = Scenario> {
    (
        1u64..12,
        (0u64..3, 0u64..3),
        5u64..120,
        1..max_devices,
        prop::collection::vec(step(), 1..max_steps),
    )
        .prop_map(|(rate, retries, timeout, n, steps)| Scenario {
            rate,
            retries,
            policy: json!({"rate": {"maxPerMinute": rate},
                "retries": {"failed": retries.0, "timedOut": retries.1},
                "timeout": {"inProgressTimeoutSeconds": timeout}}),
            n,
            steps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The rate is never exceeded over any 60 s interval; every device is in exactly one state;
    /// attempts stay within the retries.
    #[test]
    fn rate_conservation_and_attempt_bounds(sc in scenario(60, 120)) {
        let Scenario { rate, retries, n, .. } = sc;
        let mut r = plan(sc.policy, n);
        let trace = run(&mut r, &sc.steps, None, |r, _| assert_conserved(r));
        let times: Vec<Timestamp> = trace.starts.iter().map(|(t, _)| *t).collect();
        prop_assert!(max_per_minute(&times) as u64 <= rate);
        for (_, s) in &trace.starts {
            prop_assert!(u64::from(s.attempt) <= 1 + retries.0 + retries.1);
        }
        let s = r.stats();
        prop_assert_eq!(s.starts as usize, trace.starts.len());
        prop_assert!(s.started_devices <= n as u64);
    }

    /// After an abort, no device that had not started ever starts, and the recorded counts
    /// satisfy the criterion that fired.
    #[test]
    fn abort_leaves_untouched_devices_untouched(
        threshold in 0u32..=100,
        min in 1u64..10,
        n in 1usize..60,
        steps in prop::collection::vec(step(), 1..100),
    ) {
        let p = json!({"abort": {"criteria": [{"failureType": "any",
            "thresholdPercentage": threshold, "minFinishedDevices": min}]},
            "retries": {"failed": 1}});
        let mut r = plan(p, n);
        let mut untouched: Option<Vec<DeviceIndex>> = None;
        run(&mut r, &steps, None, |r, started| {
            if let Some(u) = &untouched {
                for s in started {
                    assert!(!u.contains(&s.device), "{:?} started after the abort", s.device);
                }
            } else if r.abort_info().is_some() {
                untouched = Some(
                    (0..r.len() as u32)
                        .map(DeviceIndex)
                        .filter(|d| r.device(*d).unwrap().attempt == 0)
                        .collect(),
                );
            }
        });
        if let Some(info) = r.abort_info() {
            prop_assert_eq!(info.finished, info.succeeded + info.failed + info.timed_out);
            prop_assert!(info.finished >= min);
            prop_assert!((info.failed + info.timed_out) as f64 * 100.0 >= f64::from(threshold) * info.finished as f64);
            for d in untouched.unwrap_or_default() {
                let st = r.device(d).unwrap();
                prop_assert_eq!((st.state, st.attempt), (DeviceState::Canceled, 0));
            }
        }
    }

    /// A rollout serialized and restored at any point goes on exactly as if it never stopped.
    #[test]
    fn restore_changes_nothing(sc in scenario(40, 80), at_step in 0usize..80) {
        let mut a = plan(sc.policy.clone(), sc.n);
        let mut b = plan(sc.policy, sc.n);
        let ta = run(&mut a, &sc.steps, None, |_, _| ());
        let tb = run(&mut b, &sc.steps, Some(at_step), |_, _| ());
        prop_assert_eq!(ta, tb);
        prop_assert_eq!(a.stats(), b.stats());
    }
}
