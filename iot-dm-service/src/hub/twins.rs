//! Twin operations: read, service-side update and replace, device-side reported patches.

use std::sync::Arc;

use serde_json::Value;

use iot_dm_core::twin::{Twin, TwinPatch};

use super::error::HubError;
use super::events::{Actor, HubEvent};
use super::persist::LogEntry;
use super::state::{lock, Ack, Entry};
use super::Hub;

/// What a desired-property change must tell the device: a merge patch or, after a replace, the
/// whole desired document.
pub(crate) struct DesiredChange {
    pub(crate) version: u64,
    pub(crate) body: Value,
}

impl Hub {
    /// The twin of a live (not retired) device.
    pub fn get_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let g = lock(&slot);
        if g.deleted || !g.is_live() {
            return Err(HubError::not_found(device_id));
        }
        Ok((*g.twin).clone())
    }

    /// The archived twin of a retired device.
    pub fn get_archived_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let g = lock(&slot);
        if g.deleted || g.is_live() {
            return Err(HubError::not_found(device_id));
        }
        Ok((*g.twin).clone())
    }

    /// Merges tags and desired properties (`PATCH /twins/{id}`), if `if_match` (the twin ETag
    /// or `*`) matches. The device gets the desired part as a notification.
    pub async fn update_twin(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.service_twin_write(device_id, Actor::Service, |twin, now, limits| {
            twin.update(patch, if_match, now, limits)?;
            Ok(patch.desired.clone())
        })
        .await
    }

    /// Replaces the tags and desired properties given (`PUT /twins/{id}`), if `if_match`
    /// matches. The device gets the whole new desired document as a notification.
    pub async fn replace_twin(
        &self,
        device_id: &str,
        replacement: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.service_twin_write(device_id, Actor::Service, |twin, now, limits| {
            twin.replace(replacement, if_match, now, limits)?;
            Ok(replacement
                .desired
                .as_ref()
                .map(|_| twin.desired().doc().to_value()))
        })
        .await
    }

    /// A service-side twin write by `actor` (the back end, a job or a configuration).
    pub(crate) async fn service_twin_write(
        &self,
        device_id: &str,
        actor: Actor,
        f: impl FnOnce(
            &mut Twin,
            iot_dm_core::clock::Timestamp,
            &iot_dm_core::twin::TwinLimits,
        ) -> Result<Option<Value>, HubError>,
    ) -> Result<Twin, HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let now = self.now();
        let limits = &self.inner.limits;
        let (twin, ack) = self.inner.write(&slot, |e: &mut Entry| {
            if !e.is_live() {
                return Err(HubError::not_found(device_id));
            }
            let twin = Arc::make_mut(&mut e.twin);
            let desired = f(twin, now, limits)?;
            if let Some(body) = desired {
                // queued to the session while the entry is locked: notifications leave in
                // version order
                let change = DesiredChange {
                    version: twin.desired().version(),
                    body,
                };
                self.notify_desired(&e.device.device_id, change);
            }
            Ok(e.twin.clone())
        })?;
        ack.await?;
        self.emit_twin_changed(&twin, actor);
        Ok((*twin).clone())
    }

    /// Merges a device's reported-properties patch. The write is applied and queued before this
    /// returns; the [`Ack`] resolves once it is durable, with the new reported `$version`.
    pub(crate) fn patch_reported_queued(
        &self,
        device_id: &str,
        patch: &Value,
    ) -> Result<(Arc<Twin>, Ack), HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let now = self.now();
        let limits = &self.inner.limits;
        self.inner.write_logged(&slot, |e| {
            if !e.is_live() {
                return Err(HubError::not_found(device_id));
            }
            let mut twin = (*e.twin).clone();
            let version = twin.patch_reported(patch, now, limits)?;
            twin.last_activity_time = Some(now);
            let log = LogEntry {
                device: std::borrow::Cow::Borrowed(device_id),
                patch: std::borrow::Cow::Borrowed(patch),
                ticks: now.ticks(),
                version,
            };
            let value = log.encode()?;
            Ok((twin, value))
        })
    }

    /// Merges a device's reported-properties patch as the device would through its session
    /// (for embedding and tests), and returns the new reported `$version` once durable.
    pub async fn patch_reported(&self, device_id: &str, patch: &Value) -> Result<u64, HubError> {
        let (twin, ack) = self.patch_reported_queued(device_id, patch)?;
        ack.await?;
        self.emit_twin_changed(&twin, Actor::Device);
        Ok(twin.reported().version())
    }

    pub(crate) fn emit_twin_changed(&self, twin: &Twin, actor: Actor) {
        self.emit(HubEvent::TwinChanged {
            device_id: twin.device_id.clone(),
            actor,
            version: twin.version(),
            desired_version: twin.desired().version(),
            reported_version: twin.reported().version(),
        });
    }
}
