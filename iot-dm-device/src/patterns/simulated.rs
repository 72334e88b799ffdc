//! [`SimulatedDevice`]: every pattern's hooks, in memory, with failure injection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::{ConfigurationHooks, FactoryResetHooks, HookError, RebootHooks, Rejection};
use crate::client::DeviceClient;

#[derive(Debug, Default)]
struct Sim {
    firmware_version: String,
    /// The version an applied image boots into on the next reboot.
    staged: Option<String>,
    settings: BTreeMap<String, Value>,
    reboots: u32,
    resets: u32,
    fail_reboot: Option<String>,
    fail_reset: Option<String>,
    hang_on_restart: bool,
    apply_delay: Duration,
    rejections: BTreeMap<String, Rejection>,
    fail_firmware_apply: Option<String>,
    corrupt_download: bool,
    roll_back: bool,
}

/// A device that exists only in memory: it implements [`RebootHooks`],
/// [`FactoryResetHooks`], [`ConfigurationHooks`] and (feature `firmware`) `FirmwareHooks`,
/// for examples and tests.
///
/// A reboot or factory reset drops the client's connection and opens it again
/// ([`DeviceClient::reconnect`]); a reset also forgets the applied settings (but those named
/// `network…` when it keeps the network configuration). Applied firmware
/// is staged and runs after the reboot. Clones share one device, so a test can turn the
/// knobs while the client runs and read what happened.
///
/// ```
/// use iot_dm_device::patterns::{ConfigurationHooks, Rejection, SimulatedDevice};
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let device = SimulatedDevice::new("1.0.0");
/// device.reject("mode", Rejection::new(422, "mode is read-only on this model"));
/// assert_eq!(device.apply("fan", &json!(3)).await, Ok(()));
/// assert_eq!(device.setting("fan"), Some(json!(3)));
/// assert_eq!(device.apply("mode", &json!("eco")).await.unwrap_err().code(), 422);
/// assert_eq!(device.firmware_version(), "1.0.0");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SimulatedDevice {
    sim: Arc<Mutex<Sim>>,
}

impl SimulatedDevice {
    /// A device running firmware `version`, with no settings and no failures injected.
    pub fn new(version: impl Into<String>) -> SimulatedDevice {
        SimulatedDevice {
            sim: Arc::new(Mutex::new(Sim {
                firmware_version: version.into(),
                ..Sim::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        // Nothing panics while holding the lock.
        self.sim.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The firmware version running.
    pub fn firmware_version(&self) -> String {
        self.lock().firmware_version.clone()
    }

    /// A setting as last applied.
    pub fn setting(&self, name: &str) -> Option<Value> {
        self.lock().settings.get(name).cloned()
    }

    /// How many reboots (and factory resets, which reboot too) completed.
    pub fn reboots(&self) -> u32 {
        self.lock().reboots
    }

    /// How many factory resets completed.
    pub fn resets(&self) -> u32 {
        self.lock().resets
    }

    /// Makes reboots fail with `reason` (`None`: they succeed).
    pub fn fail_reboot(&self, reason: Option<&str>) {
        self.lock().fail_reboot = reason.map(str::to_string);
    }

    /// Makes factory resets fail with `reason` (`None`: they succeed).
    pub fn fail_factory_reset(&self, reason: Option<&str>) {
        self.lock().fail_reset = reason.map(str::to_string);
    }

    /// Makes reboots and resets never return, as when the process really goes down; drop the
    /// client and build a new one on the same state store to "restart".
    pub fn hang_on_restart(&self, hang: bool) {
        self.lock().hang_on_restart = hang;
    }

    /// How long applying a desired property takes.
    pub fn apply_delay(&self, delay: Duration) {
        self.lock().apply_delay = delay;
    }

    /// Rejects every value of desired property `name` with `rejection`.
    pub fn reject(&self, name: &str, rejection: Rejection) {
        self.lock().rejections.insert(name.to_string(), rejection);
    }

    /// Makes installing firmware fail with `reason` (`None`: it succeeds).
    pub fn fail_firmware_apply(&self, reason: Option<&str>) {
        self.lock().fail_firmware_apply = reason.map(str::to_string);
    }

    /// Flips a byte of every downloaded image before it is verified.
    pub fn corrupt_download(&self, corrupt: bool) {
        self.lock().corrupt_download = corrupt;
    }

    /// Makes the device come back from a firmware reboot on the old version.
    pub fn roll_back_on_reboot(&self, roll_back: bool) {
        self.lock().roll_back = roll_back;
    }

    /// Drops the connection and waits until it is open again.
    async fn restart(&self, client: &DeviceClient) -> Result<(), HookError> {
        if self.lock().hang_on_restart {
            std::future::pending::<()>().await;
        }
        client
            .reconnect()
            .await
            .map_err(|e| HookError::new(format!("the connection did not come back: {e}")))?;
        self.power_cycle();
        Ok(())
    }

    /// What booting does to the simulated device: it counts a reboot, and staged firmware
    /// starts running (unless [`roll_back_on_reboot`](Self::roll_back_on_reboot)). The hooks
    /// call it on a restart; a test calls it when it "restarts" a device whose hook hung.
    pub fn power_cycle(&self) {
        let mut sim = self.lock();
        sim.reboots += 1;
        if let Some(version) = sim.staged.take() {
            if !sim.roll_back {
                sim.firmware_version = version;
            }
        }
    }
}

#[async_trait::async_trait]
impl RebootHooks for SimulatedDevice {
    async fn reboot(&self, client: &DeviceClient) -> Result<(), HookError> {
        if let Some(reason) = self.lock().fail_reboot.clone() {
            return Err(HookError::new(reason));
        }
        self.restart(client).await
    }
}

#[async_trait::async_trait]
impl FactoryResetHooks for SimulatedDevice {
    async fn factory_reset(
        &self,
        client: &DeviceClient,
        keep_network_config: bool,
    ) -> Result<(), HookError> {
        {
            let mut sim = self.lock();
            if let Some(reason) = sim.fail_reset.clone() {
                return Err(HookError::new(reason));
            }
            sim.settings
                .retain(|name, _| keep_network_config && name.starts_with("network"));
        }
        self.restart(client).await?;
        self.lock().resets += 1;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ConfigurationHooks for SimulatedDevice {
    async fn apply(&self, name: &str, value: &Value) -> Result<(), Rejection> {
        let delay = self.lock().apply_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut sim = self.lock();
        if let Some(r) = sim.rejections.get(name) {
            return Err(r.clone());
        }
        sim.settings.insert(name.to_string(), value.clone());
        Ok(())
    }
}

#[cfg(feature = "firmware")]
#[async_trait::async_trait]
impl super::FirmwareHooks for SimulatedDevice {
    fn current_version(&self) -> String {
        self.firmware_version()
    }

    async fn downloaded(&self, image: &std::path::Path) -> Result<(), HookError> {
        if !self.lock().corrupt_download {
            return Ok(());
        }
        let mut bytes = tokio::fs::read(image)
            .await
            .map_err(|e| HookError::new(e.to_string()))?;
        if let Some(b) = bytes.first_mut() {
            *b ^= 0xff;
        }
        tokio::fs::write(image, bytes)
            .await
            .map_err(|e| HookError::new(e.to_string()))
    }

    async fn apply(
        &self,
        _image: &std::path::Path,
        request: &iot_dm_core::patterns::FirmwareUpdateRequest,
    ) -> Result<(), HookError> {
        let mut sim = self.lock();
        if let Some(reason) = sim.fail_firmware_apply.clone() {
            return Err(HookError::new(reason));
        }
        sim.staged = Some(request.target_version().to_string());
        Ok(())
    }

    async fn reboot(&self, client: &DeviceClient) -> Result<(), HookError> {
        self.restart(client).await
    }
}
