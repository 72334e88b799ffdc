//! The retention ring: the hub's recent events, numbered, bounded in count and bytes. It is
//! both what a reconnecting reader resumes from and the live buffer every reader reads: a
//! reader that falls more than the ring behind is told what it lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::events::{Lost, LostReason};

use super::Recorded;
use crate::hub::HubEvent;

/// What one read found.
#[derive(Debug)]
pub(crate) enum Read {
    /// Events in id order (none: nothing new yet).
    Events(Vec<Arc<Recorded>>),
    /// Events were lost before the next one; the reader goes on from `lost.next`, with the
    /// events from there on read in the same look (so they cannot be lost in turn before the
    /// reader takes them).
    Lost(Lost, Vec<Arc<Recorded>>),
}

struct State {
    events: VecDeque<Arc<Recorded>>,
    bytes: usize,
    /// The id of the next event.
    next_id: u64,
    closed: bool,
}

/// The ring. Appending is O(1) (one allocation, a push and the pops that make room).
pub(crate) struct Ring {
    state: Mutex<State>,
    /// Bumped on every append and on close: readers wait on it.
    wake: watch::Sender<u64>,
    max_events: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("max_events", &self.max_events)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring keeping at most `max_events` events and `max_bytes` bytes (at least one event
    /// is always kept), whose first event gets id `first_id`.
    pub(crate) fn new(max_events: usize, max_bytes: usize, first_id: u64) -> Ring {
        Ring {
            state: Mutex::new(State {
                events: VecDeque::new(),
                bytes: 0,
                next_id: first_id.max(1),
                closed: false,
            }),
            wake: watch::channel(0).0,
            max_events: max_events.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event and returns its id.
    pub(crate) fn push(&self, time: Timestamp, event: HubEvent) -> u64 {
        let size = super::render::approx_size(&event);
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id += 1;
        s.events.push_back(Arc::new(Recorded {
            id,
            time,
            event,
            size,
        }));
        s.bytes += size;
        while s.events.len() > self.max_events || (s.bytes > self.max_bytes && s.events.len() > 1) {
            if let Some(old) = s.events.pop_front() {
                s.bytes -= old.size;
            }
        }
        // inside the lock, so the wake-ups follow the ids; with no reader waiting nobody is
        // woken (a reader that subscribes later reads the ring before it waits)
        if self.wake.receiver_count() > 0 {
            self.wake.send_replace(id);
        }
        id
    }

    /// The id the next event will get.
    pub(crate) fn next_id(&self) -> u64 {
        self.lock().next_id
    }

    /// The retained events and their bytes.
    pub(crate) fn len(&self) -> (usize, usize) {
        let s = self.lock();
        (s.events.len(), s.bytes)
    }

    /// Ends every reader's wait: no event follows.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Whether [`Ring::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// A receiver that changes on every append.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// At most `max` events from id `from` on. `first` says this is the reader's first read
    /// (a gap then is the retention's; later, the reader lagged).
    pub(crate) fn read(&self, from: u64, max: usize, first: bool) -> Read {
        let s = self.lock();
        let oldest = s.events.front().map_or(s.next_id, |e| e.id);
        let after = from.saturating_sub(1);
        let take = |start: usize| s.events.iter().skip(start).take(max).cloned().collect();
        let reason = if from > s.next_id {
            LostReason::Unknown
        } else if from < oldest && first {
            LostReason::Retention
        } else if from < oldest {
            LostReason::Lagged
        } else {
            // ids are dense in the ring: the index is the distance from the oldest
            return Read::Events(take(usize::try_from(from - oldest).unwrap_or(usize::MAX)));
        };
        let lost = Lost {
            after,
            next: oldest,
            reason,
        };
        Read::Lost(lost, take(0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use iot_dm_core::identity::DeviceId;

    fn event(n: usize) -> HubEvent {
        HubEvent::IdentityCreated {
            device_id: DeviceId::new(format!("d{n}")).unwrap(),
        }
    }

    fn ids(r: Read) -> Vec<u64> {
        match r {
            Read::Events(e) => e.iter().map(|e| e.id).collect(),
            Read::Lost(l, _) => panic!("lost {l:?}"),
        }
    }

    fn lost(r: Read) -> Lost {
        match r {
            Read::Lost(l, events) => {
                assert_eq!(events.first().map(|e| e.id), Some(l.next));
                l
            }
            Read::Events(e) => panic!("{} events", e.len()),
        }
    }

    #[test]
    fn keeps_at_most_the_count_and_resumes_after_an_id() {
        let ring = Ring::new(5, usize::MAX, 1);
        for n in 0..8 {
            assert_eq!(
                ring.push(Timestamp::from_unix_secs(0), event(n)),
                n as u64 + 1
            );
        }
        assert_eq!(ring.len().0, 5);
        assert_eq!(ids(ring.read(5, 100, true)), vec![5, 6, 7, 8]);
        assert_eq!(ids(ring.read(7, 1, false)), vec![7]);
        // nothing new yet
        assert_eq!(ids(ring.read(9, 100, false)), Vec::<u64>::new());
        assert_eq!(ring.next_id(), 9);
    }

    #[test]
    fn keeps_at_most_the_bytes_but_always_the_newest() {
        let size = super::super::render::approx_size(&event(0));
        let ring = Ring::new(1000, size * 3, 1);
        for n in 0..10 {
            ring.push(Timestamp::from_unix_secs(0), event(n));
        }
        let (count, bytes) = ring.len();
        assert_eq!(count, 3);
        assert!(bytes <= size * 3);
        let tiny = Ring::new(1000, 1, 1);
        tiny.push(Timestamp::from_unix_secs(0), event(0));
        assert_eq!(tiny.len().0, 1);
    }

    #[test]
    fn a_gap_is_a_lost_signal_with_its_reason() {
        let ring = Ring::new(3, usize::MAX, 100);
        for n in 0..6 {
            ring.push(Timestamp::from_unix_secs(0), event(n));
        }
        // retained: 103..=105
        let l = lost(ring.read(101, 10, true));
        assert_eq!(
            l,
            Lost {
                after: 100,
                next: 103,
                reason: LostReason::Retention
            }
        );
        assert_eq!(l.missed(), Some(2));
        assert_eq!(lost(ring.read(102, 10, false)).reason, LostReason::Lagged);
        // an id the ring never handed out
        let l = lost(ring.read(500, 10, true));
        assert_eq!((l.reason, l.next), (LostReason::Unknown, 103));
        assert_eq!(ids(ring.read(103, 10, true)), vec![103, 104, 105]);
    }

    #[tokio::test]
    async fn appends_and_close_wake_readers() {
        let ring = Arc::new(Ring::new(10, usize::MAX, 1));
        let mut rx = ring.subscribe();
        rx.borrow_and_update();
        ring.push(Timestamp::from_unix_secs(0), event(0));
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        ring.close();
        assert!(ring.is_closed());
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
    }
}
