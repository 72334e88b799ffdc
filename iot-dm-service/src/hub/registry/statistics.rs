//! Registry and service statistics (IoT Hub's registry manager serves both).

use serde::{Deserialize, Serialize};

use crate::hub::engine;
use crate::hub::Hub;

/// Device counts of the identity registry (`GET /statistics/devices`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatistics {
    /// Every identity: planned, enabled, disabled and retired.
    pub total_device_count: u64,
    /// Enabled identities.
    pub enabled_device_count: u64,
    /// Disabled identities (planned and retired devices count as disabled, as they cannot
    /// connect).
    pub disabled_device_count: u64,
}

/// Live figures of the service (`GET /statistics/service`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatistics {
    /// Devices with a live session.
    pub connected_device_count: u64,
}

impl Hub {
    /// Device counts of the registry: every identity, the enabled ones, and the rest (planned,
    /// disabled and retired devices cannot connect, so they count as disabled).
    pub fn registry_statistics(&self) -> RegistryStatistics {
        let mut stats = RegistryStatistics::default();
        for e in self.inner.state.devices.iter() {
            let g = engine::lock(e.value());
            if g.deleted {
                continue;
            }
            stats.total_device_count += 1;
            if g.device.identity.status == iot_dm_core::twin::DeviceStatus::Enabled {
                stats.enabled_device_count += 1;
            } else {
                stats.disabled_device_count += 1;
            }
        }
        stats
    }

    /// Live figures: the devices connected now.
    pub fn service_statistics(&self) -> ServiceStatistics {
        ServiceStatistics {
            connected_device_count: self.connected_devices() as u64,
        }
    }
}
