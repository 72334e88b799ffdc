//! Connections to the hub: TCP (and TLS) connect with a timeout, hyper's HTTP/1.1 handshake,
//! and a small pool of idle keep-alive connections.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::HubError;

/// A connection's request sender.
pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    /// Host to connect to (name or address).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// TLS, with the server name to verify; `None` for plain HTTP.
    pub(crate) tls: Option<(TlsConnector, ServerName<'static>)>,
    pub(crate) connect_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn transport(what: &str, e: impl std::fmt::Display) -> HubError {
    HubError::Transport {
        message: format!("{what}: {e}"),
    }
}

impl Target {
    /// A new connection, handshaken; its driver runs on a spawned task.
    pub(crate) async fn connect(&self) -> Result<Sender, HubError> {
        self.connect_with().await
    }

    /// A new connection sending request bodies of type `B` (streamed uploads).
    pub(crate) async fn connect_with<B>(&self) -> Result<SendRequest<B>, HubError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| {
                transport(
                    &format!("connecting to {addr}"),
                    format!("no answer within {:?}", self.connect_timeout),
                )
            })?
            .map_err(|e| transport(&format!("connecting to {addr}"), e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp, &addr).await,
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| transport(&format!("TLS handshake with {addr}"), "timed out"))?
                .map_err(|e| transport(&format!("TLS handshake with {addr}"), e))?;
                handshake(tls, &addr).await
            }
        }
    }
}

async fn handshake<S, B>(stream: S, addr: &str) -> Result<SendRequest<B>, HubError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(&format!("HTTP handshake with {addr}"), e))?;
    let addr = addr.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(addr, error = %e, "hub connection ended");
        }
    });
    Ok(sender)
}

/// Idle keep-alive connections, most recently used last.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(Sender, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// An idle connection that is still open and not idle for too long.
    pub(crate) fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && sender.is_ready() && since.elapsed() < self.idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection whose response has been read in full.
    pub(crate) fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < self.idle_timeout);
        if idle.len() < self.max_idle {
            idle.push((sender, Instant::now()));
        }
    }

    /// Idle connections held now.
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
