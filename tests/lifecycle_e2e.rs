//! The whole device lifecycle, end to end: a real device client against a real hub on the
//! durable store, connected through the in-memory transport.
//!
//! plan -> provision -> connect -> twin -> reported (seen by the service and by queries) ->
//! desired -> method -> disable (session closed, reconnect refused) -> enable -> retire
//! (archived twin queryable, credentials dead) -> replace -> delete.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use iot_dm::core::identity::DeviceId;
use iot_dm::core::method::{MethodRequest, MethodResponse};
use iot_dm::core::twin::TwinPatch;
use iot_dm::device::{DeviceClient, DeviceCredentials, InMemoryTransport, LinkState};
use iot_dm::service::api::prelude::*;
use iot_dm::service::hub::{generate_key, Device, DeviceSpec, Hub};

const HOST: &str = "hub.test";

async fn client(hub: &Hub, id: &str, key: &str) -> Result<DeviceClient, iot_dm::device::Error> {
    let creds = DeviceCredentials::symmetric_key(HOST, id.parse().unwrap(), key).unwrap();
    DeviceClient::builder(creds, InMemoryTransport::new(Arc::new(hub.clone())))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect()
        .await
}

fn key(d: &Device) -> String {
    d.symmetric_key.primary_key.clone().unwrap()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn until_closed(c: &DeviceClient) {
    let mut state = c.link_state();
    within("the client to close", async {
        loop {
            if matches!(*state.borrow_and_update(), LinkState::Closed { .. }) {
                return;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    })
    .await
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["deviceId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_device_lifecycle_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::builder()
        .path(dir.path().join("hub.redb"))
        .host_name(HOST)
        .open()
        .await
        .unwrap();

    // plan: a twin with tags, no credentials
    hub.plan_device(DeviceSpec::new("pump-1".parse().unwrap()).tags(json!({"site": "north"})))
        .await
        .unwrap();
    let planned = hub
        .query("SELECT deviceId FROM devices WHERE tags.site = 'north'")
        .unwrap();
    assert_eq!(ids(&planned), ["pump-1"]);
    let err = client(&hub, "pump-1", &generate_key().unwrap())
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err}");

    // provision and connect
    let device = hub.provision_device("pump-1", None).await.unwrap();
    let c = client(&hub, "pump-1", &key(&device)).await.unwrap();
    let twin = c.get_twin().await.unwrap();
    assert_eq!((twin.desired_version, twin.reported_version), (1, 1));

    // monitor: reported properties reach the service twin and queries at once
    let v = c
        .update_reported(json!({"firmware": {"version": "1.0.0"}}))
        .await
        .unwrap();
    assert_eq!(v, 2);
    assert_eq!(
        hub.get_twin("pump-1").unwrap().reported().doc().to_value(),
        json!({"firmware": {"version": "1.0.0"}})
    );
    let rows = hub
        .query("SELECT * FROM devices WHERE properties.reported.firmware.version = '1.0.0'")
        .unwrap();
    assert_eq!(ids(&rows), ["pump-1"]);
    assert_eq!(rows[0]["connectionState"], "Connected");

    // configure: desired properties reach the device
    let mut desired = c.desired_updates();
    let first = within("the initial desired document", desired.recv())
        .await
        .unwrap();
    assert!(first.full);
    let patch: TwinPatch =
        serde_json::from_value(json!({"properties": {"desired": {"interval": 30}}})).unwrap();
    hub.update_twin("pump-1", &patch, None).await.unwrap();
    let p = within("a desired patch", desired.recv()).await.unwrap();
    assert_eq!((p.version, p.patch["interval"].clone()), (2, json!(30)));

    // direct method round trip
    c.on_method("reboot", |call| async move {
        MethodResponse::new(200, json!({"rebooting": true, "echo": call.payload})).unwrap()
    });
    let req = MethodRequest::builder("reboot")
        .payload(json!({"in": 5}))
        .build()
        .unwrap();
    let resp = hub.invoke_method("pump-1", &req).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.payload, json!({"rebooting": true, "echo": {"in": 5}}));

    // disable: the session closes and reconnects are refused
    hub.disable_device("pump-1", "maintenance").await.unwrap();
    until_closed(&c).await;
    assert!(client(&hub, "pump-1", &key(&device))
        .await
        .unwrap_err()
        .is_refused());
    assert!(hub
        .invoke_method("pump-1", &req)
        .await
        .unwrap_err()
        .is_not_found());

    // enable: the device is back
    hub.enable_device("pump-1").await.unwrap();
    let c = client(&hub, "pump-1", &key(&device)).await.unwrap();
    c.update_reported(json!({"battery": 80})).await.unwrap();

    // retire: credentials dead, twin archived and still queryable
    hub.retire_device("pump-1").await.unwrap();
    until_closed(&c).await;
    assert!(client(&hub, "pump-1", &key(&device))
        .await
        .unwrap_err()
        .is_refused());
    assert!(hub.get_twin("pump-1").unwrap_err().is_not_found());
    assert!(hub
        .query("SELECT * FROM devices WHERE deviceId = 'pump-1'")
        .unwrap()
        .is_empty());
    let archived = hub
        .query_archive("SELECT deviceId, properties.reported.battery AS battery FROM devices")
        .unwrap();
    assert_eq!(archived, [json!({"deviceId": "pump-1", "battery": 80})]);

    // replace: a new identity takes over the twin
    let successor: DeviceId = "pump-1b".parse().unwrap();
    let new = hub
        .replace_device("pump-1", DeviceSpec::new(successor.clone()))
        .await
        .unwrap();
    let c2 = client(&hub, "pump-1b", &key(&new)).await.unwrap();
    assert_eq!(c2.get_twin().await.unwrap().desired["interval"], json!(30));
    assert_eq!(
        hub.get_twin("pump-1b").unwrap().tags().to_value(),
        json!({"site": "north"})
    );
    assert_eq!(
        hub.get_device("pump-1").unwrap().lifecycle.successor(),
        Some(&successor)
    );

    // delete
    c2.close().await;
    hub.delete_device("pump-1b", Some("*")).await.unwrap();
    hub.delete_device("pump-1", None).await.unwrap();
    assert!(hub.get_device("pump-1b").unwrap_err().is_not_found());
    assert!(hub.query("SELECT * FROM devices").unwrap().is_empty());
    assert!(hub
        .query_archive("SELECT * FROM devices")
        .unwrap()
        .is_empty());
}
