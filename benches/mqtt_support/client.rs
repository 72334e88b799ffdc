//! A lean MQTT device for the load generator: raw packets (rumqttc's codec) over TCP or TLS,
//! so the benchmarks measure the hub rather than a client library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Packet, Publish, Subscribe, SubscribeFilter,
};
use rumqttc::mqttbytes::QoS;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One simulated device.
pub struct Client {
    io: Box<dyn Io>,
    buf: BytesMut,
    out: BytesMut,
}

impl Client {
    /// Connects (TLS when `tls` is given), sends CONNECT and the SUBSCRIBEs, and waits for
    /// CONNACK and SUBACK.
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
        host: &str,
        id: &str,
        token: &str,
        keep_alive: u16,
        filters: &[&str],
    ) -> Result<Client, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match tls {
            Some(config) => {
                let name = ServerName::try_from("localhost")?;
                Box::new(
                    tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await?,
                )
            }
            None => Box::new(tcp),
        };
        let mut c = Client {
            io,
            buf: BytesMut::new(),
            out: BytesMut::new(),
        };
        let mut connect = Connect::new(id);
        connect.keep_alive = keep_alive;
        connect.set_login(format!("{host}/{id}/?api-version=2021-04-12"), token);
        c.queue(Packet::Connect(connect))?;
        if !filters.is_empty() {
            let sub = Subscribe::new_many(
                filters
                    .iter()
                    .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtMostOnce)),
            );
            c.queue(Packet::Subscribe(sub))?;
        }
        c.flush().await?;
        match c.next().await? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => {}
            other => return Err(format!("{id}: expected CONNACK 0, got {other:?}").into()),
        }
        if !filters.is_empty() {
            match c.next().await? {
                Packet::SubAck(_) => {}
                other => return Err(format!("{id}: expected SUBACK, got {other:?}").into()),
            }
        }
        c.buf = BytesMut::new();
        Ok(c)
    }

    pub fn queue(&mut self, p: Packet) -> Result<(), BoxError> {
        p.write(&mut self.out, 1 << 20)?;
        Ok(())
    }

    pub fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), BoxError> {
        self.queue(Packet::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            payload,
        )))
    }

    pub async fn flush(&mut self) -> Result<(), BoxError> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The next packet from the hub.
    pub async fn next(&mut self) -> Result<Packet, BoxError> {
        loop {
            if let Some(p) = self.try_next()? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    /// A packet already buffered, if any.
    pub fn try_next(&mut self) -> Result<Option<Packet>, BoxError> {
        match Packet::read(&mut self.buf, 1 << 20) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads more bytes (error at end of stream).
    pub async fn fill(&mut self) -> Result<(), BoxError> {
        self.buf.reserve(8192);
        if self.io.read_buf(&mut self.buf).await? == 0 {
            return Err("hub closed the connection".into());
        }
        Ok(())
    }

    /// Sends DISCONNECT and waits (briefly) for the hub to close.
    pub async fn disconnect(mut self) -> Result<(), BoxError> {
        self.queue(Packet::Disconnect)?;
        self.flush().await?;
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io.read(&mut sink)).await;
        Ok(())
    }
}
