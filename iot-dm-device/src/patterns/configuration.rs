//! The configuration pattern: desired properties applied through a hook, each acknowledged
//! in the reported properties the IoT Plug and Play way.

use std::collections::HashMap;
use std::sync::Arc;

use iot_dm_core::patterns::REPORTED_ROOT;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

use super::PatternsError;
use crate::client::{DeviceClient, WeakClient};
use crate::types::DesiredPatch;

/// The acknowledgement code of a property the device applied.
pub const ACK_APPLIED: u16 = 200;
/// The acknowledgement code of a property the device is applying.
pub const ACK_APPLYING: u16 = 202;

/// Why the device refuses a desired value: a 4xx acknowledgement code and the reason the
/// service reads in `ad`.
///
/// ```
/// use iot_dm_device::patterns::Rejection;
/// let r = Rejection::new(422, "fan speed must be 0-5");
/// assert_eq!((r.code(), r.reason()), (422, "fan speed must be 0-5"));
/// assert_eq!(Rejection::new(500, "not a 4xx code").code(), 400);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    code: u16,
    reason: String,
}

impl Rejection {
    /// A rejection with `code` (a code outside 400-499 becomes 400) and `reason`.
    pub fn new(code: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            code: if (400..500).contains(&code) {
                code
            } else {
                400
            },
            reason: reason.into(),
        }
    }

    /// A 400 rejection.
    pub fn bad_request(reason: impl Into<String>) -> Rejection {
        Rejection::new(400, reason)
    }

    /// The acknowledgement code, 400-499.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// How the device applies its writable (desired) properties, for
/// [`DeviceClient::enable_configuration`].
///
/// ```
/// use iot_dm_device::patterns::{ConfigurationHooks, Rejection};
/// use serde_json::Value;
///
/// #[derive(Debug)]
/// struct Fan;
///
/// #[async_trait::async_trait]
/// impl ConfigurationHooks for Fan {
///     fn handles(&self, name: &str) -> bool {
///         name == "fanSpeed"
///     }
///     async fn apply(&self, _name: &str, value: &Value) -> Result<(), Rejection> {
///         match value.as_u64() {
///             Some(0..=5) => Ok(()), // set the PWM duty cycle here
///             _ => Err(Rejection::new(422, "fanSpeed must be an integer from 0 to 5")),
///         }
///     }
/// }
/// # let _ = Fan;
/// ```
#[async_trait::async_trait]
pub trait ConfigurationHooks: Send + Sync + std::fmt::Debug + 'static {
    /// Whether this handler owns the top-level desired property `name`; by default every
    /// property but `deviceManagement` (the firmware request).
    fn handles(&self, name: &str) -> bool {
        name != REPORTED_ROOT
    }

    /// Applies `value` to property `name`. `Ok` is acknowledged 200, a [`Rejection`] with its
    /// code and reason. A newer desired version of the same property cancels an apply still
    /// running (its future is dropped): the newer one supersedes it.
    async fn apply(&self, name: &str, value: &Value) -> Result<(), Rejection>;
}

struct Property {
    version: u64,
    value: Value,
    running: Option<AbortHandle>,
}

struct Configuration {
    hooks: Arc<dyn ConfigurationHooks>,
    /// Per property: the last desired version taken. Held across the reports, so the reports
    /// of one property go out in version order.
    props: Mutex<HashMap<String, Property>>,
}

/// `{"value": v, "ac": code, "av": version, "ad": description}`.
fn ack(value: &Value, code: u16, version: u64, description: &str) -> Value {
    json!({"value": value, "ac": code, "av": version, "ad": description})
}

impl DeviceClient {
    /// Applies desired properties through `hooks` and acknowledges each one in the reported
    /// properties, as IoT Plug and Play's writable properties:
    /// `{"<name>": {"value": <desired value>, "ac": <code>, "av": <desired $version>,
    /// "ad": "<description>"}}`.
    ///
    /// A property is first acknowledged [`ACK_APPLYING`] (202, "applying"), then
    /// [`ACK_APPLIED`] (200, "applied") or the hook's [`Rejection`] (4xx with the reason).
    /// A newer desired version of a property supersedes one still being applied. The whole
    /// desired document is applied when the client starts; after a reconnect only what
    /// changed. Properties set to `null` (deleted) and those the hooks do not
    /// [handle](ConfigurationHooks::handles) are left alone.
    pub async fn enable_configuration(
        &self,
        hooks: impl ConfigurationHooks,
    ) -> Result<(), PatternsError> {
        let pattern = Arc::new(Configuration {
            hooks: Arc::new(hooks),
            props: Mutex::new(HashMap::new()),
        });
        let mut updates = self.desired_updates();
        let client = self.downgrade();
        tokio::spawn(async move {
            while let Some(patch) = updates.recv().await {
                pattern.clone().on_patch(&client, patch).await;
            }
            for p in pattern.props.lock().await.values() {
                if let Some(task) = &p.running {
                    task.abort();
                }
            }
        });
        Ok(())
    }
}

impl Configuration {
    async fn on_patch(self: Arc<Self>, weak: &WeakClient, patch: DesiredPatch) {
        let Some(client) = weak.upgrade() else { return };
        let Some(members) = patch.patch.as_object() else {
            return;
        };
        let mut props = self.props.lock().await;
        let mut acks = Map::new();
        let mut start = Vec::new();
        for (name, value) in members {
            if name.starts_with('$') || value.is_null() || !self.hooks.handles(name) {
                continue;
            }
            if let Some(p) = props.get(name) {
                if p.version >= patch.version || (patch.full && p.value == *value) {
                    continue;
                }
                if let Some(task) = &p.running {
                    tracing::info!(property = %name, old = p.version, new = patch.version,
                        "a newer desired version supersedes the one being applied");
                    task.abort();
                }
            }
            props.insert(
                name.clone(),
                Property {
                    version: patch.version,
                    value: value.clone(),
                    running: None,
                },
            );
            acks.insert(
                name.clone(),
                ack(value, ACK_APPLYING, patch.version, "applying"),
            );
            start.push((name.clone(), value.clone()));
        }
        if acks.is_empty() {
            return;
        }
        super::report(&client, "configuration", Value::Object(acks)).await;
        for (name, value) in start {
            let pattern = self.clone();
            let weak = weak.clone();
            let key = name.clone();
            let version = patch.version;
            let task = tokio::spawn(async move {
                let outcome = pattern.hooks.apply(&name, &value).await;
                pattern.finish(&weak, name, value, version, outcome).await;
            });
            if let Some(p) = props.get_mut(&key) {
                p.running = Some(task.abort_handle());
            }
        }
    }

    async fn finish(
        &self,
        weak: &WeakClient,
        name: String,
        value: Value,
        version: u64,
        outcome: Result<(), Rejection>,
    ) {
        let mut props = self.props.lock().await;
        match props.get_mut(&name) {
            Some(p) if p.version == version => p.running = None,
            _ => return, // superseded
        }
        let body = match &outcome {
            Ok(()) => ack(&value, ACK_APPLIED, version, "applied"),
            Err(r) => {
                tracing::warn!(property = %name, code = r.code(), reason = r.reason(),
                    "desired property rejected");
                ack(&value, r.code(), version, r.reason())
            }
        };
        let Some(client) = weak.upgrade() else { return };
        let mut patch = Map::new();
        patch.insert(name, body);
        super::report(&client, "configuration", Value::Object(patch)).await;
        drop(props);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_follow_the_plug_and_play_shape() {
        assert_eq!(
            ack(&json!(3), 202, 7, "applying"),
            json!({"value": 3, "ac": 202, "av": 7, "ad": "applying"})
        );
        assert_eq!(Rejection::new(399, "x").code(), 400);
        assert_eq!(Rejection::new(499, "x").code(), 499);
        assert_eq!(Rejection::bad_request("x").code(), 400);
    }
}
