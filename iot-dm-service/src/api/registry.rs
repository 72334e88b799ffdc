//! [`RegistryApi`]: the identity registry and the device lifecycle.

use async_trait::async_trait;

use iot_dm_core::twin::Twin;

use crate::hub::{
    Authentication, BulkResult, Device, DevicePage, DeviceSpec, HubError, ImportDevice, KeyKind,
    RegistryStatistics, ServiceStatistics,
};

/// Device identities, bulk operations, key regeneration, the device lifecycle (plan,
/// provision, enable, disable, retire, replace), and the registry and service statistics (as
/// IoT Hub's registry manager has them).
#[async_trait]
pub trait RegistryApi: Send + Sync + std::fmt::Debug {
    /// Creates a provisioned device (`PUT /devices/{id}` without `If-Match`). Fails with
    /// [`HubError::DeviceAlreadyExists`] when the id is taken.
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
    /// Lists identities in device-id order, `limit` (1 to 1000) at a time (`GET /devices`).
    async fn list_devices(
        &self,
        continuation: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, HubError>;
    /// Up to 100 creates, updates and deletes, each on its own (`POST /devices`).
    async fn bulk(&self, devices: Vec<ImportDevice>) -> Result<BulkResult, HubError>;
    /// Regenerates a symmetric key or swaps the two (`POST /devices/{id}/keys/regenerate`).
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

    // ---- statistics ----

    /// Device counts (`GET /statistics/devices`).
    async fn registry_statistics(&self) -> Result<RegistryStatistics, HubError>;
    /// Live figures (`GET /statistics/service`).
    async fn service_statistics(&self) -> Result<ServiceStatistics, HubError>;
}
