//! The seam between a device and a hub, independent of any transport.
//!
//! A device session is a pair of one-way [links](Link): the device sends [`DeviceFrame`]s
//! (publishes on IoT Hub topics, subscriptions) and receives [`Message`]s (publishes the hub
//! sends). The topics and payloads are exactly those of IoT Hub's MQTT device protocol (see
//! [`crate::wire`]), so the same hub logic serves an MQTT connection and an in-process one.
//!
//! A hub offers an [`Endpoint`]: given a [`ConnectRequest`] it authenticates the device and
//! returns a [`Link`], or refuses with a [`ConnectRefused`] reason. The device client's transports
//! produce the same [`Link`]: the in-memory transport by calling an in-process hub's endpoint, the
//! MQTT transport by speaking MQTT. This module holds traits, data and [`channel`], the
//! in-process link over bounded queues; it does no I/O.
//!
//! ```
//! use iot_dm_core::link::{Message, QoS};
//! let m = Message::new("$iothub/twin/GET/?$rid=1", "");
//! assert_eq!(m.qos, QoS::AtMostOnce);
//! assert!(m.payload.is_empty());
//! ```

use std::fmt;

use bytes::Bytes;

use crate::identity::{DeviceId, ModuleId};

mod channel;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use channel::{
    bounded, channel, channel_with, HubSide, Receiver, SendError, Sender, TrySendError,
};

/// Delivery guarantee of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QoS {
    /// Fire and forget (MQTT QoS 0).
    #[default]
    AtMostOnce,
    /// Acknowledged, possibly duplicated (MQTT QoS 1).
    AtLeastOnce,
}

/// A publish on an IoT Hub topic, in either direction.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic, e.g. `$iothub/twin/PATCH/properties/reported/?$rid=4`.
    pub topic: String,
    /// The payload bytes.
    pub payload: Bytes,
    /// The delivery guarantee.
    pub qos: QoS,
    /// For an at-least-once message from the hub: the id the device acknowledges with
    /// [`DeviceFrame::Ack`] (an MQTT transport acknowledges with PUBACK and translates).
    pub ack_id: Option<u64>,
}

impl Message {
    /// A QoS 0 message.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            ack_id: None,
        }
    }

    /// The same message with another QoS.
    pub fn with_qos(mut self, qos: QoS) -> Message {
        self.qos = qos;
        self
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .field("ack_id", &self.ack_id)
            .finish()
    }
}

/// What a device sends to a hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceFrame {
    /// A publish (twin requests, reported patches, method responses, telemetry).
    Publish(Message),
    /// Subscriptions to topic filters (twin responses, desired patches, methods, C2D).
    Subscribe(Vec<String>),
    /// Removal of subscriptions.
    Unsubscribe(Vec<String>),
    /// Acknowledges an at-least-once message from the hub (its [`Message::ack_id`]).
    Ack(u64),
}

/// How a device proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A shared access signature token (`SharedAccessSignature sr=..&sig=..&se=..`).
    Sas(String),
    /// An X.509 client certificate, identified by its thumbprints (hex, upper or lower case).
    X509 {
        /// SHA-1 thumbprint of the DER certificate.
        sha1: String,
        /// SHA-256 thumbprint of the DER certificate.
        sha256: String,
    },
    /// An X.509 client certificate chain a transport received in its TLS handshake (DER, the
    /// device's certificate first). The hub decides: by thumbprint for a self-signed device,
    /// by the chain up to a registered certification authority for a CA-signed one.
    X509Chain(Vec<Vec<u8>>),
    /// No credentials.
    None,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Sas(_) => f.write_str("Sas(..)"),
            Credentials::X509 { sha1, .. } => write!(f, "X509({sha1})"),
            Credentials::X509Chain(chain) => write!(f, "X509Chain({} certificates)", chain.len()),
            Credentials::None => f.write_str("None"),
        }
    }
}

/// A device's request to open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The device.
    pub device_id: DeviceId,
    /// The module, for module identities.
    pub module_id: Option<ModuleId>,
    /// The credentials.
    pub credentials: Credentials,
    /// Whether the hub should drop the previous session's subscriptions and queued messages.
    pub clean_session: bool,
}

/// Why a hub refused a session. The MQTT endpoint answers each with a CONNACK code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectRefused {
    /// Unknown device, wrong or expired credentials, disabled or retired device (CONNACK 5).
    #[error("not authorized: {reason}")]
    NotAuthorized {
        /// What failed (for the hub's log; devices only see the code).
        reason: String,
    },
    /// The hub is shutting down or over capacity (CONNACK 3; devices retry).
    #[error("server unavailable: {reason}")]
    ServerUnavailable {
        /// Why.
        reason: String,
    },
}

/// The link was closed by the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("link closed")]
pub struct LinkClosed;

/// The sending half of a link.
#[async_trait::async_trait]
pub trait LinkTx<T: Send + 'static>: Send {
    /// Sends one item; returns once the other side has taken it into its queue.
    async fn send(&mut self, item: T) -> Result<(), LinkClosed>;
}

/// The receiving half of a link.
#[async_trait::async_trait]
pub trait LinkRx<T: Send + 'static>: Send {
    /// The next item, or `None` once the link is closed. Cancel-safe: dropping the future loses
    /// nothing.
    async fn recv(&mut self) -> Option<T>;
}

/// An open device session, from the device's point of view.
pub struct Link {
    /// Frames to the hub.
    pub tx: Box<dyn LinkTx<DeviceFrame>>,
    /// Messages from the hub.
    pub rx: Box<dyn LinkRx<Message>>,
    /// Whether the hub kept subscriptions from an earlier session.
    pub session_present: bool,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("session_present", &self.session_present)
            .finish_non_exhaustive()
    }
}

/// Something devices can open sessions with: an in-process hub, or a transport that reaches one.
#[async_trait::async_trait]
pub trait Endpoint: Send + Sync {
    /// Authenticates the device and opens a session.
    async fn connect(&self, request: ConnectRequest) -> Result<Link, ConnectRefused>;
}
