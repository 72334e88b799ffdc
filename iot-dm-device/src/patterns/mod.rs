//! Device-management patterns as opt-in handlers on the [`DeviceClient`]: reboot, factory
//! reset, configuration and (feature `firmware`) firmware update.
//!
//! Each pattern is enabled with one call on the client and drives its state machine from
//! [`iot_dm_core::patterns`], reporting every transition, stamped with the client's clock,
//! as a reported-properties patch under `deviceManagement` (configuration: one IoT Plug and
//! Play acknowledgement per writable property). The service follows progress by reading the
//! twin.
//!
//! | pattern | enable with | trigger | hooks |
//! |---|---|---|---|
//! | reboot | [`DeviceClient::enable_reboot`] | method `reboot` | [`RebootHooks`] |
//! | factory reset | [`DeviceClient::enable_factory_reset`] | method `factoryReset` | [`FactoryResetHooks`] |
//! | configuration | [`DeviceClient::enable_configuration`] | desired properties | [`ConfigurationHooks`] |
#![cfg_attr(
    feature = "firmware",
    doc = "| firmware update | [`DeviceClient::enable_firmware`] | desired `deviceManagement.firmware` or method `firmwareUpdate` | [`FirmwareHooks`] |"
)]
//!
//! The hooks are what a device developer implements for the real hardware;
//! [`SimulatedDevice`] implements all of them for examples and tests, with knobs that inject
//! failures.
//!
//! Methods are answered first (202 accepted, or refused with a reason), then the hook runs,
//! no sooner than [`ANSWER_GRACE`] later so the answer reaches the hub before a reboot takes
//! the connection down. State that must survive a restart is saved in a [`PatternState`]
//! before the hook runs: a hook that really restarts the device never returns, and the
//! pattern enabled again by the new process reports how it ended. A hook that returns means
//! the device is back (the simulated ones drop and re-open the connection with
//! [`DeviceClient::reconnect`]).
//!
//! Enable each pattern once per client (enabling again replaces the method handler but
//! leaves the first one's desired-property watch running). Background work (a scheduled
//! reboot, a download) holds the client while it runs and stops when the client is closed,
//! as it would with the device process.
//!
//! ```
//! # use std::sync::{Arc, Mutex};
//! # use iot_dm_core::link::*;
//! # // A tiny hub: one twin with desired {"fan": 2}; it keeps the reported patches.
//! # #[derive(Default)]
//! # struct TinyHub { reported: Arc<Mutex<Vec<serde_json::Value>>> }
//! # #[async_trait::async_trait]
//! # impl Endpoint for TinyHub {
//! #     async fn connect(&self, _: ConnectRequest) -> Result<Link, ConnectRefused> {
//! #         let (link, mut hub) = channel(8);
//! #         let reported = self.reported.clone();
//! #         tokio::spawn(async move {
//! #             let mut version = 1;
//! #             while let Some(frame) = hub.frames.recv().await {
//! #                 let DeviceFrame::Publish(m) = frame else { continue };
//! #                 let rid = m.topic.split("$rid=").nth(1).unwrap_or_default().to_string();
//! #                 let answer = if m.topic.starts_with("$iothub/twin/GET/") {
//! #                     let body = r#"{"desired":{"fan":2,"$version":3},"reported":{"$version":1}}"#;
//! #                     Message::new(format!("$iothub/twin/res/200/?$rid={rid}"), body)
//! #                 } else if m.topic.starts_with("$iothub/twin/PATCH/properties/reported/") {
//! #                     version += 1;
//! #                     reported.lock().unwrap().push(serde_json::from_slice(&m.payload).unwrap());
//! #                     Message::new(format!("$iothub/twin/res/204/?$rid={rid}&$version={version}"), "")
//! #                 } else {
//! #                     continue;
//! #                 };
//! #                 if hub.messages.send(answer).await.is_err() { break }
//! #             }
//! #         });
//! #         Ok(link)
//! #     }
//! # }
//! use iot_dm_device::patterns::{MemoryPatternState, SimulatedDevice};
//! use iot_dm_device::{DeviceClient, DeviceCredentials, InMemoryTransport};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let hub = TinyHub::default();
//! # let reported = hub.reported.clone();
//! let credentials = DeviceCredentials::from_connection_string(
//!     "HostName=hub.local;DeviceId=fan-1;SharedAccessKey=aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=",
//! )?;
//! let client = DeviceClient::builder(credentials, InMemoryTransport::new(Arc::new(hub)))
//!     .connect()
//!     .await?;
//! let device = SimulatedDevice::new("1.0.0"); // or hooks for the real hardware
//! let state = Arc::new(MemoryPatternState::new()); // a FilePatternState on a device
//! client.enable_reboot(device.clone(), state.clone()).await?;
//! client.enable_factory_reset(device.clone(), state.clone()).await?;
//! client.enable_configuration(device.clone()).await?;
//!
//! // the hub's desired {"fan": 2} (version 3) is applied and acknowledged
//! # for _ in 0..500 {
//! #     if device.setting("fan").is_some() && reported.lock().unwrap().len() >= 4 { break }
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! assert_eq!(device.setting("fan"), Some(json!(2)));
//! let patches = reported.lock().unwrap().clone();
//! assert!(patches.contains(&json!({"fan": {"value": 2, "ac": 200, "av": 3, "ad": "applied"}})));
//! assert!(patches.iter().any(|p| p["deviceManagement"]["reboot"]["state"] == "idle"));
//! client.close().await;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::method::MethodResponse;
use iot_dm_core::patterns::PatternError;
use serde_json::{json, Value};

use crate::client::DeviceClient;
use crate::types::LinkState;

mod configuration;
mod factory_reset;
#[cfg(feature = "firmware")]
mod firmware;
mod reboot;
mod simulated;
mod store;

pub use configuration::{ConfigurationHooks, Rejection, ACK_APPLIED, ACK_APPLYING};
pub use factory_reset::FactoryResetHooks;
#[cfg(feature = "firmware")]
pub use firmware::{FirmwareHooks, FirmwareOptions, SigningKey};
pub use reboot::RebootHooks;
pub use simulated::SimulatedDevice;
pub use store::{FilePatternState, MemoryPatternState, PatternState};

/// How long after answering a method its hook runs at the earliest.
pub const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// What can go wrong enabling or running a pattern.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatternsError {
    /// The pattern store could not load or save a document.
    #[error("pattern state {key:?}: {reason}")]
    Store {
        /// The document's key (empty for the store itself).
        key: String,
        /// What failed.
        reason: String,
    },
    /// A saved document does not hold a valid pattern status.
    #[error("saved pattern state is invalid: {0}")]
    State(#[from] PatternError),
    /// The client failed (closed, or the hub refused a request).
    #[error(transparent)]
    Client(#[from] crate::Error),
    /// A pattern option is unusable.
    #[error("{field}: {reason}")]
    Config {
        /// The option.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// A hook's failure: why the device could not do what was asked. It is reported in the
/// pattern's status (`reason`, or the firmware `result.message`).
///
/// ```
/// use iot_dm_device::patterns::HookError;
/// let e = HookError::new("the battery is too low");
/// assert_eq!(e.to_string(), "the battery is too low");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    message: String,
}

impl HookError {
    /// A failure with `message` (cut to the core's text limit when reported).
    pub fn new(message: impl Into<String>) -> HookError {
        HookError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `text` cut to at most [`iot_dm_core::patterns::MAX_TEXT_LEN`] bytes, on a character
/// boundary, so a long hook message never makes a transition fail.
pub(crate) fn clip(text: &str) -> String {
    let max = iot_dm_core::patterns::MAX_TEXT_LEN;
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Now, on the client's clock.
pub(crate) fn now(client: &DeviceClient) -> Timestamp {
    client.clock().now()
}

/// Sends a reported patch; a failure is logged (the next report overwrites the same fields).
pub(crate) async fn report(client: &DeviceClient, what: &'static str, patch: Value) {
    if let Err(e) = client.update_reported(patch).await {
        tracing::warn!(pattern = what, error = %e, "could not report the pattern's status");
    }
}

/// Waits until a session is up; `false` if the client closed first.
pub(crate) async fn wait_connected(client: &DeviceClient) -> bool {
    let mut rx = client.link_state();
    let connected = match rx.wait_for(|s| s.is_connected() || s.is_closed()).await {
        Ok(s) => s.is_connected(),
        Err(_) => false,
    };
    connected
}

/// Resolves when the client closes (a stand-in for the device process ending: the patterns'
/// background work stops with it).
pub(crate) async fn closed(client: &DeviceClient) {
    let mut rx = client.link_state();
    let _ = rx.wait_for(LinkState::is_closed).await;
}

/// A method answer `{"message": ..}` with `status`.
pub(crate) fn refuse(status: i32, message: impl Into<String>) -> MethodResponse {
    MethodResponse {
        status,
        payload: json!({ "message": message.into() }),
    }
}

/// The 202 answer of an accepted method, with the pattern's status.
pub(crate) fn accepted(status: Value) -> MethodResponse {
    MethodResponse {
        status: 202,
        payload: status,
    }
}

/// Loads a saved status with `parse`; a document that does not parse is logged and ignored
/// (the pattern starts afresh rather than refusing to run).
pub(crate) fn load_status<T>(
    state: &dyn PatternState,
    key: &str,
    parse: impl FnOnce(&Value) -> Result<T, PatternError>,
) -> Result<Option<T>, PatternsError> {
    let Some(doc) = state.load(key)? else {
        return Ok(None);
    };
    match parse(&doc) {
        Ok(status) => Ok(Some(status)),
        Err(e) => {
            tracing::warn!(pattern = key, error = %e, "ignoring an unreadable saved status");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(600);
        let cut = clip(&long);
        assert!(cut.len() <= iot_dm_core::patterns::MAX_TEXT_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
