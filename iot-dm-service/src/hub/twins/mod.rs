//! Twin operations: read, service-side update and replace, device-side reported patches, and
//! twin queries (`query.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use iot_dm_core::twin::{Twin, TwinPatch};

mod query;

use crate::api::TwinApi;
use crate::hub::engine::{lock, Ack, Entry};
use crate::hub::error::HubError;
use crate::hub::events::{Actor, HubEvent};
use crate::hub::Hub;
use crate::store::OnDurable;

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

    /// A service-side twin write by `actor` (the back end, a job or a configuration), applied
    /// and queued: the [`Ack`] resolves once it is durable (the store commits in order, so a
    /// later commit being durable means this one is too). The desired notification to the
    /// device and the twin-change event leave once the write is durable, in version order;
    /// neither leaves if the commit fails.
    pub(crate) fn service_twin_write(
        &self,
        device_id: &str,
        actor: Actor,
        f: impl FnOnce(
            &mut Twin,
            iot_dm_core::clock::Timestamp,
            &iot_dm_core::twin::TwinLimits,
        ) -> Result<Option<Value>, HubError>,
    ) -> Result<(Arc<Twin>, Ack), HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let now = self.now();
        let limits = &self.inner.limits;
        self.inner.write_then(&slot, |e: &mut Entry| {
            if !e.is_live() {
                return Err(HubError::not_found(device_id));
            }
            let twin = Arc::make_mut(&mut e.twin);
            let desired = f(twin, now, limits)?.map(|body| DesiredChange {
                version: twin.desired().version(),
                body,
            });
            e.share_identity();
            let twin = e.twin.clone();
            let hub = self.clone();
            let visible = twin.clone();
            let then = OnDurable::new(move || {
                if let Some(change) = desired {
                    hub.notify_desired(&visible.device_id, change);
                }
                hub.emit_twin_changed(&visible, actor);
            });
            Ok((twin, Some(then)))
        })
    }

    /// Merges tags and desired properties by `actor`, if `if_match` (the twin ETag or `*`)
    /// matches; the device gets the desired part as a notification.
    pub(crate) async fn update_twin_as(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
        actor: Actor,
    ) -> Result<Twin, HubError> {
        let (twin, ack) = self.update_twin_queued(device_id, patch, if_match, actor)?;
        ack.await?;
        Ok((*twin).clone())
    }

    /// [`update_twin_as`](Self::update_twin_as) without waiting for the write to be durable:
    /// the new twin, and the [`Ack`] that resolves once it is.
    pub(crate) fn update_twin_queued(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
        actor: Actor,
    ) -> Result<(Arc<Twin>, Ack), HubError> {
        self.service_twin_write(device_id, actor, |twin, now, limits| {
            twin.update(patch, if_match, now, limits)?;
            Ok(patch.desired.clone())
        })
    }

    /// Merges a device's reported-properties patch. The write is applied and queued before this
    /// returns; the [`Ack`] resolves once it is durable, with the new reported `$version`.
    pub(crate) fn patch_reported_queued(
        &self,
        device_id: &str,
        patch: &Value,
    ) -> Result<(Arc<Twin>, Ack), HubError> {
        let slot = self.inner.state.slot(device_id)?;
        self.inner
            .write_reported(&slot, patch, self.now(), &self.inner.limits)
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

/// The twins of the embedded hub; reads stay synchronous inherent methods for in-process
/// callers.
#[async_trait]
impl TwinApi for Hub {
    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        let twin = Hub::get_twin(self, device_id)?;
        // shown outside the hub: only once durable (see `Inner::settled`)
        self.inner.settled().await?;
        Ok(twin)
    }

    /// Merges tags and desired properties (`PATCH /twins/{id}`), if `if_match` (the twin ETag
    /// or `*`) matches. The device gets the desired part as a notification.
    async fn update_twin(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.update_twin_as(device_id, patch, if_match, Actor::Service)
            .await
    }

    /// Replaces the tags and desired properties given (`PUT /twins/{id}`), if `if_match`
    /// matches. The device gets the whole new desired document as a notification.
    async fn replace_twin(
        &self,
        device_id: &str,
        replacement: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        let (twin, ack) =
            self.service_twin_write(device_id, Actor::Service, |twin, now, limits| {
                twin.replace(replacement, if_match, now, limits)?;
                Ok(replacement
                    .desired
                    .as_ref()
                    .map(|_| twin.desired().doc().to_value()))
            })?;
        ack.await?;
        Ok((*twin).clone())
    }

    async fn get_archived_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        let twin = Hub::get_archived_twin(self, device_id)?;
        self.inner.settled().await?;
        Ok(twin)
    }
}
