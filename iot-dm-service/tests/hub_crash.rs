//! An acknowledged write survives kill -9.
//!
//! The test runs its own binary again as a child process that opens a hub on the durable store
//! and performs writes of every kind (registry creates, tag and desired updates, reported
//! patches), concurrently, printing each one after it is acknowledged. The parent kills the
//! child with SIGKILL after a number of acknowledgements, reopens the store, and checks every
//! acknowledged write is there, whether it was in a device record or still in the log.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use iot_dm_core::twin::TwinPatch;
use iot_dm_service::hub::{DeviceSpec, Hub};

const CHILD_ENV: &str = "IOT_DM_CRASH_CHILD_DIR";
const ACKS_BEFORE_KILL: usize = 600;

/// The child: writes until killed.
async fn child(dir: &str) {
    // frequent checkpoints, so they race with the writers
    let hub = Hub::builder()
        .path(format!("{dir}/hub.redb"))
        .checkpoint_interval(Duration::from_millis(20))
        .open()
        .await
        .expect("open hub");
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8u32 {
        let hub = hub.clone();
        tasks.spawn(async move {
            for i in 0..100_000u32 {
                let id = format!("w{w}-{i}");
                hub.create_device(DeviceSpec::new(id.parse().unwrap()))
                    .await
                    .unwrap();
                println!("created {id}");
                let patch: TwinPatch = serde_json::from_value(
                    json!({"tags": {"i": i}, "properties": {"desired": {"d": i}}}),
                )
                .unwrap();
                hub.update_twin(&id, &patch, None).await.unwrap();
                println!("updated {id} {i}");
                let v = hub.patch_reported(&id, &json!({"r": i})).await.unwrap();
                println!("reported {id} {i} {v}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(child(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "acknowledged_writes_survive_kill_9",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked: Vec<String> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("created ")
            || line.starts_with("updated ")
            || line.starts_with("reported ")
        {
            acked.push(line);
        }
        if acked.len() >= ACKS_BEFORE_KILL || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        acked.len() >= ACKS_BEFORE_KILL,
        "child acknowledged only {} writes",
        acked.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt
        .block_on(Hub::builder().path(dir.path().join("hub.redb")).open())
        .expect("reopen after kill -9");
    for line in &acked {
        let parts: Vec<&str> = line.split(' ').collect();
        let id = parts[1];
        let twin = hub.get_twin(id).unwrap_or_else(|e| panic!("{line}: {e}"));
        match parts[0] {
            "created" => {}
            "updated" => {
                let i: i64 = parts[2].parse().unwrap();
                assert_eq!(twin.tags().to_value(), json!({"i": i}), "{line}");
                assert_eq!(twin.desired().doc().to_value(), json!({"d": i}), "{line}");
            }
            "reported" => {
                let i: i64 = parts[2].parse().unwrap();
                let v: u64 = parts[3].parse().unwrap();
                assert!(twin.reported().version() >= v, "{line}");
                assert_eq!(twin.reported().doc().to_value(), json!({"r": i}), "{line}");
            }
            other => panic!("unexpected {other}"),
        }
    }
}
