//! Fault injection: a real `iot-dm hub` process with configurations under a rollout policy is
//! killed with SIGKILL and started again on its data. A paused rollout is still paused, an
//! aborted one still aborted with its alert active, the devices each had been given keep
//! their content and the others still wait; resuming goes on from there.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use hub_process::HubProcess;

fn show(hub: &HubProcess, id: &str) -> Value {
    hub.json(&["configuration", "show", id])
}

/// Polls (bounded) until configuration `id` satisfies `ok`; returns it.
fn until(hub: &HubProcess, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cfg = show(hub, id);
        if ok(&cfg) {
            return cfg;
        }
        assert!(Instant::now() < deadline, "not reached: {cfg}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn applied(cfg: &Value) -> u64 {
    cfg["systemMetrics"]["results"]["appliedCount"]
        .as_u64()
        .unwrap_or(0)
}

fn state(cfg: &Value) -> &str {
    cfg["rolloutStatus"]["state"].as_str().unwrap_or_default()
}

fn create(hub: &HubProcess, id: &str, model: &str, policy: Value) {
    hub.ok(&[
        "configuration",
        "create",
        id,
        "--target",
        &format!("tags.model = '{model}'"),
        "--content",
        &json!({ "properties.desired.firmware": id }).to_string(),
        "--metric",
        "failed=SELECT deviceId FROM devices WHERE properties.reported.update = 'failed'",
        "--rollout-policy",
        &policy.to_string(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_aborted_rollouts_and_their_alert_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = HubProcess::start(dir.path());
    for (id, model) in [
        ("a1", "a"),
        ("a2", "a"),
        ("a3", "a"),
        ("b1", "b"),
        ("b2", "b"),
    ] {
        hub.ok(&[
            "device",
            "create",
            id,
            "--tags",
            &json!({ "model": model }).to_string(),
        ]);
    }
    // "slow": one device a minute, paused after the first
    create(&hub, "slow", "a", json!({"rate": {"maxPerMinute": 1}}));
    until(&hub, "slow", |c| applied(c) == 1);
    let paused = hub.json(&["configuration", "pause", "slow"]);
    assert_eq!(state(&paused), "paused", "{paused}");
    // "guarded": aborts when more than 40% of the devices it was applied to failed
    create(
        &hub,
        "guarded",
        "b",
        json!({"abort": {"criteria": [{"metric": "failed", "thresholdPercentage": 40}]}}),
    );
    until(&hub, "guarded", |c| applied(c) == 2);
    let b1 = hub.connect("b1").await;
    b1.update_reported(json!({"update": "failed"}))
        .await
        .unwrap();
    let aborted = until(&hub, "guarded", |c| state(c) == "aborted");
    assert!(
        aborted["rolloutStatus"]["abortReason"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{aborted}"
    );
    let alerts = hub.json(&["alert", "list"]);
    assert!(alerts.to_string().contains("rollout.guarded"), "{alerts}");
    b1.close().await;

    let (mqtt, rest) = (hub.mqtt_port, hub.rest_port);
    hub.kill9();
    let hub = HubProcess::start_on(dir.path(), mqtt, rest);
    let slow = until(&hub, "slow", |c| c["rolloutStatus"].is_object());
    assert_eq!(state(&slow), "paused", "{slow}");
    assert_eq!(applied(&slow), 1, "{slow}");
    let guarded = show(&hub, "guarded");
    assert_eq!(state(&guarded), "aborted", "{guarded}");
    let alerts = hub.json(&["alert", "list"]);
    assert!(alerts.to_string().contains("rollout.guarded"), "{alerts}");
    // the device given the content before the kill keeps it, the others still wait
    let given: Vec<bool> = ["a1", "a2", "a3"]
        .iter()
        .map(|id| !hub.json(&["twin", "show", id])["properties"]["desired"]["firmware"].is_null())
        .collect();
    assert_eq!(given.iter().filter(|g| **g).count(), 1, "{given:?}");

    // resuming goes on from there; the abort's alert clears
    hub.ok(&["configuration", "resume", "slow"]);
    until(&hub, "slow", |c| applied(c) == 2);
    hub.ok(&["configuration", "resume", "guarded"]);
    until(&hub, "guarded", |c| state(c) == "running");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = hub.json(&["alert", "list", "--state", "active"]);
        if !alerts.to_string().contains("rollout.guarded") {
            break;
        }
        assert!(Instant::now() < deadline, "still active: {alerts}");
        std::thread::sleep(Duration::from_millis(100));
    }
    hub.stop();
}
