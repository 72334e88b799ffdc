//! `HubServer` over real loopback sockets: both endpoints from one configuration, the shutdown
//! order (a direct method invoked over REST still reaches its MQTT device while the server stops),
//! and bind failures that name the endpoint.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions, unwrap

mod mqtt_support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::timeout;

use iot_dm_core::method::MethodRequest;
use iot_dm_service::client::ServiceClient;
use iot_dm_service::mqtt::{Listener, MqttError};
use iot_dm_service::rest::RestError;
use iot_dm_service::{Hub, HubServer, HubServerError};

use iot_dm_service::api::prelude::*;
use mqtt_support::{fixture_with, Fixture, WAIT};

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn refuses(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

/// Waits (at most [`WAIT`]) until nothing accepts connections on `addr`.
async fn until_refused(addr: SocketAddr) {
    let refused = async {
        while !refuses(addr).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(WAIT, refused)
        .await
        .unwrap_or_else(|_| panic!("{addr} still accepts"));
}

#[tokio::test]
async fn both_endpoints_serve_and_stop_in_order() {
    let f = fixture_with(|b| b.rest_listen(any())).await;
    let rest = f.server.rest_addr().unwrap();
    let mut dev = f.device("both").await;
    dev.subscribe(&["$iothub/methods/POST/#"]).await;
    assert_eq!(f.hub.connected_devices(), 1);

    // the REST endpoint serves the same hub, over TLS with the same identity
    let client = ServiceClient::builder(&f.hub.service_connection_string("iothubowner").unwrap())
        .unwrap()
        .ca_pem(f.certs.ca_pem())
        .port(rest.port())
        .build()
        .unwrap();
    assert_eq!(
        client.get_device("both").await.unwrap().device_id.as_str(),
        "both"
    );

    // a direct method over REST, in flight when the server starts to stop
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            let req = MethodRequest::builder("drain")
                .payload(json!({}))
                .response_timeout_secs(10)
                .build()
                .unwrap();
            client.invoke_method("both", &req).await
        }
    });
    let req = dev.publish_on("$iothub/methods/POST/drain/").await;

    let Fixture { hub, server, .. } = f;
    let mqtt_addrs: Vec<SocketAddr> = server.mqtt_addrs().iter().map(|(_, a)| *a).collect();
    let tcp = server.mqtt_addr(Listener::Tcp).unwrap();
    let stopping = tokio::spawn(server.shutdown());
    // the MQTT listeners stop accepting first ...
    until_refused(tcp).await;
    assert!(
        !stopping.is_finished(),
        "the REST request is still in flight"
    );
    // ... while the device stays connected and answers the request in flight
    dev.answer_method(&req, 200, json!({"drained": true})).await;
    let response = timeout(WAIT, call).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.payload, json!({"drained": true}));

    // then MQTT closes its connections and the hub shuts down
    timeout(WAIT, stopping).await.unwrap().unwrap().unwrap();
    dev.closed().await;
    assert!(hub.is_closed());
    assert_eq!(hub.connected_devices(), 0);
    for addr in mqtt_addrs.into_iter().chain([rest]) {
        assert!(refuses(addr).await, "{addr} still accepts");
    }
}

#[tokio::test]
async fn a_taken_port_names_the_endpoint_and_the_address() {
    let hub = Hub::builder().in_memory().open().await.unwrap();
    let occupant = std::net::TcpListener::bind(any()).unwrap();
    let taken = occupant.local_addr().unwrap();

    let e = HubServer::builder(hub.clone())
        .mqtt_listen(Listener::Tcp, taken)
        .rest_listen(any())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(e, HubServerError::Mqtt(MqttError::Bind { listener: "tcp", addr, .. }) if addr == taken),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(message.starts_with("mqtt endpoint: "), "{message}");
    assert!(message.contains(&taken.to_string()), "{message}");

    let mqtt = {
        let free = std::net::TcpListener::bind(any()).unwrap();
        free.local_addr().unwrap()
    };
    let e = HubServer::builder(hub.clone())
        .mqtt_listen(Listener::Tcp, mqtt)
        .rest_listen(taken)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(e, HubServerError::Rest(RestError::Bind { addr, .. }) if addr == taken),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(message.starts_with("rest endpoint: "), "{message}");
    assert!(message.contains(&taken.to_string()), "{message}");

    // the MQTT endpoint started before the REST failure was stopped; the hub is left open for
    // another try
    until_refused(mqtt).await;
    assert!(!hub.is_closed());
    let server = HubServer::builder(hub.clone())
        .rest_listen(any())
        .start()
        .await
        .unwrap();
    server.shutdown().await.unwrap();
    assert!(hub.is_closed());
}
