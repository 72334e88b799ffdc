//! The hub's tests of device sessions: authentication, replacement and closing, twin topics, methods, telemetry, cloud-to-device messages.

use super::*;
use iot_dm_core::link::ConnectRefused;

#[tokio::test]
async fn device_session_twin_round_trips() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    assert_eq!(
        hub.get_twin("d1").unwrap().identity.connection_state,
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
async fn credentials_are_checked() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let other = device(&hub, "d2").await;
    let secondary = d.symmetric_key.secondary_key.clone();
    assert!(hub
        .connect(request(&d, token_for(&d, secondary.as_deref(), 60)))
        .await
        .is_ok());
    let wrong = other.symmetric_key.primary_key.clone();
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

/// A device token must be signed for this hub: `sr` is the hub's host name, alone or with
/// the device's path; another host, another device or a bare path is refused.
#[tokio::test]
async fn a_token_for_another_hub_is_refused() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let key = SymmetricKey::new(d.symmetric_key.primary_key.clone().unwrap()).unwrap();
    let signed_for = |sr: &str| {
        SasToken::generate(sr, &key, Timestamp::from_unix_secs(T0 + 60), None)
            .as_str()
            .to_string()
    };
    for ok in [
        "hub.example/devices/d1",
        "hub.example",
        "HUB.example/devices/d1",
    ] {
        assert!(
            hub.connect(request(&d, signed_for(ok))).await.is_ok(),
            "sr={ok} was refused"
        );
    }
    for bad in [
        "other.example/devices/d1",
        "evil.hub.example/devices/d1",
        "hub.example.evil/devices/d1",
        "other.example",
        "hub.example/devices/d2",
        "devices/d1",
        "",
    ] {
        let refused = hub.connect(request(&d, signed_for(bad))).await;
        assert!(
            matches!(refused, Err(ConnectRefused::NotAuthorized { .. })),
            "sr={bad:?} was not refused as unauthorized"
        );
    }
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
    assert_eq!(t.identity.status_reason.as_deref(), Some("stolen"));
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
    assert_ne!(d2.symmetric_key.primary_key, d.symmetric_key.primary_key);
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
    assert_eq!(
        hub.get_twin("d1")
            .unwrap()
            .identity
            .cloud_to_device_message_count,
        2
    );

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
        if hub
            .get_twin("d1")
            .unwrap()
            .identity
            .cloud_to_device_message_count
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        hub.get_twin("d1")
            .unwrap()
            .identity
            .cloud_to_device_message_count,
        1
    );
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
        .send_c2d("d1", CloudMessage::new(vec![0u8; MAX_C2D_BODY + 1]))
        .await
        .is_err());
    // expired messages are dropped
    clock.advance(DEFAULT_TTL + Duration::from_secs(1));
    hub.send_c2d("d1", CloudMessage::new("fresh"))
        .await
        .unwrap();
    assert_eq!(
        hub.get_twin("d1")
            .unwrap()
            .identity
            .cloud_to_device_message_count,
        1
    );
    assert_eq!(hub.purge_c2d("d1").await.unwrap(), 1);
}
