//! [`MessageApi`]: cloud-to-device messages.

use async_trait::async_trait;

use crate::hub::{CloudMessage, HubError};

/// Cloud-to-device messages: a durable queue per device, delivered at least once (see
/// [`CloudMessage`] and the hub's limits [`MAX_PENDING`](crate::hub::MAX_PENDING),
/// [`MAX_C2D_BODY`](crate::hub::MAX_C2D_BODY), [`MAX_TTL`](crate::hub::MAX_TTL)). A device's
/// `cloudToDeviceMessageCount` tells how many wait.
#[async_trait]
pub trait MessageApi: Send + Sync + std::fmt::Debug {
    /// Queues a message for a device (`POST /devices/{id}/commands`, ours) and returns its
    /// message id once it is durable. [`HubError::QueueFull`] when the device has
    /// [`MAX_PENDING`](crate::hub::MAX_PENDING) messages waiting.
    async fn send_c2d(&self, device_id: &str, message: CloudMessage) -> Result<String, HubError>;
    /// Drops every message waiting for a device (`DELETE /devices/{id}/commands`, IoT Hub's
    /// purge) and returns how many there were.
    async fn purge_c2d(&self, device_id: &str) -> Result<usize, HubError>;
}
