//! The map of entries, and how it is loaded from the store.

use std::sync::{Arc, Mutex};

use crossbeam_skiplist::SkipMap;

use iot_dm_core::identity::DeviceId;
use iot_dm_core::twin::install_deferred;

use super::entry::{lock, put_op, Slot};
use super::record;
use crate::hub::error::HubError;
use crate::store::{Store, Table};

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
    /// one page per core at a time, while the next page is read. Records of earlier formats
    /// (1, JSON, and 2, binary with the identity stored twice) are then rewritten in the
    /// current format, once (see `record`).
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

    /// Rewrites the records of `ids` (read in an earlier format) in the current format, in batches,
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
            "device records upgraded to the current format"
        );
        Ok(())
    }
}

/// Records per page read while loading.
const LOAD_PAGE: usize = 1024;

/// Records per commit when upgrading the format.
const UPGRADE_BATCH: usize = 1024;

/// Decodes a page of records into `devices`; returns the ids of records in an earlier format.
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
        if format.is_legacy() {
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
