//! Listening sockets shared by the hub's endpoints (MQTT, the service REST API): binding with a
//! backlog, and an accept loop step that backs off on resource exhaustion instead of spinning.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// Binds `addr` with `SO_REUSEADDR`, `TCP_NODELAY` inherited by accepted sockets, and `backlog`.
pub(crate) fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections from one listener until shutdown.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    name: &'static str,
    local: SocketAddr,
    backoff: Duration,
}

impl Acceptor {
    /// An acceptor for `listener`, logging as `name`.
    pub(crate) fn new(listener: TcpListener, name: &'static str, local: SocketAddr) -> Acceptor {
        Acceptor {
            listener,
            name,
            local,
            backoff: MIN_BACKOFF,
        }
    }

    /// The next connection, or `None` once `shutdown` turns true (or its sender is gone).
    /// Connections that vanish before being accepted are skipped; other accept errors (out of
    /// file descriptors or memory) wait, doubling the wait up to a second, for connections to
    /// close.
    pub(crate) async fn next(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return None;
                    }
                    continue;
                }
            };
            match accepted {
                Ok(conn) => {
                    self.backoff = MIN_BACKOFF;
                    return Some(conn);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                    ) =>
                {
                    tracing::debug!(listener = self.name, error = %e, "accept: connection gone");
                }
                Err(e) => {
                    tracing::error!(
                        listener = self.name,
                        addr = %self.local,
                        error = %e,
                        backoff_ms = self.backoff.as_millis() as u64,
                        "accept failed; backing off"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(self.backoff) => {}
                        _ = shutdown.changed() => return None,
                    }
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
