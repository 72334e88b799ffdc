//! The transport's builder: address, TLS, WebSocket, client certificate and MQTT knobs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, NetworkOptions, TlsConfiguration, Transport as RumqttTransport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use iot_dm_core::link::{ConnectRequest, Credentials};
use iot_dm_core::wire::Username;

use super::MqttTransport;
use crate::error::{Error, TransportError};

/// IoT Hub's MQTT-over-TLS port.
pub const DEFAULT_PORT: u16 = 8883;
/// IoT Hub's MQTT-over-WebSocket port (HTTPS).
pub const DEFAULT_WEBSOCKET_PORT: u16 = 443;
/// The path MQTT-over-WebSocket connects to.
pub const WEBSOCKET_PATH: &str = "/$iothub/websocket";
/// Default MQTT keep-alive (the Python SDK's; IoT Hub drops a client silent for 1.5 times it).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Longest keep-alive MQTT can express (a 16-bit number of seconds).
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(u16::MAX as u64);
/// Default largest packet, in either direction: IoT Hub's 256 KiB message limit plus room for
/// the topic and its property bag.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024 + 16 * 1024;
/// Smallest accepted [`MqttTransportBuilder::max_packet_size`].
pub const MIN_MAX_PACKET_SIZE: usize = 1024;
/// Default time the hub has to acknowledge a SUBSCRIBE, UNSUBSCRIBE or QoS 1 PUBLISH.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time for the TCP, TLS and WebSocket handshakes plus CONNACK, and for each write.
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server certificate is checked against.
enum TlsChoice {
    /// The operating system's trust store (what Azure IoT Hub needs).
    PlatformRoots,
    /// Only this CA bundle (PEM), for self-hosted hubs.
    CaPem(Vec<u8>),
    /// A ready rustls configuration.
    Config(Arc<ClientConfig>),
    /// No TLS at all.
    Off,
}

/// Builds an [`MqttTransport`]; see its docs for an example.
///
/// | option | default |
/// |---|---|
/// | [`port`](Self::port) | 8883 (443 with [`websocket`](Self::websocket)) |
/// | TLS roots | the platform's trust store; [`ca_pem`](Self::ca_pem) for a private CA, [`tls_config`](Self::tls_config) for full control |
/// | [`without_tls`](Self::without_tls) | off: TLS is used |
/// | [`websocket`](Self::websocket) | off: MQTT straight over TLS |
/// | [`client_certificate_pem`](Self::client_certificate_pem) | none (SAS authentication) |
/// | [`keep_alive`](Self::keep_alive) | 60 s |
/// | [`max_packet_size`](Self::max_packet_size) | 272 KiB |
/// | [`ack_timeout`](Self::ack_timeout) | 30 s |
/// | [`network_timeout`](Self::network_timeout) | 30 s |
/// | [`device_client_type`](Self::device_client_type) | `iot-dm-device/{version}` |
/// | [`model_id`](Self::model_id) | none |
pub struct MqttTransportBuilder {
    host: String,
    port: Option<u16>,
    tls: TlsChoice,
    websocket: bool,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    keep_alive: Duration,
    max_packet_size: usize,
    ack_timeout: Duration,
    network_timeout: Duration,
    device_client_type: String,
    model_id: Option<String>,
}

impl fmt::Debug for MqttTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttTransportBuilder")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &tls_name(&self.tls))
            .field("websocket", &self.websocket)
            .field("client_certificate", &self.client_cert.is_some())
            .field("keep_alive", &self.keep_alive)
            .field("max_packet_size", &self.max_packet_size)
            .finish_non_exhaustive()
    }
}

fn tls_name(tls: &TlsChoice) -> &'static str {
    match tls {
        TlsChoice::PlatformRoots => "platform roots",
        TlsChoice::CaPem(_) => "private CA",
        TlsChoice::Config(_) => "custom rustls config",
        TlsChoice::Off => "off",
    }
}

fn config(field: &'static str, reason: impl fmt::Display) -> Error {
    Error::Config {
        field,
        reason: reason.to_string(),
    }
}

impl MqttTransportBuilder {
    pub(super) fn new(host: String) -> MqttTransportBuilder {
        MqttTransportBuilder {
            host,
            port: None,
            tls: TlsChoice::PlatformRoots,
            websocket: false,
            client_cert: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            network_timeout: DEFAULT_NETWORK_TIMEOUT,
            device_client_type: concat!("iot-dm-device/", env!("CARGO_PKG_VERSION")).to_string(),
            model_id: None,
        }
    }

    /// The TCP port ([`DEFAULT_PORT`], or [`DEFAULT_WEBSOCKET_PORT`] over WebSocket).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Trusts only the CA certificates in `pem` (one or more `CERTIFICATE` blocks): for a
    /// self-hosted hub with its own CA. Replaces the platform's trust store.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls = TlsChoice::CaPem(pem.into());
        self
    }

    /// Trusts the operating system's certificate store (the default): what Azure IoT Hub's
    /// public certificates chain to.
    pub fn platform_roots(mut self) -> Self {
        self.tls = TlsChoice::PlatformRoots;
        self
    }

    /// Uses this rustls configuration as it is (roots, client certificate, ALPN). Build it
    /// with `ClientConfig::builder_with_provider`, not `ClientConfig::builder`: the latter
    /// panics when the process has no default crypto provider or more than one.
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls = TlsChoice::Config(config);
        self
    }

    /// Speaks plain MQTT over TCP (or a plain WebSocket): for tests and trusted networks
    /// only. IoT Hub itself always requires TLS.
    pub fn without_tls(mut self) -> Self {
        self.tls = TlsChoice::Off;
        self
    }

    /// Tunnels MQTT through a WebSocket at `wss://{host}:{port}/$iothub/websocket` (subprotocol
    /// `mqtt`), for networks that only let HTTPS out. The port defaults to 443.
    pub fn websocket(mut self, enabled: bool) -> Self {
        self.websocket = enabled;
        self
    }

    /// The X.509 client certificate chain (leaf first) and its private key (PKCS#8, PKCS#1
    /// or SEC1), as PEM, presented in the TLS handshake for certificate authentication. The
    /// device then connects with [`Credentials::X509`] and sends no password.
    pub fn client_certificate_pem(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_cert = Some((cert_chain_pem.into(), key_pem.into()));
        self
    }

    /// The MQTT keep-alive: the client pings this often, and the hub drops a connection
    /// silent for 1.5 times it. Zero disables it; otherwise at least one second and at most
    /// [`MAX_KEEP_ALIVE`] (Azure caps its idle timeout at 1767 s, so more than 1177 s is
    /// useless there).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The largest packet sent or accepted, in bytes (at least [`MIN_MAX_PACKET_SIZE`]). A
    /// larger incoming packet closes the connection; a larger outgoing publish is dropped
    /// with an error in the log, since sending it would make the hub close the connection.
    pub fn max_packet_size(mut self, bytes: usize) -> Self {
        self.max_packet_size = bytes;
        self
    }

    /// How long the hub has to answer a SUBSCRIBE, UNSUBSCRIBE or QoS 1 PUBLISH; past it the
    /// connection is considered broken and closed.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// How long the TCP, TLS and WebSocket handshakes plus the CONNACK may take, and each
    /// write to the socket (whole seconds, rounded up).
    pub fn network_timeout(mut self, timeout: Duration) -> Self {
        self.network_timeout = timeout;
        self
    }

    /// The `DeviceClientType` sent in the username (a user agent).
    pub fn device_client_type(mut self, agent: impl Into<String>) -> Self {
        self.device_client_type = agent.into();
        self
    }

    /// The IoT Plug and Play model id sent in the username as `model-id`.
    pub fn model_id(mut self, model_id: impl Into<String>) -> Self {
        self.model_id = Some(model_id.into());
        self
    }

    /// Checks the options, parses the PEM inputs and builds the TLS configuration. With the
    /// default trust store this reads the platform's certificates, and fails if there are
    /// none.
    pub fn build(self) -> Result<MqttTransport, Error> {
        if self.host.is_empty() {
            return Err(config("host name", "is empty"));
        }
        if self.host.contains(['/', ' ', '?', '#', '@']) {
            return Err(config(
                "host name",
                format!(
                    "{:?} contains one of `/ ?#@`; give a bare host name or IP address",
                    self.host
                ),
            ));
        }
        let port = self.port.unwrap_or(if self.websocket {
            DEFAULT_WEBSOCKET_PORT
        } else {
            DEFAULT_PORT
        });
        if port == 0 {
            return Err(config("port", "is 0; it must be between 1 and 65535"));
        }
        if !self.keep_alive.is_zero()
            && (self.keep_alive < Duration::from_secs(1) || self.keep_alive > MAX_KEEP_ALIVE)
        {
            return Err(config(
                "keep alive",
                format!(
                    "is {:?}; it must be zero (off) or between 1s and {MAX_KEEP_ALIVE:?}",
                    self.keep_alive
                ),
            ));
        }
        if self.max_packet_size < MIN_MAX_PACKET_SIZE {
            return Err(config(
                "max packet size",
                format!(
                    "is {} bytes; it must be at least {MIN_MAX_PACKET_SIZE}",
                    self.max_packet_size
                ),
            ));
        }
        if self.ack_timeout.is_zero() {
            return Err(config("ack timeout", "is zero; it must be positive"));
        }
        if self.network_timeout.is_zero() {
            return Err(config("network timeout", "is zero; it must be positive"));
        }
        let has_client_cert = self.client_cert.is_some();
        let tls = match self.tls {
            TlsChoice::Off => {
                if has_client_cert {
                    return Err(config(
                        "client certificate",
                        "needs TLS, but the transport was built without_tls",
                    ));
                }
                None
            }
            TlsChoice::Config(c) => {
                if has_client_cert {
                    return Err(config(
                        "client certificate",
                        "cannot be combined with tls_config; put it in the rustls configuration",
                    ));
                }
                Some(c)
            }
            TlsChoice::CaPem(pem) => Some(client_config(ca_roots(&pem)?, self.client_cert)?),
            TlsChoice::PlatformRoots => Some(client_config(platform_roots()?, self.client_cert)?),
        };
        Ok(MqttTransport {
            settings: Arc::new(Settings {
                host: self.host,
                port,
                tls,
                websocket: self.websocket,
                has_client_cert,
                keep_alive: self.keep_alive,
                max_packet_size: self.max_packet_size,
                ack_timeout: self.ack_timeout,
                network_timeout: self.network_timeout,
                device_client_type: self.device_client_type,
                model_id: self.model_id,
            }),
        })
    }
}

/// A root store holding the certificates of a PEM bundle.
fn ca_roots(pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| config("ca pem", format!("certificate {}: {e}", i + 1)))?;
        roots
            .add(cert)
            .map_err(|e| config("ca pem", format!("certificate {}: {e}", i + 1)))?;
    }
    if roots.is_empty() {
        return Err(config(
            "ca pem",
            "holds no `BEGIN CERTIFICATE` block; give the CA certificate as PEM",
        ));
    }
    Ok(roots)
}

/// The operating system's trust store.
fn platform_roots() -> Result<RootCertStore, Error> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        return Err(config(
            "tls roots",
            format!(
                "the platform trust store has no usable certificate ({}); install the CA \
                 certificates package or give the hub's CA with ca_pem",
                if errors.is_empty() {
                    "none found".to_string()
                } else {
                    errors.join("; ")
                }
            ),
        ));
    }
    Ok(roots)
}

/// A rustls client configuration with the ring provider (never the process default).
fn client_config(
    roots: RootCertStore,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<Arc<ClientConfig>, Error> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| config("tls", e))?
            .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config("client certificate", e))?;
            if chain.is_empty() {
                return Err(config(
                    "client certificate",
                    "holds no `BEGIN CERTIFICATE` block",
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| config("client certificate key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config("client certificate key", e))?
        }
    };
    Ok(Arc::new(config))
}

/// What a built transport connects with.
pub(super) struct Settings {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: Option<Arc<ClientConfig>>,
    pub(super) websocket: bool,
    pub(super) has_client_cert: bool,
    pub(super) keep_alive: Duration,
    pub(super) max_packet_size: usize,
    pub(super) ack_timeout: Duration,
    pub(super) network_timeout: Duration,
    pub(super) device_client_type: String,
    pub(super) model_id: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttTransport")
            .field("endpoint", &self.endpoint())
            .field("tls", &self.tls.is_some())
            .field("client_certificate", &self.has_client_cert)
            .field("keep_alive", &self.keep_alive)
            .field("max_packet_size", &self.max_packet_size)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// What the transport connects to, for logs and errors: `host:port` or the WebSocket URL.
    pub(super) fn endpoint(&self) -> String {
        if self.websocket {
            self.websocket_url()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub(super) fn websocket_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let host = if self.host.contains(':') {
            // a literal IPv6 address
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{WEBSOCKET_PATH}", self.port)
    }

    /// The MQTT client id: `{deviceId}` or `{deviceId}/{moduleId}`.
    pub(super) fn client_id(request: &ConnectRequest) -> String {
        match &request.module_id {
            Some(m) => format!("{}/{m}", request.device_id),
            None => request.device_id.to_string(),
        }
    }

    /// `{host}/{clientId}/?api-version=..&DeviceClientType=..[&model-id=..]`.
    pub(super) fn username(&self, request: &ConnectRequest) -> Result<String, TransportError> {
        let mut b = Username::builder(self.host.clone(), request.device_id.clone())
            .device_client_type(self.device_client_type.clone());
        if let Some(m) = &request.module_id {
            b = b.module(m.clone());
        }
        if let Some(model) = &self.model_id {
            b = b.model_id(model.clone());
        }
        b.build()
            .map(|u| u.to_string())
            .map_err(|e| TransportError::Config {
                field: "host name",
                reason: e.to_string(),
            })
    }

    /// The password: the SAS token, or none.
    fn password(&self, request: &ConnectRequest) -> Result<String, TransportError> {
        match &request.credentials {
            Credentials::Sas(token) => Ok(token.clone()),
            Credentials::X509 { .. } | Credentials::X509Chain(_) if !self.has_client_cert => {
                Err(TransportError::Config {
                    field: "client certificate",
                    reason: "X.509 credentials need a client certificate on the transport \
                         (MqttTransportBuilder::client_certificate_pem)"
                        .into(),
                })
            }
            Credentials::X509 { .. } | Credentials::X509Chain(_) | Credentials::None => {
                Ok(String::new())
            }
        }
    }

    /// The rumqttc options for one connection.
    pub(super) fn mqtt_options(
        &self,
        request: &ConnectRequest,
    ) -> Result<MqttOptions, TransportError> {
        let client_id = Settings::client_id(request);
        let broker = if self.websocket {
            self.websocket_url()
        } else {
            self.host.clone()
        };
        let mut opts = MqttOptions::new(client_id, broker, self.port);
        // validated by the builder: zero or between 1 s and u16::MAX s
        opts.set_keep_alive(self.keep_alive);
        opts.set_clean_session(request.clean_session);
        // an empty password is not sent at all (no password flag), as for X.509
        opts.set_credentials(self.username(request)?, self.password(request)?);
        opts.set_max_packet_size(self.max_packet_size, self.max_packet_size);
        opts.set_manual_acks(true);
        opts.set_request_channel_capacity(super::REQUEST_CAPACITY);
        let transport = match (&self.tls, self.websocket) {
            (None, false) => RumqttTransport::Tcp,
            (None, true) => RumqttTransport::Ws,
            (Some(c), false) => RumqttTransport::Tls(TlsConfiguration::Rustls(c.clone())),
            (Some(c), true) => RumqttTransport::Wss(TlsConfiguration::Rustls(c.clone())),
        };
        opts.set_transport(transport);
        Ok(opts)
    }

    pub(super) fn network_options(&self) -> NetworkOptions {
        let mut n = NetworkOptions::new();
        n.set_tcp_nodelay(true);
        let secs =
            self.network_timeout.as_secs() + u64::from(self.network_timeout.subsec_nanos() > 0);
        n.set_connection_timeout(secs.max(1));
        n
    }
}
