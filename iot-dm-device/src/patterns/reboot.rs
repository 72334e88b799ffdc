//! The reboot pattern on the device: the `reboot` method, a schedule, the hook, and the
//! report once the device is back.

use std::sync::Arc;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::method::MethodResponse;
use iot_dm_core::patterns::{
    PatternStatus, RebootEvent, RebootRequest, RebootState, RebootStatus, REBOOT_METHOD,
};
use tokio::sync::Mutex;

use super::{
    accepted, clip, closed, load_status, now, refuse, report, wait_connected, HookError,
    PatternState, PatternsError, ANSWER_GRACE,
};
use crate::client::{DeviceClient, WeakClient};
use crate::types::MethodCall;

const KEY: &str = "reboot";

/// What the device does to reboot, for [`DeviceClient::enable_reboot`].
///
/// ```
/// use iot_dm_device::patterns::{HookError, RebootHooks};
/// use iot_dm_device::DeviceClient;
///
/// #[derive(Debug)]
/// struct Board;
///
/// #[async_trait::async_trait]
/// impl RebootHooks for Board {
///     async fn reboot(&self, _client: &DeviceClient) -> Result<(), HookError> {
///         // flush logs, then ask the OS to reboot; the process ends with it
///         Err(HookError::new("rebooting is not wired up on this board yet"))
///     }
/// }
/// # let _ = Board;
/// ```
#[async_trait::async_trait]
pub trait RebootHooks: Send + Sync + std::fmt::Debug + 'static {
    /// Reboots the device. On real hardware it does not return: the process ends, and the
    /// next one, enabling the pattern on the same [`PatternState`], reports the reboot as
    /// succeeded. Returning `Ok` means the device is already back (the pattern reports
    /// success once the client is connected); `Err` means it did not reboot (reported as
    /// failed with the message).
    async fn reboot(&self, client: &DeviceClient) -> Result<(), HookError>;
}

struct Reboot {
    client: WeakClient,
    hooks: Arc<dyn RebootHooks>,
    state: Arc<dyn PatternState>,
    status: Mutex<RebootStatus>,
}

impl DeviceClient {
    /// Handles the `reboot` method with `hooks`, keeping the pattern's state in `state`.
    ///
    /// The payload is a [`RebootRequest`] (`{"delayInSeconds": n, "notBefore": ts}`, both
    /// optional). The method is answered 202 with the `scheduled` status, 400 for a payload
    /// that does not parse, 409 while a reboot is scheduled or under way. At the scheduled
    /// time the status goes to `rebooting` and the hook runs; once the device is back it goes
    /// to `succeeded` with `lastReboot`, or to `failed` with the hook's reason.
    ///
    /// Enabling reads the saved state: a device that was rebooting reports the reboot as
    /// succeeded now, a reboot that was scheduled is scheduled again. The current status is
    /// reported either way.
    pub async fn enable_reboot(
        &self,
        hooks: impl RebootHooks,
        state: Arc<dyn PatternState>,
    ) -> Result<(), PatternsError> {
        let t = now(self);
        let mut status = load_status(&*state, KEY, RebootStatus::from_json)?
            .unwrap_or_else(|| RebootStatus::new(t));
        let mut resume = None;
        match status.state() {
            RebootState::Rebooting => {
                status.apply(RebootEvent::Complete, t)?;
                state.save(KEY, &status.to_json())?;
                tracing::info!("back from a reboot");
            }
            RebootState::Scheduled { at } => resume = Some(*at),
            _ => {}
        }
        let patch = status.to_patch();
        let pattern = Arc::new(Reboot {
            client: self.downgrade(),
            hooks: Arc::new(hooks),
            state,
            status: Mutex::new(status),
        });
        report(self, KEY, patch).await;
        let handler = pattern.clone();
        self.on_method(REBOOT_METHOD, move |call| {
            let pattern = handler.clone();
            async move { pattern.on_call(call).await }
        });
        if let Some(at) = resume {
            tokio::spawn(pattern.run(self.clone(), at));
        }
        Ok(())
    }
}

impl Reboot {
    async fn on_call(self: Arc<Self>, call: MethodCall) -> MethodResponse {
        let request = match RebootRequest::from_payload(&call.payload) {
            Ok(r) => r,
            Err(e) => return refuse(400, e.to_string()),
        };
        let Some(client) = self.client.upgrade() else {
            return refuse(503, "the client is closing");
        };
        let mut status = self.status.lock().await;
        match status.state() {
            RebootState::Scheduled { at } => {
                return refuse(409, format!("a reboot is already scheduled for {at}"))
            }
            RebootState::Rebooting => return refuse(409, "the device is rebooting"),
            _ => {}
        }
        let t = now(&client);
        let at = request.scheduled_for(t);
        let mut next = status.clone();
        if let Err(e) = next.apply(request.event(t), t) {
            return refuse(409, e.to_string());
        }
        if let Err(e) = self.state.save(KEY, &next.to_json()) {
            tracing::error!(error = %e, "cannot save the reboot schedule; refusing the reboot");
            return refuse(500, e.to_string());
        }
        *status = next;
        let body = status.to_json();
        let patch = status.to_patch();
        drop(status);
        tracing::info!(%at, "reboot scheduled");
        let pattern = self.clone();
        tokio::spawn(async move {
            report(&client, KEY, patch).await;
            pattern.run(client, at).await;
        });
        accepted(body)
    }

    /// Waits for `at`, then reboots through the hook; stops if the client closes.
    async fn run(self: Arc<Self>, client: DeviceClient, at: Timestamp) {
        tokio::select! {
            () = self.reboot_at(&client, at) => {}
            () = closed(&client) => tracing::debug!("client closed; the reboot stops with it"),
        }
    }

    async fn reboot_at(&self, client: &DeviceClient, at: Timestamp) {
        tokio::time::sleep(ANSWER_GRACE).await;
        loop {
            let t = now(client);
            if t >= at {
                break;
            }
            tokio::time::sleep(at.since(t)).await;
        }
        if !self.step(client, RebootEvent::Start).await {
            return;
        }
        tracing::info!("rebooting");
        let event = match self.hooks.reboot(client).await {
            Ok(()) => {
                if !wait_connected(client).await {
                    return;
                }
                tracing::info!("back from a reboot");
                RebootEvent::Complete
            }
            Err(e) => {
                tracing::warn!(error = %e, "the reboot failed");
                RebootEvent::Fail {
                    reason: clip(e.message()),
                }
            }
        };
        self.step(client, event).await;
    }

    /// Applies, saves and reports one transition; `false` if it does not apply.
    async fn step(&self, client: &DeviceClient, event: RebootEvent) -> bool {
        let mut status = self.status.lock().await;
        let mut next = status.clone();
        if let Err(e) = next.apply(event, now(client)) {
            tracing::warn!(error = %e, "reboot transition refused");
            return false;
        }
        if let Err(e) = self.state.save(KEY, &next.to_json()) {
            tracing::error!(error = %e, "cannot save the reboot state");
        }
        *status = next;
        let patch = status.to_patch();
        drop(status);
        report(client, KEY, patch).await;
        true
    }
}
