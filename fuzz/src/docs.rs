//! Twin documents: merge patches of tags, desired and reported properties (the session's and
//! the REST API's path), twin JSON (import, replace), and the binary forms the store keeps
//! (a corrupted record must be refused, never crash the hub when it opens).

use iot_dm::core::binary::Reader;
use iot_dm::core::clock::Timestamp;
use iot_dm::core::doc::Doc;
use iot_dm::core::twin::{Twin, TwinLimits};
use serde_json::Value;

/// The first byte picks the form, the rest is the input.
pub fn run(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    match mode % 4 {
        0 => patches(rest),
        1 => twin_json(rest),
        2 => stored_doc(rest),
        _ => stored_twin(rest),
    }
}

/// A JSON value, applied as a tags, desired and reported patch, twice (the second time onto
/// what the first left).
fn patches(bytes: &[u8]) {
    let Ok(patch) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let limits = TwinLimits::default();
    let now = Timestamp::from_unix_secs(1_700_000_000);
    let mut twin = Twin::new("fuzz-device".parse().expect("a device id"));
    for _ in 0..2 {
        let _ = twin.patch_tags(&patch, None, &limits);
        let _ = twin.patch_desired(&patch, now, &limits);
        let _ = twin.patch_reported(&patch, now, &limits);
    }
    let json = twin.to_json();
    let text = serde_json::to_string(&json).expect("a twin prints");
    let _: Value = serde_json::from_str(&text).expect("a twin's JSON reads back");
    // a document of the patch, when it is one, reads back from its bytes unchanged
    if let Ok(doc) = Doc::from_value(&patch) {
        let read = Doc::from_bytes(doc.as_bytes()).expect("a document reads back");
        assert_eq!(
            read.to_value(),
            doc.to_value(),
            "a document changed on the way"
        );
    }
}

/// A twin as JSON (what import and replace read).
fn twin_json(bytes: &[u8]) {
    if let Ok(twin) = serde_json::from_slice::<Twin>(bytes) {
        let json = twin.to_json();
        let mut out = Vec::new();
        twin.write_binary(&mut out);
        let read = Twin::read_binary(&mut Reader::new(&out)).expect("a twin reads back");
        assert_eq!(
            read.to_json(),
            json,
            "a twin changed on the way through the store"
        );
    }
}

/// Document bytes as the store keeps them.
fn stored_doc(bytes: &[u8]) {
    if let Ok(doc) = Doc::from_bytes(bytes) {
        let value = doc.to_value();
        let _ = doc.root_meta();
        let _ = doc.heap_size();
        let again = Doc::from_value(&value).map(|d| d.to_value());
        if let Ok(again) = again {
            assert_eq!(
                again, value,
                "a stored document prints differently once rebuilt"
            );
        }
    }
}

/// A twin record as the store keeps it.
fn stored_twin(bytes: &[u8]) {
    if let Ok(twin) = Twin::read_binary(&mut Reader::new(bytes)) {
        let _ = twin.to_json();
    }
}
