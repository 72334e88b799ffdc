use super::*;
use Effect::*;
use LifecycleState::*;

fn successor() -> DeviceId {
    DeviceId::new("pump-2").unwrap()
}

fn events() -> [LifecycleEvent; 7] {
    [
        LifecycleEvent::Provision { enabled: true },
        LifecycleEvent::Provision { enabled: false },
        LifecycleEvent::Enable,
        LifecycleEvent::Disable {
            reason: "maintenance".into(),
        },
        LifecycleEvent::Retire,
        LifecycleEvent::Replace {
            successor: successor(),
        },
        LifecycleEvent::Delete,
    ]
}

/// Expected outcome: `Ok((to, effects))` or `Err(())` for an illegal transition.
type Expected = Result<(Option<LifecycleState>, &'static [Effect]), ()>;

/// The full state x event table, rows in `LifecycleState::ALL` order, columns in `events()`
/// order.
fn table() -> [(LifecycleState, [Expected; 7]); 4] {
    [
        (
            Planned,
            [
                Ok((Some(Enabled), &[IssueCredentials, AllowConnections])),
                Ok((Some(Disabled), &[IssueCredentials])),
                Err(()),
                Err(()),
                Err(()),
                Err(()),
                Ok((None, &[RemoveRecord])),
            ],
        ),
        (
            Enabled,
            [
                Err(()),
                Err(()),
                Err(()),
                Ok((Some(Disabled), &[BlockConnections])),
                Ok((
                    Some(Retired),
                    &[BlockConnections, RevokeCredentials, ArchiveTwin],
                )),
                Err(()),
                Ok((None, &[BlockConnections, RevokeCredentials, RemoveRecord])),
            ],
        ),
        (
            Disabled,
            [
                Err(()),
                Err(()),
                Ok((Some(Enabled), &[AllowConnections])),
                Err(()),
                Ok((Some(Retired), &[RevokeCredentials, ArchiveTwin])),
                Err(()),
                Ok((None, &[RevokeCredentials, RemoveRecord])),
            ],
        ),
        (
            Retired,
            [
                Err(()),
                Err(()),
                Err(()),
                Err(()),
                Err(()),
                Ok((Some(Retired), &[TransferTwin])),
                Ok((None, &[RemoveRecord])),
            ],
        ),
    ]
}

#[test]
fn exhaustive_state_event_table() {
    let table = table();
    assert_eq!(table.len(), LifecycleState::ALL.len());
    for ((state, row), expected_state) in table.into_iter().zip(LifecycleState::ALL) {
        assert_eq!(state, expected_state);
        for (event, expected) in events().into_iter().zip(row) {
            let got = state.apply(&event);
            match (expected, got) {
                (Ok((to, effects)), Ok(t)) => {
                    assert_eq!(t.from, state);
                    assert_eq!(t.event, event.kind());
                    assert_eq!(t.to, to, "{state} {event:?}");
                    assert_eq!(t.effects, effects, "{state} {event:?}");
                }
                (
                    Err(()),
                    Err(LifecycleError::IllegalTransition {
                        state: s,
                        event: e,
                        reason,
                    }),
                ) => {
                    assert_eq!(s, state);
                    assert_eq!(e, event.kind());
                    assert!(!reason.is_empty());
                }
                (expected, got) => panic!("{state} {event:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }
}

#[test]
fn effects_keep_the_invariants() {
    // Any legal transition into a state that cannot connect from one that can blocks
    // connections; any transition out of provisioned into unprovisioned revokes credentials.
    for state in LifecycleState::ALL {
        for event in events() {
            let Ok(t) = state.apply(&event) else { continue };
            let connects_after = t.to.is_some_and(LifecycleState::can_connect);
            if state.can_connect() && !connects_after {
                assert!(t.effects.contains(&BlockConnections), "{state} {event:?}");
            }
            if !state.can_connect() && connects_after {
                assert!(t.effects.contains(&AllowConnections), "{state} {event:?}");
            }
            let provisioned_after = t.to.is_some_and(LifecycleState::is_provisioned);
            if state.is_provisioned() && !provisioned_after {
                assert!(t.effects.contains(&RevokeCredentials), "{state} {event:?}");
            }
            if !state.is_provisioned() && provisioned_after {
                assert!(t.effects.contains(&IssueCredentials), "{state} {event:?}");
            }
        }
    }
}

#[test]
fn error_messages_name_state_and_event() {
    let err = Enabled
        .apply(&LifecycleEvent::Provision { enabled: true })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot provision a device in state enabled: already provisioned"
    );
    let err = Retired.apply(&LifecycleEvent::Enable).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("cannot enable a device in state retired"));
}

#[test]
fn state_queries() {
    assert_eq!(
        LifecycleState::ALL.map(LifecycleState::stage),
        [Stage::Plan, Stage::Monitor, Stage::Provision, Stage::Retire]
    );
    assert_eq!(
        LifecycleState::ALL.map(LifecycleState::can_connect),
        [false, true, false, false]
    );
    assert_eq!(
        LifecycleState::ALL.map(LifecycleState::is_provisioned),
        [false, true, true, false]
    );
}

#[test]
fn serde_uses_lower_camel_strings() {
    for state in LifecycleState::ALL {
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, format!("\"{}\"", state.as_str()));
        assert_eq!(
            serde_json::from_str::<LifecycleState>(&json).unwrap(),
            state
        );
        assert_eq!(state.as_str().parse::<LifecycleState>().unwrap(), state);
    }
    assert!(serde_json::from_str::<LifecycleState>("\"Enabled\"").is_err());
    assert_eq!(
        "gone".parse::<LifecycleState>(),
        Err(LifecycleError::UnknownState {
            text: "gone".into()
        })
    );
    let stages: Vec<String> = Stage::ALL
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "\"plan\"",
            "\"provision\"",
            "\"configure\"",
            "\"monitor\"",
            "\"retire\""
        ]
    );
    assert_eq!(
        serde_json::to_string(&EventKind::Replace).unwrap(),
        "\"replace\""
    );
}

#[test]
fn disable_reason_is_limited() {
    let long = LifecycleEvent::Disable {
        reason: "r".repeat(MAX_STATUS_REASON_LEN + 1),
    };
    assert_eq!(
        Enabled.apply(&long),
        Err(LifecycleError::ReasonTooLong {
            len: 129,
            limit: 128
        })
    );
    let ok = LifecycleEvent::Disable {
        reason: "r".repeat(MAX_STATUS_REASON_LEN),
    };
    assert!(Enabled.apply(&ok).is_ok());
}

#[test]
fn record_walks_the_whole_lifecycle() {
    let t = |s| Timestamp::from_unix_secs(s);
    let mut rec = DeviceLifecycle::new(t(0));
    assert_eq!(rec.state(), Planned);

    rec.apply(LifecycleEvent::Provision { enabled: false }, t(1))
        .unwrap();
    assert_eq!((rec.state(), rec.since()), (Disabled, t(1)));
    rec.apply(LifecycleEvent::Enable, t(2)).unwrap();
    rec.apply(
        LifecycleEvent::Disable {
            reason: "battery swap".into(),
        },
        t(3),
    )
    .unwrap();
    assert_eq!(rec.status_reason(), Some("battery swap"));

    // an illegal event leaves the record untouched
    let before = rec.clone();
    assert!(rec
        .apply(LifecycleEvent::Disable { reason: "x".into() }, t(4))
        .is_err());
    assert_eq!(rec, before);

    rec.apply(LifecycleEvent::Enable, t(5)).unwrap();
    assert_eq!(rec.status_reason(), None);
    // with neither reason nor successor the record is back to its small form
    assert_eq!(
        serde_json::to_value(&rec).unwrap(),
        serde_json::json!({"state": "enabled", "statusReason": null, "successor": null, "since": t(5)})
    );
    assert!(std::mem::size_of::<DeviceLifecycle>() <= 24);
    assert!(rec.extra.is_none());
    rec.apply(LifecycleEvent::Retire, t(6)).unwrap();
    assert_eq!(rec.state(), Retired);
    assert_eq!(rec.successor(), None);

    let tr = rec
        .apply(
            LifecycleEvent::Replace {
                successor: successor(),
            },
            t(7),
        )
        .unwrap();
    assert_eq!(tr.successor, Some(successor()));
    assert_eq!(rec.state(), Retired);
    assert_eq!(rec.successor(), Some(&successor()));

    let other = DeviceId::new("pump-3").unwrap();
    assert_eq!(
        rec.apply(LifecycleEvent::Replace { successor: other }, t(8)),
        Err(LifecycleError::AlreadyReplaced {
            successor: successor()
        })
    );

    let before = rec.clone();
    let tr = rec.apply(LifecycleEvent::Delete, t(9)).unwrap();
    assert_eq!(tr.to, None);
    assert_eq!(rec, before);
}

#[test]
fn record_serde_round_trips_and_validates() {
    let mut rec = DeviceLifecycle::new(Timestamp::from_unix_secs(10));
    rec.apply(
        LifecycleEvent::Provision { enabled: true },
        Timestamp::from_unix_secs(11),
    )
    .unwrap();
    let v = serde_json::to_value(&rec).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"state": "enabled", "statusReason": null, "successor": null,
                           "since": "1970-01-01T00:00:11.000Z"})
    );
    assert_eq!(serde_json::from_value::<DeviceLifecycle>(v).unwrap(), rec);

    let bad = serde_json::json!({"state": "enabled", "successor": "pump-2",
                                 "since": "1970-01-01T00:00:11.000Z"});
    let err = serde_json::from_value::<DeviceLifecycle>(bad).unwrap_err();
    assert!(err.to_string().contains("only retired devices"), "{err}");
}
