//! The hub's event stream, without I/O: the event type names, the `types=` filter, the `lost`
//! signal, and the Server-Sent Events framing ([`sse`]) the hub's `GET /events` writes and the
//! service client reads.
//!
//! Each event on the stream is one SSE frame: `id:` the hub's sequence number of the event,
//! `event:` one of the [`EventType`] names (or [`LOST`]), `data:` one JSON object with at least
//! `id`, `type` and `time`.
//!
//! ```
//! use iot_dm_core::events::{EventType, EventTypes};
//!
//! let types: EventTypes = "twin.changed, device.connected".parse()?;
//! assert!(types.contains(EventType::TwinChanged));
//! assert!(!types.contains(EventType::Telemetry));
//! assert_eq!(types.to_string(), "twin.changed,device.connected");
//!
//! let e = "twin.changed,nope".parse::<EventTypes>().unwrap_err();
//! assert_eq!(e.to_string(), "unknown event type \"nope\"; the types are twin.changed, \
//!     device.connected, device.disconnected, identity.created, identity.updated, \
//!     identity.deleted, lifecycle.changed, telemetry, job.progress, configuration.metrics, alert");
//! # Ok::<(), iot_dm_core::events::UnknownEventType>(())
//! ```

pub mod sse;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The SSE event name of the signal that some events could not be delivered.
pub const LOST: &str = "lost";

/// The kinds of event on the stream, by their documented names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// `twin.changed`: a twin changed (tags, desired or reported), with who changed it.
    TwinChanged,
    /// `device.connected`: a device opened a session.
    DeviceConnected,
    /// `device.disconnected`: a device's session ended.
    DeviceDisconnected,
    /// `identity.created`: a device identity was created.
    IdentityCreated,
    /// `identity.updated`: a device identity changed (status, credentials, capabilities).
    IdentityUpdated,
    /// `identity.deleted`: a device identity was deleted.
    IdentityDeleted,
    /// `lifecycle.changed`: a device moved through its lifecycle.
    LifecycleChanged,
    /// `telemetry`: a device-to-cloud message.
    Telemetry,
    /// `job.progress`: a job's status or device counts changed.
    JobProgress,
    /// `configuration.metrics`: an automatic configuration's counts (targeted, applied, each
    /// custom metric) moved.
    ConfigurationMetrics,
    /// `alert`: an alert was raised, cleared or acknowledged.
    Alert,
}

impl EventType {
    /// Every type, in documented order.
    pub const ALL: [EventType; 11] = [
        EventType::TwinChanged,
        EventType::DeviceConnected,
        EventType::DeviceDisconnected,
        EventType::IdentityCreated,
        EventType::IdentityUpdated,
        EventType::IdentityDeleted,
        EventType::LifecycleChanged,
        EventType::Telemetry,
        EventType::JobProgress,
        EventType::ConfigurationMetrics,
        EventType::Alert,
    ];

    /// The documented name (the SSE `event:` field and the JSON `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TwinChanged => "twin.changed",
            EventType::DeviceConnected => "device.connected",
            EventType::DeviceDisconnected => "device.disconnected",
            EventType::IdentityCreated => "identity.created",
            EventType::IdentityUpdated => "identity.updated",
            EventType::IdentityDeleted => "identity.deleted",
            EventType::LifecycleChanged => "lifecycle.changed",
            EventType::Telemetry => "telemetry",
            EventType::JobProgress => "job.progress",
            EventType::ConfigurationMetrics => "configuration.metrics",
            EventType::Alert => "alert",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`EventType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {name:?}; the types are {}", type_list())]
#[non_exhaustive]
pub struct UnknownEventType {
    /// The name given.
    pub name: String,
}

fn type_list() -> String {
    EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for EventType {
    type Err = UnknownEventType;
    fn from_str(s: &str) -> Result<EventType, UnknownEventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType { name: s.into() })
    }
}

/// A set of event types: the `types=` filter (a comma-separated list; blanks around names are
/// ignored; an empty list is every type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventTypes(u32);

impl EventTypes {
    /// Every type.
    pub fn all() -> EventTypes {
        EventTypes(EventType::ALL.iter().fold(0, |a, t| a | t.bit()))
    }

    /// No type.
    pub fn none() -> EventTypes {
        EventTypes(0)
    }

    /// The set with `t` added.
    pub fn with(self, t: EventType) -> EventTypes {
        EventTypes(self.0 | t.bit())
    }

    /// Whether `t` is in the set.
    pub fn contains(self, t: EventType) -> bool {
        self.0 & t.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types in the set, in documented order.
    pub fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl Default for EventTypes {
    fn default() -> Self {
        EventTypes::all()
    }
}

impl FromStr for EventTypes {
    type Err = UnknownEventType;
    fn from_str(s: &str) -> Result<EventTypes, UnknownEventType> {
        let mut set = EventTypes::none();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            set = set.with(name.parse()?);
        }
        Ok(if set.is_empty() {
            EventTypes::all()
        } else {
            set
        })
    }
}

impl fmt::Display for EventTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(t.as_str())?;
        }
        Ok(())
    }
}

/// Why events were not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum LostReason {
    /// The `Last-Event-ID` is older than the hub's retention.
    Retention,
    /// The reader fell behind by more than the hub retains.
    Lagged,
    /// The `Last-Event-ID` is not one this hub handed out (ahead of its latest event: from
    /// another hub, or from before a restart whose clock went back); the stream starts over
    /// from the oldest retained event.
    Unknown,
}

/// The data of a [`LOST`] signal: the events with ids after `after` and before `next` were
/// not delivered; the stream goes on with `next`. Its SSE id is `next - 1`, so that a
/// reconnection after it does not ask for the lost events again.
///
/// ```
/// use iot_dm_core::events::{Lost, LostReason};
/// let lost = Lost { after: 10, next: 25, reason: LostReason::Lagged };
/// assert_eq!(lost.missed(), Some(14));
/// assert_eq!(
///     serde_json::to_string(&lost)?,
///     r#"{"after":10,"next":25,"reason":"lagged"}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lost {
    /// The last id the reader had.
    pub after: u64,
    /// The id the stream goes on with.
    pub next: u64,
    /// Why.
    pub reason: LostReason,
}

impl Lost {
    /// How many ids were skipped (`None` when `next` is not after `after`: an unknown id).
    /// Ids are dense within one run of the hub; across a restart some were never used.
    pub fn missed(&self) -> Option<u64> {
        self.next.checked_sub(self.after)?.checked_sub(1)
    }
}

#[cfg(test)]
mod tests;
