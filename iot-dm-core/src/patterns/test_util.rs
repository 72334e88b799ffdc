//! Helpers shared by the pattern tests.

use serde_json::Value;

use super::*;
use crate::clock::Timestamp;

/// `secs` after the Unix epoch.
pub(crate) fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

/// RFC 7396 JSON merge patch, as the twin applies reported patches.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(map) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// `v` with every `null` object member removed (what a merge leaves in the twin).
pub(crate) fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Asserts every key obeys the twin key rules (no `.`, `$`, space or control characters).
pub(crate) fn assert_twin_keys(v: &Value) {
    if let Value::Object(m) = v {
        for (k, v) in m {
            assert!(
                !k.is_empty()
                    && !k
                        .chars()
                        .any(|c| c == '.' || c == '$' || c == ' ' || c.is_control()),
                "bad twin key {k:?}"
            );
            assert_twin_keys(v);
        }
    }
}

/// The laws every pattern status obeys, checked over `samples`:
/// the JSON parses back, keys are twin-safe, every state writes the same key set, and a
/// patch applied over any previous state's patch leaves exactly the new state's fields.
pub(crate) fn check_laws<P>(samples: &[P])
where
    P: PatternStatus + PartialEq + Clone + std::fmt::Debug,
{
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let first_keys = samples
        .first()
        .map(|s| keys(&s.to_json()))
        .unwrap_or_default();
    for s in samples {
        let json = s.to_json();
        assert_twin_keys(&s.to_patch());
        assert_eq!(keys(&json), first_keys, "key set of {s:?}");
        assert_eq!(&P::from_json(&json).unwrap(), s);
        assert_eq!(P::from_reported(&s.to_patch()).unwrap().as_ref(), Some(s));
    }
    for a in samples {
        for b in samples {
            let mut reported = serde_json::json!({"other": 1, "$version": 7});
            merge_patch(&mut reported, &a.to_patch());
            merge_patch(&mut reported, &b.to_patch());
            assert_eq!(
                reported[REPORTED_ROOT][P::KEY],
                strip_nulls(&b.to_json()),
                "{a:?} then {b:?}"
            );
            assert_eq!(P::from_reported(&reported).unwrap().as_ref(), Some(b));
        }
    }
}

/// Reboot statuses in every state, reached through legal transitions.
pub(crate) fn reboot_samples() -> Vec<RebootStatus> {
    let mut out = Vec::new();
    let mut s = RebootStatus::new(t(0));
    out.push(s.clone());
    s.apply(RebootEvent::Schedule { at: Some(t(100)) }, t(1))
        .unwrap();
    out.push(s.clone());
    s.apply(RebootEvent::Start, t(100)).unwrap();
    out.push(s.clone());
    s.apply(RebootEvent::Complete, t(130)).unwrap();
    out.push(s.clone());
    s.apply(RebootEvent::Schedule { at: None }, t(200)).unwrap();
    out.push(s.clone());
    s.apply(
        RebootEvent::Fail {
            reason: "low battery".into(),
        },
        t(201),
    )
    .unwrap();
    out.push(s.clone());
    out
}

/// Factory-reset statuses in every state.
pub(crate) fn factory_reset_samples() -> Vec<FactoryResetStatus> {
    let mut out = Vec::new();
    let mut s = FactoryResetStatus::new(t(0));
    out.push(s.clone());
    for keep in [true, false] {
        s.apply(
            FactoryResetEvent::Start {
                keep_network_config: keep,
            },
            t(1),
        )
        .unwrap();
        out.push(s.clone());
        s.apply(FactoryResetEvent::Complete, t(2)).unwrap();
        out.push(s.clone());
    }
    s.apply(
        FactoryResetEvent::Start {
            keep_network_config: true,
        },
        t(3),
    )
    .unwrap();
    s.apply(
        FactoryResetEvent::Fail {
            reason: "flash locked".into(),
        },
        t(4),
    )
    .unwrap();
    out.push(s.clone());
    out
}

/// A valid request for `version` of `size` bytes.
pub(crate) fn fw_request(version: &str, size: u64) -> FirmwareUpdateRequest {
    FirmwareUpdateRequest::new(
        version,
        format!("https://updates.example.com/fw/{version}.bin"),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        size,
    )
    .unwrap()
}

/// Firmware statuses in every state.
pub(crate) fn firmware_samples() -> Vec<FirmwareStatus> {
    use FirmwareEvent as E;
    let mut out = Vec::new();
    let mut s = FirmwareStatus::new(Some("1.9.0"), t(0)).unwrap();
    out.push(s.clone());
    out.push(FirmwareStatus::new(None, t(0)).unwrap());
    let steps = [
        E::Start {
            request: fw_request("2.0.1", 1000),
        },
        E::Progress { bytes: 420 },
        E::Progress { bytes: 1000 },
        E::DownloadComplete,
        E::Verify,
        E::Apply,
        E::Reboot,
        E::Succeed,
        E::Start {
            request: fw_request("2.1.0", 50),
        },
        E::Fail(FirmwareFailure::new(FirmwareResultCode::ConnectionLost, "tcp reset").unwrap()),
        E::Start {
            request: fw_request("2.2.0", 50),
        },
        E::DownloadComplete,
        E::Verify,
        E::Apply,
        E::RollBack(FirmwareFailure::new(FirmwareResultCode::UpdateFailed, "").unwrap()),
        E::Clear,
    ];
    for (i, e) in steps.into_iter().enumerate() {
        s.apply(e, t(10 + i64::try_from(i).unwrap())).unwrap();
        out.push(s.clone());
    }
    out
}
