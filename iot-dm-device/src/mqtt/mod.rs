//! The MQTT transport: IoT Hub's MQTT 3.1.1 device protocol over TLS (or a WebSocket), with
//! rumqttc.
//!
//! [`MqttTransport`] is a [`Transport`]: each [`connect`](Transport::connect) opens **one**
//! MQTT connection and returns a [`Link`] once the hub's CONNACK accepted it. The same
//! [`DeviceClient`](crate::DeviceClient) then works against Azure IoT Hub and against a
//! self-hosted iot-dm hub's MQTT endpoint.
//!
//! # What it sends
//!
//! | CONNECT field | value |
//! |---|---|
//! | client id | `{deviceId}` or `{deviceId}/{moduleId}` |
//! | username | `{host}/{clientId}/?api-version=2021-04-12&DeviceClientType=..[&model-id=..]` |
//! | password | the SAS token; none with X.509 (the certificate goes in the TLS handshake) |
//! | clean session | from the request (the client's [`clean_session`](crate::DeviceClientBuilder::clean_session), `false` by default) |
//! | keep-alive | [`MqttTransportBuilder::keep_alive`], 60 s by default |
//!
//! Frames map to packets as follows:
//!
//! * a publish goes out with the QoS of its message (the client sends telemetry at QoS 1,
//!   twin requests and method responses at QoS 0, as the C SDK does). A QoS 1 publish is
//!   complete when the hub's PUBACK arrived, so telemetry reported sent has reached the hub;
//! * a subscription is one SUBSCRIBE packet for all its filters, complete at SUBACK. The
//!   `$iothub/` filters are subscribed at QoS 0 and the cloud-to-device (or module input)
//!   filter at QoS 1. A filter the hub refuses (SUBACK failure) closes the connection;
//! * an incoming QoS 1 publish (cloud-to-device) carries an
//!   [`ack_id`](iot_dm_core::link::Message::ack_id); acknowledging it sends its PUBACK
//!   (rumqttc runs with manual acknowledgements), so a message is acknowledged only once the
//!   client handed it over.
//!
//! CONNACK refusals become [`TransportError`]s: 4 and 5 (and 2, identifier rejected) are
//! [`ConnectRefused::NotAuthorized`](iot_dm_core::link::ConnectRefused), which the client does
//! not retry; 3 is [`ConnectRefused::ServerUnavailable`](iot_dm_core::link::ConnectRefused),
//! retried with back-off; 1 is a protocol error.
//!
//! # What it does not do
//!
//! * **No reconnection of its own.** When the connection drops (I/O error, missed ping
//!   response, the hub closing it) the link closes: its receive half returns `None` and its
//!   send half fails. The device client decides when to connect again, with back-off and
//!   jitter, and re-subscribes and resynchronises the twin on every new link. rumqttc's own
//!   reconnect-on-poll is never used (it does not re-subscribe and has no back-off).
//! * No retransmission across connections: what was not acknowledged when a link closed is
//!   sent again by the client, on the next link.
//! * No SAS renewal: each connect uses the token in its request; the client renews by
//!   reconnecting.
//!
//! One task per connection polls rumqttc's event loop and never publishes; publishes come
//! from the caller's task through rumqttc's request channel. That avoids rumqttc's deadlock
//! when the polling task publishes into a full channel.
//!
//! # TLS
//!
//! TLS uses rustls with the ring provider, always set explicitly (never the process-wide
//! default provider, which panics when none or several are installed). TLS 1.2 and 1.3.
//!
//! * **Azure IoT Hub**: the default trusts the operating system's certificate store
//!   ([`MqttTransportBuilder::platform_roots`]), which holds DigiCert Global Root G2.
//! * **A self-hosted hub**: [`MqttTransportBuilder::ca_pem`] trusts only the hub's CA.
//! * Anything else (pinning, ALPN, another provider): [`MqttTransportBuilder::tls_config`].
//! * X.509 authentication: [`MqttTransportBuilder::client_certificate_pem`].
//! * Plain TCP only when asked for with [`MqttTransportBuilder::without_tls`] (tests).
//!
//! The TLS server name is the host name given to the builder, which is also the host in the
//! username: give the hub's name (`myhub.azure-devices.net`, or a name in the self-hosted
//! hub's certificate, such as `localhost`).
//!
//! # WebSocket
//!
//! [`MqttTransportBuilder::websocket`] tunnels the same MQTT session through a WebSocket at
//! `wss://{host}:443/$iothub/websocket` with the `mqtt` subprotocol, for networks that only
//! let HTTPS out. The TLS configuration is the same.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use iot_dm_device::mqtt::MqttTransport;
//!
//! // a self-hosted hub on a test network, without TLS
//! let transport = MqttTransport::builder("localhost")
//!     .port(1883)
//!     .without_tls()
//!     .keep_alive(Duration::from_secs(30))
//!     .build()?;
//! assert_eq!(transport.endpoint(), "localhost:1883");
//! assert!(!transport.is_tls());
//!
//! // options are checked when building
//! let err = MqttTransport::builder("localhost")
//!     .without_tls()
//!     .keep_alive(Duration::from_millis(500))
//!     .build()
//!     .unwrap_err();
//! assert!(err.to_string().contains("keep alive"));
//! # Ok::<(), iot_dm_device::Error>(())
//! ```
//!
//! Connecting a device to Azure IoT Hub:
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), iot_dm_device::Error> {
//! use iot_dm_device::mqtt::MqttTransport;
//! use iot_dm_device::DeviceClientBuilder;
//!
//! let connection_string = "HostName=myhub.azure-devices.net;DeviceId=thermostat-1;SharedAccessKey=...";
//! let transport = MqttTransport::azure("myhub.azure-devices.net")?;
//! let client = DeviceClientBuilder::from_connection_string(connection_string, transport)?
//!     .connect()
//!     .await?;
//! let twin = client.get_twin().await?;
//! println!("desired: {}", twin.desired);
//! # Ok(()) }
//! ```

mod builder;
mod connection;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::AsyncClient;

use iot_dm_core::link::{ConnectRequest, Link};

use crate::error::{Error, TransportError};
use crate::transport::Transport;

pub use builder::{
    MqttTransportBuilder, DEFAULT_ACK_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_NETWORK_TIMEOUT, DEFAULT_PORT, DEFAULT_WEBSOCKET_PORT, MAX_KEEP_ALIVE,
    MIN_MAX_PACKET_SIZE, WEBSOCKET_PATH,
};

use builder::Settings;
use connection::LinkSettings;

/// Requests (publishes, subscriptions, acks) buffered towards rumqttc's event loop.
const REQUEST_CAPACITY: usize = 64;

/// A [`Transport`] speaking IoT Hub's MQTT device protocol; see the [module docs](self).
///
/// Cheap to clone; every clone connects with the same settings.
#[derive(Clone)]
pub struct MqttTransport {
    settings: Arc<Settings>,
}

impl fmt::Debug for MqttTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.fmt(f)
    }
}

impl MqttTransport {
    /// A builder for a transport to the hub at `host` (a DNS name or an IP address; it is
    /// also the TLS server name and the host in the MQTT username).
    pub fn builder(host: impl Into<String>) -> MqttTransportBuilder {
        MqttTransportBuilder::new(host.into())
    }

    /// A transport to `host` on port 8883 with TLS and the platform's trust store: what
    /// Azure IoT Hub needs.
    pub fn azure(host: impl Into<String>) -> Result<MqttTransport, Error> {
        MqttTransport::builder(host).build()
    }

    /// What the transport connects to: `host:port`, or the WebSocket URL.
    pub fn endpoint(&self) -> String {
        self.settings.endpoint()
    }

    /// The hub's host name.
    pub fn host(&self) -> &str {
        &self.settings.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.settings.port
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.settings.tls.is_some()
    }

    /// Whether connections go through a WebSocket.
    pub fn is_websocket(&self) -> bool {
        self.settings.websocket
    }

    /// The MQTT keep-alive.
    pub fn keep_alive(&self) -> Duration {
        self.settings.keep_alive
    }

    /// The MQTT username this transport sends for `request`.
    pub fn username(&self, request: &ConnectRequest) -> Result<String, TransportError> {
        self.settings.username(request)
    }
}

#[async_trait::async_trait]
impl Transport for MqttTransport {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, TransportError> {
        let settings = &self.settings;
        let options = settings.mqtt_options(&request)?;
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        eventloop.set_network_options(settings.network_options());
        let endpoint = settings.endpoint();
        tracing::debug!(%endpoint, client_id = %Settings::client_id(&request), "mqtt connecting");
        connection::open(
            client,
            eventloop,
            LinkSettings {
                endpoint,
                ack_timeout: settings.ack_timeout,
                max_packet_size: settings.max_packet_size,
            },
        )
        .await
    }
}
