//! A minimal MQTT 3.1.1 hub on 127.0.0.1 for the transport's tests, built on rumqttc's codec.
//!
//! It accepts CONNECT (answering with a configurable CONNACK), grants or refuses
//! subscriptions, acknowledges QoS 1 publishes, answers twin GETs and reported patches the
//! way IoT Hub does, and reports every packet it receives. Tests can push packets to the
//! connected device and drop the connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAX_PACKET: usize = 1024 * 1024;

/// How the peer behaves.
#[derive(Debug, Clone)]
pub(crate) struct Behaviour {
    pub(crate) connack: ConnectReturnCode,
    pub(crate) session_present: bool,
    /// Filters answered with a SUBACK failure.
    pub(crate) refuse_filter: Option<String>,
    /// Whether QoS 1 publishes are acknowledged.
    pub(crate) puback: bool,
    /// Whether SUBSCRIBE is answered at all.
    pub(crate) suback: bool,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            connack: ConnectReturnCode::Success,
            session_present: false,
            refuse_filter: None,
            puback: true,
            suback: true,
        }
    }
}

/// What the peer saw.
#[derive(Debug)]
pub(crate) enum Seen {
    Packet(Packet),
    Closed,
}

enum Control {
    Send(Packet),
    Close,
}

pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: mpsc::UnboundedReceiver<Seen>,
    behaviour: Arc<Mutex<Behaviour>>,
    current: Arc<Mutex<Option<mpsc::UnboundedSender<Control>>>>,
}

impl Peer {
    pub(crate) async fn start(behaviour: Behaviour) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let current = Arc::new(Mutex::new(None));
        let (b, c) = (behaviour.clone(), current.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
                *c.lock().unwrap() = Some(ctl_tx);
                let behaviour = b.lock().unwrap().clone();
                tokio::spawn(serve(socket, behaviour, seen_tx.clone(), ctl_rx));
            }
        });
        Peer {
            addr,
            seen,
            behaviour,
            current,
        }
    }

    pub(crate) fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    /// Sends a packet to the device on the latest connection.
    pub(crate) fn send(&self, packet: Packet) {
        let c = self.current.lock().unwrap();
        c.as_ref()
            .unwrap()
            .send(Control::Send(packet))
            .ok()
            .unwrap();
    }

    /// Drops the latest connection.
    pub(crate) fn close(&self) {
        if let Some(c) = self.current.lock().unwrap().as_ref() {
            let _ = c.send(Control::Close);
        }
    }

    /// The next packet the peer received (skipping pings), within 10 s.
    pub(crate) async fn next(&mut self) -> Seen {
        loop {
            let seen = tokio::time::timeout(std::time::Duration::from_secs(10), self.seen.recv())
                .await
                .expect("the peer saw something within 10s")
                .expect("peer running");
            if !matches!(seen, Seen::Packet(Packet::PingReq)) {
                return seen;
            }
        }
    }

    /// The next packet matching `f`, skipping others, within 10 s.
    pub(crate) async fn next_matching(&mut self, f: impl Fn(&Packet) -> bool) -> Packet {
        loop {
            if let Seen::Packet(p) = self.next().await {
                if f(&p) {
                    return p;
                }
            }
        }
    }
}

async fn read_packet(socket: &mut TcpStream, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Some(p),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => panic!("peer: bad packet: {e:?}"),
        }
        if socket.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

async fn write_packet(socket: &mut TcpStream, packet: Packet) -> bool {
    let mut out = BytesMut::new();
    packet.write(&mut out, MAX_PACKET).unwrap();
    socket.write_all(&out).await.is_ok()
}

fn publish(topic: String, payload: impl Into<Bytes>) -> Packet {
    let mut p = Publish::new(topic, QoS::AtMostOnce, Vec::new());
    p.payload = payload.into();
    Packet::Publish(p)
}

/// The hub's answer to a device publish, if it is a twin request.
fn twin_answer(topic: &str) -> Option<Packet> {
    if let Some(rid) = topic.strip_prefix("$iothub/twin/GET/?$rid=") {
        let body = r#"{"desired":{"mode":"eco","$version":3},"reported":{"$version":1}}"#;
        return Some(publish(format!("$iothub/twin/res/200/?$rid={rid}"), body));
    }
    if let Some(rid) = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/?$rid=") {
        return Some(publish(
            format!("$iothub/twin/res/204/?$rid={rid}&$version=2"),
            Bytes::new(),
        ));
    }
    None
}

async fn serve(
    mut socket: TcpStream,
    behaviour: Behaviour,
    seen: mpsc::UnboundedSender<Seen>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut buf = BytesMut::new();
    let Some(connect @ Packet::Connect(_)) = read_packet(&mut socket, &mut buf).await else {
        return;
    };
    let _ = seen.send(Seen::Packet(connect));
    let connack = ConnAck::new(behaviour.connack, behaviour.session_present);
    if !write_packet(&mut socket, Packet::ConnAck(connack)).await
        || behaviour.connack != ConnectReturnCode::Success
    {
        return;
    }
    loop {
        tokio::select! {
            p = read_packet(&mut socket, &mut buf) => {
                let Some(p) = p else { break };
                let replies = replies(&behaviour, &p);
                let _ = seen.send(Seen::Packet(p.clone()));
                if matches!(p, Packet::Disconnect) {
                    break;
                }
                for r in replies {
                    if !write_packet(&mut socket, r).await {
                        break;
                    }
                }
            }
            c = control.recv() => match c {
                Some(Control::Send(p)) => {
                    if !write_packet(&mut socket, p).await {
                        break;
                    }
                }
                Some(Control::Close) | None => break,
            }
        }
    }
    let _ = seen.send(Seen::Closed);
}

fn replies(behaviour: &Behaviour, p: &Packet) -> Vec<Packet> {
    match p {
        Packet::PingReq => vec![Packet::PingResp],
        Packet::Subscribe(s) if behaviour.suback => {
            let codes = s
                .filters
                .iter()
                .map(|f| {
                    if behaviour.refuse_filter.as_deref() == Some(f.path.as_str()) {
                        SubscribeReasonCode::Failure
                    } else {
                        SubscribeReasonCode::Success(f.qos)
                    }
                })
                .collect();
            vec![Packet::SubAck(SubAck::new(s.pkid, codes))]
        }
        Packet::Unsubscribe(u) => vec![Packet::UnsubAck(UnsubAck::new(u.pkid))],
        Packet::Publish(pub_) => {
            let mut out = Vec::new();
            if pub_.qos == QoS::AtLeastOnce && behaviour.puback {
                out.push(Packet::PubAck(PubAck::new(pub_.pkid)));
            }
            out.extend(twin_answer(&pub_.topic));
            out
        }
        _ => Vec::new(),
    }
}
