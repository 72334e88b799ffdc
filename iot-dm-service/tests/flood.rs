//! A flood of connections that never authenticate does not starve real devices or back ends.
//!
//! One process opens sockets from 127.0.0.2 to the MQTT/TLS port and to the REST port that
//! never send a byte, more than each server's connection limit. While they are held, a real
//! device from 127.0.0.1 connects over TLS and a back end calls the REST API: both within a
//! second. A client that sends its request body a byte at a time is answered 408 and
//! disconnected once the body read time is up.

#![allow(clippy::unwrap_used)]

mod mqtt_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

use iot_dm_service::api::prelude::*;
use iot_dm_service::client::ServiceClient;
use iot_dm_service::mqtt::Listener;
use mqtt_support::{fixture_with, Dev};

/// Sockets the flood opens (more than the connection limit below).
const FLOOD: usize = 600;
/// The servers' connection limits in this test.
const MAX_CONNECTIONS: usize = 400;

async fn flood_socket(to: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind("127.0.0.2:0".parse().unwrap()).ok()?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(to))
        .await
        .ok()?
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_flood_does_not_starve_devices_or_back_ends() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let f = fixture_with(|b| {
        b.mqtt_max_connections(MAX_CONNECTIONS)
            .rest_listen(any)
            .rest_max_connections(MAX_CONNECTIONS)
    })
    .await;
    let tls = f.addr(Listener::Tls);
    let rest = f.server.rest_addr().unwrap();
    let token = f.sas_device("good").await;

    // the flood: sockets that never start their TLS handshake, held open, on both ports
    let mut held = Vec::with_capacity(2 * FLOOD);
    for to in [tls, rest] {
        for _ in 0..FLOOD {
            if let Some(s) = flood_socket(to).await {
                held.push(s);
            }
        }
    }
    assert!(
        held.len() >= 2 * MAX_CONNECTIONS,
        "only {} flood sockets connected",
        held.len()
    );
    // let the server accept what it will
    tokio::time::sleep(Duration::from_millis(200)).await;

    // a real device connects over TLS within a second
    let started = Instant::now();
    let mut dev = Dev::start(f.options("good", &token, f.tls()));
    let ack = tokio::time::timeout(Duration::from_secs(1), dev.connack())
        .await
        .expect("the device was not answered within 1 s during the flood")
        .expect("the device's connection failed during the flood");
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let device_took = started.elapsed();

    // a back end calls REST within a second
    let cs = f.hub.service_connection_string("iothubowner").unwrap();
    let client = ServiceClient::builder(&cs)
        .unwrap()
        .ca_pem(f.certs.ca_pem())
        .port(rest.port())
        .build()
        .unwrap();
    let started = Instant::now();
    let device = tokio::time::timeout(Duration::from_secs(1), client.get_device("good"))
        .await
        .expect("REST was not answered within 1 s during the flood")
        .unwrap();
    assert_eq!(device.device_id.as_str(), "good");
    let rest_took = started.elapsed();
    eprintln!(
        "during a flood of {} sockets: device connected in {device_took:?}, REST answered in {rest_took:?}",
        held.len()
    );
    drop(held);
}

/// A request whose body arrives a byte at a time is answered 408 once the body read time is
/// up, and its connection is closed: it cannot hold a place for ever.
#[tokio::test]
async fn a_slow_request_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let f = fixture_with(|b| {
        b.rest_listen(any)
            .rest_with(|r| r.body_read_timeout(Duration::from_millis(600)))
    })
    .await;
    let rest = f.server.rest_addr().unwrap();
    f.sas_device("slow").await;
    let cs = iot_dm_core::wire::ServiceConnectionString::parse(
        &f.hub.service_connection_string("iothubowner").unwrap(),
    )
    .unwrap();
    let token = cs.sas_token(iot_dm_core::clock::Timestamp::now() + Duration::from_secs(3600));
    let connector = tokio_rustls::TlsConnector::from(f.certs.client_config().unwrap());
    let tcp = TcpStream::connect(rest).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let body = r#"{"tags":{"slow":true}}"#;
    let head = format!(
        "PATCH /twins/slow?api-version=2021-04-12 HTTP/1.1\r\nhost: localhost\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        token.as_str(),
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut sent = 0;
    loop {
        let mut buf = [0u8; 1024];
        tokio::select! {
            n = tls.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)), if sent < body.len() => {
                if tls.write_all(&body.as_bytes()[sent..sent + 1]).await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the slow request was not cut off"
        );
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(sent < body.len(), "the whole body arrived ({sent} bytes)");
    // nothing was written
    assert!(f
        .hub
        .get_twin("slow")
        .unwrap()
        .tags()
        .to_value()
        .get("slow")
        .is_none());
}
