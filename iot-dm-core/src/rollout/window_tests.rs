//! Maintenance windows: cron and weekly forms, time zones, DST, UTC fallback.

use jiff::tz::TimeZone;
use serde_json::json;

use super::test_util::*;
use super::window::{position, Position, Window};
use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn window(v: serde_json::Value) -> Window {
    Window::compile("w", &serde_json::from_value(v).unwrap()).unwrap()
}

fn next_open(w: &Window, zone: &str, t: &str) -> Position {
    position(
        std::slice::from_ref(w),
        &TimeZone::get(zone).unwrap(),
        ts(t),
    )
}

/// Checks where each time stands against `w` in `zone`.
fn expect(w: &Window, zone: &str, cases: &[(&str, Position)]) {
    for (t, want) in cases {
        assert_eq!(next_open(w, zone, t), *want, "{zone} at {t}");
    }
}

fn opens(t: &str) -> Position {
    Position::Closed { opens: Some(ts(t)) }
}

fn open_until(t: &str) -> Position {
    Position::Open { until: ts(t) }
}

#[test]
fn weekly_window_across_new_york_dst() {
    let w = window(
        json!({"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                          "startTime": "02:30", "durationMinutes": 60}),
    );
    let ny = "America/New_York";
    expect(
        &w,
        ny,
        &[
            // EST: 02:30 is 07:30Z
            ("2024-03-09T00:00:00Z", opens("2024-03-09T07:30:00Z")),
            ("2024-03-09T08:00:00Z", open_until("2024-03-09T08:30:00Z")),
            // 2024-03-10 02:30 does not exist in New York: it opens at 03:30 EDT, still 07:30Z
            ("2024-03-09T08:30:00Z", opens("2024-03-10T07:30:00Z")),
            // EDT: 02:30 is 06:30Z
            ("2024-03-10T08:31:00Z", opens("2024-03-11T06:30:00Z")),
        ],
    );
}

#[test]
fn weekly_window_across_berlin_dst_both_ways() {
    let w = window(
        json!({"daysOfWeek": ["Sunday", "MON"], "startTime": "02:30",
                          "durationMinutes": 30}),
    );
    let berlin = "Europe/Berlin";
    expect(
        &w,
        berlin,
        &[
            // 2024-03-31 (Sunday) 02:30 does not exist: it opens at 03:30 CEST, 01:30Z
            ("2024-03-27T12:00:00Z", opens("2024-03-31T01:30:00Z")),
            ("2024-03-31T02:00:00Z", opens("2024-04-01T00:30:00Z")),
            // 2024-10-27 (Sunday) 02:30 happens twice: the window opens at the first, 00:30Z
            ("2024-10-26T12:00:00Z", opens("2024-10-27T00:30:00Z")),
            ("2024-10-27T00:45:00Z", open_until("2024-10-27T01:00:00Z")),
            // Monday in winter: 02:30 CET is 01:30Z
            ("2024-10-27T01:00:00Z", opens("2024-10-28T01:30:00Z")),
        ],
    );
}

#[test]
fn cron_window_crossing_local_midnight() {
    // weekdays at 22:00 for two hours
    let w = window(json!({"cron": "0 22 * * 1-5", "durationMinutes": 120}));
    let berlin = "Europe/Berlin";
    expect(
        &w,
        berlin,
        &[
            // Friday 2024-03-01 22:00 CET = 21:00Z
            ("2024-03-01T22:30:00Z", open_until("2024-03-01T23:00:00Z")),
            // Saturday: the next is Monday
            ("2024-03-02T21:30:00Z", opens("2024-03-04T21:00:00Z")),
        ],
    );
    // New York: Friday 22:00 EST = Saturday 03:00Z, still open at 04:00Z (Saturday in UTC)
    let ny = "America/New_York";
    expect(
        &w,
        ny,
        &[("2024-03-02T04:00:00Z", open_until("2024-03-02T05:00:00Z"))],
    );
}

#[test]
fn cron_fields() {
    let w = window(json!({"cron": "*/15 9-17/4 * * *", "durationMinutes": 1}));
    let utc = "UTC";
    expect(
        &w,
        utc,
        &[
            ("2024-03-01T08:59:00Z", opens("2024-03-01T09:00:00Z")),
            ("2024-03-01T09:00:30Z", open_until("2024-03-01T09:01:00Z")),
            ("2024-03-01T09:01:00Z", opens("2024-03-01T09:15:00Z")),
            ("2024-03-01T09:46:00Z", opens("2024-03-01T13:00:00Z")),
            ("2024-03-01T17:46:00Z", opens("2024-03-02T09:00:00Z")),
        ],
    );
    // both day fields restricted: the 13th or a Friday; 7 is Sunday too
    let w = window(json!({"cron": "0 12 13 * 5", "durationMinutes": 5}));
    expect(
        &w,
        utc,
        &[
            ("2024-03-01T13:00:00Z", opens("2024-03-08T12:00:00Z")),
            ("2024-03-09T00:00:00Z", opens("2024-03-13T12:00:00Z")),
        ],
    );
    let w = window(json!({"cron": "5,10 0 * 2 7", "durationMinutes": 1}));
    expect(
        &w,
        utc,
        &[("2024-03-01T00:00:00Z", opens("2025-02-02T00:05:00Z"))],
    );
    // February 29th, years ahead
    let w = window(json!({"cron": "0 0 29 2 *", "durationMinutes": 1}));
    expect(
        &w,
        utc,
        &[("2024-03-01T00:00:00Z", opens("2028-02-29T00:00:00Z"))],
    );
    for bad in [
        "* * * *",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
    ] {
        let p = serde_json::from_value(json!({"cron": bad, "durationMinutes": 5})).unwrap();
        let err = Window::compile("w", &p).unwrap_err();
        assert!(err.to_string().starts_with("w.cron"), "{bad}: {err}");
    }
}

#[test]
fn planner_waits_for_windows_in_each_zone_and_counts_utc_fallbacks() {
    let p = json!({"maintenanceWindows": [
        {"daysOfWeek": ["sat"], "startTime": "02:30", "durationMinutes": 60},
        {"cron": "30 2 * * 0", "durationMinutes": 60}]});
    let start = ts("2024-03-09T00:00:00Z"); // a Saturday
    let mut r = Rollout::new(policy(p), None, start).unwrap();
    let tz = |i, zone: &str| twin(i, json!({"location": {"timezone": zone}}), json!({}));
    let devices = [
        tz(0, "Europe/Berlin"),
        tz(1, "America/New_York"),
        tz(2, "Mars/Olympus"),
        twin(3, json!({}), json!({})),
    ];
    r.add_devices(&devices, start).unwrap();
    let s = r.stats();
    assert_eq!((s.waiting_for_window, s.utc_fallback), (4, 2));
    assert!(r.device(DeviceIndex(2)).unwrap().utc_fallback);
    assert!(!r.device(DeviceIndex(1)).unwrap().utc_fallback);
    assert!(r.poll_start(start, 10).is_empty());
    let mut seen = Vec::new();
    while let Some(now) = r.next_wakeup() {
        for s in r.poll_start(now, 10) {
            seen.push((s.device.0, now.to_string()));
            r.on_outcome(s.device, s.attempt, Outcome::Succeeded, now)
                .unwrap();
        }
    }
    assert_eq!(
        seen,
        [
            (0, "2024-03-09T01:30:00.000Z".to_string()),
            (2, "2024-03-09T02:30:00.000Z".to_string()),
            (3, "2024-03-09T02:30:00.000Z".to_string()),
            (1, "2024-03-09T07:30:00.000Z".to_string()),
        ]
    );
    // a twin change gives the fallback device a real zone
    r.on_twin_changed(
        DeviceIndex(2),
        &tz(2, "Asia/Tokyo"),
        ts("2024-03-10T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(r.stats().utc_fallback, 1);
}

#[test]
fn a_device_delayed_past_its_window_waits_for_the_next() {
    let p = json!({"rate": {"maxPerMinute": 1}, "timeZonePath": "properties.reported.tz",
        "maintenanceWindows": [{"cron": "0 3 * * *", "durationMinutes": 1}]});
    let start = ts("2024-03-09T00:00:00Z");
    let mut r = Rollout::new(policy(p), Some(ts("2024-03-11T00:00:00Z")), start).unwrap();
    let dev = |i| twin(i, json!({}), json!({"tz": "Europe/Berlin"}));
    r.add_devices(&[dev(0), dev(1)], start).unwrap();
    assert_eq!(r.next_window_opening(), Some(ts("2024-03-09T02:00:00Z")));
    let now = r.next_wakeup().unwrap();
    assert_eq!(r.poll_start(now, 10).len(), 1);
    // the rate holds the second device past the one-minute window
    assert_eq!(r.next_wakeup(), Some(ts("2024-03-09T02:01:00Z")));
    assert!(r.poll_start(ts("2024-03-09T02:01:00Z"), 10).is_empty());
    assert_eq!(
        r.device(DeviceIndex(1)).unwrap().state,
        DeviceState::WaitingForWindow
    );
    assert_eq!(r.next_window_opening(), Some(ts("2024-03-10T02:00:00Z")));
    assert_eq!(r.poll_start(ts("2024-03-10T02:00:00Z"), 10).len(), 1);
    // the deadline fails devices whose window never came
    let mut r2 = Rollout::new(r.policy().clone(), Some(ts("2024-03-09T01:00:00Z")), start).unwrap();
    r2.add_device(&dev(0), start).unwrap();
    r2.poll_timers(ts("2024-03-09T01:00:00Z"));
    assert_eq!(
        r2.device(DeviceIndex(0)).unwrap().reason,
        Some(FailureReason::WindowNotOpen)
    );
}
