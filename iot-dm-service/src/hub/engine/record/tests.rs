//! Tests of the record formats and of the upgrade of earlier ones.

use super::*;
use crate::hub::registry::Authentication;
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
    let identity = device.identity_mut();
    identity.status_reason = Some("why".into());
    identity.connection_state_updated_time = Some(now);
    identity.last_activity_time = Some(now);
    identity.cloud_to_device_message_count = 1;
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
    e.share_identity();
    e
}

/// Asserts that every device record in `store` is in the current format.
async fn assert_all_current(store: &dyn crate::store::Store) {
    let records = store
        .scan(crate::store::Table::Devices, None, usize::MAX)
        .await
        .unwrap();
    for (k, v) in records {
        assert_eq!(
            v.first(),
            Some(&BINARY_V3),
            "{}",
            String::from_utf8_lossy(&k)
        );
    }
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
    assert_eq!(binary.first(), Some(&BINARY_V3));
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
    // every record was rewritten in the current binary format, with the same content
    assert_all_current(&*store).await;
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

/// Records of format 2 written by the previous version (`fixtures/record_v2_*.bin`), with
/// the device JSON and twin JSON that version read from them (`fixtures/record_v2_*.json`).
const V2_FIXTURES: [(&str, &[u8], &str); 2] = [
    (
        "pump-1",
        include_bytes!("fixtures/record_v2_pump-1.bin"),
        include_str!("fixtures/record_v2_pump-1.json"),
    ),
    (
        "cam-2",
        include_bytes!("fixtures/record_v2_cam-2.bin"),
        include_str!("fixtures/record_v2_cam-2.json"),
    ),
];

/// What the previous version showed of a fixture: device and twin JSON, as values and as
/// the exact text it printed.
fn assert_shows(device: &Device, twin: &Twin, expected: &str) {
    let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
    assert_eq!(serde_json::to_value(device).unwrap(), expected["device"]);
    assert_eq!(twin.to_json(), expected["twin"]);
    assert_eq!(
        serde_json::to_string(device).unwrap(),
        expected["deviceText"].as_str().unwrap()
    );
    assert_eq!(
        serde_json::to_string(twin).unwrap(),
        expected["twinText"].as_str().unwrap()
    );
}

#[test]
fn format_2_records_read_back_identical_and_share_one_identity() {
    for (id, bytes, expected) in V2_FIXTURES {
        assert_eq!(bytes.first(), Some(&BINARY_V2), "{id}");
        let (e, format) = decode(bytes).unwrap();
        assert_eq!(format, Format::BinaryV2);
        assert!(format.is_legacy());
        assert_eq!(e.device.device_id.as_str(), id);
        assert!(Arc::ptr_eq(&e.device.identity, &e.twin.identity), "{id}");
        assert_shows(&e.device, &e.twin, expected);
        // and the current format keeps all of it, with the identity once
        let v3 = encode(&e);
        assert_eq!(v3.first(), Some(&BINARY_V3));
        assert!(
            v3.len() < bytes.len(),
            "{id}: {} vs {}",
            v3.len(),
            bytes.len()
        );
        let (back, format) = decode(&v3).unwrap();
        assert_eq!(format, Format::Binary);
        assert!(!format.is_legacy());
        assert!(Arc::ptr_eq(&back.device.identity, &back.twin.identity));
        same(&back, &e);
        assert_shows(&back.device, &back.twin, expected);
    }
    // a damaged format-2 record is an error, not a different device
    let (_, bytes, _) = V2_FIXTURES[0];
    for cut in 1..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_connected_identity_comes_back_disconnected_and_shared() {
    let mut e = entry();
    let identity = e.device.identity_mut();
    identity.connection_state = ConnectionState::Connected;
    e.share_identity();
    assert_eq!(e.twin.identity.connection_state, ConnectionState::Connected);
    let (back, _) = decode(&encode(&e)).unwrap();
    assert_eq!(
        back.device.identity.connection_state,
        ConnectionState::Disconnected
    );
    assert!(Arc::ptr_eq(&back.device.identity, &back.twin.identity));
    let (back, _) = decode(&encode_json(&e)).unwrap();
    assert_eq!(
        back.twin.identity.connection_state,
        ConnectionState::Disconnected
    );
    assert!(Arc::ptr_eq(&back.device.identity, &back.twin.identity));
}

#[tokio::test]
async fn format_2_records_load_and_are_upgraded_on_open() {
    use crate::hub::Hub;
    use crate::store::{MemoryStore, Op, Store, Table};
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let hub = Hub::builder().store(store.clone()).open().await.unwrap();
    // records of every format side by side: a current one, a JSON one, the format-2 ones
    hub.create_device(crate::hub::DeviceSpec::new("fresh".parse().unwrap()))
        .await
        .unwrap();
    hub.checkpoint().await.unwrap();
    let fresh = (
        hub.get_device("fresh").unwrap(),
        hub.get_twin("fresh").unwrap().to_json(),
    );
    drop(hub);
    let mut ops: Vec<Op> = V2_FIXTURES
        .iter()
        .map(|(id, bytes, _)| Op::put(Table::Devices, *id, bytes.to_vec()))
        .collect();
    let mut old = entry();
    Arc::make_mut(&mut old.twin).device_id = "json-3".parse().unwrap();
    old.device.device_id = "json-3".parse().unwrap();
    let json_record = encode_json(&old);
    ops.push(Op::put(Table::Devices, "json-3", json_record.clone()));
    store.commit(ops).await.unwrap();
    let (old, _) = decode(&json_record).unwrap();

    for round in 0..2 {
        let hub = Hub::builder().store(store.clone()).open().await.unwrap();
        assert_eq!(hub.device_count(), 4, "round {round}");
        for (id, _, expected) in V2_FIXTURES {
            let device = hub.get_device(id).unwrap();
            let twin = hub.get_twin(id).unwrap();
            assert_shows(&device, &twin, expected);
        }
        assert_eq!(hub.get_device("json-3").unwrap(), old.device);
        assert_eq!(
            hub.get_twin("json-3").unwrap().to_json(),
            old.twin.to_json()
        );
        assert_eq!(hub.get_device("fresh").unwrap(), fresh.0);
        assert_eq!(hub.get_twin("fresh").unwrap().to_json(), fresh.1);
        assert_eq!(
            hub.query("SELECT deviceId FROM devices WHERE status = 'disabled'")
                .unwrap(),
            vec![json!({"deviceId": "cam-2"})]
        );
        // every record is now in the current format
        assert_all_current(&*store).await;
    }
}
