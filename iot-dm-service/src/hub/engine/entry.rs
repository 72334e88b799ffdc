//! One device's entry: its identity and its twin, behind its own mutex.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::LifecycleState;
use iot_dm_core::twin::Twin;

use super::record;
use crate::hub::error::HubError;
use crate::hub::registry::Device;
use crate::hub::sessions::c2d::QueueSlot;
use crate::store::{Op, StoreError, Table};

/// One device: its identity and its twin, which share one [`DeviceIdentity`] record.
///
/// [`DeviceIdentity`]: iot_dm_core::twin::DeviceIdentity
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) device: Device,
    pub(crate) twin: Arc<Twin>,
    /// Queued cloud-to-device messages.
    pub(crate) c2d: QueueSlot,
    /// Sequence number of the newest write this entry includes (see `persist`).
    pub(crate) seq: u64,
    /// Set when the device was deleted; writers that raced with the delete see it.
    pub(crate) deleted: bool,
}

impl Entry {
    /// Points the twin at the device's identity when a change gave the device a new one
    /// (changing a shared identity copies it): the twin of an entry always shows the one
    /// identity record the entry holds.
    pub(crate) fn share_identity(&mut self) {
        if !Arc::ptr_eq(&self.device.identity, &self.twin.identity) {
            Arc::make_mut(&mut self.twin).identity = Arc::clone(&self.device.identity);
        }
    }

    /// Whether the twin is in the live set (not retired).
    pub(crate) fn is_live(&self) -> bool {
        self.device.state() != LifecycleState::Retired
    }
}

pub(crate) type Slot = Arc<Mutex<Entry>>;

/// Locks a mutex of the hub's. A panic while holding one cannot leave half-applied state
/// (entries are replaced whole, and the other maps hold self-contained values), so a
/// poisoned lock is safe to use.
pub(crate) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn lock(slot: &Slot) -> MutexGuard<'_, Entry> {
    locked(slot)
}

/// A write that has been applied in memory and queued for the store.
pub(crate) type Ack = std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

pub(crate) fn put_op(entry: &Entry) -> Result<Op, HubError> {
    Ok(Op::Put {
        table: Table::Devices,
        key: entry.device.device_id.as_str().as_bytes().to_vec(),
        value: record::encode(entry),
    })
}

pub(crate) fn delete_op(id: &DeviceId) -> Op {
    Op::Delete {
        table: Table::Devices,
        key: id.as_str().as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_stays_small() {
        // a slot is one allocation of the counts (16), the mutex (8) and the entry: keep it
        // within the allocator's 336-byte class, and the twin's Arc within the 400-byte one
        // (one of each per device)
        assert!(std::mem::size_of::<Entry>() <= 296);
        assert!(std::mem::size_of::<Twin>() <= 376);
    }

    #[test]
    fn the_identity_is_one_small_allocation_shared_by_device_and_twin() {
        // with the identity out of line, a slot (counts 16, mutex 8, entry) fits the 192-byte
        // class, the twin's Arc the 288-byte one and the identity's Arc the 160-byte one
        assert!(std::mem::size_of::<Entry>() <= 160);
        assert!(std::mem::size_of::<Twin>() <= 264);
        assert!(std::mem::size_of::<iot_dm_core::twin::DeviceIdentity>() <= 136);
    }
}
