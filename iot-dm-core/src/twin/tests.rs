use super::*;
use crate::doc::Doc;
use proptest::prelude::*;
use serde_json::{json, Value};

fn ts(s: i64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

/// The sample twin of the IoT Hub documentation, as the reference prints it.
fn reference_twin() -> Value {
    json!({
        "deviceId": "devA",
        "etag": "AAAAAAAAAAc=",
        "deviceEtag": "MQ==",
        "version": 2,
        "status": "enabled",
        "statusReason": "provisioned",
        "statusUpdateTime": "0001-01-01T00:00:00",
        "connectionState": "connected",
        "lastActivityTime": "2015-02-30T16:24:48.789Z",
        "cloudToDeviceMessageCount": 0,
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
        "capabilities": {"iotEdge": false},
        "deviceScope": "ms-azure-iot-edge://edge-1",
        "parentScopes": ["ms-azure-iot-edge://edge-1"],
        "modelId": "",
        "tags": {"$etag": "123", "deploymentLocation": {"building": "43", "floor": "1"}},
        "properties": {
            "desired": {
                "telemetryConfig": {"sendFrequency": "5m"},
                "$metadata": {
                    "$lastUpdated": "2016-03-30T16:24:48.789Z",
                    "$lastUpdatedVersion": 23,
                    "telemetryConfig": {
                        "$lastUpdated": "2016-03-30T16:24:48.789Z", "$lastUpdatedVersion": 23,
                        "sendFrequency": {"$lastUpdated": "2016-03-30T16:24:48.789Z", "$lastUpdatedVersion": 23}
                    }
                },
                "$version": 23
            },
            "reported": {
                "batteryLevel": 55,
                "$metadata": {"$lastUpdated": "2016-03-31T16:35:48.789Z", "batteryLevel": {"$lastUpdated": "2016-03-31T16:35:48.789Z"}},
                "$version": 123
            }
        }
    })
}

#[test]
fn accepts_the_reference_twin() {
    let twin: Twin = serde_json::from_value(reference_twin()).unwrap();
    assert_eq!(twin.device_id.as_str(), "devA");
    assert_eq!(twin.etag().as_str(), "AAAAAAAAAAc=");
    assert_eq!(twin.version(), 2);
    assert_eq!(twin.identity.connection_state, ConnectionState::Connected);
    assert_eq!(twin.identity.status_update_time, Some(Timestamp::NEVER));
    assert_eq!(twin.desired().version(), 23);
    assert_eq!(twin.reported().version(), 123);
    assert_eq!(
        twin.desired()
            .last_updated_version(&["telemetryConfig", "sendFrequency"]),
        Some(23)
    );
    assert_eq!(
        twin.reported().last_updated(&["batteryLevel"]),
        Some("2016-03-31T16:35:48.789Z".parse().unwrap())
    );
    assert_eq!(
        twin.reported().last_updated_version(&["batteryLevel"]),
        None
    );
    assert_eq!(
        twin.tags()
            .get_path(&["deploymentLocation", "floor"])
            .map(|n| n.to_value()),
        Some(json!("1"))
    );
}

#[test]
fn round_trips_the_service_json() {
    // the reference twin in canonical form: what we print is what we read
    let mut canonical = reference_twin();
    canonical["connectionState"] = json!("Connected");
    canonical["statusUpdateTime"] = json!("0001-01-01T00:00:00.000Z");
    canonical["lastActivityTime"] = json!("2015-03-02T16:24:48.789Z");
    let twin: Twin = serde_json::from_value(canonical.clone()).unwrap();
    assert_eq!(twin.to_json(), canonical);
    let again: Twin = serde_json::from_value(twin.to_json()).unwrap();
    assert_eq!(again, twin);
}

#[test]
fn minimal_twin_json_gets_defaults() {
    let twin: Twin = serde_json::from_value(json!({"deviceId": "d1"})).unwrap();
    assert_eq!(twin.version(), 1);
    assert_eq!(twin.desired().version(), 1);
    assert!(twin.tags().is_empty());
    assert!(serde_json::from_value::<Twin>(json!({"deviceId": "bad id"})).is_err());
    assert!(serde_json::from_value::<Twin>(json!({"deviceId": "d", "tags": [1]})).is_err());
}

#[test]
fn device_view_has_no_tags_or_metadata() {
    let mut twin = Twin::new(id("d"));
    let l = TwinLimits::default();
    twin.patch_tags(&json!({"secret": 1}), None, &l).unwrap();
    twin.patch_desired(&json!({"a": 1}), ts(5), &l).unwrap();
    assert_eq!(
        twin.device_view(),
        json!({"desired": {"a": 1, "$version": 2}, "reported": {"$version": 1}})
    );
}

#[test]
fn metadata_json_shape() {
    let mut twin = Twin::created_at(id("d"), ts(0));
    let l = TwinLimits::default();
    twin.patch_desired(&json!({"a": {"b": 1}, "c": 2}), ts(10), &l)
        .unwrap();
    twin.patch_desired(&json!({"a": {"b": null}}), ts(20), &l)
        .unwrap();
    let t10 = ts(10).to_string();
    let t20 = ts(20).to_string();
    assert_eq!(
        twin.desired().metadata_value(),
        json!({
            "$lastUpdated": t20, "$lastUpdatedVersion": 3,
            "a": {"$lastUpdated": t20, "$lastUpdatedVersion": 3},
            "c": {"$lastUpdated": t10, "$lastUpdatedVersion": 2}
        })
    );
    twin.patch_reported(&json!({"r": [1, 2]}), ts(30), &l)
        .unwrap();
    let t30 = ts(30).to_string();
    assert_eq!(
        twin.reported().metadata_value(),
        json!({"$lastUpdated": t30, "r": {"$lastUpdated": t30}})
    );
}

#[test]
fn if_match_rules() {
    let l = TwinLimits::default();
    let mut twin = Twin::new(id("d"));
    let e1 = twin.etag().clone();
    twin.patch_tags(&json!({"a": 1}), Some("*"), &l).unwrap();
    assert_ne!(twin.etag(), &e1);
    let err = twin
        .patch_tags(&json!({"a": 2}), Some(e1.as_str()), &l)
        .unwrap_err();
    assert!(err.is_precondition_failed());
    let quoted = format!("\"{}\"", twin.etag());
    twin.patch_tags(&json!({"a": 3}), Some(&quoted), &l)
        .unwrap();
    assert_eq!(twin.tags().to_value(), json!({"a": 3}));
    assert_eq!(ETag::from_version(7).as_str(), "AAAAAAAAAAc=");
}

#[test]
fn update_is_all_or_nothing_and_bumps_once() {
    let l = TwinLimits::default();
    let mut twin = Twin::new(id("d"));
    let v0 = twin.version();
    let patch = TwinPatch {
        tags: Some(json!({"t": 1})),
        desired: Some(json!({"bad key": 1})),
    };
    assert!(twin.update(&patch, None, ts(1), &l).is_err());
    assert!(twin.tags().is_empty());
    assert_eq!(twin.version(), v0);
    let patch = TwinPatch {
        tags: Some(json!({"t": 1})),
        desired: Some(json!({"d": 1, "$version": 99, "$metadata": {}})),
    };
    twin.update(&patch, None, ts(1), &l).unwrap();
    assert_eq!(twin.version(), v0 + 1);
    assert_eq!(twin.desired().version(), 2);
    assert_eq!(twin.desired().doc().to_value(), json!({"d": 1}));
}

#[test]
fn replace_replaces_sections() {
    let l = TwinLimits::default();
    let mut twin = Twin::new(id("d"));
    twin.patch_tags(&json!({"old": 1}), None, &l).unwrap();
    twin.patch_desired(&json!({"x": 1, "y": 2}), ts(1), &l)
        .unwrap();
    twin.patch_reported(&json!({"r": 1}), ts(1), &l).unwrap();
    let body: TwinPatch = serde_json::from_value(
        json!({"tags": {"new": 1}, "properties": {"desired": {"y": 3, "z": null}}}),
    )
    .unwrap();
    twin.replace(&body, None, ts(2), &l).unwrap();
    assert_eq!(twin.tags().to_value(), json!({"new": 1}));
    assert_eq!(twin.desired().doc().to_value(), json!({"y": 3}));
    assert_eq!(twin.reported().doc().to_value(), json!({"r": 1}));
    assert_eq!(twin.desired().version(), 3);
}

#[test]
fn errors_name_the_section_and_limit() {
    let l = TwinLimits::default();
    let mut twin = Twin::new(id("d"));
    assert_eq!(
        twin.patch_reported(&json!([1]), ts(1), &l),
        Err(TwinError::NotAnObject {
            section: SectionName::Reported,
            found: "array"
        })
    );
    let big = json!({"a": "x".repeat(4000), "b": "x".repeat(4000), "c": "x".repeat(400)});
    let err = twin.patch_tags(&big, None, &l).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tags would be 8403 bytes, the limit is 8192"
    );
    let err = twin
        .patch_desired(&json!({"a": {"b.c": 1}}), ts(1), &l)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid key at properties.desired.a.b.c"),
        "{err}"
    );
    // a device may not write system properties
    assert!(twin
        .patch_reported(&json!({"$version": 5}), ts(1), &l)
        .is_err());
}

fn arb_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1_000_000i64..1_000_000).prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_patch() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]{1,2}", arb_value(3), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Patches that break a rule: a bad key somewhere, or a value out of range.
fn arb_bad_patch() -> impl Strategy<Value = Value> {
    (
        arb_patch(),
        prop_oneof![
            Just(json!({"bad key": 1})),
            Just(json!({"ok": {"a.b": 1}})),
            Just(json!({"n": 9_007_199_254_740_993i64})),
            Just(json!({"s": "x".repeat(5000)})),
            Just(Value::from(3)),
        ],
    )
        .prop_map(|(good, bad)| match (good, bad) {
            (Value::Object(mut g), Value::Object(b)) => {
                g.extend(b);
                Value::Object(g)
            }
            (_, b) => b,
        })
}

proptest! {
    #[test]
    fn a_patch_bumps_versions_by_exactly_one(seed in arb_patch(), patch in arb_patch()) {
        let l = TwinLimits::default();
        let mut twin = Twin::new(id("p"));
        twin.patch_reported(&seed, ts(1), &l).unwrap();
        twin.patch_desired(&seed, ts(1), &l).unwrap();
        let (v, dv, rv) = (twin.version(), twin.desired().version(), twin.reported().version());
        twin.patch_reported(&patch, ts(2), &l).unwrap();
        prop_assert_eq!((twin.version(), twin.desired().version(), twin.reported().version()), (v + 1, dv, rv + 1));
        twin.patch_desired(&patch, ts(3), &l).unwrap();
        prop_assert_eq!((twin.version(), twin.desired().version(), twin.reported().version()), (v + 2, dv + 1, rv + 1));
        twin.patch_tags(&patch, Some("*"), &l).unwrap();
        prop_assert_eq!((twin.version(), twin.desired().version(), twin.reported().version()), (v + 3, dv + 1, rv + 1));
    }

    #[test]
    fn a_rejected_patch_leaves_the_twin_byte_identical(seed in arb_patch(), bad in arb_bad_patch()) {
        let l = TwinLimits::default();
        let mut twin = Twin::new(id("p"));
        twin.patch_reported(&seed, ts(1), &l).unwrap();
        twin.patch_desired(&seed, ts(1), &l).unwrap();
        twin.patch_tags(&seed, None, &l).unwrap();
        let before = serde_json::to_vec(&twin).unwrap();
        prop_assert!(twin.patch_reported(&bad, ts(9), &l).is_err());
        prop_assert!(twin.patch_desired(&bad, ts(9), &l).is_err());
        prop_assert!(twin.patch_tags(&bad, None, &l).is_err());
        let update = TwinPatch { tags: Some(seed.clone()), desired: Some(bad.clone()) };
        prop_assert!(twin.update(&update, None, ts(9), &l).is_err());
        prop_assert_eq!(serde_json::to_vec(&twin).unwrap(), before);
    }

    #[test]
    fn patch_then_inverse_restores_content(seed in arb_patch(), patch in arb_patch()) {
        let l = TwinLimits::default();
        let mut twin = Twin::new(id("p"));
        twin.patch_reported(&seed, ts(1), &l).unwrap();
        let before = twin.reported().doc().clone();
        let inverse = inverse_patch(&before, &patch);
        twin.patch_reported(&patch, ts(2), &l).unwrap();
        twin.patch_reported(&inverse, ts(3), &l).unwrap();
        prop_assert_eq!(twin.reported().doc().to_value(), before.to_value());
    }

    #[test]
    fn serde_round_trips_patched_twins(seed in arb_patch(), patch in arb_patch()) {
        let l = TwinLimits::default();
        let mut twin = Twin::created_at(id("p"), ts(1));
        twin.patch_desired(&seed, ts(2), &l).unwrap();
        twin.patch_reported(&patch, ts(3), &l).unwrap();
        twin.patch_tags(&patch, None, &l).unwrap();
        let back: Twin = serde_json::from_value(twin.to_json()).unwrap();
        prop_assert_eq!(back.to_json(), twin.to_json());
    }

    #[test]
    fn to_json_agrees_with_the_serializer(seed in arb_patch(), patch in arb_patch(), ms in 0i64..4_000_000_000_000) {
        // `to_json` builds the documents' values directly; `Serialize` streams them
        let l = TwinLimits::default();
        let mut twin = Twin::created_at(id("p"), ts(1));
        twin.patch_desired(&seed, Timestamp::from_unix_millis(ms), &l).unwrap();
        twin.patch_reported(&seed, ts(2), &l).unwrap();
        twin.patch_reported(&patch, Timestamp::from_ticks(ms * 10_001), &l).unwrap();
        twin.patch_tags(&patch, None, &l).unwrap();
        let json = twin.to_json();
        prop_assert_eq!(&serde_json::to_value(&twin).unwrap(), &json);
        let bytes = serde_json::to_vec(&twin).unwrap();
        prop_assert_eq!(&serde_json::from_slice::<Value>(&bytes).unwrap(), &json);
        prop_assert_eq!(twin.desired().to_value(), json["properties"]["desired"].clone());
        prop_assert_eq!(
            twin.reported().metadata_value(),
            json["properties"]["reported"]["$metadata"].clone()
        );
    }
}

#[test]
fn doc_of_section_is_compact() {
    // a rough guard on the storage form: a 1 KB document stays within a few KB
    let mut m = serde_json::Map::new();
    for i in 0..30 {
        m.insert(
            format!("key{i}"),
            json!({"v": format!("value-{i}"), "n": i}),
        );
    }
    let doc = Doc::from_value(&Value::Object(m)).unwrap();
    assert!(doc.heap_size() < 4096, "{}", doc.heap_size());
}
