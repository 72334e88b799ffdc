//! The factory-reset pattern on the device: the `factoryReset` method, the hook, and the
//! report once the device is back.

use std::sync::Arc;

use iot_dm_core::method::MethodResponse;
use iot_dm_core::patterns::{
    FactoryResetEvent, FactoryResetRequest, FactoryResetState, FactoryResetStatus, PatternStatus,
    FACTORY_RESET_METHOD,
};
use tokio::sync::Mutex;

use super::{
    accepted, clip, closed, load_status, now, refuse, report, wait_connected, HookError,
    PatternState, PatternsError, ANSWER_GRACE,
};
use crate::client::{DeviceClient, WeakClient};
use crate::types::MethodCall;

const KEY: &str = "factoryReset";

/// What the device does to reset to factory settings, for
/// [`DeviceClient::enable_factory_reset`].
///
/// ```
/// use iot_dm_device::patterns::{FactoryResetHooks, HookError};
/// use iot_dm_device::DeviceClient;
///
/// #[derive(Debug)]
/// struct Board;
///
/// #[async_trait::async_trait]
/// impl FactoryResetHooks for Board {
///     async fn factory_reset(
///         &self,
///         _client: &DeviceClient,
///         keep_network_config: bool,
///     ) -> Result<(), HookError> {
///         // wipe the data partition (keeping the Wi-Fi settings if asked), then reboot
///         let _ = keep_network_config;
///         Err(HookError::new("no data partition on this board"))
///     }
/// }
/// # let _ = Board;
/// ```
#[async_trait::async_trait]
pub trait FactoryResetHooks: Send + Sync + std::fmt::Debug + 'static {
    /// Wipes the device's state (keeping the network configuration when asked) and restarts
    /// it. Like [`RebootHooks::reboot`](super::RebootHooks::reboot): on real hardware it does
    /// not return, `Ok` means the device is back, `Err` that the reset did not happen. The
    /// [`PatternState`] must survive the reset, or the device cannot report how it ended.
    async fn factory_reset(
        &self,
        client: &DeviceClient,
        keep_network_config: bool,
    ) -> Result<(), HookError>;
}

struct FactoryReset {
    client: WeakClient,
    hooks: Arc<dyn FactoryResetHooks>,
    state: Arc<dyn PatternState>,
    status: Mutex<FactoryResetStatus>,
}

impl DeviceClient {
    /// Handles the `factoryReset` method with `hooks`, keeping the pattern's state in
    /// `state`.
    ///
    /// The payload is a [`FactoryResetRequest`] (`{"keepNetworkConfig": bool}`, optional).
    /// The method is answered 202 with the `resetting` status (400 for a payload that does
    /// not parse, 409 while a reset is under way); then the hook runs, and once the device is
    /// back the status goes to `succeeded` with `lastReset`, or to `failed` with the hook's
    /// reason. Enabling reads the saved state: a device that was resetting reports the reset
    /// as succeeded now. The current status is reported either way.
    pub async fn enable_factory_reset(
        &self,
        hooks: impl FactoryResetHooks,
        state: Arc<dyn PatternState>,
    ) -> Result<(), PatternsError> {
        let t = now(self);
        let mut status = load_status(&*state, KEY, FactoryResetStatus::from_json)?
            .unwrap_or_else(|| FactoryResetStatus::new(t));
        if matches!(status.state(), FactoryResetState::Resetting { .. }) {
            status.apply(FactoryResetEvent::Complete, t)?;
            state.save(KEY, &status.to_json())?;
            tracing::info!("back from a factory reset");
        }
        let patch = status.to_patch();
        let pattern = Arc::new(FactoryReset {
            client: self.downgrade(),
            hooks: Arc::new(hooks),
            state,
            status: Mutex::new(status),
        });
        report(self, KEY, patch).await;
        self.on_method(FACTORY_RESET_METHOD, move |call| {
            let pattern = pattern.clone();
            async move { pattern.on_call(call).await }
        });
        Ok(())
    }
}

impl FactoryReset {
    async fn on_call(self: Arc<Self>, call: MethodCall) -> MethodResponse {
        let request = match FactoryResetRequest::from_payload(&call.payload) {
            Ok(r) => r,
            Err(e) => return refuse(400, e.to_string()),
        };
        let Some(client) = self.client.upgrade() else {
            return refuse(503, "the client is closing");
        };
        let mut status = self.status.lock().await;
        if matches!(status.state(), FactoryResetState::Resetting { .. }) {
            return refuse(409, "a factory reset is under way");
        }
        let mut next = status.clone();
        if let Err(e) = next.apply(request.event(), now(&client)) {
            return refuse(409, e.to_string());
        }
        // Saved before the answer: from here on a restart means the reset happened.
        if let Err(e) = self.state.save(KEY, &next.to_json()) {
            tracing::error!(error = %e, "cannot save the reset state; refusing the reset");
            return refuse(500, e.to_string());
        }
        *status = next;
        let body = status.to_json();
        let patch = status.to_patch();
        drop(status);
        let pattern = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = pattern.reset(&client, patch, request.keep_network_config) => {}
                () = closed(&client) => tracing::debug!("client closed; the reset stops with it"),
            }
        });
        accepted(body)
    }

    async fn reset(&self, client: &DeviceClient, patch: serde_json::Value, keep: bool) {
        report(client, KEY, patch).await;
        tokio::time::sleep(ANSWER_GRACE).await;
        tracing::info!(keep_network_config = keep, "factory reset");
        let event = match self.hooks.factory_reset(client, keep).await {
            Ok(()) => {
                if !wait_connected(client).await {
                    return;
                }
                FactoryResetEvent::Complete
            }
            Err(e) => {
                tracing::warn!(error = %e, "the factory reset failed");
                FactoryResetEvent::Fail {
                    reason: clip(e.message()),
                }
            }
        };
        let mut status = self.status.lock().await;
        let mut next = status.clone();
        if let Err(e) = next.apply(event, now(client)) {
            tracing::warn!(error = %e, "factory reset transition refused");
            return;
        }
        if let Err(e) = self.state.save(KEY, &next.to_json()) {
            tracing::error!(error = %e, "cannot save the reset state");
        }
        *status = next;
        let patch = status.to_patch();
        drop(status);
        report(client, KEY, patch).await;
    }
}
