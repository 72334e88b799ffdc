//! Conformance with the official Azure IoT device SDKs (Node.js and Python).
//!
//! A hub serves MQTT over TLS on 127.0.0.1:8883 (the port the SDKs use) with a development CA;
//! each SDK's device script (`conformance/`) connects with a SAS connection string and walks a
//! fixed sequence, printing a line per step; this harness performs the service side of each
//! step and asserts its outcome. See `conformance/README.md` for the protocol.
//!
//! With `IOT_DM_CONFORMANCE=1` (as `.ci/run` sets after installing the SDKs) a missing SDK is a
//! failure; without it, an SDK that is not installed is skipped with a note.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/ports.rs"]
mod ports;
#[path = "common/sdk_hub.rs"]
mod sdk_hub;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

use iot_dm::core::method::MethodRequest;
use iot_dm::core::twin::TwinPatch;
use iot_dm::service::api::prelude::*;
use iot_dm::service::hub::{generate_key, CloudMessage, Device, DeviceSpec};
use sdk_hub::{SdkHub, HOST};

const STEP_TIMEOUT: Duration = Duration::from_secs(90);

fn required() -> bool {
    std::env::var("IOT_DM_CONFORMANCE").is_ok_and(|v| v == "1")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The command that runs an SDK's device script, if the SDK is installed.
fn sdk_command(sdk: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = root().join("conformance");
    match sdk {
        "node" => {
            let installed = dir.join("node/node_modules/azure-iot-device-mqtt").is_dir();
            installed.then(|| (PathBuf::from("node"), dir.join("node/device.js")))
        }
        "python" => {
            let venv = dir.join("python/.venv/bin/python");
            let python = if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            };
            let ok = std::process::Command::new(&python)
                .args(["-c", "import azure.iot.device"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| (python, dir.join("python/device.py")))
        }
        _ => None,
    }
}

fn connection_string(id: &str, key: &str) -> String {
    format!("HostName={HOST};DeviceId={id};SharedAccessKey={key}")
}

fn key(d: &Device) -> String {
    d.symmetric_key.primary_key.clone().unwrap()
}

async fn run_sdk(sdk: &str, program: &Path, script: &Path) {
    let SdkHub {
        _dir,
        ca_path,
        hub,
        server,
        ..
    } = SdkHub::start().await;

    let id = format!("sdk-{sdk}");
    let device = hub
        .create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
    let off_id = format!("sdk-{sdk}-disabled");
    let off = hub
        .create_device(DeviceSpec::new(off_id.parse().unwrap()).disabled("conformance"))
        .await
        .unwrap();
    let mut telemetry = hub.telemetry();

    let sdk_hub::Script {
        mut child,
        stdout: mut lines,
        stderr,
    } = sdk_hub::spawn_script(
        sdk,
        Command::new(program)
            .arg(script)
            .arg(connection_string(&id, &key(&device)))
            .arg(&ca_path)
            .arg(connection_string(&id, &generate_key().unwrap()))
            .arg(connection_string(&off_id, &key(&off))),
    );
    let expected = [
        "CONNECTED",
        "TWIN",
        "REPORTED",
        "WAIT_DESIRED",
        "DESIRED",
        "WAIT_METHOD",
        "TELEMETRY_SENT",
        "WAIT_C2D",
        "C2D",
        "REFUSED_BAD_KEY",
        "REFUSED_DISABLED",
        "DONE",
    ];
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let line = match tokio::time::timeout(STEP_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => {
                let _ = child.kill().await;
                panic!(
                    "{sdk}: no step after {seen:?} ({other:?}); device stderr:\n{}",
                    stderr.await.unwrap_or_default()
                );
            }
        };
        let (name, data) = match line.split_once(' ') {
            Some((n, d)) => (n.to_string(), serde_json::from_str::<Value>(d).ok()),
            None => (line.clone(), None),
        };
        if name == "FAIL" {
            panic!("{sdk}: the device failed after {seen:?}: {line}");
        }
        if !expected.contains(&name.as_str()) {
            continue; // SDK chatter on stdout
        }
        assert_eq!(
            name,
            expected[seen.len()],
            "{sdk}: steps out of order after {seen:?}"
        );
        eprintln!("{sdk}: {line}");
        match name.as_str() {
            "TWIN" => {
                let d = data.unwrap();
                assert_eq!(
                    (d["desired"].as_u64(), d["reported"].as_u64()),
                    (Some(1), Some(1))
                );
            }
            "REPORTED" => {
                let twin = hub.get_twin(&id).unwrap();
                assert_eq!(
                    twin.reported().doc().to_value(),
                    json!({"sdk": sdk, "n": 1})
                );
            }
            "WAIT_DESIRED" => {
                let patch: TwinPatch =
                    serde_json::from_value(json!({"properties": {"desired": {"fromService": 42}}}))
                        .unwrap();
                hub.update_twin(&id, &patch, None).await.unwrap();
            }
            "DESIRED" => {
                let d = data.unwrap();
                assert_eq!(d["fromService"], 42, "{d}");
                assert_eq!(d["$version"], 2, "{d}");
            }
            "WAIT_METHOD" => {
                let request = MethodRequest::builder("echo")
                    .payload(json!({"x": 1}))
                    .connect_timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let response = hub.invoke_method(&id, &request).await.unwrap();
                assert_eq!(response.status, 200);
                assert_eq!(response.payload, json!({"echo": {"x": 1}, "sdk": sdk}));
            }
            "TELEMETRY_SENT" => {
                let m = tokio::time::timeout(STEP_TIMEOUT, telemetry.recv())
                    .await
                    .expect("telemetry within the timeout")
                    .unwrap();
                assert_eq!(m.device_id.as_str(), id);
                assert_eq!(m.properties.get("kind"), Some(Some("conformance")));
                assert_eq!(m.properties.content_type(), Some("application/json"));
                let body: Value = serde_json::from_slice(&m.body).unwrap();
                assert_eq!(body, json!({"temperature": 21.5}));
            }
            "WAIT_C2D" => {
                hub.send_c2d(
                    &id,
                    CloudMessage::new("hello from the hub").property("k", "v"),
                )
                .await
                .unwrap();
            }
            "C2D" => {
                assert_eq!(data.unwrap(), json!("hello from the hub"));
                let mut done = false;
                for _ in 0..200 {
                    if hub
                        .get_twin(&id)
                        .unwrap()
                        .identity
                        .cloud_to_device_message_count
                        == 0
                    {
                        done = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert!(done, "{sdk}: the message was not completed");
            }
            _ => {}
        }
        seen.push(name);
    }
    let status = tokio::time::timeout(STEP_TIMEOUT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{sdk}: the device exited with {status}");
    server.shutdown().await.unwrap();
}

/// Both SDKs, one after the other (they share port 8883).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_device_sdks_work_against_the_hub() {
    let _ports = tokio::task::spawn_blocking(ports::lock_standard_ports)
        .await
        .unwrap();
    let mut ran = 0;
    for sdk in ["node", "python"] {
        match sdk_command(sdk) {
            Some((program, script)) => {
                run_sdk(sdk, &program, &script).await;
                ran += 1;
            }
            None if required() => panic!("the {sdk} SDK is not installed (run conformance/run.sh)"),
            None => eprintln!(
                "skipping the {sdk} SDK: not installed (IOT_DM_CONFORMANCE=1 makes this a failure)"
            ),
        }
    }
    if required() {
        assert_eq!(ran, 2);
    }
}
