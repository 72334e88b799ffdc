//! [`ServiceClient`]: the back-end API of a remote hub (this crate's [REST
//! server](crate::rest) or Azure IoT Hub) over HTTPS, built from a service connection string.
//! It implements every area trait of [`api`](crate::api), one file per area, so code written
//! against [`ServiceApi`](crate::api::ServiceApi) runs unchanged against an embedded
//! [`Hub`](crate::Hub) or a remote one.
//!
//! * HTTPS with rustls (ring). By default the server certificate is checked against the
//!   Mozilla root set compiled in from the `webpki-roots` crate (what Azure IoT Hub's
//!   certificates chain to), so the client needs no operating-system certificate store;
//!   [`ServiceClientBuilder::ca_pem`] trusts a self-hosted hub's own CA instead.
//! * A few idle keep-alive connections are kept and reused; a connection the hub closed while
//!   idle is replaced without failing the request.
//! * A SAS token for the connection string's policy is made on first use and renewed before it
//!   expires (tokens live [`DEFAULT_TOKEN_TTL`], renewed in their last fifth).
//! * Clones share the connections and the token: clone freely.
//! * Error bodies map back to the same [`HubError`] variants the embedded hub
//!   returns; what only a remote call can meet is `Unauthorized`, `Forbidden`, `Throttled`
//!   (with the `Retry-After` delay) and `Transport` (unreachable, TLS failure, timeout).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iot_dm_service::api::prelude::*;
//! use iot_dm_service::client::ServiceClient;
//! use iot_dm_service::hub::DeviceSpec;
//! use iot_dm_service::rest::RestServer;
//! use iot_dm_service::tls::dev_certs::DevCerts;
//! use iot_dm_service::Hub;
//!
//! // a hub served over HTTPS with development certificates
//! let hub = Hub::builder().host_name("localhost").open().await?;
//! let certs = DevCerts::generate()?;
//! let server = RestServer::builder(hub.clone())
//!     .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
//!     .start()
//!     .await?;
//!
//! let client = ServiceClient::builder(&hub.service_connection_string("iothubowner")?)?
//!     .ca_pem(certs.ca_pem())
//!     .port(server.local_addr().port())
//!     .build()?;
//! client.create_device(DeviceSpec::new("pump-1".parse()?)).await?;
//! assert_eq!(client.get_twin("pump-1").await?.version(), 1);
//! assert!(client.get_device("nope").await.unwrap_err().is_not_found());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod alerts;
mod artifacts;
mod certificates;
mod codec;
mod configurations;
mod errors;
mod events;
mod jobs;
mod messages;
mod methods;
mod policies;
mod pool;
mod query;
mod registry;
mod twins;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::wire::ServiceConnectionString;

use crate::api::API_VERSION;
use crate::{tls, HubError};
use errors::About;
pub use events::{EventItem, EventStream, EventsRequest, StreamEvent};
use pool::{Pool, Target};

/// How long a generated SAS token is valid.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The default time a request may take (direct methods get their own timeouts on top).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The default time to connect (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default most idle keep-alive connections kept.
pub const DEFAULT_MAX_IDLE: usize = 4;

/// Largest response body read (a page of 1000 devices is about 1 MiB).
const MAX_RESPONSE: usize = 32 * 1024 * 1024;

/// Idle connections older than this are not reused: servers close idle connections (ours
/// after its 30 s header read timeout), and a request racing that close would fail.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds a [`ServiceClient`]; see the [module docs](self).
pub struct ServiceClientBuilder {
    connection: ServiceConnectionString,
    ca_pem: Option<Vec<u8>>,
    tls_config: Option<Arc<ClientConfig>>,
    plain_http: bool,
    host: Option<String>,
    port: u16,
    request_timeout: Duration,
    connect_timeout: Duration,
    token_ttl: Duration,
    max_idle: usize,
}

impl std::fmt::Debug for ServiceClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClientBuilder")
            .field("host_name", &self.connection.host_name())
            .field("policy", &self.connection.key_name())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ServiceClientBuilder {
    /// Trusts the CA certificates in this PEM (a self-hosted hub's CA) instead of the public
    /// roots.
    pub fn ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.ca_pem = Some(pem.as_ref().to_vec());
        self
    }

    /// A rustls client configuration of your own (replaces the roots and [`Self::ca_pem`]).
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// The port (443 by default).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Connects to `base_url` (`https://host[:port]` or `http://host[:port]`) instead of the
    /// connection string's host name, which still names the hub in tokens. `http://` is for
    /// tests and TLS-terminating proxies on the same machine.
    pub fn base_url(mut self, base_url: &str) -> Result<Self, HubError> {
        let bad = |why: &str| HubError::invalid("baseUrl", format!("{base_url:?}: {why}"));
        let uri: http::Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
        self.plain_http = match uri.scheme_str() {
            Some("https") => false,
            Some("http") => true,
            _ => return Err(bad("the scheme must be https or http")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        self.host = Some(host.trim_matches(['[', ']']).to_string());
        self.port = uri
            .port_u16()
            .unwrap_or(if self.plain_http { 80 } else { 443 });
        Ok(self)
    }

    /// How long a request may take ([`DEFAULT_REQUEST_TIMEOUT`]); direct methods wait their
    /// response and connect timeouts on top.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long connecting may take ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long each generated SAS token is valid ([`DEFAULT_TOKEN_TTL`]; at least 10 s).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl.max(Duration::from_secs(10));
        self
    }

    /// Most idle keep-alive connections kept for reuse ([`DEFAULT_MAX_IDLE`]).
    pub fn max_idle_connections(mut self, n: usize) -> Self {
        self.max_idle = n;
        self
    }

    /// The client.
    pub fn build(self) -> Result<ServiceClient, HubError> {
        let host = self
            .host
            .clone()
            .unwrap_or_else(|| self.connection.host_name().to_string());
        let tls = if self.plain_http {
            None
        } else {
            let config = match (self.tls_config, self.ca_pem) {
                (Some(c), _) => c,
                (None, Some(pem)) => client_config_with_roots(custom_roots(&pem)?)?,
                (None, None) => client_config_with_roots(public_roots())?,
            };
            let name = ServerName::try_from(host.clone())
                .map_err(|e| HubError::invalid("hostName", format!("{host:?}: {e}")))?;
            Some((TlsConnector::from(config), name))
        };
        let default_port = if tls.is_some() { 443 } else { 80 };
        let host_header = if self.port == default_port {
            self.connection.host_name().to_string()
        } else {
            format!("{}:{}", self.connection.host_name(), self.port)
        };
        Ok(ServiceClient {
            inner: Arc::new(Inner {
                host_header: HeaderValue::from_str(&host_header)
                    .map_err(|_| HubError::invalid("hostName", "not a valid Host header"))?,
                target: Target {
                    host,
                    port: self.port,
                    tls,
                    connect_timeout: self.connect_timeout,
                },
                pool: Pool::new(self.max_idle, IDLE_TIMEOUT),
                connection: self.connection,
                token: Mutex::new(None),
                token_ttl: self.token_ttl,
                request_timeout: self.request_timeout,
            }),
        })
    }
}

fn tls_err(e: tls::TlsError) -> HubError {
    HubError::invalid("tls", e.to_string())
}

fn custom_roots(pem: &[u8]) -> Result<rustls::RootCertStore, HubError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls::certificates(pem).map_err(tls_err)? {
        roots
            .add(cert)
            .map_err(|e| HubError::invalid("caPem", e.to_string()))?;
    }
    Ok(roots)
}

fn public_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn client_config_with_roots(roots: rustls::RootCertStore) -> Result<Arc<ClientConfig>, HubError> {
    let mut config = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HubError::invalid("tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A remote hub's back-end API. See the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ServiceConnectionString,
    host_header: HeaderValue,
    target: Target,
    pool: Pool,
    token: Mutex<Option<(HeaderValue, Timestamp)>>,
    token_ttl: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("host_name", &self.inner.connection.host_name())
            .field("policy", &self.inner.connection.key_name())
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// A response: status, headers, body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl ServiceClient {
    /// A client for the hub and policy of a service connection string
    /// (`HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`), over HTTPS on port 443
    /// trusting the public roots.
    pub fn from_connection_string(connection_string: &str) -> Result<ServiceClient, HubError> {
        ServiceClient::builder(connection_string)?.build()
    }

    /// A builder for the hub and policy of a service connection string.
    pub fn builder(connection_string: &str) -> Result<ServiceClientBuilder, HubError> {
        let connection = ServiceConnectionString::parse(connection_string)
            .map_err(|e| HubError::invalid("connectionString", e.to_string()))?;
        Ok(ServiceClientBuilder {
            connection,
            ca_pem: None,
            tls_config: None,
            plain_http: false,
            host: None,
            port: 443,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            token_ttl: DEFAULT_TOKEN_TTL,
            max_idle: DEFAULT_MAX_IDLE,
        })
    }

    /// The hub's host name.
    pub fn host_name(&self) -> &str {
        self.inner.connection.host_name()
    }

    /// The shared access policy the client signs with.
    pub fn policy(&self) -> &str {
        self.inner.connection.key_name()
    }

    /// Idle keep-alive connections held now.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.idle()
    }

    /// The `Authorization` value: the cached token, or a new one when it has less than a
    /// fifth of its lifetime left.
    fn authorization(&self) -> Result<HeaderValue, HubError> {
        let now = Timestamp::now();
        let mut cached = self.inner.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, expiry)) = cached.as_ref() {
            if *expiry > now + self.inner.token_ttl / 5 {
                return Ok(value.clone());
            }
        }
        let expiry = now + self.inner.token_ttl;
        let token = self.inner.connection.sas_token(expiry);
        let value = HeaderValue::from_str(token.as_str()).map_err(|_| HubError::Internal {
            message: "the SAS token is not a valid header value".into(),
        })?;
        *cached = Some((value.clone(), expiry));
        Ok(value)
    }

    /// One request; the answer whatever its status, or a transport error.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&'static str, String)],
        body: Option<Vec<u8>>,
        extra_time: Duration,
    ) -> Result<Answer, HubError> {
        let budget = self.inner.request_timeout + extra_time;
        match tokio::time::timeout(
            budget,
            self.send_once(method, path_and_query, headers, body),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(HubError::Transport {
                message: format!("no answer from {} within {budget:?}", self.host_name()),
            }),
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&'static str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, HubError> {
        let request = self.request(method, path_and_query, headers, body)?;
        // a pooled connection may have been closed by the hub while idle: if the request
        // was not sent on it, send it on a new one
        let mut request = request;
        loop {
            let (mut s, reused) = match self.inner.pool.take() {
                Some(s) => (s, true),
                None => (self.inner.target.connect().await?, false),
            };
            if s.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(HubError::Transport {
                    message: "the hub closed a new connection".into(),
                });
            }
            match s.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = Limited::new(body, MAX_RESPONSE)
                        .collect()
                        .await
                        .map_err(|e| HubError::Transport {
                            message: format!("reading the response body: {e}"),
                        })?
                        .to_bytes();
                    self.inner.pool.put(s);
                    return Ok(Answer {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    _ => {
                        return Err(HubError::Transport {
                            message: format!("request to {}: {}", self.host_name(), e.error()),
                        })
                    }
                },
            }
        }
    }

    /// A request with the hub's Host, a SAS token, the JSON content types and `headers` (which
    /// replace the defaults of the same name).
    pub(crate) fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&'static str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, HubError> {
        let body = Bytes::from(body.unwrap_or_default());
        let has_body =
            !body.is_empty() || matches!(method, Method::POST | Method::PUT | Method::PATCH);
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .body(Full::new(body))
            .map_err(|e| HubError::invalid("request", e.to_string()))?;
        let h = request.headers_mut();
        h.insert(HOST, self.inner.host_header.clone());
        h.insert(AUTHORIZATION, self.authorization()?);
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("iot-dm-service/", env!("CARGO_PKG_VERSION"))),
        );
        if has_body {
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        for (name, value) in headers {
            let v = HeaderValue::from_str(value)
                .map_err(|_| HubError::invalid(*name, "not a valid header value"))?;
            h.insert(*name, v);
        }
        Ok(request)
    }

    /// Sends and maps a non-success status to its error.
    pub(crate) async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&'static str, String)],
        body: Option<Vec<u8>>,
        about: About<'_>,
    ) -> Result<Answer, HubError> {
        let extra = Duration::from_secs(about.timeout_secs);
        let answer = self
            .send(method, path_and_query, headers, body, extra)
            .await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(errors::from_response(
                answer.status,
                &answer.headers,
                &answer.body,
                about,
            ))
        }
    }
}

/// The `path?api-version=...` of a request; `segments` are percent-encoded.
pub(crate) fn path(segments: &[&str], query: &[(&str, String)]) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut p = String::new();
    for s in segments {
        p.push('/');
        p.extend(utf8_percent_encode(s, SEGMENT));
    }
    p.push_str("?api-version=");
    p.push_str(API_VERSION);
    for (k, v) in query {
        p.push('&');
        p.push_str(k);
        p.push('=');
        p.extend(utf8_percent_encode(v, SEGMENT));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_segments() {
        assert_eq!(
            path(&["devices", "a b/c?d"], &[("top", "5".into())]),
            format!("/devices/a%20b%2Fc%3Fd?api-version={API_VERSION}&top=5")
        );
    }

    #[test]
    fn tokens_are_cached_and_renewed() {
        let key = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
        let client = ServiceClient::builder(&format!(
            "HostName=h.example;SharedAccessKeyName=service;SharedAccessKey={key}"
        ))
        .unwrap()
        .token_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
        let a = client.authorization().unwrap();
        assert_eq!(a, client.authorization().unwrap());
        assert!(a.to_str().unwrap().contains("skn=service"));
        // pretend the token is about to expire
        client.inner.token.lock().unwrap().as_mut().unwrap().1 =
            Timestamp::now() + Duration::from_secs(60);
        client.authorization().unwrap();
        let renewed = client.inner.token.lock().unwrap().as_ref().unwrap().1;
        assert!(renewed > Timestamp::now() + Duration::from_secs(3000));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let e = ServiceClient::from_connection_string("HostName=x").unwrap_err();
        assert!(
            matches!(e, HubError::InvalidInput { ref field, .. } if field == "connectionString")
        );
        let key = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
        let b = ServiceClient::builder(&format!(
            "HostName=h;SharedAccessKeyName=s;SharedAccessKey={key}"
        ))
        .unwrap();
        assert!(b.base_url("ftp://x").is_err());
    }
}
