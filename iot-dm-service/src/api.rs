//! The back-end API: one trait, [`ServiceApi`], for everything a back-end application,
//! operator tool or supervisor dashboard does with a hub, with two implementations:
//!
//! - [`Hub`], the embedded hub, in the same process;
//! - `ServiceClient`, a remote hub over HTTPS (IoT Hub's service REST API), built from a
//!   service connection string.
//!
//! Code written against `&dyn ServiceApi` (or a generic `A: ServiceApi`) switches between the
//! two by configuration. Errors are [`HubError`] in both cases, with the same variants and
//! predicates (`is_not_found()`, `is_precondition_failed()`, ...): the remote client maps IoT
//! Hub's error codes back to them, and adds the failures only a remote call can have
//! (unauthorized, forbidden, throttled, unreachable).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iot_dm_service::api::ServiceApi;
//! use iot_dm_service::hub::{DeviceSpec, Hub};
//!
//! // Works the same against `Hub` and against a remote `ServiceClient`.
//! async fn enroll(api: &dyn ServiceApi, spec: DeviceSpec) -> Result<u64, iot_dm_service::HubError> {
//!     api.create_device(spec).await?;
//!     Ok(api.registry_statistics().await?.total_device_count)
//! }
//!
//! let hub = Hub::builder().open().await?;
//! assert_eq!(enroll(&hub, DeviceSpec::new("pump-1".parse()?)).await?, 1);
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use iot_dm_core::method::{MethodRequest, MethodResponse};
use iot_dm_core::query::{Page as QueryPage, PageRequest};
use iot_dm_core::twin::{Twin, TwinPatch};

use crate::hub::{
    Authentication, BulkResult, Device, DeviceSpec, Hub, HubError, ImportDevice, KeyKind, Page,
};

/// Device counts of the identity registry (`GET /statistics/devices`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatistics {
    /// Every identity: planned, enabled, disabled and retired.
    pub total_device_count: u64,
    /// Enabled identities.
    pub enabled_device_count: u64,
    /// Disabled identities (planned and retired devices count as disabled, as they cannot
    /// connect).
    pub disabled_device_count: u64,
}

/// Live figures of the service (`GET /statistics/service`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatistics {
    /// Devices with a live session.
    pub connected_device_count: u64,
}

/// Everything a back end does with a hub. See the [module docs](self).
///
/// Every method is one request to the hub; none of them retries.
#[async_trait]
pub trait ServiceApi: Send + Sync + std::fmt::Debug {
    // ---- identity registry ----

    /// Creates a provisioned device (`PUT /devices/{id}` without `If-Match`).
    async fn create_device(&self, spec: DeviceSpec) -> Result<Device, HubError>;
    /// The device identity (`GET /devices/{id}`).
    async fn get_device(&self, device_id: &str) -> Result<Device, HubError>;
    /// Updates credentials, status and capabilities (`PUT /devices/{id}` with `If-Match`).
    async fn update_device(
        &self,
        device: Device,
        if_match: Option<&str>,
    ) -> Result<Device, HubError>;
    /// Deletes the device and its twin (`DELETE /devices/{id}`).
    async fn delete_device(&self, device_id: &str, if_match: Option<&str>) -> Result<(), HubError>;
    /// Lists identities in device-id order, `limit` (1 to 1000) at a time.
    async fn list_devices(
        &self,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<Page<Device>, HubError>;
    /// Up to 100 creates, updates and deletes, each on its own (`POST /devices`).
    async fn bulk(&self, devices: Vec<ImportDevice>) -> Result<BulkResult, HubError>;
    /// Regenerates a symmetric key or swaps the two.
    async fn regenerate_key(&self, device_id: &str, which: KeyKind) -> Result<Device, HubError>;

    // ---- lifecycle (ours; IoT Hub has no such routes) ----

    /// Plans a device: a twin with tags and desired properties, no credentials yet.
    async fn plan_device(&self, spec: DeviceSpec) -> Result<Twin, HubError>;
    /// Issues credentials to a planned device (generated keys when `auth` is `None`).
    async fn provision_device(
        &self,
        device_id: &str,
        auth: Option<Authentication>,
    ) -> Result<Device, HubError>;
    /// Enables a disabled device.
    async fn enable_device(&self, device_id: &str) -> Result<Device, HubError>;
    /// Disables a device with a reason, closing its session.
    async fn disable_device(&self, device_id: &str, reason: &str) -> Result<Device, HubError>;
    /// Retires a device: credentials revoked, session closed, twin archived.
    async fn retire_device(&self, device_id: &str) -> Result<Device, HubError>;
    /// A new identity takes over the twin of a retired device.
    async fn replace_device(
        &self,
        retired_id: &str,
        successor: DeviceSpec,
    ) -> Result<Device, HubError>;

    // ---- twins ----

    /// The twin (`GET /twins/{id}`).
    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubError>;
    /// Merges tags and desired properties (`PATCH /twins/{id}`).
    async fn update_twin(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError>;
    /// Replaces tags and desired properties (`PUT /twins/{id}`).
    async fn replace_twin(
        &self,
        device_id: &str,
        replacement: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError>;
    /// The archived twin of a retired device.
    async fn get_archived_twin(&self, device_id: &str) -> Result<Twin, HubError>;

    // ---- queries ----

    /// One page of a query over live twins (`POST /devices/query`).
    async fn query_page(&self, sql: &str, request: &PageRequest) -> Result<QueryPage, HubError>;
    /// One page of a query over the archive of retired devices.
    async fn query_archive_page(
        &self,
        sql: &str,
        request: &PageRequest,
    ) -> Result<QueryPage, HubError>;

    // ---- direct methods ----

    /// Invokes a direct method (`POST /twins/{id}/methods`).
    async fn invoke_method(
        &self,
        device_id: &str,
        request: &MethodRequest,
    ) -> Result<MethodResponse, HubError>;

    // ---- statistics ----

    /// Device counts (`GET /statistics/devices`).
    async fn registry_statistics(&self) -> Result<RegistryStatistics, HubError>;
    /// Live figures (`GET /statistics/service`).
    async fn service_statistics(&self) -> Result<ServiceStatistics, HubError>;
}

#[async_trait]
impl ServiceApi for Hub {
    async fn create_device(&self, spec: DeviceSpec) -> Result<Device, HubError> {
        Hub::create_device(self, spec).await
    }
    async fn get_device(&self, device_id: &str) -> Result<Device, HubError> {
        Hub::get_device(self, device_id)
    }
    async fn update_device(
        &self,
        device: Device,
        if_match: Option<&str>,
    ) -> Result<Device, HubError> {
        Hub::update_device(self, device, if_match).await
    }
    async fn delete_device(&self, device_id: &str, if_match: Option<&str>) -> Result<(), HubError> {
        Hub::delete_device(self, device_id, if_match).await
    }
    async fn list_devices(
        &self,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<Page<Device>, HubError> {
        Hub::list_devices(self, continuation, limit)
    }
    async fn bulk(&self, devices: Vec<ImportDevice>) -> Result<BulkResult, HubError> {
        Hub::bulk(self, devices).await
    }
    async fn regenerate_key(&self, device_id: &str, which: KeyKind) -> Result<Device, HubError> {
        Hub::regenerate_key(self, device_id, which).await
    }
    async fn plan_device(&self, spec: DeviceSpec) -> Result<Twin, HubError> {
        Hub::plan_device(self, spec).await
    }
    async fn provision_device(
        &self,
        device_id: &str,
        auth: Option<Authentication>,
    ) -> Result<Device, HubError> {
        Hub::provision_device(self, device_id, auth).await
    }
    async fn enable_device(&self, device_id: &str) -> Result<Device, HubError> {
        Hub::enable_device(self, device_id).await
    }
    async fn disable_device(&self, device_id: &str, reason: &str) -> Result<Device, HubError> {
        Hub::disable_device(self, device_id, reason).await
    }
    async fn retire_device(&self, device_id: &str) -> Result<Device, HubError> {
        Hub::retire_device(self, device_id).await
    }
    async fn replace_device(
        &self,
        retired_id: &str,
        successor: DeviceSpec,
    ) -> Result<Device, HubError> {
        Hub::replace_device(self, retired_id, successor).await
    }
    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        Hub::get_twin(self, device_id)
    }
    async fn update_twin(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        Hub::update_twin(self, device_id, patch, if_match).await
    }
    async fn replace_twin(
        &self,
        device_id: &str,
        replacement: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        Hub::replace_twin(self, device_id, replacement, if_match).await
    }
    async fn get_archived_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        Hub::get_archived_twin(self, device_id)
    }
    async fn query_page(&self, sql: &str, request: &PageRequest) -> Result<QueryPage, HubError> {
        Hub::query_page(self, sql, request)
    }
    async fn query_archive_page(
        &self,
        sql: &str,
        request: &PageRequest,
    ) -> Result<QueryPage, HubError> {
        Hub::query_archive_page(self, sql, request)
    }
    async fn invoke_method(
        &self,
        device_id: &str,
        request: &MethodRequest,
    ) -> Result<MethodResponse, HubError> {
        Hub::invoke_method(self, device_id, request).await
    }
    async fn registry_statistics(&self) -> Result<RegistryStatistics, HubError> {
        Ok(Hub::registry_statistics(self))
    }
    async fn service_statistics(&self) -> Result<ServiceStatistics, HubError> {
        Ok(ServiceStatistics {
            connected_device_count: self.connected_devices() as u64,
        })
    }
}
