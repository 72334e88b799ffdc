//! `AlertApi` through `ServiceClient` against a served hub: rules put, read, listed and
//! deleted, an alert raised, read, acknowledged (by name, once) and cleared, the typed errors
//! the hub's answers map back to, and the same code run against the embedded hub.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::time::Duration;

use serde_json::json;

use iot_dm_core::alert::{Alert, AlertRule, AlertState, Counts, Scope};
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{DeviceSpec, Hub, MAX_ACKNOWLEDGED_BY_LEN};
use iot_dm_service::HubError;

use rest_support::{Served, HOST};

fn rule(id: &str) -> AlertRule {
    AlertRule::from_json(&json!({
        "id": id, "condition": "properties.reported.update.state = 'failed'",
        "threshold": {"count": 0}, "severity": "warning", "description": "an update failed",
    }))
    .unwrap()
}

async fn served(max_rules: usize) -> Served {
    let hub = Hub::builder()
        .host_name(HOST)
        .max_alert_rules(max_rules)
        .open()
        .await
        .unwrap();
    for id in ["d1", "d2"] {
        hub.create_device(DeviceSpec::new(id.parse().unwrap()))
            .await
            .unwrap();
    }
    Served::start_with(hub, None).await
}

/// `list_alerts(state)` until `ok` holds (at most 5 s).
async fn alerts_until(
    api: &dyn ServiceApi,
    state: Option<AlertState>,
    ok: impl Fn(&[Alert]) -> bool,
) -> Vec<Alert> {
    let mut last = Vec::new();
    for _ in 0..250 {
        last = api.list_alerts(state).await.unwrap();
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("alerts ({state:?}) never got there: {last:?}")
}

/// Everything `AlertApi` does, through `api`, on a hub with devices d1 and d2 and at most
/// two rules; `hub` is the hub behind it, to report through.
async fn round_trip(api: &dyn ServiceApi, hub: &Hub) {
    let stored = api.put_alert_rule(&rule("failed")).await.unwrap();
    assert_eq!(stored, rule("failed"));
    assert_eq!(api.get_alert_rule("failed").await.unwrap(), stored);
    let job = AlertRule::from_json(&json!({
        "id": "j-42-failures", "condition": "status = 'failed'", "scope": {"job": "j-42"},
        "threshold": {"percent": 2}, "severity": "critical",
    }))
    .unwrap();
    api.put_alert_rule(&job).await.unwrap();
    let ids: Vec<String> = api
        .list_alert_rules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["failed", "j-42-failures"]);
    assert_eq!(
        api.get_alert_rule("j-42-failures").await.unwrap().scope,
        Scope::Job("j-42".into())
    );
    // past the cap: a third rule
    let e = api.put_alert_rule(&rule("third")).await.unwrap_err();
    assert!(
        matches!(e, HubError::TooManyAlertRules { limit: 2 }),
        "{e:?}"
    );
    // a failure raises an alert
    assert!(api.list_alerts(None).await.unwrap().is_empty());
    hub.patch_reported("d1", &json!({"update": {"state": "failed"}}))
        .await
        .unwrap();
    let active = alerts_until(api, Some(AlertState::Active), |a| a.len() == 1).await;
    let alert = &active[0];
    assert_eq!(alert.rule_id, "failed");
    assert_eq!(
        alert.raised_counts,
        Counts {
            matching: 1,
            scope: 2
        }
    );
    assert_eq!(api.get_alert(&alert.id).await.unwrap(), *alert);
    assert!(api
        .list_alerts(Some(AlertState::Cleared))
        .await
        .unwrap()
        .is_empty());
    // acknowledged by name, once
    let acked = api
        .acknowledge_alert(&alert.id, "ops@example.com")
        .await
        .unwrap();
    let (at, by) = acked.acknowledged.clone().unwrap();
    assert_eq!(by, "ops@example.com");
    let again = api
        .acknowledge_alert(&alert.id, "someone-else")
        .await
        .unwrap();
    assert_eq!(again.acknowledged, Some((at, by)));
    for bad in [String::new(), "x".repeat(MAX_ACKNOWLEDGED_BY_LEN + 1)] {
        match api.acknowledge_alert(&alert.id, &bad).await.unwrap_err() {
            HubError::InvalidInput { field, .. } => assert_eq!(field, "by"),
            e => panic!("{e:?}"),
        }
    }
    // recovered: the alert clears, its acknowledgement kept
    hub.patch_reported("d1", &json!({"update": {"state": "ok"}}))
        .await
        .unwrap();
    let cleared = alerts_until(api, Some(AlertState::Cleared), |a| a.len() == 1).await;
    assert_eq!(cleared[0].id, alert.id);
    assert_eq!(cleared[0].acknowledged, again.acknowledged);
    assert_eq!(api.list_alerts(None).await.unwrap(), cleared);
    // the missing: typed, naming the id
    let e = api.get_alert("nope").await.unwrap_err();
    assert!(
        matches!(&e, HubError::AlertNotFound { id } if id == "nope"),
        "{e:?}"
    );
    assert_eq!(e.code(), 404_502);
    let e = api.acknowledge_alert("nope", "ops").await.unwrap_err();
    assert!(
        matches!(&e, HubError::AlertNotFound { id } if id == "nope"),
        "{e:?}"
    );
    api.delete_alert_rule("failed").await.unwrap();
    let e = api.get_alert_rule("failed").await.unwrap_err();
    assert!(
        matches!(&e, HubError::AlertRuleNotFound { id } if id == "failed"),
        "{e:?}"
    );
    let e = api.delete_alert_rule("failed").await.unwrap_err();
    assert!(
        matches!(&e, HubError::AlertRuleNotFound { id } if id == "failed"),
        "{e:?}"
    );
    assert_eq!(api.list_alert_rules().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_client_does_what_the_embedded_hub_does() {
    let s = served(2).await;
    let client = s.client("iothubowner");
    round_trip(&client, &s.hub).await;
    let local = served(2).await;
    round_trip(&local.hub, &local.hub).await;
}

#[tokio::test]
async fn rights_are_checked_and_the_default_acknowledgement_names_the_policy() {
    let s = served(2).await;
    let reader = s.client("registryRead");
    let e = reader.put_alert_rule(&rule("failed")).await.unwrap_err();
    assert!(e.is_forbidden(), "{e:?}");
    s.client("registryReadWrite")
        .put_alert_rule(&rule("failed"))
        .await
        .unwrap();
    assert_eq!(reader.list_alert_rules().await.unwrap().len(), 1);
    s.hub
        .patch_reported("d2", &json!({"update": {"state": "failed"}}))
        .await
        .unwrap();
    let active = alerts_until(&reader, Some(AlertState::Active), |a| a.len() == 1).await;
    let e = reader
        .acknowledge_alert(&active[0].id, "ops")
        .await
        .unwrap_err();
    assert!(e.is_forbidden(), "{e:?}");
    // without a body, the REST route records the token's policy
    let answer = s
        .call(
            "registryReadWrite",
            http::Method::POST,
            &format!("/alerts/{}/acknowledge", active[0].id),
            None,
        )
        .await;
    assert_eq!(answer.status, http::StatusCode::OK, "{answer:?}");
    let alert = reader.get_alert(&active[0].id).await.unwrap();
    assert_eq!(
        alert.acknowledged.map(|(_, by)| by),
        Some("registryReadWrite".to_string())
    );
    // a body with an unknown member is refused
    let answer = s
        .call(
            "registryReadWrite",
            http::Method::POST,
            &format!("/alerts/{}/acknowledge", active[0].id),
            Some(json!({"who": "ops"})),
        )
        .await;
    assert_eq!(answer.status, http::StatusCode::BAD_REQUEST, "{answer:?}");
}
