//! An authenticated connection: packets from the device become link frames, link messages
//! become PUBLISH packets, until either side closes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt as _;
use rumqttc::mqttbytes::v4::{
    Packet, PubAck, Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS as MqttQoS};
use tokio::sync::watch;
use tokio::time::Instant;

use iot_dm_core::link::{DeviceFrame, Message, QoS};
use iot_dm_core::wire::{self, DeviceTopic, Subscription};

use super::connection::Authenticated;
use super::inflight::Inflight;
use super::server::Shared;
use super::transport::Transport;
use super::MAX_TELEMETRY;

/// Largest packet the endpoint encodes (MQTT's remaining-length limit).
const MAX_OUTGOING: usize = 268_435_455;
/// Most hub messages encoded into one write.
const BATCH: usize = 64;
/// Bytes reserved for a read when the codec does not ask for more.
const READ_CHUNK: usize = 1000;
/// How long closing a socket politely may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session ended.
#[derive(Debug)]
enum Close {
    /// The device sent DISCONNECT.
    Disconnect,
    /// The socket closed without DISCONNECT.
    Eof,
    /// Reading or writing failed.
    Io(io::Error),
    /// Nothing arrived within 1.5 times the keep-alive.
    KeepAlive(Duration),
    /// A malformed packet or a protocol violation.
    Protocol(String),
    /// The hub ended the session.
    HubClosed,
    /// The server is shutting down.
    Shutdown,
    /// The device did not take its data within the write timeout.
    WriteTimeout,
}

impl Close {
    /// Whether the device's Will is due (MQTT: any close but DISCONNECT; the hub-side and
    /// shutdown closes cannot or should not forward it).
    fn sends_will(&self) -> bool {
        !matches!(self, Close::Disconnect | Close::HubClosed | Close::Shutdown)
    }
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Disconnect => f.write_str("device sent DISCONNECT"),
            Close::Eof => f.write_str("device closed the socket"),
            Close::Io(e) => write!(f, "i/o error: {e}"),
            Close::KeepAlive(d) => write!(
                f,
                "nothing received for {} ms (1.5 x keep-alive)",
                d.as_millis()
            ),
            Close::Protocol(why) => write!(f, "protocol violation: {why}"),
            Close::HubClosed => f.write_str("the hub closed the session"),
            Close::Shutdown => f.write_str("server shutting down"),
            Close::WriteTimeout => f.write_str("device did not read its data in time"),
        }
    }
}

struct Pump {
    io: Transport,
    s: Authenticated,
    inflight: Inflight,
    out: BytesMut,
    /// Bytes the codec says the next packet still needs.
    want: usize,
    shared: Arc<Shared>,
}

/// Runs an authenticated connection to its end.
pub(crate) async fn run(
    io: Transport,
    session: Authenticated,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut p = Pump {
        io,
        s: session,
        inflight: Inflight::default(),
        out: BytesMut::new(),
        want: 0,
        shared,
    };
    // packets that came with CONNECT
    let reason = match Box::pin(p.input()).await {
        Ok(()) => p.pump(&mut shutdown).await,
        Err(c) => c,
    };
    Box::pin(p.finish(reason)).await;
}

impl Pump {
    async fn pump(&mut self, shutdown: &mut watch::Receiver<bool>) -> Close {
        let limit = self.s.idle_limit;
        let mut last = Instant::now();
        let idle = tokio::time::sleep(limit.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(idle);
        loop {
            // replies to what was read (also what came along with CONNECT)
            if !self.out.is_empty() || self.io.wants_flush() {
                if let Err(c) = Box::pin(self.write()).await {
                    return c;
                }
            }
            // an idle connection keeps no buffer
            if self.s.buf.is_empty() && self.s.buf.capacity() > 0 {
                self.s.buf = BytesMut::new();
            }
            let step = tokio::select! {
                _ = shutdown.changed() => Err(Close::Shutdown),
                r = self.io.read(&mut self.s.buf, self.want.max(READ_CHUNK)) => match r {
                    Ok(0) => Err(Close::Eof),
                    Ok(_) => {
                        last = Instant::now();
                        // boxed, like the write above: the idle connection's future stays
                        // small, the busy one pays an allocation per read
                        Box::pin(self.input()).await
                    }
                    Err(e) => Err(Close::Io(e)),
                },
                m = self.s.link.rx.recv() => match m {
                    None => Err(Close::HubClosed),
                    Some(m) => self.output(m),
                },
                () = &mut idle, if limit.is_some() => {
                    let deadline = last + limit.unwrap_or_default();
                    if Instant::now() >= deadline {
                        Err(Close::KeepAlive(limit.unwrap_or_default()))
                    } else {
                        idle.as_mut().reset(deadline);
                        Ok(())
                    }
                }
            };
            if let Err(c) = step {
                return c;
            }
        }
    }

    async fn write(&mut self) -> Result<(), Close> {
        let io = &mut self.io;
        let out = &mut self.out;
        let sent = tokio::time::timeout(self.shared.write_timeout, async {
            io.flush().await?;
            io.send(out).await
        })
        .await;
        match sent {
            Ok(Ok(())) => {
                if self.out.capacity() > 0 {
                    self.out = BytesMut::new();
                }
                Ok(())
            }
            Ok(Err(e)) => Err(Close::Io(e)),
            Err(_) => Err(Close::WriteTimeout),
        }
    }

    /// Encodes a hub message and whatever else the link has ready.
    fn output(&mut self, first: Message) -> Result<(), Close> {
        self.encode(first)?;
        for _ in 1..BATCH {
            match self.s.link.rx.recv().now_or_never() {
                Some(Some(m)) => self.encode(m)?,
                Some(None) => return Err(Close::HubClosed),
                None => break,
            }
        }
        Ok(())
    }

    fn encode(&mut self, m: Message) -> Result<(), Close> {
        let qos1 = m.ack_id.is_some() || m.qos == QoS::AtLeastOnce;
        let pkid = if qos1 {
            self.inflight.allocate(m.ack_id).ok_or_else(|| {
                Close::Protocol(format!(
                    "{} QoS 1 messages unacknowledged, the most allowed",
                    super::inflight::MAX_INFLIGHT
                ))
            })?
        } else {
            0
        };
        let publish = Publish {
            dup: false,
            qos: if qos1 {
                MqttQoS::AtLeastOnce
            } else {
                MqttQoS::AtMostOnce
            },
            retain: false,
            topic: m.topic,
            pkid,
            payload: m.payload,
        };
        if let Err(e) = Packet::Publish(publish).write(&mut self.out, MAX_OUTGOING) {
            // the hub's message cannot be encoded (a topic over 65,535 bytes): drop it
            tracing::warn!(device = %self.s.device, error = %e, "hub message not sent");
            if qos1 {
                self.inflight.complete(pkid);
            }
        }
        Ok(())
    }

    fn reply(&mut self, packet: Packet) {
        // acknowledgements always encode
        let _ = packet.write(&mut self.out, MAX_OUTGOING);
    }

    /// Handles every complete packet in the read buffer.
    async fn input(&mut self) -> Result<(), Close> {
        loop {
            let packet = match Packet::read(&mut self.s.buf, self.shared.max_packet_size) {
                Ok(p) => p,
                Err(CodecError::InsufficientBytes(n)) => {
                    self.want = n;
                    return Ok(());
                }
                Err(e) => return Err(Close::Protocol(format!("malformed packet: {e}"))),
            };
            self.want = 0;
            self.packet(packet).await?;
        }
    }

    async fn send(&mut self, frame: DeviceFrame) -> Result<(), Close> {
        self.s
            .link
            .tx
            .send(frame)
            .await
            .map_err(|_| Close::HubClosed)
    }

    async fn packet(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => self.publish(p).await,
            Packet::PubAck(a) => match self.inflight.complete(a.pkid) {
                Some(ack) => self.send(DeviceFrame::Ack(ack)).await,
                None => Ok(()),
            },
            Packet::Subscribe(s) => self.subscribe(s).await,
            Packet::Unsubscribe(u) => {
                self.send(DeviceFrame::Unsubscribe(u.topics)).await?;
                self.reply(Packet::UnsubAck(UnsubAck::new(u.pkid)));
                Ok(())
            }
            Packet::PingReq => {
                self.reply(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect => Err(Close::Disconnect),
            Packet::Connect(_) => Err(Close::Protocol("a second CONNECT".into())),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => Err(Close::Protocol(
                "QoS 2 flow; IoT Hub supports QoS 0 and 1".into(),
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Close::Protocol("a packet only servers send".into()))
            }
        }
    }

    async fn publish(&mut self, p: Publish) -> Result<(), Close> {
        let qos = match p.qos {
            MqttQoS::AtMostOnce => QoS::AtMostOnce,
            MqttQoS::AtLeastOnce => QoS::AtLeastOnce,
            MqttQoS::ExactlyOnce => {
                return Err(Close::Protocol(format!(
                    "QoS 2 PUBLISH on {}; IoT Hub supports QoS 0 and 1",
                    p.topic
                )))
            }
        };
        // refuse what the hub would refuse before acknowledging anything: a PUBACK says the
        // message was accepted
        self.check_publish(&p)?;
        let topic = if p.retain {
            self.retained(p.topic)
        } else {
            p.topic
        };
        let message = Message {
            topic,
            payload: p.payload,
            qos,
            ack_id: None,
        };
        self.send(DeviceFrame::Publish(message)).await?;
        if qos == QoS::AtLeastOnce {
            self.reply(Packet::PubAck(PubAck::new(p.pkid)));
        }
        Ok(())
    }

    /// Checks a device's PUBLISH: its topic must be one of this device's own topics that a
    /// device publishes to (twin GET and PATCH, method responses, telemetry), with no
    /// wildcard (`#`, `+`) or NUL, which MQTT 3.1.1 forbids in a topic name (section 4.7),
    /// and telemetry must fit IoT Hub's message size.
    fn check_publish(&self, p: &Publish) -> Result<(), Close> {
        if p.topic.contains(['#', '+', '\0']) {
            return Err(Close::Protocol(format!(
                "PUBLISH topic {:?} contains a wildcard or NUL",
                p.topic
            )));
        }
        match DeviceTopic::parse(&p.topic, &self.s.device, self.s.module.as_ref()) {
            Ok(DeviceTopic::Telemetry { .. }) if p.payload.len() > MAX_TELEMETRY => {
                Err(Close::Protocol(format!(
                    "a telemetry message of {} bytes; the most is {MAX_TELEMETRY}",
                    p.payload.len()
                )))
            }
            Ok(
                DeviceTopic::TwinGet { .. }
                | DeviceTopic::TwinPatchReported { .. }
                | DeviceTopic::MethodResponse { .. }
                | DeviceTopic::Telemetry { .. },
            ) => Ok(()),
            Ok(_) => Err(Close::Protocol(format!(
                "a device does not publish to {:?}",
                p.topic
            ))),
            Err(e) => Err(Close::Protocol(format!("PUBLISH refused: {e}"))),
        }
    }

    /// IoT Hub keeps no retained messages; it forwards telemetry sent with RETAIN with the
    /// application property `mqtt-retain=true`.
    fn retained(&self, topic: String) -> String {
        match DeviceTopic::parse(&topic, &self.s.device, self.s.module.as_ref()) {
            Ok(DeviceTopic::Telemetry { mut bag, .. }) => {
                let _ = bag.set("mqtt-retain", Some("true"));
                wire::topic::telemetry(&self.s.device, self.s.module.as_ref(), &bag)
            }
            _ => topic,
        }
    }

    async fn subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut accepted = Vec::with_capacity(s.filters.len());
        for f in s.filters {
            match Subscription::classify(&f.path, &self.s.device, self.s.module.as_ref()) {
                Ok(_) => {
                    let granted = match f.qos {
                        MqttQoS::AtMostOnce => MqttQoS::AtMostOnce,
                        _ => MqttQoS::AtLeastOnce,
                    };
                    codes.push(SubscribeReasonCode::Success(granted));
                    accepted.push(f.path);
                }
                Err(e) => {
                    tracing::debug!(device = %self.s.device, error = %e, "subscription refused");
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
        }
        if !accepted.is_empty() {
            self.send(DeviceFrame::Subscribe(accepted)).await?;
        }
        self.reply(Packet::SubAck(SubAck::new(s.pkid, codes)));
        Ok(())
    }

    async fn finish(mut self, reason: Close) {
        // acknowledgements already encoded still go out when the socket allows
        if !matches!(reason, Close::Io(_) | Close::WriteTimeout | Close::Eof) {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.io.send(&mut self.out)).await;
        }
        if reason.sends_will() {
            if let Some(will) = self.s.will.take() {
                tracing::debug!(device = %self.s.device, topic = %will.topic, "forwarding will");
                let _ = tokio::time::timeout(
                    CLOSE_TIMEOUT,
                    self.s.link.tx.send(DeviceFrame::Publish(*will)),
                )
                .await;
            }
        }
        if matches!(reason, Close::Protocol(_)) {
            tracing::info!(device = %self.s.device, peer = %self.s.peer, reason = %reason, "connection closed");
        } else {
            tracing::debug!(device = %self.s.device, peer = %self.s.peer, reason = %reason, "connection closed");
        }
        let Pump { mut io, s, .. } = self;
        // ends the hub session before the socket goes
        drop(s);
        if !matches!(reason, Close::Io(_) | Close::WriteTimeout) {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.close()).await;
        }
    }
}
