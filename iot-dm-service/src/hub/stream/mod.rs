//! The hub's event stream: every [`HubEvent`] (telemetry included), numbered with the hub's
//! sequence number and kept in a bounded retention ring, so that a reader can resume after
//! the last id it saw without gaps or duplicates. The REST server serves it as Server-Sent
//! Events (`GET /events`); in process, read it with [`Hub::event_stream`].
//!
//! * **Ids.** Every event gets the next id; ids are dense within one run of the hub. A hub
//!   starts numbering at its clock's Unix time in microseconds (rounded to milliseconds), so
//!   the ids of a restarted hub are above the previous run's (unless the clock went back, or
//!   the previous run averaged more than a million events a second).
//! * **Retention.** The ring keeps the newest [`DEFAULT_EVENT_RETENTION`] events and at most
//!   [`DEFAULT_EVENT_RETENTION_BYTES`] bytes (see
//!   [`HubBuilder::event_retention`](crate::HubBuilder::event_retention)); it lives in memory
//!   and starts empty when the hub starts.
//! * **Lost events are signalled, never skipped silently.** Resuming after an id older than
//!   the ring keeps, or falling more than the ring behind, yields [`StreamItem::Lost`] with
//!   the range that was skipped, then the stream goes on.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iot_dm_service::api::prelude::*;
//! use iot_dm_service::hub::{DeviceSpec, Hub, HubEvent, StreamItem};
//!
//! let hub = Hub::builder().in_memory().open().await?;
//! let mut live = hub.event_stream(None);
//! hub.create_device(DeviceSpec::new("pump-1".parse()?)).await?;
//! let Some(StreamItem::Event(first)) = live.next().await else { unreachable!() };
//! assert!(matches!(first.event, HubEvent::IdentityCreated { .. }));
//! assert_eq!(first.to_json()["type"], "identity.created");
//!
//! // a reader that comes back later resumes after the last id it saw
//! let mut resumed = hub.event_stream(Some(first.id));
//! let Some(StreamItem::Event(next)) = resumed.next().await else { unreachable!() };
//! assert_eq!(next.id, first.id + 1);
//! # Ok(()) }
//! ```

pub(crate) mod render;
pub(crate) mod ring;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::events::{EventType, Lost};
use iot_dm_core::identity::DeviceId;

use crate::hub::{Hub, HubEvent};
use ring::{Read, Ring};

/// The events the ring keeps by default.
pub const DEFAULT_EVENT_RETENTION: usize = 100_000;

/// The bytes the ring keeps by default (64 MiB).
pub const DEFAULT_EVENT_RETENTION_BYTES: usize = 64 << 20;

/// The most of a telemetry body a `telemetry` event carries (4 KiB); the event says the
/// whole size and whether it was cut.
pub const MAX_EVENT_BODY: usize = 4096;

/// The least time between two `job.progress` events of one job (the last change is always
/// published, at most this late).
pub const JOB_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Events a reader takes from the ring at once.
const BATCH: usize = 256;

/// One event as the stream keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The hub's sequence number of the event (the SSE `id`).
    pub id: u64,
    /// When the hub recorded it.
    pub time: Timestamp,
    /// The event.
    pub event: HubEvent,
    /// The bytes it is counted as in the ring.
    pub(crate) size: usize,
}

impl Recorded {
    /// Its type.
    pub fn event_type(&self) -> EventType {
        render::event_type(&self.event)
    }

    /// The device it is about (none for a job's progress).
    pub fn device_id(&self) -> Option<&DeviceId> {
        render::device_id(&self.event)
    }

    /// Its JSON, as `GET /events` sends it: `id`, `type`, `time`, `deviceId` when about a
    /// device, and the fields of its type.
    pub fn to_json(&self) -> serde_json::Value {
        render::to_json(self)
    }
}

/// What a reader of the stream gets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamItem {
    /// The next event.
    Event(Arc<Recorded>),
    /// Events were lost before the next one (see [`Lost`]).
    Lost(Lost),
}

/// A reader of the event stream, from [`Hub::event_stream`]. Each reader has its own position;
/// readers never slow the hub down: one that falls behind the ring gets
/// [`StreamItem::Lost`].
#[derive(Debug)]
pub struct EventCursor {
    ring: Arc<Ring>,
    next: u64,
    first: bool,
    wake: watch::Receiver<u64>,
    buf: VecDeque<Arc<Recorded>>,
}

impl EventCursor {
    /// The next item, waiting for one; `None` once the hub has shut down and every event
    /// before is read.
    pub async fn next(&mut self) -> Option<StreamItem> {
        loop {
            match self.try_next() {
                Some(item) => return Some(item),
                None if self.ring.is_closed() => return None,
                None => {
                    if self.wake.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// The next item if there is one now.
    pub fn try_next(&mut self) -> Option<StreamItem> {
        if let Some(e) = self.buf.pop_front() {
            return Some(StreamItem::Event(e));
        }
        // seen before reading, so an append during the read wakes the next wait
        self.wake.borrow_and_update();
        let first = std::mem::take(&mut self.first);
        match self.ring.read(self.next, BATCH, first) {
            Read::Lost(lost, events) => {
                self.next = events.last().map_or(lost.next, |e| e.id + 1);
                self.buf.extend(events);
                Some(StreamItem::Lost(lost))
            }
            Read::Events(events) => {
                if let Some(last) = events.last() {
                    self.next = last.id + 1;
                }
                self.buf.extend(events);
                self.buf.pop_front().map(StreamItem::Event)
            }
        }
    }

    /// The id of the next event this reader will get.
    pub fn next_id(&self) -> u64 {
        self.next
    }
}

/// The first id of a hub started at `now`: its Unix time in microseconds, at millisecond
/// precision (1 for a clock at or before 1970).
pub(crate) fn first_id(now: Timestamp) -> u64 {
    let since = now.since(Timestamp::from_unix_secs(0));
    u64::try_from(since.as_millis())
        .unwrap_or(u64::MAX / 2000)
        .saturating_mul(1000)
        .max(1)
}

/// A telemetry event: the body cut to [`MAX_EVENT_BODY`] (at a character boundary when it is
/// UTF-8 text, copied so that the ring does not hold the whole message).
pub(crate) fn telemetry_event(
    device_id: &DeviceId,
    properties: &iot_dm_core::wire::PropertyBag,
    body: &Bytes,
) -> HubEvent {
    let kept = if body.len() <= MAX_EVENT_BODY {
        body.clone()
    } else {
        // text is cut before the character the limit falls in; anything else at the limit
        let mut cut = MAX_EVENT_BODY;
        while cut > 0 && (body[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        if std::str::from_utf8(&body[..cut]).is_err() {
            cut = MAX_EVENT_BODY;
        }
        Bytes::copy_from_slice(&body[..cut])
    };
    HubEvent::Telemetry {
        device_id: device_id.clone(),
        properties: properties.clone(),
        body: kept,
        size: body.len(),
    }
}

impl Hub {
    /// A reader of the hub's event stream: with `None`, from the next event on; with
    /// `Some(id)`, every retained event after `id` first (a [`StreamItem::Lost`] first when
    /// some of them are no longer retained).
    pub fn event_stream(&self, after: Option<u64>) -> EventCursor {
        let ring = self.inner.stream.clone();
        let next = match after {
            Some(id) => id.saturating_add(1),
            None => ring.next_id(),
        };
        EventCursor {
            wake: ring.subscribe(),
            ring,
            next,
            first: true,
            buf: VecDeque::new(),
        }
    }

    /// The events the stream retains now, and their bytes (as counted against
    /// [`HubBuilder::event_retention`](crate::HubBuilder::event_retention)).
    pub fn event_retention(&self) -> (usize, usize) {
        self.inner.stream.len()
    }

    /// Appends an event to the stream only (not to [`Hub::events`]).
    pub(crate) fn record(&self, event: HubEvent) -> u64 {
        self.inner.stream.push(self.now(), event)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn long_bodies_are_cut_at_a_character_boundary() {
        let d = DeviceId::new("d").unwrap();
        let bag = iot_dm_core::wire::PropertyBag::new();
        let text = "é".repeat(MAX_EVENT_BODY);
        let HubEvent::Telemetry { body, size, .. } =
            telemetry_event(&d, &bag, &Bytes::from(text.clone()))
        else {
            unreachable!()
        };
        assert_eq!(size, text.len());
        assert!(body.len() <= MAX_EVENT_BODY && body.len() > MAX_EVENT_BODY - 2);
        assert!(std::str::from_utf8(&body).is_ok());
        let binary = Bytes::from(vec![0xFFu8; MAX_EVENT_BODY * 2]);
        let HubEvent::Telemetry { body, .. } = telemetry_event(&d, &bag, &binary) else {
            unreachable!()
        };
        assert_eq!(body.len(), MAX_EVENT_BODY);
        let small = Bytes::from_static(b"{}");
        let HubEvent::Telemetry { body, size, .. } = telemetry_event(&d, &bag, &small) else {
            unreachable!()
        };
        assert_eq!((&body[..], size), (&b"{}"[..], 2));
    }

    #[test]
    fn ids_start_at_the_clock_in_microseconds() {
        assert_eq!(first_id(Timestamp::from_unix_secs(0)), 1);
        assert_eq!(first_id(Timestamp::from_unix_secs(2)), 2_000_000);
    }
}
