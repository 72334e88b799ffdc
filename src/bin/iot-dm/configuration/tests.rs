//! The `configuration` commands against an in-memory hub, and the requests built from flags.

use clap::Parser;
use serde_json::json;

use iot_dm::service::api::prelude::*;
use iot_dm::service::hub::DeviceSpec;

use super::args::ConfigurationCommand;
use super::{create_request, run as run_command};
use crate::cli::{Cli, Command};
use crate::test_util::{hub, run};

fn command(argv: &[&str]) -> ConfigurationCommand {
    let mut all = vec!["iot-dm", "configuration"];
    all.extend_from_slice(argv);
    match Cli::try_parse_from(all).unwrap().command {
        Command::Configuration(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn flags_make_the_configuration_and_bad_ones_are_named() {
    let ConfigurationCommand::Create(a) = command(&[
        "create",
        "fan",
        "--target",
        "tags.site = 'north'",
        "--priority",
        "7",
        "--content",
        r#"{"properties.desired.fan": {"speed": 2}}"#,
        "--label",
        "team=a",
        "--metric",
        "ok=SELECT deviceId FROM devices WHERE properties.reported.fan.speed = 2",
    ]) else {
        panic!("create expected")
    };
    let cfg = create_request(&a).unwrap();
    assert_eq!(cfg.priority, 7);
    assert_eq!(cfg.labels["team"], "a");
    assert_eq!(cfg.metric_queries.len(), 1);
    assert_eq!(
        cfg.to_json()["content"]["deviceContent"],
        json!({"properties.desired.fan": {"speed": 2}})
    );

    let base = [
        "create",
        "fan",
        "--target",
        "*",
        "--content",
        r#"{"properties.desired.a": 1}"#,
    ];
    let with = |extra: &[&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    for (argv, needle) in [
        (base[..4].to_vec(), "--content"),
        (vec!["create", "fan", "--content", base[5]], "--target"),
        (
            vec!["create", "Fan", "--target", "*", "--content", base[5]],
            "id",
        ),
        (with(&["--label", "x"]), "--label"),
        (
            with(&["--metric", "m=SELECT COUNT() FROM devices"]),
            "metrics.queries.m",
        ),
        (
            vec![
                "create",
                "fan",
                "--target",
                "*",
                "--content",
                r#"{"tags.a": 1}"#,
            ],
            "content.deviceContent",
        ),
    ] {
        let ConfigurationCommand::Create(a) = command(&argv) else {
            panic!("create expected")
        };
        let e = create_request(&a).unwrap_err();
        assert!(e.to_string().contains(needle), "{argv:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_show_update_list_test_and_delete() {
    let hub = hub().await;
    hub.create_device(DeviceSpec::new("n1".parse().unwrap()))
        .await
        .unwrap();
    let printed = run(false, async |out| {
        run_command(
            &hub,
            out,
            command(&[
                "create",
                "fan",
                "--target",
                "*",
                "--content",
                r#"{"properties.desired.fan": 1}"#,
                "--metric",
                "fast=SELECT deviceId FROM devices WHERE properties.desired.fan = 1",
            ]),
        )
        .await
    })
    .await
    .unwrap();
    assert!(
        printed.contains("METRIC") && printed.contains("targetedCount"),
        "{printed}"
    );
    hub.configurations_applied().await.unwrap();

    let shown = run(false, async |out| {
        run_command(&hub, out, command(&["show", "fan"])).await
    })
    .await
    .unwrap();
    let row = shown
        .lines()
        .find(|l| l.starts_with("appliedCount"))
        .unwrap();
    assert!(row.contains("system") && row.contains(" 1 "), "{shown}");
    let row = shown.lines().find(|l| l.starts_with("fast")).unwrap();
    assert!(row.contains("custom") && row.contains(" 1 "), "{shown}");

    let json_out = run(true, async |out| {
        run_command(
            &hub,
            out,
            command(&["update", "fan", "--priority", "9", "--label", "a=b"]),
        )
        .await
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(
        (v["priority"].clone(), v["labels"].clone()),
        (json!(9), json!({"a": "b"}))
    );

    let listed = run(false, async |out| {
        run_command(&hub, out, command(&["list"])).await
    })
    .await
    .unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("fan") && l.contains(" 9 ")),
        "{listed}"
    );

    let tested = run(false, async |out| {
        run_command(
            &hub,
            out,
            command(&[
                "test",
                "--target",
                "tags.x = ",
                "--metric",
                "ok=SELECT * FROM devices",
            ]),
        )
        .await
    })
    .await
    .unwrap();
    assert!(
        tested
            .lines()
            .any(|l| l.starts_with("metric ok") && l.trim_end().ends_with("ok")),
        "{tested}"
    );
    assert!(
        tested
            .lines()
            .any(|l| l.starts_with("targetCondition") && !l.trim_end().ends_with("ok")),
        "{tested}"
    );

    let watched = run(false, async |out| {
        run_command(
            &hub,
            out,
            command(&[
                "show",
                "fan",
                "--watch",
                "--interval-ms",
                "50",
                "--watch-timeout",
                "0",
            ]),
        )
        .await
    })
    .await
    .unwrap();
    assert!(watched.contains("appliedCount"), "{watched}");

    let stale = run(false, async |out| {
        run_command(&hub, out, command(&["delete", "fan", "--etag", "\"old\""])).await
    })
    .await;
    assert!(stale.is_err());
    run(false, async |out| {
        run_command(&hub, out, command(&["delete", "fan"])).await
    })
    .await
    .unwrap();
    assert!(hub.list_configurations(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rollout_policy_is_shown_as_a_table_and_paused_and_resumed() {
    let hub = hub().await;
    hub.create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    let created = run(false, async |out| {
        run_command(
            &hub,
            out,
            command(&[
                "create",
                "fw",
                "--target",
                "*",
                "--content",
                r#"{"properties.desired.fw": "2"}"#,
                "--rollout-policy",
                r#"{"rate": {"maxPerMinute": 5}}"#,
            ]),
        )
        .await
    })
    .await
    .unwrap();
    assert!(created.contains("ROLLOUT"), "{created}");
    let paused = run(false, async |out| {
        run_command(&hub, out, command(&["pause", "fw"])).await
    })
    .await
    .unwrap();
    let state = paused.lines().find(|l| l.starts_with("state")).unwrap();
    assert!(state.contains("paused"), "{paused}");
    let resumed = run(true, async |out| {
        run_command(&hub, out, command(&["resume", "fw"])).await
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(v["rolloutStatus"]["state"], "running", "{v}");
    // a bad policy is refused with its field named, before anything is sent
    let ConfigurationCommand::Create(a) = command(&[
        "create",
        "bad",
        "--target",
        "*",
        "--content",
        r#"{"properties.desired.fw": "2"}"#,
        "--rollout-policy",
        r#"{"rate": {"maxPerMinute": 0}}"#,
    ]) else {
        panic!("create expected")
    };
    let e = create_request(&a).unwrap_err();
    assert!(
        e.to_string().contains("rolloutPolicy.rate.maxPerMinute"),
        "{e}"
    );
    // pausing one without a policy says why
    let plain = run(false, async |out| {
        run_command(
            &hub,
            out,
            command(&[
                "create",
                "plain",
                "--target",
                "*",
                "--content",
                r#"{"properties.desired.x": 1}"#,
            ]),
        )
        .await
    })
    .await;
    assert!(plain.is_ok());
    let e = run(false, async |out| {
        run_command(&hub, out, command(&["pause", "plain"])).await
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("rolloutPolicy"), "{e}");
}
