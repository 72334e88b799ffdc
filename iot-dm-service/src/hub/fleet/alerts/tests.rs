#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use iot_dm_core::alert::{Alert, AlertRule, AlertState, Counts};
use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::configuration::Configuration;

use crate::api::prelude::*;
use crate::hub::{DeviceSpec, Hub, HubBuilder, HubError};

const T0: i64 = 1_700_000_000;

fn rule(v: serde_json::Value) -> AlertRule {
    AlertRule::from_json(&v).unwrap_or_else(|e| panic!("{e}"))
}

async fn fleet(hub: &Hub, n: usize) {
    let ids = (0..n).map(|i| format!("d{i}"));
    for id in ids {
        let spec = DeviceSpec::new(id.parse().unwrap());
        hub.create_device(spec).await.unwrap();
    }
}

/// Devices `d{i}` for `i` in `which` report their update `state`.
async fn report(hub: &Hub, which: std::ops::Range<usize>, state: &str) {
    let patch = json!({"update": {"state": state}});
    let ids = which.map(|i| format!("d{i}"));
    for id in ids {
        hub.patch_reported(&id, &patch).await.unwrap();
    }
}

/// Waits (at most 5 s) until the hub's alerts in `state` satisfy `ok`.
async fn until(hub: &Hub, state: Option<AlertState>, ok: impl Fn(&[Alert]) -> bool) -> Vec<Alert> {
    for _ in 0..250 {
        let a = hub.alerts(state);
        if ok(&a) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("alerts never got there: {:?}", hub.alerts(None));
}

/// Lets the alert task run a few rounds.
async fn settle() {
    tokio::time::sleep(super::TICK * 3).await;
}

fn on_clock(clock: &ManualClock) -> HubBuilder {
    Hub::builder().clock(Arc::new(clock.clone()))
}

#[tokio::test]
async fn a_count_rule_raises_after_its_duration_is_acknowledged_and_clears() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = on_clock(&clock).open().await.unwrap();
    fleet(&hub, 4).await;
    hub.put_alert_rule(&rule(json!({
        "id": "failed", "condition": "properties.reported.update.state = 'failed'",
        "threshold": {"count": 1}, "forSeconds": 30, "severity": "warning",
    })))
    .await
    .unwrap();
    report(&hub, 0..2, "failed").await;
    settle().await;
    // the rule holds, but not yet for 30 s
    assert!(hub.alerts(None).is_empty());
    clock.advance(Duration::from_secs(30));
    let raised = until(&hub, Some(AlertState::Active), |a| a.len() == 1).await;
    let a = &raised[0];
    assert_eq!(a.rule_id, "failed");
    assert_eq!(a.raised_at, Timestamp::from_unix_secs(T0 + 30));
    assert_eq!(
        a.raised_counts,
        Counts {
            matching: 2,
            scope: 4
        }
    );
    let acked = hub.acknowledge_alert(&a.id, "ops").await.unwrap();
    assert_eq!(
        acked.acknowledged.as_ref().map(|x| x.1.as_str()),
        Some("ops")
    );
    assert!(matches!(
        hub.acknowledge_alert("nope", "ops").await,
        Err(HubError::AlertNotFound { .. })
    ));
    report(&hub, 0..2, "ok").await;
    settle().await;
    assert_eq!(hub.alerts(Some(AlertState::Active)).len(), 1);
    clock.advance(Duration::from_secs(30));
    let cleared = until(&hub, Some(AlertState::Cleared), |a| a.len() == 1).await;
    let c = &cleared[0];
    assert_eq!(c.id, a.id);
    assert_eq!(
        c.cleared,
        Some((
            Timestamp::from_unix_secs(T0 + 60),
            Counts {
                matching: 0,
                scope: 4
            }
        ))
    );
    assert!(c.acknowledged.is_some());
    assert_eq!(hub.alert(&a.id).unwrap(), *c);
}

#[tokio::test]
async fn a_configuration_scope_counts_its_targeted_devices_by_percent() {
    let hub = Hub::builder().open().await.unwrap();
    fleet(&hub, 40).await;
    for i in 0..20 {
        hub.update_twin(
            &format!("d{i}"),
            &serde_json::from_value(json!({"tags": {"ring": "canary"}})).unwrap(),
            None,
        )
        .await
        .unwrap();
    }
    let cfg = Configuration::from_json(&json!({
        "id": "fw", "targetCondition": "tags.ring = 'canary'",
        "content": {"deviceContent": {"properties.desired.fw": "2.1"}},
    }))
    .unwrap();
    hub.put_configuration(&cfg, None).await.unwrap();
    hub.put_alert_rule(&rule(json!({
        "id": "canary-failures", "condition": "properties.reported.update.state = 'failed'",
        "scope": {"configuration": "fw"}, "threshold": {"percent": 5}, "severity": "critical",
    })))
    .await
    .unwrap();
    // failures outside the scope do not count; one of 20 targeted is exactly 5%
    report(&hub, 20..40, "failed").await;
    report(&hub, 0..1, "failed").await;
    settle().await;
    assert!(hub.alerts(None).is_empty(), "{:?}", hub.alerts(None));
    report(&hub, 1..2, "failed").await;
    let raised = until(&hub, Some(AlertState::Active), |a| a.len() == 1).await;
    assert_eq!(
        raised[0].raised_counts,
        Counts {
            matching: 2,
            scope: 20
        }
    );
}

#[tokio::test]
async fn rules_and_alerts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let hub = Hub::builder().path(&path).open().await.unwrap();
    fleet(&hub, 2).await;
    let r = rule(json!({
        "id": "any-failed", "condition": "properties.reported.update.state = 'failed'",
        "threshold": {"count": 0}, "severity": "info", "description": "one failed",
    }));
    hub.put_alert_rule(&r).await.unwrap();
    report(&hub, 0..1, "failed").await;
    let raised = until(&hub, Some(AlertState::Active), |a| a.len() == 1).await;
    hub.shutdown().await.unwrap();
    let hub = Hub::builder().path(&path).open().await.unwrap();
    assert_eq!(hub.alert_rule("any-failed").unwrap(), r);
    assert_eq!(hub.alerts(None), raised);
    settle().await;
    // still the same alert: resumed, not raised again
    assert_eq!(hub.alerts(None), raised);
    report(&hub, 0..1, "ok").await;
    until(&hub, Some(AlertState::Cleared), |a| a.len() == 1).await;
    assert!(hub.alerts(Some(AlertState::Active)).is_empty());
}

#[tokio::test]
async fn the_cap_unknown_ids_and_twin_conditions_in_job_scopes_are_refused() {
    let hub = Hub::builder().max_alert_rules(1).open().await.unwrap();
    let mk = |id: &str| {
        rule(
            json!({"id": id, "condition": "tags.x = 1", "threshold": {"count": 0},
                    "severity": "info"}),
        )
    };
    hub.put_alert_rule(&mk("a")).await.unwrap();
    // replacing is not adding
    hub.put_alert_rule(&mk("a")).await.unwrap();
    let e = hub.put_alert_rule(&mk("b")).await.unwrap_err();
    assert!(matches!(e, HubError::TooManyAlertRules { limit: 1 }), "{e}");
    assert_eq!(e.code(), 413_501);
    // a job scope tests job records: a twin condition is refused, naming the field
    let twin_path = json!({"id": "j", "condition": "tags.x = 1", "threshold": {"count": 0},
                           "severity": "info", "scope": {"job": "rollout"}});
    let e = HubError::from(AlertRule::from_json(&twin_path).unwrap_err());
    assert_eq!(e.code(), 400_004);
    assert!(e.to_string().starts_with("condition is invalid"), "{e}");
    assert!(e.to_string().contains("\"tags.x\""), "{e}");
    // a job rule is a rule like another under the cap
    let job = rule(
        json!({"id": "j", "condition": "status = 'failed'", "threshold": {"count": 0},
               "severity": "info", "scope": {"job": "rollout"}}),
    );
    let e = hub.put_alert_rule(&job).await.unwrap_err();
    assert!(matches!(e, HubError::TooManyAlertRules { limit: 1 }), "{e}");
    assert!(matches!(
        hub.alert_rule("b"),
        Err(HubError::AlertRuleNotFound { .. })
    ));
    hub.delete_alert_rule("a").await.unwrap();
    assert!(hub.alert_rules().is_empty());
    assert!(matches!(
        hub.delete_alert_rule("a").await,
        Err(HubError::AlertRuleNotFound { .. })
    ));
}

#[tokio::test]
async fn deleting_a_rule_clears_its_active_alert() {
    let hub = Hub::builder().open().await.unwrap();
    fleet(&hub, 1).await;
    hub.put_alert_rule(&rule(json!({
        "id": "x", "condition": "properties.reported.update.state = 'failed'",
        "threshold": {"count": 0}, "severity": "info",
    })))
    .await
    .unwrap();
    report(&hub, 0..1, "failed").await;
    until(&hub, Some(AlertState::Active), |a| a.len() == 1).await;
    hub.delete_alert_rule("x").await.unwrap();
    until(&hub, Some(AlertState::Cleared), |a| a.len() == 1).await;
}

#[tokio::test]
async fn a_reported_patch_moves_a_device_into_a_scope_whose_target_reads_reported_properties() {
    // the rule reads only tags, its scope's target reads reported properties: a device's own
    // patch must still be matched again
    let hub = Hub::builder().open().await.unwrap();
    fleet(&hub, 3).await;
    let tagged: iot_dm_core::twin::TwinPatch =
        serde_json::from_value(json!({"tags": {"site": "north"}})).unwrap();
    for i in 0..3 {
        hub.update_twin(&format!("d{i}"), &tagged, None)
            .await
            .unwrap();
    }
    let cfg = Configuration::from_json(&json!({
        "id": "v2", "targetCondition": "properties.reported.model = 'v2'",
        "content": {"deviceContent": {"properties.desired.x": 1}},
    }))
    .unwrap();
    hub.put_configuration(&cfg, None).await.unwrap();
    hub.put_alert_rule(&rule(json!({
        "id": "north-v2", "condition": "tags.site = 'north'",
        "scope": {"configuration": "v2"}, "threshold": {"count": 1}, "severity": "info",
    })))
    .await
    .unwrap();
    settle().await;
    assert!(hub.alerts(None).is_empty());
    for i in 0..2 {
        hub.patch_reported(&format!("d{i}"), &json!({"model": "v2"}))
            .await
            .unwrap();
    }
    let raised = until(&hub, Some(AlertState::Active), |a| a.len() == 1).await;
    assert_eq!(
        raised[0].raised_counts,
        Counts {
            matching: 2,
            scope: 2
        }
    );
}
