//! The byte streams a connection runs over: plain TCP, TLS, WebSocket.
//!
//! Plain TCP and TLS wait for the socket to become readable before touching a buffer, so an
//! idle connection holds no read buffer of ours (rustls keeps its own small record buffer). TLS
//! is driven directly on the rustls connection after tokio-rustls has done the handshake.
//! WebSocket frames come through tokio-tungstenite.

use std::future::Future;
use std::io::{self, BufRead as _, Write as _};
use std::task::{ready, Context, Poll};

use bytes::{Buf as _, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// A stream a WebSocket can run over (TCP or TLS).
pub(crate) trait AsyncIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncIo for T {}

pub(crate) enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsIo>),
    Ws(Box<WebSocketStream<Box<dyn AsyncIo>>>),
}

pub(crate) struct TlsIo {
    tcp: TcpStream,
    conn: ServerConnection,
    eof: bool,
}

impl TlsIo {
    pub(crate) fn new(tcp: TcpStream, conn: ServerConnection) -> TlsIo {
        TlsIo {
            tcp,
            conn,
            eof: false,
        }
    }
}

/// `std::io` over a tokio socket's non-blocking calls, for rustls.
struct Sync<'a>(&'a TcpStream);

impl io::Read for Sync<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for Sync<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport {
    /// Waits for bytes and appends them to `buf`, reserving `reserve` bytes of room only once
    /// the socket is readable; `Ok(0)` at the end of the stream. Cancel-safe: nothing is lost
    /// when the future is dropped. The future is a few words: an idle connection waits in it.
    pub(crate) fn read<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        reserve: usize,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        std::future::poll_fn(move |cx| self.poll_read(cx, buf, reserve))
    }

    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        reserve: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(tcp) => loop {
                ready!(tcp.poll_read_ready(cx))?;
                buf.reserve(reserve.max(1));
                match tcp.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // readiness was stale: do not wait holding an empty buffer
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                        continue;
                    }
                    r => return Poll::Ready(r),
                }
            },
            Transport::Tls(tls) => tls.poll_read(cx, buf),
            Transport::Ws(ws) => loop {
                let r = match ready!(ws.poll_next_unpin(cx)) {
                    None => Ok(0),
                    Some(Ok(WsMessage::Binary(data))) => {
                        if data.is_empty() {
                            continue;
                        }
                        buf.extend_from_slice(&data);
                        Ok(data.len())
                    }
                    Some(Ok(WsMessage::Close(_))) => Ok(0),
                    Some(Ok(WsMessage::Text(_))) => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "websocket text frame; MQTT travels in binary frames",
                    )),
                    // pings are answered by tungstenite
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Err(io::Error::other(e)),
                };
                return Poll::Ready(r);
            },
        }
    }

    /// Writes all of `out` and leaves it empty.
    pub(crate) async fn send(&mut self, out: &mut BytesMut) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        match self {
            Transport::Tcp(tcp) => {
                tcp.write_all(out).await?;
                out.clear();
                Ok(())
            }
            Transport::Tls(tls) => {
                while out.has_remaining() {
                    let n = tls.conn.writer().write(out)?;
                    if n == 0 && !tls.conn.wants_write() {
                        // nothing taken and nothing to flush: the session is closing
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    out.advance(n);
                    tls.flush().await?;
                }
                out.clear();
                Ok(())
            }
            Transport::Ws(ws) => ws
                .send(WsMessage::Binary(out.split().freeze()))
                .await
                .map_err(io::Error::other),
        }
    }

    /// Sends what the transport itself still owes the peer (TLS records produced while
    /// reading, e.g. session tickets or alerts).
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tls(tls) => tls.flush().await,
            _ => Ok(()),
        }
    }

    /// Whether [`Transport::flush`] has something to send.
    pub(crate) fn wants_flush(&self) -> bool {
        match self {
            Transport::Tls(tls) => tls.conn.wants_write(),
            _ => false,
        }
    }

    /// Closes the stream politely (TLS close_notify, WebSocket close frame, TCP FIN).
    pub(crate) async fn close(&mut self) {
        match self {
            Transport::Tcp(tcp) => {
                let _ = tcp.shutdown().await;
            }
            Transport::Tls(tls) => {
                tls.conn.send_close_notify();
                let _ = tls.flush().await;
                let _ = tls.tcp.shutdown().await;
            }
            Transport::Ws(ws) => {
                let _ = WebSocketStream::close(ws, None).await;
            }
        }
    }
}

impl TlsIo {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        loop {
            // plaintext rustls already decrypted
            match self.conn.reader().fill_buf() {
                Ok(data) if !data.is_empty() => {
                    let n = data.len();
                    buf.extend_from_slice(data);
                    self.conn.reader().consume(n);
                    return Poll::Ready(Ok(n));
                }
                // close_notify received
                Ok(_) => return Poll::Ready(Ok(0)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            ready!(self.tcp.poll_read_ready(cx))?;
            match self.conn.read_tls(&mut Sync(&self.tcp)) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // try to tell the peer (an alert), without waiting for it
                let _ = self.conn.write_tls(&mut Sync(&self.tcp));
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Sync(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
