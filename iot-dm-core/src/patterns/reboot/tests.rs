use super::*;
use crate::patterns::test_util::*;
use serde_json::json;

const T0: &str = "1970-01-01T00:00:00.000Z";

#[test]
fn every_state_writes_every_field() {
    let s = reboot_samples();
    let expected = [
        json!({"state": "idle", "scheduledFor": null, "lastReboot": null, "reason": null,
               "lastUpdated": T0}),
        json!({"state": "scheduled", "scheduledFor": "1970-01-01T00:01:40.000Z",
               "lastReboot": null, "reason": null, "lastUpdated": "1970-01-01T00:00:01.000Z"}),
        json!({"state": "rebooting", "scheduledFor": null, "lastReboot": null, "reason": null,
               "lastUpdated": "1970-01-01T00:01:40.000Z"}),
        json!({"state": "succeeded", "scheduledFor": null,
               "lastReboot": "1970-01-01T00:02:10.000Z", "reason": null,
               "lastUpdated": "1970-01-01T00:02:10.000Z"}),
        json!({"state": "scheduled", "scheduledFor": "1970-01-01T00:03:20.000Z",
               "lastReboot": "1970-01-01T00:02:10.000Z", "reason": null,
               "lastUpdated": "1970-01-01T00:03:20.000Z"}),
        json!({"state": "failed", "scheduledFor": null,
               "lastReboot": "1970-01-01T00:02:10.000Z", "reason": "low battery",
               "lastUpdated": "1970-01-01T00:03:21.000Z"}),
    ];
    assert_eq!(s.len(), expected.len());
    for (status, want) in s.iter().zip(expected) {
        assert_eq!(status.to_json(), want);
        assert_eq!(RebootStatus::from_json(&want).unwrap(), *status);
    }
    assert_eq!(
        s[1].to_patch(),
        json!({"deviceManagement": {"reboot": s[1].to_json()}})
    );
}

fn events() -> Vec<RebootEvent> {
    vec![
        RebootEvent::Schedule { at: None },
        RebootEvent::Cancel,
        RebootEvent::Start,
        RebootEvent::Complete,
        RebootEvent::Fail { reason: "r".into() },
    ]
}

#[test]
fn transition_table() {
    // rows: idle, scheduled (due), rebooting, succeeded, failed; columns: events()
    let samples = reboot_samples();
    let rows = [
        (&samples[0], [true, false, false, false, false]),
        (&samples[1], [false, true, true, false, true]),
        (&samples[2], [false, false, false, true, true]),
        (&samples[3], [true, false, false, false, false]),
        (&samples[5], [true, false, false, false, false]),
    ];
    for (status, legal) in rows {
        for (event, ok) in events().into_iter().zip(legal) {
            let mut s = status.clone();
            let name = event.as_str();
            let got = s.apply(event, t(1_000));
            if ok {
                assert!(got.is_ok(), "{:?} {name}: {got:?}", status.state());
            } else {
                assert_eq!(
                    got,
                    Err(PatternError::IllegalTransition {
                        pattern: "reboot",
                        state: status.state().as_str(),
                        event: name,
                    })
                );
                assert_eq!(&s, status, "unchanged after an illegal event");
            }
        }
    }
}

#[test]
fn start_waits_for_the_schedule() {
    let mut s = RebootStatus::new(t(0));
    s.apply(RebootEvent::Schedule { at: Some(t(60)) }, t(0))
        .unwrap();
    let before = s.clone();
    assert_eq!(
        s.apply(RebootEvent::Start, t(59)),
        Err(PatternError::NotYetDue {
            scheduled_for: t(60),
            now: t(59)
        })
    );
    assert_eq!(s, before);
    s.apply(RebootEvent::Start, t(60)).unwrap();
    assert_eq!(s.state(), &RebootState::Rebooting);
}

#[test]
fn immediate_schedule_and_cancel() {
    let mut s = RebootStatus::new(t(0));
    s.apply(RebootEvent::Schedule { at: None }, t(5)).unwrap();
    assert_eq!(s.state(), &RebootState::Scheduled { at: t(5) });
    s.apply(RebootEvent::Cancel, t(6)).unwrap();
    assert_eq!(s.state(), &RebootState::Idle);
    assert_eq!(s.updated(), t(6));
    assert_eq!(s.last_reboot(), None);
}

#[test]
fn failure_reason_is_limited() {
    let mut s = RebootStatus::new(t(0));
    s.apply(RebootEvent::Schedule { at: None }, t(0)).unwrap();
    let before = s.clone();
    let long = "x".repeat(crate::patterns::MAX_TEXT_LEN + 1);
    assert!(matches!(
        s.apply(RebootEvent::Fail { reason: long }, t(1)),
        Err(PatternError::TextTooLong {
            field: "reason",
            ..
        })
    ));
    assert_eq!(s, before);
}

#[test]
fn parse_errors_are_typed() {
    let base = reboot_samples()[1].to_json();
    let with = |k: &str, v: Value| {
        let mut j = base.clone();
        j[k] = v;
        j
    };
    assert_eq!(
        RebootStatus::from_json(&with("state", Value::Null)),
        Err(PatternError::MissingField {
            path: "deviceManagement.reboot.state".into()
        })
    );
    assert!(matches!(
        RebootStatus::from_json(&with("state", json!("exploding"))),
        Err(PatternError::UnknownValue { value, .. }) if value == "exploding"
    ));
    assert_eq!(
        RebootStatus::from_json(&with("scheduledFor", Value::Null)),
        Err(PatternError::MissingField {
            path: "deviceManagement.reboot.scheduledFor".into()
        })
    );
    assert_eq!(
        RebootStatus::from_json(&with("scheduledFor", json!("tomorrow"))),
        Err(PatternError::InvalidField {
            path: "deviceManagement.reboot.scheduledFor".into(),
            expected: "an ISO 8601 UTC timestamp"
        })
    );
    assert!(RebootStatus::from_json(&with("lastUpdated", json!(5))).is_err());
    assert!(RebootStatus::from_json(&json!({"state": "failed", "lastUpdated": T0})).is_err());
    assert!(RebootStatus::from_json(&json!([])).is_err());
}

#[test]
fn request_payloads() {
    assert_eq!(
        RebootRequest::from_payload(&Value::Null).unwrap(),
        RebootRequest::now()
    );
    assert_eq!(
        RebootRequest::from_payload(&json!({})).unwrap(),
        RebootRequest::now()
    );
    let r = RebootRequest::from_payload(&json!({"delayInSeconds": 30, "notBefore": null})).unwrap();
    assert_eq!(r, RebootRequest::after_secs(30).unwrap());
    assert_eq!(r.delay(), Duration::from_secs(30));
    assert_eq!(RebootRequest::from_payload(&r.to_payload()).unwrap(), r);

    let w = RebootRequest::not_before(t(1_000));
    assert_eq!(
        w.to_payload(),
        json!({"delayInSeconds": 0, "notBefore": "1970-01-01T00:16:40.000Z"})
    );
    assert_eq!(RebootRequest::from_payload(&w.to_payload()).unwrap(), w);
    assert_eq!(w.earliest(), Some(t(1_000)));
    assert_eq!(w.scheduled_for(t(10)), t(1_000));
    assert_eq!(w.scheduled_for(t(2_000)), t(2_000));
    assert_eq!(w.event(t(10)), RebootEvent::Schedule { at: Some(t(1_000)) });

    let both = RebootRequest::from_payload(
        &json!({"delayInSeconds": 600, "notBefore": "1970-01-01T00:05:00Z"}),
    )
    .unwrap();
    assert_eq!(both.scheduled_for(t(0)), t(600));
    assert_eq!(both.scheduled_for(t(-400)), t(300));

    let too_long = MAX_REBOOT_DELAY_SECS + 1;
    let err = PatternError::OutOfRange {
        field: "delayInSeconds",
        value: too_long,
        min: 0,
        max: MAX_REBOOT_DELAY_SECS,
    };
    assert_eq!(RebootRequest::after_secs(too_long), Err(err.clone()));
    assert_eq!(
        RebootRequest::from_payload(&json!({"delayInSeconds": too_long})),
        Err(err)
    );
    assert_eq!(
        RebootRequest::from_payload(&json!({"delayInSeconds": -1})),
        Err(PatternError::InvalidField {
            path: "reboot.delayInSeconds".into(),
            expected: "a non-negative integer"
        })
    );
    assert!(RebootRequest::from_payload(&json!("now")).is_err());
}
