//! The write paths: the only code that locks entries and submits their writes.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::twin::{Twin, TwinLimits};

use super::entry::{lock, put_op, Ack, Entry, Slot};
use super::log::LogEntry;
use crate::hub::error::HubError;
use crate::store::{OnDurable, Op, Table};

impl crate::hub::Inner {
    /// `Ok` when the disk holding the store has room for a write (see `space.rs`). Every write
    /// path asks before it changes anything, so a refused write leaves no trace.
    pub(crate) fn room_for_write(&self) -> Result<(), HubError> {
        match &self.space {
            Some(space) => space.check(),
            None => Ok(()),
        }
    }

    /// Resolves once every write applied so far is durable. Whatever leaves the hub for a
    /// reader outside it (a REST response, a device's twin GET) waits for this first, so that
    /// nothing a reader saw is rolled back by a crash; a failed commit fails the read.
    pub(crate) fn settled(&self) -> Ack {
        Box::pin(self.committer.flush())
    }

    /// Runs `f` on a copy of the entry under its lock. On success the copy replaces the entry,
    /// its whole record is queued for the store, and the returned [`Ack`] resolves when it is
    /// durable. On error nothing changed.
    pub(crate) fn write<R>(
        &self,
        slot: &Slot,
        f: impl FnOnce(&mut Entry) -> Result<R, HubError>,
    ) -> Result<(R, Ack), HubError> {
        self.write_then(slot, |e| f(e).map(|r| (r, None)))
    }

    /// Like [`write`](Self::write); `f` may also return what the write makes visible (a
    /// notification to the device, an event), which runs once the write is durable, after
    /// every earlier write's, and never when the commit fails.
    pub(crate) fn write_then<R>(
        &self,
        slot: &Slot,
        f: impl FnOnce(&mut Entry) -> Result<(R, Option<OnDurable>), HubError>,
    ) -> Result<(R, Ack), HubError> {
        self.room_for_write()?;
        let mut guard = lock(slot);
        if guard.deleted {
            return Err(HubError::not_found(guard.device.device_id.as_str()));
        }
        let mut copy = guard.clone();
        let (r, then) = f(&mut copy)?;
        copy.share_identity();
        copy.seq = self.sequencer.next();
        let op = put_op(&copy)?;
        let ack = match then {
            Some(then) => self.committer.submit_then(vec![op], then),
            None => self.committer.submit(vec![op]),
        };
        *guard = copy;
        drop(guard);
        Ok((r, Box::pin(ack)))
    }

    /// The hot path for a device's reported patch: merges `patch` into a copy of the twin
    /// (the identity gets a new `lastActivityTime` when the second changed, and device and
    /// twin share it) and stores only a log entry for it instead of the whole record. The device's `lastActivityTime` follows the twin's. Returns the new twin; the
    /// [`Ack`] resolves once the log entry is durable.
    pub(crate) fn write_reported(
        &self,
        slot: &Slot,
        patch: &Value,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<(Arc<Twin>, Ack), HubError> {
        self.room_for_write()?;
        let mut guard = lock(slot);
        if guard.deleted || !guard.is_live() {
            return Err(HubError::not_found(guard.device.device_id.as_str()));
        }
        let mut twin = (*guard.twin).clone();
        let version = twin.patch_reported(patch, now, limits)?;
        let value = LogEntry {
            device: Cow::Borrowed(guard.device.device_id.as_str()),
            patch: Cow::Borrowed(patch),
            ticks: now.ticks(),
            version,
        }
        .encode()?;
        let seq = self.sequencer.next_logged(&guard.device.device_id);
        let op = Op::Put {
            table: Table::Log,
            key: seq.to_be_bytes().to_vec(),
            value,
        };
        let ack = self.committer.submit(vec![op]);
        // the identity is shared by the device and its twins, so changing it means a copy:
        // `lastActivityTime` moves on once a second at most, not on every patch of a busy
        // device
        let seen = guard.device.identity.last_activity_time;
        if seen.is_none_or(|t| t.unix_secs() != now.unix_secs()) {
            // the copy is shared by the device and the new twin (and by the old twin until its
            // readers let go)
            guard.device.identity_mut().last_activity_time = Some(now);
        }
        twin.identity = Arc::clone(&guard.device.identity);
        let twin = Arc::new(twin);
        guard.twin = twin.clone();
        guard.seq = seq;
        drop(guard);
        Ok((twin, Box::pin(ack)))
    }
}
