//! Fault injection: a real `iot-dm hub` process with automatic configurations is killed with
//! SIGKILL and started again on its data. The configuration, its metrics and the content it
//! wrote into the twins are all there after the restart, and the configuration goes on
//! applying itself to a device that moves into its target.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use hub_process::HubProcess;

/// `systemMetrics.results` and the custom metric of configuration `fan`.
fn counts(hub: &HubProcess) -> (Value, Value, Value) {
    let cfg = hub.json(&["configuration", "show", "fan"]);
    (
        cfg["systemMetrics"]["results"]["targetedCount"].clone(),
        cfg["systemMetrics"]["results"]["appliedCount"].clone(),
        cfg["metrics"]["results"]["fast"].clone(),
    )
}

/// Polls until the counts of `fan` are `want`.
fn until_counts(hub: &HubProcess, want: (u64, u64, u64)) {
    let want = (json!(want.0), json!(want.1), json!(want.2));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = counts(hub);
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "counts {now:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fan_of(hub: &HubProcess, id: &str) -> Value {
    hub.json(&["twin", "show", id])["properties"]["desired"]["fan"].clone()
}

#[test]
fn configurations_metrics_and_content_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = HubProcess::start(dir.path());
    for (id, site) in [("n1", "north"), ("n2", "north"), ("s1", "south")] {
        hub.ok(&[
            "device",
            "create",
            id,
            "--tags",
            &json!({ "site": site }).to_string(),
        ]);
    }
    hub.ok(&[
        "configuration",
        "create",
        "fan",
        "--target",
        "tags.site = 'north'",
        "--priority",
        "10",
        "--content",
        r#"{"properties.desired.fan": {"speed": 3}}"#,
        "--metric",
        "fast=SELECT deviceId FROM devices WHERE properties.desired.fan.speed = 3",
    ]);
    until_counts(&hub, (2, 2, 2));
    assert_eq!(fan_of(&hub, "n1"), json!({"speed": 3}));

    let (mqtt, rest) = (hub.mqtt_port, hub.rest_port);
    hub.kill9();
    let hub = HubProcess::start_on(dir.path(), mqtt, rest);
    // the counts are rebuilt from the twins, the content is still in them
    until_counts(&hub, (2, 2, 2));
    assert_eq!(fan_of(&hub, "n2"), json!({"speed": 3}));
    assert!(fan_of(&hub, "s1").is_null());
    let cfg = hub.json(&["configuration", "show", "fan"]);
    assert_eq!(cfg["priority"], 10, "{cfg}");
    assert_eq!(cfg["targetCondition"], "tags.site = 'north'", "{cfg}");

    // and it goes on: a device moving into the target gets the content
    hub.ok(&[
        "twin",
        "update",
        "s1",
        &json!({"tags": {"site": "north"}}).to_string(),
    ]);
    until_counts(&hub, (3, 3, 3));
    assert_eq!(fan_of(&hub, "s1"), json!({"speed": 3}));
    hub.stop();
}
