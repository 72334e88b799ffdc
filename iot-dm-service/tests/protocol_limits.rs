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
use iot_dm_service::tls::dev_certs::DevCerts;
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

/// A body over the limit gets its 413 (and a request refused before its body is read gets its
/// answer) even when the client sends all of it before reading
/// (the hub reads and discards up to 4 MiB of it rather than closing the connection with the
/// body unread, which resets it and loses the answer), over HTTPS as back ends use it.
#[tokio::test]
async fn a_body_over_the_limit_gets_a_readable_413() {
    let hub = Hub::builder()
        .in_memory()
        .host_name(HOST)
        .open()
        .await
        .unwrap();
    let token = owner_token(&hub);
    let certs = DevCerts::generate().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = HubServer::builder(hub)
        .rest_listen(any)
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
        .start()
        .await
        .unwrap();
    let addr = server.rest_addr().unwrap();
    let tls = tokio_rustls::TlsConnector::from(certs.client_config().unwrap());
    // a body over the limit, chunked or not, and one refused before it is read (api-version)
    let cases = [
        (false, "2021-04-12", "413"),
        (true, "2021-04-12", "413"),
        (false, "1999-01-01", "400"),
    ];
    for (chunked, version, expected) in cases {
        let body = vec![b' '; 3 << 20];
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
        let mut conn = tls.connect(name, tcp).await.unwrap();
        let framing = if chunked {
            "transfer-encoding: chunked".to_string()
        } else {
            format!("content-length: {}", body.len())
        };
        let head = format!(
            "POST /devices/query?api-version={version} HTTP/1.1\r\nhost: {HOST}\r\n\
             authorization: {token}\r\ncontent-type: application/json\r\n{framing}\r\n\r\n"
        );
        // all of it first, as a simple client does; a reset shows as a write or read error
        let sent = async {
            conn.write_all(head.as_bytes()).await?;
            if chunked {
                for part in body.chunks(64 << 10) {
                    conn.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                        .await?;
                    conn.write_all(part).await?;
                    conn.write_all(b"\r\n").await?;
                }
                conn.write_all(b"0\r\n\r\n").await?;
            } else {
                // in 8 KiB writes, as HTTP clients send bodies
                for part in body.chunks(8 << 10) {
                    conn.write_all(part).await?;
                    conn.flush().await?;
                }
            }
            conn.flush().await
        };
        let sent = timeout(WAIT, sent).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 8192];
        timeout(WAIT, async {
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            sent.is_ok() && text.starts_with(&format!("HTTP/1.1 {expected}")),
            "chunked {chunked}: sent {sent:?}, answer {:?}",
            &text[..text.len().min(200)]
        );
    }
    server.shutdown().await.unwrap();
}

fn owner_token(hub: &Hub) -> String {
    ServiceConnectionString::parse(&hub.service_connection_string("iothubowner").unwrap())
        .unwrap()
        .sas_token(Timestamp::now() + Duration::from_secs(3600))
        .as_str()
        .to_string()
}
