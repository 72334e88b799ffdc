//! Shared fixtures for the MQTT endpoint tests: a hub served with every MQTT listener on
//! loopback, a rumqttc device whose event loop runs in a task, and a raw-packet client.

// test helpers, not only #[test] functions, unwrap; each test file uses what it needs
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, LastWill, Packet, SubscribeReasonCode};
use rumqttc::{
    AsyncClient, ConnectionError, Event, Incoming, MqttOptions, Publish, QoS, TlsConfiguration,
    Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

use iot_dm_core::clock::{Clock, SystemClock, Timestamp};
use iot_dm_core::wire::{self, SasToken, SymmetricKey};
use iot_dm_service::hub::DeviceSpec;
use iot_dm_service::mqtt::{Listener, MqttServer};
use iot_dm_service::tls::dev_certs::DevCerts;
use iot_dm_service::{Hub, HubServer, HubServerBuilder};

pub const HOST: &str = "localhost";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Fixture {
    pub hub: Hub,
    pub server: HubServer,
    pub certs: DevCerts,
}

pub async fn fixture() -> Fixture {
    fixture_with(|b| b).await
}

pub async fn fixture_with(tune: impl FnOnce(HubServerBuilder) -> HubServerBuilder) -> Fixture {
    let hub = Hub::builder()
        .in_memory()
        .host_name(HOST)
        .open()
        .await
        .unwrap();
    let certs = DevCerts::generate().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let builder = HubServer::builder(hub.clone())
        .mqtt_listen(Listener::Tcp, any)
        .mqtt_listen(Listener::Tls, any)
        .mqtt_listen(Listener::Ws, any)
        .mqtt_listen(Listener::Wss, any)
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem());
    let server = tune(builder).start().await.unwrap();
    Fixture { hub, server, certs }
}

impl Fixture {
    pub fn addr(&self, kind: Listener) -> SocketAddr {
        self.server.mqtt_addr(kind).unwrap()
    }

    pub fn port(&self, kind: Listener) -> u16 {
        self.addr(kind).port()
    }

    /// Open MQTT connections.
    pub fn connections(&self) -> usize {
        self.server.mqtt().map_or(0, MqttServer::connections)
    }

    /// Creates a SAS device and returns a valid token for it.
    pub async fn sas_device(&self, id: &str) -> String {
        let device = self
            .hub
            .create_device(DeviceSpec::new(id.parse().unwrap()))
            .await
            .unwrap();
        let key = device.symmetric_key.primary_key.unwrap();
        token(id, &key)
    }

    pub fn options(&self, id: &str, password: &str, transport: Transport) -> MqttOptions {
        let (host, port) = match &transport {
            Transport::Ws => (
                format!(
                    "ws://127.0.0.1:{}/$iothub/websocket",
                    self.port(Listener::Ws)
                ),
                self.port(Listener::Ws),
            ),
            Transport::Wss(_) => (
                format!(
                    "wss://localhost:{}/$iothub/websocket",
                    self.port(Listener::Wss)
                ),
                self.port(Listener::Wss),
            ),
            Transport::Tcp => ("127.0.0.1".to_string(), self.port(Listener::Tcp)),
            _ => (HOST.to_string(), self.port(Listener::Tls)),
        };
        let mut o = MqttOptions::new(id, host, port);
        o.set_credentials(format!("{HOST}/{id}/?api-version=2021-04-12"), password)
            .set_keep_alive(Duration::from_secs(30))
            .set_transport(transport);
        o
    }

    pub fn tls(&self) -> Transport {
        Transport::Tls(TlsConfiguration::Rustls(
            self.certs.client_config().unwrap(),
        ))
    }

    pub async fn device(&self, id: &str) -> Dev {
        let token = self.sas_device(id).await;
        let mut dev = Dev::start(self.options(id, &token, self.tls()));
        dev.connack().await.unwrap();
        dev
    }
}

pub fn token(id: &str, key: &str) -> String {
    let key = SymmetricKey::new(key.to_string()).unwrap();
    let uri = wire::device_resource_uri(HOST, &id.parse().unwrap());
    let expiry = Timestamp::from_unix_secs(SystemClock.now().unix_secs() + 3600);
    SasToken::generate(&uri, &key, expiry, None)
        .as_str()
        .to_string()
}

/// A rumqttc device whose event loop runs in a task.
pub struct Dev {
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
}

impl Dev {
    pub fn start(options: MqttOptions) -> Dev {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let e = eventloop.poll().await;
                let stop = e.is_err();
                if tx.send(e).is_err() || stop {
                    break;
                }
            }
        });
        Dev { client, events }
    }

    pub async fn next(&mut self) -> Result<Event, ConnectionError> {
        timeout(WAIT, self.events.recv())
            .await
            .expect("event within the time limit")
            .expect("event loop alive")
    }

    pub async fn connack(&mut self) -> Result<ConnAck, ConnectionError> {
        loop {
            if let Event::Incoming(Incoming::ConnAck(a)) = self.next().await? {
                return Ok(a);
            }
        }
    }

    pub async fn incoming(&mut self, mut pick: impl FnMut(&Incoming) -> bool) -> Incoming {
        loop {
            if let Event::Incoming(i) = self.next().await.unwrap() {
                if pick(&i) {
                    return i;
                }
            }
        }
    }

    pub async fn publish_on(&mut self, prefix: &str) -> Publish {
        match self
            .incoming(|i| matches!(i, Incoming::Publish(p) if p.topic.starts_with(prefix)))
            .await
        {
            Incoming::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    pub async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe_many(
                filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce)),
            )
            .await
            .unwrap();
        match self.incoming(|i| matches!(i, Incoming::SubAck(_))).await {
            Incoming::SubAck(a) => a.return_codes,
            _ => unreachable!(),
        }
    }

    /// Answers the direct-method request that arrived as `request` with `status` and `payload`.
    pub async fn answer_method(&self, request: &Publish, status: u16, payload: serde_json::Value) {
        let rid = request.topic.rsplit("$rid=").next().unwrap();
        self.client
            .publish(
                format!("$iothub/methods/res/{status}/?$rid={rid}"),
                QoS::AtMostOnce,
                false,
                payload.to_string(),
            )
            .await
            .unwrap();
    }

    /// Waits until the connection ends (an error from the event loop).
    pub async fn closed(&mut self) -> ConnectionError {
        loop {
            if let Err(e) = self.next().await {
                return e;
            }
        }
    }
}

pub struct Raw {
    pub tcp: TcpStream,
    buf: BytesMut,
}

impl Raw {
    pub async fn open(addr: SocketAddr) -> Raw {
        Raw {
            tcp: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    pub async fn connect(
        addr: SocketAddr,
        id: &str,
        token: &str,
        keep_alive: u16,
        will: Option<LastWill>,
    ) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr).await;
        let mut c = Connect::new(id);
        c.keep_alive = keep_alive;
        c.last_will = will;
        c.set_login(format!("{HOST}/{id}/?api-version=2021-04-12"), token);
        raw.send(Packet::Connect(c)).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, usize::MAX).unwrap();
        self.tcp.write_all(&out).await.unwrap();
    }

    /// The next packet, or `None` once the server closed the socket.
    pub async fn recv(&mut self) -> Option<Packet> {
        timeout(WAIT, async {
            loop {
                match Packet::read(&mut self.buf, 1 << 20) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("server sent garbage: {e}"),
                }
                match self.tcp.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a packet or a close within the time limit")
    }

    /// Waits for the server to close the socket, skipping packets.
    pub async fn closed(&mut self) {
        while self.recv().await.is_some() {}
    }
}
