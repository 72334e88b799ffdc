use super::test_util::*;
use super::*;
use serde_json::json;

#[test]
fn reboot_laws() {
    check_laws(&reboot_samples());
}

#[test]
fn factory_reset_laws() {
    check_laws(&factory_reset_samples());
}

#[test]
fn firmware_laws() {
    let samples = firmware_samples();
    let states: std::collections::BTreeSet<&str> =
        samples.iter().map(|s| s.state().as_str()).collect();
    assert_eq!(
        states.len(),
        9,
        "every firmware state is sampled: {states:?}"
    );
    check_laws(&samples);
}

#[test]
fn method_names_are_valid_constants() {
    assert_eq!(RebootStatus::method_name().as_str(), "reboot");
    assert_eq!(FactoryResetStatus::method_name().as_str(), "factoryReset");
    assert_eq!(FirmwareStatus::method_name().as_str(), "firmwareUpdate");
    for name in [REBOOT_METHOD, FACTORY_RESET_METHOD, FIRMWARE_UPDATE_METHOD] {
        assert!(MethodName::new(name).is_ok());
    }
}

#[test]
fn patterns_share_the_root_without_clobbering() {
    let reboot = reboot_samples().pop().unwrap();
    let reset = factory_reset_samples().pop().unwrap();
    let fw = firmware_samples().pop().unwrap();
    let mut reported = json!({"$version": 3, "$metadata": {}});
    merge_patch(&mut reported, &reboot.to_patch());
    merge_patch(&mut reported, &reset.to_patch());
    merge_patch(&mut reported, &fw.to_patch());
    assert_eq!(
        RebootStatus::from_reported(&reported).unwrap(),
        Some(reboot)
    );
    assert_eq!(
        FactoryResetStatus::from_reported(&reported).unwrap(),
        Some(reset)
    );
    assert_eq!(FirmwareStatus::from_reported(&reported).unwrap(), Some(fw));
}

#[test]
fn from_reported_handles_absence_and_garbage() {
    for absent in [
        json!({}),
        json!({"$version": 1}),
        json!({"deviceManagement": null}),
        json!({"deviceManagement": {"reboot": null}}),
        json!({"deviceManagement": {"firmware": {}}}),
    ] {
        assert_eq!(
            RebootStatus::from_reported(&absent).unwrap(),
            None,
            "{absent}"
        );
    }
    assert_eq!(
        RebootStatus::from_reported(&json!("x")),
        Err(PatternError::InvalidField {
            path: "reported".into(),
            expected: "an object"
        })
    );
    assert_eq!(
        RebootStatus::from_reported(&json!({"deviceManagement": []})),
        Err(PatternError::InvalidField {
            path: "deviceManagement".into(),
            expected: "an object"
        })
    );
    assert_eq!(
        RebootStatus::from_reported(&json!({"deviceManagement": {"reboot": 5}})),
        Err(PatternError::InvalidField {
            path: "deviceManagement.reboot".into(),
            expected: "an object"
        })
    );
}

#[test]
fn merge_patch_helper_follows_rfc7396() {
    // guards the law tests: a helper that never deletes would make them pass vacuously
    let mut doc = json!({"a": {"b": 1, "c": 2}, "d": 3});
    merge_patch(&mut doc, &json!({"a": {"b": null, "e": 4}, "d": null}));
    assert_eq!(doc, json!({"a": {"c": 2, "e": 4}}));
    assert_eq!(
        strip_nulls(&json!({"a": null, "b": {"c": null, "d": 1}})),
        json!({"b": {"d": 1}})
    );
}
