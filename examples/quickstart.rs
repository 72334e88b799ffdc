//! The quick start: a hub on the embedded durable store, a fleet of simulated devices, and the
//! whole device lifecycle: plan, provision, monitor, configure, firmware update, reboot,
//! retire, and a restart that finds everything where it was.
//!
//! Run with `cargo run --example quickstart` (add `-- --devices N` for another fleet size).
//! The hub's data lives in a fresh directory under the system temp directory.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use iot_dm::core::clock::Timestamp;
use iot_dm::core::method::{MethodRequest, MethodResponse};
use iot_dm::core::patterns::{
    FirmwareEvent, FirmwareStatus, FirmwareUpdateRequest, PatternStatus, RebootEvent, RebootStatus,
};
use iot_dm::core::query::Condition;
use iot_dm::core::twin::TwinPatch;
use iot_dm::device::{DeviceClient, DeviceCredentials, InMemoryTransport};
use iot_dm::service::api::prelude::*;
use iot_dm::service::hub::{DeviceSpec, Hub};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const HOST: &str = "quickstart.local";
const REGIONS: [&str; 3] = ["us-west", "eu-north", "ap-east"];
const MODELS: [&str; 2] = ["TH-200", "GW-500"];

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Prints query rows as a table with the given columns.
fn table(title: &str, rows: &[Value], columns: &[&str]) {
    println!("\n{title}");
    let cell = |r: &Value, c: &str| match r.get(c) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("  {}", parts.join("  "));
    };
    line(columns.iter().map(|c| c.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for r in rows {
        line(columns.iter().map(|c| cell(r, c)).collect());
    }
}

/// A simulated device: reports its state, applies desired configuration, and runs the reboot
/// and firmware-update patterns when asked.
async fn run_device(client: DeviceClient, firmware: &'static str, battery: u64) -> Result<()> {
    let now = Timestamp::now;
    let fw = FirmwareStatus::new(Some(firmware), now())?;
    client
        .update_reported(json!({
            "battery": battery,
            "config": {"telemetryInterval": 300},
            "deviceManagement": {"firmware": fw.to_json(), "reboot": RebootStatus::new(now()).to_json()},
        }))
        .await?;

    // configure: apply desired telemetry settings and report them back
    let mut desired = client.desired_updates();
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(update) = desired.recv().await {
            if let Some(interval) = update.patch.get("telemetryInterval").filter(|v| v.is_u64()) {
                let _ = c
                    .update_reported(json!({"config": {"telemetryInterval": interval}}))
                    .await;
            }
        }
    });

    let c = client.clone();
    client.on_method(RebootStatus::METHOD, move |_call| {
        let c = c.clone();
        async move {
            let mut status = RebootStatus::new(now());
            let steps = [
                RebootEvent::Schedule { at: None },
                RebootEvent::Start,
                RebootEvent::Complete,
            ];
            for event in steps {
                if status.apply(event, now()).is_err() {
                    return MethodResponse {
                        status: 409,
                        payload: json!({"error": "bad state"}),
                    };
                }
                let _ = c.update_reported(status.to_patch()).await;
            }
            MethodResponse {
                status: 200,
                payload: json!({"rebooted": true}),
            }
        }
    });

    let c = client.clone();
    let current = Arc::new(tokio::sync::Mutex::new(fw));
    client.on_method(FirmwareStatus::METHOD, move |call| {
        let (c, current) = (c.clone(), current.clone());
        async move {
            let request = match FirmwareUpdateRequest::from_payload(&call.payload) {
                Ok(r) => r,
                Err(e) => {
                    return MethodResponse {
                        status: 400,
                        payload: json!({"error": e.to_string()}),
                    }
                }
            };
            let size = request.size();
            let mut fw = current.lock().await;
            let mut events = vec![FirmwareEvent::Start { request }];
            events.extend((1..=4).map(|q| FirmwareEvent::Progress {
                bytes: size * q / 4,
            }));
            events.extend([
                FirmwareEvent::DownloadComplete,
                FirmwareEvent::Verify,
                FirmwareEvent::Apply,
                FirmwareEvent::Reboot,
                FirmwareEvent::Succeed,
            ]);
            for event in events {
                if let Err(e) = fw.apply(event, now()) {
                    return MethodResponse {
                        status: 409,
                        payload: json!({"error": e.to_string()}),
                    };
                }
                let _ = c.update_reported(fw.to_patch()).await;
            }
            MethodResponse {
                status: 200,
                payload: json!({"version": fw.current_version()}),
            }
        }
    });
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let devices: usize = std::env::args()
        .skip_while(|a| a != "--devices")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("iot-dm-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = dir.join("hub.redb");
    println!("hub store: {}", store.display());
    let hub = Hub::builder().path(&store).host_name(HOST).open().await?;

    // plan: twins with tags place devices in groups before they have credentials
    let pb = bar(devices, "plan");
    for i in 0..devices {
        let spec = DeviceSpec::new(format!("sensor-{i:03}").parse()?)
            .tags(json!({"region": REGIONS[i % 3], "model": MODELS[i % 2]}));
        hub.plan_device(spec).await?;
        pb.inc(1);
    }
    pb.finish();

    // provision: credentials issued, devices connect and report
    let pb = bar(devices, "provision");
    let mut clients = Vec::new();
    for i in 0..devices {
        let id = format!("sensor-{i:03}");
        let device = hub.provision_device(&id, None).await?;
        let key = device.symmetric_key.primary_key.unwrap_or_default();
        let creds = DeviceCredentials::symmetric_key(HOST, id.parse()?, &key)?;
        let client = DeviceClient::builder(creds, InMemoryTransport::new(Arc::new(hub.clone())))
            .connect()
            .await?;
        let firmware = if i % 4 == 0 { "2.0.1" } else { "1.9.0" };
        run_device(client.clone(), firmware, 100 - (i as u64 * 7) % 60).await?;
        clients.push(client);
        pb.inc(1);
    }
    pb.finish();

    // monitor: queries see every acknowledged write at once
    table(
        "devices by region",
        &hub.query("SELECT tags.region AS region, COUNT() AS devices, AVG(properties.reported.battery) AS battery FROM devices GROUP BY tags.region")?,
        &["region", "devices", "battery"],
    );
    table(
        "firmware in the fleet",
        &hub.query("SELECT properties.reported.deviceManagement.firmware.currentVersion AS firmware, COUNT() AS devices FROM devices GROUP BY properties.reported.deviceManagement.firmware.currentVersion")?,
        &["firmware", "devices"],
    );

    // configure: a desired setting for one region; devices apply it and report back
    let target = Condition::parse("tags.region = 'eu-north'")?;
    let patch: TwinPatch =
        serde_json::from_value(json!({"properties": {"desired": {"telemetryInterval": 60}}}))?;
    let group = hub.twins_matching(&target);
    for twin in &group {
        hub.update_twin(twin.device_id.as_str(), &patch, None)
            .await?;
    }
    let applied = "SELECT COUNT() AS n FROM devices WHERE tags.region = 'eu-north' AND properties.reported.config.telemetryInterval = 60";
    for _ in 0..100 {
        if hub.query(applied)?[0]["n"] == json!(group.len()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "\ntelemetry interval 60 s applied on {} of {} eu-north devices",
        hub.query(applied)?[0]["n"],
        group.len()
    );

    // firmware update: every us-west TH-200 not on 2.0.1
    let rollout = Condition::parse(
        "tags.region = 'us-west' AND tags.model = 'TH-200' AND properties.reported.deviceManagement.firmware.currentVersion <> '2.0.1'",
    )?;
    let request = FirmwareUpdateRequest::new(
        "2.0.1",
        "https://updates.example.com/fw/th-200/2.0.1.bin",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        1_048_576,
    )?;
    let method = MethodRequest::builder(FirmwareStatus::METHOD)
        .payload(request.to_json())
        .build()?;
    let targets = hub.twins_matching(&rollout);
    let pb = bar(targets.len(), "firmware");
    for twin in &targets {
        let response = hub.invoke_method(twin.device_id.as_str(), &method).await?;
        if response.status != 200 {
            pb.println(format!("{}: {}", twin.device_id, response.payload));
        }
        pb.inc(1);
    }
    pb.finish();
    table(
        "firmware update states",
        &hub.query("SELECT tags.region AS region, properties.reported.deviceManagement.firmware.state AS state, properties.reported.deviceManagement.firmware.currentVersion AS firmware, COUNT() AS devices FROM devices GROUP BY tags.region, properties.reported.deviceManagement.firmware.state, properties.reported.deviceManagement.firmware.currentVersion")?,
        &["region", "state", "firmware", "devices"],
    );

    // reboot one device
    let reboot = MethodRequest::builder(RebootStatus::METHOD).build()?;
    let response = hub.invoke_method("sensor-001", &reboot).await?;
    let twin = hub.get_twin("sensor-001")?;
    let status = RebootStatus::from_reported(&twin.reported().doc().to_value())?;
    println!(
        "\nreboot of sensor-001: status {}, now {}, last reboot {}",
        response.status,
        status.as_ref().map_or("-", |s| s.state().as_str()),
        status
            .and_then(|s| s.last_reboot())
            .map_or("-".to_string(), |t| t.to_string())
    );

    // retire: credentials revoked, twin archived and still queryable
    hub.retire_device("sensor-002").await?;
    table(
        "archive",
        &hub.query_archive("SELECT deviceId, tags.region AS region, properties.reported.battery AS battery FROM devices")?,
        &["deviceId", "region", "battery"],
    );

    // restart: everything acknowledged is on disk
    for c in &clients {
        c.close().await;
    }
    hub.shutdown().await?;
    let hub = Hub::builder().path(&store).host_name(HOST).open().await?;
    let live = hub.query("SELECT COUNT() AS n FROM devices")?;
    let updated = hub.query("SELECT COUNT() AS n FROM devices WHERE properties.reported.deviceManagement.firmware.state = 'succeeded'")?;
    println!(
        "\nafter a restart: {} live twins, {} archived, {} firmware updates recorded",
        live[0]["n"],
        hub.query_archive("SELECT COUNT() AS n FROM devices")?[0]["n"],
        updated[0]["n"]
    );
    hub.shutdown().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
