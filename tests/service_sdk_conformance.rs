//! Conformance with the official Azure IoT service SDKs (Node.js `azure-iothub`, Python
//! `azure-iot-hub`).
//!
//! A hub serves its REST API over HTTPS on 127.0.0.1:443 and MQTT over TLS on 127.0.0.1:8883
//! (the ports the SDKs use) with a development CA, under the host name `localhost`. Each SDK's
//! service script (`conformance/node/service.js`, `conformance/python/service.py`) gets the
//! `iothubowner` and `registryRead` connection strings and walks a fixed sequence: create a
//! device, read and patch its twin with its etag, page through a query two twins at a time,
//! invoke a direct method answered by the device SDK over MQTT, delete the device, and be
//! refused a write with the read-only policy. The script asserts each step and prints a line
//! per step; this harness checks the sequence and then the hub's own state. See
//! `conformance/README.md`.
//!
//! The jobs scripts (`conformance/node/jobs.js`, `conformance/python/jobs.py`) do the same for
//! IoT Hub jobs v2 through the SDKs' job clients: a twin-update job, a method job answered by
//! device-SDK devices over MQTT, a job scheduled ahead and cancelled, the job list by type and
//! status, and `deviceJobStatistics` against the `devices.jobs` records.
//!
//! The configurations scripts (`conformance/node/configurations.js`,
//! `conformance/python/configurations.py`) create, read, list, update (with the etag, stale,
//! forced, and a refused content change) and delete an automatic device configuration through
//! the SDKs' configuration clients, while a device-SDK device connected over MQTT sees the
//! configuration's content arrive in its desired properties and leave on the delete.
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

use tokio::process::Command;

use iot_dm::core::job::JobStatus;
use iot_dm::service::api::prelude::*;
use sdk_hub::SdkHub;

const REST_ADDR: &str = "127.0.0.1:443";
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const STEPS: [&str; 8] = [
    "CREATED",
    "TWIN",
    "TWIN_UPDATED",
    "QUERIED",
    "METHOD",
    "DELETED",
    "READ_ONLY_REFUSED",
    "DONE",
];

fn required() -> bool {
    std::env::var("IOT_DM_CONFORMANCE").is_ok_and(|v| v == "1")
}

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// How to run an SDK's script `name` (`service`, `jobs` or `configurations`), if the SDK is installed: program,
/// script, and the environment variable through which that SDK trusts a CA file.
fn sdk_command(sdk: &str, name: &str) -> Option<(PathBuf, PathBuf, &'static str)> {
    let dir = conformance_dir();
    match sdk {
        "node" => {
            let installed = ["azure-iothub", "azure-iot-device-mqtt"]
                .iter()
                .all(|m| dir.join("node/node_modules").join(m).is_dir());
            installed.then(|| {
                (
                    PathBuf::from("node"),
                    dir.join(format!("node/{name}.js")),
                    "NODE_EXTRA_CA_CERTS",
                )
            })
        }
        "python" => {
            let venv = dir.join("python/.venv/bin/python");
            let python = if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            };
            let ok = std::process::Command::new(&python)
                .args(["-c", "import azure.iot.hub, azure.iot.device"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| {
                (
                    python,
                    dir.join(format!("python/{name}.py")),
                    "REQUESTS_CA_BUNDLE",
                )
            })
        }
        _ => None,
    }
}

/// Runs an SDK script to its end: every line of `steps` in order (other stdout lines are SDK
/// chatter), a `FAIL` line ends it with the script's stderr, and it must exit with success.
async fn run_steps(sdk: &str, steps: &[&str], command: &mut Command) {
    let sdk_hub::Script {
        mut child,
        stdout: mut lines,
        stderr,
    } = sdk_hub::spawn_script(sdk, command);
    let mut seen: Vec<&str> = Vec::new();
    while seen.len() < steps.len() {
        let line = match tokio::time::timeout(STEP_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => {
                let _ = child.kill().await;
                panic!(
                    "{sdk}: no step after {seen:?} ({other:?}); stderr:\n{}",
                    stderr.await.unwrap_or_default()
                );
            }
        };
        let name = line.split_once(' ').map_or(line.as_str(), |(n, _)| n);
        if name == "FAIL" {
            let _ = child.kill().await;
            panic!(
                "{sdk}: the SDK script failed after {seen:?}: {line}\nstderr:\n{}",
                stderr.await.unwrap_or_default()
            );
        }
        let Some(&expected) = steps.get(seen.len()) else {
            break;
        };
        if !steps.contains(&name) {
            continue; // SDK chatter on stdout
        }
        assert_eq!(name, expected, "{sdk}: steps out of order after {seen:?}");
        eprintln!("{sdk}: {line}");
        seen.push(expected);
    }
    let status = tokio::time::timeout(STEP_TIMEOUT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{sdk}: the script exited with {status}");
}

async fn run_sdk(sdk: &str, program: &Path, script: &Path, ca_variable: &str) {
    let SdkHub {
        _dir,
        ca_path,
        hub,
        server,
        ..
    } = SdkHub::start_with_rest(REST_ADDR).await;

    let owner = hub.service_connection_string("iothubowner").unwrap();
    let read_only = hub.service_connection_string("registryRead").unwrap();
    run_steps(
        sdk,
        &STEPS,
        Command::new(program)
            .arg(script)
            .arg(&owner)
            .arg(&read_only)
            .arg(&ca_path)
            .env(ca_variable, &ca_path),
    )
    .await;

    // The hub's own view agrees with what the SDK saw.
    let prefix = format!("svc-{sdk}");
    assert!(
        hub.get_device(&format!("{prefix}-dev"))
            .unwrap_err()
            .is_not_found(),
        "{sdk}: the deleted device is gone"
    );
    assert!(
        hub.get_device(&format!("{prefix}-denied"))
            .unwrap_err()
            .is_not_found(),
        "{sdk}: the read-only policy created nothing"
    );
    for i in 0..5 {
        let id = format!("{prefix}-q{i}");
        let device = hub.get_device(&id).unwrap();
        assert_eq!(device.device_id.as_str(), id);
    }
    assert_eq!(
        hub.device_count(),
        5,
        "{sdk}: exactly the query devices remain"
    );

    server.shutdown().await.unwrap();
}

/// Both SDKs, one after the other, each against a fresh hub (they share ports 443 and 8883).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_service_sdks_work_against_the_hub() {
    let _ports = tokio::task::spawn_blocking(ports::lock_standard_ports)
        .await
        .unwrap();
    let mut ran = 0;
    for sdk in ["node", "python"] {
        match sdk_command(sdk, "service") {
            Some((program, script, ca_variable)) => {
                run_sdk(sdk, &program, &script, ca_variable).await;
                ran += 1;
            }
            None if required() => {
                panic!("the {sdk} service SDK is not installed (run conformance/setup.sh)")
            }
            None => eprintln!(
                "skipping the {sdk} service SDK: not installed (IOT_DM_CONFORMANCE=1 makes this a failure)"
            ),
        }
    }
    if required() {
        assert_eq!(ran, 2);
    }
}

const JOB_STEPS: [&str; 6] = [
    "DEVICES",
    "TWIN_JOB",
    "METHOD_JOB",
    "SCHEDULED_CANCELLED",
    "JOBS_QUERIED",
    "DONE",
];

async fn run_jobs(sdk: &str, program: &Path, script: &Path, ca_variable: &str) {
    let SdkHub {
        _dir,
        ca_path,
        hub,
        server,
        ..
    } = SdkHub::start_with_rest(REST_ADDR).await;

    let owner = hub.service_connection_string("iothubowner").unwrap();
    run_steps(
        sdk,
        &JOB_STEPS,
        Command::new(program)
            .arg(script)
            .arg(&owner)
            .arg(&ca_path)
            .env(ca_variable, &ca_path),
    )
    .await;

    // The hub's own records agree with what the SDK saw.
    let prefix = format!("jobs-{sdk}");
    let twin_job = hub.get_job(&format!("{prefix}-twin")).await.unwrap();
    assert_eq!(twin_job.status, JobStatus::Completed, "{sdk}: {twin_job:?}");
    let method_job = hub.get_job(&format!("{prefix}-method")).await.unwrap();
    assert_eq!(
        method_job.status,
        JobStatus::Completed,
        "{sdk}: {method_job:?}"
    );
    let stats = method_job.device_job_statistics.unwrap();
    assert_eq!(
        (
            stats.device_count,
            stats.succeeded_count,
            stats.failed_count
        ),
        (2, 1, 1),
        "{sdk}"
    );
    let later = hub.get_job(&format!("{prefix}-later")).await.unwrap();
    assert_eq!(later.status, JobStatus::Cancelled, "{sdk}: {later:?}");
    for i in 0..2 {
        let twin = hub.get_twin(&format!("{prefix}-d{i}")).unwrap();
        let desired = twin.desired().doc().to_value();
        assert_eq!(desired["fw"], "2.0", "{sdk}: {desired}");
    }

    server.shutdown().await.unwrap();
}

/// IoT Hub jobs v2 through both SDKs' job clients, each against a fresh hub, on devices of the
/// device SDKs that answer the method over MQTT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_service_sdks_schedule_jobs() {
    let _ports = tokio::task::spawn_blocking(ports::lock_standard_ports)
        .await
        .unwrap();
    let mut ran = 0;
    for sdk in ["node", "python"] {
        match sdk_command(sdk, "jobs") {
            Some((program, script, ca_variable)) => {
                run_jobs(sdk, &program, &script, ca_variable).await;
                ran += 1;
            }
            None if required() => {
                panic!("the {sdk} service SDK is not installed (run conformance/setup.sh)")
            }
            None => eprintln!(
                "skipping the {sdk} service SDK: not installed (IOT_DM_CONFORMANCE=1 makes this a failure)"
            ),
        }
    }
    if required() {
        assert_eq!(ran, 2);
    }
}

/// What each configurations script prints, in order (Python also tests the query check).
const CONFIGURATION_STEPS_NODE: [&str; 7] = [
    "DEVICE", "CREATED", "APPLIED", "LISTED", "UPDATED", "DELETED", "DONE",
];
const CONFIGURATION_STEPS_PYTHON: [&str; 8] = [
    "DEVICE", "CREATED", "APPLIED", "LISTED", "UPDATED", "TESTED", "DELETED", "DONE",
];

async fn run_configurations(sdk: &str, program: &Path, script: &Path, ca_variable: &str) {
    let SdkHub {
        _dir,
        ca_path,
        hub,
        server,
        ..
    } = SdkHub::start_with_rest(REST_ADDR).await;
    let owner = hub.service_connection_string("iothubowner").unwrap();
    let steps: &[&str] = if sdk == "node" {
        &CONFIGURATION_STEPS_NODE
    } else {
        &CONFIGURATION_STEPS_PYTHON
    };
    run_steps(
        sdk,
        steps,
        Command::new(program)
            .arg(script)
            .arg(&owner)
            .arg(&ca_path)
            .env(ca_variable, &ca_path),
    )
    .await;
    // the hub agrees: the configuration is gone, and so are its settings on every twin
    hub.configurations_applied().await.unwrap();
    assert!(
        hub.list_configurations(None).await.unwrap().is_empty(),
        "{sdk}"
    );
    server.shutdown().await.unwrap();
}

/// Automatic device configurations through both SDKs' configuration clients, each against a
/// fresh hub, with a device-SDK device watching its desired properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_service_sdks_manage_configurations() {
    let _ports = tokio::task::spawn_blocking(ports::lock_standard_ports)
        .await
        .unwrap();
    let mut ran = 0;
    for sdk in ["node", "python"] {
        match sdk_command(sdk, "configurations") {
            Some((program, script, ca_variable)) => {
                run_configurations(sdk, &program, &script, ca_variable).await;
                ran += 1;
            }
            None if required() => {
                panic!("the {sdk} service SDK is not installed (run conformance/setup.sh)")
            }
            None => eprintln!(
                "skipping the {sdk} service SDK: not installed (IOT_DM_CONFORMANCE=1 makes this a failure)"
            ),
        }
    }
    if required() {
        assert_eq!(ran, 2);
    }
}
