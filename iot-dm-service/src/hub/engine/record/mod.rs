//! What is stored per device, and how.
//!
//! A device record holds the identity, the twin, the cloud-to-device queue, and the sequence
//! number of the newest write it includes (see `persist`). The current format:
//!
//! - **Format 3** (binary): the byte [`BINARY_V3`], the sequence number, what only the
//!   registry's device holds (id, generation id, symmetric keys, lifecycle), the twin in its
//!   compact form ([`Twin::write_binary`], whose documents are stored as their in-memory
//!   buffers, metadata included, and which holds the [`DeviceIdentity`] the device shares),
//!   then the queue. Loading copies each document buffer once and parses nothing.
//!
//! Records of earlier formats are still read, and rewritten in the current one when the hub
//! opens the store (see `State::load`); they are read in [`legacy`]:
//!
//! - **Format 2** (binary, [`BINARY_V2`]): like format 3, but the identity fields were stored
//!   twice, once field by field with the device and once inside the twin. Format 3 stores
//!   the one identity record device and twin share once.
//! - **Format 1** (JSON): `{"device":..,"twin":..,"c2d":..,"seq":..}` with the twin in IoT
//!   Hub's shape, `$metadata` included. It always starts with `{`, which no binary record
//!   does.

mod legacy;

use std::sync::Arc;

use iot_dm_core::binary::{
    put_bytes, put_opt_str, put_str, put_time, put_u8, put_varint, BinaryError, Reader,
};
use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::DeviceLifecycle;
use iot_dm_core::twin::{ConnectionState, DeferredDocs, DeviceIdentity, Twin};

use super::entry::Entry;
use crate::hub::registry::{Device, SymmetricKeys};
use crate::hub::sessions::c2d::{Queue, Queued};

#[cfg(test)]
pub(crate) use legacy::encode_json;
pub(crate) use legacy::BINARY_V2;

/// The first byte of a record of the current format (3).
pub(crate) const BINARY_V3: u8 = 0x03;

/// Most queued messages or message properties a stored record may list (far above what the
/// hub queues, so only damage hits it).
const MAX_ITEMS: usize = 1 << 16;

/// The format a record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Format 1.
    Json,
    /// Format 2.
    BinaryV2,
    /// The current format (3).
    Binary,
}

impl Format {
    /// Whether records of this format are rewritten when the store opens.
    pub(crate) fn is_legacy(self) -> bool {
        self != Format::Binary
    }
}

/// The record of `entry` in the current format.
pub(crate) fn encode(entry: &Entry) -> Vec<u8> {
    let t = &entry.twin;
    let docs = t.tags().as_bytes().len()
        + t.desired().doc().as_bytes().len()
        + t.reported().doc().as_bytes().len();
    let mut out = Vec::with_capacity(docs + 384);
    put_u8(&mut out, BINARY_V3);
    put_varint(&mut out, entry.seq);
    put_device(&mut out, &entry.device);
    entry.twin.write_binary(&mut out);
    put_queue(&mut out, &entry.c2d);
    out
}

/// Reads a record of any format. Nothing is connected after a restart, so the device and
/// twin come back disconnected.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8]) -> Result<(Entry, Format), String> {
    let (mut e, format, docs) = decode_deferred(bytes)?;
    if let Some(docs) = docs {
        let twin = Arc::make_mut(&mut e.twin);
        iot_dm_core::twin::install_deferred(&mut [(twin, docs)]).map_err(|(_, e)| e.to_string())?;
    }
    Ok((e, format))
}

/// Reads a record of any format, except that a binary record's twin documents are left for
/// [`install_deferred`](iot_dm_core::twin::install_deferred) to make, a page of records at a
/// time (the twin holds empty ones until then); a JSON record comes back whole, with `None`.
/// The device and its twin share one identity. Nothing is connected after a restart, so they
/// come back disconnected.
pub(crate) fn decode_deferred(
    bytes: &[u8],
) -> Result<(Entry, Format, Option<DeferredDocs<'_>>), String> {
    let rest = bytes.get(1..).unwrap_or_default();
    let (mut e, format, docs) = match bytes.first() {
        Some(&BINARY_V3) => {
            let (e, docs) = decode_binary(rest).map_err(|e| e.to_string())?;
            (e, Format::Binary, Some(docs))
        }
        Some(&BINARY_V2) => {
            let (e, docs) = legacy::decode_binary_v2(rest).map_err(|e| e.to_string())?;
            (e, Format::BinaryV2, Some(docs))
        }
        Some(b'{') => (legacy::decode_json(bytes)?, Format::Json, None),
        Some(b) => return Err(format!("unknown record format (first byte {b:#04x})")),
        None => return Err("empty record".into()),
    };
    if e.device.identity.connection_state != ConnectionState::Disconnected {
        e.device.identity_mut().connection_state = ConnectionState::Disconnected;
    }
    e.share_identity();
    Ok((e, format, docs))
}

/// The entry of a device and its twin read from a record; the device's identity is the one
/// `device` holds (the twin's is replaced by it).
fn entry(device: Device, twin: Twin, c2d: Queue, seq: u64) -> Result<Entry, BinaryError> {
    if twin.device_id != device.device_id {
        return Err(BinaryError::invalid(
            "twin.deviceId",
            format!(
                "the twin of {} names device {}",
                device.device_id, twin.device_id
            ),
        ));
    }
    if device.identity.etag.is_none() {
        return Err(BinaryError::invalid(
            "identity.etag",
            "a device's identity has an ETag",
        ));
    }
    Ok(Entry {
        device,
        twin: Arc::new(twin),
        c2d: c2d.into(),
        seq,
        deleted: false,
    })
}

fn decode_binary(bytes: &[u8]) -> Result<(Entry, DeferredDocs<'_>), BinaryError> {
    let mut r = Reader::new(bytes);
    let seq = r.varint("seq")?;
    let device_id = DeviceId::new(r.str("device.deviceId")?)
        .map_err(|e| BinaryError::invalid("device.deviceId", e.to_string()))?;
    let generation_id = r.str("device.generationId")?.to_string();
    let symmetric_key = SymmetricKeys {
        primary_key: r.opt_string("device.authentication.symmetricKey")?,
        secondary_key: r.opt_string("device.authentication.symmetricKey")?,
    };
    let lifecycle = DeviceLifecycle::read_binary(&mut r)?;
    let (mut twin, docs) = Twin::read_binary_deferred(&mut r)?;
    let c2d = read_queue(&mut r)?;
    r.finish("record")?;
    // the identity is stored once, in the twin: the device takes it (and shares it back)
    let identity = std::mem::replace(&mut twin.identity, DeviceIdentity::shared_default());
    let device = Device {
        device_id,
        generation_id,
        identity,
        symmetric_key,
        lifecycle,
    };
    Ok((entry(device, twin, c2d, seq)?, docs))
}

/// What only the device holds; the identity is written with the twin.
fn put_device(out: &mut Vec<u8>, d: &Device) {
    put_str(out, d.device_id.as_str());
    put_str(out, &d.generation_id);
    put_opt_str(out, d.symmetric_key.primary_key.as_deref());
    put_opt_str(out, d.symmetric_key.secondary_key.as_deref());
    d.lifecycle.write_binary(out);
}

fn put_queue(out: &mut Vec<u8>, q: &Queue) {
    put_varint(out, q.next_seq);
    put_varint(out, q.messages.len() as u64);
    for m in &q.messages {
        put_varint(out, m.seq);
        put_str(out, &m.message_id);
        put_bytes(out, &m.body);
        put_varint(out, m.properties.len() as u64);
        for (k, v) in &m.properties {
            put_str(out, k);
            put_opt_str(out, v.as_deref());
        }
        put_time(out, m.expiry);
    }
}

fn read_queue(r: &mut Reader<'_>) -> Result<Queue, BinaryError> {
    let next_seq = r.varint("c2d.nextSeq")?;
    let n = r.len("c2d.messages", MAX_ITEMS)?;
    let mut messages = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let seq = r.varint("c2d.seq")?;
        let message_id = r.str("c2d.messageId")?.to_string();
        let body = r.bytes("c2d.body")?.to_vec();
        let np = r.len("c2d.properties", MAX_ITEMS)?;
        let mut properties = Vec::with_capacity(np.min(64));
        for _ in 0..np {
            properties.push((
                r.str("c2d.properties")?.to_string(),
                r.opt_string("c2d.properties")?,
            ));
        }
        let expiry = r.time("c2d.expiry")?;
        messages.push(Queued {
            seq,
            message_id,
            body,
            properties,
            expiry,
        });
    }
    Ok(Queue { next_seq, messages })
}

#[cfg(test)]
mod tests;
