//! Records of the formats before the current one, read once when the hub opens a store and
//! rewritten in the current format (see the [parent module](super)).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use iot_dm_core::binary::{BinaryError, Reader};
use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::DeviceLifecycle;
use iot_dm_core::twin::{
    AuthenticationType, Capabilities, ConnectionState, DeferredDocs, DeviceIdentity, DeviceStatus,
    ETag, IdentityLayout, Twin, X509Thumbprint,
};

use super::{entry, read_queue};
use crate::hub::engine::entry::Entry;
use crate::hub::registry::{Device, SymmetricKeys};
use crate::hub::sessions::c2d::Queue;

/// The first byte of a record of format 2.
pub(crate) const BINARY_V2: u8 = 0x02;

/// The JSON record of format 1.
#[derive(Serialize, Deserialize)]
struct JsonRecord<'a> {
    device: Cow<'a, Device>,
    twin: Cow<'a, Twin>,
    #[serde(default)]
    c2d: Cow<'a, Queue>,
    #[serde(default)]
    seq: u64,
}

/// The record of `entry` in format 1 (JSON), as earlier versions wrote it; for tests of the
/// upgrade path.
#[cfg(test)]
pub(crate) fn encode_json(entry: &Entry) -> Vec<u8> {
    serde_json::to_vec(&JsonRecord {
        device: Cow::Borrowed(&entry.device),
        twin: Cow::Borrowed(&*entry.twin),
        c2d: Cow::Borrowed(&entry.c2d),
        seq: entry.seq,
    })
    .unwrap_or_default()
}

/// Reads a record of format 1. The device's identity fields are the ones that count (the
/// twin's copy is replaced by them).
pub(super) fn decode_json(bytes: &[u8]) -> Result<Entry, String> {
    let r: JsonRecord<'static> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(Entry {
        device: r.device.into_owned(),
        twin: Arc::new(r.twin.into_owned()),
        c2d: r.c2d.into_owned().into(),
        seq: r.seq,
        deleted: false,
    })
}

/// Reads a record of format 2 (after its first byte): the device with its identity field by
/// field, then the twin in the first twin layout with its own copy of the identity, which is
/// replaced by the device's.
pub(super) fn decode_binary_v2(bytes: &[u8]) -> Result<(Entry, DeferredDocs<'_>), BinaryError> {
    let mut r = Reader::new(bytes);
    let seq = r.varint("seq")?;
    let device = read_device_v2(&mut r)?;
    let (twin, docs) = Twin::read_binary_deferred_in(&mut r, IdentityLayout::V1)?;
    let c2d = read_queue(&mut r)?;
    r.finish("record")?;
    Ok((entry(device, twin, c2d, seq)?, docs))
}

fn read_device_v2(r: &mut Reader<'_>) -> Result<Device, BinaryError> {
    let device_id = DeviceId::new(r.str("device.deviceId")?)
        .map_err(|e| BinaryError::invalid("device.deviceId", e.to_string()))?;
    let generation_id = r.str("device.generationId")?.to_string();
    let etag = Some(ETag::new(r.str("device.etag")?));
    let status = DeviceStatus::read_binary(r, "device.status")?;
    let status_reason = r.opt_string("device.statusReason")?;
    let status_update_time = r.opt_time("device.statusUpdatedTime")?;
    let connection_state = if r.bool("device.connectionState")? {
        ConnectionState::Connected
    } else {
        ConnectionState::Disconnected
    };
    let connection_state_updated_time = r.opt_time("device.connectionStateUpdatedTime")?;
    let last_activity_time = r.opt_time("device.lastActivityTime")?;
    let cloud_to_device_message_count = r.varint("device.cloudToDeviceMessageCount")?;
    let authentication_type = AuthenticationType::read_binary(r, "device.authentication.type")?;
    let symmetric_key = SymmetricKeys {
        primary_key: r.opt_string("device.authentication.symmetricKey")?,
        secondary_key: r.opt_string("device.authentication.symmetricKey")?,
    };
    let x509_thumbprint = X509Thumbprint {
        primary_thumbprint: r.opt_string("device.authentication.x509Thumbprint")?,
        secondary_thumbprint: r.opt_string("device.authentication.x509Thumbprint")?,
    };
    let capabilities = Capabilities {
        iot_edge: r.bool("device.capabilities.iotEdge")?,
    };
    Ok(Device {
        device_id,
        generation_id,
        identity: Arc::new(DeviceIdentity {
            etag,
            status,
            status_reason,
            status_update_time,
            connection_state,
            connection_state_updated_time,
            last_activity_time,
            cloud_to_device_message_count,
            authentication_type,
            x509_thumbprint,
            capabilities,
        }),
        symmetric_key,
        lifecycle: DeviceLifecycle::read_binary(r)?,
    })
}
