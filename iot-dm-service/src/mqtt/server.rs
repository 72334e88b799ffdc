//! The server: listeners, the accept loops, the connection limit and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use iot_dm_core::link::Endpoint;

use crate::listen::{bind, Acceptor};
use crate::tls::{self, TlsSource};

use super::{
    connection, MqttError, DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_OPENING, DEFAULT_MAX_OPENING_PER_SOURCE,
    DEFAULT_MAX_PACKET_SIZE,
};
use crate::admission::{Admission, Crowded};

/// The kind of a listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Listener {
    /// Plain MQTT over TCP.
    Tcp,
    /// MQTT over TLS (IoT Hub's port 8883).
    Tls,
    /// MQTT over a plain WebSocket at `/$iothub/websocket`.
    Ws,
    /// MQTT over a WebSocket over TLS (IoT Hub's port 443).
    Wss,
}

impl Listener {
    /// A short name for logs: `tcp`, `tls`, `ws`, `wss`.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Tcp => "tcp",
            Listener::Tls => "tls",
            Listener::Ws => "ws",
            Listener::Wss => "wss",
        }
    }

    /// Whether the listener needs a TLS certificate.
    pub fn needs_tls(self) -> bool {
        matches!(self, Listener::Tls | Listener::Wss)
    }
}

/// Builds an [`MqttServer`]; see the [module docs](super) for an example.
pub struct MqttServerBuilder {
    endpoint: Arc<dyn Endpoint>,
    listeners: Vec<(Listener, SocketAddr)>,
    tls: TlsSource,
    max_connections: usize,
    max_opening: usize,
    max_opening_per_source: usize,
    max_packet_size: usize,
    handshake_timeout: Duration,
    connect_timeout: Duration,
    write_timeout: Duration,
    backlog: u32,
}

impl std::fmt::Debug for MqttServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttServerBuilder")
            .field("listeners", &self.listeners)
            .field("max_connections", &self.max_connections)
            .field("max_packet_size", &self.max_packet_size)
            .field("max_opening", &self.max_opening)
            .field("max_opening_per_source", &self.max_opening_per_source)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl MqttServerBuilder {
    /// Adds a listener on `addr` (port 0 picks a free port; see [`MqttServer::local_addr`]).
    pub fn listen(mut self, kind: Listener, addr: SocketAddr) -> Self {
        self.listeners.push((kind, addr));
        self
    }

    /// The TLS certificate chain (leaf first) and private key, as PEM.
    pub fn tls_pem(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls = TlsSource::Pem {
            cert: cert_pem.into(),
            key: key_pem.into(),
        };
        self
    }

    /// The TLS certificate chain and private key, as PEM files (read by [`Self::start`]).
    pub fn tls_pem_files(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.tls = TlsSource::Files {
            cert: cert_path.into(),
            key: key_path.into(),
        };
        self
    }

    /// A rustls configuration of your own (replaces [`tls::server_config`]'s; client
    /// certificates then reach the registry only if your verifier accepts them).
    pub fn tls_config(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = TlsSource::Config(config);
        self
    }

    /// Most open connections ([`DEFAULT_MAX_CONNECTIONS`] by default); sockets past it are
    /// closed as soon as they are accepted.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Largest packet a device may send ([`DEFAULT_MAX_PACKET_SIZE`] by default); a larger
    /// one closes its connection.
    pub fn max_packet_size(mut self, bytes: usize) -> Self {
        self.max_packet_size = bytes.max(64);
        self
    }

    /// How long a new socket has for its TLS and WebSocket handshakes
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] by default).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a socket has, once its handshakes are done, to send CONNECT
    /// ([`DEFAULT_CONNECT_TIMEOUT`] by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most connections that may be opening (not yet authenticated) at once, in all and
    /// from one IP address ([`DEFAULT_MAX_OPENING`] and [`DEFAULT_MAX_OPENING_PER_SOURCE`] by
    /// default). Past either, a new socket is closed at once, so a flood of sockets that never
    /// authenticate cannot take the places of real devices. Both count within
    /// [`max_connections`](Self::max_connections).
    pub fn max_opening(mut self, in_all: usize, per_source: usize) -> Self {
        self.max_opening = in_all.max(1);
        self.max_opening_per_source = per_source.max(1);
        self
    }

    /// How long a write to a device may take before the connection is dropped (30 s by
    /// default).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The listen backlog ([`DEFAULT_BACKLOG`] by default; the kernel caps it at
    /// `net.core.somaxconn`).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.max(1);
        self
    }

    /// Whether a listener was added.
    #[cfg(feature = "rest")]
    pub(crate) fn has_listeners(&self) -> bool {
        !self.listeners.is_empty()
    }

    /// Binds every listener and starts accepting.
    pub async fn start(self) -> Result<MqttServer, MqttError> {
        if self.listeners.is_empty() {
            return Err(MqttError::NoListeners);
        }
        let tls_config = self.tls.resolve(tls::server_config)?;
        if tls_config.is_none() {
            if let Some((kind, addr)) = self.listeners.iter().find(|(k, _)| k.needs_tls()) {
                return Err(MqttError::TlsIdentityMissing {
                    listener: kind.as_str(),
                    addr: *addr,
                });
            }
        }
        let mut bound = Vec::with_capacity(self.listeners.len());
        for (kind, addr) in &self.listeners {
            let listener = bind(*addr, self.backlog).map_err(|source| MqttError::Bind {
                listener: kind.as_str(),
                addr: *addr,
                source,
            })?;
            let local = listener.local_addr().map_err(|source| MqttError::Bind {
                listener: kind.as_str(),
                addr: *addr,
                source,
            })?;
            bound.push((*kind, local, listener));
        }
        let shared = Arc::new(Shared {
            endpoint: self.endpoint,
            tls: tls_config.map(TlsAcceptor::from),
            max_packet_size: self.max_packet_size,
            handshake_timeout: self.handshake_timeout,
            connect_timeout: self.connect_timeout,
            write_timeout: self.write_timeout,
            max_connections: self.max_connections,
            admission: Arc::new(Admission::new(
                self.max_opening,
                self.max_opening_per_source,
            )),
            active: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_refusal_log: std::sync::Mutex::new(None),
            refusals: crate::admission::PerSourceLog::new(Duration::from_secs(60), 4096),
        });
        let (shutdown, _) = watch::channel(false);
        let (accepting, _) = watch::channel(false);
        let mut addrs = Vec::with_capacity(bound.len());
        let mut tasks = Vec::with_capacity(bound.len());
        for (kind, local, listener) in bound {
            tracing::info!(listener = kind.as_str(), addr = %local, "mqtt endpoint listening");
            addrs.push((kind, local));
            tasks.push(tokio::spawn(accept_loop(
                listener,
                kind,
                local,
                shared.clone(),
                accepting.subscribe(),
                shutdown.subscribe(),
            )));
        }
        Ok(MqttServer {
            addrs,
            shared,
            shutdown,
            accepting,
            tasks,
        })
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) endpoint: Arc<dyn Endpoint>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) max_packet_size: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) write_timeout: Duration,
    max_connections: usize,
    /// Connections not yet authenticated.
    pub(crate) admission: Arc<Admission>,
    active: AtomicUsize,
    refused: AtomicU64,
    last_refusal_log: std::sync::Mutex<Option<Instant>>,
    /// Refused credentials, logged once a minute per source address.
    pub(crate) refusals: crate::admission::PerSourceLog,
}

/// A connection slot; frees itself when dropped.
struct Permit(Arc<Shared>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut n = self.active.load(Ordering::Acquire);
        loop {
            if n >= self.max_connections {
                return None;
            }
            match self
                .active
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Permit(self.clone())),
                Err(actual) => n = actual,
            }
        }
    }

    /// Logs a socket closed for too many opening connections, once a minute per source.
    fn crowded(&self, kind: Listener, peer: SocketAddr, crowded: Crowded) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = self.refusals.admit(peer.ip(), tokio::time::Instant::now()) {
            let (what, limit) = match crowded {
                Crowded::Server => ("connections are opening", self.admission.max_opening()),
                Crowded::Source => (
                    "connections from this address are opening",
                    self.admission.max_per_source(),
                ),
            };
            tracing::warn!(
                listener = kind.as_str(),
                %peer,
                limit,
                held_back,
                "connection refused: {what}, the most allowed"
            );
        }
    }

    /// Logs refusals at most once a second, with how many there were.
    fn refused(&self, kind: Listener, peer: SocketAddr) {
        let count = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut last = self
            .last_refusal_log
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            *last = Some(now);
            tracing::warn!(
                listener = kind.as_str(),
                %peer,
                limit = self.max_connections,
                refused_total = count,
                "connection refused: the server has max_connections connections open"
            );
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    local: SocketAddr,
    shared: Arc<Shared>,
    mut stop_accepting: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) {
    let mut acceptor = Acceptor::new(listener, kind.as_str(), local);
    while let Some((tcp, peer)) = acceptor.next(&mut stop_accepting).await {
        let Some(permit) = shared.try_acquire() else {
            shared.refused(kind, peer);
            drop(tcp);
            continue;
        };
        // a place among the opening connections, which the connection adopts
        if let Err(crowded) = shared.admission.try_admit(peer.ip()) {
            shared.crowded(kind, peer, crowded);
            drop(tcp);
            continue;
        }
        let shared = shared.clone();
        let rx = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection::serve(tcp, peer, kind, shared, rx).await;
        });
    }
    tracing::debug!(listener = kind.as_str(), addr = %local, "accept loop stopped");
}

/// A running MQTT endpoint. Dropping it stops it too (without waiting); prefer
/// [`MqttServer::shutdown`].
pub struct MqttServer {
    addrs: Vec<(Listener, SocketAddr)>,
    shared: Arc<Shared>,
    /// Closes every connection (and stops the accept loops).
    shutdown: watch::Sender<bool>,
    /// Stops the accept loops only.
    accepting: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MqttServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttServer")
            .field("listeners", &self.addrs)
            .field("connections", &self.connections())
            .finish()
    }
}

impl MqttServer {
    /// A builder serving devices of `endpoint` (usually a [`Hub`](crate::Hub)).
    pub fn builder(endpoint: impl Endpoint + 'static) -> MqttServerBuilder {
        MqttServerBuilder {
            endpoint: Arc::new(endpoint),
            listeners: Vec::new(),
            tls: TlsSource::None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_opening: DEFAULT_MAX_OPENING,
            max_opening_per_source: DEFAULT_MAX_OPENING_PER_SOURCE,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            write_timeout: Duration::from_secs(30),
            backlog: DEFAULT_BACKLOG,
        }
    }

    /// Every listener and the address it is bound to.
    pub fn local_addrs(&self) -> &[(Listener, SocketAddr)] {
        &self.addrs
    }

    /// The address of the first listener of this kind.
    pub fn local_addr(&self, kind: Listener) -> Option<SocketAddr> {
        self.addrs.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// Open connections (including those still in their handshakes).
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Stops accepting new connections and closes the listeners; open connections carry on
    /// until [`Self::shutdown`]. A [`HubServer`](crate::server::HubServer) calls this first, so
    /// that no device connects while requests of the REST endpoint still finish.
    pub fn stop_accepting(&self) {
        self.accepting.send_replace(true);
    }

    /// Stops accepting, closes every connection (their hub sessions end; Wills are not
    /// forwarded) and waits up to five seconds for them to finish.
    pub async fn shutdown(mut self) {
        self.accepting.send_replace(true);
        self.shutdown.send_replace(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(open = self.connections(), "mqtt endpoint stopped");
    }
}

impl Drop for MqttServer {
    fn drop(&mut self) {
        self.accepting.send_replace(true);
        self.shutdown.send_replace(true);
    }
}

/// A connection-independent server state for unit tests (at most 2 connections).
#[cfg(test)]
pub(crate) fn test_shared(hub: crate::Hub) -> Shared {
    Shared {
        endpoint: Arc::new(hub),
        tls: None,
        max_packet_size: 1024,
        handshake_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        max_connections: 2,
        admission: Arc::new(Admission::new(2, 2)),
        active: AtomicUsize::new(0),
        refused: AtomicU64::new(0),
        last_refusal_log: std::sync::Mutex::new(None),
        refusals: crate::admission::PerSourceLog::new(Duration::from_secs(60), 16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tls_listener_without_identity_is_refused_and_no_listener_too() {
        let hub = crate::Hub::builder().in_memory().open().await.unwrap();
        let e = MqttServer::builder(hub.clone()).start().await.unwrap_err();
        assert!(matches!(e, MqttError::NoListeners), "{e}");
        let e = MqttServer::builder(hub)
            .listen(Listener::Wss, "127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                MqttError::TlsIdentityMissing {
                    listener: "wss",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn bind_conflict_names_the_address() {
        let hub = crate::Hub::builder().in_memory().open().await.unwrap();
        let a = MqttServer::builder(hub.clone())
            .listen(Listener::Tcp, "127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap();
        let addr = a.local_addr(Listener::Tcp).unwrap();
        // a second listener on the same port (reuseaddr does not allow two listeners)
        let e = MqttServer::builder(hub)
            .listen(Listener::Tcp, addr)
            .start()
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        a.shutdown().await;
    }

    #[tokio::test]
    async fn stop_accepting_closes_the_listener_and_keeps_connections() {
        let hub = crate::Hub::builder().in_memory().open().await.unwrap();
        let server = MqttServer::builder(hub)
            .listen(Listener::Tcp, "127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap();
        let addr = server.local_addr(Listener::Tcp).unwrap();
        // a socket still waiting for its CONNECT counts as a connection
        let mut open = tokio::net::TcpStream::connect(addr).await.unwrap();
        let one_open = || async {
            while server.connections() != 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), one_open())
            .await
            .unwrap();
        server.stop_accepting();
        let refused = async {
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .unwrap();
        // sockets accepted while the loop was stopping close at EOF; the first one stays open
        tokio::time::timeout(Duration::from_secs(5), one_open())
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::io::AsyncReadExt::read(&mut open, &mut byte);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), read)
                .await
                .is_err(),
            "the open connection was not closed"
        );
        server.shutdown().await;
        let mut byte = [0u8; 1];
        let read = tokio::io::AsyncReadExt::read(&mut open, &mut byte);
        let closed = tokio::time::timeout(Duration::from_secs(5), read).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    }

    #[tokio::test]
    async fn permits_count_and_refuse_past_the_limit() {
        let hub = crate::Hub::builder().in_memory().open().await.unwrap();
        let shared = Arc::new(test_shared(hub));
        let a = shared.try_acquire().unwrap();
        let _b = shared.try_acquire().unwrap();
        assert!(shared.try_acquire().is_none());
        drop(a);
        assert!(shared.try_acquire().is_some());
    }
}
