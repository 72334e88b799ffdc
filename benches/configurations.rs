//! Benchmark of automatic device configurations on the hub:
//!
//! * `configurations/apply_<n>_twins`: a new configuration targeting every one of N twins
//!   (`targetCondition: "*"`, one desired property, one custom metric), from the create call
//!   until every twin has its content and the metrics say so (`appliedCount` = N, the custom
//!   metric = N); target: at most 10 s for 1,000,000 twins. Between runs the configuration is
//!   deleted and its settings removed (not timed).
//!
//! * `configurations/patches_with_rules`: acknowledged reported patches per second from
//!   MQTT/TLS devices, first with nothing active, then with 100 configurations (each with a
//!   custom metric over reported properties) and 50 alert rules, in one run (target: at least
//!   80 %); then, under the same load, the time from an acknowledged reported patch to the
//!   custom metric it moves (target: p99 at most 100 ms).
//!
//! Sizes: `IOT_DM_BENCH_CONFIG_TWINS` (default 1,000,000 under `cargo bench`, 2,000 under
//! `cargo test`), `IOT_DM_BENCH_PATCHERS` (default 1,000, 50 under test). A filter argument
//! (a plain substring) selects parts. Like the jobs bench, it runs on mimalloc, the hub
//! binary's allocator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mqtt_support/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "jobs_support/devices.rs"]
#[allow(dead_code)]
mod devices;
#[path = "jobs_support/fleet.rs"]
#[allow(dead_code)]
mod fleet;
#[path = "common/rss.rs"]
#[allow(dead_code)]
mod rss;
#[path = "configurations_support/rules.rs"]
mod rules;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use serde_json::json;

use iot_dm_core::configuration::Configuration;
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::Hub;

use fleet::{env_size, runtime, summary, Fleet};

/// Every wait of a benchmark is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(300);

fn configuration(id: &str) -> Configuration {
    Configuration::from_json(&json!({
        "id": id, "targetCondition": "*", "priority": 10,
        "content": {"deviceContent": {"properties.desired.bench": {"run": id}}},
        "metrics": {"queries": {
            "applied": format!("SELECT deviceId FROM devices WHERE configurations.[[{id}]].status = 'Applied'"),
        }},
    }))
    .expect("configuration")
}

/// Creates a configuration over all `n` twins and returns the time until it is applied
/// everywhere with its metrics complete; then deletes it.
async fn apply_once(hub: &Hub, n: usize, run: usize) -> Duration {
    let id = format!("bench-{run}");
    let start = Instant::now();
    hub.put_configuration(&configuration(&id), None)
        .await
        .expect("create");
    tokio::time::timeout(LIMIT, hub.configurations_applied())
        .await
        .expect("applied within the limit")
        .expect("applied");
    let took = start.elapsed();
    let cfg = hub.get_configuration(&id).await.expect("configuration");
    let n = n as u64;
    assert_eq!(cfg.system_metrics.results["targetedCount"], n, "{id}");
    assert_eq!(cfg.system_metrics.results["appliedCount"], n, "{id}");
    assert_eq!(cfg.metrics.results["applied"], n, "{id}");
    let twin = hub.get_twin("twin-0000000").expect("twin");
    assert_eq!(
        twin.desired().doc().to_value(),
        json!({"bench": {"run": id}})
    );
    hub.delete_configuration(&id, None).await.expect("delete");
    tokio::time::timeout(LIMIT, hub.configurations_applied())
        .await
        .expect("deleted within the limit")
        .expect("deleted");
    took
}

/// The allocator the `iot-dm` hub binary uses, so that these figures are the hub's (see
/// `docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if devices::is_child() {
        devices::child_main();
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let n = env_size("IOT_DM_BENCH_CONFIG_TWINS", 1_000_000, 2_000);
    let patchers = env_size("IOT_DM_BENCH_PATCHERS", 1_000, 50);
    let mut c = Criterion::default().configure_from_args();
    if wants(&format!("configurations/apply_{n}_twins")) {
        bench_apply(&mut c, n);
    }
    if wants("configurations/patches_with_rules") {
        let rt = runtime("iot-hub");
        let served = rt.block_on(devices::Served::start(0, 0));
        let load = runtime("load");
        let secs = if fleet::full_run() { 5.0 } else { 1.0 };
        rt.block_on(rules::patches_with_rules(
            &served,
            load.handle(),
            patchers,
            secs,
        ));
        load.shutdown_timeout(Duration::from_secs(5));
        rt.block_on(served.shutdown());
    }
    c.final_summary();
}

/// `configurations/apply_<n>_twins`.
fn bench_apply(c: &mut Criterion, n: usize) {
    let rt = runtime("iot-hub");
    let hub = rt.block_on(Fleet::twins(n)).hub;
    let mut group = c.benchmark_group("configurations");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    let mut runs = Vec::new();
    group.bench_function(format!("apply_{n}_twins"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let took = rt.block_on(apply_once(&hub, n, runs.len()));
                runs.push(took);
                total += took;
            }
            total
        })
    });
    group.finish();
    summary(&format!("configurations/apply_{n}_twins"), &runs, 10.0);
}
