//! End to end: `iot-dm events` against a real `iot-dm hub` process on 127.0.0.1: the JSON
//! lines of retained events with `--since` and `--limit` (the `lost` line first: a fresh
//! hub's numbering starts far above 0), the human-readable lines of the live stream, and bad
//! input refused before anything is sent.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use hub_process::{code, stderr, stdout, HubProcess};

#[test]
fn json_lines_of_retained_events_then_the_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    hub.ok(&["device", "create", "e1"]);
    hub.ok(&["device", "create", "e2"]);

    let out = hub.run(&[
        "events",
        "--json",
        "--since",
        "0",
        "--limit",
        "3",
        "--types",
        "identity.created",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[0]["type"], "lost");
    assert_eq!(lines[0]["reason"], "retention");
    assert_eq!(lines[0]["after"], 0);
    let first = lines[0]["next"].as_u64().unwrap();
    assert_eq!(lines[1]["type"], "identity.created");
    assert_eq!(lines[1]["deviceId"], "e1");
    assert_eq!(
        lines[1]["id"], first,
        "the first retained event follows the signal"
    );
    assert_eq!(lines[2]["deviceId"], "e2");

    // resuming after e1's event skips it and loses nothing
    let since = lines[1]["id"].as_u64().unwrap().to_string();
    let again = hub.json(&[
        "events",
        "--since",
        &since,
        "--limit",
        "1",
        "--types",
        "identity.created",
    ]);
    assert_eq!(again["deviceId"], "e2");

    // the live stream, human readable: a device created while it is open
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) && n < 100 {
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
                hub.ok(&["device", "create", &format!("live-{n}")]);
            }
        });
        let out = hub.run(&[
            "events",
            "--follow",
            "--limit",
            "1",
            "--types",
            "identity.created",
        ]);
        done.store(true, Ordering::Relaxed);
        out
    });
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().next().unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields[0].ends_with('Z'), "{line}");
    assert_eq!(fields[1], "identity.created", "{line}");
    assert!(fields[2].starts_with("live-"), "{line}");
    assert_eq!(text.lines().count(), 1, "{text}");
    hub.stop();
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    let out = hub.run(&["events"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--follow"), "{}", stderr(&out));
    let out = hub.run(&["events", "--limit", "1", "--types", "twin.changed,nope"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let out = hub.run(&["events", "--limit", "1", "--devices", "tags.x ="]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--devices"), "{}", stderr(&out));
    let out = hub.run(&["events", "--limit", "0"]);
    assert_eq!(code(&out), 2);
    hub.stop();
}
