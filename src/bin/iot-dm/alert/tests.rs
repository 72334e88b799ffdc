//! The `alert` commands against an in-memory hub, and the rules built from flags.

use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};

use iot_dm::core::alert::{AlertState, Scope, Severity, Threshold};
use iot_dm::service::api::prelude::*;
use iot_dm::service::hub::{DeviceSpec, Hub};

use super::args::AlertCommand;
use super::{put_request, run as run_command, Context};
use crate::cli::{Cli, Command};
use crate::test_util::{hub, run};

const CX: Context<'static> = Context {
    default_by: "iothubowner",
    terminal: false,
};

fn command(argv: &[&str]) -> AlertCommand {
    let mut all = vec!["iot-dm", "alert"];
    all.extend_from_slice(argv);
    match Cli::try_parse_from(all).unwrap().command {
        Command::Alert(c) => c,
        other => panic!("{other:?}"),
    }
}

fn put_args(argv: &[&str]) -> super::args::RulePutArgs {
    let mut all = vec!["rule", "put"];
    all.extend_from_slice(argv);
    match command(&all) {
        AlertCommand::Rule(super::args::RuleCommand::Put(a)) => a,
        other => panic!("{other:?}"),
    }
}

async fn text(hub: &Hub, json: bool, argv: &[&str]) -> String {
    run(json, async |out| {
        run_command(hub, out, command(argv), CX).await
    })
    .await
    .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

#[test]
fn flags_make_the_rule_and_bad_ones_are_named() {
    let r = put_request(&put_args(&[
        "fw-failures",
        "--condition",
        "properties.reported.update.state = 'failed'",
        "--configuration",
        "fw-2-1",
        "--percent",
        "5",
        "--for",
        "60",
        "--severity",
        "critical",
        "--description",
        "the rollout fails",
    ]))
    .unwrap();
    assert_eq!(r.scope, Scope::Configuration("fw-2-1".into()));
    assert_eq!(r.threshold, Threshold::Percent(5.0));
    assert_eq!((r.for_seconds, r.severity), (60, Severity::Critical));
    assert_eq!(r.description, "the rollout fails");
    // a job scope, the default severity
    let j = put_request(&put_args(&[
        "j",
        "--condition",
        "status = 'failed'",
        "--job",
        "j-42",
        "--count",
        "3",
    ]))
    .unwrap();
    assert_eq!(j.scope, Scope::Job("j-42".into()));
    assert_eq!(
        (j.threshold, j.severity),
        (Threshold::Count(3), Severity::Warning)
    );
    // a file, the flags over it
    let file = json!({"condition": "tags.a = 1", "threshold": {"count": 1},
                      "severity": "info", "forSeconds": 5})
    .to_string();
    let f = put_request(&put_args(&["f", "--file", &file, "--for", "9"])).unwrap();
    assert_eq!(
        (f.id.as_str(), f.for_seconds, f.severity),
        ("f", 9, Severity::Info)
    );

    for (argv, needle) in [
        (vec!["r", "--count", "1"], "--condition"),
        (
            vec!["r", "--condition", "tags.a = 1"],
            "--count N or --percent P",
        ),
        (vec!["R", "--condition", "tags.a = 1", "--count", "1"], "id"),
        (
            vec!["r", "--condition", "tags.a = ", "--count", "1"],
            "condition",
        ),
        (
            vec!["r", "--condition", "tags.a = 1", "--percent", "100"],
            "threshold.percent",
        ),
        (
            vec![
                "r",
                "--condition",
                "tags.a = 1",
                "--job",
                "j",
                "--count",
                "1",
            ],
            "only jobId and status",
        ),
        (vec!["r", "--file", "[1]", "--count", "1"], "--file"),
    ] {
        let e = put_request(&put_args(&argv)).unwrap_err();
        assert!(e.to_string().contains(needle), "{argv:?}: {e}");
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE, "{argv:?}: {e}");
    }
    // exclusive flags are refused by the parser
    for argv in [
        ["rule", "put", "r", "--count", "1", "--percent", "2"],
        ["rule", "put", "r", "--job", "a", "--configuration", "b"],
    ] {
        let mut all = vec!["iot-dm", "alert"];
        all.extend_from_slice(&argv);
        assert!(Cli::try_parse_from(all).is_err(), "{argv:?}");
    }
}

/// `alert list` until its --json output satisfies `ok` (at most 5 s).
async fn listed_until(hub: &Hub, argv: &[&str], ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..250 {
        let v: Value = serde_json::from_str(&text(hub, true, argv).await).unwrap();
        last = v.as_array().cloned().unwrap_or_default();
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{argv:?} never got there: {last:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_list_show_ack_watch_and_delete() {
    let hub = hub().await;
    for id in ["d1", "d2"] {
        hub.create_device(DeviceSpec::new(id.parse().unwrap()))
            .await
            .unwrap();
    }
    let put = text(
        &hub,
        false,
        &[
            "rule",
            "put",
            "failed",
            "--condition",
            "tags.health = 'bad'",
            "--count",
            "0",
            "--severity",
            "critical",
        ],
    )
    .await;
    assert!(
        put.lines()
            .any(|l| l.starts_with("threshold") && l.ends_with("> 0 devices")),
        "{put}"
    );
    let listed = text(&hub, false, &["rule", "list"]).await;
    let header = listed.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("CONDITION"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("failed") && l.contains("every device")),
        "{listed}"
    );
    let shown: Value =
        serde_json::from_str(&text(&hub, true, &["rule", "show", "failed"]).await).unwrap();
    assert_eq!(shown["condition"], json!("tags.health = 'bad'"));

    let empty = text(&hub, false, &["list"]).await;
    assert_eq!(empty.lines().count(), 1, "only the header: {empty}");
    let patch = serde_json::from_value(json!({"tags": {"health": "bad"}})).unwrap();
    hub.update_twin("d2", &patch, None).await.unwrap();
    let active = listed_until(&hub, &["list", "--state", "active"], |a| a.len() == 1).await;
    let id = active[0]["id"].as_str().unwrap().to_string();
    let table = text(&hub, false, &["list"]).await;
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains("critical") && row.contains("active") && row.contains("1 of 2"),
        "{table}"
    );

    // acknowledged by the default name, then by --by is refused as a second one
    let acked = text(&hub, false, &["ack", &id]).await;
    assert!(
        acked
            .lines()
            .any(|l| l.starts_with("acknowledged") && l.ends_with("by iothubowner")),
        "{acked}"
    );
    let again: Value =
        serde_json::from_str(&text(&hub, true, &["ack", &id, "--by", "ops"]).await).unwrap();
    assert_eq!(again["acknowledgedBy"], json!("iothubowner"));
    let one = text(&hub, false, &["show", &id]).await;
    assert!(
        one.lines()
            .any(|l| l.starts_with("state") && l.ends_with("active")),
        "{one}"
    );

    // the watch redraws the table when the alert clears
    let hub2 = hub.clone();
    let clear = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let patch = serde_json::from_value(json!({"tags": {"health": "ok"}})).unwrap();
        hub2.update_twin("d2", &patch, None).await.unwrap();
    });
    let watched = text(
        &hub,
        false,
        &[
            "list",
            "--watch",
            "--interval-ms",
            "50",
            "--watch-timeout",
            "3",
        ],
    )
    .await;
    clear.await.unwrap();
    let draws = watched
        .lines()
        .filter(|l| l.starts_with("alerts at "))
        .count();
    assert!(draws >= 2, "{watched}");
    let last = watched.lines().rev().find(|l| l.starts_with(&id)).unwrap();
    assert!(last.contains("cleared"), "{watched}");
    assert!(
        !watched.contains('\x1b'),
        "no terminal escapes in a pipe: {watched:?}"
    );
    assert_eq!(
        hub.list_alerts(Some(AlertState::Cleared))
            .await
            .unwrap()
            .len(),
        1
    );

    let missing = run(false, async |out| {
        run_command(&hub, out, command(&["show", "nope"]), CX).await
    })
    .await
    .unwrap_err();
    assert_eq!(missing.exit_code(), crate::error::EXIT_NOT_FOUND);
    let deleted = text(&hub, false, &["rule", "delete", "failed"]).await;
    assert_eq!(deleted.trim(), "deleted alert rule failed");
    let gone = run(false, async |out| {
        run_command(&hub, out, command(&["rule", "show", "failed"]), CX).await
    })
    .await
    .unwrap_err();
    assert_eq!(gone.exit_code(), crate::error::EXIT_NOT_FOUND, "{gone}");
}
