//! The quick start: a hub on the embedded durable store with its MQTT/TLS endpoint and REST
//! API on loopback, 1,000 simulated devices connected over real MQTT with TLS, and the whole
//! device lifecycle: plan and provision in bulk, configure with two automatic configurations,
//! a reboot job, a firmware rollout from the artifact store (rate limit, maintenance windows
//! in three time zones, a battery gate, an abort threshold, and failing devices that raise an
//! alert), monitoring with queries and live progress bars, retiring devices, and a restart
//! that finds everything acknowledged.
//!
//! Run with `cargo run --release --example quickstart` (add `-- --devices N` for another
//! fleet size). The hub's data lives in a fresh directory under the system temp directory.

mod firmware;
mod fleet;
mod hub;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use iot_dm::core::alert::AlertState;
use iot_dm::core::configuration::Configuration;
use iot_dm::core::job::{JobRequest, JobStatus};
use iot_dm::service::api::prelude::*;

use fleet::Profile;
use hub::RunningHub;
use report::{bar, count, print_table, table, Steps};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The gateways take their telemetry settings from two automatic configurations: one for
/// every gateway, and one with a higher priority for those in eu-west.
fn telemetry(id: &str, target: &str, priority: i64, interval: u64) -> Result<Configuration> {
    Ok(Configuration::from_json(&json!({
        "id": id,
        "targetCondition": target,
        "priority": priority,
        "content": {"deviceContent": {
            "properties.desired.telemetry": {"intervalSeconds": interval}}},
        "metrics": {"queries": {"acknowledged": format!(
            "SELECT deviceId FROM devices WHERE properties.reported.telemetry.ac = 200 \
             AND properties.reported.telemetry.value.intervalSeconds = {interval}")}},
    }))?)
}

/// Waits (bounded) until every twin a configuration applies to acknowledged it.
async fn until_acknowledged(hub: &RunningHub, ids: &[&str]) -> Result<Vec<Configuration>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = Vec::new();
        for id in ids {
            all.push(hub.hub.get_configuration(id).await?);
        }
        let done = all.iter().all(|c| {
            let applied = c.system_metrics.results.get("appliedCount").copied();
            applied.is_some() && c.metrics.results.get("acknowledged").copied() == applied
        });
        if done || Instant::now() > deadline {
            return Ok(all);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn configuration_rows(configurations: &[Configuration]) -> Vec<Vec<String>> {
    let metric = |m: &std::collections::BTreeMap<String, u64>, k: &str| {
        m.get(k).map_or("-".into(), u64::to_string)
    };
    configurations
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.priority.to_string(),
                c.target_condition.clone(),
                metric(&c.system_metrics.results, "targetedCount"),
                metric(&c.system_metrics.results, "appliedCount"),
                c.metrics
                    .results
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect()
}

fn configuration_table(title: &str, configurations: &[Configuration]) {
    let head = [
        "configuration",
        "priority",
        "target",
        "targeted",
        "applied",
        "metrics",
    ]
    .map(String::from);
    print_table(title, &head, &configuration_rows(configurations));
}

/// Runs a reboot job over `condition` and follows it with a progress bar.
async fn reboot_job(hub: &RunningHub, id: &str, condition: &str) -> Result<(u64, u64)> {
    let request = JobRequest::from_json(&json!({
        "jobId": id, "type": "scheduleDeviceMethod", "queryCondition": condition,
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": 30},
        "maxExecutionTimeInSeconds": 120,
    }))?;
    hub.hub.create_job(&request).await?;
    let devices = count(&hub.hub.query(&format!(
        "SELECT COUNT() AS n FROM devices WHERE {condition}"
    ))?);
    let pb = bar(devices as usize, "reboot job");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rebooted = format!(
        "SELECT COUNT() AS n FROM devices WHERE {condition} \
         AND properties.reported.deviceManagement.reboot.state = 'succeeded'"
    );
    loop {
        let job = hub.hub.get_job(id).await?;
        let done = count(&hub.hub.query(&rebooted)?);
        pb.set_position(done);
        let finished = !matches!(
            job.status,
            JobStatus::Queued | JobStatus::Scheduled | JobStatus::Running
        );
        if (finished && done == devices) || Instant::now() > deadline {
            pb.finish();
            let stats = job.device_job_statistics.unwrap_or_default();
            return Ok((stats.succeeded_count, done));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn devices_arg() -> Result<usize> {
    let mut args = std::env::args().skip_while(|a| a != "--devices");
    match (args.next(), args.next()) {
        (None, _) => Ok(1000),
        (Some(_), Some(n)) => match n.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(format!("--devices {n}: a number from 1 to 10000").into()),
        },
        (Some(_), None) => Err("--devices needs a number".into()),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let n = devices_arg()?;
    let dir = std::env::temp_dir().join(format!("iot-dm-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut steps = Steps::new();
    let hub = Arc::new(RunningHub::start(&dir).await?);
    println!(
        "hub: store {}, MQTT/TLS on 127.0.0.1:{}, REST on 127.0.0.1:{}",
        hub.store.display(),
        hub.mqtt_port,
        hub.rest_port
    );

    // plan and provision: identities and twins with tags, in bulk
    let fleet: Vec<Profile> = (0..n).map(Profile::nth).collect();
    fleet::provision(&hub, &fleet).await?;
    steps.done("provision", format!("{n} devices in bulk, tagged"));

    // connect: one MQTT/TLS session per device, every pattern enabled
    let downloads = dir.join("downloads");
    let mut devices = fleet::connect_all(&hub, &fleet, &downloads).await?;
    steps.done("connect", format!("{} MQTT/TLS sessions", devices.len()));

    // monitor: twin queries over the fleet
    table(
        "the fleet",
        &hub.hub.query("SELECT tags.region AS region, tags.model AS model, COUNT() AS devices, AVG(properties.reported.battery) AS battery FROM devices GROUP BY tags.region, tags.model")?,
        &["region", "model", "devices", "battery"],
    );

    // configure: two automatic configurations, the higher priority wins on the overlap
    hub.hub
        .put_configuration(
            &telemetry("gw-telemetry", "tags.model = 'GW-500'", 10, 300)?,
            None,
        )
        .await?;
    hub.hub
        .put_configuration(
            &telemetry(
                "gw-telemetry-eu",
                "tags.model = 'GW-500' AND tags.region = 'eu-west'",
                20,
                60,
            )?,
            None,
        )
        .await?;
    let configurations = until_acknowledged(&hub, &["gw-telemetry", "gw-telemetry-eu"]).await?;
    configuration_table("automatic configurations", &configurations);
    let acknowledged: u64 = configurations
        .iter()
        .filter_map(|c| c.metrics.results.get("acknowledged"))
        .sum();
    steps.done(
        "configure",
        format!("2 configurations, {acknowledged} gateways acknowledged"),
    );

    // a reboot job: the us-east gateways
    let (answered, rebooted) = reboot_job(
        &hub,
        "reboot-us-east-gateways",
        "tags.model = 'GW-500' AND tags.region = 'us-east'",
    )
    .await?;
    table(
        "reboot states",
        &hub.hub.query("SELECT tags.region AS region, properties.reported.deviceManagement.reboot.state AS reboot, COUNT() AS devices FROM devices WHERE tags.model = 'GW-500' GROUP BY tags.region, properties.reported.deviceManagement.reboot.state")?,
        &["region", "reboot", "devices"],
    );
    steps.done(
        "reboot job",
        format!("{answered} accepted, {rebooted} rebooted and back"),
    );

    // a firmware rollout to the sensors from the artifact store
    let (sha256, size) = firmware::upload(&hub).await?;
    println!(
        "\nfirmware {} uploaded: sha256 {sha256}, {size} bytes",
        firmware::TARGET_VERSION
    );
    firmware::start(&hub, &sha256, size).await?;
    let rollout = firmware::watch(&hub).await?;
    let status = rollout.rollout_status.clone().unwrap_or_default();
    table(
        "firmware by region",
        &hub.hub.query(&format!("SELECT tags.region AS region, tags.location.timezone AS zone, properties.reported.deviceManagement.firmware.currentVersion AS running, properties.reported.deviceManagement.firmware.state AS state, properties.reported.deviceManagement.firmware.result.code AS result, COUNT() AS devices FROM devices WHERE {} GROUP BY tags.region, tags.location.timezone, properties.reported.deviceManagement.firmware.currentVersion, properties.reported.deviceManagement.firmware.state, properties.reported.deviceManagement.firmware.result.code", firmware::TARGET))?,
        &["region", "zone", "running", "state", "result", "devices"],
    );
    configuration_table("the rollout", std::slice::from_ref(&rollout));
    let metric = |k: &str| rollout.metrics.results.get(k).copied().unwrap_or(0);
    steps.done(
        "firmware rollout",
        format!(
            "{} succeeded, {} failed, {} waiting for a window, {} gated ({})",
            metric("succeeded"),
            metric("failed"),
            status.waiting_for_window,
            status.gated,
            status.state
        ),
    );

    // alerts: raised by the failure rate; an operator acknowledges it
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alerts = hub.hub.list_alerts(Some(AlertState::Active)).await?;
    for alert in &alerts {
        hub.hub.acknowledge_alert(&alert.id, "operator").await?;
    }
    let alerts = hub.hub.list_alerts(None).await?;
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                a.rule_id.clone(),
                a.state().as_str().to_string(),
                a.raised_at.to_string(),
                format!("{} of {}", a.raised_counts.matching, a.raised_counts.scope),
                a.acknowledged
                    .as_ref()
                    .map_or_else(|| "-".into(), |(_, by)| by.clone()),
            ]
        })
        .collect();
    let head = ["rule", "state", "raised", "counts", "acknowledged by"].map(String::from);
    print_table("alerts", &head, &rows);
    steps.done(
        "alerts",
        format!("{} raised and acknowledged", alerts.len()),
    );

    // retire: the last ten devices lose their credentials, their twins go to the archive
    let retired: Vec<fleet::Device> = devices.split_off(devices.len().saturating_sub(10));
    for d in &retired {
        d.client.close().await;
        hub.hub.retire_device(&d.profile.id).await?;
    }
    let refused = match retired.first() {
        Some(d) => fleet::connect(&hub, &d.profile.id).await.is_err(),
        None => true,
    };
    table(
        "the archive",
        &hub.hub.query_archive("SELECT deviceId, tags.region AS region, tags.model AS model, properties.reported.battery AS battery FROM devices")?,
        &["deviceId", "region", "model", "battery"],
    );
    steps.done(
        "retire",
        format!(
            "{} retired, {} reconnecting, twins archived",
            retired.len(),
            if refused { "refused" } else { "NOT refused" }
        ),
    );

    // restart: everything acknowledged is on disk
    fleet::close_all(&devices).await;
    let hub = Arc::into_inner(hub).ok_or("the hub is still shared")?;
    hub.stop().await?;
    let hub = RunningHub::start(&dir).await?;
    let live = count(&hub.hub.query("SELECT COUNT() AS n FROM devices")?);
    let archived = count(&hub.hub.query_archive("SELECT COUNT() AS n FROM devices")?);
    let updated = count(&hub.hub.query(&format!(
        "SELECT COUNT() AS n FROM devices WHERE properties.reported.deviceManagement.firmware.currentVersion = '{}'",
        firmware::TARGET_VERSION
    ))?);
    let configurations = hub.hub.list_configurations(None).await?;
    configuration_table("after the restart", &configurations);
    let acknowledged = hub
        .hub
        .list_alerts(None)
        .await?
        .iter()
        .filter(|a| a.acknowledged.is_some())
        .count();
    steps.done(
        "restart",
        format!(
            "{live} live twins, {archived} archived, {updated} on {}, {} configurations, {acknowledged} alerts acknowledged",
            firmware::TARGET_VERSION,
            configurations.len()
        ),
    );
    hub.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    steps.print();
    Ok(())
}
