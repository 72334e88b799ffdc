//! What is stored per device, and how.
//!
//! A device record holds the identity, the twin, the cloud-to-device queue, and the sequence
//! number of the newest write it includes (see `persist`). Two formats:
//!
//! - **Binary** (written since format 2): the byte [`BINARY_V2`], the sequence number, the
//!   identity field by field, the twin in its compact form ([`Twin::write_binary`], whose
//!   documents are stored as their in-memory buffers, metadata included), then the queue.
//!   Loading copies each document buffer once and parses nothing, and a record is a third
//!   of the JSON one.
//! - **JSON** (format 1, from earlier versions): `{"device":..,"twin":..,"c2d":..,"seq":..}`
//!   with the twin in IoT Hub's shape, `$metadata` included. It always starts with `{`, which
//!   no binary record does. Such records are still read, and rewritten in binary when the hub
//!   opens the store (see `State::load`).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use iot_dm_core::binary::{
    put_bytes, put_opt_str, put_opt_time, put_str, put_time, put_u8, put_varint, BinaryError,
    Reader,
};
use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::DeviceLifecycle;
use iot_dm_core::twin::{
    AuthenticationType, Capabilities, ConnectionState, DeferredDocs, DeviceStatus, ETag, Twin,
};

use super::entry::Entry;
use crate::hub::registry::{Authentication, Device, SymmetricKeys, Thumbprints};
use crate::hub::sessions::c2d::{Queue, Queued};

/// The first byte of a binary record (format 2).
pub(crate) const BINARY_V2: u8 = 0x02;

/// Most queued messages or message properties a stored record may list (far above what the
/// hub queues, so only damage hits it).
const MAX_ITEMS: usize = 1 << 16;

/// The format a record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Format 1.
    Json,
    /// Format 2.
    Binary,
}

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

/// The record of `entry` in the current (binary) format.
pub(crate) fn encode(entry: &Entry) -> Vec<u8> {
    let t = &entry.twin;
    let docs = t.tags().as_bytes().len()
        + t.desired().doc().as_bytes().len()
        + t.reported().doc().as_bytes().len();
    let mut out = Vec::with_capacity(docs + 384);
    put_u8(&mut out, BINARY_V2);
    put_varint(&mut out, entry.seq);
    put_device(&mut out, &entry.device);
    entry.twin.write_binary(&mut out);
    put_queue(&mut out, &entry.c2d);
    out
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

/// Reads a record of either format. Nothing is connected after a restart, so the device and
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

/// Reads a record of either format, except that a binary record's twin documents are left
/// for [`install_deferred`](iot_dm_core::twin::install_deferred) to make, a page of records at a time (the twin holds empty ones
/// until then); a JSON record comes back whole, with `None`. Nothing is connected after a
/// restart, so the device and twin come back disconnected.
pub(crate) fn decode_deferred(
    bytes: &[u8],
) -> Result<(Entry, Format, Option<DeferredDocs<'_>>), String> {
    let (mut e, format, docs) = match bytes.first() {
        Some(&BINARY_V2) => {
            let (e, docs) =
                decode_binary(bytes.get(1..).unwrap_or_default()).map_err(|e| e.to_string())?;
            (e, Format::Binary, Some(docs))
        }
        Some(b'{') => {
            let r: JsonRecord<'static> =
                serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            let e = Entry {
                device: r.device.into_owned(),
                twin: Arc::new(r.twin.into_owned()),
                c2d: r.c2d.into_owned().into(),
                seq: r.seq,
                deleted: false,
            };
            (e, Format::Json, None)
        }
        Some(b) => return Err(format!("unknown record format (first byte {b:#04x})")),
        None => return Err("empty record".into()),
    };
    e.device.connection_state = ConnectionState::Disconnected;
    e.sync_twin();
    Ok((e, format, docs))
}

fn decode_binary(bytes: &[u8]) -> Result<(Entry, DeferredDocs<'_>), BinaryError> {
    let mut r = Reader::new(bytes);
    let seq = r.varint("seq")?;
    let device = read_device(&mut r)?;
    let (twin, docs) = Twin::read_binary_deferred(&mut r)?;
    if twin.device_id != device.device_id {
        return Err(BinaryError::invalid(
            "twin.deviceId",
            format!(
                "the twin of {} names device {}",
                device.device_id, twin.device_id
            ),
        ));
    }
    let c2d = read_queue(&mut r)?;
    r.finish("record")?;
    let entry = Entry {
        device,
        twin: Arc::new(twin),
        c2d: c2d.into(),
        seq,
        deleted: false,
    };
    Ok((entry, docs))
}

fn put_device(out: &mut Vec<u8>, d: &Device) {
    put_str(out, d.device_id.as_str());
    put_str(out, &d.generation_id);
    put_str(out, d.etag.as_str());
    d.status.write_binary(out);
    put_opt_str(out, d.status_reason.as_deref());
    put_opt_time(out, d.status_updated_time);
    put_u8(
        out,
        u8::from(d.connection_state == ConnectionState::Connected),
    );
    put_opt_time(out, d.connection_state_updated_time);
    put_opt_time(out, d.last_activity_time);
    put_varint(out, d.cloud_to_device_message_count);
    let a = &d.authentication;
    a.kind.write_binary(out);
    put_opt_str(out, a.symmetric_key.primary_key.as_deref());
    put_opt_str(out, a.symmetric_key.secondary_key.as_deref());
    put_opt_str(out, a.x509_thumbprint.primary_thumbprint.as_deref());
    put_opt_str(out, a.x509_thumbprint.secondary_thumbprint.as_deref());
    put_u8(out, u8::from(d.capabilities.iot_edge));
    d.lifecycle.write_binary(out);
}

fn read_device(r: &mut Reader<'_>) -> Result<Device, BinaryError> {
    let device_id = DeviceId::new(r.str("device.deviceId")?)
        .map_err(|e| BinaryError::invalid("device.deviceId", e.to_string()))?;
    Ok(Device {
        device_id,
        generation_id: r.str("device.generationId")?.to_string(),
        etag: ETag::new(r.str("device.etag")?),
        status: DeviceStatus::read_binary(r, "device.status")?,
        status_reason: r.opt_string("device.statusReason")?,
        status_updated_time: r.opt_time("device.statusUpdatedTime")?,
        connection_state: if r.bool("device.connectionState")? {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        },
        connection_state_updated_time: r.opt_time("device.connectionStateUpdatedTime")?,
        last_activity_time: r.opt_time("device.lastActivityTime")?,
        cloud_to_device_message_count: r.varint("device.cloudToDeviceMessageCount")?,
        authentication: {
            let kind = AuthenticationType::read_binary(r, "device.authentication.type")?;
            Authentication {
                symmetric_key: SymmetricKeys {
                    primary_key: r.opt_string("device.authentication.symmetricKey")?,
                    secondary_key: r.opt_string("device.authentication.symmetricKey")?,
                },
                x509_thumbprint: Thumbprints {
                    primary_thumbprint: r.opt_string("device.authentication.x509Thumbprint")?,
                    secondary_thumbprint: r.opt_string("device.authentication.x509Thumbprint")?,
                },
                kind,
            }
        },
        capabilities: Capabilities {
            iot_edge: r.bool("device.capabilities.iotEdge")?,
        },
        lifecycle: DeviceLifecycle::read_binary(r)?,
    })
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
mod tests {
    use super::*;
    use iot_dm_core::clock::Timestamp;
    use serde_json::json;

    fn entry() -> Entry {
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let id: DeviceId = "pump-1".parse().unwrap();
        let mut lifecycle = DeviceLifecycle::new(now);
        lifecycle
            .apply(
                iot_dm_core::lifecycle::LifecycleEvent::Provision { enabled: true },
                now,
            )
            .unwrap();
        let mut device = Device::new(
            id.clone(),
            Authentication::sas("a".repeat(44), "b".repeat(44)),
            lifecycle,
            now,
        )
        .unwrap();
        device.status_reason = Some("why".into());
        device.connection_state_updated_time = Some(now);
        device.last_activity_time = Some(now);
        device.cloud_to_device_message_count = 1;
        let mut twin = Twin::created_at(id, now);
        let limits = Default::default();
        twin.patch_tags(&json!({"site": "north"}), None, &limits)
            .unwrap();
        twin.patch_reported(&json!({"fw": {"v": "1.0.0"}}), now, &limits)
            .unwrap();
        let mut e = Entry {
            device,
            twin: Arc::new(twin),
            c2d: Queue {
                next_seq: 2,
                messages: vec![Queued {
                    seq: 1,
                    message_id: "m1".into(),
                    body: b"\x00hello".to_vec(),
                    properties: vec![("k".into(), Some("v".into())), ("flag".into(), None)],
                    expiry: now,
                }],
            }
            .into(),
            seq: 42,
            deleted: false,
        };
        e.sync_twin();
        e
    }

    fn same(a: &Entry, b: &Entry) {
        assert_eq!(a.device, b.device);
        assert_eq!(a.twin, b.twin);
        assert_eq!(a.c2d, b.c2d);
        assert_eq!(a.seq, b.seq);
    }

    #[test]
    fn both_formats_read_back_the_same_entry() {
        let e = entry();
        let binary = encode(&e);
        let json = encode_json(&e);
        assert_eq!(binary.first(), Some(&BINARY_V2));
        assert!(
            binary.len() * 2 < json.len(),
            "{} vs {}",
            binary.len(),
            json.len()
        );
        let (b, fb) = decode(&binary).unwrap();
        let (j, fj) = decode(&json).unwrap();
        assert_eq!((fb, fj), (Format::Binary, Format::Json));
        same(&b, &e);
        same(&j, &e);
    }

    #[test]
    fn damaged_records_are_errors() {
        let binary = encode(&entry());
        for cut in 0..binary.len() {
            assert!(decode(&binary[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = binary.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("unexpected bytes"));
        assert!(decode(b"\x07rest")
            .unwrap_err()
            .contains("unknown record format"));
        // a twin that belongs to another device
        let mut other = entry();
        Arc::make_mut(&mut other.twin).device_id = "pump-2".parse().unwrap();
        assert!(decode(&encode(&other))
            .unwrap_err()
            .contains("names device"));
    }

    #[tokio::test]
    async fn json_records_load_and_are_upgraded_on_open() {
        use crate::hub::{CloudMessage, DeviceSpec, Hub};
        use crate::store::{MemoryStore, Op, Store, Table};
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let hub = Hub::builder().store(store.clone()).open().await.unwrap();
        // more than one page of the loader and one batch of the upgrade
        let n = 2_100;
        for i in 0..n {
            let id = format!("dev-{i:05}");
            hub.create_device(
                DeviceSpec::new(id.parse().unwrap()).tags(json!({"n": i, "site": "north"})),
            )
            .await
            .unwrap();
        }
        hub.patch_reported("dev-00007", &json!({"fw": "2.0"}))
            .await
            .unwrap();
        hub.send_c2d("dev-00008", CloudMessage::new("hi"))
            .await
            .unwrap();
        hub.checkpoint().await.unwrap();
        let before: Vec<_> = ["dev-00000", "dev-00007", "dev-00008", "dev-02099"]
            .iter()
            .map(|id| {
                (
                    hub.get_device(id).unwrap(),
                    hub.get_twin(id).unwrap().to_json(),
                )
            })
            .collect();
        drop(hub);

        // what an earlier version would have written
        let records = store.scan(Table::Devices, None, usize::MAX).await.unwrap();
        assert_eq!(records.len(), n);
        let ops = records
            .iter()
            .map(|(k, v)| {
                Op::put(
                    Table::Devices,
                    k.clone(),
                    encode_json(&decode(v).unwrap().0),
                )
            })
            .collect();
        store.commit(ops).await.unwrap();
        let first = store
            .get(Table::Devices, b"dev-00000")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.first(), Some(&b'{'));

        let hub = Hub::builder().store(store.clone()).open().await.unwrap();
        assert_eq!(hub.device_count(), n);
        for (device, twin) in &before {
            let id = device.device_id.as_str();
            assert_eq!(&hub.get_device(id).unwrap(), device);
            assert_eq!(&hub.get_twin(id).unwrap().to_json(), twin);
        }
        assert_eq!(
            hub.query("SELECT COUNT() AS n FROM devices WHERE tags.site = 'north'")
                .unwrap()[0]["n"],
            json!(n)
        );
        // every record was rewritten in the binary format, with the same content
        for (k, v) in store.scan(Table::Devices, None, usize::MAX).await.unwrap() {
            assert_eq!(
                v.first(),
                Some(&BINARY_V2),
                "{}",
                String::from_utf8_lossy(&k)
            );
        }
        drop(hub);
        let hub = Hub::builder().store(store).open().await.unwrap();
        for (device, twin) in &before {
            let id = device.device_id.as_str();
            assert_eq!(&hub.get_device(id).unwrap(), device);
            assert_eq!(&hub.get_twin(id).unwrap().to_json(), twin);
        }
    }

    #[tokio::test]
    async fn an_unreadable_record_fails_the_open_with_its_key() {
        use crate::hub::Hub;
        use crate::store::{MemoryStore, Op, Store, Table};
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut bad = encode(&entry());
        bad.truncate(bad.len() - 3);
        store
            .commit(vec![
                Op::put(Table::Devices, "pump-1", bad),
                Op::put(Table::Devices, "pump-2", encode(&entry())),
            ])
            .await
            .unwrap();
        let err = Hub::builder().store(store).open().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pump-1"), "{text}");
    }
}
