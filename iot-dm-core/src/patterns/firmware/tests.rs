use super::*;
use crate::patterns::test_util::*;
use proptest::prelude::*;
use serde_json::json;
use FirmwareEvent as E;

fn failure(code: FirmwareResultCode, message: &str) -> FirmwareFailure {
    FirmwareFailure::new(code, message).unwrap()
}

fn fresh() -> FirmwareStatus {
    FirmwareStatus::new(Some("1.9.0"), t(0)).unwrap()
}

fn run(status: &mut FirmwareStatus, events: impl IntoIterator<Item = FirmwareEvent>) {
    for (i, e) in events.into_iter().enumerate() {
        let name = e.as_str();
        status
            .apply(e, t(100 + i64::try_from(i).unwrap()))
            .unwrap_or_else(|err| panic!("step {i} ({name}): {err}"));
    }
}

#[test]
fn state_json_examples() {
    let at = |secs: i64| json!(t(secs).to_string());
    let mut s = fresh();
    assert_eq!(
        s.to_json(),
        json!({"state": "idle", "currentVersion": "1.9.0", "targetVersion": null,
               "progress": null, "bytesDownloaded": null, "totalBytes": null,
               "result": null, "lastUpdated": at(0)})
    );
    s.apply(
        E::Start {
            request: fw_request("2.0.1", 1000),
        },
        t(1),
    )
    .unwrap();
    s.apply(E::Progress { bytes: 420 }, t(2)).unwrap();
    assert_eq!(
        s.to_json(),
        json!({"state": "downloading", "currentVersion": "1.9.0", "targetVersion": "2.0.1",
               "progress": 42, "bytesDownloaded": 420, "totalBytes": 1000,
               "result": null, "lastUpdated": at(2)})
    );
    s.apply(
        E::Fail(failure(
            FirmwareResultCode::IntegrityFailure,
            "sha256 mismatch",
        )),
        t(3),
    )
    .unwrap();
    assert_eq!(
        s.to_json(),
        json!({"state": "failed", "currentVersion": "1.9.0", "targetVersion": "2.0.1",
               "progress": null, "bytesDownloaded": null, "totalBytes": null,
               "result": {"code": "integrityFailure", "message": "sha256 mismatch"},
               "lastUpdated": at(3)})
    );
    let samples = firmware_samples();
    let succeeded = samples
        .iter()
        .find(|s| s.state() == &FirmwareState::Succeeded)
        .unwrap();
    assert_eq!(succeeded.to_json()["currentVersion"], json!("2.0.1"));
    assert_eq!(succeeded.to_json()["targetVersion"], json!("2.0.1"));
    assert_eq!(succeeded.to_json()["result"], Value::Null);
    let rolled = samples
        .iter()
        .find(|s| matches!(s.state(), FirmwareState::RolledBack(_)))
        .unwrap();
    assert_eq!(
        rolled.to_json()["result"],
        json!({"code": "updateFailed", "message": ""})
    );
    assert_eq!(rolled.current_version(), Some("2.0.1"));
    assert_eq!(rolled.target_version(), Some("2.2.0"));
}

/// One sample per state, in the order idle, downloading, downloaded, verifying, applying,
/// rebooting, succeeded, failed, rolledBack.
fn one_per_state() -> Vec<FirmwareStatus> {
    let order = [
        "idle",
        "downloading",
        "downloaded",
        "verifying",
        "applying",
        "rebooting",
        "succeeded",
        "failed",
        "rolledBack",
    ];
    let samples = firmware_samples();
    order
        .iter()
        .map(|name| {
            samples
                .iter()
                .find(|s| s.state().as_str() == *name)
                .unwrap()
                .clone()
        })
        .collect()
}

fn all_events() -> Vec<FirmwareEvent> {
    vec![
        E::Start {
            request: fw_request("3.0.0", 1000),
        },
        E::Progress { bytes: 1000 },
        E::DownloadComplete,
        E::Verify,
        E::Apply,
        E::Reboot,
        E::Succeed,
        E::Fail(failure(FirmwareResultCode::OutOfStorage, "disk full")),
        E::RollBack(failure(FirmwareResultCode::UpdateFailed, "watchdog")),
        E::Cancel,
        E::Clear,
        E::AlreadyInstalled {
            request: fw_request("3.0.0", 1000),
        },
    ]
}

#[test]
fn transition_table() {
    // columns: start progress downloadComplete verify apply reboot succeed fail rollBack cancel
    // clear alreadyInstalled
    let x = true;
    let o = false;
    let table = [
        [x, o, o, o, o, o, o, o, o, o, o, x], // idle
        [o, x, x, o, o, o, o, x, o, x, o, o], // downloading
        [o, o, o, x, o, o, o, x, o, x, o, o], // downloaded
        [o, o, o, o, x, o, o, x, x, x, o, o], // verifying
        [o, o, o, o, o, x, x, x, x, o, o, o], // applying
        [o, o, o, o, o, o, x, x, x, o, o, o], // rebooting
        [x, o, o, o, o, o, o, o, o, o, x, x], // succeeded
        [x, o, o, o, o, o, o, o, o, o, x, x], // failed
        [x, o, o, o, o, o, o, o, o, o, x, x], // rolledBack
    ];
    for (status, row) in one_per_state().iter().zip(table) {
        for (event, legal) in all_events().into_iter().zip(row) {
            let mut s = status.clone();
            let name = event.as_str();
            let got = s.apply(event, t(5_000));
            if legal {
                assert!(got.is_ok(), "{} {name}: {got:?}", status.state().as_str());
                assert_eq!(s.updated(), t(5_000));
            } else {
                assert_eq!(
                    got,
                    Err(PatternError::IllegalTransition {
                        pattern: "firmware",
                        state: status.state().as_str(),
                        event: name,
                    }),
                    "{} {name}",
                    status.state().as_str()
                );
                assert_eq!(&s, status);
            }
        }
    }
}

#[test]
fn progress_is_monotonic_and_bounded() {
    let mut s = fresh();
    s.apply(
        E::Start {
            request: fw_request("2.0.1", 1000),
        },
        t(1),
    )
    .unwrap();
    s.apply(E::Progress { bytes: 999 }, t(2)).unwrap();
    assert!(matches!(
        s.state(),
        FirmwareState::Downloading {
            progress: 99,
            bytes_downloaded: 999,
            total_bytes: 1000
        }
    ));
    s.apply(E::Progress { bytes: 999 }, t(3)).unwrap(); // equal is fine
    let before = s.clone();
    assert_eq!(
        s.apply(E::Progress { bytes: 998 }, t(4)),
        Err(PatternError::ProgressBackwards { from: 999, to: 998 })
    );
    assert_eq!(
        s.apply(E::Progress { bytes: 1001 }, t(4)),
        Err(PatternError::DownloadOverrun {
            bytes: 1001,
            size: 1000
        })
    );
    assert_eq!(s, before);
    s.apply(E::Progress { bytes: 1000 }, t(5)).unwrap();
    assert!(matches!(
        s.state(),
        FirmwareState::Downloading { progress: 100, .. }
    ));

    // a new download starts over at zero
    s.apply(
        E::Fail(failure(FirmwareResultCode::ConnectionLost, "")),
        t(6),
    )
    .unwrap();
    s.apply(
        E::Start {
            request: fw_request("2.0.1", u64::MAX >> 12),
        },
        t(7),
    )
    .unwrap();
    s.apply(E::Progress { bytes: 10 }, t(8)).unwrap();
    assert!(matches!(
        s.state(),
        FirmwareState::Downloading {
            progress: 0,
            bytes_downloaded: 10,
            ..
        }
    ));
    assert_eq!(percent(u64::MAX, u64::MAX), 100);
    assert_eq!(percent(u64::MAX / 2, u64::MAX), 49);
}

#[test]
fn happy_path_with_and_without_reboot() {
    let mut s = fresh();
    run(
        &mut s,
        [
            E::Start {
                request: fw_request("2.0.1", 10),
            },
            E::Progress { bytes: 5 },
            E::Progress { bytes: 10 },
            E::DownloadComplete,
            E::Verify,
            E::Apply,
            E::Reboot,
            E::Succeed,
        ],
    );
    assert_eq!(s.state(), &FirmwareState::Succeeded);
    assert_eq!(s.current_version(), Some("2.0.1"));
    assert_eq!(s.state().lwm2m_state(), 0);

    run(
        &mut s,
        [
            E::Start {
                request: fw_request("2.0.2", 10),
            },
            E::DownloadComplete,
            E::Verify,
            E::Apply,
            E::Succeed,
            E::Clear,
        ],
    );
    assert_eq!(s.state(), &FirmwareState::Idle);
    assert_eq!(s.current_version(), Some("2.0.2"));
    assert_eq!(s.target_version(), None);
}

#[test]
fn failure_paths() {
    // fail from every active state keeps the old version
    let prefixes: Vec<Vec<FirmwareEvent>> = vec![
        vec![],
        vec![E::DownloadComplete],
        vec![E::DownloadComplete, E::Verify],
        vec![E::DownloadComplete, E::Verify, E::Apply],
        vec![E::DownloadComplete, E::Verify, E::Apply, E::Reboot],
    ];
    for prefix in prefixes {
        let mut s = fresh();
        s.apply(
            E::Start {
                request: fw_request("2.0.1", 10),
            },
            t(1),
        )
        .unwrap();
        run(&mut s, prefix);
        assert!(s.state().is_active());
        let f = failure(FirmwareResultCode::OutOfMemory, "oom");
        s.apply(E::Fail(f.clone()), t(50)).unwrap();
        assert_eq!(s.state(), &FirmwareState::Failed(f));
        assert_eq!(s.current_version(), Some("1.9.0"));
        assert_eq!(s.target_version(), Some("2.0.1"));
        // and a new update may start
        s.apply(
            E::Start {
                request: fw_request("2.0.2", 10),
            },
            t(51),
        )
        .unwrap();
        assert_eq!(s.target_version(), Some("2.0.2"));
    }

    // rollback after a failed boot
    let mut s = fresh();
    run(
        &mut s,
        [
            E::Start {
                request: fw_request("2.0.1", 10),
            },
            E::DownloadComplete,
            E::Verify,
            E::Apply,
            E::Reboot,
        ],
    );
    let f = failure(FirmwareResultCode::UpdateFailed, "boot loop");
    s.apply(E::RollBack(f.clone()), t(60)).unwrap();
    assert_eq!(s.state(), &FirmwareState::RolledBack(f));
    assert_eq!(s.current_version(), Some("1.9.0"));
    s.apply(
        E::Start {
            request: fw_request("2.0.3", 10),
        },
        t(61),
    )
    .unwrap();

    // cancel forgets the target
    s.apply(E::Cancel, t(62)).unwrap();
    assert_eq!(s.state(), &FirmwareState::Idle);
    assert_eq!(s.target_version(), None);

    // oversize failure messages are rejected, state unchanged
    let mut s = fresh();
    s.apply(
        E::Start {
            request: fw_request("2.0.1", 10),
        },
        t(1),
    )
    .unwrap();
    let before = s.clone();
    let long = FirmwareFailure {
        code: FirmwareResultCode::UpdateFailed,
        message: "m".repeat(crate::patterns::MAX_TEXT_LEN + 1),
    };
    assert!(matches!(
        s.apply(E::Fail(long), t(2)),
        Err(PatternError::TextTooLong {
            field: "result.message",
            ..
        })
    ));
    assert_eq!(s, before);
}

#[test]
fn result_codes() {
    let names: Vec<String> = FirmwareResultCode::ALL
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "integrityFailure",
            "outOfStorage",
            "outOfMemory",
            "connectionLost",
            "invalidUri",
            "unsupportedPackage",
            "unsupportedProtocol",
            "updateFailed"
        ]
    );
    for c in FirmwareResultCode::ALL {
        assert_eq!(c.as_str().parse::<FirmwareResultCode>().unwrap(), c);
        assert_eq!(c.to_string(), c.as_str());
        assert_eq!(
            FirmwareResultCode::from_lwm2m_update_result(c.lwm2m_update_result()),
            Some(c)
        );
    }
    let mut lwm2m: Vec<u8> = FirmwareResultCode::ALL
        .iter()
        .map(|c| c.lwm2m_update_result())
        .collect();
    lwm2m.sort_unstable();
    assert_eq!(lwm2m, [2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(FirmwareResultCode::from_lwm2m_update_result(1), None);
    assert!("success".parse::<FirmwareResultCode>().is_err());
}

#[test]
fn lwm2m_states() {
    let got: Vec<u8> = one_per_state()
        .iter()
        .map(|s| s.state().lwm2m_state())
        .collect();
    assert_eq!(got, [0, 1, 2, 2, 3, 3, 0, 0, 0]);
}

#[test]
fn parse_errors_are_typed() {
    let downloading = one_per_state()[1].to_json();
    let with = |base: &Value, k: &str, v: Value| {
        let mut j = base.clone();
        j[k] = v;
        j
    };
    let path = |f: &str| format!("deviceManagement.firmware.{f}");
    assert_eq!(
        FirmwareStatus::from_json(&with(&downloading, "progress", json!(101))),
        Err(PatternError::InvalidField {
            path: path("progress"),
            expected: "an integer from 0 to 100"
        })
    );
    assert_eq!(
        FirmwareStatus::from_json(&with(&downloading, "bytesDownloaded", json!(1_000_000))),
        Err(PatternError::InvalidField {
            path: path("bytesDownloaded"),
            expected: "at most totalBytes"
        })
    );
    assert_eq!(
        FirmwareStatus::from_json(&with(&downloading, "totalBytes", Value::Null)),
        Err(PatternError::MissingField {
            path: path("totalBytes")
        })
    );
    assert_eq!(
        FirmwareStatus::from_json(&with(&downloading, "targetVersion", Value::Null)),
        Err(PatternError::MissingField {
            path: path("targetVersion")
        })
    );
    assert!(matches!(
        FirmwareStatus::from_json(&with(&downloading, "currentVersion", json!(""))),
        Err(PatternError::EmptyText {
            field: "currentVersion"
        })
    ));

    let failed = one_per_state()[7].to_json();
    assert_eq!(
        FirmwareStatus::from_json(&with(&failed, "result", Value::Null)),
        Err(PatternError::MissingField {
            path: path("result")
        })
    );
    assert_eq!(
        FirmwareStatus::from_json(&with(&failed, "result", json!({"code": "meltdown"}))),
        Err(PatternError::UnknownValue {
            path: path("result.code"),
            value: "meltdown".into(),
            expected: CODES
        })
    );
    // a missing message reads as empty
    let parsed =
        FirmwareStatus::from_json(&with(&failed, "result", json!({"code": "invalidUri"}))).unwrap();
    assert_eq!(
        parsed.state(),
        &FirmwareState::Failed(failure(FirmwareResultCode::InvalidUri, ""))
    );
    assert!(matches!(
        FirmwareStatus::from_json(&with(&failed, "state", json!("bricked"))),
        Err(PatternError::UnknownValue { .. })
    ));
}

#[test]
fn initial_version_is_validated() {
    assert!(FirmwareStatus::new(Some(""), t(0)).is_err());
    assert!(FirmwareStatus::new(Some("1.0\u{7}"), t(0)).is_err());
    assert_eq!(
        FirmwareStatus::new(None, t(0)).unwrap().current_version(),
        None
    );
}

fn event_strategy() -> impl Strategy<Value = FirmwareEvent> {
    let code = proptest::sample::select(FirmwareResultCode::ALL.to_vec());
    prop_oneof![
        (1u64..2_000).prop_map(|size| E::Start {
            request: fw_request("9.9.9", size)
        }),
        (0u64..2_000).prop_map(|bytes| E::Progress { bytes }),
        Just(E::DownloadComplete),
        Just(E::Verify),
        Just(E::Apply),
        Just(E::Reboot),
        Just(E::Succeed),
        (code.clone(), ".{0,8}").prop_map(|(c, m)| E::Fail(FirmwareFailure {
            code: c,
            message: m
        })),
        (code, ".{0,8}").prop_map(|(c, m)| E::RollBack(FirmwareFailure {
            code: c,
            message: m
        })),
        Just(E::Cancel),
        Just(E::Clear),
        Just(E::AlreadyInstalled {
            request: fw_request("9.9.9", 10)
        }),
    ]
}

#[test]
fn already_installed_succeeds_without_a_download() {
    let mut s = fresh();
    s.apply(
        E::AlreadyInstalled {
            request: fw_request("1.9.0", 10),
        },
        t(7),
    )
    .unwrap();
    assert_eq!(s.state(), &FirmwareState::Succeeded);
    assert_eq!(s.current_version(), Some("1.9.0"));
    assert_eq!(s.target_version(), Some("1.9.0"));
    assert_eq!(s.to_json()["progress"], json!(null));
    assert_eq!(FirmwareStatus::from_json(&s.to_json()).unwrap(), s);
}

proptest! {
    #[test]
    fn random_event_sequences_keep_the_laws(
        events in proptest::collection::vec(event_strategy(), 0..40)
    ) {
        let mut s = fresh();
        let mut reported = json!({});
        merge_patch(&mut reported, &s.to_patch());
        for (i, e) in events.into_iter().enumerate() {
            let before = s.clone();
            let now = t(i64::try_from(i).unwrap());
            match s.apply(e, now) {
                Ok(()) => {
                    prop_assert_eq!(s.updated(), now);
                    if let (
                        FirmwareState::Downloading { bytes_downloaded: a, total_bytes: ta, .. },
                        FirmwareState::Downloading { bytes_downloaded: b, total_bytes: tb, .. },
                    ) = (before.state(), s.state()) {
                        prop_assert!(b >= a && ta == tb);
                    }
                    if !matches!(s.state(), FirmwareState::Idle) {
                        prop_assert!(s.target_version().is_some());
                    }
                }
                Err(_) => prop_assert_eq!(&s, &before),
            }
            prop_assert_eq!(&FirmwareStatus::from_json(&s.to_json()).unwrap(), &s);
            merge_patch(&mut reported, &s.to_patch());
            prop_assert_eq!(FirmwareStatus::from_reported(&reported).unwrap(), Some(s.clone()));
        }
    }
}
