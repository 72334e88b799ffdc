//! Connecting, twin requests, desired updates and telemetry.

use std::time::Duration;

use iot_dm_core::link::{ConnectRefused, DeviceFrame, QoS};
use serde_json::json;

use super::*;
use crate::{DesiredPatch, DeviceCredentials, Error, Operation, PropertyBag};
use iot_dm_core::identity::DeviceId;
use iot_dm_core::wire::topic::{
    DESIRED_PATCH_FILTER as DESIRED_FILTER, METHOD_REQUEST_FILTER as METHOD_FILTER,
};
use iot_dm_core::wire::SystemProperty;
use iot_dm_service::hub::CloudMessage;

fn patch(version: u64, patch: serde_json::Value, full: bool) -> DesiredPatch {
    DesiredPatch {
        version,
        patch,
        full,
    }
}

#[tokio::test(start_paused = true)]
async fn connect_subscribes_then_gets_the_twin() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    assert!(client.link_state().borrow().is_connected());
    eventually("subscribe and resync GET", || hub.frames().len() >= 2).await;
    let received = hub.frames();
    match &received[0].frame {
        DeviceFrame::Subscribe(filters) => {
            assert!(filters.iter().any(|f| f == DESIRED_FILTER));
            assert!(filters.iter().any(|f| f == METHOD_FILTER));
            assert!(filters.iter().any(|f| f == "$iothub/twin/res/#"));
            assert!(filters
                .iter()
                .any(|f| f == "devices/dev-1/messages/devicebound/#"));
        }
        other => panic!("first frame is {other:?}"),
    }
    let get = received[1].publish().unwrap();
    assert!(
        get.topic.starts_with("$iothub/twin/GET/?$rid="),
        "{}",
        get.topic
    );
    assert!(get.payload.is_empty());
    let req = &hub.connects()[0];
    assert_eq!(req.device_id.as_str(), DEVICE);
    assert!(!req.clean_session);
    assert_eq!(token_expiry(req), START + 3600);
}

#[tokio::test(start_paused = true)]
async fn first_connect_refused_is_reported_not_retried() {
    let hub = TestHub::new().await;
    hub.refuse(Some(ConnectRefused::NotAuthorized {
        reason: "bad signature".into(),
    }));
    let err = builder(&hub).connect().await.unwrap_err();
    assert!(err.is_refused() && !err.is_retryable(), "{err:?}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(hub.connects().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_key_is_refused() {
    let hub = TestHub::new().await;
    let creds = DeviceCredentials::symmetric_key(
        HOST,
        DeviceId::new(DEVICE).unwrap(),
        "d3Jvbmcga2V5IGZvciB0aGlzIGRldmljZQ==",
    )
    .unwrap();
    let err = DeviceClient::builder(creds, InMemoryTransport::new(hub.link.clone()))
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    assert!(err.to_string().contains("signature"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn cloud_messages_are_delivered_then_acknowledged() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut c2d = client.cloud_messages();
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    let message = CloudMessage::new("hello")
        .message_id("m1")
        .property("color", "red");
    hub.hub.send_c2d(DEVICE, message).await.unwrap();
    let m = within(c2d.recv()).await.unwrap();
    assert_eq!(&m.payload[..], b"hello");
    assert_eq!(m.properties.message_id(), Some("m1"));
    assert_eq!(m.properties.get("color"), Some(Some("red")));
    assert_eq!(m.input, None);
    let delivered = hub.delivered(1, "devices/dev-1/messages/devicebound/");
    assert_eq!(delivered.len(), 1);
    let ack_id = delivered[0].ack_id.expect("delivered at least once");
    eventually("acknowledged", || hub.acks() == [ack_id]).await;
    eventually("gone from the hub's queue", || {
        hub.hub
            .get_device(DEVICE)
            .unwrap()
            .identity
            .cloud_to_device_message_count
            == 0
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn get_twin_and_update_reported() {
    let hub = TestHub::new().await;
    hub.set_desired(json!({"fan": 2})).await;
    let client = connect(&hub).await;
    let twin = within(client.get_twin()).await.unwrap();
    assert_eq!(twin.desired, json!({"fan": 2}));
    assert_eq!(twin.desired_version, 2);
    assert_eq!(twin.reported, json!({}));
    assert_eq!(twin.reported_version, 1);

    assert_eq!(
        within(client.update_reported(json!({"fan": 2})))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        within(client.update_reported(json!({"mode": "eco"})))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        hub.twin().reported().doc().to_value(),
        json!({"fan": 2, "mode": "eco"})
    );
    let twin = within(client.get_twin()).await.unwrap();
    assert_eq!(twin.reported_version, 3);
    let patches = hub.publishes(1, "$iothub/twin/PATCH/properties/reported/?$rid=");
    assert_eq!(patches.len(), 2);
    assert_eq!(&patches[0].payload[..], br#"{"fan":2}"#);
}

#[tokio::test(start_paused = true)]
async fn hub_errors_come_back_typed() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let err = within(client.update_reported(json!({"bad key": 1})))
        .await
        .unwrap_err();
    match &err {
        Error::Hub {
            operation: Operation::UpdateReported,
            status: 400,
            error_code: Some(400004),
            message,
        } => assert!(message.contains("bad key"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(err.is_hub_error() && !err.is_retryable());
    // the session is fine afterwards
    assert_eq!(
        within(client.update_reported(json!({"ok": true})))
            .await
            .unwrap(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn reported_patch_must_be_an_object() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let err = within(client.update_reported(json!([1, 2])))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    assert!(err.to_string().contains("an array"), "{err}");
    assert!(hub
        .publishes(1, "$iothub/twin/PATCH/properties/reported/")
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn twin_requests_time_out() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    // the subscriptions reach the hub before it goes silent (a silent endpoint swallows every
    // frame)
    eventually("subscribed and resynced", || {
        hub.publishes(1, "$iothub/twin/GET/").len() == 1
    })
    .await;
    hub.set_silent(true);
    let started = tokio::time::Instant::now();
    let err = within(client.get_twin()).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    // a late hub does not confuse the next request
    hub.set_silent(false);
    assert_eq!(within(client.get_twin()).await.unwrap().desired_version, 1);
}

#[tokio::test(start_paused = true)]
async fn desired_updates_in_order_without_duplicates() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    assert_eq!(
        within(desired.recv()).await.unwrap(),
        patch(1, json!({}), true)
    );
    assert_eq!(hub.set_desired(json!({"a": 1})).await, 2);
    // a repeat and a stale notification are dropped
    let topic = |v: u64| format!("$iothub/twin/PATCH/properties/desired/?$version={v}");
    hub.push(&topic(2), r#"{"a":1,"$version":2}"#);
    hub.push(&topic(1), r#"{"old":true,"$version":1}"#);
    hub.set_desired(json!({"b": {"c": 3}})).await;
    hub.set_desired(json!({"a": null})).await;
    assert_eq!(
        within(desired.recv()).await.unwrap(),
        patch(2, json!({"a": 1}), false)
    );
    assert_eq!(
        within(desired.recv()).await.unwrap(),
        patch(3, json!({"b": {"c": 3}}), false)
    );
    assert_eq!(
        within(desired.recv()).await.unwrap(),
        patch(4, json!({"a": null}), false)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(desired.try_recv(), None);
    // a second consumer starts from the whole current document
    let mut late = client.desired_updates();
    assert_eq!(
        within(late.recv()).await.unwrap(),
        patch(4, json!({"b": {"c": 3}}), true)
    );
}

#[tokio::test(start_paused = true)]
async fn a_version_gap_resyncs_the_whole_document() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    assert_eq!(within(desired.recv()).await.unwrap().version, 1);
    // version 2 never reaches the device; version 3 does
    hub.set_desired_unseen(json!({"x": 1})).await;
    hub.set_desired(json!({"y": 2})).await;
    assert_eq!(
        within(desired.recv()).await.unwrap(),
        patch(3, json!({"x": 1, "y": 2}), true)
    );
    hub.set_desired(json!({"z": 3})).await;
    assert_eq!(
        within(desired.recv()).await.unwrap(),
        patch(4, json!({"z": 3}), false)
    );
    // the resync was a second twin GET on the same session
    assert_eq!(hub.publishes(1, "$iothub/twin/GET/").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn unreadable_desired_notification_resyncs() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    assert_eq!(within(desired.recv()).await.unwrap().version, 1);
    hub.set_desired_unseen(json!({"x": 1})).await;
    hub.push(
        "$iothub/twin/PATCH/properties/desired/?$version=2",
        "{not json",
    );
    assert_eq!(
        within(desired.recv()).await.unwrap(),
        patch(2, json!({"x": 1}), true)
    );
}

#[tokio::test(start_paused = true)]
async fn telemetry_goes_out_at_least_once_with_its_properties() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut props = PropertyBag::new();
    props.set_system(SystemProperty::ContentType, "application/json");
    props.push("unit", Some("°C")).unwrap();
    client
        .send_telemetry(&b"{\"t\":21.5}"[..], &props)
        .await
        .unwrap();
    eventually("telemetry", || {
        !hub.publishes(1, "devices/dev-1/messages/events/")
            .is_empty()
    })
    .await;
    let m = &hub.publishes(1, "devices/dev-1/messages/events/")[0];
    assert_eq!(
        m.topic,
        "devices/dev-1/messages/events/%24.ct=application%2Fjson&unit=%C2%B0C"
    );
    assert_eq!(m.qos, QoS::AtLeastOnce);
    assert_eq!(&m.payload[..], b"{\"t\":21.5}");
    let err = client
        .send_telemetry(
            vec![0u8; crate::MAX_TELEMETRY_BYTES + 1],
            &PropertyBag::new(),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
}
