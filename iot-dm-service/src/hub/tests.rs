//! Hub tests that drive device sessions with raw IoT Hub frames over the in-process link.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::link::{ConnectRequest, Credentials, DeviceFrame, Endpoint, Link, Message};
use iot_dm_core::method::MethodRequest;
use iot_dm_core::twin::{ConnectionState, TwinPatch};
use iot_dm_core::wire::{self, RequestId, SasToken, SymmetricKey};

use super::*;

const T0: i64 = 1_700_000_000;

async fn hub_with_clock() -> (Hub, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = Hub::builder()
        .clock(Arc::new(clock.clone()))
        .host_name("hub.example")
        .open()
        .await
        .unwrap();
    (hub, clock)
}

fn token_for(device: &Device, key: Option<&str>, ttl: i64) -> String {
    let key = key
        .map(str::to_string)
        .or_else(|| device.authentication.symmetric_key.primary_key.clone())
        .unwrap();
    let key = SymmetricKey::new(key).unwrap();
    let uri = wire::device_resource_uri("hub.example", &device.device_id);
    SasToken::generate(&uri, &key, Timestamp::from_unix_secs(T0 + ttl), None)
        .as_str()
        .to_string()
}

fn request(device: &Device, token: String) -> ConnectRequest {
    ConnectRequest {
        device_id: device.device_id.clone(),
        module_id: None,
        credentials: Credentials::Sas(token),
        clean_session: true,
    }
}

/// A raw device session for tests.
struct Raw {
    link: Link,
    rid: u64,
}

impl Raw {
    async fn connect(hub: &Hub, device: &Device) -> Raw {
        let link = hub
            .connect(request(device, token_for(device, None, 3600)))
            .await
            .unwrap();
        let mut raw = Raw { link, rid: 0 };
        raw.subscribe(&[
            wire::topic::TWIN_RESPONSE_FILTER,
            wire::topic::DESIRED_PATCH_FILTER,
            wire::topic::METHOD_REQUEST_FILTER,
        ])
        .await;
        raw
    }

    async fn subscribe(&mut self, filters: &[&str]) {
        self.link
            .tx
            .send(DeviceFrame::Subscribe(
                filters.iter().map(|s| s.to_string()).collect(),
            ))
            .await
            .unwrap();
    }

    async fn publish(&mut self, topic: String, body: impl Into<bytes::Bytes>) {
        self.link
            .tx
            .send(DeviceFrame::Publish(Message::new(topic, body)))
            .await
            .unwrap();
    }

    fn next_rid(&mut self) -> RequestId {
        self.rid += 1;
        RequestId::new(self.rid.to_string()).unwrap()
    }

    async fn recv(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.link.rx.recv())
            .await
            .expect("a message within 5 s")
            .expect("link open")
    }

    async fn get_twin(&mut self) -> (String, Value) {
        let rid = self.next_rid();
        self.publish(wire::topic::twin_get(&rid), "").await;
        let m = self.recv().await;
        (m.topic, serde_json::from_slice(&m.payload).unwrap())
    }

    async fn patch_reported(&mut self, patch: Value) -> Message {
        let rid = self.next_rid();
        self.publish(wire::topic::twin_patch_reported(&rid), patch.to_string())
            .await;
        self.recv().await
    }

    async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), async {
                while self.link.rx.recv().await.is_some() {}
            })
            .await,
            Ok(())
        )
    }
}

async fn device(hub: &Hub, id: &str) -> Device {
    hub.create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap()
}

#[tokio::test]
async fn registry_crud_and_typed_errors() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    assert_eq!(d.etag, "MQ==");
    assert_eq!(hub.get_device("d1").unwrap(), d);
    let err = hub
        .create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(err.is_conflict() && err.code() == 409_001);
    assert!(hub.get_device("nope").unwrap_err().is_not_found());
    let err = hub
        .delete_device("d1", Some("\"wrong\""))
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed());
    for i in 0..5 {
        device(&hub, &format!("e{i}")).await;
    }
    let p1 = hub.list_devices(None, 4).unwrap();
    assert_eq!(p1.items.len(), 4);
    let p2 = hub.list_devices(p1.continuation.as_deref(), 4).unwrap();
    assert_eq!(p2.items.len(), 2);
    assert!(p2.continuation.is_none());
    hub.delete_device("d1", Some(d.etag.as_str()))
        .await
        .unwrap();
    assert!(hub.get_device("d1").unwrap_err().is_not_found());
    assert!(hub.list_devices(None, 0).is_err());
}

#[tokio::test]
async fn twin_updates_with_etags() {
    let (hub, _) = hub_with_clock().await;
    device(&hub, "d1").await;
    let twin = hub.get_twin("d1").unwrap();
    let patch: TwinPatch = serde_json::from_value(
        json!({"tags": {"site": "n"}, "properties": {"desired": {"fan": 1}}}),
    )
    .unwrap();
    let t2 = hub
        .update_twin("d1", &patch, Some(twin.etag().as_str()))
        .await
        .unwrap();
    assert_eq!(t2.desired().version(), 2);
    let err = hub
        .update_twin("d1", &patch, Some(twin.etag().as_str()))
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed(), "{err}");
    let bad: TwinPatch = serde_json::from_value(json!({"tags": {"a b": 1}})).unwrap();
    let err = hub.update_twin("d1", &bad, None).await.unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert_eq!(hub.get_twin("d1").unwrap(), t2);
}

#[tokio::test]
async fn device_session_twin_round_trips() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    assert_eq!(
        hub.get_twin("d1").unwrap().connection_state,
        ConnectionState::Connected
    );
    let (topic, body) = dev.get_twin().await;
    assert_eq!(topic, "$iothub/twin/res/200/?$rid=1");
    assert_eq!(
        body,
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
    );

    let m = dev.patch_reported(json!({"fw": "1.0"})).await;
    assert_eq!(m.topic, "$iothub/twin/res/204/?$rid=2&$version=2");
    assert!(m.payload.is_empty());
    let twin = hub.get_twin("d1").unwrap();
    assert_eq!(twin.reported().doc().to_value(), json!({"fw": "1.0"}));

    // bad input: a typed error body, nothing changed
    let m = dev.patch_reported(json!({"bad key": 1})).await;
    assert!(
        m.topic.starts_with("$iothub/twin/res/400/?$rid=3"),
        "{}",
        m.topic
    );
    let err: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(err["errorCode"], 400_004);
    let m = {
        let rid = dev.next_rid();
        dev.publish(wire::topic::twin_patch_reported(&rid), "{not json")
            .await;
        dev.recv().await
    };
    assert!(m.topic.starts_with("$iothub/twin/res/400/"));
    assert_eq!(hub.get_twin("d1").unwrap().reported().version(), 2);

    // pipelined patches are acknowledged in order
    for i in 0..20 {
        let rid = RequestId::new(format!("p{i}")).unwrap();
        dev.publish(
            wire::topic::twin_patch_reported(&rid),
            json!({"n": i}).to_string(),
        )
        .await;
    }
    for i in 0..20 {
        let m = dev.recv().await;
        assert_eq!(
            m.topic,
            format!("$iothub/twin/res/204/?$rid=p{i}&$version={}", 3 + i)
        );
    }
}

#[tokio::test]
async fn desired_patches_reach_the_device_in_order() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    // make sure the subscription was processed
    dev.get_twin().await;
    for i in 0..10 {
        let p: TwinPatch =
            serde_json::from_value(json!({"properties": {"desired": {"step": i}}})).unwrap();
        hub.update_twin("d1", &p, None).await.unwrap();
    }
    for i in 0..10u64 {
        let m = dev.recv().await;
        assert_eq!(
            m.topic,
            format!("$iothub/twin/PATCH/properties/desired/?$version={}", i + 2)
        );
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body, json!({"step": i, "$version": i + 2}));
    }
    // a replace sends the whole desired document
    let p: TwinPatch =
        serde_json::from_value(json!({"properties": {"desired": {"only": true}}})).unwrap();
    hub.replace_twin("d1", &p, None).await.unwrap();
    let body: Value = serde_json::from_slice(&dev.recv().await.payload).unwrap();
    assert_eq!(body, json!({"only": true, "$version": 12}));
}

#[tokio::test]
async fn credentials_are_checked() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let other = device(&hub, "d2").await;
    let secondary = d.authentication.symmetric_key.secondary_key.clone();
    assert!(hub
        .connect(request(&d, token_for(&d, secondary.as_deref(), 60)))
        .await
        .is_ok());
    let wrong = other.authentication.symmetric_key.primary_key.clone();
    assert!(hub
        .connect(request(&d, token_for(&d, wrong.as_deref(), 60)))
        .await
        .is_err());
    // a token for d2 cannot open d1's session
    assert!(hub
        .connect(request(&d, token_for(&other, None, 60)))
        .await
        .is_err());
    // expired
    assert!(hub
        .connect(request(&d, token_for(&d, None, -1)))
        .await
        .is_err());
    let mut unknown = request(&d, token_for(&d, None, 60));
    unknown.device_id = "ghost".parse().unwrap();
    assert!(hub.connect(unknown).await.is_err());
    let mut garbage = request(&d, "SharedAccessSignature nope".into());
    garbage.clean_session = false;
    assert!(hub.connect(garbage).await.is_err());
}

#[tokio::test]
async fn disable_closes_the_session_and_refuses_reconnects() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    hub.disable_device("d1", "stolen").await.unwrap();
    assert!(dev.closed().await);
    assert!(hub
        .connect(request(&d, token_for(&d, None, 60)))
        .await
        .is_err());
    let t = hub.get_twin("d1").unwrap();
    assert_eq!(t.status_reason.as_deref(), Some("stolen"));
    hub.enable_device("d1").await.unwrap();
    assert!(hub
        .connect(request(&d, token_for(&d, None, 60)))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_new_connection_replaces_the_old() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut first = Raw::connect(&hub, &d).await;
    let mut second = Raw::connect(&hub, &d).await;
    assert!(first.closed().await);
    second.get_twin().await;
    assert_eq!(hub.connected_devices(), 1);
}

#[tokio::test]
async fn key_regeneration_closes_the_session() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    let d2 = hub.regenerate_key("d1", KeyKind::Primary).await.unwrap();
    assert_ne!(
        d2.authentication.symmetric_key.primary_key,
        d.authentication.symmetric_key.primary_key
    );
    assert!(dev.closed().await);
    assert!(hub
        .connect(request(&d, token_for(&d, None, 60)))
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn sas_expiry_closes_the_session() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let link = hub
        .connect(request(&d, token_for(&d, None, 30)))
        .await
        .unwrap();
    let mut dev = Raw { link, rid: 0 };
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(dev.closed().await);
}

#[tokio::test]
async fn methods_round_trip_and_fail_typed() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let req = MethodRequest::builder("reboot")
        .payload(json!({"delay": 1}))
        .build()
        .unwrap();
    let err = hub.invoke_method("d1", &req).await.unwrap_err();
    assert!(err.is_not_online() && err.code() == 404_103);
    assert!(hub
        .invoke_method("ghost", &req)
        .await
        .unwrap_err()
        .is_not_found());

    let mut dev = Raw::connect(&hub, &d).await;
    dev.get_twin().await;
    let hub2 = hub.clone();
    let call = tokio::spawn(async move { hub2.invoke_method("d1", &req).await });
    let m = dev.recv().await;
    assert!(
        m.topic.starts_with("$iothub/methods/POST/reboot/?$rid="),
        "{}",
        m.topic
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&m.payload).unwrap(),
        json!({"delay": 1})
    );
    let rid = m.topic.rsplit("$rid=").next().unwrap().to_string();
    dev.publish(
        format!("$iothub/methods/res/200/?$rid={rid}"),
        r#"{"ok":true}"#,
    )
    .await;
    let resp = call.await.unwrap().unwrap();
    assert_eq!((resp.status, resp.payload), (200, json!({"ok": true})));
}

#[tokio::test(start_paused = true)]
async fn method_timeout_is_a_gateway_timeout() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    dev.get_twin().await;
    let req = MethodRequest::builder("slow")
        .response_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = hub.invoke_method("d1", &req).await.unwrap_err();
    assert!(err.is_timeout() && err.code() == 504_101, "{err}");
}

#[tokio::test]
async fn many_concurrent_methods() {
    let (hub, _) = hub_with_clock().await;
    let mut devs = Vec::new();
    for i in 0..4 {
        let d = device(&hub, &format!("d{i}")).await;
        let mut raw = Raw::connect(&hub, &d).await;
        raw.get_twin().await;
        devs.push(raw);
    }
    // each device echoes its requests' payloads
    for mut dev in devs {
        tokio::spawn(async move {
            while let Some(m) = dev.link.rx.recv().await {
                let rid = m.topic.rsplit("$rid=").next().unwrap().to_string();
                dev.publish(format!("$iothub/methods/res/201/?$rid={rid}"), m.payload)
                    .await;
            }
        });
    }
    let mut calls = Vec::new();
    for i in 0..200 {
        let hub = hub.clone();
        calls.push(tokio::spawn(async move {
            let req = MethodRequest::builder("echo")
                .payload(json!(i))
                .build()
                .unwrap();
            hub.invoke_method(&format!("d{}", i % 4), &req).await
        }));
    }
    for (i, c) in calls.into_iter().enumerate() {
        let r = c.await.unwrap().unwrap();
        assert_eq!((r.status, r.payload), (201, json!(i)));
    }
}

#[tokio::test]
async fn lifecycle_plan_provision_retire_replace() {
    let (hub, _) = hub_with_clock().await;
    let mut events = hub.events();
    let twin = hub
        .plan_device(DeviceSpec::new("p1".parse().unwrap()).tags(json!({"site": "north"})))
        .await
        .unwrap();
    assert_eq!(twin.tags().to_value(), json!({"site": "north"}));
    let planned = hub.get_device("p1").unwrap();
    assert_eq!(planned.state().as_str(), "planned");
    assert!(hub.enable_device("p1").await.is_err());
    let d = hub.provision_device("p1", None).await.unwrap();
    let mut dev = Raw::connect(&hub, &d).await;
    dev.patch_reported(json!({"fw": "1"})).await;

    hub.retire_device("p1").await.unwrap();
    assert!(dev.closed().await);
    assert!(hub.get_twin("p1").unwrap_err().is_not_found());
    let archived = hub.get_archived_twin("p1").unwrap();
    assert_eq!(archived.reported().doc().to_value(), json!({"fw": "1"}));
    assert!(hub
        .connect(request(&d, token_for(&d, None, 60)))
        .await
        .is_err());

    let new = hub
        .replace_device("p1", DeviceSpec::new("p1b".parse().unwrap()))
        .await
        .unwrap();
    let t = hub.get_twin("p1b").unwrap();
    assert_eq!(t.tags().to_value(), json!({"site": "north"}));
    assert!(t.reported().doc().is_empty());
    assert_eq!(
        hub.get_device("p1").unwrap().lifecycle.successor(),
        Some(&new.device_id)
    );
    assert!(hub
        .replace_device("p1", DeviceSpec::new("p1c".parse().unwrap()))
        .await
        .is_err());
    hub.delete_device("p1", None).await.unwrap();
    assert!(hub.get_archived_twin("p1").is_err());

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(seen
        .iter()
        .any(|e| matches!(e, HubEvent::Lifecycle { to: Some(s), .. } if s.as_str() == "retired")));
    assert!(seen.iter().any(|e| matches!(
        e,
        HubEvent::TwinChanged {
            actor: Actor::Device,
            ..
        }
    )));
    assert!(seen
        .iter()
        .any(|e| matches!(e, HubEvent::IdentityDeleted { .. })));
}

#[tokio::test]
async fn a_device_cannot_touch_another_devices_topics() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    device(&hub, "d2").await;
    let mut dev = Raw::connect(&hub, &d).await;
    dev.subscribe(&["devices/d2/messages/devicebound/#"]).await;
    assert!(dev.closed().await);
    let mut dev = Raw::connect(&hub, &d).await;
    dev.publish("devices/d2/messages/events/".into(), "x").await;
    assert!(dev.closed().await);
}

#[tokio::test]
async fn telemetry_reaches_subscribers() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut rx = hub.telemetry();
    let mut dev = Raw::connect(&hub, &d).await;
    dev.publish(
        "devices/d1/messages/events/%24.ct=application%2Fjson&k=v".into(),
        "{\"t\":1}",
    )
    .await;
    let t = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.device_id.as_str(), "d1");
    assert_eq!(t.properties.content_type(), Some("application/json"));
    assert_eq!(t.properties.get("k"), Some(Some("v")));
    assert_eq!(&t.body[..], b"{\"t\":1}");
}

#[tokio::test]
async fn restart_reloads_everything_acknowledged() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let hub = Hub::builder().store(store.clone()).open().await.unwrap();
    let d = device(&hub, "d1").await;
    hub.plan_device(DeviceSpec::new("p".parse().unwrap()))
        .await
        .unwrap();
    hub.patch_reported("d1", &json!({"x": 1})).await.unwrap();
    let p: TwinPatch = serde_json::from_value(json!({"tags": {"t": 1}})).unwrap();
    hub.update_twin("d1", &p, None).await.unwrap();
    let before = hub.get_twin("d1").unwrap();
    drop(hub);
    let hub = Hub::builder().store(store).open().await.unwrap();
    assert_eq!(
        hub.get_device("d1").unwrap().authentication,
        d.authentication
    );
    let after = hub.get_twin("d1").unwrap();
    assert_eq!(after.to_json(), {
        let mut b = before.to_json();
        b["connectionState"] = json!("Disconnected");
        b
    });
    assert_eq!(hub.get_device("p").unwrap().state().as_str(), "planned");
}

fn import(id: &str, mode: ImportMode) -> ImportDevice {
    let mut d = ImportDevice::new(id.parse().unwrap());
    d.import_mode = mode;
    d
}

#[tokio::test]
async fn bulk_reports_per_device() {
    let (hub, _) = hub_with_clock().await;
    device(&hub, "exists").await;
    let mut with_tags = import("new-1", ImportMode::Create);
    with_tags.tags = Some(json!({"batch": 7}));
    let mut bad_tags = import("new-2", ImportMode::Create);
    bad_tags.tags = Some(json!({"bad key": 1}));
    let r = hub
        .bulk(vec![
            with_tags,
            bad_tags,
            import("exists", ImportMode::Create),
            import("missing", ImportMode::Update),
            import("exists", ImportMode::Delete).clone(),
        ])
        .await;
    // the same id twice in one call is refused whole
    assert!(matches!(r, Err(HubError::InvalidInput { .. })));
    let r = hub
        .bulk(vec![
            {
                let mut d = import("new-1", ImportMode::Create);
                d.tags = Some(json!({"batch": 7}));
                d
            },
            {
                let mut d = import("new-2", ImportMode::Create);
                d.tags = Some(json!({"bad key": 1}));
                d
            },
            import("exists", ImportMode::Create),
            import("missing", ImportMode::Update),
        ])
        .await
        .unwrap();
    assert!(!r.is_successful);
    let failed: Vec<_> = r
        .errors
        .iter()
        .map(|e| (e.device_id.as_str(), e.error_code.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("new-2", "400004"),
            ("exists", "409001"),
            ("missing", "404001")
        ]
    );
    assert_eq!(
        hub.get_twin("new-1").unwrap().tags().to_value(),
        json!({"batch": 7})
    );
    assert!(hub.get_device("new-2").is_err());
    let too_many: Vec<_> = (0..101)
        .map(|i| import(&format!("x{i}"), ImportMode::Create))
        .collect();
    assert!(matches!(
        hub.bulk(too_many).await,
        Err(HubError::TooManyDevices {
            count: 101,
            limit: 100
        })
    ));
    // etag-checked delete
    let etag = hub.get_device("exists").unwrap().etag;
    let mut del = import("exists", ImportMode::DeleteIfMatchETag);
    del.etag = Some("wrong".into());
    assert!(!hub.bulk(vec![del.clone()]).await.unwrap().is_successful);
    del.etag = Some(etag.to_string());
    assert!(hub.bulk(vec![del]).await.unwrap().is_successful);
}

#[tokio::test]
async fn export_then_import_round_trips() {
    let (hub, _) = hub_with_clock().await;
    for i in 0..250 {
        let spec = DeviceSpec::new(format!("dev-{i:03}").parse().unwrap())
            .tags(json!({"n": i, "group": format!("g{}", i % 3)}))
            .desired(json!({"interval": i}));
        let spec = if i % 10 == 0 {
            spec.disabled("maintenance")
        } else {
            spec
        };
        hub.create_device(spec).await.unwrap();
    }
    hub.patch_reported("dev-001", &json!({"fw": "2.0"}))
        .await
        .unwrap();
    hub.plan_device(DeviceSpec::new("planned".parse().unwrap()).tags(json!({"p": 1})))
        .await
        .unwrap();
    hub.retire_device("dev-005").await.unwrap();
    let mut buf = Vec::new();
    let n = hub.export_devices(&mut buf, true).await.unwrap();
    assert_eq!(n, 251);
    assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 251);

    let (copy, _) = hub_with_clock().await;
    let mut chunks = Vec::new();
    let report = copy
        .import_devices(&buf[..], |lines| chunks.push(lines))
        .await
        .unwrap();
    assert_eq!(
        (report.succeeded, report.failed.len()),
        (251, 0),
        "{:?}",
        report.failed
    );
    assert_eq!(chunks.len(), 3);
    for id in ["dev-000", "dev-001", "dev-117", "planned", "dev-005"] {
        let a = hub.get_device(id).unwrap();
        let b = copy.get_device(id).unwrap();
        assert_eq!(a.authentication, b.authentication, "{id}");
        assert_eq!(
            (a.state(), a.status, &a.status_reason),
            (b.state(), b.status, &b.status_reason),
            "{id}"
        );
    }
    let (a, b) = (
        hub.get_twin("dev-001").unwrap(),
        copy.get_twin("dev-001").unwrap(),
    );
    assert_eq!(a.tags(), b.tags());
    assert_eq!(a.desired().doc(), b.desired().doc());
    assert_eq!(a.reported().doc(), b.reported().doc());
    assert!(copy.get_archived_twin("dev-005").is_ok());
    // exporting the copy gives the same content
    let mut again = Vec::new();
    copy.export_devices(&mut again, true).await.unwrap();
    let strip = |b: &[u8]| -> Vec<Value> {
        b.split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut v: Value = serde_json::from_slice(l).unwrap();
                for k in ["eTag", "twinETag"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&buf), strip(&again));
    // bad lines are reported, not fatal
    let report = copy
        .import_devices(
            &b"{\"id\":\"ok-1\"}\nnot json\n{\"id\":\"bad id\"}\n"[..],
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.succeeded, 1);
    assert_eq!(
        report.failed.iter().map(|f| f.0).collect::<Vec<_>>(),
        [2, 3]
    );
}

#[tokio::test]
async fn cloud_to_device_is_queued_delivered_acknowledged_and_redelivered() {
    let (hub, clock) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let id = hub
        .send_c2d("d1", CloudMessage::new("first").property("k", "v a/l"))
        .await
        .unwrap();
    hub.send_c2d("d1", CloudMessage::new("second").message_id("m-2"))
        .await
        .unwrap();
    assert_eq!(hub.get_twin("d1").unwrap().cloud_to_device_message_count, 2);

    let mut dev = Raw::connect(&hub, &d).await;
    dev.subscribe(&["devices/d1/messages/devicebound/#"]).await;
    let m1 = dev.recv().await;
    let m2 = dev.recv().await;
    assert_eq!(&m1.payload[..], b"first");
    assert_eq!(m1.qos, iot_dm_core::link::QoS::AtLeastOnce);
    let bag = m1
        .topic
        .strip_prefix("devices/d1/messages/devicebound/")
        .unwrap();
    let bag = wire::PropertyBag::parse(bag).unwrap();
    assert_eq!(bag.get("k"), Some(Some("v a/l")));
    assert_eq!(bag.message_id(), Some(id.as_str()));
    assert_eq!(&m2.payload[..], b"second");

    // acknowledge the first only; the second comes again on the next session
    dev.link
        .tx
        .send(DeviceFrame::Ack(m1.ack_id.unwrap()))
        .await
        .unwrap();
    for _ in 0..100 {
        if hub.get_twin("d1").unwrap().cloud_to_device_message_count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.get_twin("d1").unwrap().cloud_to_device_message_count, 1);
    drop(dev);
    let mut dev = Raw::connect(&hub, &d).await;
    dev.subscribe(&["devices/d1/messages/devicebound/#"]).await;
    assert_eq!(&dev.recv().await.payload[..], b"second");

    // the queue is bounded, and bodies are too
    for i in 1..MAX_PENDING {
        hub.send_c2d("d1", CloudMessage::new(format!("n{i}")))
            .await
            .unwrap();
    }
    let err = hub
        .send_c2d("d1", CloudMessage::new("one too many"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 403_004);
    assert!(hub
        .send_c2d("d1", CloudMessage::new(vec![0u8; MAX_BODY + 1]))
        .await
        .is_err());
    // expired messages are dropped
    clock.advance(DEFAULT_TTL + Duration::from_secs(1));
    hub.send_c2d("d1", CloudMessage::new("fresh"))
        .await
        .unwrap();
    assert_eq!(hub.get_twin("d1").unwrap().cloud_to_device_message_count, 1);
    assert_eq!(hub.purge_c2d("d1").await.unwrap(), 1);
}

#[tokio::test]
async fn reported_patches_replay_from_the_log() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let open = || {
        Hub::builder()
            .store(store.clone())
            .checkpoint_interval(Duration::from_secs(3600))
            .open()
    };
    let hub = open().await.unwrap();
    device(&hub, "a").await;
    device(&hub, "b").await;
    for i in 0..50 {
        hub.patch_reported("a", &json!({"n": i})).await.unwrap();
    }
    let log_len = store.len(crate::store::Table::Log).await.unwrap();
    assert_eq!(log_len, 50, "patches go to the log, not the record");
    let before = hub.get_twin("a").unwrap();
    drop(hub);

    // no checkpoint ran: the record is old, the log brings it up to date
    let hub = open().await.unwrap();
    let after = hub.get_twin("a").unwrap();
    assert_eq!(after.reported(), before.reported());
    assert_eq!(after.version(), before.version());

    // a checkpoint folds the log into records
    assert_eq!(hub.checkpoint().await.unwrap(), 1);
    assert_eq!(store.len(crate::store::Table::Log).await.unwrap(), 0);
    hub.patch_reported("a", &json!({"after": true}))
        .await
        .unwrap();
    // a record write after logged patches supersedes them
    hub.patch_reported("b", &json!({"x": 1})).await.unwrap();
    let p: TwinPatch = serde_json::from_value(json!({"tags": {"t": 1}})).unwrap();
    hub.update_twin("b", &p, None).await.unwrap();
    hub.patch_reported("b", &json!({"y": 2})).await.unwrap();
    // logged patches of a deleted device must not reach a new device with the same id
    hub.patch_reported("a", &json!({"old": 1})).await.unwrap();
    hub.delete_device("a", None).await.unwrap();
    device(&hub, "a").await;
    let (a, b) = (hub.get_twin("a").unwrap(), hub.get_twin("b").unwrap());
    drop(hub);
    let hub = open().await.unwrap();
    assert_eq!(hub.get_twin("a").unwrap().reported(), a.reported());
    assert!(hub.get_twin("a").unwrap().reported().doc().is_empty());
    let b2 = hub.get_twin("b").unwrap();
    assert_eq!(b2.reported(), b.reported());
    assert_eq!(b2.tags(), b.tags());
    assert_eq!(b2.reported().doc().to_value(), json!({"x": 1, "y": 2}));
}

#[tokio::test]
async fn a_write_racing_a_checkpoint_is_not_lost() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let open = || {
        Hub::builder()
            .store(store.clone())
            .checkpoint_interval(Duration::from_secs(3600))
            .open()
    };
    let hub = open().await.unwrap();
    device(&hub, "a").await;
    device(&hub, "b").await;
    hub.patch_reported("a", &json!({"n": 1})).await.unwrap();
    // the checkpoint has taken its watermark and its dirty set ...
    let plan = persist::plan_checkpoint(&hub.inner);
    // ... when b reports and a reports again
    hub.patch_reported("b", &json!({"late": true}))
        .await
        .unwrap();
    hub.patch_reported("a", &json!({"n": 2})).await.unwrap();
    persist::finish_checkpoint(&hub.inner, plan).await.unwrap();
    drop(hub);
    let hub = open().await.unwrap();
    assert_eq!(
        hub.get_twin("b").unwrap().reported().doc().to_value(),
        json!({"late": true})
    );
    assert_eq!(
        hub.get_twin("a").unwrap().reported().doc().to_value(),
        json!({"n": 2})
    );
}

#[tokio::test]
async fn shutdown_closes_sessions_and_releases_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = Hub::builder()
        .path(&path)
        .clock(Arc::new(clock))
        .host_name("hub.example")
        .open()
        .await
        .unwrap();
    let d = device(&hub, "d1").await;
    let token = token_for(&d, None, 3600);
    let mut dev = Raw::connect(&hub, &d).await;
    hub.patch_reported("d1", &json!({"x": 1})).await.unwrap();
    let keep = hub.clone();
    hub.shutdown().await.unwrap();
    assert!(dev.closed().await);
    assert!(matches!(
        keep.patch_reported("d1", &json!({"x": 2})).await,
        Err(HubError::Closed)
    ));
    assert!(keep.connect(request(&d, token)).await.is_err());
    // the file is free at once, with the other handle still alive
    let again = Hub::builder().path(&path).open().await.unwrap();
    assert_eq!(
        again.get_twin("d1").unwrap().reported().doc().to_value(),
        json!({"x": 1})
    );
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn ca_certificates_are_validated_and_persist() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let hub = Hub::builder().store(store.clone()).open().await.unwrap();
    let certs = crate::mqtt::dev_certs::DevCerts::generate().unwrap();
    assert!(hub
        .add_ca_certificate("bad name", certs.ca_pem())
        .await
        .is_err());
    assert!(hub.add_ca_certificate("x", "not pem").await.is_err());
    let ca = hub
        .add_ca_certificate("root-1", certs.ca_pem())
        .await
        .unwrap();
    assert_eq!(ca.sha256_thumbprint.len(), 64);
    hub.shutdown().await.unwrap();
    let hub = Hub::builder().store(store).open().await.unwrap();
    assert_eq!(hub.ca_certificates(), [ca]);
    hub.remove_ca_certificate("root-1").await.unwrap();
    assert!(hub.ca_certificates().is_empty());
    assert!(hub.remove_ca_certificate("root-1").await.is_err());
}
