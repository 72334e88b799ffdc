//! One MQTT connection as a [`Link`]: the polling task and the two halves.
//!
//! A single task polls rumqttc's event loop and does nothing else that could block it for
//! long: it hands incoming publishes to the receive half and completes the acknowledgements
//! the send half waits for. The send half talks to the event loop only through the
//! [`AsyncClient`] request channel, from the caller's task, so a publish can never wait on
//! the task that would have to drain it (rumqttc's documented deadlock).
//!
//! The send half sends one frame at a time (it takes `&mut self`), so at most one
//! acknowledgement is awaited at a time. The polling task learns the packet id of that
//! request from rumqttc's `Outgoing` event and completes it when the matching PUBACK, SUBACK
//! or UNSUBACK arrives. A send cancelled while it waits closes the connection, since the
//! next acknowledgement could not be told apart any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rumqttc::mqttbytes::valid_topic;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish,
    QoS as MqttQoS, SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot, Notify};

use iot_dm_core::link::{
    ConnectRefused, DeviceFrame, Link, LinkClosed, LinkRx, LinkTx, Message, QoS,
};

use crate::error::TransportError;

/// Incoming publishes buffered between the polling task and the receive half.
const INCOMING_CAPACITY: usize = 128;
/// How long a graceful DISCONNECT may take when the link is dropped.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The request whose acknowledgement (PUBACK, SUBACK, UNSUBACK) the send half waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckKind {
    Publish,
    Subscribe,
    Unsubscribe,
}

/// The acknowledgement awaited.
struct Waiter {
    kind: AckKind,
    /// Learnt from the `Outgoing` event once rumqttc has written the request.
    pkid: Option<u16>,
    done: oneshot::Sender<Vec<SubscribeReasonCode>>,
}

/// State shared by the polling task and the send half.
#[derive(Default)]
struct State {
    closed: bool,
    waiter: Option<Waiter>,
    /// Incoming QoS 1 publishes not acknowledged yet, by ack id.
    unacked: HashMap<u64, Publish>,
    next_ack_id: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Tells the polling task to drop the connection.
    close: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Settings the connection halves need.
#[derive(Debug, Clone)]
pub(super) struct LinkSettings {
    pub(super) endpoint: String,
    pub(super) ack_timeout: Duration,
    pub(super) max_packet_size: usize,
}

/// Polls `eventloop` until CONNACK, then starts the polling task and returns the link.
pub(super) async fn open(
    client: AsyncClient,
    mut eventloop: EventLoop,
    settings: LinkSettings,
) -> Result<Link, TransportError> {
    let connack = match eventloop.poll().await {
        Ok(Event::Incoming(Packet::ConnAck(c))) => c,
        Ok(other) => {
            return Err(TransportError::Protocol {
                detail: format!("expected CONNACK first, got {other:?}"),
            })
        }
        Err(e) => return Err(connect_error(e, &settings.endpoint)),
    };
    let shared = Arc::new(Shared::default());
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_CAPACITY);
    tokio::spawn(poll_loop(
        eventloop,
        client.clone(),
        shared.clone(),
        incoming_tx,
        settings.endpoint.clone(),
    ));
    Ok(Link {
        tx: Box::new(MqttTx {
            client,
            shared,
            settings,
        }),
        rx: Box::new(MqttRx { rx: incoming_rx }),
        session_present: connack.session_present,
    })
}

/// Maps a failure to connect (before or at CONNACK) to a [`TransportError`].
pub(super) fn connect_error(e: ConnectionError, endpoint: &str) -> TransportError {
    match e {
        ConnectionError::ConnectionRefused(code) => connack_error(code),
        ConnectionError::Io(source) => TransportError::Io {
            endpoint: endpoint.to_string(),
            source: Arc::new(source),
        },
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => TransportError::Io {
            endpoint: endpoint.to_string(),
            source: Arc::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no CONNACK within the network timeout",
            )),
        },
        ConnectionError::Tls(e) => TransportError::Tls {
            endpoint: endpoint.to_string(),
            detail: e.to_string(),
        },
        ConnectionError::MqttState(rumqttc::StateError::Io(source)) => TransportError::Io {
            endpoint: endpoint.to_string(),
            source: Arc::new(source),
        },
        other => TransportError::Protocol {
            detail: format!("{endpoint}: {other}"),
        },
    }
}

/// Maps a CONNACK refusal. 4 and 5 are refusals of the credentials: the client does not
/// retry them. 2 (identifier rejected) cannot succeed on a retry either. 3 (server
/// unavailable) is retried with back-off; 1 (protocol version) is a protocol error.
pub(super) fn connack_error(code: ConnectReturnCode) -> TransportError {
    let not_authorized = |reason: &str| {
        TransportError::Refused(ConnectRefused::NotAuthorized {
            reason: reason.to_string(),
        })
    };
    match code {
        ConnectReturnCode::NotAuthorized => {
            not_authorized("CONNACK 5 (not authorized): unknown or disabled device, or wrong or expired credentials")
        }
        ConnectReturnCode::BadUserNamePassword => {
            not_authorized("CONNACK 4 (bad user name or password)")
        }
        ConnectReturnCode::BadClientId => not_authorized("CONNACK 2 (client id rejected)"),
        ConnectReturnCode::ServiceUnavailable => {
            TransportError::Refused(ConnectRefused::ServerUnavailable {
                reason: "CONNACK 3 (server unavailable)".into(),
            })
        }
        ConnectReturnCode::RefusedProtocolVersion => TransportError::Protocol {
            detail: "CONNACK 1: the hub does not accept MQTT 3.1.1".into(),
        },
        ConnectReturnCode::Success => TransportError::Protocol {
            detail: "CONNACK 0 reported as a refusal".into(),
        },
    }
}

/// The polling task: runs until the connection fails, the link is dropped, or the send half
/// asks to close.
async fn poll_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<Message>,
    endpoint: String,
) {
    loop {
        let event = tokio::select! {
            _ = incoming.closed() => {
                disconnect(&mut eventloop, &client).await;
                tracing::debug!(%endpoint, "mqtt link dropped; disconnected");
                break;
            }
            _ = shared.close.notified() => {
                tracing::debug!(%endpoint, "mqtt link closed by its send half");
                break;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(packet)) => {
                if let Some(message) = on_incoming(&shared, packet) {
                    if incoming.send(message).await.is_err() {
                        disconnect(&mut eventloop, &client).await;
                        break;
                    }
                }
            }
            Ok(Event::Outgoing(outgoing)) => on_outgoing(&shared, outgoing),
            Err(e) => {
                // never poll again: rumqttc would reconnect on its own, and reconnecting is
                // the device client's decision
                tracing::warn!(%endpoint, error = %e, "mqtt connection lost");
                break;
            }
        }
    }
    let mut state = shared.lock();
    state.closed = true;
    state.waiter = None;
    state.unacked.clear();
}

/// Sends DISCONNECT (so the hub does not publish the Will) and waits briefly until written.
async fn disconnect(eventloop: &mut EventLoop, client: &AsyncClient) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn on_incoming(shared: &Shared, packet: Packet) -> Option<Message> {
    match packet {
        Packet::Publish(p) => {
            let (qos, ack_id) = match p.qos {
                MqttQoS::AtMostOnce => (QoS::AtMostOnce, None),
                MqttQoS::AtLeastOnce | MqttQoS::ExactlyOnce => {
                    let mut state = shared.lock();
                    let id = state.next_ack_id;
                    state.next_ack_id += 1;
                    // keep what the acknowledgement needs, not the payload
                    let mut ack = Publish::new("", p.qos, Vec::new());
                    ack.pkid = p.pkid;
                    state.unacked.insert(id, ack);
                    (QoS::AtLeastOnce, Some(id))
                }
            };
            Some(Message {
                topic: p.topic,
                payload: p.payload,
                qos,
                ack_id,
            })
        }
        Packet::PubAck(a) => {
            complete(shared, AckKind::Publish, a.pkid, Vec::new());
            None
        }
        Packet::SubAck(a) => {
            complete(shared, AckKind::Subscribe, a.pkid, a.return_codes);
            None
        }
        Packet::UnsubAck(a) => {
            complete(shared, AckKind::Unsubscribe, a.pkid, Vec::new());
            None
        }
        _ => None,
    }
}

fn on_outgoing(shared: &Shared, outgoing: Outgoing) {
    let (kind, pkid) = match outgoing {
        Outgoing::Publish(0) => return, // QoS 0: nothing to wait for
        Outgoing::Publish(p) => (AckKind::Publish, p),
        Outgoing::Subscribe(p) => (AckKind::Subscribe, p),
        Outgoing::Unsubscribe(p) => (AckKind::Unsubscribe, p),
        _ => return,
    };
    let mut state = shared.lock();
    if let Some(w) = state.waiter.as_mut() {
        if w.kind == kind && w.pkid.is_none() {
            w.pkid = Some(pkid);
        }
    }
}

fn complete(shared: &Shared, kind: AckKind, pkid: u16, codes: Vec<SubscribeReasonCode>) {
    let mut state = shared.lock();
    let matches = state
        .waiter
        .as_ref()
        .is_some_and(|w| w.kind == kind && w.pkid == Some(pkid));
    if matches {
        if let Some(w) = state.waiter.take() {
            let _ = w.done.send(codes);
        }
    } else {
        tracing::debug!(?kind, pkid, "acknowledgement for no pending request");
    }
}

/// The receive half.
struct MqttRx {
    rx: mpsc::Receiver<Message>,
}

#[async_trait::async_trait]
impl LinkRx<Message> for MqttRx {
    async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

/// The send half.
struct MqttTx {
    client: AsyncClient,
    shared: Arc<Shared>,
    settings: LinkSettings,
}

/// Closes the connection if a send is dropped while its acknowledgement is awaited.
struct WaitGuard<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().waiter = None;
            self.shared.close.notify_one();
        }
    }
}

/// The QoS of each subscription: QoS 0 for the `$iothub/` request-response topics (as the C
/// SDK), QoS 1 for cloud-to-device messages and module inputs (the hub sends them at QoS 1
/// and the device acknowledges them).
pub(super) fn subscription_qos(filter: &str) -> MqttQoS {
    if filter.starts_with("$iothub/") {
        MqttQoS::AtMostOnce
    } else {
        MqttQoS::AtLeastOnce
    }
}

impl MqttTx {
    /// Registers the acknowledgement the next request waits for.
    fn expect(
        &self,
        kind: AckKind,
    ) -> Result<oneshot::Receiver<Vec<SubscribeReasonCode>>, LinkClosed> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(LinkClosed);
        }
        let (done, rx) = oneshot::channel();
        state.waiter = Some(Waiter {
            kind,
            pkid: None,
            done,
        });
        Ok(rx)
    }

    /// Sends a request and waits for its acknowledgement, within the ack timeout.
    async fn request<F>(
        &self,
        kind: AckKind,
        send: F,
    ) -> Result<Vec<SubscribeReasonCode>, LinkClosed>
    where
        F: std::future::Future<Output = Result<(), rumqttc::ClientError>>,
    {
        let rx = self.expect(kind)?;
        let mut guard = WaitGuard {
            shared: &self.shared,
            armed: true,
        };
        send.await.map_err(|_| LinkClosed)?;
        match tokio::time::timeout(self.settings.ack_timeout, rx).await {
            Ok(Ok(codes)) => {
                guard.armed = false;
                Ok(codes)
            }
            // the polling task ended: the guard has nothing left to close
            Ok(Err(_)) => Err(LinkClosed),
            Err(_) => {
                tracing::warn!(
                    endpoint = %self.settings.endpoint,
                    ?kind,
                    timeout = ?self.settings.ack_timeout,
                    "no acknowledgement from the hub in time; closing the connection"
                );
                Err(LinkClosed)
            }
        }
    }

    async fn publish(&self, m: Message) -> Result<(), LinkClosed> {
        // fixed header (up to 5) + topic length (2) + packet id (2)
        let size = 9 + m.topic.len() + m.payload.len();
        if size > self.settings.max_packet_size {
            tracing::error!(
                topic = %m.topic,
                size,
                max_packet_size = self.settings.max_packet_size,
                "publish larger than the max packet size; dropped"
            );
            return Ok(());
        }
        if !valid_topic(&m.topic) {
            tracing::error!(topic = %m.topic, "publish on a topic with wildcards; dropped");
            return Ok(());
        }
        match m.qos {
            QoS::AtMostOnce => self
                .client
                .publish_bytes(m.topic, MqttQoS::AtMostOnce, false, m.payload)
                .await
                .map_err(|_| LinkClosed),
            QoS::AtLeastOnce => {
                let send =
                    self.client
                        .publish_bytes(m.topic, MqttQoS::AtLeastOnce, false, m.payload);
                self.request(AckKind::Publish, send).await.map(drop)
            }
        }
    }

    async fn subscribe(&self, filters: Vec<String>) -> Result<(), LinkClosed> {
        if filters.is_empty() {
            return Ok(());
        }
        let subs: Vec<SubscribeFilter> = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), subscription_qos(f)))
            .collect();
        let codes = self
            .request(AckKind::Subscribe, self.client.subscribe_many(subs))
            .await?;
        let refused: Vec<&str> = filters
            .iter()
            .zip(codes.iter().map(Some).chain(std::iter::repeat(None)))
            .filter(|(_, c)| !matches!(c, Some(SubscribeReasonCode::Success(_))))
            .map(|(f, _)| f.as_str())
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        tracing::error!(
            endpoint = %self.settings.endpoint,
            ?refused,
            "the hub refused subscriptions; closing the connection"
        );
        self.shared.close.notify_one();
        Err(LinkClosed)
    }

    async fn unsubscribe(&self, filters: Vec<String>) -> Result<(), LinkClosed> {
        for f in filters {
            self.request(AckKind::Unsubscribe, self.client.unsubscribe(f))
                .await?;
        }
        Ok(())
    }

    async fn ack(&self, id: u64) -> Result<(), LinkClosed> {
        let publish = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(LinkClosed);
            }
            state.unacked.remove(&id)
        };
        match publish {
            Some(p) => self.client.ack(&p).await.map_err(|_| LinkClosed),
            None => {
                tracing::debug!(ack_id = id, "ack for an unknown message; ignored");
                Ok(())
            }
        }
    }
}

#[async_trait::async_trait]
impl LinkTx<DeviceFrame> for MqttTx {
    async fn send(&mut self, frame: DeviceFrame) -> Result<(), LinkClosed> {
        match frame {
            DeviceFrame::Publish(m) => self.publish(m).await,
            DeviceFrame::Subscribe(filters) => self.subscribe(filters).await,
            DeviceFrame::Unsubscribe(filters) => self.unsubscribe(filters).await,
            DeviceFrame::Ack(id) => self.ack(id).await,
        }
    }
}
