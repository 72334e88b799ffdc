//! The embeddable hub: identity registry, twin store, queries, direct methods, the device
//! lifecycle and the device-facing endpoint.
//!
//! A [`Hub`] is a cheap-clone handle. Everything lives in memory, so queries run at memory
//! speed and see every acknowledged write (read-your-writes); every write is made durable by the
//! configured [store](crate::store) through group commit before it is acknowledged.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iot_dm_service::api::prelude::*;
//! use iot_dm_service::hub::{Hub, DeviceSpec};
//! use serde_json::json;
//!
//! let hub = Hub::builder().in_memory().open().await?;
//! let device = hub.create_device(DeviceSpec::new("pump-1".parse()?)).await?;
//! assert!(device.symmetric_key.primary_key.is_some());
//!
//! let twin = hub
//!     .update_twin("pump-1", &serde_json::from_value(json!({"tags": {"site": "north"}}))?, None)
//!     .await?;
//! assert_eq!(twin.version(), 2);
//! # Ok(()) }
//! ```

mod artifacts;
mod engine;
mod error;
mod events;
mod fleet;
mod handle;
mod registry;
mod sessions;
mod stream;
mod twins;

pub use engine::space::DEFAULT_MIN_FREE_SPACE;
pub use error::HubError;
pub use events::{Actor, AlertChange, HubEvent};
pub use fleet::{
    DEFAULT_JOB_RETENTION, DEFAULT_MAX_ACTIVE_JOBS, MAX_ACKNOWLEDGED_BY_LEN, MAX_IN_FLIGHT,
    MAX_TWIN_BATCH,
};
pub use registry::{
    generate_key, thumbprints, Authentication, BulkError, BulkResult, CaCertificate, Device,
    DevicePage, DeviceSpec, ImportDevice, ImportMode, ImportProperties, ImportReport, KeyKind,
    RegistryStatistics, ServiceStatistics, SymmetricKeys, MAX_BULK, MAX_CAS,
};
#[cfg(any(feature = "rest", feature = "client"))]
pub(crate) use sessions::MessageBody;
pub use sessions::{CloudMessage, Telemetry, DEFAULT_TTL, MAX_C2D_BODY, MAX_PENDING, MAX_TTL};

pub(crate) use handle::Inner;
pub use handle::{Hub, HubBuilder, Storage};
pub use stream::{
    EventCursor, Recorded, StreamItem, DEFAULT_EVENT_RETENTION, DEFAULT_EVENT_RETENTION_BYTES,
    JOB_PROGRESS_EVERY, MAX_EVENT_BODY,
};
#[cfg(feature = "rest")]
#[cfg(test)]
mod tests;
