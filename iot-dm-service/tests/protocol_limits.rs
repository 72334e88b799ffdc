//! Protocol limits over real loopback sockets: a packet over the MQTT size limit, a second
//! CONNECT on one connection, and the REST endpoint's connection limit. Each one closes what
//! broke the rule, acknowledges nothing it refused, and leaves the rest serviceable.

#![allow(clippy::unwrap_used)]

mod mqtt_support;

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish as RawPublish};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::wire::ServiceConnectionString;
use iot_dm_service::mqtt::Listener;
use iot_dm_service::{Hub, HubServer};

use mqtt_support::{fixture_with, Raw, HOST, WAIT};

const EVENTS: &str = "devices/limit-dev/messages/events/";

fn publish(topic: &str, body: usize, pkid: u16) -> Packet {
    let mut p = RawPublish::new(topic, QoS::AtLeastOnce, "x".repeat(body));
    p.pkid = pkid;
    Packet::Publish(p)
}

/// Reads until the server closes, and says whether a PUBACK came before.
async fn acked_before_close(raw: &mut Raw) -> bool {
    let mut acked = false;
    while let Some(p) = raw.recv().await {
        acked |= matches!(p, Packet::PubAck(_));
    }
    acked
}

#[tokio::test]
async fn a_packet_over_the_size_limit_closes_the_connection_unacknowledged() {
    let f = fixture_with(|b| b.mqtt_with(|m| m.max_packet_size(4096))).await;
    let tok = f.sas_device("limit-dev").await;
    let addr = f.addr(Listener::Tcp);

    let (mut raw, ack) = Raw::connect(addr, "limit-dev", &tok, 60, None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    raw.send(publish(EVENTS, 5000, 1)).await;
    assert!(
        !acked_before_close(&mut raw).await,
        "a packet over the limit was acknowledged"
    );

    // the same device, within the limit, on a new connection
    let (mut raw, _) = Raw::connect(addr, "limit-dev", &tok, 60, None).await;
    raw.send(publish(EVENTS, 3000, 2)).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubAck(a)) if a.pkid == 2));
}

#[tokio::test]
async fn a_second_connect_closes_the_connection() {
    let f = fixture_with(|b| b).await;
    let tok = f.sas_device("limit-dev").await;
    let addr = f.addr(Listener::Tcp);

    let (mut raw, ack) = Raw::connect(addr, "limit-dev", &tok, 60, None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let mut again = Connect::new("limit-dev");
    again.set_login(
        format!("{HOST}/limit-dev/?api-version=2021-04-12"),
        tok.as_str(),
    );
    raw.send(Packet::Connect(again)).await;
    // sent right behind the second CONNECT: never taken
    raw.send(publish(EVENTS, 10, 3)).await;
    let mut saw_connack = false;
    let mut acked = false;
    while let Some(p) = raw.recv().await {
        saw_connack |= matches!(p, Packet::ConnAck(_));
        acked |= matches!(p, Packet::PubAck(_));
    }
    assert!(!saw_connack, "a second CONNECT was answered");
    assert!(!acked, "a PUBLISH after a second CONNECT was acknowledged");

    let (mut raw, ack) = Raw::connect(addr, "limit-dev", &tok, 60, None).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
}

/// A REST request on a fresh connection; `None` when the server closed it unanswered.
async fn status_on(conn: &mut TcpStream, token: &str) -> Option<u16> {
    let request = format!(
        "GET /statistics/service?api-version=2021-04-12 HTTP/1.1\r\nhost: {HOST}\r\n\
         authorization: {token}\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = timeout(WAIT, conn.read(&mut buf)).await.unwrap().ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn rest_connections_past_the_limit_are_closed_and_the_limit_frees_up() {
    let hub = Hub::builder()
        .in_memory()
        .host_name(HOST)
        .open()
        .await
        .unwrap();
    let token =
        ServiceConnectionString::parse(&hub.service_connection_string("iothubowner").unwrap())
            .unwrap()
            .sas_token(Timestamp::now() + Duration::from_secs(3600))
            .as_str()
            .to_string();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = HubServer::builder(hub)
        .rest_listen(any)
        .rest_max_connections(2)
        .start()
        .await
        .unwrap();
    let addr = server.rest_addr().unwrap();

    // two keep-alive connections, each served, held open
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert_eq!(status_on(&mut first, &token).await, Some(200));
    assert_eq!(status_on(&mut second, &token).await, Some(200));

    // a third is closed without an answer
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        status_on(&mut third, &token).await,
        None,
        "served past the limit"
    );

    // the held ones still serve
    assert_eq!(status_on(&mut first, &token).await, Some(200));

    // once one is gone, a new connection is served (the server notices the close first)
    drop(second);
    timeout(WAIT, async {
        loop {
            let mut next = TcpStream::connect(addr).await.unwrap();
            if status_on(&mut next, &token).await == Some(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a freed place is given to a new connection");
    server.shutdown().await.unwrap();
}
