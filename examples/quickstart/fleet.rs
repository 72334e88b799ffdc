//! The quick start's fleet: who each device is (tags, time zone, battery, an injected fault),
//! provisioning in bulk, and a simulated device per identity connected over MQTT/TLS with
//! every device-management pattern of the device client enabled.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use iot_dm::device::patterns::{FirmwareOptions, MemoryPatternState, SimulatedDevice};
use iot_dm::device::{DeviceClient, DeviceCredentials, MqttTransport};
use iot_dm::service::api::prelude::*;
use iot_dm::service::hub::ImportDevice;

use crate::hub::{RunningHub, HOST};
use crate::report::bar;
use crate::Result;

/// Regions and the time zone of their devices.
pub const REGIONS: [(&str, &str); 3] = [
    ("eu-west", "Europe/London"),
    ("us-east", "America/New_York"),
    ("ap-east", "Asia/Tokyo"),
];
/// Gateways (which take configuration) and sensors (which take firmware updates).
pub const MODELS: [&str; 2] = ["GW-500", "TH-200"];
/// The firmware every device starts on.
pub const FACTORY_FIRMWARE: &str = "1.4.0";

/// A fault the simulated device injects into its next firmware update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The image is corrupted on the way: the SHA-256 check fails.
    CorruptDownload,
    /// Installing the image fails.
    FailingApply,
}

/// One device of the fleet.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub region: &'static str,
    pub zone: &'static str,
    pub model: &'static str,
    pub battery: u64,
    pub fault: Option<Fault>,
}

impl Profile {
    /// The `i`-th device: regions and models interleaved, batteries spread from 12 to 100 %,
    /// and one sensor in twenty with a firmware fault.
    pub fn nth(i: usize) -> Profile {
        let (region, zone) = REGIONS[i % REGIONS.len()];
        let fault = match i % 40 {
            7 => Some(Fault::CorruptDownload),
            21 => Some(Fault::FailingApply),
            _ => None,
        };
        Profile {
            id: format!("dev-{i:05}"),
            region,
            zone,
            model: MODELS[(i / 3) % MODELS.len()],
            battery: 12 + (i as u64 * 37) % 89,
            fault,
        }
    }

    fn tags(&self) -> Value {
        json!({
            "region": self.region,
            "model": self.model,
            "location": {"timezone": self.zone},
        })
    }
}

/// Plans and provisions the fleet in bulk calls of 100 devices (IoT Hub's bulk limit):
/// identities with generated keys and twins with their tags.
pub async fn provision(hub: &RunningHub, fleet: &[Profile]) -> Result<()> {
    let pb = bar(fleet.len(), "provision");
    for chunk in fleet.chunks(100) {
        let devices = chunk
            .iter()
            .map(|p| {
                serde_json::from_value::<ImportDevice>(
                    json!({"id": p.id, "importMode": "create", "tags": p.tags()}),
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let result = hub.hub.bulk(devices).await?;
        if !result.is_successful {
            return Err(format!("bulk provisioning failed: {:?}", result.errors).into());
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    Ok(())
}

/// A connected simulated device.
pub struct Device {
    pub profile: Profile,
    pub client: DeviceClient,
}

/// The device's credentials, as its connection string would give them.
pub fn credentials(hub: &RunningHub, id: &str) -> Result<DeviceCredentials> {
    let device = hub.hub.get_device(id)?;
    let key = device
        .symmetric_key
        .primary_key
        .ok_or_else(|| format!("{id} has no symmetric key"))?;
    Ok(DeviceCredentials::symmetric_key(HOST, id.parse()?, &key)?)
}

/// Opens `id`'s MQTT/TLS session to the hub.
pub async fn connect(hub: &RunningHub, id: &str) -> Result<DeviceClient> {
    let transport = MqttTransport::builder(HOST)
        .port(hub.mqtt_port)
        .ca_pem(hub.ca_pem.clone())
        .build()?;
    Ok(DeviceClient::builder(credentials(hub, id)?, transport)
        .connect_timeout(Duration::from_secs(20))
        .connect()
        .await?)
}

/// Connects one device, enables its patterns and reports its battery and firmware.
async fn bring_up(hub: Arc<RunningHub>, profile: Profile, downloads: &Path) -> Result<Device> {
    let client = connect(&hub, &profile.id).await?;
    let sim = SimulatedDevice::new(FACTORY_FIRMWARE);
    match profile.fault {
        Some(Fault::CorruptDownload) => sim.corrupt_download(true),
        Some(Fault::FailingApply) => sim.fail_firmware_apply(Some("flash write failed")),
        None => {}
    }
    let state = Arc::new(MemoryPatternState::new());
    client.enable_reboot(sim.clone(), state.clone()).await?;
    client
        .enable_factory_reset(sim.clone(), state.clone())
        .await?;
    client.enable_configuration(sim.clone()).await?;
    let firmware = FirmwareOptions::new(downloads.join(&profile.id))
        .trusted_ca_pem(&hub.ca_pem)?
        .progress_interval(Duration::from_millis(250));
    client.enable_firmware(sim, state, firmware).await?;
    client
        .update_reported(json!({"battery": profile.battery}))
        .await?;
    Ok(Device { profile, client })
}

/// Connects the whole fleet, 64 handshakes at a time, in the fleet's order.
pub async fn connect_all(
    hub: &Arc<RunningHub>,
    fleet: &[Profile],
    downloads: &Path,
) -> Result<Vec<Device>> {
    let pb = bar(fleet.len(), "connect");
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = JoinSet::new();
    for (i, profile) in fleet.iter().cloned().enumerate() {
        let (hub, gate, downloads) = (hub.clone(), gate.clone(), downloads.to_path_buf());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let device = bring_up(hub, profile, &downloads).await;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((i, device))
        });
    }
    let mut devices: Vec<Option<Device>> = fleet.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, device) = joined?.map_err(|e| e.to_string())?;
        devices[i] = Some(device.map_err(|e| format!("{}: {e}", fleet[i].id))?);
        pb.inc(1);
    }
    pb.finish();
    Ok(devices.into_iter().flatten().collect())
}

/// Closes every device's session.
pub async fn close_all(devices: &[Device]) {
    for d in devices {
        d.client.close().await;
    }
}
