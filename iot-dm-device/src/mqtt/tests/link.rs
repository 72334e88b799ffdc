//! The transport over real sockets against the minimal peer.

use std::time::Duration;

use bytes::Bytes;
use iot_dm_core::link::{DeviceFrame, Link, Message, QoS};
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish};
use rumqttc::mqttbytes::QoS as MqttQoS;
use rumqttc::ConnectReturnCode;
use serde_json::json;

use super::peer::{Behaviour, Peer, Seen};
use super::*;
use crate::transport::Transport;
use crate::{DeviceClient, DeviceCredentials, PropertyBag};

const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
const WAIT: Duration = Duration::from_secs(10);

fn transport(peer: &Peer) -> MqttTransport {
    MqttTransport::builder("127.0.0.1")
        .port(peer.addr.port())
        .without_tls()
        .ack_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

async fn open(peer: &mut Peer) -> Link {
    let link = transport(peer).connect(request(sas())).await.unwrap();
    assert!(matches!(
        peer.next().await,
        Seen::Packet(Packet::Connect(_))
    ));
    link
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("done within 10s")
}

#[tokio::test]
async fn connect_sends_the_identity_and_returns_once_accepted() {
    let mut peer = Peer::start(Behaviour {
        session_present: true,
        ..Behaviour::default()
    })
    .await;
    let link = transport(&peer).connect(request(sas())).await.unwrap();
    assert!(link.session_present);
    let Seen::Packet(Packet::Connect(c)) = peer.next().await else {
        panic!("no CONNECT")
    };
    assert_eq!(c.client_id, "dev-1");
    assert!(!c.clean_session);
    assert_eq!(c.keep_alive, 60);
    let login = c.login.unwrap();
    assert!(login
        .username
        .starts_with("127.0.0.1/dev-1/?api-version=2021-04-12&DeviceClientType="));
    assert!(login.password.starts_with("SharedAccessSignature "));
}

#[tokio::test]
async fn refusals_and_unreachable_hubs_are_typed() {
    let peer = Peer::start(Behaviour {
        connack: ConnectReturnCode::NotAuthorized,
        ..Behaviour::default()
    })
    .await;
    let err = transport(&peer).connect(request(sas())).await.unwrap_err();
    assert!(err.is_not_authorized(), "{err}");

    peer.set(|b| b.connack = ConnectReturnCode::ServiceUnavailable);
    let err = transport(&peer).connect(request(sas())).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Refused(ConnectRefused::ServerUnavailable { .. })
        ),
        "{err}"
    );

    // nobody listening
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let t = MqttTransport::builder("127.0.0.1")
        .port(port)
        .without_tls()
        .build()
        .unwrap();
    let err = t.connect(request(sas())).await.unwrap_err();
    assert!(matches!(err, TransportError::Io { .. }), "{err}");
}

#[tokio::test]
async fn tls_to_a_plain_server_fails_the_handshake() {
    let peer = Peer::start(Behaviour::default()).await;
    let t = MqttTransport::builder("localhost")
        .port(peer.addr.port())
        .ca_pem(TEST_CERT_PEM)
        .network_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let err = within(t.connect(request(sas()))).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Tls { .. } | TransportError::Io { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn subscribe_waits_for_suback_and_a_refused_filter_closes_the_link() {
    let mut peer = Peer::start(Behaviour {
        refuse_filter: Some("devices/other/messages/devicebound/#".into()),
        ..Behaviour::default()
    })
    .await;
    let mut link = open(&mut peer).await;
    let filters = vec![
        "$iothub/twin/res/#".to_string(),
        "devices/dev-1/messages/devicebound/#".to_string(),
    ];
    within(link.tx.send(DeviceFrame::Subscribe(filters)))
        .await
        .unwrap();
    let Packet::Subscribe(s) = peer
        .next_matching(|p| matches!(p, Packet::Subscribe(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(s.filters.len(), 2, "one SUBSCRIBE for both filters");
    assert_eq!(s.filters[0].qos, MqttQoS::AtMostOnce);
    assert_eq!(s.filters[1].qos, MqttQoS::AtLeastOnce);

    within(
        link.tx
            .send(DeviceFrame::Unsubscribe(vec!["$iothub/twin/res/#".into()])),
    )
    .await
    .unwrap();

    let other = vec!["devices/other/messages/devicebound/#".to_string()];
    assert!(within(link.tx.send(DeviceFrame::Subscribe(other)))
        .await
        .is_err());
    assert!(within(link.rx.recv()).await.is_none(), "the link closed");
    assert!(matches!(
        peer.next().await,
        Seen::Packet(Packet::Unsubscribe(_))
    ));
    let Seen::Packet(Packet::Subscribe(s)) = peer.next().await else {
        panic!("no second SUBSCRIBE")
    };
    assert_eq!(s.filters[0].path, "devices/other/messages/devicebound/#");
}

#[tokio::test]
async fn an_unanswered_subscribe_times_out_and_closes_the_link() {
    let mut peer = Peer::start(Behaviour {
        suback: false,
        ..Behaviour::default()
    })
    .await;
    let mut link = open(&mut peer).await;
    let started = tokio::time::Instant::now();
    let res = within(
        link.tx
            .send(DeviceFrame::Subscribe(vec!["$iothub/twin/res/#".into()])),
    )
    .await;
    assert!(res.is_err());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited the ack timeout"
    );
    assert!(within(link.rx.recv()).await.is_none());
}

#[tokio::test]
async fn a_qos1_publish_completes_at_puback() {
    let mut peer = Peer::start(Behaviour {
        puback: false,
        ..Behaviour::default()
    })
    .await;
    let Link { mut tx, rx, .. } = open(&mut peer).await;
    let telemetry =
        Message::new("devices/dev-1/messages/events/", "hello").with_qos(QoS::AtLeastOnce);
    let sending = tokio::spawn(async move {
        let r = tx.send(DeviceFrame::Publish(telemetry)).await;
        (tx, r)
    });
    let Packet::Publish(p) = peer
        .next_matching(|p| matches!(p, Packet::Publish(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(p.qos, MqttQoS::AtLeastOnce);
    assert_eq!(&p.payload[..], b"hello");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sending.is_finished(), "waits for the PUBACK");
    peer.send(Packet::PubAck(PubAck::new(p.pkid)));
    let (mut tx, result) = within(sending).await.unwrap();
    result.unwrap();

    // QoS 0 completes at once
    within(tx.send(DeviceFrame::Publish(Message::new(
        "$iothub/twin/GET/?$rid=1",
        "",
    ))))
    .await
    .unwrap();
    drop(rx);
}

#[tokio::test]
async fn incoming_qos1_messages_are_acknowledged_by_ack_frames() {
    let mut peer = Peer::start(Behaviour::default()).await;
    let mut link = open(&mut peer).await;
    let mut c2d = Publish::new(
        "devices/dev-1/messages/devicebound/%24.mid=m1",
        MqttQoS::AtLeastOnce,
        Vec::new(),
    );
    c2d.pkid = 7;
    c2d.payload = Bytes::from_static(b"to the device");
    peer.send(Packet::Publish(c2d));
    peer.send(Packet::Publish(Publish::new(
        "$iothub/methods/POST/reboot/?$rid=1",
        MqttQoS::AtMostOnce,
        "{}",
    )));
    let m = within(link.rx.recv()).await.unwrap();
    assert_eq!(m.topic, "devices/dev-1/messages/devicebound/%24.mid=m1");
    assert_eq!(m.payload, Bytes::from_static(b"to the device"));
    assert_eq!(m.qos, QoS::AtLeastOnce);
    let ack_id = m.ack_id.expect("an ack id");
    let method = within(link.rx.recv()).await.unwrap();
    assert_eq!((method.qos, method.ack_id), (QoS::AtMostOnce, None));

    within(link.tx.send(DeviceFrame::Ack(ack_id)))
        .await
        .unwrap();
    let Packet::PubAck(a) = peer.next_matching(|p| matches!(p, Packet::PubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(a.pkid, 7);
    // an unknown ack id is ignored
    within(link.tx.send(DeviceFrame::Ack(ack_id)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dropped_connection_closes_the_link_without_reconnecting() {
    let mut peer = Peer::start(Behaviour::default()).await;
    let mut link = open(&mut peer).await;
    peer.close();
    assert!(matches!(peer.next().await, Seen::Closed));
    assert!(within(link.rx.recv()).await.is_none());
    let res = within(
        link.tx
            .send(DeviceFrame::Subscribe(vec!["$iothub/twin/res/#".into()])),
    )
    .await;
    assert!(res.is_err());
    // no second CONNECT: the transport does not reconnect by itself
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(peer.seen.try_recv().is_err());
}

#[tokio::test]
async fn dropping_the_link_sends_disconnect() {
    let mut peer = Peer::start(Behaviour::default()).await;
    let link = open(&mut peer).await;
    drop(link);
    assert!(matches!(
        peer.next().await,
        Seen::Packet(Packet::Disconnect)
    ));
}

#[tokio::test]
async fn device_client_over_mqtt() {
    let mut peer = Peer::start(Behaviour::default()).await;
    let creds = DeviceCredentials::symmetric_key("127.0.0.1", DeviceId::new("dev-1").unwrap(), KEY)
        .unwrap();
    let client = within(
        DeviceClient::builder(creds, transport(&peer))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
            .connect(),
    )
    .await
    .unwrap();
    let mut c2d = client.cloud_messages();
    let twin = within(client.get_twin()).await.unwrap();
    assert_eq!(twin.desired, json!({"mode": "eco"}));
    assert_eq!(twin.desired_version, 3);
    assert_eq!(
        within(client.update_reported(json!({"fw": "1.0"})))
            .await
            .unwrap(),
        2
    );
    within(client.send_telemetry("t1", &PropertyBag::new()))
        .await
        .unwrap();
    let Packet::Publish(p) = peer
        .next_matching(|p| matches!(p, Packet::Publish(p) if p.topic.starts_with("devices/")))
        .await
    else {
        unreachable!()
    };
    assert_eq!(
        (p.topic.as_str(), p.qos),
        ("devices/dev-1/messages/events/", MqttQoS::AtLeastOnce)
    );

    let mut m = Publish::new(
        "devices/dev-1/messages/devicebound/",
        MqttQoS::AtLeastOnce,
        "c2d",
    );
    m.pkid = 3;
    peer.send(Packet::Publish(m));
    assert_eq!(
        within(c2d.recv()).await.unwrap().payload,
        Bytes::from_static(b"c2d")
    );
    let Packet::PubAck(a) = peer.next_matching(|p| matches!(p, Packet::PubAck(_))).await else {
        unreachable!()
    };
    assert_eq!(a.pkid, 3);

    // the peer drops the connection: the client reconnects with a new CONNECT and
    // subscribes again
    peer.close();
    assert!(matches!(
        peer.next_matching(|p| matches!(p, Packet::Connect(_)))
            .await,
        Packet::Connect(_)
    ));
    peer.next_matching(|p| matches!(p, Packet::Subscribe(_)))
        .await;
    within(client.get_twin()).await.unwrap();
    within(client.close()).await;
    peer.next_matching(|p| matches!(p, Packet::Disconnect))
        .await;
}

#[tokio::test]
async fn an_oversized_publish_is_dropped_and_the_link_stays_up() {
    let mut peer = Peer::start(Behaviour::default()).await;
    let t = MqttTransport::builder("127.0.0.1")
        .port(peer.addr.port())
        .without_tls()
        .max_packet_size(1024)
        .build()
        .unwrap();
    let mut link = t.connect(request(sas())).await.unwrap();
    let big = Message::new("devices/dev-1/messages/events/", vec![b'x'; 2000]);
    within(link.tx.send(DeviceFrame::Publish(big)))
        .await
        .unwrap();
    let small = Message::new("devices/dev-1/messages/events/", "small");
    within(link.tx.send(DeviceFrame::Publish(small)))
        .await
        .unwrap();
    let Packet::Publish(p) = peer
        .next_matching(|p| matches!(p, Packet::Publish(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(
        &p.payload[..],
        b"small",
        "the oversized publish never went out"
    );
}

#[tokio::test]
async fn a_send_cancelled_while_awaiting_its_ack_closes_the_link() {
    let mut peer = Peer::start(Behaviour {
        puback: false,
        ..Behaviour::default()
    })
    .await;
    let Link { mut tx, mut rx, .. } = open(&mut peer).await;
    let telemetry = Message::new("devices/dev-1/messages/events/", "t").with_qos(QoS::AtLeastOnce);
    let sending = tokio::spawn(async move { tx.send(DeviceFrame::Publish(telemetry)).await });
    peer.next_matching(|p| matches!(p, Packet::Publish(_)))
        .await;
    sending.abort();
    let _ = sending.await;
    assert!(within(rx.recv()).await.is_none(), "the link closed");
    assert!(matches!(peer.next().await, Seen::Closed));
}
