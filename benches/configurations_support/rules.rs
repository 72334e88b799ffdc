//! `configurations/patches_with_rules`: reported patches from MQTT/TLS devices with 100
//! configurations and 50 alert rules active, against the same devices with none, in one run;
//! then, under the same load, the time from an acknowledged reported patch to the custom
//! metric it moves.

use std::time::{Duration, Instant};

use serde_json::json;

use iot_dm_core::alert::AlertRule;
use iot_dm_core::configuration::Configuration;
use iot_dm_core::twin::TwinPatch;
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{DeviceSpec, Hub};

use crate::devices::Served;
use crate::LIMIT;

/// Configurations, over this many sites (`IOT_DM_BENCH_CONFIGURATIONS` to change).
const CONFIGURATIONS: usize = 100;
const SITES: usize = 10;
/// Alert rules: half scoped by a configuration, half over every device
/// (`IOT_DM_BENCH_RULES` to change).
const RULES: usize = 50;

fn configurations() -> usize {
    crate::fleet::env_size(
        "IOT_DM_BENCH_CONFIGURATIONS",
        CONFIGURATIONS,
        CONFIGURATIONS,
    )
}

fn rules() -> usize {
    crate::fleet::env_size("IOT_DM_BENCH_RULES", RULES, RULES)
}
/// Latency samples.
const SAMPLES: usize = 200;

fn site(i: usize) -> String {
    format!("site-{}", i % SITES)
}

/// Configuration `k`: targets site `k % 10` at priority `k`, one desired property and one
/// custom metric over reported properties, as a compliance metric is.
fn configuration(k: usize) -> Configuration {
    let id = format!("cfg-{k:02}");
    Configuration::from_json(&json!({
        "id": id, "targetCondition": format!("tags.site = '{}'", site(k)), "priority": k,
        "content": {"deviceContent": {"properties.desired.settings": {"level": k}}},
        "metrics": {"queries": {"ok": format!(
            "SELECT deviceId FROM devices WHERE configurations.[[{id}]].status = 'Applied' \
             AND properties.reported.status = 'ok'")}},
    }))
    .expect("configuration")
}

/// Rule `r`: even ones scoped by a configuration (too hot), odd ones over every device (a
/// failed status).
fn rule(r: usize) -> AlertRule {
    let v = if r.is_multiple_of(2) {
        json!({"id": format!("hot-{r:02}"), "condition": "properties.reported.temperature > 80",
               "scope": {"configuration": format!("cfg-{:02}", r % configurations().max(1))},
               "threshold": {"percent": 5}, "forSeconds": 60, "severity": "warning"})
    } else {
        json!({"id": format!("failed-{r:02}"), "condition": format!(
                   "properties.reported.status = 'failed' AND tags.site = '{}'", site(r)),
               "threshold": {"count": 10}, "forSeconds": 60, "severity": "critical"})
    };
    AlertRule::from_json(&v).expect("rule")
}

/// Tags the patching devices by site, adds the probe, and creates every configuration and
/// rule; returns once they are applied.
async fn prepare(hub: &Hub, patchers: usize) {
    for i in 0..patchers {
        let patch: TwinPatch =
            serde_json::from_value(json!({"tags": {"site": site(i)}})).expect("patch");
        hub.update_twin(&format!("p-{i:05}"), &patch, None)
            .await
            .expect("tags");
    }
    hub.create_device(DeviceSpec::new("probe".parse().expect("id")))
        .await
        .expect("probe");
    let patch: TwinPatch =
        serde_json::from_value(json!({"tags": {"site": site(0)}})).expect("patch");
    hub.update_twin("probe", &patch, None).await.expect("tags");
    for k in 0..configurations() {
        hub.put_configuration(&configuration(k), None)
            .await
            .expect("configuration");
    }
    for r in 0..rules() {
        hub.put_alert_rule(&rule(r)).await.expect("rule");
    }
    tokio::time::timeout(LIMIT, hub.configurations_applied())
        .await
        .expect("bounded")
        .expect("applied");
}

/// The configuration that wins on the probe's site, whose metric the probe moves.
fn probe_configuration() -> String {
    let k = (0..CONFIGURATIONS)
        .filter(|k| k % SITES == 0)
        .max()
        .unwrap_or(0);
    format!("cfg-{k:02}")
}

async fn metric(hub: &Hub, id: &str) -> u64 {
    hub.get_configuration(id)
        .await
        .expect("configuration")
        .metrics
        .results["ok"]
}

/// After the window: the probe flips its status `SAMPLES` times; each time, the time from
/// the acknowledged patch until the metric has moved.
async fn latencies(hub: &Hub) -> String {
    if configurations() == 0 {
        return "no configuration, no metric to time".into();
    }
    let id = probe_configuration();
    let mut took = Vec::with_capacity(SAMPLES);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..SAMPLES {
        if Instant::now() > deadline {
            break;
        }
        let status = if i % 2 == 0 { "ok" } else { "bad" };
        let before = metric(hub, &id).await;
        hub.patch_reported("probe", &json!({ "status": status }))
            .await
            .expect("patch");
        let acked = Instant::now();
        loop {
            let now = metric(hub, &id).await;
            if now != before {
                took.push(acked.elapsed());
                break;
            }
            assert!(acked.elapsed() < LIMIT, "the metric never moved");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    took.sort();
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    format!(
        "metric re-evaluated after an acknowledged patch: {} samples, p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms (target p99 at most 100 ms)",
        took.len(),
        at(0.5),
        at(0.99),
        took.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    )
}

/// The whole part, printed.
pub async fn patches_with_rules(
    served: &Served,
    load: &tokio::runtime::Handle,
    patchers: usize,
    secs: f64,
) {
    let (alone, with, latency) = served
        .patch_ratio_with(
            load,
            patchers,
            secs,
            async |hub| prepare(hub, patchers).await,
            async |hub, window| {
                tokio::time::sleep(window).await;
                latencies(hub).await
            },
        )
        .await;
    println!(
        "configurations/patches_with_rules: {patchers} TLS devices, {alone:.0} patches/s with \
         nothing active, {with:.0} patches/s with {} configurations and {} alert rules; \
         ratio {:.0} % (target at least 80 % with 100 and 50)",
        configurations(),
        rules(),
        with / alone.max(1e-9) * 100.0
    );
    println!("configurations/patches_with_rules: {latency}");
}
