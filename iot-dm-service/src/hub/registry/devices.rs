//! The identity registry and the device lifecycle: plan, provision, enable, disable, retire,
//! replace, delete.

use std::sync::{Arc, Mutex};

use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::{DeviceLifecycle, LifecycleEvent, LifecycleState};
use iot_dm_core::twin::{AuthenticationType, DeviceStatus, Twin, TwinPatch};

use async_trait::async_trait;

use super::bulk::{BulkResult, ImportDevice};
use super::device::{generate_key, Authentication, Device};
use super::spec::{DevicePage, DeviceSpec, KeyKind};
use super::statistics::{RegistryStatistics, ServiceStatistics};
use crate::api::RegistryApi;
use crate::hub::engine::{delete_op, lock, put_op, Entry};
use crate::hub::error::HubError;
use crate::hub::events::HubEvent;
use crate::hub::Hub;

fn parse_id(id: &str) -> Result<DeviceId, HubError> {
    DeviceId::new(id).map_err(|e| HubError::invalid("deviceId", e.to_string()))
}

fn check_if_match(device: &Device, if_match: Option<&str>) -> Result<(), HubError> {
    match if_match {
        Some(m) if !device.etag_matches(m) => Err(HubError::PreconditionFailed {
            expected: m.to_string(),
            actual: device.etag().to_string(),
        }),
        _ => Ok(()),
    }
}

impl Hub {
    fn new_entry(
        &self,
        spec: DeviceSpec,
        lifecycle: DeviceLifecycle,
        auth: Authentication,
    ) -> Result<Entry, HubError> {
        let now = self.now();
        let mut device = Device::new(spec.device_id.clone(), auth, lifecycle, now)?;
        device.identity_mut().capabilities = spec.capabilities;
        let mut twin = Twin::created_at(spec.device_id, now);
        let limits = &self.inner.limits;
        let patch = TwinPatch {
            tags: spec.tags,
            desired: spec.desired,
        };
        if patch.tags.is_some() || patch.desired.is_some() {
            twin.update(&patch, None, now, limits)?;
        }
        let mut entry = Entry {
            device,
            twin: Arc::new(twin),
            c2d: Default::default(),
            seq: self.inner.sequencer.next(),
            deleted: false,
        };
        entry.share_identity();
        Ok(entry)
    }

    /// Inserts a new entry, failing when the id is taken, and waits until it is durable.
    async fn insert_slot(&self, entry: Entry) -> Result<(), HubError> {
        self.inner.room_for_write()?;
        let id = entry.device.device_id.clone();
        let op = put_op(&entry)?;
        let slot = Arc::new(Mutex::new(entry));
        let ack = {
            let existing = self
                .inner
                .state
                .devices
                .get_or_insert(id.clone(), slot.clone());
            if !Arc::ptr_eq(existing.value(), &slot) {
                return Err(HubError::DeviceAlreadyExists {
                    device_id: id.to_string(),
                });
            }
            // queued while no one else can have written the new slot
            let _guard = lock(&slot);
            self.inner.committer.submit(vec![op])
        };
        ack.await?;
        self.emit(HubEvent::IdentityCreated { device_id: id });
        Ok(())
    }

    /// Inserts a provisioned device's entry and reports its provisioning.
    async fn insert_entry(&self, entry: Entry) -> Result<Device, HubError> {
        let device = entry.device.clone();
        self.insert_slot(entry).await?;
        self.emit(HubEvent::Lifecycle {
            device_id: device.device_id.clone(),
            event: iot_dm_core::lifecycle::EventKind::Provision,
            from: LifecycleState::Planned,
            to: Some(device.state()),
        });
        Ok(device)
    }

    /// Creates (provisions) a device: credentials issued, enabled unless the spec says
    /// otherwise. Fails with [`HubError::DeviceAlreadyExists`] when the id is taken.
    pub async fn create_device(&self, spec: DeviceSpec) -> Result<Device, HubError> {
        let auth = match spec.authentication.clone() {
            Some(a) => a.complete()?,
            None => Authentication::generated_sas()?,
        };
        if auth.kind == AuthenticationType::None {
            return Err(HubError::invalid(
                "authentication.type",
                "a provisioned device needs credentials; plan the device to create it without",
            ));
        }
        let mut lifecycle = DeviceLifecycle::new(self.now());
        lifecycle.apply(
            LifecycleEvent::Provision {
                enabled: spec.disabled_reason.is_none(),
            },
            self.now(),
        )?;
        if let Some(reason) = &spec.disabled_reason {
            lifecycle.apply(LifecycleEvent::Enable, self.now())?;
            lifecycle.apply(
                LifecycleEvent::Disable {
                    reason: reason.clone(),
                },
                self.now(),
            )?;
        }
        let entry = self.new_entry(spec, lifecycle, auth)?;
        self.insert_entry(entry).await
    }

    /// Applies a lifecycle event and `effect` in one durable write.
    async fn lifecycle_write(
        &self,
        device_id: &str,
        event: LifecycleEvent,
        effect: impl FnOnce(&mut Entry),
    ) -> Result<Device, HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let now = self.now();
        let ((device, transition), ack) = self.inner.write(&slot, |e| {
            let transition = e.device.lifecycle.apply(event, now)?;
            let d = &mut e.device;
            let status = if d.lifecycle.state() == LifecycleState::Enabled {
                DeviceStatus::Enabled
            } else {
                DeviceStatus::Disabled
            };
            let reason = d.lifecycle.status_reason().map(str::to_string);
            let identity = d.identity_mut();
            identity.status = status;
            identity.status_reason = reason;
            identity.status_update_time = Some(now);
            d.bump_etag();
            effect(e);
            Ok((e.device.clone(), transition))
        })?;
        if !device.lifecycle.state().can_connect() {
            self.close_session(&device.device_id, "device can no longer connect");
        }
        ack.await?;
        self.emit(HubEvent::IdentityUpdated {
            device_id: device.device_id.clone(),
        });
        self.emit(HubEvent::Lifecycle {
            device_id: device.device_id.clone(),
            event: transition.event,
            from: transition.from,
            to: transition.to,
        });
        Ok(device)
    }

    /// The device identity.
    pub fn get_device(&self, device_id: &str) -> Result<Device, HubError> {
        let slot = self.inner.state.slot(device_id)?;
        let guard = lock(&slot);
        if guard.deleted {
            return Err(HubError::not_found(device_id));
        }
        Ok(guard.device.clone())
    }

    /// Lists identities in device-id order, `limit` (1 to 1000) at a time, starting after the
    /// `continuation` of the previous page.
    pub fn list_devices(
        &self,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, HubError> {
        if !(1..=1000).contains(&limit) {
            return Err(HubError::invalid(
                "top",
                format!("{limit} is outside 1..=1000"),
            ));
        }
        let mut items = Vec::with_capacity(limit.min(64));
        let range = match continuation {
            Some(after) => {
                let after = parse_id(after)?;
                self.inner
                    .state
                    .devices
                    .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .take(limit + 1)
                    .map(|e| e.value().clone())
                    .collect::<Vec<_>>()
            }
            None => self
                .inner
                .state
                .devices
                .iter()
                .take(limit + 1)
                .map(|e| e.value().clone())
                .collect(),
        };
        let more = range.len() > limit;
        for slot in range.into_iter().take(limit) {
            let g = lock(&slot);
            if !g.deleted {
                items.push(g.device.clone());
            }
        }
        let continuation = if more {
            items.last().map(|d| d.device_id.to_string())
        } else {
            None
        };
        Ok(DevicePage {
            items,
            continuation,
        })
    }
}

/// The registry of the embedded hub. `create_device` stays an inherent method too (it is used
/// throughout the crate without the trait in scope); `get_device`, `list_devices` and the
/// statistics are synchronous inherent methods for in-process callers.
#[async_trait]
impl RegistryApi for Hub {
    async fn create_device(&self, spec: DeviceSpec) -> Result<Device, HubError> {
        Hub::create_device(self, spec).await
    }

    async fn get_device(&self, device_id: &str) -> Result<Device, HubError> {
        let device = Hub::get_device(self, device_id)?;
        // shown outside the hub: only once durable (see `Inner::settled`)
        self.inner.settled().await?;
        Ok(device)
    }

    async fn list_devices(
        &self,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, HubError> {
        let page = Hub::list_devices(self, continuation, limit)?;
        self.inner.settled().await?;
        Ok(page)
    }

    async fn bulk(&self, devices: Vec<ImportDevice>) -> Result<BulkResult, HubError> {
        self.apply_bulk(devices).await
    }

    async fn registry_statistics(&self) -> Result<RegistryStatistics, HubError> {
        Ok(Hub::registry_statistics(self))
    }

    async fn service_statistics(&self) -> Result<ServiceStatistics, HubError> {
        Ok(Hub::service_statistics(self))
    }

    /// Plans a device: its twin (tags, desired properties) exists and can be targeted by
    /// queries, jobs and configurations, but it has no credentials and cannot connect until it
    /// is [provisioned](RegistryApi::provision_device).
    async fn plan_device(&self, spec: DeviceSpec) -> Result<Twin, HubError> {
        let lifecycle = DeviceLifecycle::new(self.now());
        let entry = self.new_entry(spec, lifecycle, Authentication::none())?;
        let twin = entry.twin.clone();
        self.insert_slot(entry).await?;
        Ok((*twin).clone())
    }

    /// Issues credentials to a planned device (generated symmetric keys when `auth` is `None`)
    /// and enables it.
    async fn provision_device(
        &self,
        device_id: &str,
        auth: Option<Authentication>,
    ) -> Result<Device, HubError> {
        let auth = match auth {
            Some(a) => a.complete()?,
            None => Authentication::generated_sas()?,
        };
        if auth.kind == AuthenticationType::None {
            return Err(HubError::invalid(
                "authentication.type",
                "provisioning issues credentials",
            ));
        }
        self.lifecycle_write(
            device_id,
            LifecycleEvent::Provision { enabled: true },
            move |e| {
                e.device.set_authentication(auth);
            },
        )
        .await
    }

    /// Lets a disabled device connect again. Enabling an enabled device changes nothing.
    async fn enable_device(&self, device_id: &str) -> Result<Device, HubError> {
        let current = self.get_device(device_id)?;
        if current.state() == LifecycleState::Enabled {
            return Ok(current);
        }
        self.lifecycle_write(device_id, LifecycleEvent::Enable, |_| {})
            .await
    }

    /// Refuses a device's connections and closes its live session. Disabling a disabled device
    /// only updates the reason.
    async fn disable_device(&self, device_id: &str, reason: &str) -> Result<Device, HubError> {
        let current = self.get_device(device_id)?;
        if current.state() == LifecycleState::Disabled {
            if current.identity.status_reason.as_deref() == Some(reason) {
                return Ok(current);
            }
            self.lifecycle_write(device_id, LifecycleEvent::Enable, |_| {})
                .await?;
        }
        self.lifecycle_write(
            device_id,
            LifecycleEvent::Disable {
                reason: reason.to_string(),
            },
            |_| {},
        )
        .await
    }

    /// Retires a device: its credentials are revoked, its live session closed, and its twin
    /// moves to the archive (see [`Hub::get_archived_twin`] and [`Hub::query_archive`]).
    async fn retire_device(&self, device_id: &str) -> Result<Device, HubError> {
        self.lifecycle_write(device_id, LifecycleEvent::Retire, |e| {
            e.device.set_authentication(Authentication::none());
        })
        .await
    }

    /// A new identity takes over a retired device's twin (tags and desired properties carry
    /// over; reported properties start empty, since they describe the old hardware). The
    /// retired record stays in the archive and records its successor.
    async fn replace_device(
        &self,
        retired_id: &str,
        successor: DeviceSpec,
    ) -> Result<Device, HubError> {
        let old = self.get_device(retired_id)?;
        if old.state() != LifecycleState::Retired {
            return Err(HubError::invalid(
                "deviceId",
                format!(
                    "{retired_id} is {}, only a retired device can be replaced",
                    old.state().as_str()
                ),
            ));
        }
        if let Some(s) = old.lifecycle.successor() {
            return Err(HubError::invalid(
                "deviceId",
                format!("{retired_id} was already replaced by {s}"),
            ));
        }
        let twin = self.get_archived_twin(retired_id)?;
        let mut spec = successor;
        if spec.tags.is_none() {
            spec.tags = Some(twin.tags().to_value());
        }
        if spec.desired.is_none() {
            spec.desired = Some(twin.desired().doc().to_value());
        }
        let new_id = spec.device_id.clone();
        let created = self.create_device(spec).await?;
        self.lifecycle_write(
            retired_id,
            LifecycleEvent::Replace { successor: new_id },
            |_| {},
        )
        .await?;
        Ok(created)
    }

    /// Deletes a device and its twin (also from the archive), closing its live session.
    /// `if_match` is the identity's ETag or `*`.
    async fn delete_device(&self, device_id: &str, if_match: Option<&str>) -> Result<(), HubError> {
        let slot = self.inner.state.slot(device_id)?;
        self.inner.room_for_write()?;
        let (id, ack, from) = {
            let mut guard = lock(&slot);
            if guard.deleted {
                return Err(HubError::not_found(device_id));
            }
            check_if_match(&guard.device, if_match)?;
            let from = guard.device.state();
            let mut lifecycle = guard.device.lifecycle.clone();
            lifecycle.apply(LifecycleEvent::Delete, self.now())?;
            let id = guard.device.device_id.clone();
            let ack = self.inner.committer.submit(vec![delete_op(&id)]);
            guard.deleted = true;
            self.inner.state.devices.remove(&id);
            (id, ack, from)
        };
        self.close_session(&id, "device deleted");
        ack.await?;
        self.emit(HubEvent::IdentityDeleted {
            device_id: id.clone(),
        });
        self.emit(HubEvent::Lifecycle {
            device_id: id,
            event: iot_dm_core::lifecycle::EventKind::Delete,
            from,
            to: None,
        });
        Ok(())
    }

    /// Updates what a back end may change on an identity: credentials, status (through the
    /// lifecycle: enable or disable), status reason and capabilities, as IoT Hub's
    /// `PUT /devices/{id}` does. `if_match` is the identity's ETag or `*`.
    async fn update_device(
        &self,
        update: Device,
        if_match: Option<&str>,
    ) -> Result<Device, HubError> {
        let id = update.device_id.as_str().to_string();
        let current = self.get_device(&id)?;
        check_if_match(&current, if_match)?;
        if current.state() == LifecycleState::Retired || current.state() == LifecycleState::Planned
        {
            return Err(HubError::invalid(
                "deviceId",
                format!(
                    "{id} is {}; provision it or replace it instead of updating it",
                    current.state().as_str()
                ),
            ));
        }
        match (current.identity.status, update.identity.status) {
            (DeviceStatus::Enabled, DeviceStatus::Disabled) => {
                self.disable_device(
                    &id,
                    update
                        .identity
                        .status_reason
                        .as_deref()
                        .unwrap_or("disabled"),
                )
                .await?;
            }
            (DeviceStatus::Disabled, DeviceStatus::Enabled) => {
                self.enable_device(&id).await?;
            }
            _ => {}
        }
        let auth = update.authentication().complete()?;
        if auth.kind == AuthenticationType::None {
            return Err(HubError::invalid(
                "authentication.type",
                "a provisioned device needs credentials; retire it to revoke them",
            ));
        }
        let creds_changed = auth != current.authentication();
        let slot = self.inner.state.slot(&id)?;
        let (device, ack) = self.inner.write(&slot, |e| {
            e.device.set_authentication(auth);
            e.device.identity_mut().capabilities = update.identity.capabilities.clone();
            e.device.bump_etag();
            Ok(e.device.clone())
        })?;
        if creds_changed {
            self.close_session(&device.device_id, "credentials changed");
        }
        ack.await?;
        self.emit(HubEvent::IdentityUpdated {
            device_id: device.device_id.clone(),
        });
        Ok(device)
    }

    /// Regenerates a symmetric key (or swaps the two) and closes the live session, so the
    /// device must reconnect with a valid key.
    async fn regenerate_key(&self, device_id: &str, which: KeyKind) -> Result<Device, HubError> {
        let fresh = generate_key()?;
        let slot = self.inner.state.slot(device_id)?;
        let (device, ack) = self.inner.write(&slot, |e| {
            if e.device.identity.authentication_type != AuthenticationType::Sas {
                return Err(HubError::invalid(
                    "authentication.type",
                    "only symmetric-key devices have keys to regenerate",
                ));
            }
            let keys = &mut e.device.symmetric_key;
            match which {
                KeyKind::Primary => keys.primary_key = Some(fresh),
                KeyKind::Secondary => keys.secondary_key = Some(fresh),
                KeyKind::Swap => std::mem::swap(&mut keys.primary_key, &mut keys.secondary_key),
            }
            e.device.bump_etag();
            Ok(e.device.clone())
        })?;
        self.close_session(&device.device_id, "keys regenerated");
        ack.await?;
        self.emit(HubEvent::IdentityUpdated {
            device_id: device.device_id.clone(),
        });
        Ok(device)
    }
}
