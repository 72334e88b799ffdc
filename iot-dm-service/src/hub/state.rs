//! The hub's in-memory state and how it is persisted.
//!
//! Every device is one [`Entry`] (identity + twin) behind its own mutex, in a lock-free ordered
//! map keyed by device id. Twins are copy-on-write (`Arc<Twin>`): a query clones the `Arc`s it
//! needs under each entry's lock for a few nanoseconds and evaluates without holding anything,
//! so a long scan never blocks writers.
//!
//! A write runs on a copy of the entry under the entry's lock; on success the copy replaces the
//! entry and its record is handed to the group committer *before the lock is released*, so the
//! store sees the writes to one device in the order they were applied. The caller is
//! acknowledged only when the committer reports the batch durable.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_skiplist::SkipMap;

use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::LifecycleState;
use iot_dm_core::twin::{install_deferred, Twin};

use super::device::Device;
use super::error::HubError;
use super::record::{self, Format};
use crate::store::{Op, Store, StoreError, Table};

/// One device: its identity and its twin.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) device: Device,
    pub(crate) twin: Arc<Twin>,
    /// Queued cloud-to-device messages.
    pub(crate) c2d: super::c2d::QueueSlot,
    /// Sequence number of the newest write this entry includes (see `persist`).
    pub(crate) seq: u64,
    /// Set when the device was deleted; writers that raced with the delete see it.
    pub(crate) deleted: bool,
}

impl Entry {
    /// Copies the identity fields the twin mirrors into the twin (cloning it only when
    /// something changed).
    pub(crate) fn sync_twin(&mut self) {
        let d = &self.device;
        let t = &self.twin;
        let auth = &d.authentication;
        let same = t.status == d.status
            && t.status_reason == d.status_reason
            && t.status_update_time == d.status_updated_time
            && t.connection_state == d.connection_state
            && t.last_activity_time == d.last_activity_time
            && t.cloud_to_device_message_count == d.cloud_to_device_message_count
            && t.authentication_type == auth.kind
            && t.x509_thumbprint.primary_thumbprint == auth.x509_thumbprint.primary_thumbprint
            && t.x509_thumbprint.secondary_thumbprint == auth.x509_thumbprint.secondary_thumbprint
            && t.capabilities == d.capabilities
            && t.device_etag.as_ref() == Some(&d.etag);
        if same {
            return;
        }
        let t = Arc::make_mut(&mut self.twin);
        t.status = d.status;
        t.status_reason.clone_from(&d.status_reason);
        t.status_update_time = d.status_updated_time;
        t.connection_state = d.connection_state;
        t.last_activity_time = d.last_activity_time;
        t.cloud_to_device_message_count = d.cloud_to_device_message_count;
        t.authentication_type = auth.kind;
        t.x509_thumbprint.primary_thumbprint = auth.x509_thumbprint.primary_thumbprint.clone();
        t.x509_thumbprint.secondary_thumbprint = auth.x509_thumbprint.secondary_thumbprint.clone();
        t.capabilities = d.capabilities.clone();
        t.device_etag = Some(d.etag.clone());
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

/// The in-memory registry.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) devices: SkipMap<DeviceId, Slot>,
}

impl State {
    pub(crate) fn slot(&self, id: &str) -> Result<Slot, HubError> {
        self.devices
            .get(id)
            .map(|e| e.value().clone())
            .ok_or_else(|| HubError::not_found(id))
    }

    /// The highest sequence number any entry includes.
    pub(crate) fn max_seq(&self) -> u64 {
        self.devices
            .iter()
            .map(|e| lock(e.value()).seq)
            .max()
            .unwrap_or(0)
    }

    /// Loads every record from the store: pages of records are decoded on the blocking pool,
    /// one page per core at a time, while the next page is read. Records of format 1 (JSON)
    /// are then rewritten in the current format, once (see `record`).
    pub(crate) async fn load(store: &dyn Store) -> Result<State, HubError> {
        let devices: Arc<SkipMap<DeviceId, Slot>> = Arc::default();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut tasks = tokio::task::JoinSet::new();
        let mut legacy: Vec<DeviceId> = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store
                .scan(Table::Devices, after.as_deref(), LOAD_PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            while tasks.len() >= workers {
                if let Some(done) = tasks.join_next().await {
                    legacy.extend(joined(done)?);
                }
            }
            let devices = devices.clone();
            tasks.spawn_blocking(move || decode_page(page, &devices));
        }
        while let Some(done) = tasks.join_next().await {
            legacy.extend(joined(done)?);
        }
        let devices = Arc::try_unwrap(devices).map_err(|_| HubError::Internal {
            message: "a loader task outlived the load".into(),
        })?;
        let state = State { devices };
        if !legacy.is_empty() {
            state.upgrade(store, &legacy).await?;
        }
        Ok(state)
    }

    /// Rewrites the records of `ids` (read in format 1) in the current format, in batches,
    /// before the hub takes writes. Each batch stores the same content, so a crash part-way
    /// leaves records of both formats, which load alike.
    async fn upgrade(&self, store: &dyn Store, ids: &[DeviceId]) -> Result<(), HubError> {
        let started = std::time::Instant::now();
        for chunk in ids.chunks(UPGRADE_BATCH) {
            let mut ops = Vec::with_capacity(chunk.len());
            for id in chunk {
                if let Ok(slot) = self.slot(id.as_str()) {
                    ops.push(put_op(&lock(&slot))?);
                }
            }
            store.commit(ops).await?;
        }
        tracing::info!(
            records = ids.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "device records upgraded from JSON to the binary format"
        );
        Ok(())
    }
}

/// Records per page read while loading.
const LOAD_PAGE: usize = 1024;

/// Records per commit when upgrading the format.
const UPGRADE_BATCH: usize = 1024;

/// Decodes a page of records into `devices`; returns the ids of records in format 1.
fn decode_page(
    page: Vec<(Vec<u8>, Vec<u8>)>,
    devices: &SkipMap<DeviceId, Slot>,
) -> Result<Vec<DeviceId>, HubError> {
    let mut legacy = Vec::new();
    let mut entries = Vec::with_capacity(page.len());
    for (key, value) in &page {
        let (entry, format, docs) =
            record::decode_deferred(value).map_err(|e| unreadable(key, e))?;
        if entry.device.device_id.as_str().as_bytes() != key.as_slice() {
            return Err(HubError::Internal {
                message: format!(
                    "stored record {:?} holds device {}",
                    String::from_utf8_lossy(key),
                    entry.device.device_id
                ),
            });
        }
        if format == Format::Json {
            legacy.push(entry.device.device_id.clone());
        }
        entries.push((entry, docs));
    }
    // the page's documents are made section by section, so that a query scan streams
    // through one section's documents in consecutive memory (see `install_deferred`)
    let mut batch: Vec<_> = entries
        .iter_mut()
        .filter_map(|(e, docs)| Some((Arc::make_mut(&mut e.twin), (*docs)?)))
        .collect();
    if let Err((i, e)) = install_deferred(&mut batch) {
        let key = batch.get(i).map(|(t, _)| t.device_id.to_string());
        return Err(unreadable(key.unwrap_or_default().as_bytes(), e));
    }
    drop(batch);
    for (entry, _) in entries {
        devices.insert(entry.device.device_id.clone(), Arc::new(Mutex::new(entry)));
    }
    Ok(legacy)
}

/// The error for a stored record that cannot be read.
fn unreadable(key: &[u8], e: impl std::fmt::Display) -> HubError {
    HubError::Internal {
        message: format!(
            "stored record {:?} is unreadable: {e}",
            String::from_utf8_lossy(key)
        ),
    }
}

fn joined(
    done: Result<Result<Vec<DeviceId>, HubError>, tokio::task::JoinError>,
) -> Result<Vec<DeviceId>, HubError> {
    done.map_err(|e| HubError::Internal {
        message: format!("loading device records failed: {e}"),
    })?
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

impl super::Inner {
    /// Runs `f` on a copy of the entry under its lock. On success the copy replaces the entry,
    /// its whole record is queued for the store, and the returned [`Ack`] resolves when it is
    /// durable. On error nothing changed.
    pub(crate) fn write<R>(
        &self,
        slot: &Slot,
        f: impl FnOnce(&mut Entry) -> Result<R, HubError>,
    ) -> Result<(R, Ack), HubError> {
        let mut guard = lock(slot);
        if guard.deleted {
            return Err(HubError::not_found(guard.device.device_id.as_str()));
        }
        let mut copy = guard.clone();
        let r = f(&mut copy)?;
        copy.sync_twin();
        copy.seq = self.sequencer.next();
        let op = put_op(&copy)?;
        let ack = self.committer.submit(vec![op]);
        *guard = copy;
        drop(guard);
        Ok((r, Box::pin(ack)))
    }

    /// The hot path for a device's reported patch: `f` builds the new twin from the current
    /// entry (one twin copy, no copy of the identity) and returns it with the encoded log
    /// entry that stands for it in the store instead of the whole record. The device's
    /// `lastActivityTime` follows the twin's.
    pub(crate) fn write_logged(
        &self,
        slot: &Slot,
        f: impl FnOnce(&Entry) -> Result<(Twin, Vec<u8>), HubError>,
    ) -> Result<(Arc<Twin>, Ack), HubError> {
        let mut guard = lock(slot);
        if guard.deleted {
            return Err(HubError::not_found(guard.device.device_id.as_str()));
        }
        let (twin, value) = f(&guard)?;
        let seq = self.sequencer.next_logged(&guard.device.device_id);
        let op = Op::Put {
            table: Table::Log,
            key: seq.to_be_bytes().to_vec(),
            value,
        };
        let ack = self.committer.submit(vec![op]);
        guard.device.last_activity_time = twin.last_activity_time;
        let twin = Arc::new(twin);
        guard.twin = twin.clone();
        guard.seq = seq;
        drop(guard);
        Ok((twin, Box::pin(ack)))
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
}
