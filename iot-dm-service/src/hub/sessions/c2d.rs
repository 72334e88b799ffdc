//! Cloud-to-device messages: a durable queue per device, delivered at least once.
//!
//! As in IoT Hub: at most [`MAX_PENDING`] messages wait per device (more is refused with
//! `403004`), a message lives [`DEFAULT_TTL`] unless its sender says otherwise (at most
//! [`MAX_TTL`]), and its body is at most [`MAX_C2D_BODY`] bytes. A queued message goes to the
//! device whenever it has a session subscribed to `devices/{id}/messages/devicebound/#`, and
//! stays queued until the device acknowledges it (an MQTT PUBACK); a session that ends
//! without acknowledging gets it again on the next one. Expired messages are dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::link::{Message, QoS};
use iot_dm_core::wire::{self, PropertyBag, SystemProperty};

use crate::api::MessageApi;
use crate::hub::engine::lock;
use crate::hub::error::HubError;
use crate::hub::Hub;

/// Most messages waiting per device.
pub const MAX_PENDING: usize = 50;
/// Largest message body.
pub const MAX_C2D_BODY: usize = 64 * 1024;
/// Time to live when the sender gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Longest time to live.
pub const MAX_TTL: Duration = Duration::from_secs(48 * 3600);

/// A message for a device.
///
/// ```
/// use iot_dm_service::hub::CloudMessage;
/// let m = CloudMessage::new("reboot at noon").property("priority", "high");
/// assert_eq!(m.body().as_ref(), b"reboot at noon");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CloudMessage {
    body: Bytes,
    properties: Vec<(String, Option<String>)>,
    message_id: Option<String>,
    ttl: Option<Duration>,
}

impl CloudMessage {
    /// A message with this body.
    pub fn new(body: impl Into<Bytes>) -> CloudMessage {
        CloudMessage {
            body: body.into(),
            properties: Vec::new(),
            message_id: None,
            ttl: None,
        }
    }

    /// Adds an application property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), Some(value.into())));
        self
    }

    /// Sets the message id (`$.mid`); a fresh one is assigned otherwise.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Sets the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// A message as the REST API carries it (`POST /devices/{id}/commands`): the body in base64,
/// application properties as `[name, value]` pairs in order, the message id, and the time to
/// live in whole seconds (a fraction rounds up, so a valid time to live stays valid).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageBody {
    #[serde(with = "body_b64")]
    body: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    properties: Vec<(String, Option<String>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<u64>,
}

impl From<&CloudMessage> for MessageBody {
    fn from(m: &CloudMessage) -> MessageBody {
        MessageBody {
            body: m.body.to_vec(),
            properties: m.properties.clone(),
            message_id: m.message_id.clone(),
            ttl_seconds: m.ttl.map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0)),
        }
    }
}

impl From<MessageBody> for CloudMessage {
    fn from(b: MessageBody) -> CloudMessage {
        CloudMessage {
            body: Bytes::from(b.body),
            properties: b.properties,
            message_id: b.message_id,
            ttl: b.ttl_seconds.map(Duration::from_secs),
        }
    }
}

mod body_b64 {
    use base64::Engine as _;
    pub(super) fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// A queued message, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) message_id: String,
    #[serde(with = "body_b64")]
    pub(crate) body: Vec<u8>,
    pub(crate) properties: Vec<(String, Option<String>)>,
    pub(crate) expiry: Timestamp,
}

/// A device's queue, stored with its record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Queue {
    pub(crate) next_seq: u64,
    pub(crate) messages: Vec<Queued>,
}

/// A device's queue as its entry holds it: nothing until the queue is first written, so the
/// many devices that never get a message spend 8 bytes on it instead of 32 (and the entry's
/// allocation shrinks a size class).
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueSlot(Option<Box<Queue>>);

/// The queue every empty slot reads as.
static EMPTY: Queue = Queue {
    next_seq: 0,
    messages: Vec::new(),
};

impl From<Queue> for QueueSlot {
    fn from(q: Queue) -> Self {
        if q == EMPTY {
            QueueSlot(None)
        } else {
            QueueSlot(Some(Box::new(q)))
        }
    }
}

impl std::ops::Deref for QueueSlot {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for QueueSlot {
    fn deref_mut(&mut self) -> &mut Queue {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for QueueSlot {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Queue {
    fn drop_expired(&mut self, now: Timestamp) -> bool {
        let before = self.messages.len();
        self.messages.retain(|m| m.expiry > now);
        before != self.messages.len()
    }
}

impl Hub {
    /// Queues a message for a device and returns its message id once it is durable. The device
    /// gets it now if it is listening, or when it next subscribes.
    pub async fn send_c2d(
        &self,
        device_id: &str,
        message: CloudMessage,
    ) -> Result<String, HubError> {
        if message.body.len() > MAX_C2D_BODY {
            return Err(HubError::invalid(
                "body",
                format!("{} bytes, the limit is {MAX_C2D_BODY}", message.body.len()),
            ));
        }
        let ttl = message.ttl.unwrap_or(DEFAULT_TTL);
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(HubError::invalid(
                "ttl",
                format!("{} s is outside 1..={} s", ttl.as_secs(), MAX_TTL.as_secs()),
            ));
        }
        let mut bag = PropertyBag::new();
        for (k, v) in &message.properties {
            bag.push(k, v.as_deref())
                .map_err(|e| HubError::invalid("properties", e.to_string()))?;
        }
        let now = self.now();
        let slot = self.inner.state.slot(device_id)?;
        let (id, ack) = self.inner.write(&slot, |e| {
            if !e.is_live() {
                return Err(HubError::not_found(device_id));
            }
            e.c2d.drop_expired(now);
            if e.c2d.messages.len() >= MAX_PENDING {
                return Err(HubError::QueueFull {
                    device_id: device_id.to_string(),
                    limit: MAX_PENDING,
                });
            }
            let seq = e.c2d.next_seq;
            e.c2d.next_seq += 1;
            let message_id = message
                .message_id
                .clone()
                .unwrap_or_else(|| format!("{}-{seq}", e.device.generation_id));
            e.c2d.messages.push(Queued {
                seq,
                message_id: message_id.clone(),
                body: message.body.to_vec(),
                properties: message.properties.clone(),
                expiry: now + ttl,
            });
            e.device.identity_mut().cloud_to_device_message_count = e.c2d.messages.len() as u64;
            Ok(message_id)
        })?;
        ack.await?;
        self.pump_c2d(device_id);
        Ok(id)
    }

    /// Sends the device's queued messages that its current session has not had yet.
    pub(crate) fn pump_c2d(&self, device_id: &str) {
        let Some(session) = self.inner.sessions.get(device_id) else {
            return;
        };
        if !session.shared.subs.c2d.load(Ordering::Relaxed) {
            return;
        }
        let Ok(slot) = self.inner.state.slot(device_id) else {
            return;
        };
        let now = self.now();
        let g = lock(&slot);
        let form = session.c2d_form();
        for m in &g.c2d.messages {
            if m.expiry <= now || session.shared.c2d_sent.load(Ordering::Relaxed) > m.seq {
                continue;
            }
            let mut bag = PropertyBag::new();
            for (k, v) in &m.properties {
                // keys were checked when the message was queued
                let _ = bag.push(k, v.as_deref());
            }
            bag.set_system(SystemProperty::MessageId, &m.message_id);
            bag.set_system(
                SystemProperty::To,
                &format!("/devices/{}/messages/deviceBound", g.device.device_id),
            );
            let msg = Message {
                topic: wire::topic::c2d(&g.device.device_id, &bag, form),
                payload: Bytes::from(m.body.clone()),
                qos: QoS::AtLeastOnce,
                ack_id: Some(m.seq),
            };
            if session.outbound.try_send(msg).is_err() {
                // the rest goes out on the next session
                session.close("device is not reading its cloud-to-device messages");
                return;
            }
            session.shared.c2d_sent.store(m.seq + 1, Ordering::Relaxed);
        }
    }

    /// The device acknowledged message `seq`: it leaves the queue.
    pub(crate) async fn complete_c2d(&self, device_id: &str, seq: u64) -> Result<(), HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let now = self.now();
        let ((), ack) = self.inner.write(&slot, |e| {
            e.c2d.messages.retain(|m| m.seq != seq);
            e.c2d.drop_expired(now);
            e.device.identity_mut().cloud_to_device_message_count = e.c2d.messages.len() as u64;
            Ok(())
        })?;
        ack.await?;
        Ok(())
    }
}

/// Cloud-to-device messages of the embedded hub. `send_c2d` stays an inherent method too (the
/// hub's own tests and embedders call it without the trait in scope).
#[async_trait]
impl MessageApi for Hub {
    async fn send_c2d(&self, device_id: &str, message: CloudMessage) -> Result<String, HubError> {
        Hub::send_c2d(self, device_id, message).await
    }

    /// Drops every queued message for a device (IoT Hub's purge); returns how many.
    async fn purge_c2d(&self, device_id: &str) -> Result<usize, HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let (n, ack) = self.inner.write(&slot, |e| {
            let n = e.c2d.messages.len();
            e.c2d.messages.clear();
            e.device.identity_mut().cloud_to_device_message_count = 0;
            Ok(n)
        })?;
        ack.await?;
        Ok(n)
    }
}
