//! End to end: `iot-dm alert ...` against a real `iot-dm hub` process on 127.0.0.1. Rules put
//! from flags (a twin rule and a job-scoped one) and refused before anything is stored, the
//! alert a twin change raises listed, shown and acknowledged by name, the live table
//! (`alert list --watch`) stopped by Ctrl-C, the alert cleared, and the rule deleted.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use hub_process::{code, stderr, stdout, HubProcess, BIN};

/// Polls `alert list --state STATE --json` until `pred` holds of the alerts.
fn alerts_until(hub: &HubProcess, state: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = hub.json(&["alert", "list", "--state", state]);
        let all = v.as_array().cloned().unwrap();
        if pred(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "alerts ({state}): {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn health(hub: &HubProcess, device: &str, value: &str) {
    let patch = json!({"tags": {"health": value}}).to_string();
    hub.ok(&["twin", "update", device, &patch]);
}

#[test]
fn alert_rules_alerts_acknowledgements_and_the_live_table() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    for id in ["d1", "d2", "d3"] {
        hub.ok(&["device", "create", id]);
    }
    let put = hub.ok(&[
        "alert",
        "rule",
        "put",
        "health",
        "--condition",
        "tags.health = 'bad'",
        "--count",
        "0",
        "--severity",
        "critical",
        "--description",
        "a device is unhealthy",
    ]);
    assert!(
        put.contains("> 0 devices") && put.contains("every device"),
        "{put}"
    );
    hub.ok(&[
        "alert",
        "rule",
        "put",
        "j-42-failures",
        "--condition",
        "status = 'failed'",
        "--job",
        "j-42",
        "--percent",
        "10",
    ]);
    // refused, naming the field, and nothing stored
    let bad = hub.run(&[
        "alert",
        "rule",
        "put",
        "bad",
        "--condition",
        "deviceId = 'd1'",
        "--job",
        "j-42",
        "--count",
        "0",
    ]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("condition"), "{}", stderr(&bad));
    let rules = hub.json(&["alert", "rule", "list"]);
    let ids: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["health", "j-42-failures"]);
    let table = hub.ok(&["alert", "rule", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("j-42-failures") && l.contains("job j-42")),
        "{table}"
    );

    // a device goes bad: the alert is raised
    health(&hub, "d2", "bad");
    let active = alerts_until(&hub, "active", |a| a.len() == 1);
    let id = active[0]["id"].as_str().unwrap().to_string();
    assert_eq!(active[0]["ruleId"], json!("health"));
    let listed = hub.ok(&["alert", "list"]);
    let header = listed.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("ACKNOWLEDGED BY"),
        "{listed}"
    );
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("active") && row.contains("1 of 3"), "{listed}");
    let acked = hub.ok(&["alert", "ack", &id, "--by", "ops@example.com"]);
    assert!(acked.contains("by ops@example.com"), "{acked}");

    // the live table runs until Ctrl-C, and exits cleanly
    let mut watch = Command::new(BIN)
        .args(["alert", "list", "--watch", "--interval-ms", "100"])
        .env("IOT_DM_CONNECTION_STRING", &hub.owner_cs)
        .env("IOT_DM_URL", &hub.url)
        .env("IOT_DM_CA", &hub.ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch ended by itself"
    );
    let sent = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while watch.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the watch did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let watched = watch.wait_with_output().unwrap();
    assert!(watched.status.success(), "{}", stderr(&watched));
    let text = stdout(&watched);
    assert!(text.contains("alerts at ") && text.contains(&id), "{text}");
    assert!(text.contains("ops@example.com"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no terminal escapes in a pipe: {text:?}"
    );

    // recovered: the alert clears and keeps its acknowledgement
    health(&hub, "d2", "ok");
    alerts_until(&hub, "cleared", |a| a.len() == 1);
    let shown = hub.json(&["alert", "show", &id]);
    assert_eq!(shown["state"], json!("cleared"), "{shown}");
    assert_eq!(shown["acknowledgedBy"], json!("ops@example.com"), "{shown}");
    assert_eq!(shown["clearedCounts"], json!({"matching": 0, "scope": 3}));

    assert_eq!(
        hub.ok(&["alert", "rule", "delete", "health"]).trim(),
        "deleted alert rule health"
    );
    let gone = hub.run(&["alert", "rule", "show", "health"]);
    assert_eq!(code(&gone), 4, "{}", stderr(&gone));
    let missing = hub.run(&["alert", "ack", "nope"]);
    assert_eq!(code(&missing), 4, "{}", stderr(&missing));
    hub.stop();
}
