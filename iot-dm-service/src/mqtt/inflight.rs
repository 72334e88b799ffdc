//! Packet ids for the QoS 1 publishes the endpoint sends, and what each acknowledges.

/// Most unacknowledged QoS 1 publishes towards one device before the endpoint gives up on it.
pub(crate) const MAX_INFLIGHT: usize = 4096;

/// The QoS 1 publishes a device has not acknowledged yet: packet id and the hub's ack id.
///
/// Ids are never 0 (the codec refuses it) and never reused while in flight. Kept as a small
/// vector: a device rarely has more than a few messages in flight (the hub queues at most 50
/// cloud-to-device messages per device).
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    next: u16,
    entries: Vec<(u16, Option<u64>)>,
}

impl Inflight {
    /// Allocates a packet id for a publish acknowledging `ack` (if any); `None` when
    /// [`MAX_INFLIGHT`] publishes are already waiting.
    pub(crate) fn allocate(&mut self, ack: Option<u64>) -> Option<u16> {
        if self.entries.len() >= MAX_INFLIGHT {
            return None;
        }
        loop {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && !self.entries.iter().any(|(id, _)| *id == self.next) {
                break;
            }
        }
        self.entries.push((self.next, ack));
        Some(self.next)
    }

    /// The device acknowledged `pkid`: returns the hub's ack id, if the id was in flight and
    /// carried one.
    pub(crate) fn complete(&mut self, pkid: u16) -> Option<u64> {
        let i = self.entries.iter().position(|(id, _)| *id == pkid)?;
        let (_, ack) = self.entries.swap_remove(i);
        if self.entries.is_empty() {
            // idle connections keep no allocation
            self.entries = Vec::new();
        }
        ack
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn ids_start_at_one_and_skip_zero_on_wrap() {
        let mut f = Inflight::default();
        assert_eq!(f.allocate(Some(7)), Some(1));
        f.next = u16::MAX - 1;
        assert_eq!(f.allocate(None), Some(u16::MAX));
        assert_eq!(f.allocate(None), Some(2)); // 0 skipped, 1 in use
        assert_eq!(f.complete(1), Some(7));
        assert_eq!(f.complete(1), None);
        assert_eq!(f.complete(u16::MAX), None); // carried no ack id
    }

    #[test]
    fn refuses_past_the_limit() {
        let mut f = Inflight::default();
        for i in 0..MAX_INFLIGHT {
            assert!(f.allocate(Some(i as u64)).is_some());
        }
        assert_eq!(f.allocate(None), None);
        assert_eq!(f.len(), MAX_INFLIGHT);
        assert_eq!(f.complete(1), Some(0));
        assert!(f.allocate(None).is_some());
    }

    proptest! {
        /// Against a model: in-flight ids are unique and non-zero, and each completion
        /// returns exactly the ack id it was allocated with.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), any::<u16>()), 1..400)) {
            let mut f = Inflight::default();
            let mut model: HashMap<u16, Option<u64>> = HashMap::new();
            for (n, (alloc, x)) in ops.into_iter().enumerate() {
                if alloc {
                    let ack = (x % 3 != 0).then_some(n as u64);
                    let id = f.allocate(ack).unwrap();
                    prop_assert_ne!(id, 0);
                    prop_assert!(model.insert(id, ack).is_none());
                } else {
                    // complete an id in flight (or a random one)
                    let id = model.keys().copied().nth(x as usize % (model.len() + 1)).unwrap_or(x);
                    let expected = model.remove(&id).flatten();
                    prop_assert_eq!(f.complete(id), expected);
                }
                prop_assert_eq!(f.len(), model.len());
            }
        }
    }
}
