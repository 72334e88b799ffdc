//! Configurations with a rollout policy, on an in-memory hub with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use iot_dm_core::alert::AlertState;
use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::configuration::Configuration;
use iot_dm_core::twin::TwinPatch;

use crate::api::prelude::*;
use crate::hub::{DeviceSpec, Hub};

/// Monday 2024-01-01 10:00 UTC.
fn t0() -> Timestamp {
    Timestamp::from_unix_secs(1_704_103_200)
}

async fn hub_with(n: usize, twin: Value) -> (Hub, ManualClock) {
    let clock = ManualClock::new(t0());
    let hub = Hub::builder()
        .clock(Arc::new(clock.clone()))
        .open()
        .await
        .unwrap();
    for i in 0..n {
        add(&hub, &format!("d{i}"), twin.clone()).await;
    }
    (hub, clock)
}

async fn add(hub: &Hub, id: &str, twin: Value) {
    hub.create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
    let patch: TwinPatch = serde_json::from_value(twin).unwrap();
    hub.update_twin(id, &patch, None).await.unwrap();
}

async fn report(hub: &Hub, id: &str, reported: Value) {
    hub.patch_reported(id, &reported).await.unwrap();
}

fn paced(policy: Value) -> Configuration {
    Configuration::from_json(&json!({
        "id": "fw", "targetCondition": "tags.model = 'x'", "priority": 1,
        "content": {"deviceContent": {"properties.desired.firmware": "2.0"}},
        "metrics": {"queries": {"failed":
            "SELECT deviceId FROM devices WHERE properties.reported.update = 'failed'"}},
        "rolloutPolicy": policy,
    }))
    .unwrap()
}

/// Waits (bounded) until the configuration satisfies `ok`, and returns it.
async fn until(hub: &Hub, ok: impl Fn(&Configuration) -> bool) -> Configuration {
    let mut last = None;
    for _ in 0..300 {
        let c = hub.get_configuration("fw").await.unwrap();
        if ok(&c) {
            return c;
        }
        last = Some(c);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached: {:?}", last.map(|c| c.to_json()));
}

fn applied(c: &Configuration) -> u64 {
    c.system_metrics.results["appliedCount"]
}

fn desired_fw(hub: &Hub, id: &str) -> Option<Value> {
    hub.get_twin(id)
        .unwrap()
        .desired()
        .doc()
        .to_value()
        .get("firmware")
        .cloned()
}

#[tokio::test]
async fn the_rate_admits_so_many_twins_a_minute_and_the_rest_stay_targeted() {
    let (hub, clock) = hub_with(5, json!({"tags": {"model": "x"}})).await;
    hub.put_configuration(&paced(json!({"rate": {"maxPerMinute": 2}})), None)
        .await
        .unwrap();
    let c = until(&hub, |c| applied(c) == 2).await;
    assert_eq!(c.system_metrics.results["targetedCount"], 5);
    let status = c.rollout_status.clone().unwrap();
    assert_eq!(
        (status.state.as_str(), status.admitted, status.pending),
        ("running", 2, 3)
    );
    let held: Vec<String> = (0..5)
        .map(|i| format!("d{i}"))
        .filter(|id| desired_fw(&hub, id).is_none())
        .collect();
    assert_eq!(held.len(), 3);
    let twin = hub.get_twin(&held[0]).unwrap();
    assert_eq!(
        twin.configurations().to_value(),
        json!({"fw": {"status": "targeted"}})
    );
    // nothing more within the minute
    clock.advance(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(applied(&hub.get_configuration("fw").await.unwrap()), 2);
    clock.advance(Duration::from_secs(31));
    until(&hub, |c| applied(c) == 4).await;
    clock.advance(Duration::from_secs(60));
    let c = until(&hub, |c| applied(c) == 5).await;
    assert_eq!(c.rollout_status.unwrap().pending, 0);
    for i in 0..5 {
        assert_eq!(desired_fw(&hub, &format!("d{i}")), Some(json!("2.0")));
    }
}

#[tokio::test]
async fn a_gated_twin_is_admitted_once_its_gate_holds() {
    let (hub, _clock) = hub_with(2, json!({"tags": {"model": "x"}})).await;
    report(&hub, "d0", json!({"battery": 80})).await;
    report(&hub, "d1", json!({"battery": 10})).await;
    hub.put_configuration(
        &paced(json!({"gate": "properties.reported.battery > 30"})),
        None,
    )
    .await
    .unwrap();
    let c = until(&hub, |c| applied(c) == 1).await;
    assert_eq!(c.rollout_status.unwrap().gated, 1);
    assert_eq!(desired_fw(&hub, "d1"), None);
    report(&hub, "d1", json!({"battery": 90})).await;
    until(&hub, |c| applied(c) == 2).await;
    assert_eq!(desired_fw(&hub, "d1"), Some(json!("2.0")));
}

#[tokio::test]
async fn a_twin_outside_its_window_waits_in_its_own_time_zone() {
    // 10:00 UTC is 19:00 in Tokyo: a 09:00-12:00 window is open in London, shut in Tokyo
    let (hub, clock) = hub_with(0, json!({})).await;
    add(
        &hub,
        "london",
        json!({"tags": {"model": "x", "location": {"timezone": "Europe/London"}}}),
    )
    .await;
    add(
        &hub,
        "tokyo",
        json!({"tags": {"model": "x", "location": {"timezone": "Asia/Tokyo"}}}),
    )
    .await;
    let window = json!({"maintenanceWindows": [
        {"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
         "startTime": "09:00", "durationMinutes": 180}]});
    hub.put_configuration(&paced(window), None).await.unwrap();
    let c = until(&hub, |c| applied(c) == 1).await;
    assert_eq!(c.rollout_status.unwrap().waiting_for_window, 1);
    assert_eq!(desired_fw(&hub, "london"), Some(json!("2.0")));
    assert_eq!(desired_fw(&hub, "tokyo"), None);
    // 09:00 in Tokyo is 00:00 UTC the next day
    clock.set(Timestamp::from_unix_secs(1_704_103_200 + 14 * 3600 + 60));
    until(&hub, |c| applied(c) == 2).await;
    assert_eq!(desired_fw(&hub, "tokyo"), Some(json!("2.0")));
}

#[tokio::test]
async fn a_metric_abort_pauses_raises_an_alert_and_a_resume_clears_it() {
    let (hub, _clock) = hub_with(4, json!({"tags": {"model": "x"}})).await;
    let policy = json!({"abort": {"criteria": [
        {"metric": "failed", "thresholdPercentage": 40, "minAppliedDevices": 4}]}});
    hub.put_configuration(&paced(policy), None).await.unwrap();
    until(&hub, |c| applied(c) == 4).await;
    report(&hub, "d0", json!({"update": "failed"})).await;
    report(&hub, "d1", json!({"update": "failed"})).await;
    let c = until(&hub, |c| {
        c.rollout_status
            .as_ref()
            .is_some_and(|s| s.state == "aborted")
    })
    .await;
    let reason = c.rollout_status.unwrap().abort_reason.unwrap();
    assert!(
        reason.contains("failed") && reason.contains("2 of the 4"),
        "{reason}"
    );
    let alerts = hub.alerts(Some(AlertState::Active));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule_id, "rollout.fw");
    assert_eq!(
        (
            alerts[0].raised_counts.matching,
            alerts[0].raised_counts.scope
        ),
        (2, 4)
    );
    // a new twin in the target waits while the rollout is aborted
    add(&hub, "d4", json!({"tags": {"model": "x"}})).await;
    let c = until(&hub, |c| c.system_metrics.results["targetedCount"] == 5).await;
    assert_eq!(applied(&c), 4);
    assert_eq!(desired_fw(&hub, "d4"), None);
    // an operator resumes: the alert clears and the new twin is admitted (2 of 5 is 40%)
    let resumed = hub.resume_configuration("fw").await.unwrap();
    assert_ne!(resumed.rollout_status.unwrap().state, "aborted");
    until(&hub, |c| applied(c) == 5).await;
    assert!(hub.alerts(Some(AlertState::Active)).is_empty());
    assert_eq!(hub.alerts(Some(AlertState::Cleared)).len(), 1);
}

#[tokio::test]
async fn pause_holds_new_twins_and_a_configuration_without_a_policy_is_refused() {
    let (hub, _clock) = hub_with(1, json!({"tags": {"model": "x"}})).await;
    hub.put_configuration(&paced(json!({})), None)
        .await
        .unwrap();
    until(&hub, |c| applied(c) == 1).await;
    let paused = hub.pause_configuration("fw").await.unwrap();
    assert_eq!(paused.rollout_status.unwrap().state, "paused");
    add(&hub, "d1", json!({"tags": {"model": "x"}})).await;
    until(&hub, |c| c.system_metrics.results["targetedCount"] == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(desired_fw(&hub, "d1"), None);
    hub.resume_configuration("fw").await.unwrap();
    until(&hub, |c| applied(c) == 2).await;

    let plain = Configuration::from_json(&json!({
        "id": "plain", "targetCondition": "*",
        "content": {"deviceContent": {"properties.desired.a": 1}},
    }))
    .unwrap();
    hub.put_configuration(&plain, None).await.unwrap();
    let e = hub.pause_configuration("plain").await.unwrap_err();
    assert!(e.to_string().contains("rolloutPolicy"), "{e}");
    let e = hub.pause_configuration("missing").await.unwrap_err();
    assert!(
        matches!(e, crate::HubError::ConfigurationNotFound { .. }),
        "{e}"
    );
}
