use std::time::Duration;

use serde_json::json;

use iot_dm_core::configuration::Configuration;

use crate::api::prelude::*;
use crate::hub::{DeviceSpec, Hub};

fn fan(id: &str, priority: i64) -> Configuration {
    let v = json!({
        "id": id, "targetCondition": "tags.on = true", "priority": priority,
        "content": {"deviceContent": {"properties.desired.fan": priority}},
    });
    Configuration::from_json(&v).unwrap_or_else(|e| panic!("{e}"))
}

async fn counts(hub: &Hub, id: &str) -> (u64, u64) {
    let c = hub
        .get_configuration(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (
        c.system_metrics.results["targetedCount"],
        c.system_metrics.results["appliedCount"],
    )
}

#[tokio::test]
async fn counts_move_by_the_difference_and_a_twin_is_counted_once() {
    let hub = Hub::builder()
        .open()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        hub.create_device(DeviceSpec::new(
            format!("d{i}").parse().unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    hub.put_configuration(&fan("a", 1), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    hub.configurations_applied()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&hub, "a").await, (0, 0));
    let on =
        serde_json::from_value(json!({"tags": {"on": true}})).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        // the same twin changed twice counts once
        for _ in 0..2 {
            hub.update_twin(&format!("d{i}"), &on, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let mut seen = (0, 0);
    for _ in 0..200 {
        seen = counts(&hub, "a").await;
        if seen == (3, 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, (3, 3));
    // a change the engine made itself is not planned again: the desired version moved once
    let twin = hub.get_twin("d0").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(twin.desired().version(), 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = hub.get_twin("d0").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.version(), twin.version());
}

#[tokio::test]
async fn a_label_update_keeps_the_counts_at_every_moment() {
    let hub = Hub::builder()
        .open()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let on =
        serde_json::from_value(json!({"tags": {"on": true}})).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        let id = format!("d{i}");
        hub.create_device(DeviceSpec::new(
            id.parse().unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        hub.update_twin(&id, &on, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let stored = hub
        .put_configuration(&fan("a", 1), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    hub.configurations_applied()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&hub, "a").await, (3, 3));
    let mut labelled = fan("a", 1);
    labelled.labels.insert("k".into(), "v".into());
    hub.put_configuration(&labelled, Some(&stored.etag))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // while the pass the update starts runs, and after it
    for _ in 0..20 {
        assert_eq!(counts(&hub, "a").await, (3, 3));
        tokio::task::yield_now().await;
    }
    hub.configurations_applied()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counts(&hub, "a").await, (3, 3));
}

#[tokio::test]
async fn a_closed_hub_refuses_configuration_writes() {
    let hub = Hub::builder()
        .open()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    hub.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    let e = hub.put_configuration(&fan("a", 1), None).await.unwrap_err();
    assert!(matches!(e, crate::HubError::Closed), "{e}");
    let e = hub.delete_configuration("a", None).await.unwrap_err();
    assert!(matches!(e, crate::HubError::Closed), "{e}");
    // the task has ended: waiting for it answers instead of hanging
    let waited = tokio::time::timeout(Duration::from_secs(5), hub.configurations_applied()).await;
    assert!(
        matches!(waited, Ok(Err(crate::HubError::Closed))),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_devices_own_patch_moves_the_metrics_and_a_target_that_reads_reported_properties() {
    let hub = Hub::builder().open().await.unwrap();
    for i in 0..2 {
        hub.create_device(DeviceSpec::new(format!("d{i}").parse().unwrap()))
            .await
            .unwrap();
    }
    // a target over tags with a metric over reported properties (the fast path), and a target
    // over reported properties (planned again)
    let tags = Configuration::from_json(&json!({
        "id": "tags", "targetCondition": "*", "priority": 1,
        "content": {"deviceContent": {"properties.desired.a": 1}},
        "metrics": {"queries": {"hot":
            "SELECT deviceId FROM devices WHERE properties.reported.temp > 80"}},
    }))
    .unwrap();
    let reported = Configuration::from_json(&json!({
        "id": "reported", "targetCondition": "properties.reported.model = 'v2'", "priority": 2,
        "content": {"deviceContent": {"properties.desired.b": 2}},
    }))
    .unwrap();
    hub.put_configuration(&tags, None).await.unwrap();
    hub.configurations_applied().await.unwrap();
    let metric =
        async |hub: &Hub| hub.get_configuration("tags").await.unwrap().metrics.results["hot"];
    hub.patch_reported("d0", &json!({"temp": 90}))
        .await
        .unwrap();
    let mut seen = 0;
    for _ in 0..200 {
        seen = metric(&hub).await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, 1);
    hub.put_configuration(&reported, None).await.unwrap();
    hub.configurations_applied().await.unwrap();
    hub.patch_reported("d1", &json!({"model": "v2"}))
        .await
        .unwrap();
    let mut b = serde_json::Value::Null;
    for _ in 0..200 {
        b = hub.get_twin("d1").unwrap().desired().doc().to_value()["b"].clone();
        if b == json!(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(b, json!(2));
    hub.patch_reported("d0", &json!({"temp": 20}))
        .await
        .unwrap();
    for _ in 0..200 {
        seen = metric(&hub).await;
        if seen == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, 0);
}

/// Polls (bounded) until metric `name` of configuration `id` is `want`.
async fn metric_becomes(hub: &Hub, id: &str, name: &str, want: u64) {
    let mut seen = u64::MAX;
    for _ in 0..200 {
        seen = hub.get_configuration(id).await.unwrap().metrics.results[name];
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{id}.{name} is {seen}, not {want}");
}

#[tokio::test]
async fn a_metric_whose_tag_part_turns_true_follows_the_devices_later_patches() {
    let hub = Hub::builder().open().await.unwrap();
    hub.create_device(DeviceSpec::new("d0".parse().unwrap()))
        .await
        .unwrap();
    let cfg = Configuration::from_json(&json!({
        "id": "c", "targetCondition": "*",
        "content": {"deviceContent": {"properties.desired.a": 1}},
        "metrics": {"queries": {"hot":
            "SELECT deviceId FROM devices WHERE tags.on = true AND properties.reported.temp > 80"}},
    }))
    .unwrap();
    hub.put_configuration(&cfg, None).await.unwrap();
    hub.configurations_applied().await.unwrap();
    hub.patch_reported("d0", &json!({"temp": 90}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    metric_becomes(&hub, "c", "hot", 0).await;
    let on = serde_json::from_value(json!({"tags": {"on": true}})).unwrap();
    hub.update_twin("d0", &on, None).await.unwrap();
    metric_becomes(&hub, "c", "hot", 1).await;
    // from now on the device's own patches move the metric
    hub.patch_reported("d0", &json!({"temp": 20}))
        .await
        .unwrap();
    metric_becomes(&hub, "c", "hot", 0).await;
    hub.patch_reported("d0", &json!({"temp": 95}))
        .await
        .unwrap();
    metric_becomes(&hub, "c", "hot", 1).await;
}
