//! The server: the listener (plain TCP or TLS), HTTP/1.1 connections with keep-alive, the
//! connection limit and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::error::RestError;
use super::router::{table, Router};
use super::service::Service;
use super::stream::{Streams, DEFAULT_KEEP_ALIVE};
use super::{DEFAULT_MAX_CONNECTIONS, MAX_REQUEST_BODY};
use crate::admission::{Admission, Crowded, OpeningPermit, PerSourceLog};
use crate::listen::{bind, Acceptor};
use crate::tls::TlsSource;
use crate::{tls, Hub};

/// Builds a [`RestServer`]; see the [module docs](super) for an example.
#[derive(Debug)]
pub struct RestServerBuilder {
    hub: Hub,
    addr: SocketAddr,
    tls: TlsSource,
    max_body: usize,
    max_connections: usize,
    max_opening: usize,
    max_opening_per_source: usize,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    backlog: u32,
    keep_alive: Duration,
}

impl RestServerBuilder {
    /// The address to listen on (`127.0.0.1:0` by default: a free port on loopback; see
    /// [`RestServer::local_addr`]).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Serves HTTPS with the certificate chain (leaf first) and private key in these PEM files
    /// (read by [`Self::start`]). Without any TLS setting the server speaks plain HTTP, for
    /// tests and TLS-terminating proxies.
    pub fn tls(
        mut self,
        cert_pem_path: impl Into<PathBuf>,
        key_pem_path: impl Into<PathBuf>,
    ) -> Self {
        self.tls = TlsSource::Files {
            cert: cert_pem_path.into(),
            key: key_pem_path.into(),
        };
        self
    }

    /// Serves HTTPS with this certificate chain and key, as PEM.
    pub fn tls_pem(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls = TlsSource::Pem {
            cert: cert_pem.into(),
            key: key_pem.into(),
        };
        self
    }

    /// Serves HTTPS with a rustls configuration of your own (set its ALPN to `http/1.1` or
    /// leave it empty).
    pub fn tls_config(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = TlsSource::Config(config);
        self
    }

    /// Largest request body ([`MAX_REQUEST_BODY`] by default); larger bodies get 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Most open connections ([`DEFAULT_MAX_CONNECTIONS`] by default); sockets past it are
    /// closed as soon as they are accepted.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The most connections that may be opening at once (their TLS handshake or first
    /// request's headers not yet received), in all and from one IP address (512 and 128 by
    /// default). Past either, a new socket is closed at once: a flood of sockets that never
    /// send a request holds at most these many of the [`max_connections`](Self::max_connections)
    /// places, and real clients keep the rest.
    pub fn max_opening(mut self, in_all: usize, per_source: usize) -> Self {
        self.max_opening = in_all.max(1);
        self.max_opening_per_source = per_source.max(1);
        self
    }

    /// How long a request's body may take to arrive once its headers are in (10 s by
    /// default); a slower one gets `408` and its connection is closed.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// How long a new connection has for its TLS handshake (5 s by default).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client has to send a request's headers (30 s by default). The time starts
    /// when the server waits for a request, so it is also how long an idle keep-alive
    /// connection stays open.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How often an idle event stream (`GET /events`) sends a keep-alive comment, so that
    /// proxies do not cut it (15 s by default).
    pub fn event_keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = every.max(Duration::from_millis(10));
        self
    }

    /// Binds the listener and starts serving.
    pub async fn start(self) -> Result<RestServer, RestError> {
        let tls = self.tls.resolve(tls::https_server_config)?;
        let addr = self.addr;
        let listener =
            bind(addr, self.backlog).map_err(|source| RestError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| RestError::Bind { addr, source })?;
        let (shutdown, rx) = watch::channel(false);
        let service = Arc::new(Service::new(
            self.hub,
            Router::new(table()),
            self.max_body,
            self.body_read_timeout,
            Streams {
                stop: rx.clone(),
                keep_alive: self.keep_alive,
            },
        ));
        let conn = ConnConfig {
            tls: tls.map(TlsAcceptor::from),
            handshake_timeout: self.handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            admission: Arc::new(Admission::new(
                self.max_opening,
                self.max_opening_per_source,
            )),
            refusals: PerSourceLog::new(Duration::from_secs(60), 4096),
        };
        let scheme = if conn.tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %local, scheme, "rest endpoint listening");
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let task = tokio::spawn(accept_loop(
            Acceptor::new(listener, "rest", local),
            Arc::new(conn),
            service,
            limit,
            rx,
        ));
        Ok(RestServer {
            addr: local,
            shutdown,
            task: Some(task),
        })
    }
}

struct ConnConfig {
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    /// Connections whose first request's headers have not arrived yet.
    admission: Arc<Admission>,
    /// Sockets closed for too many opening connections, logged once a minute per source.
    refusals: PerSourceLog,
}

impl std::fmt::Debug for ConnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnConfig")
            .field("tls", &self.tls.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(
    mut acceptor: Acceptor,
    conn: Arc<ConnConfig>,
    service: Arc<Service>,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    while let Some((tcp, peer)) = acceptor.next(&mut shutdown).await {
        // reap finished connections so the set does not grow
        while connections.try_join_next().is_some() {}
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "rest connection refused: max_connections reached");
            drop(tcp);
            continue;
        };
        if let Err(crowded) = conn.admission.try_admit(peer.ip()) {
            if let Some(held_back) = conn.refusals.admit(peer.ip(), tokio::time::Instant::now()) {
                let limit = match crowded {
                    Crowded::Server => conn.admission.max_opening(),
                    Crowded::Source => conn.admission.max_per_source(),
                };
                tracing::warn!(%peer, ?crowded, limit, held_back, "rest connection refused: too many opening connections");
            }
            drop(tcp);
            continue;
        }
        let opening = OpeningPermit::adopt(conn.admission.clone(), peer.ip());
        let conn = conn.clone();
        let service = service.clone();
        let rx = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            match &conn.tls {
                None => serve(tcp, peer, opening, &conn, service, rx).await,
                Some(acceptor) => {
                    match tokio::time::timeout(conn.handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve(stream, peer, opening, &conn, service, rx).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "rest tls handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "rest tls handshake timed out"),
                    }
                }
            }
        });
    }
    // graceful: every connection finishes its request in flight and closes
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                tracing::warn!(open = connections.len(), "rest connections still open after 5 s; aborting them");
                connections.abort_all();
                break;
            }
        }
    }
    tracing::debug!("rest accept loop stopped");
}

async fn serve<S>(
    stream: S,
    peer: std::net::SocketAddr,
    opening: OpeningPermit,
    conn: &ConnConfig,
    service: Arc<Service>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // the connection stops counting as opening once its first request's headers are in
    let opening = std::sync::Mutex::new(Some(opening));
    let svc = service_fn(move |request| {
        if let Ok(mut o) = opening.lock() {
            o.take();
        }
        let service = service.clone();
        async move { service.handle(request, peer).await }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(conn.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(connection);
    tokio::select! {
        r = connection.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "rest connection ended with an error");
            }
        }
        _ = async move { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A running REST endpoint. Dropping it stops accepting too (without waiting); prefer
/// [`RestServer::shutdown`].
#[derive(Debug)]
pub struct RestServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RestServer {
    /// A builder serving `hub`.
    pub fn builder(hub: Hub) -> RestServerBuilder {
        RestServerBuilder {
            hub,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: TlsSource::None,
            max_body: MAX_REQUEST_BODY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_opening: 512,
            max_opening_per_source: 128,
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            backlog: 1024,
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish (up to five seconds) and closes every
    /// connection.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        tracing::info!(addr = %self.addr, "rest endpoint stopped");
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
