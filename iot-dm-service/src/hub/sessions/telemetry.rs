//! Device-to-cloud messages (telemetry).

use std::sync::Arc;

use bytes::Bytes;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::wire::PropertyBag;

use crate::hub::Hub;

/// A device-to-cloud message.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The sending device.
    pub device_id: DeviceId,
    /// System and application properties.
    pub properties: PropertyBag,
    /// The body.
    pub body: Bytes,
    /// When the hub received it.
    pub received: Timestamp,
}

impl Hub {
    pub(crate) fn publish_telemetry(&self, id: &DeviceId, properties: PropertyBag, body: Bytes) {
        self.record(crate::hub::stream::telemetry_event(id, &properties, &body));
        let _ = self.inner.telemetry.send(Arc::new(Telemetry {
            device_id: id.clone(),
            properties,
            body,
            received: self.now(),
        }));
    }

    /// Subscribes to device-to-cloud messages (a subscriber that falls more than the channel's
    /// capacity behind misses messages and is told how many).
    pub fn telemetry(&self) -> tokio::sync::broadcast::Receiver<Arc<Telemetry>> {
        self.inner.telemetry.subscribe()
    }
}
