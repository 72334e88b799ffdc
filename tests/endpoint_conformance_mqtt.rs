//! The `Endpoint` conformance suite over MQTT: the device crate's `MqttTransport` over TLS
//! on 127.0.0.1 to the hub's `MqttServer`, with the in-process hub as the back end.

#[path = "../iot-dm-service/tests/conformance_support/mod.rs"]
mod conformance_support;

use std::net::SocketAddr;
use std::time::Duration;

use conformance_support::{hub, HubFixture};
use iot_dm_core::link::{ConnectRefused, ConnectRequest, Endpoint, Link};
use iot_dm_device::mqtt::MqttTransport;
use iot_dm_device::{Transport, TransportError};
use iot_dm_service::mqtt::{Listener, MqttServer};
use iot_dm_service::tls::dev_certs::DevCerts;

/// The name the development server certificate is issued for.
const HOST: &str = "localhost";

/// `MqttTransport` as an `Endpoint`: a refusal in the CONNACK is the refusal, any other
/// failure to connect counts as the server being unavailable.
struct MqttEndpoint {
    transport: MqttTransport,
    _server: MqttServer,
}

#[async_trait::async_trait]
impl Endpoint for MqttEndpoint {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, ConnectRefused> {
        self.transport.connect(request).await.map_err(|e| match e {
            TransportError::Refused(refused) => refused,
            other => ConnectRefused::ServerUnavailable {
                reason: other.to_string(),
            },
        })
    }
}

async fn over_mqtt() -> HubFixture<MqttEndpoint> {
    let hub = hub(HOST).await;
    let certs = DevCerts::generate().expect("development certificates");
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let server = MqttServer::builder(hub.clone())
        .listen(Listener::Tls, any)
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
        .start()
        .await
        .expect("the MQTT endpoint starts");
    let port = server
        .local_addr(Listener::Tls)
        .expect("a TLS listener")
        .port();
    let transport = MqttTransport::builder(HOST)
        .port(port)
        .ca_pem(certs.ca_pem())
        .network_timeout(Duration::from_secs(5))
        .build()
        .expect("an MQTT transport");
    HubFixture::new(
        hub,
        MqttEndpoint {
            transport,
            _server: server,
        },
    )
}

iot_dm_core::endpoint_conformance!(over_mqtt().await);
