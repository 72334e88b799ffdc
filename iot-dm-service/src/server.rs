//! One server for a [`Hub`]: its MQTT device endpoint and its service REST API, started from one
//! configuration and stopped in order.
//!
//! [`HubServer::builder`] takes an opened hub; each endpoint is optional (a server may run only
//! MQTT, only REST, or both). The MQTT endpoint runs when at least one listener was added with
//! [`HubServerBuilder::mqtt_listen`]; the REST endpoint runs when
//! [`HubServerBuilder::rest_listen`] was called. One TLS identity
//! ([`HubServerBuilder::tls_pem`] or [`HubServerBuilder::tls_pem_files`]) serves both: each
//! endpoint builds its own rustls configuration from it
//! ([`tls::server_config`](crate::tls::server_config) for MQTT, which asks devices for client
//! certificates, and [`tls::https_server_config`](crate::tls::https_server_config) for REST,
//! with ALPN `http/1.1`). Every other option of the endpoints' own builders is reachable
//! through [`HubServerBuilder::mqtt_with`] and [`HubServerBuilder::rest_with`].
//!
//! [`HubServer::shutdown`] stops in the order that lets work in flight finish: the MQTT
//! listeners stop accepting, the REST endpoint finishes its requests in flight (a direct method
//! invoked over REST still reaches its device) and stops, the MQTT endpoint closes its
//! connections, and the hub shuts down ([`Hub::shutdown`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;

use crate::mqtt::{Listener, MqttError, MqttServer, MqttServerBuilder};
use crate::rest::{RestError, RestServer, RestServerBuilder};
use crate::{Hub, HubError};

/// Why a [`HubServer`] could not start or shut down cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubServerError {
    /// Neither endpoint was configured.
    #[error("no endpoint configured: add an MQTT listener (mqtt_listen) or the REST endpoint (rest_listen)")]
    NoEndpoint,
    /// The MQTT endpoint could not start (a listener could not bind, TLS material is unusable).
    #[error("mqtt endpoint: {0}")]
    Mqtt(#[from] MqttError),
    /// The REST endpoint could not start (its listener could not bind, TLS material is
    /// unusable).
    #[error("rest endpoint: {0}")]
    Rest(#[from] RestError),
    /// The hub did not shut down cleanly.
    #[error("hub shutdown: {0}")]
    Hub(#[from] HubError),
}

/// Builds a [`HubServer`]; see [`HubServer`] for an example.
#[derive(Debug)]
pub struct HubServerBuilder {
    hub: Hub,
    mqtt: MqttServerBuilder,
    rest: RestServerBuilder,
    rest_enabled: bool,
}

impl HubServerBuilder {
    /// Adds an MQTT listener on `addr` (port 0 picks a free port; see
    /// [`HubServer::mqtt_addr`]); call it once per listener (for instance [`Listener::Tls`] and
    /// [`Listener::Wss`]). Without any, the server runs no MQTT endpoint.
    pub fn mqtt_listen(mut self, kind: Listener, addr: SocketAddr) -> Self {
        self.mqtt = self.mqtt.listen(kind, addr);
        self
    }

    /// Serves the REST API on `addr` (port 0 picks a free port; see [`HubServer::rest_addr`]).
    /// Without it, the server runs no REST endpoint.
    pub fn rest_listen(mut self, addr: SocketAddr) -> Self {
        self.rest = self.rest.listen(addr);
        self.rest_enabled = true;
        self
    }

    /// The TLS certificate chain (leaf first) and private key, as PEM, for both endpoints.
    /// Without any TLS setting the REST endpoint speaks plain HTTP and only the plain MQTT
    /// listeners ([`Listener::Tcp`], [`Listener::Ws`]) can start.
    pub fn tls_pem(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        let (cert, key) = (cert_pem.into(), key_pem.into());
        self.mqtt = self.mqtt.tls_pem(cert.clone(), key.clone());
        self.rest = self.rest.tls_pem(cert, key);
        self
    }

    /// The TLS certificate chain and private key, as PEM files (read by [`Self::start`]), for
    /// both endpoints.
    pub fn tls_pem_files(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        let (cert, key) = (cert_path.into(), key_path.into());
        self.mqtt = self.mqtt.tls_pem_files(cert.clone(), key.clone());
        self.rest = self.rest.tls(cert, key);
        self
    }

    /// A rustls configuration of the MQTT endpoint's own (see
    /// [`MqttServerBuilder::tls_config`]); the REST endpoint keeps the identity of
    /// [`Self::tls_pem`] or [`Self::rest_tls_config`].
    pub fn mqtt_tls_config(mut self, config: Arc<ServerConfig>) -> Self {
        self.mqtt = self.mqtt.tls_config(config);
        self
    }

    /// A rustls configuration of the REST endpoint's own (see
    /// [`RestServerBuilder::tls_config`]).
    pub fn rest_tls_config(mut self, config: Arc<ServerConfig>) -> Self {
        self.rest = self.rest.tls_config(config);
        self
    }

    /// Most open MQTT connections (see [`MqttServerBuilder::max_connections`]).
    pub fn mqtt_max_connections(mut self, n: usize) -> Self {
        self.mqtt = self.mqtt.max_connections(n);
        self
    }

    /// Most open REST connections (see [`RestServerBuilder::max_connections`]).
    pub fn rest_max_connections(mut self, n: usize) -> Self {
        self.rest = self.rest.max_connections(n);
        self
    }

    /// Any other setting of the MQTT endpoint (packet size, timeouts, backlog, more
    /// listeners): `f` gets the endpoint's builder and returns it.
    pub fn mqtt_with(mut self, f: impl FnOnce(MqttServerBuilder) -> MqttServerBuilder) -> Self {
        self.mqtt = f(self.mqtt);
        self
    }

    /// Any other setting of the REST endpoint (body size, timeouts): `f` gets the endpoint's
    /// builder and returns it. The endpoint runs only once [`Self::rest_listen`] was called.
    pub fn rest_with(mut self, f: impl FnOnce(RestServerBuilder) -> RestServerBuilder) -> Self {
        self.rest = f(self.rest);
        self
    }

    /// Starts the MQTT endpoint, then the REST endpoint. When one fails, the one already
    /// started is stopped and the error names the endpoint; the hub is left open (keep a clone
    /// of it to retry or to shut it down).
    pub async fn start(self) -> Result<HubServer, HubServerError> {
        let mqtt_enabled = self.mqtt.has_listeners();
        if !mqtt_enabled && !self.rest_enabled {
            return Err(HubServerError::NoEndpoint);
        }
        let mqtt = if mqtt_enabled {
            Some(self.mqtt.start().await?)
        } else {
            None
        };
        let rest = if self.rest_enabled {
            match self.rest.start().await {
                Ok(rest) => Some(rest),
                Err(e) => {
                    if let Some(mqtt) = mqtt {
                        mqtt.shutdown().await;
                    }
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let server = HubServer {
            hub: self.hub,
            mqtt,
            rest,
        };
        tracing::info!(
            host = server.hub.host_name(),
            mqtt = ?server.mqtt_addrs(),
            rest = ?server.rest_addr(),
            "hub server started"
        );
        Ok(server)
    }
}

/// A [`Hub`] served over its MQTT device endpoint and its service REST API, each optional.
///
/// Dropping it stops both endpoints without waiting and leaves the hub open; prefer
/// [`HubServer::shutdown`].
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use iot_dm_service::mqtt::Listener;
/// use iot_dm_service::tls::dev_certs::DevCerts;
/// use iot_dm_service::{Hub, HubServer};
///
/// let hub = Hub::builder().in_memory().host_name("localhost").open().await?;
/// let certs = DevCerts::generate()?;
/// let server = HubServer::builder(hub)
///     .mqtt_listen(Listener::Tls, "127.0.0.1:0".parse()?)
///     .mqtt_listen(Listener::Wss, "127.0.0.1:0".parse()?)
///     .mqtt_max_connections(10_000)
///     .rest_listen("127.0.0.1:0".parse()?)
///     .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
///     .start()
///     .await?;
/// let devices = server.mqtt_addr(Listener::Tls).expect("an MQTT/TLS listener");
/// let back_ends = server.rest_addr().expect("the REST endpoint");
/// assert_ne!(devices.port(), 0);
/// assert_ne!(back_ends.port(), 0);
///
/// let hub = server.hub().clone();
/// server.shutdown().await?; // REST, then MQTT, then the hub
/// assert!(hub.is_closed());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HubServer {
    hub: Hub,
    mqtt: Option<MqttServer>,
    rest: Option<RestServer>,
}

impl HubServer {
    /// A builder serving `hub` (opened with [`Hub::builder`]); add at least one endpoint.
    pub fn builder(hub: Hub) -> HubServerBuilder {
        HubServerBuilder {
            mqtt: MqttServer::builder(hub.clone()),
            rest: RestServer::builder(hub.clone()),
            rest_enabled: false,
            hub,
        }
    }

    /// The hub being served.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The address of the first MQTT listener of this kind.
    pub fn mqtt_addr(&self, kind: Listener) -> Option<SocketAddr> {
        self.mqtt.as_ref()?.local_addr(kind)
    }

    /// Every MQTT listener and the address it is bound to (empty without an MQTT endpoint).
    pub fn mqtt_addrs(&self) -> &[(Listener, SocketAddr)] {
        self.mqtt.as_ref().map_or(&[], |m| m.local_addrs())
    }

    /// The address the REST endpoint listens on.
    pub fn rest_addr(&self) -> Option<SocketAddr> {
        self.rest.as_ref().map(RestServer::local_addr)
    }

    /// The MQTT endpoint, when it runs (for its open connections).
    pub fn mqtt(&self) -> Option<&MqttServer> {
        self.mqtt.as_ref()
    }

    /// The REST endpoint, when it runs.
    pub fn rest(&self) -> Option<&RestServer> {
        self.rest.as_ref()
    }

    /// Stops accepting MQTT connections, stops the REST endpoint (its requests in flight finish
    /// first, up to five seconds), closes the MQTT connections (up to five seconds), then shuts
    /// the hub down. Every step runs; the error is the hub's.
    pub async fn shutdown(self) -> Result<(), HubServerError> {
        let HubServer { hub, mqtt, rest } = self;
        if let Some(mqtt) = &mqtt {
            mqtt.stop_accepting();
        }
        if let Some(rest) = rest {
            rest.shutdown().await;
        }
        if let Some(mqtt) = mqtt {
            mqtt.shutdown().await;
        }
        let result = hub.shutdown().await;
        match &result {
            Ok(()) => tracing::info!("hub server stopped"),
            Err(e) => {
                tracing::error!(error = %e, "hub server stopped; the hub did not shut down cleanly")
            }
        }
        result.map_err(HubServerError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    async fn hub() -> Hub {
        Hub::builder()
            .in_memory()
            .open()
            .await
            .expect("in-memory hub")
    }

    #[tokio::test]
    async fn a_server_without_endpoints_is_refused() {
        let e = HubServer::builder(hub().await).start().await.unwrap_err();
        assert!(matches!(e, HubServerError::NoEndpoint), "{e}");
        // configuring the REST endpoint's options alone does not start it
        let e = HubServer::builder(hub().await)
            .rest_with(|b| b.max_body(1024))
            .start()
            .await
            .unwrap_err();
        assert!(matches!(e, HubServerError::NoEndpoint), "{e}");
    }

    #[tokio::test]
    async fn each_endpoint_is_optional() {
        let server = HubServer::builder(hub().await)
            .mqtt_listen(Listener::Tcp, any())
            .start()
            .await
            .unwrap();
        assert!(server.mqtt_addr(Listener::Tcp).is_some());
        assert_eq!(server.mqtt_addrs().len(), 1);
        assert!(server.rest_addr().is_none() && server.rest().is_none());
        server.shutdown().await.unwrap();

        let server = HubServer::builder(hub().await)
            .rest_listen(any())
            .start()
            .await
            .unwrap();
        assert!(server.rest_addr().is_some());
        assert!(server.mqtt().is_none() && server.mqtt_addrs().is_empty());
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_tls_listener_without_identity_names_the_mqtt_endpoint() {
        let e = HubServer::builder(hub().await)
            .mqtt_listen(Listener::Tls, any())
            .rest_listen(any())
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                HubServerError::Mqtt(MqttError::TlsIdentityMissing { .. })
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("mqtt endpoint: "), "{e}");
    }
}
