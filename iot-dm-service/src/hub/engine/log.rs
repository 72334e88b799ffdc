//! How the hub's writes reach the store, and how the hub comes back after a crash.
//!
//! Two kinds of writes:
//! - A **record** write stores the whole device (identity, twin, cloud-to-device queue) under
//!   its id in [`Table::Devices`]. Registry changes, tags, desired properties and C2D use it.
//! - A **log** write stores only a reported-properties patch (device, patch, time, version)
//!   under a sequence number in [`Table::Log`]. Devices report far more often than anything
//!   else changes, and a log entry costs a fraction of a record (measured figures:
//!   `benches/README.md`).
//!
//! Every write of either kind takes the next number of one sequence, and a record carries the
//! number it was written with, so a record supersedes every log entry numbered before it. A
//! background checkpointer rewrites the records of devices with logged patches and deletes
//! the log below a watermark in one commit; on start the hub loads the records and replays the
//! log entries newer than each record.
//!
//! Why the checkpoint loses nothing: a writer marks its device dirty *before* it takes its
//! sequence number, inside the device's lock. The checkpointer reads the sequence counter
//! `C` first and takes the dirty set second, so every log entry below `C` belongs to a device
//! in the set; it then snapshots each of those devices under its lock (after any write in
//! progress), and submits the records and the deletion of the log below `C` after those log
//! entries were submitted, to a committer that commits in submission order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::twin::TwinLimits;

use super::entry::{lock, locked, put_op};
use super::state::State;
use crate::hub::error::HubError;
use crate::hub::Inner;
use crate::store::{Op, Store, Table};

/// Log entries between checkpoints that trigger an early checkpoint.
const CHECKPOINT_ENTRIES: u64 = 200_000;

/// The write-sequence bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    next: AtomicU64,
    dirty: Mutex<HashSet<DeviceId>>,
    logged: AtomicU64,
    /// Log writes since the hub opened: devices' own reported patches.
    device_writes: AtomicU64,
    pub(crate) wake: tokio::sync::Notify,
}

impl Sequencer {
    /// The next sequence number, for a record write.
    pub(crate) fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst)
    }

    /// Marks `id` dirty, then takes a sequence number, for a log write.
    pub(crate) fn next_logged(&self, id: &DeviceId) -> u64 {
        locked(&self.dirty).insert(id.clone());
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        self.device_writes.fetch_add(1, Ordering::Relaxed);
        if self.logged.fetch_add(1, Ordering::Relaxed) + 1 >= CHECKPOINT_ENTRIES {
            self.wake.notify_one();
        }
        seq
    }

    /// How many reported patches devices wrote since the hub opened (background work, such as
    /// a job, yields while this moves).
    pub(crate) fn device_writes(&self) -> u64 {
        self.device_writes.load(Ordering::Relaxed)
    }

    fn resume_after(&self, seq: u64) {
        self.next.fetch_max(seq + 1, Ordering::SeqCst);
    }
}

/// A logged reported patch.
#[derive(Serialize, Deserialize)]
pub(crate) struct LogEntry<'a> {
    #[serde(rename = "d")]
    pub(crate) device: std::borrow::Cow<'a, str>,
    #[serde(rename = "p")]
    pub(crate) patch: std::borrow::Cow<'a, Value>,
    #[serde(rename = "t")]
    pub(crate) ticks: i64,
    #[serde(rename = "v")]
    pub(crate) version: u64,
}

impl LogEntry<'_> {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, HubError> {
        serde_json::to_vec(self).map_err(|e| HubError::Internal {
            message: format!("encoding a log entry: {e}"),
        })
    }
}

/// Rewrites the records of devices with logged patches and drops the log below the
/// watermark. Returns how many records it wrote.
pub(crate) async fn checkpoint(inner: &Inner) -> Result<usize, HubError> {
    let plan = plan_checkpoint(inner);
    finish_checkpoint(inner, plan).await
}

/// The first half of a checkpoint: the watermark, then the devices to rewrite.
pub(crate) struct CheckpointPlan {
    watermark: u64,
    ids: Vec<DeviceId>,
}

pub(crate) fn plan_checkpoint(inner: &Inner) -> CheckpointPlan {
    let seq = &inner.sequencer;
    // the watermark first, the dirty set second (see the module docs)
    let watermark = seq.next.load(Ordering::SeqCst);
    let ids = std::mem::take(&mut *locked(&seq.dirty))
        .into_iter()
        .collect();
    seq.logged.store(0, Ordering::Relaxed);
    CheckpointPlan { watermark, ids }
}

pub(crate) async fn finish_checkpoint(
    inner: &Inner,
    plan: CheckpointPlan,
) -> Result<usize, HubError> {
    let CheckpointPlan { watermark, ids } = plan;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut ops = Vec::with_capacity(ids.len() + 1);
    for id in &ids {
        let Ok(slot) = inner.state.slot(id.as_str()) else {
            continue; // deleted since
        };
        let g = lock(&slot);
        if g.deleted {
            continue;
        }
        // the record keeps the sequence number of the newest write it includes
        ops.push(put_op(&g)?);
    }
    let written = ops.len();
    ops.push(Op::DeleteRange {
        table: Table::Log,
        start: 0u64.to_be_bytes().to_vec(),
        end: watermark.to_be_bytes().to_vec(),
    });
    inner.committer.submit(ops).await?;
    tracing::debug!(records = written, watermark, "checkpoint");
    Ok(written)
}

/// Runs checkpoints every `interval`, or sooner when the log grows, until the hub is dropped.
pub(crate) fn spawn_checkpointer(inner: Weak<Inner>, interval: Duration) {
    tokio::spawn(async move {
        loop {
            let wake = match inner.upgrade() {
                Some(i) => i,
                None => return,
            };
            let sleep = tokio::time::sleep(interval);
            tokio::select! {
                _ = sleep => {}
                _ = wake.sequencer.wake.notified() => {}
            }
            drop(wake);
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            // on a nearly full disk the log keeps the patches: folding them waits for space
            // (a failed commit would poison the committer)
            if inner.room_for_write().is_err() {
                continue;
            }
            if let Err(e) = checkpoint(&inner).await {
                tracing::error!(%e, "checkpoint failed; the hub refuses writes until restarted");
                return;
            }
        }
    });
}

/// Replays the log over the loaded records. Returns the number of entries applied.
pub(crate) async fn replay(
    store: &dyn Store,
    state: &State,
    sequencer: &Sequencer,
) -> Result<u64, HubError> {
    let unlimited = TwinLimits {
        tags_bytes: usize::MAX,
        desired_bytes: usize::MAX,
        reported_bytes: usize::MAX,
        max_depth: usize::MAX,
        key_bytes: usize::MAX,
        string_bytes: usize::MAX,
    };
    let mut max_seq = state.max_seq();
    let mut applied = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(Table::Log, after.as_deref(), 4096).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, value) in page {
            let seq =
                u64::from_be_bytes(key.as_slice().try_into().map_err(|_| HubError::Internal {
                    message: format!("log key of {} bytes", key.len()),
                })?);
            max_seq = max_seq.max(seq);
            let entry: LogEntry<'_> =
                serde_json::from_slice(&value).map_err(|e| HubError::Internal {
                    message: format!("log entry {seq} is unreadable: {e}"),
                })?;
            let Ok(slot) = state.slot(&entry.device) else {
                continue; // the device was deleted after this patch
            };
            let mut g = lock(&slot);
            if seq <= g.seq {
                continue; // the record already includes it
            }
            let now = Timestamp::from_ticks(entry.ticks);
            let twin = Arc::make_mut(&mut g.twin);
            twin.patch_reported(&entry.patch, now, &unlimited)?;
            if twin.reported().version() != entry.version {
                tracing::warn!(
                    device = %entry.device, seq,
                    expected = entry.version, got = twin.reported().version(),
                    "replayed patch gave another version"
                );
            }
            g.device.identity_mut().last_activity_time = Some(now);
            g.seq = seq;
            g.share_identity();
            let id = g.device.device_id.clone();
            drop(g);
            locked(&sequencer.dirty).insert(id);
            applied += 1;
        }
    }
    sequencer.resume_after(max_seq);
    Ok(applied)
}
