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

/// Rate-limits a warning by source address: the first event from a source in each window is
/// let through, carrying how many events from that source were held back since the last one;
/// the rest are only counted. At most `max_sources` sources are tracked at once: past that
/// (a flood from many addresses), events from new sources are held back and counted together.
#[derive(Debug)]
pub(crate) struct PerSourceLog {
    window: Duration,
    max_sources: usize,
    state: std::sync::Mutex<PerSourceState>,
}

#[derive(Debug, Default)]
struct PerSourceState {
    /// When each source's window started, and the events held back in it.
    sources: std::collections::HashMap<std::net::IpAddr, (tokio::time::Instant, u64)>,
    /// Events held back because too many sources were tracked.
    untracked: u64,
}

impl PerSourceLog {
    pub(crate) fn new(window: Duration, max_sources: usize) -> PerSourceLog {
        PerSourceLog {
            window,
            max_sources: max_sources.max(1),
            state: std::sync::Mutex::default(),
        }
    }

    /// `Some(held back)` when this event from `source` is to be logged, `None` when it is
    /// only counted.
    pub(crate) fn admit(&self, source: std::net::IpAddr, now: tokio::time::Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window;
        if !s.sources.contains_key(&source) && s.sources.len() >= self.max_sources {
            s.sources
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            if s.sources.len() >= self.max_sources {
                s.untracked += 1;
                return None;
            }
        }
        let untracked = std::mem::take(&mut s.untracked);
        match s.sources.get_mut(&source) {
            Some((start, held)) if now.duration_since(*start) < window => {
                *held += 1;
                s.untracked = untracked;
                None
            }
            Some((start, held)) => {
                *start = now;
                Some(std::mem::take(held) + untracked)
            }
            None => {
                s.sources.insert(source, (now, 0));
                Some(untracked)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn one_line_per_source_and_window_with_what_was_held_back() {
        let log = PerSourceLog::new(Duration::from_secs(60), 2);
        let t0 = tokio::time::Instant::now();
        assert_eq!(log.admit(ip(1), t0), Some(0));
        for _ in 0..5 {
            assert_eq!(log.admit(ip(1), t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(log.admit(ip(2), t0), Some(0));
        // a third source while two are tracked and still in their window: counted together
        assert_eq!(log.admit(ip(3), t0 + Duration::from_secs(2)), None);
        assert_eq!(log.admit(ip(3), t0 + Duration::from_secs(3)), None);
        // the next window of source 1 reports its five and the two untracked
        assert_eq!(log.admit(ip(1), t0 + Duration::from_secs(61)), Some(7));
        // once the windows ran out, a new source is tracked again
        assert_eq!(log.admit(ip(3), t0 + Duration::from_secs(200)), Some(0));
    }
}
