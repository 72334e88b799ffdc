//! Jobs under a rollout policy, on a manual clock, with devices connected through the
//! in-memory link: maintenance windows in several time zones, an abort after failures, a
//! success condition on the twin, and in-progress timeouts with retries.

#![allow(clippy::unwrap_used)]

mod jobs_support;

use std::time::Duration;

use serde_json::json;

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::job::{DeviceJob, DeviceJobStatus, JobRequest, JobStatus};
use iot_dm_service::api::prelude::*;

use jobs_support::*;

/// The record of `device` in job `id`.
async fn record(hub: &iot_dm_service::Hub, id: &str, device: &str) -> DeviceJob {
    records(hub, id)
        .await
        .into_iter()
        .find(|r| r.device_id.as_str() == device)
        .unwrap()
}

async fn status_of(hub: &iot_dm_service::Hub, id: &str, device: &str) -> DeviceJobStatus {
    record(hub, id, device).await.status
}

/// `T0` is Tuesday 2023-11-14 22:13:20 UTC: 23:13 in Berlin, 17:13 in New York. A daily
/// window from 23:00 to midnight local time is open in Berlin, opens at 23:00 UTC for a
/// device without a time zone (UTC, as is one with an unknown zone), and at 04:00 UTC in New
/// York. Each device starts only inside its own window.
#[tokio::test]
async fn maintenance_windows_hold_each_device_to_its_own_local_time() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = hub_on(Some(&clock), None).await;
    let zones = ["Europe/Berlin", "America/New_York", "", "Mars/Olympus_Mons"];
    devices(&hub, 4, |i| match zones[i] {
        "" => json!({}),
        zone => json!({"location": {"timezone": zone}}),
    })
    .await;
    let calls = Calls::default();
    for i in 0..4 {
        connect(&hub, &format!("d{i:02}"), &calls, true).await;
    }
    let every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    hub.create_job(&method_job(
        "windows",
        "*",
        json!({"maxExecutionTimeInSeconds": 86_400, "rolloutPolicy": {"maintenanceWindows": [
            {"daysOfWeek": every_day, "startTime": "23:00", "durationMinutes": 60}
        ]}}),
    ))
    .await
    .unwrap();

    // Berlin is inside its window; the others wait, recorded as scheduled
    wait_for(|| async { calls.of("d00") == 1 }).await;
    wait_for(|| async { status_of(&hub, "windows", "d01").await == DeviceJobStatus::Scheduled })
        .await;
    assert_eq!(
        status_of(&hub, "windows", "d02").await,
        DeviceJobStatus::Scheduled
    );
    assert_eq!(
        (calls.of("d01"), calls.of("d02"), calls.of("d03")),
        (0, 0, 0)
    );
    // the job says how many wait for a window, and that two have no readable time zone
    let job = hub.get_job("windows").await.unwrap();
    let held = job.rollout_statistics.expect("rolloutStatistics");
    assert_eq!(
        (
            held.waiting_for_window_count,
            held.gated_count,
            held.utc_fallback_count
        ),
        (3, 0, 2),
        "{job:?}"
    );

    // 23:01 UTC: the two UTC devices open, New York (18:01) still waits
    clock.advance(Duration::from_secs(2_800 + 60));
    wait_for(|| async { calls.of("d02") == 1 && calls.of("d03") == 1 }).await;
    assert_eq!(calls.of("d01"), 0, "New York started outside its window");

    // 04:01 UTC: 23:01 in New York
    clock.advance(Duration::from_secs(18_000));
    let done = ended(&hub, "windows").await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let recs = consistent(&hub, &done).await;
    assert!(recs.iter().all(|r| r.status == DeviceJobStatus::Completed));
    assert_eq!(calls.total(), 4, "each device called once");
}

/// Two of the first devices fail and the abort criterion (half of at least two finished)
/// holds: the job fails with `RolloutAborted`, says why, and no other device is called.
#[tokio::test]
async fn an_abort_after_failures_leaves_the_remaining_devices_untouched() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = hub_on(Some(&clock), None).await;
    devices(&hub, 8, |_| json!({})).await;
    let calls = Calls::default();
    for i in 0..8 {
        let status = if i < 2 { 500 } else { 200 };
        connect_answering(&hub, &format!("d{i:02}"), &calls, Some(status)).await;
    }
    hub.create_job(&method_job(
        "abort",
        "*",
        json!({"rolloutPolicy": {
            "rate": {"maxPerMinute": 2},
            "abort": {"criteria": [{"failureType": "failed", "thresholdPercentage": 50, "minFinishedDevices": 2}]}
        }}),
    ))
    .await
    .unwrap();
    let done = ended(&hub, "abort").await;
    assert_eq!(done.status, JobStatus::Failed, "{done:?}");
    assert_eq!(done.failure_reason.as_deref(), Some("RolloutAborted"));
    assert!(done
        .status_message
        .as_deref()
        .is_some_and(|m| m.contains("abort")));
    // time passes: nothing more starts
    clock.advance(Duration::from_secs(600));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let recs = consistent(&hub, &hub.get_job("abort").await.unwrap()).await;
    assert_eq!((calls.of("d00"), calls.of("d01")), (1, 1));
    assert_eq!(calls.total(), 2, "devices after the abort were called");
    for r in &recs[..2] {
        assert_eq!(r.status, DeviceJobStatus::Failed);
        assert_eq!(r.error.as_ref().unwrap().code, "DeviceMethodFailed");
    }
    for r in &recs[2..] {
        assert!(
            !matches!(
                r.status,
                DeviceJobStatus::Completed | DeviceJobStatus::Running
            ),
            "{r:?}"
        );
    }
}

/// With a success condition a 200 is not enough: a device completes once its twin says so,
/// and one whose twin never does fails with `SuccessConditionNotMet` after the timeout.
#[tokio::test]
async fn a_success_condition_on_the_twin_decides_what_done_means() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = hub_on(Some(&clock), None).await;
    devices(&hub, 2, |_| json!({})).await;
    let calls = Calls::default();
    for i in 0..2 {
        connect(&hub, &format!("d{i:02}"), &calls, true).await;
    }
    hub.create_job(&method_job(
        "verify",
        "*",
        json!({"rolloutPolicy": {
            "successCondition": "properties.reported.firmware.version = '2.1.0'",
            "successTimeoutSeconds": 60
        }}),
    ))
    .await
    .unwrap();
    wait_for(|| async { calls.of("d00") == 1 && calls.of("d01") == 1 }).await;
    // answered, not yet done
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(
        status_of(&hub, "verify", "d00").await,
        DeviceJobStatus::Completed
    );
    hub.patch_reported("d00", &json!({"firmware": {"version": "2.1.0"}}))
        .await
        .unwrap();
    wait_for(|| async { status_of(&hub, "verify", "d00").await == DeviceJobStatus::Completed })
        .await;
    clock.advance(Duration::from_secs(61));
    let done = ended(&hub, "verify").await;
    let recs = consistent(&hub, &done).await;
    assert_eq!(recs[0].status, DeviceJobStatus::Completed);
    assert_eq!(recs[1].status, DeviceJobStatus::Failed);
    assert_eq!(
        recs[1].error.as_ref().unwrap().code,
        "SuccessConditionNotMet"
    );
}

/// A device that takes a call and never answers times out after `inProgressTimeoutSeconds`
/// and is tried again as many times as `retries.timedOut` allows, then fails.
#[tokio::test]
async fn an_in_progress_timeout_is_retried_then_fails() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = hub_on(Some(&clock), None).await;
    devices(&hub, 2, |_| json!({})).await;
    let calls = Calls::default();
    connect(&hub, "d00", &calls, true).await;
    connect_answering(&hub, "d01", &calls, None).await;
    let request = JobRequest::from_json(&json!({
        "jobId": "retry", "type": "scheduleDeviceMethod", "queryCondition": "*",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": 300},
        "rolloutPolicy": {"timeout": {"inProgressTimeoutSeconds": 30}, "retries": {"timedOut": 1}}
    }))
    .unwrap();
    hub.create_job(&request).await.unwrap();
    wait_for(|| async { calls.of("d00") == 1 && calls.of("d01") == 1 }).await;
    clock.advance(Duration::from_secs(31));
    wait_for(|| async { calls.of("d01") == 2 }).await;
    clock.advance(Duration::from_secs(31));
    let done = ended(&hub, "retry").await;
    let recs = consistent(&hub, &done).await;
    assert_eq!(recs[0].status, DeviceJobStatus::Completed);
    assert_eq!(recs[1].status, DeviceJobStatus::Failed, "{:?}", recs[1]);
    assert_eq!(recs[1].error.as_ref().unwrap().code, "InProgressTimeout");
    assert_eq!(calls.of("d01"), 2, "one retry, no more");
}
