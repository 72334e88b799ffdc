//! Benchmarks of IoT Hub jobs v2 on the hub:
//!
//! * `jobs/twin_update_<n>_twins`: a `scheduleUpdateTwin` job (`queryCondition: "*"`, a tags
//!   and desired patch, no rate limit) over N twins, from create to `completed` (target: at
//!   most 10 s for 1,000,000 twins);
//! * `jobs/method_tls_<m>_devices`: a `scheduleDeviceMethod` job over M devices connected over
//!   MQTT/TLS to a `HubServer` on 127.0.0.1 and answering 200, from create to `completed`
//!   (target: at most 2 s for 10,000 devices). The devices live in a child process, so that
//!   neither process holds two descriptors per connection;
//! * `jobs/patches_under_job`: acknowledged reported patches per second from MQTT/TLS devices,
//!   first alone and then while a twin job runs over the fleet, and their ratio (target: at
//!   least 80 %);
//! * `jobs/memory_per_device_job`: the resident-memory growth of the hub (on redb) per device
//!   of a running job (target: at most 200 bytes).
//!
//! Sizes: `IOT_DM_BENCH_TWINS` (twin job and the fleet of the patch bench, default 1,000,000
//! under `cargo bench`), `IOT_DM_BENCH_METHOD_DEVICES` (method job, default 10,000),
//! `IOT_DM_BENCH_PATCHERS` (patching devices, default 1,000). Under `cargo test` every part
//! runs once on a small fleet. A filter argument (a plain substring) selects parts.
//!
//! The bench runs on mimalloc, the allocator of the `iot-dm` hub binary: a hub embedded in
//! another program gets that program's allocator, and with glibc's the twin job is about three
//! times slower (see `docs/performance.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mqtt_support/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "jobs_support/devices.rs"]
mod devices;
#[path = "jobs_support/fleet.rs"]
mod fleet;
#[path = "common/rss.rs"]
mod rss;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};

use fleet::{env_size, full_run, runtime, Fleet};

/// Every wait of a benchmark is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(300);

fn configure(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("jobs");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group
}

/// `jobs/twin_update_<n>_twins`.
fn bench_twin_job(c: &mut Criterion, n: usize) {
    let rt = runtime("iot-hub");
    let fleet = rt.block_on(Fleet::twins(n));
    let mut group = configure(c);
    let mut runs = Vec::new();
    group.bench_function(format!("twin_update_{n}_twins"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let took = rt.block_on(fleet.twin_job(None));
                runs.push(took);
                total += took;
            }
            total
        })
    });
    group.finish();
    fleet::summary(&format!("jobs/twin_update_{n}_twins"), &runs, 10.0);
}

/// `jobs/method_tls_<m>_devices`.
fn bench_method_job(c: &mut Criterion, m: usize) {
    let rt = runtime("iot-hub");
    let served = rt.block_on(devices::Served::start(m, 0));
    let mut group = configure(c);
    let mut runs = Vec::new();
    group.bench_function(format!("method_tls_{m}_devices"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let took = rt.block_on(served.method_job());
                runs.push(took);
                total += took;
            }
            total
        })
    });
    group.finish();
    fleet::summary(&format!("jobs/method_tls_{m}_devices"), &runs, 2.0);
    rt.block_on(served.shutdown());
}

/// `jobs/patches_under_job`: one run, printed.
fn patches_under_job(n: usize, patchers: usize) {
    let rt = runtime("iot-hub");
    let served = rt.block_on(devices::Served::start(0, n));
    let secs = if full_run() { 5.0 } else { 1.0 };
    let load = runtime("load");
    let (alone, with, job) = rt.block_on(served.patch_ratio(load.handle(), patchers, secs));
    load.shutdown_timeout(Duration::from_secs(5));
    let ratio = with / alone.max(1e-9);
    println!(
        "jobs/patches_under_job: {patchers} TLS devices, {alone:.0} patches/s alone, {with:.0} \
         patches/s while a twin job ran over {n} twins ({job}); ratio {:.0} % (target at least 80 %)",
        ratio * 100.0
    );
    rt.block_on(served.shutdown());
}

/// `jobs/memory_per_device_job`: one run, printed.
fn memory_per_device_job(n: usize) {
    let rt = runtime("iot-hub");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (bytes, what) = rt.block_on(fleet::memory_per_device_job(dir.path(), n));
    println!(
        "jobs/memory_per_device_job: {bytes:.0} bytes of resident memory per device of a \
         running job over {n} twins on redb ({what}; target at most 200 B)"
    );
}

/// The allocator the `iot-dm` hub binary uses, so that these figures are the hub's.
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
    let twins = env_size("IOT_DM_BENCH_TWINS", 1_000_000, 2_000);
    let devices = env_size("IOT_DM_BENCH_METHOD_DEVICES", 10_000, 200);
    let patchers = env_size("IOT_DM_BENCH_PATCHERS", 1_000, 50);
    let mut c = Criterion::default().configure_from_args();
    let started = Instant::now();
    if wants("jobs/memory_per_device_job") {
        memory_per_device_job(twins);
    }
    if wants(&format!("jobs/twin_update_{twins}_twins")) {
        bench_twin_job(&mut c, twins);
    }
    if wants(&format!("jobs/method_tls_{devices}_devices")) {
        bench_method_job(&mut c, devices);
    }
    if wants("jobs/patches_under_job") {
        patches_under_job(twins, patchers);
    }
    c.final_summary();
    println!(
        "jobs benches: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}
