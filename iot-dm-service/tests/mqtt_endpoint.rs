//! The MQTT endpoint over real loopback sockets, with rumqttc as the device (and raw packets
//! for protocol violations). Every wait is bounded.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions, unwrap

mod mqtt_support;

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, LastWill, Packet, Publish as RawPublish, Subscribe,
    SubscribeReasonCode,
};
use rumqttc::{ConnectionError, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use iot_dm_core::method::MethodRequest;
use iot_dm_core::twin::TwinPatch;
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{Authentication, CloudMessage, DeviceSpec};
use iot_dm_service::mqtt::Listener;
use iot_dm_service::tls::dev_certs::{DevCerts, DeviceCertificate};

use mqtt_support::{fixture, fixture_with, token, Dev, Raw, HOST, WAIT};

#[tokio::test]
async fn sas_over_tls_connects() {
    let f = fixture().await;
    let dev = f.device("tls-dev").await;
    assert_eq!(f.hub.connected_devices(), 1);
    dev.client.disconnect().await.unwrap();
    f.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_key_disabled_and_unknown_devices_get_connack_5() {
    let f = fixture().await;
    let good = f.sas_device("known").await;
    // wrong key
    let bad = token("known", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let mut dev = Dev::start(f.options("known", &bad, f.tls()));
    assert!(matches!(
        dev.connack().await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    ));
    // unknown device
    let mut dev = Dev::start(f.options(
        "nobody",
        &token("nobody", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        f.tls(),
    ));
    assert!(matches!(
        dev.connack().await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    ));
    // disabled device
    f.hub.disable_device("known", "test").await.unwrap();
    let mut dev = Dev::start(f.options("known", &good, f.tls()));
    assert!(matches!(
        dev.connack().await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    ));
    // username naming another device than the client id
    let (mut raw, ack) = {
        let mut raw = Raw::open(f.addr(Listener::Tcp)).await;
        let mut c = Connect::new("known");
        c.set_login(
            format!("{HOST}/other/?api-version=2021-04-12"),
            good.as_str(),
        );
        raw.send(Packet::Connect(c)).await;
        let Some(Packet::ConnAck(a)) = raw.recv().await else {
            panic!()
        };
        (raw, a)
    };
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
    raw.closed().await;
    assert_eq!(f.hub.connected_devices(), 0);
}

#[tokio::test]
async fn twin_get_and_reported_patch_round_trip() {
    let f = fixture().await;
    let mut dev = f.device("twin-dev").await;
    let codes = dev
        .subscribe(&["$iothub/twin/res/#", "$iothub/methods/POST/#"])
        .await;
    assert_eq!(
        codes,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 2]
    );

    dev.client
        .publish("$iothub/twin/GET/?$rid=7c9e-1", QoS::AtMostOnce, false, "")
        .await
        .unwrap();
    let res = dev.publish_on("$iothub/twin/res/").await;
    assert_eq!(res.topic, "$iothub/twin/res/200/?$rid=7c9e-1");
    let body: Value = serde_json::from_slice(&res.payload).unwrap();
    assert_eq!(body["desired"]["$version"], 1);
    assert_eq!(body["reported"]["$version"], 1);

    dev.client
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=42",
            QoS::AtLeastOnce,
            false,
            json!({"battery": 90}).to_string(),
        )
        .await
        .unwrap();
    let res = dev.publish_on("$iothub/twin/res/").await;
    assert_eq!(res.topic, "$iothub/twin/res/204/?$rid=42&$version=2");
    assert!(res.payload.is_empty());
    let twin = f.hub.get_twin("twin-dev").unwrap();
    assert_eq!(twin.reported().version(), 2);
}

#[tokio::test]
async fn desired_patch_arrives_with_its_version() {
    let f = fixture().await;
    let mut dev = f.device("desired-dev").await;
    dev.subscribe(&["$iothub/twin/PATCH/properties/desired/#"])
        .await;
    let patch: TwinPatch =
        serde_json::from_value(json!({"properties": {"desired": {"interval": 5}}})).unwrap();
    f.hub
        .update_twin("desired-dev", &patch, None)
        .await
        .unwrap();
    let p = dev.publish_on("$iothub/twin/PATCH/").await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    let body: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(body, json!({"interval": 5, "$version": 2}));
}

#[tokio::test]
async fn direct_method_is_answered() {
    let f = fixture().await;
    let mut dev = f.device("method-dev").await;
    dev.subscribe(&["$iothub/methods/POST/#"]).await;
    let hub = f.hub.clone();
    let call = tokio::spawn(async move {
        let req = MethodRequest::builder("reboot")
            .payload(json!({"delay": 1}))
            .connect_timeout_secs(5)
            .response_timeout_secs(10)
            .build()
            .unwrap();
        hub.invoke_method("method-dev", &req).await
    });
    let req = dev.publish_on("$iothub/methods/POST/").await;
    assert!(
        req.topic.starts_with("$iothub/methods/POST/reboot/?$rid="),
        "{}",
        req.topic
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&req.payload).unwrap(),
        json!({"delay": 1})
    );
    dev.answer_method(&req, 200, json!({"ok": true})).await;
    let response = timeout(WAIT, call).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.payload, json!({"ok": true}));
}

#[tokio::test]
async fn telemetry_with_properties_reaches_the_hub() {
    let f = fixture().await;
    let mut telemetry = f.hub.telemetry();
    let dev = f.device("tele-dev").await;
    dev.client
        .publish(
            "devices/tele-dev/messages/events/%24.mid=m1&%24.ct=application%2Fjson&room=kitchen",
            QoS::AtLeastOnce,
            false,
            r#"{"t":21}"#,
        )
        .await
        .unwrap();
    let t = timeout(WAIT, telemetry.recv()).await.unwrap().unwrap();
    assert_eq!(t.device_id.as_str(), "tele-dev");
    assert_eq!(t.properties.message_id(), Some("m1"));
    assert_eq!(t.properties.content_type(), Some("application/json"));
    assert_eq!(t.properties.get("room"), Some(Some("kitchen")));
    assert_eq!(t.body.as_ref(), br#"{"t":21}"#);
}

#[tokio::test]
async fn c2d_arrives_at_qos1_and_puback_completes_it() {
    let f = fixture().await;
    let mut dev = f.device("c2d-dev").await;
    dev.subscribe(&["devices/c2d-dev/messages/devicebound/#"])
        .await;
    f.hub
        .send_c2d("c2d-dev", CloudMessage::new("hello").property("k", "v"))
        .await
        .unwrap();
    let m = dev
        .publish_on("devices/c2d-dev/messages/devicebound/")
        .await;
    assert_eq!(m.qos, QoS::AtLeastOnce);
    assert_eq!(m.payload.as_ref(), b"hello");
    assert!(m.topic.contains("k=v"), "{}", m.topic);
    // rumqttc acknowledges automatically; the queue empties once the PUBACK is through
    timeout(WAIT, async {
        while f
            .hub
            .get_device("c2d-dev")
            .unwrap()
            .identity
            .cloud_to_device_message_count
            != 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the PUBACK completes the message");
}

#[tokio::test]
async fn qos2_publish_closes_the_connection() {
    let f = fixture().await;
    let tok = f.sas_device("qos2-dev").await;
    let addr = f.addr(Listener::Tcp);
    let (mut raw, ack) = Raw::connect(addr, "qos2-dev", &tok, 60, None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let mut p = RawPublish::new(
        "devices/qos2-dev/messages/events/",
        rumqttc::mqttbytes::QoS::ExactlyOnce,
        "x",
    );
    p.pkid = 1;
    raw.send(Packet::Publish(p)).await;
    raw.closed().await;
}

#[tokio::test]
async fn malformed_packet_closes_only_that_connection() {
    let f = fixture().await;
    let a = f.sas_device("mal-a").await;
    let b = f.sas_device("mal-b").await;
    let addr = f.addr(Listener::Tcp);
    let (mut ra, _) = Raw::connect(addr, "mal-a", &a, 60, None).await;
    let (mut rb, _) = Raw::connect(addr, "mal-b", &b, 60, None).await;
    // reserved packet type 0
    ra.tcp.write_all(&[0x00, 0x00]).await.unwrap();
    ra.closed().await;
    rb.send(Packet::PingReq).await;
    assert_eq!(rb.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn subscription_to_another_devices_topic_fails_in_suback() {
    let f = fixture().await;
    let mut dev = f.device("sub-a").await;
    let codes = dev
        .subscribe(&[
            "devices/sub-b/messages/devicebound/#",
            "devices/sub-a/messages/devicebound/#",
            "#",
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
        ]
    );
    // the connection is still fine
    let raw_addr = f.addr(Listener::Tcp);
    let tok = f.sas_device("sub-raw").await;
    let (mut raw, _) = Raw::connect(raw_addr, "sub-raw", &tok, 60, None).await;
    raw.send(Packet::Subscribe(Subscribe::new(
        "$iothub/twin/res/#",
        rumqttc::mqttbytes::QoS::ExactlyOnce,
    )))
    .await;
    match raw.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            vec![SubscribeReasonCode::Success(
                rumqttc::mqttbytes::QoS::AtLeastOnce
            )]
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn second_connection_drops_the_first() {
    let f = fixture().await;
    let tok = f.sas_device("twice").await;
    let addr = f.addr(Listener::Tcp);
    let (mut first, a) = Raw::connect(addr, "twice", &tok, 60, None).await;
    assert_eq!(a.code, ConnectReturnCode::Success);
    let (mut second, b) = Raw::connect(addr, "twice", &tok, 60, None).await;
    assert_eq!(b.code, ConnectReturnCode::Success);
    first.closed().await;
    second.send(Packet::PingReq).await;
    assert_eq!(second.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn disabling_the_device_closes_the_socket() {
    let f = fixture().await;
    let mut dev = f.device("to-disable").await;
    f.hub.disable_device("to-disable", "stolen").await.unwrap();
    dev.closed().await;
    timeout(WAIT, async {
        while f.hub.connected_devices() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn keep_alive_timeout_closes_an_idle_connection() {
    let f = fixture().await;
    let tok = f.sas_device("idle").await;
    let addr = f.addr(Listener::Tcp);
    let (mut raw, _) = Raw::connect(addr, "idle", &tok, 1, None).await;
    let start = tokio::time::Instant::now();
    // traffic resets the timer: ping at 1 s, so nothing closes before 2.5 s
    tokio::time::sleep(Duration::from_millis(1000)).await;
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    raw.closed().await;
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(2400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
}

#[tokio::test]
async fn will_is_forwarded_on_an_ungraceful_close_only() {
    let f = fixture().await;
    let mut telemetry = f.hub.telemetry();
    let tok = f.sas_device("willy").await;
    let addr = f.addr(Listener::Tcp);
    let will = || {
        LastWill::new(
            "devices/willy/messages/events/",
            "gone",
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            false,
        )
    };
    // graceful: DISCONNECT, no will
    let (mut raw, _) = Raw::connect(addr, "willy", &tok, 60, Some(will())).await;
    raw.send(Packet::Disconnect).await;
    raw.closed().await;
    // ungraceful: the socket just goes away
    let (raw, _) = Raw::connect(addr, "willy", &tok, 60, Some(will())).await;
    drop(raw);
    let t = timeout(WAIT, telemetry.recv()).await.unwrap().unwrap();
    assert_eq!(t.body.as_ref(), b"gone");
    assert_eq!(t.properties.get("iothub-MessageType"), Some(Some("Will")));
    assert!(telemetry.try_recv().is_err(), "only one will");
}

#[tokio::test]
async fn x509_self_signed_thumbprint_authenticates() {
    let f = fixture().await;
    let cert = DeviceCertificate::self_signed("x509-dev").unwrap();
    f.hub
        .create_device(
            DeviceSpec::new("x509-dev".parse().unwrap())
                .authentication(Authentication::self_signed(cert.sha1_thumbprint(), None)),
        )
        .await
        .unwrap();
    let config = f.certs.client_config_with_identity(&cert).unwrap();
    let mut dev = Dev::start(f.options(
        "x509-dev",
        "",
        Transport::Tls(TlsConfiguration::Rustls(config)),
    ));
    assert_eq!(
        dev.connack().await.unwrap().code,
        ConnectReturnCode::Success
    );
    // another certificate for the same device is refused
    let other = DeviceCertificate::self_signed("x509-dev").unwrap();
    let config = f.certs.client_config_with_identity(&other).unwrap();
    let mut dev = Dev::start(f.options(
        "x509-dev",
        "",
        Transport::Tls(TlsConfiguration::Rustls(config)),
    ));
    assert!(matches!(
        dev.connack().await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    ));
    // no certificate and no password
    let mut dev = Dev::start(f.options("x509-dev", "", f.tls()));
    assert!(matches!(
        dev.connack().await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    ));
}

#[tokio::test]
async fn x509_ca_signed_certificates_authenticate() {
    let f = fixture().await;
    for id in ["ca-dev", "ca-other"] {
        f.hub
            .create_device(
                DeviceSpec::new(id.parse().unwrap())
                    .authentication(Authentication::certificate_authority()),
            )
            .await
            .unwrap();
    }
    let connack = |cert: &DeviceCertificate| {
        let config = f.certs.client_config_with_identity(cert).unwrap();
        let mut dev = Dev::start(f.options(
            "ca-dev",
            "",
            Transport::Tls(TlsConfiguration::Rustls(config)),
        ));
        async move { dev.connack().await.map(|c| c.code) }
    };
    let refused = |r: Result<ConnectReturnCode, ConnectionError>| {
        matches!(
            r,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::NotAuthorized
            ))
        )
    };
    let cert = f.certs.issue_device_certificate("ca-dev").unwrap();
    // no CA registered yet
    assert!(refused(connack(&cert).await));
    f.hub
        .add_ca_certificate("dev-ca", f.certs.ca_pem())
        .await
        .unwrap();
    assert_eq!(connack(&cert).await.unwrap(), ConnectReturnCode::Success);
    // a certificate for another device (its common name) cannot open this device
    let other = f.certs.issue_device_certificate("ca-other").unwrap();
    assert!(refused(connack(&other).await));
    // a self-signed certificate, and one from an unregistered CA, are refused
    let own = DeviceCertificate::self_signed("ca-dev").unwrap();
    assert!(refused(connack(&own).await));
    let foreign = DevCerts::generate()
        .unwrap()
        .issue_device_certificate("ca-dev")
        .unwrap();
    assert!(refused(connack(&foreign).await));
    // removing the CA revokes what it vouched for
    f.hub.remove_ca_certificate("dev-ca").await.unwrap();
    assert!(refused(connack(&cert).await));
}

#[tokio::test]
async fn websocket_connects_over_tls_and_plain() {
    let f = fixture().await;
    let tok = f.sas_device("ws-dev").await;
    let wss = Transport::Wss(TlsConfiguration::Rustls(f.certs.client_config().unwrap()));
    let mut dev = Dev::start(f.options("ws-dev", &tok, wss));
    assert_eq!(
        dev.connack().await.unwrap().code,
        ConnectReturnCode::Success
    );
    dev.subscribe(&["$iothub/twin/res/#"]).await;
    dev.client
        .publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, false, " ")
        .await
        .unwrap();
    assert_eq!(
        dev.publish_on("$iothub/twin/res/").await.topic,
        "$iothub/twin/res/200/?$rid=1"
    );

    let mut dev = Dev::start(f.options("ws-dev", &tok, Transport::Ws));
    assert_eq!(
        dev.connack().await.unwrap().code,
        ConnectReturnCode::Success
    );
    let codes = dev.subscribe(&["$iothub/methods/POST/#"]).await;
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
}

#[tokio::test]
async fn connections_past_the_limit_are_refused() {
    let f = fixture_with(|b| b.mqtt_max_connections(1)).await;
    let tok = f.sas_device("only-one").await;
    let addr = f.addr(Listener::Tcp);
    let (mut first, a) = Raw::connect(addr, "only-one", &tok, 60, None).await;
    assert_eq!(a.code, ConnectReturnCode::Success);
    assert_eq!(f.connections(), 1);
    let mut second = Raw::open(addr).await;
    let mut c = Connect::new("only-one");
    c.set_login(format!("{HOST}/only-one/"), tok.as_str());
    // the server may already have closed the socket: ignore write errors
    let mut out = BytesMut::new();
    Packet::Connect(c).write(&mut out, usize::MAX).unwrap();
    let _ = second.tcp.write_all(&out).await;
    assert_eq!(second.recv().await, None, "no CONNACK past the limit");
    // the first connection is unaffected
    first.send(Packet::PingReq).await;
    assert_eq!(first.recv().await, Some(Packet::PingResp));
    drop(first);
    // once it is gone, a new connection gets in
    timeout(WAIT, async {
        while f.connections() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let (_third, a) = Raw::connect(addr, "only-one", &tok, 60, None).await;
    assert_eq!(a.code, ConnectReturnCode::Success);
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let f = fixture().await;
    let tok = f.sas_device("shut").await;
    let addr = f.addr(Listener::Tcp);
    let (mut raw, _) = Raw::connect(addr, "shut", &tok, 60, None).await;
    timeout(WAIT, f.server.shutdown()).await.unwrap().unwrap();
    raw.closed().await;
    // the listener is gone
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn packets_sent_together_with_connect_are_answered() {
    let f = fixture().await;
    let tok = f.sas_device("eager").await;
    let mut raw = Raw::open(f.addr(Listener::Tcp)).await;
    let mut c = Connect::new("eager");
    c.set_login(
        format!("{HOST}/eager/?api-version=2021-04-12"),
        tok.as_str(),
    );
    let mut out = BytesMut::new();
    Packet::Connect(c).write(&mut out, usize::MAX).unwrap();
    Packet::Subscribe(Subscribe::new(
        "$iothub/twin/res/#",
        rumqttc::mqttbytes::QoS::AtMostOnce,
    ))
    .write(&mut out, usize::MAX)
    .unwrap();
    // one write: CONNECT and SUBSCRIBE arrive in the same segment
    raw.tcp.write_all(&out).await.unwrap();
    assert!(
        matches!(raw.recv().await, Some(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success)
    );
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
}

/// A QoS 1 PUBLISH the hub refuses is never acknowledged: the connection closes without a
/// PUBACK, so the device cannot believe it was delivered. A good one on the same kind of
/// connection is acknowledged.
#[tokio::test]
async fn a_refused_publish_gets_no_puback() {
    let f = fixture().await;
    let tok = f.sas_device("pub-dev").await;
    f.sas_device("pub-other").await;
    let addr = f.addr(Listener::Tcp);
    let big = "x".repeat(iot_dm_service::mqtt::MAX_TELEMETRY + 1);
    let refused: [(&str, &str); 7] = [
        ("devices/pub-other/messages/events/", "x"),
        ("devices/pub-dev/messages/events/#", "x"),
        ("devices/pub-dev/messages/events/+", "x"),
        ("devices/pub-dev/messages/events/a\0b", "x"),
        ("$iothub/unknown/topic", "x"),
        ("", "x"),
        ("devices/pub-dev/messages/events/", &big),
    ];
    for (topic, body) in refused {
        let (mut raw, ack) = Raw::connect(addr, "pub-dev", &tok, 60, None).await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        let mut p = RawPublish::new(topic, rumqttc::mqttbytes::QoS::AtLeastOnce, body);
        p.pkid = 7;
        raw.send(Packet::Publish(p)).await;
        while let Some(packet) = raw.recv().await {
            assert!(
                !matches!(packet, Packet::PubAck(_)),
                "PUBLISH to {topic:?} was acknowledged"
            );
        }
    }
    let (mut raw, _) = Raw::connect(addr, "pub-dev", &tok, 60, None).await;
    let mut p = RawPublish::new(
        "devices/pub-dev/messages/events/",
        rumqttc::mqttbytes::QoS::AtLeastOnce,
        "x".repeat(iot_dm_service::mqtt::MAX_TELEMETRY),
    );
    p.pkid = 8;
    raw.send(Packet::Publish(p)).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubAck(a)) if a.pkid == 8));
}
