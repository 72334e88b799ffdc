//! What to create ([`DeviceSpec`]), which key to regenerate ([`KeyKind`]), and a page of a
//! listing ([`Page`]).

use serde_json::Value;

use iot_dm_core::identity::DeviceId;
use iot_dm_core::twin::Capabilities;

use super::device::{Authentication, Device};

/// What to create: a device id, and optionally credentials, status, capabilities and an
/// initial twin.
///
/// ```
/// use iot_dm_service::hub::{Authentication, DeviceSpec};
/// use serde_json::json;
/// let spec = DeviceSpec::new("gw-7".parse()?)
///     .authentication(Authentication::self_signed("ab".repeat(20), None))
///     .tags(json!({"site": "north"}))
///     .disabled("awaiting installation");
/// # Ok::<(), iot_dm_core::identity::IdError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub(crate) device_id: DeviceId,
    pub(crate) authentication: Option<Authentication>,
    pub(crate) disabled_reason: Option<String>,
    pub(crate) capabilities: Capabilities,
    pub(crate) tags: Option<Value>,
    pub(crate) desired: Option<Value>,
}

impl DeviceSpec {
    /// A device with generated symmetric keys, enabled.
    pub fn new(device_id: DeviceId) -> DeviceSpec {
        DeviceSpec {
            device_id,
            authentication: None,
            disabled_reason: None,
            capabilities: Capabilities::default(),
            tags: None,
            desired: None,
        }
    }

    /// The credentials (generated symmetric keys when not given, or when given without keys).
    pub fn authentication(mut self, auth: Authentication) -> Self {
        self.authentication = Some(auth);
        self
    }

    /// Creates the device disabled, with a reason.
    pub fn disabled(mut self, reason: impl Into<String>) -> Self {
        self.disabled_reason = Some(reason.into());
        self
    }

    /// Capabilities.
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Initial tags.
    pub fn tags(mut self, tags: Value) -> Self {
        self.tags = Some(tags);
        self
    }

    /// Initial desired properties.
    pub fn desired(mut self, desired: Value) -> Self {
        self.desired = Some(desired);
        self
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }
}

/// Which symmetric key to regenerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A new primary key.
    Primary,
    /// A new secondary key.
    Secondary,
    /// Swap primary and secondary.
    Swap,
}

/// One page of the device listing, with the token for the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePage {
    /// The devices.
    pub items: Vec<Device>,
    /// Pass this to get the next page; `None` on the last page.
    pub continuation: Option<String>,
}
