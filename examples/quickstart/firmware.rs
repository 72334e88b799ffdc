//! The quick start's firmware rollout: an image in the hub's artifact store, rolled out to
//! the sensors as an automatic configuration with a rollout policy (a rate limit, maintenance
//! windows in each device's own time zone, a battery gate and an abort threshold), an alert
//! rule on the failure rate, and live progress bars read from twin queries.

use std::time::{Duration, Instant};

use indicatif::MultiProgress;
use serde_json::{json, Value};

use iot_dm::core::alert::AlertRule;
use iot_dm::core::configuration::Configuration;
use iot_dm::service::api::prelude::*;
use iot_dm::service::api::{ArtifactApi, ArtifactUpload};

use crate::fleet::REGIONS;
use crate::hub::RunningHub;
use crate::report::{bar, count};
use crate::Result;

/// The configuration that carries the rollout.
pub const ROLLOUT: &str = "fw-th200-1-5-0";
/// The version rolled out.
pub const TARGET_VERSION: &str = "1.5.0";
/// The sensors.
pub const TARGET: &str = "tags.model = 'TH-200'";
const REPORTED: &str = "properties.reported.deviceManagement.firmware";

/// Stores a 256 KiB image in the artifact store; returns its SHA-256 and size.
pub async fn upload(hub: &RunningHub) -> Result<(String, u64)> {
    let image: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let info = hub
        .hub
        .upload_artifact(
            &mut &image[..],
            ArtifactUpload::new()
                .name("th-200-firmware")
                .version(TARGET_VERSION),
        )
        .await?;
    Ok((info.sha256.to_string(), info.size))
}

/// Maintenance windows open now in the first two regions' time zones (from an hour ago, for
/// three hours) and shut in the third: its devices wait for their window.
pub fn windows() -> Result<Value> {
    let now = jiff::Timestamp::now();
    let mut windows = Vec::new();
    for (_, zone) in &REGIONS[..2] {
        let local = now.in_tz(zone)?;
        let start = (local.hour() + 23) % 24;
        windows.push(json!({
            "daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "startTime": format!("{start:02}:00"),
            "durationMinutes": 180,
        }));
    }
    Ok(Value::Array(windows))
}

/// Starts the rollout: the configuration and an alert rule on its failure rate.
pub async fn start(hub: &RunningHub, sha256: &str, size: u64) -> Result<()> {
    let failed =
        format!("{REPORTED}.state = 'failed' AND {REPORTED}.targetVersion = '{TARGET_VERSION}'");
    let configuration = Configuration::from_json(&json!({
        "id": ROLLOUT,
        "labels": {"purpose": "firmware"},
        "targetCondition": TARGET,
        "priority": 20,
        "content": {"deviceContent": {"properties.desired.deviceManagement.firmware": {
            "targetVersion": TARGET_VERSION,
            "packageUri": hub.artifact_url(sha256),
            "sha256": sha256,
            "size": size,
        }}},
        "metrics": {"queries": {
            "succeeded": format!("SELECT deviceId FROM devices WHERE {REPORTED}.currentVersion = '{TARGET_VERSION}'"),
            "failed": format!("SELECT deviceId FROM devices WHERE {failed}"),
        }},
        "rolloutPolicy": {
            "rate": {"maxPerMinute": 3000},
            "maintenanceWindows": windows()?,
            "gate": "properties.reported.battery >= 20",
            "abort": {"criteria": [
                {"metric": "failed", "thresholdPercentage": 25, "minAppliedDevices": 50},
            ]},
        },
    }))?;
    hub.hub
        .put_alert_rule(&AlertRule::from_json(&json!({
            "id": "firmware-failures",
            "condition": failed,
            "scope": {"configuration": ROLLOUT},
            "threshold": {"percent": 2},
            "forSeconds": 1,
            "severity": "warning",
            "description": "more than 2% of the sensors under the rollout failed their update",
        }))?)
        .await?;
    hub.hub.put_configuration(&configuration, None).await?;
    Ok(())
}

/// Live bars until every admitted sensor has finished (or 40 s have passed); returns the
/// configuration as it stands then.
pub async fn watch(hub: &RunningHub) -> Result<Configuration> {
    let targeted = count(
        &hub.hub
            .query(&format!("SELECT COUNT() AS n FROM devices WHERE {TARGET}"))?,
    ) as usize;
    let multi = MultiProgress::new();
    let names = [
        "admitted",
        "downloading",
        "verifying",
        "applying",
        "rebooting",
        "succeeded",
        "failed",
        "waiting for window",
        "gated",
    ];
    let bars: Vec<_> = names.iter().map(|n| multi.add(bar(targeted, n))).collect();
    let group = format!(
        "SELECT {REPORTED}.state AS state, COUNT() AS n FROM devices WHERE {TARGET} GROUP BY {REPORTED}.state"
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let c = hub.hub.get_configuration(ROLLOUT).await?;
        let rollout = c.rollout_status.clone().unwrap_or_default();
        let states = hub.hub.query(&group)?;
        let by = |s: &str| {
            states
                .iter()
                .filter(|r| r["state"] == s)
                .filter_map(|r| r["n"].as_u64())
                .sum::<u64>()
        };
        let counts = [
            rollout.admitted,
            by("downloading") + by("downloaded"),
            by("verifying"),
            by("applying"),
            by("rebooting"),
            by("succeeded"),
            by("failed") + by("rolledBack"),
            rollout.waiting_for_window,
            rollout.gated,
        ];
        for (pb, n) in bars.iter().zip(counts) {
            pb.set_position(n);
        }
        let finished = counts[5] + counts[6];
        let settled = rollout.admitted > 0 && finished >= rollout.admitted && rollout.pending == 0;
        if settled || rollout.state == "aborted" || Instant::now() > deadline {
            for pb in &bars {
                pb.finish();
            }
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
