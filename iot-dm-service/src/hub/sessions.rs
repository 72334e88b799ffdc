//! Device sessions: the hub's [`Endpoint`], and the task that serves one device's link.
//!
//! One live session per device: a new connection replaces the old one. A session serves IoT
//! Hub's device topics: twin GET, reported PATCH (acknowledged in order, once durable), method
//! responses and telemetry. Desired-property changes and method requests are pushed to it. The
//! hub closes a session when its device is disabled, deleted or retired, when its keys change,
//! when its SAS token expires, when it breaks the protocol, or when it cannot keep up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{oneshot, Notify};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::{
    ConnectRefused, ConnectRequest, Credentials, DeviceFrame, Endpoint, Link, LinkClosed, LinkRx,
    LinkTx, Message, QoS,
};
use iot_dm_core::method::MethodResponse;
use iot_dm_core::twin::{AuthenticationType, ConnectionState, DeviceStatus, Twin};
use iot_dm_core::wire::{
    self, DeviceTopic, IdForm, PropertyBag, RequestId, SasToken, Subscription, SymmetricKey,
};

use super::error::HubError;
use super::events::{Actor, HubEvent};
use super::queue::{self, Receiver, Sender};
use super::state::{lock, locked, Ack};
use super::twins::DesiredChange;
use super::Hub;

/// Messages a session may have queued towards a slow device before the hub drops it.
const OUTBOUND_CAPACITY: usize = 1024;
/// Frames a device may have queued towards the hub.
const INBOUND_CAPACITY: usize = 256;

/// What a session subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    pub(crate) twin_responses: AtomicBool,
    pub(crate) desired: AtomicBool,
    pub(crate) methods: AtomicBool,
    pub(crate) c2d: AtomicBool,
}

impl Subs {
    fn snapshot(&self) -> [bool; 4] {
        [
            self.twin_responses.load(Ordering::Relaxed),
            self.desired.load(Ordering::Relaxed),
            self.methods.load(Ordering::Relaxed),
            self.c2d.load(Ordering::Relaxed),
        ]
    }

    fn restore(&self, s: [bool; 4]) {
        self.twin_responses.store(s[0], Ordering::Relaxed);
        self.desired.store(s[1], Ordering::Relaxed);
        self.methods.store(s[2], Ordering::Relaxed);
        self.c2d.store(s[3], Ordering::Relaxed);
    }
}

/// The hub's handle on a live session.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    conn_id: u64,
    pub(crate) outbound: Sender<Message>,
    /// What the hub and the session task share (one allocation per session).
    pub(crate) shared: Arc<SessionShared>,
}

/// Per-session state shared by the hub and the session task.
#[derive(Default)]
pub(crate) struct SessionShared {
    pub(crate) subs: Subs,
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<Result<MethodResponse, HubError>>>>,
    /// Cloud-to-device messages below this sequence number went out on this session.
    pub(crate) c2d_sent: AtomicU64,
    c2d_form: Mutex<IdForm>,
    /// Why the session is to close.
    close_reason: Mutex<Option<String>>,
    /// Wakes the session task to close (one waiter: `notify_one` keeps a permit if it is
    /// not waiting yet).
    close: Notify,
}

impl SessionHandle {
    /// How the device writes its id in its cloud-to-device subscription.
    pub(crate) fn c2d_form(&self) -> IdForm {
        *locked(&self.shared.c2d_form)
    }

    pub(crate) fn close(&self, reason: &str) {
        locked(&self.shared.close_reason).get_or_insert_with(|| reason.to_string());
        self.shared.close.notify_one();
    }
}

/// Live sessions and what survives a session (subscriptions, when the device asked to keep
/// its session).
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<DeviceId, SessionHandle>>,
    kept: Mutex<HashMap<DeviceId, ([bool; 4], IdForm)>>,
    next_conn: AtomicU64,
    pub(crate) next_rid: AtomicU64,
    /// Woken whenever a session subscribes to methods (for `connectTimeoutInSeconds`).
    pub(crate) changed: tokio::sync::Notify,
}

impl Sessions {
    pub(crate) fn get(&self, id: &str) -> Option<SessionHandle> {
        locked(&self.live).get(id).cloned()
    }

    pub(crate) fn count(&self) -> usize {
        locked(&self.live).len()
    }
}

struct ChanTx(Sender<DeviceFrame>);
struct ChanRx(Receiver<Message>);

#[async_trait::async_trait]
impl LinkTx<DeviceFrame> for ChanTx {
    async fn send(&mut self, item: DeviceFrame) -> Result<(), LinkClosed> {
        self.0.send(item).await.map_err(|_| LinkClosed)
    }
}

#[async_trait::async_trait]
impl LinkRx<Message> for ChanRx {
    async fn recv(&mut self) -> Option<Message> {
        self.0.recv().await
    }
}

fn refuse(reason: impl Into<String>) -> ConnectRefused {
    ConnectRefused::NotAuthorized {
        reason: reason.into(),
    }
}

fn thumbprint_eq(a: &Option<String>, b: &str) -> bool {
    a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b))
}

fn error_body(e: &HubError) -> Bytes {
    Bytes::from(
        json!({"errorCode": e.code(), "message": e.to_string()})
            .to_string()
            .into_bytes(),
    )
}

impl Hub {
    /// Checks a device's credentials against the registry; returns when they expire.
    pub(crate) fn authenticate(
        &self,
        req: &ConnectRequest,
    ) -> Result<Option<Timestamp>, ConnectRefused> {
        let id = req.device_id.as_str();
        if req.module_id.is_some() {
            return Err(refuse("module identities are not supported"));
        }
        let device = self
            .get_device(id)
            .map_err(|_| refuse(format!("unknown device {id}")))?;
        if !device.state().can_connect() || device.status != DeviceStatus::Enabled {
            return Err(refuse(format!(
                "device {id} is {}",
                device.state().as_str()
            )));
        }
        let auth = &device.authentication;
        match (&req.credentials, auth.kind) {
            (Credentials::Sas(token), AuthenticationType::Sas) => {
                let token = SasToken::parse(token).map_err(|e| refuse(e.to_string()))?;
                if token.key_name().is_some() {
                    return Err(refuse("policy tokens cannot open device sessions here"));
                }
                // the path must name this device; the host is the one the device signed for
                let host = token.resource_uri().split('/').next().unwrap_or_default();
                token
                    .check_resource(&wire::device_resource_uri(host, &req.device_id))
                    .map_err(|e| refuse(e.to_string()))?;
                let now = self.now();
                let keys = [
                    &auth.symmetric_key.primary_key,
                    &auth.symmetric_key.secondary_key,
                ];
                let mut last_err = refuse("no key");
                for key in keys.into_iter().flatten() {
                    let key = SymmetricKey::new(key.clone()).map_err(|e| refuse(e.to_string()))?;
                    match token.verify(&key, now) {
                        Ok(()) => return Ok(Some(token.expiry())),
                        Err(e) => last_err = refuse(e.to_string()),
                    }
                }
                Err(last_err)
            }
            (Credentials::X509 { sha1, sha256 }, AuthenticationType::SelfSigned) => {
                let t = &auth.x509_thumbprint;
                let ok = [&t.primary_thumbprint, &t.secondary_thumbprint]
                    .into_iter()
                    .any(|want| thumbprint_eq(want, sha1) || thumbprint_eq(want, sha256));
                if ok {
                    Ok(None)
                } else {
                    Err(refuse("certificate thumbprint does not match"))
                }
            }
            (Credentials::X509Chain(chain), AuthenticationType::SelfSigned) => {
                let (sha1, sha256) = chain
                    .first()
                    .map(|der| super::x509::thumbprints(der))
                    .ok_or_else(|| refuse("no client certificate was presented"))?;
                let t = &auth.x509_thumbprint;
                let ok = [&t.primary_thumbprint, &t.secondary_thumbprint]
                    .into_iter()
                    .any(|want| thumbprint_eq(want, &sha1) || thumbprint_eq(want, &sha256));
                if ok {
                    Ok(None)
                } else {
                    Err(refuse("certificate thumbprint does not match"))
                }
            }
            (Credentials::X509Chain(chain), AuthenticationType::CertificateAuthority) => {
                self.verify_ca_chain(&req.device_id, chain)
                    .map_err(refuse)?;
                Ok(None)
            }
            (_, kind) => Err(refuse(format!(
                "device {id} authenticates with {}, which these credentials are not",
                kind.as_str()
            ))),
        }
    }

    /// Closes a device's live session, if any.
    pub(crate) fn close_session(&self, id: &DeviceId, reason: &str) {
        if let Some(h) = self.inner.sessions.get(id.as_str()) {
            h.close(reason);
        }
        locked(&self.inner.sessions.kept).remove(id);
    }

    pub(crate) fn close_all_sessions(&self, reason: &str) {
        let live: Vec<SessionHandle> = locked(&self.inner.sessions.live)
            .values()
            .cloned()
            .collect();
        for h in live {
            h.close(reason);
        }
    }

    /// Number of live device sessions.
    pub fn connected_devices(&self) -> usize {
        self.inner.sessions.count()
    }

    /// Pushes a desired-property change to the device's session, if it listens.
    pub(crate) fn notify_desired(&self, id: &DeviceId, change: DesiredChange) {
        let Some(h) = self.inner.sessions.get(id.as_str()) else {
            return;
        };
        if !h.shared.subs.desired.load(Ordering::Relaxed) {
            return;
        }
        let body = iot_dm_core::twin::desired_notification(&change.body, change.version);
        let msg = Message::new(wire::topic::desired_patch(change.version), body.to_string());
        if h.outbound.try_send(msg).is_err() {
            h.close("device is not keeping up with desired-property notifications");
        }
    }

    fn set_connection(&self, id: &DeviceId, state: ConnectionState) {
        let Ok(slot) = self.inner.state.slot(id.as_str()) else {
            return;
        };
        let now = self.now();
        let mut g = lock(&slot);
        if g.deleted {
            return;
        }
        g.device.connection_state = state;
        g.device.connection_state_updated_time = Some(now);
        g.device.last_activity_time = Some(now);
        g.sync_twin();
    }

    fn open_session(&self, req: ConnectRequest, expiry: Option<Timestamp>) -> Link {
        let (frame_tx, frame_rx) = queue::bounded(INBOUND_CAPACITY);
        let (out_tx, out_rx) = queue::bounded(OUTBOUND_CAPACITY);
        let sessions = &self.inner.sessions;
        let handle = SessionHandle {
            conn_id: sessions.next_conn.fetch_add(1, Ordering::Relaxed),
            outbound: out_tx,
            shared: Arc::default(),
        };
        let id = req.device_id.clone();
        let id_str = id.clone();
        let kept = if req.clean_session {
            locked(&sessions.kept).remove(&id);
            None
        } else {
            locked(&sessions.kept).get(&id).copied()
        };
        if let Some((s, form)) = kept {
            handle.shared.subs.restore(s);
            *locked(&handle.shared.c2d_form) = form;
        }
        let previous = locked(&sessions.live).insert(id.clone(), handle.clone());
        if let Some(old) = previous {
            old.close("replaced by a new connection");
        }
        self.set_connection(&id, ConnectionState::Connected);
        self.emit(HubEvent::Connected {
            device_id: id.clone(),
        });
        if handle.shared.subs.methods.load(Ordering::Relaxed) {
            sessions.changed.notify_waiters();
        }
        let pump = handle.shared.subs.c2d.load(Ordering::Relaxed);
        let task = SessionTask {
            hub: self.clone(),
            id,
            handle,
            keep: !req.clean_session,
        };
        tokio::spawn(task.run(frame_rx, expiry));
        if pump {
            self.pump_c2d(id_str.as_str());
        }
        Link {
            tx: Box::new(ChanTx(frame_tx)),
            rx: Box::new(ChanRx(out_rx)),
            session_present: kept.is_some(),
        }
    }
}

#[async_trait::async_trait]
impl Endpoint for Hub {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, ConnectRefused> {
        if self.is_closed() {
            return Err(ConnectRefused::ServerUnavailable {
                reason: "the hub is shut down".into(),
            });
        }
        let expiry = match self.authenticate(&request) {
            Ok(e) => e,
            Err(e) => {
                tracing::info!(device = %request.device_id, %e, "connection refused");
                return Err(e);
            }
        };
        Ok(self.open_session(request, expiry))
    }
}

struct SessionTask {
    hub: Hub,
    id: DeviceId,
    handle: SessionHandle,
    keep: bool,
}

/// A reported patch waiting to be acknowledged.
struct PendingAck {
    rid: RequestId,
    twin: Arc<Twin>,
    ack: Ack,
}

impl SessionTask {
    async fn run(self, mut frames: Receiver<DeviceFrame>, expiry: Option<Timestamp>) {
        // reported patches waiting to be durable, acknowledged in order
        let mut acks: VecDeque<PendingAck> = VecDeque::new();
        let expires_in = expiry.map(|e| e.since(self.hub.now()));
        let expired = async {
            match expires_in {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let reason = loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    None => break "device closed the connection".to_string(),
                    Some(f) => {
                        if let Err(reason) = self.handle_frame(f, &mut acks) {
                            break reason;
                        }
                    }
                },
                durable = next_ack(&mut acks), if !acks.is_empty() => {
                    if let Some(p) = acks.pop_front() {
                        if let Some(msg) = self.acknowledgement(&p, durable) {
                            if let Err(reason) = self.send(msg) {
                                break reason;
                            }
                        }
                    }
                }
                _ = self.handle.shared.close.notified() => {
                    if let Some(reason) = locked(&self.handle.shared.close_reason).clone() {
                        break reason;
                    }
                }
                _ = &mut expired => break "SAS token expired".to_string(),
            }
        };
        // acknowledgements already queued still go out before the session is torn down
        while let Some(mut p) = acks.pop_front() {
            let durable = p.ack.as_mut().await;
            if let Some(msg) = self.acknowledgement(&p, durable) {
                if self.handle.outbound.send(msg).await.is_err() {
                    break;
                }
            }
        }
        self.finish(&reason);
    }

    fn finish(&self, reason: &str) {
        let sessions = &self.hub.inner.sessions;
        let was_current = {
            let mut live = locked(&sessions.live);
            match live.get(&self.id) {
                Some(h) if h.conn_id == self.handle.conn_id => {
                    live.remove(&self.id);
                    true
                }
                _ => false,
            }
        };
        if self.keep && was_current {
            locked(&sessions.kept).insert(
                self.id.clone(),
                (self.handle.shared.subs.snapshot(), self.handle.c2d_form()),
            );
        }
        // pending method calls see their sender dropped: the device went away
        locked(&self.handle.shared.pending).clear();
        if was_current {
            self.hub
                .set_connection(&self.id, ConnectionState::Disconnected);
        }
        tracing::debug!(device = %self.id, reason, "session ended");
        self.hub.emit(HubEvent::Disconnected {
            device_id: self.id.clone(),
            reason: reason.to_string(),
        });
    }

    fn send(&self, msg: Message) -> Result<(), String> {
        self.handle
            .outbound
            .try_send(msg)
            .map_err(|_| "device is not reading its messages".to_string())
    }

    /// Serves one frame; an `Err` closes the session with that reason.
    fn handle_frame(
        &self,
        frame: DeviceFrame,
        acks: &mut VecDeque<PendingAck>,
    ) -> Result<(), String> {
        match frame {
            DeviceFrame::Subscribe(filters) => {
                let mut c2d = false;
                for f in filters {
                    let sub = Subscription::classify(&f, &self.id, None)
                        .map_err(|e| format!("refused subscription: {e}"))?;
                    if let Subscription::CloudToDevice { id_form } = sub {
                        *locked(&self.handle.shared.c2d_form) = id_form;
                        c2d = true;
                    }
                    self.set_sub(&sub, true);
                }
                if c2d {
                    self.hub.pump_c2d(self.id.as_str());
                }
                Ok(())
            }
            DeviceFrame::Ack(seq) => {
                let hub = self.hub.clone();
                let id = self.id.clone();
                tokio::spawn(async move {
                    if let Err(e) = hub.complete_c2d(id.as_str(), seq).await {
                        tracing::warn!(device = %id, %e, "completing a cloud-to-device message failed");
                    }
                });
                Ok(())
            }
            DeviceFrame::Unsubscribe(filters) => {
                for f in filters {
                    if let Ok(sub) = Subscription::classify(&f, &self.id, None) {
                        self.set_sub(&sub, false);
                    }
                }
                Ok(())
            }
            DeviceFrame::Publish(msg) => self.handle_publish(msg, acks),
        }
    }

    fn set_sub(&self, sub: &Subscription, on: bool) {
        let s = &self.handle.shared.subs;
        match sub {
            Subscription::TwinResponses => s.twin_responses.store(on, Ordering::Relaxed),
            Subscription::DesiredPatches => s.desired.store(on, Ordering::Relaxed),
            Subscription::MethodRequests => {
                s.methods.store(on, Ordering::Relaxed);
                if on {
                    self.hub.inner.sessions.changed.notify_waiters();
                }
            }
            Subscription::CloudToDevice { .. } => s.c2d.store(on, Ordering::Relaxed),
            _ => {}
        }
    }

    fn twin_reply(
        &self,
        status: u16,
        rid: &RequestId,
        version: Option<u64>,
        body: Bytes,
    ) -> Result<(), String> {
        if !self
            .handle
            .shared
            .subs
            .twin_responses
            .load(Ordering::Relaxed)
        {
            // like MQTT: no subscription, no delivery
            return Ok(());
        }
        self.send(Message::new(
            wire::topic::twin_response(status, rid, version),
            body,
        ))
    }

    fn handle_publish(&self, msg: Message, acks: &mut VecDeque<PendingAck>) -> Result<(), String> {
        let topic = DeviceTopic::parse(&msg.topic, &self.id, None)
            .map_err(|e| format!("protocol violation: {e}"))?;
        match topic {
            DeviceTopic::TwinGet { rid } => {
                let twin = self
                    .hub
                    .get_twin(self.id.as_str())
                    .map_err(|e| e.to_string())?;
                let body = twin.device_view().to_string();
                self.twin_reply(200, &rid, None, Bytes::from(body))
            }
            DeviceTopic::TwinPatchReported { rid } => {
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&msg.payload);
                let result = match parsed {
                    Ok(patch) => self.hub.patch_reported_queued(self.id.as_str(), &patch),
                    Err(e) => Err(HubError::invalid("body", format!("not JSON: {e}"))),
                };
                match result {
                    Ok((twin, ack)) => {
                        acks.push_back(PendingAck { rid, twin, ack });
                        Ok(())
                    }
                    Err(e) => self.twin_reply(e.http_status(), &rid, None, error_body(&e)),
                }
            }
            DeviceTopic::MethodResponse { status, rid } => {
                let waiter = locked(&self.handle.shared.pending).remove(rid.as_str());
                if let Some(tx) = waiter {
                    let response =
                        MethodResponse::from_device(status, &msg.payload).map_err(HubError::from);
                    let _ = tx.send(response);
                }
                Ok(())
            }
            DeviceTopic::Telemetry { bag, .. } => {
                self.hub.publish_telemetry(&self.id, bag, msg.payload);
                Ok(())
            }
            _ => Err("protocol violation: unsupported topic".into()),
        }
    }
}

/// Waits until the oldest pending reported patch is durable (or failed).
async fn next_ack(acks: &mut VecDeque<PendingAck>) -> Result<(), crate::store::StoreError> {
    match acks.front_mut() {
        Some(p) => p.ack.as_mut().await,
        None => std::future::pending().await,
    }
}

impl SessionTask {
    /// The twin response for a reported patch once its write is durable (or failed), if the
    /// device subscribed to twin responses.
    fn acknowledgement(
        &self,
        p: &PendingAck,
        durable: Result<(), crate::store::StoreError>,
    ) -> Option<Message> {
        let (status, version, body) = match durable {
            Ok(()) => {
                self.hub.emit_twin_changed(&p.twin, Actor::Device);
                (204, Some(p.twin.reported().version()), Bytes::new())
            }
            Err(e) => {
                let e = HubError::from(e);
                (e.http_status(), None, error_body(&e))
            }
        };
        self.handle
            .shared
            .subs
            .twin_responses
            .load(Ordering::Relaxed)
            .then(|| Message::new(wire::topic::twin_response(status, &p.rid, version), body))
    }
}

/// A device-to-cloud message.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The sending device.
    pub device_id: DeviceId,
    /// System and application properties.
    pub properties: PropertyBag,
    /// The body.
    pub body: Bytes,
    /// When the hub received it.
    pub received: Timestamp,
}

impl Hub {
    pub(crate) fn publish_telemetry(&self, id: &DeviceId, properties: PropertyBag, body: Bytes) {
        let _ = self.inner.telemetry.send(Arc::new(Telemetry {
            device_id: id.clone(),
            properties,
            body,
            received: self.now(),
        }));
    }

    /// Subscribes to device-to-cloud messages (a subscriber that falls more than the channel's
    /// capacity behind misses messages and is told how many).
    pub fn telemetry(&self) -> tokio::sync::broadcast::Receiver<Arc<Telemetry>> {
        self.inner.telemetry.subscribe()
    }

    pub(crate) fn send_method_request(
        &self,
        h: &SessionHandle,
        name: &str,
        rid: &RequestId,
        payload: Bytes,
    ) -> bool {
        let msg =
            Message::new(wire::topic::method_request(name, rid), payload).with_qos(QoS::AtMostOnce);
        h.outbound.try_send(msg).is_ok()
    }
}
