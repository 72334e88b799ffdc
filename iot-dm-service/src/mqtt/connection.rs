//! One connection up to its CONNACK: the TLS and WebSocket handshakes, the CONNECT packet and
//! authentication with the hub. [`pump`](super::pump) takes over from there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use rumqttc::mqttbytes::{Error as CodecError, Protocol};
use tokio::net::TcpStream;
use tokio::sync::watch;

use iot_dm_core::identity::{DeviceId, ModuleId};
use iot_dm_core::link::{ConnectRefused, ConnectRequest, Credentials, Link, Message, QoS};
use iot_dm_core::wire::{self, DeviceTopic, Username};

use super::pump;
use super::server::{Listener, Shared};
use super::transport::{AsyncIo, TlsIo, Transport};
use super::ws;
use crate::admission::OpeningPermit;

/// Bytes reserved for reading CONNECT when the codec does not ask for more.
const CONNECT_CHUNK: usize = 512;

/// An authenticated connection, ready to pump.
pub(crate) struct Authenticated {
    pub(crate) peer: SocketAddr,
    pub(crate) device: DeviceId,
    pub(crate) module: Option<ModuleId>,
    pub(crate) link: Link,
    /// 1.5 times the client's keep-alive; `None` when the client asked for none.
    pub(crate) idle_limit: Option<Duration>,
    /// The Will, already rewritten as the telemetry message to forward.
    pub(crate) will: Option<Box<Message>>,
    /// Bytes the client sent after CONNECT.
    pub(crate) buf: BytesMut,
}

/// Why a connection ended before its session started.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
    #[error("websocket upgrade: {0}")]
    WebSocket(tokio_tungstenite::tungstenite::Error),
    #[error("reading CONNECT: {0}")]
    Io(std::io::Error),
    #[error("closed before CONNECT")]
    Eof,
    #[error("first packet is not CONNECT: {0}")]
    NotConnect(&'static str),
    #[error("malformed CONNECT: {0}")]
    Malformed(CodecError),
    #[error("refused with CONNACK {code}: {reason}")]
    Refused { code: u8, reason: String },
    #[error("no {0} within {1:?}")]
    Timeout(&'static str, std::time::Duration),
}

/// Serves one accepted socket until it closes.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    kind: Listener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    // both phases are boxed: the handshakes' state (with its timer and shutdown watch) is
    // freed once they are done, and the task itself stays small for the connection's lifetime
    let pump = Box::pin(opening(tcp, peer, kind, shared, shutdown)).await;
    if let Some(pump) = pump {
        pump.await
    }
}

/// The rest of an opened connection, boxed on its own.
type Pumping = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The handshakes and CONNECT within the connect timeout, then the pump that takes over;
/// `None` (logged) when the connection did not open.
async fn opening(
    tcp: TcpStream,
    peer: SocketAddr,
    kind: Listener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Pumping> {
    // the place the accept loop counted for this opening connection
    let permit = OpeningPermit::adopt(shared.admission.clone(), peer.ip());
    let opened = tokio::select! {
        r = open(tcp, peer, kind, &shared) => r,
        _ = shutdown.changed() => return None,
    };
    // authenticated or failed: the connection no longer counts as opening
    drop(permit);
    match opened {
        Ok((transport, session)) => {
            return Some(Box::pin(pump::run(transport, session, shared, shutdown)))
        }
        Err(e @ OpenError::Refused { .. }) => {
            // a device with a wrong key retries for ever: one line a minute per address
            if let Some(held_back) = shared
                .refusals
                .admit(peer.ip(), tokio::time::Instant::now())
            {
                tracing::warn!(
                    %peer,
                    listener = kind.as_str(),
                    error = %e,
                    held_back,
                    "connection refused"
                )
            }
        }
        Err(e) => {
            tracing::debug!(%peer, listener = kind.as_str(), error = %e, "connection failed")
        }
    }
    None
}

/// The client certificate chain of a TLS connection, if the device presented one.
type ClientChain = Option<Vec<Vec<u8>>>;

async fn establish(
    tcp: TcpStream,
    kind: Listener,
    shared: &Shared,
) -> Result<(Transport, ClientChain), OpenError> {
    let tls = || {
        shared
            .tls
            .clone()
            .ok_or_else(|| OpenError::Tls(std::io::Error::other("no tls configuration")))
    };
    Ok(match kind {
        Listener::Tcp => (Transport::Tcp(tcp), None),
        Listener::Tls => {
            let stream = tls()?.accept(tcp).await.map_err(OpenError::Tls)?;
            let (tcp, conn) = stream.into_inner();
            let certs = chain_of(conn.peer_certificates());
            let mut t = Transport::Tls(Box::new(TlsIo::new(tcp, conn)));
            // session tickets and the like, still queued after the handshake
            t.flush().await.map_err(OpenError::Tls)?;
            (t, certs)
        }
        Listener::Ws => {
            let io: Box<dyn AsyncIo> = Box::new(tcp);
            let ws = ws::accept(io, shared.max_packet_size)
                .await
                .map_err(OpenError::WebSocket)?;
            (Transport::Ws(Box::new(ws)), None)
        }
        Listener::Wss => {
            let stream = tls()?.accept(tcp).await.map_err(OpenError::Tls)?;
            let certs = chain_of(stream.get_ref().1.peer_certificates());
            let io: Box<dyn AsyncIo> = Box::new(stream);
            let ws = ws::accept(io, shared.max_packet_size)
                .await
                .map_err(OpenError::WebSocket)?;
            (Transport::Ws(Box::new(ws)), certs)
        }
    })
}

/// Why no CONNECT was read.
enum ReadConnect {
    /// The socket failed, closed, or sent something else.
    Failed(OpenError),
    /// Another protocol version: answered with CONNACK 1 before closing.
    Protocol(String),
}

/// Reads the first packet, which must be CONNECT.
async fn read_connect(
    transport: &mut Transport,
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Connect, ReadConnect> {
    loop {
        match Packet::read(buf, max_packet_size) {
            Ok(Packet::Connect(c)) => return Ok(c),
            Ok(_) => return Err(ReadConnect::Failed(OpenError::NotConnect("another packet"))),
            Err(CodecError::InsufficientBytes(n)) => {
                // a CONNECT with a SAS token is a few hundred bytes; reserve what it needs
                // rather than a large chunk that would outlive it as heap fragmentation
                let read = transport
                    .read(buf, n.max(CONNECT_CHUNK))
                    .await
                    .map_err(|e| ReadConnect::Failed(OpenError::Io(e)))?;
                if read == 0 {
                    return Err(ReadConnect::Failed(OpenError::Eof));
                }
            }
            Err(e @ (CodecError::InvalidProtocol | CodecError::InvalidProtocolLevel(_))) => {
                return Err(ReadConnect::Protocol(format!(
                    "protocol: {e}; only MQTT 3.1.1 is served"
                )));
            }
            Err(e) => return Err(ReadConnect::Failed(OpenError::Malformed(e))),
        }
    }
}

async fn open(
    tcp: TcpStream,
    peer: SocketAddr,
    kind: Listener,
    shared: &Shared,
) -> Result<(Transport, Authenticated), OpenError> {
    let (mut transport, certs) =
        tokio::time::timeout(shared.handshake_timeout, establish(tcp, kind, shared))
            .await
            .map_err(|_| OpenError::Timeout("handshake", shared.handshake_timeout))??;
    let mut buf = BytesMut::new();
    let connect = tokio::time::timeout(shared.connect_timeout, async {
        read_connect(&mut transport, &mut buf, shared.max_packet_size).await
    })
    .await
    .map_err(|_| OpenError::Timeout("CONNECT", shared.connect_timeout))?;
    let connect = match connect {
        Ok(c) => c,
        Err(ReadConnect::Failed(e)) => return Err(e),
        Err(ReadConnect::Protocol(reason)) => {
            return Err(refuse(
                &mut transport,
                ConnectReturnCode::RefusedProtocolVersion,
                reason,
            )
            .await)
        }
    };
    let request = match check_connect(&connect, certs) {
        Ok(r) => r,
        Err((code, reason)) => return Err(refuse(&mut transport, code, reason).await),
    };
    let (device, module) = (request.device_id.clone(), request.module_id.clone());
    let link = match shared.endpoint.connect(request).await {
        Ok(link) => link,
        Err(e) => {
            let code = match &e {
                ConnectRefused::NotAuthorized { .. } => ConnectReturnCode::NotAuthorized,
                _ => ConnectReturnCode::ServiceUnavailable,
            };
            return Err(refuse(&mut transport, code, e.to_string()).await);
        }
    };
    if buf.is_empty() {
        // an idle connection keeps no read buffer
        buf = BytesMut::new();
    }
    let mut out = BytesMut::new();
    let ack = ConnAck::new(
        ConnectReturnCode::Success,
        link.session_present && !connect.clean_session,
    );
    // a CONNACK always encodes
    let _ = Packet::ConnAck(ack).write(&mut out, usize::MAX);
    transport.send(&mut out).await.map_err(OpenError::Io)?;
    let will = connect
        .last_will
        .as_ref()
        .and_then(|w| will_message(&w.topic, &w.message, w.qos, &device, module.as_ref()))
        .map(Box::new);
    tracing::debug!(%peer, device = %device, listener = kind.as_str(), keep_alive = connect.keep_alive, "device connected");
    let idle_limit = Some(idle_limit(connect.keep_alive));
    Ok((
        transport,
        Authenticated {
            peer,
            device,
            module,
            link,
            idle_limit,
            will,
            buf,
        },
    ))
}

/// The longest a connection may stay silent: IoT Hub's 1.5 x keep-alive, capped at
/// [`MAX_IDLE`] (a keep-alive of 0, "no keep-alive", gets the cap too).
fn idle_limit(keep_alive_secs: u16) -> Duration {
    match keep_alive_secs {
        0 => MAX_IDLE,
        k => Duration::from_millis(u64::from(k) * 1500).min(MAX_IDLE),
    }
}

/// IoT Hub's cap on a silent connection: 1767 s (29.45 minutes, its load balancer's idle
/// timeout), so the largest useful client keep-alive is 1177 s.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(1767);

async fn refuse(transport: &mut Transport, code: ConnectReturnCode, reason: String) -> OpenError {
    let mut out = BytesMut::new();
    let _ = Packet::ConnAck(ConnAck::new(code, false)).write(&mut out, usize::MAX);
    let _ = transport.send(&mut out).await;
    transport.close().await;
    OpenError::Refused {
        code: code as u8,
        reason,
    }
}

type Refusal = (ConnectReturnCode, String);

/// The client certificate chain a TLS handshake received, device certificate first.
fn chain_of(certs: Option<&[rustls_pki_types::CertificateDer<'static>]>) -> Option<Vec<Vec<u8>>> {
    certs
        .filter(|c| !c.is_empty())
        .map(|c| c.iter().map(|d| d.to_vec()).collect())
}

/// Checks a CONNECT packet and turns it into the hub's connect request.
pub(crate) fn check_connect(
    connect: &Connect,
    certs: Option<Vec<Vec<u8>>>,
) -> Result<ConnectRequest, Refusal> {
    use ConnectReturnCode::*;
    if connect.protocol != Protocol::V4 {
        return Err((
            RefusedProtocolVersion,
            "protocol level 5; only MQTT 3.1.1 (level 4) is served".into(),
        ));
    }
    let (d, m) = match connect.client_id.split_once('/') {
        Some((d, m)) => (d, Some(m)),
        None => (connect.client_id.as_str(), None),
    };
    let device_id = DeviceId::new(d).map_err(|e| (BadClientId, format!("client id: {e}")))?;
    let module_id = m
        .map(ModuleId::new)
        .transpose()
        .map_err(|e| (BadClientId, format!("client id module: {e}")))?;
    let login = connect
        .login
        .as_ref()
        .ok_or_else(|| (NotAuthorized, "no username".to_string()))?;
    let username = Username::parse(&login.username).map_err(|e| (NotAuthorized, e.to_string()))?;
    username
        .check_client_id(&connect.client_id)
        .map_err(|e| (NotAuthorized, e.to_string()))?;
    let credentials = if !login.password.is_empty() {
        Credentials::Sas(login.password.clone())
    } else if let Some(chain) = certs {
        Credentials::X509Chain(chain)
    } else {
        return Err((
            NotAuthorized,
            "no credentials: neither a SAS token password nor a client certificate".into(),
        ));
    };
    Ok(ConnectRequest {
        device_id,
        module_id,
        credentials,
        clean_session: connect.clean_session,
    })
}

/// The telemetry message a Will becomes, if its topic is the device's own events topic.
pub(crate) fn will_message(
    topic: &str,
    payload: &bytes::Bytes,
    qos: rumqttc::mqttbytes::QoS,
    device: &DeviceId,
    module: Option<&ModuleId>,
) -> Option<Message> {
    match DeviceTopic::parse(topic, device, module) {
        Ok(DeviceTopic::Telemetry { mut bag, .. }) => {
            let _ = bag.set("iothub-MessageType", Some("Will"));
            let qos = match qos {
                rumqttc::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
                _ => QoS::AtLeastOnce,
            };
            Some(
                Message::new(
                    wire::topic::telemetry(device, module, &bag),
                    payload.clone(),
                )
                .with_qos(qos),
            )
        }
        _ => {
            tracing::debug!(device = %device, topic, "will topic is not the device's events topic; will ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn idle_limit_is_one_and_a_half_keep_alives_capped_at_1767_s() {
        use std::time::Duration;
        assert_eq!(super::idle_limit(60), Duration::from_secs(90));
        assert_eq!(super::idle_limit(1177), Duration::from_millis(1_765_500));
        assert_eq!(super::idle_limit(1178), super::MAX_IDLE);
        assert_eq!(super::idle_limit(u16::MAX), super::MAX_IDLE);
        assert_eq!(super::idle_limit(0), super::MAX_IDLE);
    }
    use super::*;
    use rumqttc::mqttbytes::v4::LastWill;

    fn connect(client_id: &str, user: Option<&str>, pass: &str) -> Connect {
        let mut c = Connect::new(client_id);
        if let Some(u) = user {
            c.set_login(u, pass);
        }
        c
    }

    #[test]
    fn sas_connect_becomes_a_request() {
        let c = connect(
            "dev1",
            Some("hub/dev1/?api-version=2021-04-12"),
            "SharedAccessSignature sr=x",
        );
        let r = check_connect(&c, None).unwrap();
        assert_eq!(r.device_id.as_str(), "dev1");
        assert_eq!(r.module_id, None);
        assert_eq!(
            r.credentials,
            Credentials::Sas("SharedAccessSignature sr=x".into())
        );
        assert!(r.clean_session);
    }

    #[test]
    fn password_wins_over_certificate_and_certificate_alone_is_x509() {
        let certs = Some(vec![vec![1u8, 2, 3]]);
        let c = connect("dev1", Some("hub/dev1/"), "tok");
        assert!(matches!(
            check_connect(&c, certs.clone()).unwrap().credentials,
            Credentials::Sas(_)
        ));
        let c = connect("dev1", Some("hub/dev1/?api-version=2020-09-30"), "");
        assert_eq!(
            check_connect(&c, certs).unwrap().credentials,
            Credentials::X509Chain(vec![vec![1u8, 2, 3]])
        );
    }

    #[test]
    fn refusals_carry_the_right_code() {
        let code = |c: &Connect| check_connect(c, None).unwrap_err().0;
        // no credentials at all
        assert_eq!(
            code(&connect("dev1", Some("hub/dev1/"), "")),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            code(&connect("dev1", None, "")),
            ConnectReturnCode::NotAuthorized
        );
        // username names another device
        assert_eq!(
            code(&connect("dev1", Some("hub/dev2/"), "tok")),
            ConnectReturnCode::NotAuthorized
        );
        // username not parseable
        assert_eq!(
            code(&connect("dev1", Some("nohost"), "tok")),
            ConnectReturnCode::NotAuthorized
        );
        // client id is not a device id
        assert_eq!(
            code(&connect("", Some("hub//"), "tok")),
            ConnectReturnCode::BadClientId
        );
        assert_eq!(
            code(&connect("a b", Some("hub/a b/"), "tok")),
            ConnectReturnCode::BadClientId
        );
        let mut v5 = connect("dev1", Some("hub/dev1/"), "tok");
        v5.protocol = Protocol::V5;
        assert_eq!(code(&v5), ConnectReturnCode::RefusedProtocolVersion);
    }

    #[test]
    fn module_client_ids_are_split() {
        let c = connect(
            "dev1/mod1",
            Some("hub/dev1/mod1/?api-version=2021-04-12"),
            "tok",
        );
        let r = check_connect(&c, None).unwrap();
        assert_eq!(r.module_id.unwrap().as_str(), "mod1");
    }

    #[test]
    fn will_only_on_the_events_topic_and_marked() {
        let d = DeviceId::new("dev1").unwrap();
        let w = LastWill::new(
            "devices/dev1/messages/events/a=1",
            "bye",
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            false,
        );
        let m = will_message(&w.topic, &w.message, w.qos, &d, None).unwrap();
        assert_eq!(m.qos, QoS::AtLeastOnce);
        assert_eq!(m.payload.as_ref(), b"bye");
        let Ok(DeviceTopic::Telemetry { bag, .. }) = DeviceTopic::parse(&m.topic, &d, None) else {
            panic!("{}", m.topic)
        };
        assert_eq!(bag.get("a"), Some(Some("1")));
        assert_eq!(bag.get("iothub-MessageType"), Some(Some("Will")));
        assert!(
            will_message("devices/dev2/messages/events/", &w.message, w.qos, &d, None).is_none()
        );
        assert!(will_message("$iothub/twin/GET/?$rid=1", &w.message, w.qos, &d, None).is_none());
    }
}
#[cfg(test)]
mod size_tests {
    use iot_dm_core::link::{DeviceFrame, Link, LinkClosed, LinkRx, LinkTx, Message};

    struct Sink;

    #[async_trait::async_trait]
    impl LinkTx<DeviceFrame> for Sink {
        async fn send(&mut self, _: DeviceFrame) -> Result<(), LinkClosed> {
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl LinkRx<Message> for Sink {
        async fn recv(&mut self) -> Option<Message> {
            None
        }
    }

    /// What an idle connection holds for its lifetime is the serve task and the boxed pump
    /// future: keep both small (the handshake state is boxed and freed after CONNECT, and
    /// the socket read is a poll function, not an async state machine). The sizes last seen
    /// are in `benches/README.md`.
    #[tokio::test]
    async fn per_connection_futures_stay_small() {
        let hub = crate::Hub::builder().in_memory().open().await.unwrap();
        let shared = std::sync::Arc::new(super::super::server::test_shared(hub));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let serve = super::serve(tcp, peer, super::Listener::Tls, shared.clone(), rx.clone());
        assert!(
            std::mem::size_of_val(&serve) <= 256,
            "{}",
            std::mem::size_of_val(&serve)
        );

        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let session = super::Authenticated {
            peer,
            device: "d".parse().unwrap(),
            module: None,
            link: Link {
                tx: Box::new(Sink),
                rx: Box::new(Sink),
                session_present: false,
            },
            idle_limit: None,
            will: None,
            buf: bytes::BytesMut::new(),
        };
        let pump = super::pump::run(super::Transport::Tcp(tcp), session, shared.clone(), rx);
        assert!(
            std::mem::size_of_val(&pump) <= 1152,
            "{}",
            std::mem::size_of_val(&pump)
        );
    }
}
