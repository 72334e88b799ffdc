//! Scenario tests of the planner over virtual time.

use serde_json::json;

use super::test_util::*;
use super::*;

#[test]
fn a_device_costs_well_under_a_hundred_bytes() {
    let slot = std::mem::size_of::<Slot>();
    let queue_entry = std::mem::size_of::<u32>();
    let timer = std::mem::size_of::<Reverse<Timer>>();
    assert_eq!((slot, queue_entry, timer), (8, 4, 16));
    // worst case: the record, a queue or bucket entry, an in-progress and a success timer,
    // each collection at twice its length after growth
    let worst = slot + 2 * (queue_entry + 2 * timer);
    assert!(worst <= 100, "{worst}");
}

#[test]
fn rate_holds_over_ten_minutes_with_a_thousand_devices() {
    let mut r = plan(json!({"rate": {"maxPerMinute": 50}}), 1000);
    let mut times = Vec::new();
    let end = at(600);
    let mut now = t0();
    while now < end {
        for s in r.poll_start(now, 1000) {
            times.push(now);
            r.on_outcome(s.device, s.attempt, Outcome::Succeeded, now)
                .unwrap();
        }
        assert_conserved(&r);
        now = r.next_wakeup().unwrap();
    }
    assert_eq!(max_per_minute(&times), 50);
    // a minute's worth at once, then a minute's worth every minute
    assert_eq!(times.len(), 500);
    assert_eq!(times.iter().filter(|t| **t == t0()).count(), 50);
    assert_eq!(r.stats().pending, 500);
}

#[test]
fn rate_holds_when_polled_often_in_small_batches() {
    let mut r = plan(json!({"rate": {"maxPerMinute": 7}}), 100);
    let mut times = Vec::new();
    for step in 0..2000 {
        let now = Timestamp::from_unix_millis(T0_SECS * 1000 + step * 370);
        for s in r.poll_start(now, 2) {
            times.push(now);
            r.on_outcome(s.device, s.attempt, Outcome::Succeeded, now)
                .unwrap();
        }
    }
    assert_eq!(max_per_minute(&times), 7);
    // 740 s of polling: 7 per minute, a little less for grouping by second
    assert!(times.len() >= 80, "{}", times.len());
}

/// Starts per virtual minute when the driver follows `next_wakeup` for `minutes`.
fn starts_per_minute(r: &mut Rollout, minutes: i64, succeed: bool) -> Vec<usize> {
    let mut per = vec![0; minutes as usize];
    let mut now = t0();
    while now < at(minutes * 60) {
        for s in r.poll_start(now, usize::MAX) {
            per[(now.unix_secs() - T0_SECS) as usize / 60] += 1;
            if succeed {
                r.on_outcome(s.device, s.attempt, Outcome::Succeeded, now)
                    .unwrap();
            }
        }
        now = match r.next_wakeup() {
            Some(t) => t,
            None => break,
        };
    }
    per
}

#[test]
fn exponential_ramp_steps_by_notified_devices() {
    let mut r = plan(
        json!({"rate": {"baseRatePerMinute": 10, "incrementFactor": 2.0,
            "rateIncreaseCriteria": {"numberOfNotifiedDevices": 30}, "maxPerMinute": 80}}),
        1000,
    );
    // the rate doubles each time 30 more devices have started, up to the cap
    assert_eq!(
        starts_per_minute(&mut r, 6, false),
        [10, 10, 20, 40, 80, 80]
    );
    assert_eq!(r.stats().rate_per_minute, Some(80));
}

#[test]
fn exponential_ramp_by_succeeded_devices_waits_for_successes() {
    let ramp = json!({"rate": {"baseRatePerMinute": 5, "incrementFactor": 2.0,
        "rateIncreaseCriteria": {"numberOfSucceededDevices": 10}}});
    let mut r = plan(ramp.clone(), 1000);
    assert_eq!(starts_per_minute(&mut r, 3, false), [5, 5, 5]);
    let mut r = plan(ramp, 1000);
    // the 10th success in minute 1 doubles the rate at once: 5 more start that minute
    assert_eq!(starts_per_minute(&mut r, 2, true), [5, 10]);
    assert_eq!(r.stats().rate_per_minute, Some(10));
}

#[test]
fn abort_records_the_criterion_and_leaves_the_rest_untouched() {
    let mut r = plan(
        json!({"abort": {"criteria": [
            {"failureType": "timedOut", "thresholdPercentage": 1, "minFinishedDevices": 1},
            {"failureType": "failed", "thresholdPercentage": 30, "minFinishedDevices": 10}]}}),
        100,
    );
    let starts = r.poll_start(t0(), 20);
    assert_eq!(starts.len(), 20);
    let pattern = "SSSFFFFSSS";
    for (s, c) in starts.iter().zip(pattern.chars()) {
        let o = if c == 'S' {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        r.on_outcome(s.device, s.attempt, o, at(5)).unwrap();
    }
    let info = r.abort_info().cloned().unwrap();
    assert_eq!(info.criterion_index, 1);
    assert_eq!(
        (info.finished, info.succeeded, info.failed, info.timed_out),
        (10, 6, 4, 0)
    );
    assert_eq!(info.at, at(5));
    assert_eq!(r.status(), RolloutStatus::Aborted);
    // untouched devices never start
    assert!(r.poll_start(at(100), 100).is_empty());
    for i in 20..100 {
        let d = r.device(DeviceIndex(i)).unwrap();
        assert_eq!((d.state, d.attempt), (DeviceState::Canceled, 0));
    }
    // the ten in flight still finish, and are not retried
    for s in &starts[10..] {
        assert_eq!(
            r.on_outcome(s.device, 1, Outcome::Failed, at(6)),
            Ok(DeviceState::Failed)
        );
    }
    assert!(r.is_finished());
    assert_eq!(r.stats().canceled, 80);
    assert_conserved(&r);
}

#[test]
fn timeout_then_retry_then_timed_out() {
    let mut r = plan(
        json!({"timeout": {"inProgressTimeoutSeconds": 60}, "retries": {"timedOut": 1}}),
        1,
    );
    let s = r.poll_start(t0(), 10);
    assert_eq!(
        s,
        [Start {
            device: DeviceIndex(0),
            attempt: 1
        }]
    );
    assert_eq!(r.next_wakeup(), Some(at(60)));
    r.poll_timers(at(59));
    assert_eq!(
        r.device(DeviceIndex(0)).unwrap().state,
        DeviceState::Running
    );
    r.poll_timers(at(60));
    let d = r.device(DeviceIndex(0)).unwrap();
    assert_eq!((d.state, d.timeouts), (DeviceState::Pending, 1));
    assert_eq!(r.stats().retrying, 1);
    assert_eq!(
        drain(&mut r),
        [Change {
            device: DeviceIndex(0),
            attempt: 1,
            state: DeviceState::Pending,
            reason: Some(FailureReason::InProgressTimeout)
        }]
    );
    let s = r.poll_start(at(61), 10);
    assert_eq!(
        s,
        [Start {
            device: DeviceIndex(0),
            attempt: 2
        }]
    );
    // a late outcome of the first attempt is refused
    assert_eq!(
        r.on_outcome(DeviceIndex(0), 1, Outcome::Succeeded, at(62)),
        Err(RolloutError::StaleAttempt { got: 1, current: 2 })
    );
    r.poll_timers(at(200));
    let d = r.device(DeviceIndex(0)).unwrap();
    assert_eq!(
        (d.state, d.attempt, d.reason),
        (
            DeviceState::TimedOut,
            2,
            Some(FailureReason::InProgressTimeout)
        )
    );
    assert_eq!(d.state.device_job_status().as_str(), "failed");
    assert!(r.is_finished());
}

#[test]
fn failures_are_retried_up_to_the_limit() {
    let mut r = plan(json!({"retries": {"failed": 2}}), 2);
    let mut attempts = Vec::new();
    for step in 0..5 {
        for s in r.poll_start(at(step), 10) {
            attempts.push((s.device.0, s.attempt));
            r.on_outcome(s.device, s.attempt, Outcome::Failed, at(step))
                .unwrap();
        }
    }
    attempts.sort();
    assert_eq!(attempts, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]);
    assert_eq!(r.stats().failed, 2);
    assert_eq!(r.device(DeviceIndex(1)).unwrap().failures, 3);
}

#[test]
fn success_condition_met_or_timed_out() {
    let mut r = Rollout::new(
        policy(json!({"successCondition": "properties.reported.fw = '2.0'",
                      "successTimeoutSeconds": 120})),
        None,
        t0(),
    )
    .unwrap();
    let done = twin(9, json!({}), json!({"fw": "2.0"}));
    r.add_devices(&[twins(2), vec![done.clone()]].concat(), t0())
        .unwrap();
    let starts = r.poll_start(t0(), 10);
    for s in &starts {
        r.on_outcome(s.device, 1, Outcome::Succeeded, at(1))
            .unwrap();
    }
    // already up to date: done at once
    assert_eq!(
        r.device(DeviceIndex(2)).unwrap().state,
        DeviceState::Succeeded
    );
    assert_eq!(r.stats().verifying, 2);
    assert_eq!(
        DeviceState::Verifying.device_job_status(),
        DeviceJobStatus::Running
    );
    r.on_twin_changed(DeviceIndex(0), &done, at(30)).unwrap();
    assert_eq!(
        r.device(DeviceIndex(0)).unwrap().state,
        DeviceState::Succeeded
    );
    assert_eq!(r.next_wakeup(), Some(at(121)));
    r.poll_timers(at(121));
    let d = r.device(DeviceIndex(1)).unwrap();
    assert_eq!(
        (d.state, d.reason),
        (
            DeviceState::Failed,
            Some(FailureReason::SuccessConditionNotMet)
        )
    );
    let msg = r.failure_message(DeviceIndex(1)).unwrap();
    assert!(msg.contains("properties.reported.fw = '2.0'"), "{msg}");
    assert!(r.is_finished());
}

#[test]
fn gate_releases_devices_as_the_battery_rises() {
    let gate = "properties.reported.battery.level > 30 AND properties.reported.inUse = false";
    let battery = |i, level| {
        twin(
            i,
            json!({}),
            json!({"battery": {"level": level}, "inUse": false}),
        )
    };
    let mut r = Rollout::new(policy(json!({"gate": gate})), Some(at(3600)), t0()).unwrap();
    r.add_devices(&[battery(0, 10), battery(1, 20), battery(2, 50)], t0())
        .unwrap();
    let s = r.poll_start(t0(), 10);
    assert_eq!(
        s,
        [Start {
            device: DeviceIndex(2),
            attempt: 1
        }]
    );
    assert_eq!(r.stats().gated, 2);
    assert_eq!(DeviceState::Gated.device_job_status().as_str(), "scheduled");
    // nothing but input or the deadline changes a gated device
    assert_eq!(r.next_wakeup(), Some(at(3600)));
    r.on_twin_changed(DeviceIndex(1), &battery(1, 25), at(10))
        .unwrap();
    assert_eq!(r.stats().gated, 2);
    r.on_twin_changed(DeviceIndex(0), &battery(0, 40), at(20))
        .unwrap();
    assert_eq!(
        r.device(DeviceIndex(0)).unwrap().state,
        DeviceState::Pending
    );
    assert_eq!(
        r.poll_start(at(20), 10),
        [Start {
            device: DeviceIndex(0),
            attempt: 1
        }]
    );
    r.poll_timers(at(3600));
    let d = r.device(DeviceIndex(1)).unwrap();
    assert_eq!(
        (d.state, d.reason),
        (DeviceState::Failed, Some(FailureReason::GateNotSatisfied))
    );
    assert!(r.failure_message(DeviceIndex(1)).unwrap().contains(gate));
    // started ones time out at the deadline
    let d = r.device(DeviceIndex(0)).unwrap();
    assert_eq!(
        (d.state, d.reason),
        (DeviceState::TimedOut, Some(FailureReason::Deadline))
    );
    assert_eq!(r.status(), RolloutStatus::Completed);
}

#[test]
fn deadline_fails_devices_that_never_started() {
    let mut r = Rollout::new(
        policy(json!({"rate": {"maxPerMinute": 1}})),
        Some(at(90)),
        t0(),
    )
    .unwrap();
    r.add_devices(&twins(5), t0()).unwrap();
    let a = r.poll_start(t0(), 10);
    r.on_outcome(a[0].device, 1, Outcome::Succeeded, at(1))
        .unwrap();
    assert_eq!(r.poll_start(at(60), 10).len(), 1);
    r.poll_timers(at(90));
    let s = r.stats();
    assert_eq!((s.succeeded, s.timed_out, s.failed), (1, 1, 3));
    assert_eq!(
        r.device(DeviceIndex(4)).unwrap().reason,
        Some(FailureReason::NotStarted)
    );
    assert_eq!(drain(&mut r).len(), 5);
    assert!(r.poll_start(at(200), 10).is_empty());
    assert_eq!(r.next_wakeup(), None);
}

#[test]
fn pause_and_resume() {
    let mut r = plan(json!({}), 4);
    let a = r.poll_start(t0(), 1);
    r.pause();
    assert_eq!(r.status(), RolloutStatus::Paused);
    assert!(r.poll_start(at(1), 10).is_empty());
    assert_eq!(r.next_wakeup(), None);
    // in flight still finishes
    r.on_outcome(a[0].device, 1, Outcome::Succeeded, at(2))
        .unwrap();
    r.resume();
    assert_eq!(r.next_wakeup(), Some(at(2)));
    assert_eq!(r.poll_start(at(3), 10).len(), 3);
}

#[test]
fn canary_pauses_after_its_devices_finish() {
    let mut r = plan(
        json!({"pauseAfterDevices": 3, "retries": {"failed": 1}}),
        10,
    );
    let a = r.poll_start(t0(), 10);
    assert_eq!(a.len(), 3);
    assert!(r.poll_start(at(1), 10).is_empty());
    r.on_outcome(a[0].device, 1, Outcome::Succeeded, at(2))
        .unwrap();
    r.on_outcome(a[1].device, 1, Outcome::Succeeded, at(2))
        .unwrap();
    // a canary device's retry still starts
    r.on_outcome(a[2].device, 1, Outcome::Failed, at(3))
        .unwrap();
    assert_eq!(r.status(), RolloutStatus::Running);
    let b = r.poll_start(at(4), 10);
    assert_eq!(
        b,
        [Start {
            device: a[2].device,
            attempt: 2
        }]
    );
    r.on_outcome(b[0].device, 2, Outcome::Succeeded, at(5))
        .unwrap();
    assert_eq!(r.status(), RolloutStatus::CanaryHold);
    assert!(r.poll_start(at(6), 10).is_empty());
    assert_eq!(r.next_wakeup(), None);
    r.resume();
    assert_eq!(r.poll_start(at(7), 10).len(), 7);
}

#[test]
fn cancel_cancels_waiting_devices_only() {
    let mut r = plan(json!({"retries": {"failed": 3}}), 5);
    let a = r.poll_start(t0(), 2);
    r.cancel(at(1));
    assert_eq!(r.status(), RolloutStatus::Canceled);
    assert_eq!(r.stats().canceled, 3);
    assert_eq!(
        r.on_outcome(a[0].device, 1, Outcome::Failed, at(2)),
        Ok(DeviceState::Failed)
    );
    assert_eq!(
        r.on_outcome(a[1].device, 1, Outcome::Succeeded, at(2)),
        Ok(DeviceState::Succeeded)
    );
    assert!(r.is_finished());
    assert_eq!(r.add_device(&twins(1)[0], at(3)), Err(RolloutError::Closed));
    assert_eq!(
        r.on_outcome(DeviceIndex(9), 1, Outcome::Failed, at(3)),
        Err(RolloutError::UnknownDevice(DeviceIndex(9)))
    );
    assert_eq!(
        r.on_outcome(DeviceIndex(4), 0, Outcome::Failed, at(3)),
        Err(RolloutError::NotRunning(DeviceState::Canceled))
    );
}

#[test]
fn serialized_mid_rollout_the_rate_still_holds() {
    let p = json!({"rate": {"maxPerMinute": 10}, "timeout": {"inProgressTimeoutSeconds": 45},
                   "retries": {"timedOut": 1}});
    let mut r = plan(p, 100);
    let mut times = Vec::new();
    for s in r.poll_start(t0(), 100) {
        times.push(t0());
        if s.device.0 % 2 == 0 {
            r.on_outcome(s.device, 1, Outcome::Succeeded, at(5))
                .unwrap();
        }
    }
    let json = serde_json::to_string(&r).unwrap();
    let mut back: Rollout = serde_json::from_str(&json).unwrap();
    assert_eq!(back.stats(), r.stats());
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    assert_eq!(back.next_wakeup(), r.next_wakeup());
    // the restored plan keeps the bucket: nothing until the tokens come back
    assert!(back.poll_start(at(30), 100).is_empty());
    let mut now = at(30);
    while now < at(300) {
        for _ in back.poll_start(now, 100) {
            times.push(now);
        }
        now = back.next_wakeup().unwrap();
    }
    assert_eq!(max_per_minute(&times), 10);
    // the timers came along: the odd devices timed out and were retried first
    assert_eq!(back.device(DeviceIndex(1)).unwrap().attempt, 2);
    assert_eq!(back.stats().starts as usize, times.len());
}
