//! What happens in the hub, as a stream back ends subscribe to.

use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::{EventKind, LifecycleState};

/// Who changed a twin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor {
    /// The device itself (reported properties).
    Device,
    /// A back-end call.
    Service,
    /// A job, by id.
    Job(String),
    /// An automatic configuration, by id.
    Configuration(String),
}

/// Something that happened in the hub. Events are published after the change is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubEvent {
    /// A device opened a session.
    Connected {
        /// The device.
        device_id: DeviceId,
    },
    /// A device's session ended.
    Disconnected {
        /// The device.
        device_id: DeviceId,
        /// Why it ended.
        reason: String,
    },
    /// A twin changed.
    TwinChanged {
        /// The device.
        device_id: DeviceId,
        /// Who changed it.
        actor: Actor,
        /// The new twin version.
        version: u64,
        /// The desired `$version` after the change.
        desired_version: u64,
        /// The reported `$version` after the change.
        reported_version: u64,
    },
    /// A device identity was created (planned or provisioned).
    IdentityCreated {
        /// The device.
        device_id: DeviceId,
    },
    /// A device identity was updated (status, credentials, capabilities).
    IdentityUpdated {
        /// The device.
        device_id: DeviceId,
    },
    /// A device identity was deleted.
    IdentityDeleted {
        /// The device.
        device_id: DeviceId,
    },
    /// A device moved through its lifecycle.
    Lifecycle {
        /// The device.
        device_id: DeviceId,
        /// The event.
        event: EventKind,
        /// The state before.
        from: LifecycleState,
        /// The state after (`None` when deleted).
        to: Option<LifecycleState>,
    },
}
