//! End to end: `iot-dm job ...` against a real `iot-dm hub` process on 127.0.0.1. Twin and
//! method jobs (a device connected over MQTT/TLS answers the methods), show, list, devices,
//! cancel, pause and resume, the canary hold, `--wait` and `job wait` exit codes, and bad
//! input refused before anything is sent.
//!
//! The tool's stdout and stderr are pipes here, so the progress bar stays hidden; the
//! summary must still print, with no terminal escapes in it.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use hub_process::{code, stderr, stdout, HubProcess};
use iot_dm::core::method::MethodResponse;

/// Creates devices with tags.
fn devices(hub: &HubProcess, ids: &[(&str, Value)]) {
    for (id, tags) in ids {
        hub.ok(&["device", "create", id, "--tags", &tags.to_string()]);
    }
}

/// Polls `job show --json` until `pred` holds.
fn until(hub: &HubProcess, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = hub.json(&["job", "show", id]);
        if pred(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id}: no {what} in 30 s: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn twin_jobs_show_list_and_devices() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    devices(
        &hub,
        &[
            ("n1", json!({"site": "north"})),
            ("n2", json!({"site": "north"})),
            ("s1", json!({"site": "south"})),
        ],
    );

    let out = hub.run(&[
        "job",
        "create",
        "fw-north",
        "--query",
        "tags.site = 'north'",
        "--desired",
        r#"{"fw":"2.0"}"#,
        "--etag",
        "*",
        "--max-per-minute",
        "600",
        "--retries",
        "1",
        "--wait",
        "--interval-ms",
        "100",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("created job fw-north (twin update)\n"),
        "{text}"
    );
    assert!(
        text.contains("job fw-north completed: 2 of 2 device(s) succeeded, 0 failed"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "terminal escapes in a pipe: {text:?}"
    );
    let twin = hub.json(&["twin", "show", "n2"]);
    assert_eq!(twin["properties"]["desired"]["fw"], "2.0");
    let twin = hub.json(&["twin", "show", "s1"]);
    assert!(twin["properties"]["desired"].get("fw").is_none(), "{twin}");

    // show: the fields, the policy and the counts
    let shown = hub.ok(&["job", "show", "fw-north"]);
    for needle in [
        "job id          fw-north",
        "type            twin update (scheduleUpdateTwin)",
        "status          completed",
        "query           tags.site = 'north'",
        "rate            600/min",
        "retries         1 after failure, 0 after timeout",
        "DEVICES  SUCCEEDED  FAILED  RUNNING  PENDING  CANCELED",
        "2        2          0       0        0        0",
    ] {
        assert!(shown.contains(needle), "{needle:?} not in\n{shown}");
    }
    let job = hub.json(&["job", "show", "fw-north"]);
    assert_eq!(job["deviceJobStatistics"]["succeededCount"], 2);
    assert_eq!(job["rolloutPolicy"]["rate"]["maxPerMinute"], 600);

    // a second job, from a file, without waiting
    let file = dir.path().join("job.json");
    std::fs::write(
        &file,
        json!({"type": "scheduleUpdateTwin", "queryCondition": "*",
               "updateTwin": {"tags": {"fleet": "a"}}})
        .to_string(),
    )
    .unwrap();
    let created = hub.json(&["job", "create", "tag-all", "--file", file.to_str().unwrap()]);
    assert_eq!(created["jobId"], "tag-all");
    assert_eq!(created["status"], "queued");
    // --json: only the ended job on stdout
    let out = hub.run(&["--json", "job", "wait", "tag-all", "--interval-ms", "100"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ended: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(ended["status"], "completed");
    assert_eq!(ended["deviceJobStatistics"]["succeededCount"], 3);

    // list, filtered
    let table = hub.ok(&["job", "list"]);
    assert!(table.starts_with("JOB ID"), "{table}");
    assert!(
        table.contains("fw-north") && table.contains("tag-all"),
        "{table}"
    );
    assert!(table.ends_with("2 job(s)\n"), "{table}");
    let listed = hub.json(&["job", "list", "--type", "twin", "--status", "completed"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let listed = hub.json(&["job", "list", "--type", "method"]);
    assert_eq!(listed, json!([]));
    let out = hub.run(&["job", "list", "--status", "sleeping"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--status"), "{}", stderr(&out));

    // the device records
    let table = hub.ok(&["job", "devices", "fw-north"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("DEVICE ID  STATUS     START"),
        "{table}"
    );
    assert!(lines[0].ends_with("METHOD STATUS  ERROR CODE"), "{table}");
    assert!(lines[1].starts_with("n1         completed"), "{table}");
    assert!(lines[2].starts_with("n2         completed"), "{table}");
    assert_eq!(lines[3], "2 device(s)");
    let recs = hub.json(&["job", "devices", "tag-all", "--status", "completed"]);
    assert_eq!(recs.as_array().unwrap().len(), 3);
    let recs = hub.json(&["job", "devices", "tag-all", "--status", "failed"]);
    assert_eq!(recs, json!([]));
}

#[test]
fn method_jobs_with_a_connected_device() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    devices(
        &hub,
        &[
            ("pump-1", json!({"kind": "pump"})),
            ("pump-2", json!({"kind": "pump"})),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clients = runtime.block_on(async {
        let mut clients = Vec::new();
        for id in ["pump-1", "pump-2"] {
            let client = hub.connect(id).await;
            client.on_method("reboot", |call| async move {
                MethodResponse::new(200, json!({"rebootingIn": call.payload["delay"]})).unwrap()
            });
            client.on_method("brick", |_| async move {
                MethodResponse::new(500, json!({"error": "no"})).unwrap()
            });
            clients.push(client);
        }
        clients
    });

    // a method every device answers: exit 0, the answers in the records
    let out = hub.run(&[
        "job",
        "create",
        "reboot-pumps",
        "--query",
        "tags.kind = 'pump'",
        "--method",
        "reboot",
        "--payload",
        r#"{"delay":3}"#,
        "--response-timeout",
        "10",
        "--connect-timeout",
        "5",
        "--max-execution-time",
        "120",
        "--wait",
        "--interval-ms",
        "100",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("job reboot-pumps completed: 2 of 2 device(s) succeeded, 0 failed"),
        "{}",
        stdout(&out)
    );
    let table = hub.ok(&["job", "devices", "reboot-pumps"]);
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("pump-1     completed"), "{table}");
    assert!(row.trim_end().ends_with("200"), "{table}");
    let recs = hub.json(&["job", "devices", "reboot-pumps"]);
    assert_eq!(
        recs[1]["outcome"]["deviceMethodResponse"],
        json!({"status": 200, "payload": {"rebootingIn": 3}})
    );
    let shown = hub.ok(&["job", "show", "reboot-pumps"]);
    assert!(
        shown.contains("method          reboot {\"delay\":3} (answer within 10 s)"),
        "{shown}"
    );

    // the devices answer 500: without an abort criterion the job completes (exit 0) ...
    let out = hub.run(&[
        "job",
        "create",
        "brick-1",
        "--query",
        "deviceId = 'pump-1'",
        "--method",
        "brick",
        "--wait",
        "--interval-ms",
        "100",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("job brick-1 completed: 0 of 1 device(s) succeeded, 1 failed"),
        "{}",
        stdout(&out)
    );
    let table = hub.ok(&["job", "devices", "brick-1", "--status", "failed"]);
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("pump-1     failed"), "{table}");
    assert!(
        row.trim_end()
            .ends_with("500            DeviceMethodFailed"),
        "{table}"
    );

    // ... with one, the rollout aborts: the job fails, exit 1, with the reason
    let out = hub.run(&[
        "job",
        "create",
        "brick-all",
        "--query",
        "*",
        "--method",
        "brick",
        "--abort-failure-percent",
        "50",
        "--abort-min-devices",
        "1",
        "--max-per-minute",
        "1",
        "--wait",
        "--interval-ms",
        "100",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("job brick-all failed"), "{text}");
    assert!(text.contains("failure reason: RolloutAborted"), "{text}");
    assert!(
        text.contains("status message: abort criterion 0 held"),
        "{text}"
    );
    assert!(
        stderr(&out)
            .contains("error: job brick-all failed: RolloutAborted: abort criterion 0 held"),
        "{}",
        stderr(&out)
    );
    let job = hub.json(&["job", "show", "brick-all"]);
    assert_eq!(job["status"], "failed");
    let out = hub.run(&["job", "wait", "brick-all"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    runtime.block_on(async {
        for c in clients {
            c.close().await;
        }
    });
}

#[test]
fn cancel_pause_resume_and_the_canary() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    devices(
        &hub,
        &[
            ("a", json!({"ring": 1})),
            ("b", json!({"ring": 1})),
            ("c", json!({"ring": 1})),
        ],
    );

    // one device a minute: --wait gives up after a second, exit 1, the job goes on
    let out = hub.run(&[
        "job",
        "create",
        "slow",
        "--query",
        "*",
        "--tags",
        r#"{"done":true}"#,
        "--max-per-minute",
        "1",
        "--wait",
        "--wait-timeout",
        "1",
        "--interval-ms",
        "100",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("job slow is still running after 1 s"),
        "{}",
        stderr(&out)
    );
    until(&hub, "slow", "first device", |j| {
        j["deviceJobStatistics"]["succeededCount"] == 1
    });

    let paused = hub.json(&["job", "pause", "slow"]);
    assert_eq!(paused["statusMessage"], "paused");
    let shown = hub.ok(&["job", "show", "slow"]);
    assert!(shown.contains("status message  paused"), "{shown}");
    let resumed = hub.json(&["job", "resume", "slow"]);
    assert!(resumed.get("statusMessage").is_none(), "{resumed}");
    assert_eq!(resumed["status"], "running");

    let cancelled = hub.ok(&["job", "cancel", "slow"]);
    assert!(
        cancelled.contains("status          cancelled"),
        "{cancelled}"
    );
    let out = hub.run(&["job", "wait", "slow"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("job slow cancelled: 1 of 3 device(s) succeeded, 0 failed, 2 canceled"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("error: job slow cancelled"),
        "{}",
        stderr(&out)
    );
    let canceled = hub.json(&["job", "devices", "slow", "--status", "canceled"]);
    assert_eq!(canceled.as_array().unwrap().len(), 2);

    // a job that starts in the future is scheduled until then; cancel it
    hub.ok(&[
        "job",
        "create",
        "later",
        "--query",
        "*",
        "--tags",
        r#"{"x":1}"#,
        "--start-time",
        "2099-01-01T00:00:00Z",
    ]);
    until(&hub, "later", "scheduled status", |j| {
        j["status"] == "scheduled"
    });
    let listed = hub.json(&["job", "list", "--status", "scheduled"]);
    assert_eq!(listed[0]["jobId"], "later");
    assert_eq!(hub.json(&["job", "cancel", "later"])["status"], "cancelled");

    // a window that is closed now (the devices have no time zone: UTC), and a gate no twin
    // meets: the devices are held back, which the follower shows
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let closed = format!("daily {:02}:00 30", (secs / 3600 + 12) % 24);
    for (id, flag, value, label) in [
        ("win", "--window", closed.as_str(), "3 waiting for a window"),
        ("gated", "--gate", "tags.ready = true", "3 gated"),
    ] {
        hub.ok(&[
            "job",
            "create",
            id,
            "--query",
            "*",
            "--tags",
            r#"{"y":1}"#,
            flag,
            value,
        ]);
        until(&hub, id, "held devices", |j| {
            j["status"] == "running" && j["deviceJobStatistics"]["pendingCount"] == 3
        });
        let held = hub.json(&["job", "devices", id, "--status", "scheduled"]);
        assert_eq!(held.as_array().unwrap().len(), 3, "{held}");
        let out = hub.run(&[
            "job",
            "wait",
            id,
            "--wait-timeout",
            "1",
            "--interval-ms",
            "100",
        ]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("job {id} running: 0 succeeded, 0 failed, {label}")),
            "{}",
            stdout(&out)
        );
        hub.ok(&["job", "cancel", id]);
    }

    // the canary: hold after the first device, until resumed
    hub.ok(&[
        "job",
        "create",
        "canary",
        "--query",
        "tags.ring = 1",
        "--desired",
        r#"{"fw":"3"}"#,
        "--canary",
        "1",
        "--max-per-minute",
        "600",
    ]);
    let held = until(&hub, "canary", "canary hold", |j| {
        j["statusMessage"]
            .as_str()
            .is_some_and(|m| m.starts_with("canary hold"))
    });
    assert_eq!(held["deviceJobStatistics"]["succeededCount"], 1, "{held}");
    assert_eq!(held["status"], "running");
    hub.ok(&["job", "resume", "canary"]);
    let out = hub.run(&["job", "wait", "canary", "--interval-ms", "100"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("job canary completed: 3 of 3 device(s) succeeded"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    devices(&hub, &[("d1", json!({}))]);
    let file = dir.path().join("bad.json");
    std::fs::write(&file, "{\"type\": \"scheduleUpdateTwin\",").unwrap();
    let file = file.to_str().unwrap();
    for (args, needles) in [
        (
            vec!["--query", "*", "--tags", "{}", "--max-per-minute", "0"],
            vec!["--max-per-minute: rolloutPolicy.rate.maxPerMinute must be 1..=1000000"],
        ),
        (
            vec![
                "--query",
                "*",
                "--method",
                "reboot",
                "--response-timeout",
                "1000",
            ],
            vec![
                "--response-timeout",
                "cloudToDeviceMethod.responseTimeoutInSeconds",
            ],
        ),
        (
            vec!["--query", "*", "--tags", "{}", "--window", "sat 24:00 60"],
            vec!["--window", "rolloutPolicy.maintenanceWindows[0].startTime"],
        ),
        (
            vec!["--query", "*", "--tags", "{}", "--gate", "tags.x >"],
            vec!["--gate: rolloutPolicy.gate is not a valid condition"],
        ),
        (
            vec!["--query", "WHERE tags.x = 1", "--tags", "{}"],
            vec!["--query: queryCondition"],
        ),
        (vec!["--tags", "{}"], vec!["--query is required"]),
        (vec!["--query", "*"], vec!["--tags", "--method"]),
        (
            vec!["--query", "*", "--tags", "{oops"],
            vec!["--tags is not valid JSON"],
        ),
        (vec!["--file", file], vec![file, "not valid JSON"]),
    ] {
        let mut all = vec!["job", "create", "bad-job"];
        all.extend(args.iter().copied());
        let out = hub.run(&all);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        for n in needles {
            assert!(
                stderr(&out).contains(n),
                "{args:?}: {n:?} not in {}",
                stderr(&out)
            );
        }
    }
    // a bad job id, and a clap-level refusal
    let out = hub.run(&["job", "create", "bad_id!", "--query", "*", "--tags", "{}"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the job id: jobId is invalid"),
        "{}",
        stderr(&out)
    );
    let out = hub.run(&["job", "create", "j", "--max-per-minute", "lots"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--max-per-minute"),
        "{}",
        stderr(&out)
    );
    // none of these made a job
    assert_eq!(hub.json(&["job", "list"]), json!([]));

    // the hub's refusals: a job that does not exist (exit 4), an id taken (exit 1)
    let out = hub.run(&["job", "show", "bad-job"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let out = hub.run(&["job", "wait", "bad-job"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    hub.ok(&[
        "job",
        "create",
        "once",
        "--query",
        "*",
        "--tags",
        r#"{"a":1}"#,
    ]);
    let out = hub.run(&[
        "job",
        "create",
        "once",
        "--query",
        "*",
        "--tags",
        r#"{"a":1}"#,
    ]);
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hub.json(&["job", "list"]).as_array().unwrap().len(), 1);
}
