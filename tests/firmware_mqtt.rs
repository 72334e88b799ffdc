//! Device management end to end against a real `iot-dm hub` process, with devices on the
//! device crate's pattern handlers over MQTT/TLS on 127.0.0.1:
//!
//! * an image uploaded with `iot-dm firmware upload` is installed by a device told to update
//!   through its desired properties (`deviceManagement.firmware`): it downloads the image
//!   from the hub's artifact store over HTTPS with its own SAS token, checks the SHA-256,
//!   applies it, reboots (the simulated reboot reconnects over MQTT), and a twin query shows
//!   it running 2.0.0 with the update `succeeded`;
//! * a device whose request names another digest, and one whose download is corrupted
//!   before verification, each report `integrityFailure` and keep running 1.0.0;
//! * `iot-dm method invoke <id> reboot` is answered 202, the device reconnects and reports
//!   the reboot `succeeded` with `lastReboot`.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use hub_process::HubProcess;
use iot_dm::device::patterns::{FirmwareOptions, MemoryPatternState, SimulatedDevice};
use iot_dm::device::DeviceClient;

/// An api-version the hub's REST API accepts.
const API_VERSION: &str = "2021-04-12";

/// Polls `f` every 100 ms until it gives `Some`, for at most `secs` seconds.
fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `properties.reported.deviceManagement.<pattern>` of `id`'s twin, as `iot-dm twin show`
/// prints it.
fn reported(hub: &HubProcess, id: &str, pattern: &str) -> Value {
    hub.json(&["twin", "show", id])["properties"]["reported"]["deviceManagement"][pattern].clone()
}

/// Waits until `id` reports its firmware update in `state`, and returns the firmware status;
/// another final state fails at once.
fn until_firmware(hub: &HubProcess, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fw = reported(hub, id, "firmware");
        if fw["state"] == state {
            return fw;
        }
        let ended = ["succeeded", "failed", "rolledBack"].map(Value::from);
        assert!(!ended.contains(&fw["state"]), "{id}: not {state} but {fw}");
        assert!(
            Instant::now() < deadline,
            "{id}: firmware not {state} within 60 s; last {fw}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connects `id` over MQTT/TLS with every pattern this test drives enabled: reboot, and
/// firmware downloading into `dir` and trusting only the hub's development CA.
async fn device(hub: &HubProcess, id: &str, sim: &SimulatedDevice, dir: &Path) -> DeviceClient {
    let client = hub.connect(id).await;
    let state = Arc::new(MemoryPatternState::new());
    client
        .enable_reboot(sim.clone(), state.clone())
        .await
        .unwrap();
    let opts = FirmwareOptions::new(dir.join(id))
        .trusted_ca_pem(&std::fs::read(&hub.ca).unwrap())
        .unwrap()
        .progress_interval(Duration::from_millis(50))
        .download_attempts(2, Duration::from_millis(200));
    client
        .enable_firmware(sim.clone(), state, opts)
        .await
        .unwrap();
    client
}

/// The desired patch asking for `version` from `uri`, digest `sha256`, `size` bytes.
fn request(version: &str, uri: &str, sha256: &str, size: usize) -> String {
    json!({"properties": {"desired": {"deviceManagement": {"firmware": {
        "targetVersion": version, "packageUri": uri, "sha256": sha256, "size": size,
    }}}}})
    .to_string()
}

#[test]
fn firmware_update_integrity_failures_and_reboot_over_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(&dir.path().join("hub"));
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // the image, uploaded with the CLI
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let file = dir.path().join("pump-2.0.0.bin");
    std::fs::write(&file, &image).unwrap();
    let uploaded = hub.json(&[
        "firmware",
        "upload",
        file.to_str().unwrap(),
        "--version",
        "2.0.0",
    ]);
    let sha = uploaded["sha256"].as_str().unwrap().to_string();
    assert_eq!(uploaded["size"], image.len());
    let uri = format!(
        "https://localhost:{}/artifacts/{sha}?api-version={API_VERSION}",
        hub.rest_port
    );

    let ids = ["fw-ok", "fw-wrong-sha", "fw-corrupt", "rebooter"];
    for id in ids {
        hub.ok(&["device", "create", id]);
    }
    let sims: Vec<SimulatedDevice> = ids.iter().map(|_| SimulatedDevice::new("1.0.0")).collect();
    sims[2].corrupt_download(true);
    let downloads = dir.path().join("downloads");
    let clients: Vec<DeviceClient> = runtime.block_on(async {
        let mut clients = Vec::new();
        for (id, sim) in ids.iter().zip(&sims) {
            clients.push(device(&hub, id, sim, &downloads).await);
        }
        clients
    });
    for id in ids {
        until(&format!("{id} reports firmware idle"), 30, || {
            let fw = reported(&hub, id, "firmware");
            (fw["state"] == "idle" && fw["currentVersion"] == "1.0.0").then_some(())
        });
    }

    // the good update, through the desired properties
    hub.ok(&[
        "twin",
        "update",
        "fw-ok",
        &request("2.0.0", &uri, &sha, image.len()),
    ]);
    // another digest than the image's: the download completes, the check fails
    let mut wrong = sha.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    hub.ok(&[
        "twin",
        "update",
        "fw-wrong-sha",
        &request("2.0.0", &uri, &wrong, image.len()),
    ]);
    // the right digest, but the device corrupts what it downloaded
    hub.ok(&[
        "twin",
        "update",
        "fw-corrupt",
        &request("2.0.0", &uri, &sha, image.len()),
    ]);

    let fw = until_firmware(&hub, "fw-ok", "succeeded");
    assert_eq!(fw["currentVersion"], "2.0.0", "{fw}");
    assert_eq!(fw["targetVersion"], "2.0.0", "{fw}");
    assert!(fw["result"].is_null(), "{fw}");
    assert_eq!(sims[0].firmware_version(), "2.0.0");
    assert_eq!(sims[0].reboots(), 1, "the update reboots once");
    let rows = hub.json(&[
        "query",
        "SELECT deviceId, properties.reported.deviceManagement.firmware.currentVersion AS running, \
         properties.reported.deviceManagement.firmware.state AS state FROM devices \
         WHERE properties.reported.deviceManagement.firmware.state = 'succeeded'",
    ]);
    assert_eq!(
        rows,
        json!([{"deviceId": "fw-ok", "running": "2.0.0", "state": "succeeded"}])
    );
    assert_eq!(
        hub.json(&["device", "show", "fw-ok"])["connectionState"],
        "Connected"
    );

    for (i, id) in [(1, "fw-wrong-sha"), (2, "fw-corrupt")] {
        let fw = until_firmware(&hub, id, "failed");
        assert_eq!(fw["result"]["code"], "integrityFailure", "{id}: {fw}");
        assert!(
            fw["result"]["message"]
                .as_str()
                .unwrap()
                .contains("sha256 mismatch"),
            "{id}: {fw}"
        );
        assert_eq!(fw["currentVersion"], "1.0.0", "{id}: {fw}");
        assert_eq!(sims[i].firmware_version(), "1.0.0", "{id}");
        assert_eq!(sims[i].reboots(), 0, "{id} does not reboot");
    }
    let rows = hub.json(&[
        "query",
        "SELECT deviceId FROM devices \
         WHERE properties.reported.deviceManagement.firmware.result.code = 'integrityFailure'",
    ]);
    let mut failed: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deviceId"].as_str().unwrap())
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, ["fw-corrupt", "fw-wrong-sha"]);

    // a reboot over a direct method
    let before = reported(&hub, "rebooter", "reboot");
    assert_eq!(before["state"], "idle", "{before}");
    assert!(before["lastReboot"].is_null(), "{before}");
    let answer = hub.json(&[
        "method",
        "invoke",
        "rebooter",
        "reboot",
        "--payload",
        "{}",
        "--timeout",
        "10",
    ]);
    assert_eq!(answer["status"], 202, "{answer}");
    assert_eq!(answer["payload"]["state"], "scheduled", "{answer}");
    let reboot = until("rebooter reports the reboot succeeded", 30, || {
        let r = reported(&hub, "rebooter", "reboot");
        (r["state"] == "succeeded").then_some(r)
    });
    assert!(reboot["lastReboot"].is_string(), "{reboot}");
    assert!(reboot["reason"].is_null(), "{reboot}");
    assert_eq!(sims[3].reboots(), 1, "the device rebooted once");
    assert_eq!(
        hub.json(&["device", "show", "rebooter"])["connectionState"],
        "Connected"
    );
    // and it still answers on the new session
    let again = hub.json(&[
        "method",
        "invoke",
        "rebooter",
        "firmwareUpdate",
        "--payload",
        r#"{"targetVersion": "1.0.0", "packageUri": "https://localhost/x", "sha256": "00"}"#,
        "--timeout",
        "10",
    ]);
    assert_eq!(again["status"], 400, "{again}");

    runtime.block_on(async {
        for client in &clients {
            client.close().await;
        }
    });
    hub.stop();
}
