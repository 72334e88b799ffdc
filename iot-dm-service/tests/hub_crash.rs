//! An acknowledged write survives kill -9.
//!
//! The test runs its own binary again as a child process that opens a hub on the durable store
//! and performs writes of every kind (registry creates, tag and desired updates, reported
//! patches), concurrently, printing each one after it is acknowledged. The parent kills the
//! child with SIGKILL after a number of acknowledgements, reopens the store, and checks every
//! acknowledged write is there, whether it was in a device record or still in the log.
//!
//! A second test does the same with a device session that prints every desired-property
//! notification it is told: after kill -9 the hub must serve at least the greatest desired
//! version the device was told (nothing observable is rolled back by a crash). A third does it
//! with a back end that reads the twin through the API while writers update it: every
//! version a reader was shown is still there after kill -9.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::link::{ConnectRequest, Credentials, DeviceFrame, Endpoint, Message};
use iot_dm_core::twin::TwinPatch;
use iot_dm_core::wire::{self, RequestId, SasToken, SymmetricKey};
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{DeviceSpec, Hub};

const CHILD_ENV: &str = "IOT_DM_CRASH_CHILD_DIR";
const TOLD_CHILD_ENV: &str = "IOT_DM_CRASH_TOLD_CHILD_DIR";
const SEEN_CHILD_ENV: &str = "IOT_DM_CRASH_SEEN_CHILD_DIR";
const TOLD_BEFORE_KILL: usize = 300;
const ACKS_BEFORE_KILL: usize = 600;

/// Runs this test binary again as the child of `test`, with `env` naming the store's folder.
fn spawn_child(
    test: &str,
    env: &str,
    dir: &tempfile::TempDir,
) -> (std::process::Child, std::process::ChildStdout) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    (child, stdout)
}

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
    let (mut child, stdout) = spawn_child("acknowledged_writes_survive_kill_9", CHILD_ENV, &dir);
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

/// The child of the second test: a device session that prints each desired version it is
/// told, while service writers update its desired properties, until killed.
async fn told_child(dir: &str) {
    let hub = Hub::builder()
        .path(format!("{dir}/hub.redb"))
        .open()
        .await
        .expect("open hub");
    let device = hub
        .create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    let key = SymmetricKey::new(device.symmetric_key.primary_key.unwrap()).unwrap();
    let uri = wire::device_resource_uri(hub.host_name(), &device.device_id);
    let token = SasToken::generate(
        &uri,
        &key,
        Timestamp::now() + Duration::from_secs(3600),
        None,
    );
    let mut link = hub
        .connect(ConnectRequest {
            device_id: device.device_id.clone(),
            module_id: None,
            credentials: Credentials::Sas(token.as_str().to_string()),
            clean_session: true,
        })
        .await
        .unwrap();
    link.tx
        .send(DeviceFrame::Subscribe(vec![
            wire::topic::DESIRED_PATCH_FILTER.to_string(),
        ]))
        .await
        .unwrap();
    // a round trip through the session, so the subscription is in place before writes start
    link.tx
        .send(DeviceFrame::Subscribe(vec![
            wire::topic::TWIN_RESPONSE_FILTER.to_string(),
        ]))
        .await
        .unwrap();
    let rid = RequestId::new("1").unwrap();
    link.tx
        .send(DeviceFrame::Publish(Message::new(
            wire::topic::twin_get(&rid),
            "",
        )))
        .await
        .unwrap();
    link.rx.recv().await.unwrap();
    for w in 0..4u32 {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..1_000_000u32 {
                let patch: TwinPatch = serde_json::from_value(
                    json!({"properties": {"desired": {format!("w{w}"): i}}}),
                )
                .unwrap();
                if hub.update_twin("d1", &patch, None).await.is_err() {
                    return;
                }
            }
        });
    }
    while let Some(m) = link.rx.recv().await {
        if let Some(v) = m
            .topic
            .strip_prefix("$iothub/twin/PATCH/properties/desired/?$version=")
        {
            println!("told {v}");
        }
    }
}

#[test]
fn no_desired_version_told_is_lost_by_kill_9() {
    if let Ok(dir) = std::env::var(TOLD_CHILD_ENV) {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(told_child(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut child, stdout) = spawn_child(
        "no_desired_version_told_is_lost_by_kill_9",
        TOLD_CHILD_ENV,
        &dir,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut told = 0;
    let mut greatest = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("told ") {
            greatest = greatest.max(v.parse().unwrap());
            told += 1;
        }
        // kill right after a notification was seen: before the fix, it left before its commit
        if told >= TOLD_BEFORE_KILL || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        told >= TOLD_BEFORE_KILL,
        "the device was told only {told} versions"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt
        .block_on(Hub::builder().path(dir.path().join("hub.redb")).open())
        .expect("reopen after kill -9");
    let served = hub.get_twin("d1").unwrap().desired().version();
    assert!(
        served >= greatest,
        "the device was told desired version {greatest}, the hub serves {served} after kill -9"
    );
}

/// The child of the third test: writers update a twin's tags while a reader reads it through
/// the back-end API and prints each version it is shown, until killed.
async fn seen_child(dir: &str) {
    let hub = Hub::builder()
        .path(format!("{dir}/hub.redb"))
        .open()
        .await
        .expect("open hub");
    hub.create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    for w in 0..4u32 {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..1_000_000u32 {
                let patch: TwinPatch =
                    serde_json::from_value(json!({"tags": {format!("w{w}"): i}})).unwrap();
                if hub.update_twin("d1", &patch, None).await.is_err() {
                    return;
                }
            }
        });
    }
    loop {
        let twin = iot_dm_service::api::TwinApi::get_twin(&hub, "d1")
            .await
            .unwrap();
        println!("seen {}", twin.version());
    }
}

#[test]
fn no_twin_version_a_reader_saw_is_lost_by_kill_9() {
    if let Ok(dir) = std::env::var(SEEN_CHILD_ENV) {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(seen_child(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut child, stdout) = spawn_child(
        "no_twin_version_a_reader_saw_is_lost_by_kill_9",
        SEEN_CHILD_ENV,
        &dir,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut seen, mut greatest) = (0, 0u64);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("seen ") {
            greatest = greatest.max(v.parse().unwrap());
            seen += 1;
        }
        if seen >= TOLD_BEFORE_KILL || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        seen >= TOLD_BEFORE_KILL,
        "the reader was shown only {seen} versions"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt
        .block_on(Hub::builder().path(dir.path().join("hub.redb")).open())
        .expect("reopen after kill -9");
    let served = hub.get_twin("d1").unwrap().version();
    assert!(
        served >= greatest,
        "a reader was shown twin version {greatest}, the hub serves {served} after kill -9"
    );
}
