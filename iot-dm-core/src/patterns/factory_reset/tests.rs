use super::*;
use crate::patterns::test_util::*;
use serde_json::json;

#[test]
fn every_state_writes_every_field() {
    let s = factory_reset_samples();
    let at = |secs: i64| json!(t(secs).to_string());
    let expected = [
        json!({"state": "idle", "keepNetworkConfig": null, "lastReset": null, "reason": null,
               "lastUpdated": at(0)}),
        json!({"state": "resetting", "keepNetworkConfig": true, "lastReset": null,
               "reason": null, "lastUpdated": at(1)}),
        json!({"state": "succeeded", "keepNetworkConfig": true, "lastReset": at(2),
               "reason": null, "lastUpdated": at(2)}),
        json!({"state": "resetting", "keepNetworkConfig": false, "lastReset": at(2),
               "reason": null, "lastUpdated": at(1)}),
        json!({"state": "succeeded", "keepNetworkConfig": false, "lastReset": at(2),
               "reason": null, "lastUpdated": at(2)}),
        json!({"state": "failed", "keepNetworkConfig": null, "lastReset": at(2),
               "reason": "flash locked", "lastUpdated": at(4)}),
    ];
    assert_eq!(s.len(), expected.len());
    for (status, want) in s.iter().zip(expected) {
        assert_eq!(status.to_json(), want);
        assert_eq!(FactoryResetStatus::from_json(&want).unwrap(), *status);
    }
}

#[test]
fn transition_table() {
    let samples = factory_reset_samples();
    let events = || {
        [
            FactoryResetEvent::Start {
                keep_network_config: false,
            },
            FactoryResetEvent::Complete,
            FactoryResetEvent::Fail { reason: "r".into() },
        ]
    };
    // idle, resetting, succeeded, failed
    let rows = [
        (&samples[0], [true, false, false]),
        (&samples[1], [false, true, true]),
        (&samples[2], [true, false, false]),
        (&samples[5], [true, false, false]),
    ];
    for (status, legal) in rows {
        for (event, ok) in events().into_iter().zip(legal) {
            let mut s = status.clone();
            let name = event.as_str();
            let got = s.apply(event, t(50));
            if ok {
                assert!(got.is_ok(), "{:?} {name}: {got:?}", status.state());
                assert_eq!(s.updated(), t(50));
            } else {
                assert_eq!(
                    got,
                    Err(PatternError::IllegalTransition {
                        pattern: "factoryReset",
                        state: status.state().as_str(),
                        event: name,
                    })
                );
                assert_eq!(&s, status);
            }
        }
    }
}

#[test]
fn keep_network_flows_into_success() {
    let mut s = FactoryResetStatus::new(t(0));
    let req = FactoryResetRequest::from_payload(&json!({"keepNetworkConfig": true})).unwrap();
    s.apply(req.event(), t(1)).unwrap();
    s.apply(FactoryResetEvent::Complete, t(9)).unwrap();
    assert_eq!(
        s.state(),
        &FactoryResetState::Succeeded {
            keep_network_config: true
        }
    );
    assert_eq!(s.last_reset(), Some(t(9)));
}

#[test]
fn parse_errors_are_typed() {
    let lu = t(0).to_string();
    assert_eq!(
        FactoryResetStatus::from_json(&json!({"state": "resetting", "lastUpdated": lu})),
        Err(PatternError::MissingField {
            path: "deviceManagement.factoryReset.keepNetworkConfig".into()
        })
    );
    assert_eq!(
        FactoryResetStatus::from_json(
            &json!({"state": "resetting", "keepNetworkConfig": "yes", "lastUpdated": lu})
        ),
        Err(PatternError::InvalidField {
            path: "deviceManagement.factoryReset.keepNetworkConfig".into(),
            expected: "a boolean"
        })
    );
    assert_eq!(
        FactoryResetStatus::from_json(&json!({"state": "idle"})),
        Err(PatternError::MissingField {
            path: "deviceManagement.factoryReset.lastUpdated".into()
        })
    );
    assert!(matches!(
        FactoryResetStatus::from_json(&json!({"state": "wiping", "lastUpdated": lu})),
        Err(PatternError::UnknownValue { .. })
    ));
}

#[test]
fn request_payloads() {
    for (payload, keep) in [
        (Value::Null, false),
        (json!({}), false),
        (json!({"keepNetworkConfig": false}), false),
        (json!({"keepNetworkConfig": true}), true),
    ] {
        let r = FactoryResetRequest::from_payload(&payload).unwrap();
        assert_eq!(r.keep_network_config, keep, "{payload}");
        assert_eq!(
            FactoryResetRequest::from_payload(&r.to_payload()).unwrap(),
            r
        );
    }
    assert!(FactoryResetRequest::from_payload(&json!({"keepNetworkConfig": 1})).is_err());
    assert!(FactoryResetRequest::from_payload(&json!(true)).is_err());
}
