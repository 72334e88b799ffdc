//! The MQTT 3.1.1 device endpoint: turns sockets into hub [links](iot_dm_core::link::Link), so
//! the official Azure IoT device SDKs (C, Python, Node) connect to a [`Hub`](crate::Hub)
//! unchanged.
//!
//! An [`MqttServer`] listens on any mix of four kinds of [`Listener`]:
//!
//! | listener | IoT Hub port | notes |
//! |---|---|---|
//! | [`Listener::Tls`] | 8883 | what devices use; TLS 1.2/1.3 with rustls (ring) |
//! | [`Listener::Wss`] | 443 | MQTT over WebSocket at `/$iothub/websocket`, subprotocol `mqtt` |
//! | [`Listener::Tcp`] | — | plain MQTT, for tests and trusted networks |
//! | [`Listener::Ws`] | — | plain WebSocket, for tests and TLS-terminating proxies |
//!
//! Each connection reads one CONNECT (within the connect timeout), authenticates it with the hub
//! and then pumps packets both ways: device publishes become
//! [`DeviceFrame`](iot_dm_core::link::DeviceFrame)s, hub messages become PUBLISH packets.
//! Packets are encoded and decoded with rumqttc's MQTT 3.1.1 codec.
//!
//! # Authentication
//!
//! The client id is the device id (or `{deviceId}/{moduleId}`); the username is
//! `{host}/{clientId}/?{query}`, parsed leniently, and must name the same identity. The password
//! is a SAS token. A device that sends no password but presented a TLS client certificate
//! authenticates with the certificate's SHA-1 and SHA-256 thumbprints: the TLS layer accepts any
//! client certificate (it does not validate a chain) and the registry decides.
//!
//! # CONNACK codes
//!
//! | situation | CONNACK |
//! |---|---|
//! | accepted | 0, `session_present` from the hub |
//! | protocol name or level other than MQTT 3.1.1 | 1 (unacceptable protocol version) |
//! | client id is not a valid device or module id | 2 (identifier rejected) |
//! | hub overloaded or shutting down ([`ConnectRefused::ServerUnavailable`](iot_dm_core::link::ConnectRefused)) | 3 (server unavailable) |
//! | unknown, disabled or retired device; wrong or expired SAS token; unregistered certificate; username and client id disagree; no credentials | 5 (not authorized) |
//!
//! Code 4 is never sent: the C SDK stops retrying on it.
//!
//! # Behaviour and limits
//!
//! * QoS 0 and 1 are accepted; a QoS 2 PUBLISH closes the connection. SUBSCRIBE grants at most
//!   QoS 1; a filter IoT Hub does not serve, or one naming another device, gets a failure
//!   (0x80) in the SUBACK and is not forwarded.
//! * Messages the hub wants acknowledged go out at QoS 1 and the device's PUBACK acknowledges
//!   them; everything else goes out at QoS 0.
//! * Keep-alive is enforced at 1.5 times the client's value (0 disables it); any packet resets
//!   it.
//! * A malformed packet or a protocol violation closes only that connection.
//! * On an ungraceful close the device's Will is forwarded as telemetry (with the application
//!   property `iothub-MessageType=Will`) when its topic is the device's own events topic.
//! * Packets larger than [`DEFAULT_MAX_PACKET_SIZE`] (configurable) close the connection.
//! * Past [`MqttServerBuilder::max_connections`] new sockets are closed at once (logged); accept
//!   errors such as running out of file descriptors back off instead of spinning.
//! * An idle connection holds no read or write buffer of the endpoint's own (rustls keeps a
//!   4 KiB record buffer per TLS connection, tungstenite a 4 KiB read buffer per WebSocket).
//! * TLS hands out one stateless session ticket per handshake, so reconnecting devices can
//!   resume instead of paying for a full handshake.
//!
//! # Compatibility
//!
//! Checked by hand against the official SDKs pointed at a development certificate
//! ([`dev_certs`](crate::tls::dev_certs)): Python `azure-iot-device` 2.14.0 and Node `azure-iot-device` 1.18.4 with
//! `azure-iot-device-mqtt` 1.16.4 connect with SAS tokens over TLS and over WebSocket, read
//! the twin, report properties, receive desired patches, answer direct methods, send
//! telemetry with properties and receive (and complete) cloud-to-device messages; Python also
//! connects with a self-signed X.509 certificate over WebSocket. The C SDK has not been tried.
//!
//! # Performance
//!
//! `cargo bench --bench mqtt` at the workspace root measures the endpoint on loopback with an
//! in-memory hub, the load generator running on the same machine: acknowledged reported
//! patches per second from 1,000 devices over TLS, over plain TCP and through in-process links
//! (the hub without MQTT), direct-method round trips, full TLS handshakes (each followed by the
//! hub's CPU time per operation), and idle memory per connection. Measured figures:
//! `benches/README.md`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iot_dm_service::mqtt::{Listener, MqttServer};
//! use iot_dm_service::tls::dev_certs::DevCerts;
//! use iot_dm_service::Hub;
//!
//! let hub = Hub::builder().in_memory().open().await?;
//! let certs = DevCerts::generate()?;
//! let server = MqttServer::builder(hub)
//!     .listen(Listener::Tls, "127.0.0.1:0".parse()?)
//!     .listen(Listener::Tcp, "127.0.0.1:0".parse()?)
//!     .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
//!     .max_connections(10_000)
//!     .start()
//!     .await?;
//! let tls_addr = server.local_addr(Listener::Tls).expect("bound");
//! assert_ne!(tls_addr.port(), 0);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod connection;
mod error;
mod inflight;
mod pump;
mod server;
mod transport;
mod ws;

pub use error::MqttError;
pub use server::{Listener, MqttServer, MqttServerBuilder};

use std::time::Duration;

/// The largest device-to-cloud message body, IoT Hub's 256 KiB: a larger one closes the
/// connection without a PUBACK.
pub const MAX_TELEMETRY: usize = 256 * 1024;

/// The default largest packet a device may send: IoT Hub's 256 KiB message limit plus room for
/// the topic and its property bag.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024 + 16 * 1024;

/// The default time a new socket has to finish its TLS and WebSocket handshakes.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default time a socket has, once its handshakes are done, to send a complete CONNECT.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default most connections that may be opening at once (handshakes and CONNECT not yet
/// done); past it, new sockets are closed at once.
pub const DEFAULT_MAX_OPENING: usize = 1024;

/// The default most connections from one IP address that may be opening at once.
pub const DEFAULT_MAX_OPENING_PER_SOURCE: usize = 128;

/// The default listen backlog.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// The default most open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The path MQTT-over-WebSocket clients connect to.
pub const WEBSOCKET_PATH: &str = "/$iothub/websocket";
