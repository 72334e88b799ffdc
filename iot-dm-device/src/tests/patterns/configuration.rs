//! Desired properties acknowledged the IoT Plug and Play way.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::patterns::{Rejection, SimulatedDevice};

#[tokio::test(start_paused = true)]
async fn applied_and_rejected_properties_are_acknowledged_with_the_desired_version() {
    let hub = TestHub::new().await;
    hub.set_desired(json!({"fan": 2})).await; // before the device connects: version 2
    let client = connect_ticking(&hub).await;
    let device = SimulatedDevice::new("1.0.0");
    device.reject(
        "mode",
        Rejection::new(422, "mode is read-only on this model"),
    );
    client.enable_configuration(device.clone()).await.unwrap();

    // the whole document is applied at start
    eventually("fan applied", || reported(&hub)["fan"]["ac"] == 200).await;
    assert_eq!(
        reported(&hub)["fan"],
        json!({"value": 2, "ac": 200, "av": 2, "ad": "applied"})
    );
    assert_eq!(device.setting("fan"), Some(json!(2)));

    let v = hub.set_desired(json!({"mode": "eco", "fan": 3})).await;
    eventually("mode rejected", || reported(&hub)["mode"]["ac"] == 422).await;
    assert_eq!(
        reported(&hub)["mode"],
        json!({"value": "eco", "ac": 422, "av": v, "ad": "mode is read-only on this model"})
    );
    eventually("fan applied", || reported(&hub)["fan"]["av"] == v).await;
    assert_eq!(reported(&hub)["fan"]["ac"], 200);
    // every property went through 202 first
    let applying: Vec<_> = reported_patches(&hub)
        .iter()
        .filter(|p| p["mode"]["ac"] == 202)
        .cloned()
        .collect();
    assert_eq!(applying.len(), 1);
    assert_eq!(applying[0]["mode"]["ad"], "applying");
    assert!(reported(&hub).get("deviceManagement").is_none());

    // a reconnect resyncs without acknowledging unchanged values again
    let patches = reported_patches(&hub).len();
    hub.drop_link();
    eventually("reconnected", || hub.current_session() == Some(2)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reported_patches(&hub).len(), patches);
}

#[tokio::test(start_paused = true)]
async fn a_newer_desired_version_supersedes_one_still_applying() {
    let hub = TestHub::new().await;
    let client = connect_ticking(&hub).await;
    let device = SimulatedDevice::new("1.0.0");
    device.apply_delay(Duration::from_secs(10));
    client.enable_configuration(device.clone()).await.unwrap();
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;

    let old = hub.set_desired(json!({"fan": 3})).await;
    eventually("fan applying", || reported(&hub)["fan"]["ac"] == 202).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new = hub.set_desired(json!({"fan": 4})).await;
    within(async {
        while reported(&hub)["fan"] != json!({"value": 4, "ac": 200, "av": new, "ad": "applied"}) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(device.setting("fan"), Some(json!(4)));
    // the superseded version was never acknowledged as applied
    let fan: Vec<_> = reported_patches(&hub)
        .iter()
        .filter_map(|p| p.get("fan").cloned())
        .collect();
    assert_eq!(
        fan,
        [
            json!({"value": 3, "ac": 202, "av": old, "ad": "applying"}),
            json!({"value": 4, "ac": 202, "av": new, "ad": "applying"}),
            json!({"value": 4, "ac": 200, "av": new, "ad": "applied"}),
        ]
    );
}
