//! Hub benchmarks on the durable store (redb in a temporary directory):
//!
//! - `reported_patches`: acknowledged reported-property patches per second from 1,000 device
//!   clients over the in-memory transport. Each client sends its patches one after another,
//!   waiting for each acknowledgement (so 1,000 are in flight).
//! - `restart`: a hub holding N twins of about 1 KB (1,000,000 under `cargo bench`; set
//!   `IOT_DM_BENCH_TWINS`) is reopened in a fresh process, which loads every twin and answers
//!   a query; the measured time is open-to-ready, and the process's resident memory growth per
//!   twin is printed, with the times of a GROUP BY and a WHERE count over the loaded hub (the
//!   query bench runs the same queries over bare twins in a vector, a different layout). Set `IOT_DM_BENCH_DIR` to build the fleet in that directory and keep it;
//!   a later run with the same directory reuses it instead of building it again.
//!
//! Under `cargo test` the benches run once on a small fleet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/fleet.rs"]
mod fleet;
#[path = "common/rss.rs"]
mod rss;
use rss::rss_kib;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use serde_json::json;

use iot_dm::core::twin::Twin;
use iot_dm::device::{DeviceClient, DeviceCredentials, InMemoryTransport};
use iot_dm::service::hub::{DeviceSpec, Hub};

const CHILD_ENV: &str = "IOT_DM_BENCH_RESTART_STORE";
const KEEP_ENV: &str = "IOT_DM_BENCH_DIR";
const HOST: &str = "bench.local";

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn fleet_size() -> usize {
    std::env::var("IOT_DM_BENCH_TWINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full_run() { 1_000_000 } else { 2_000 })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn reported_patches(c: &mut Criterion) {
    const DEVICES: usize = 1_000;
    const PATCHES_PER_DEVICE: usize = 20;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (hub, clients) = rt.block_on(async {
        let hub = Hub::builder()
            .path(dir.path().join("hub.redb"))
            .host_name(HOST)
            .open()
            .await
            .unwrap();
        let mut clients = Vec::with_capacity(DEVICES);
        for i in 0..DEVICES {
            let id = format!("dev-{i:04}");
            let d = hub
                .create_device(DeviceSpec::new(id.parse().unwrap()))
                .await
                .unwrap();
            let key = d.symmetric_key.primary_key.unwrap();
            let creds = DeviceCredentials::symmetric_key(HOST, id.parse().unwrap(), &key).unwrap();
            let client =
                DeviceClient::builder(creds, InMemoryTransport::new(Arc::new(hub.clone())))
                    .connect()
                    .await
                    .unwrap();
            clients.push(client);
        }
        (hub, clients)
    });
    let mut group = c.benchmark_group("hub");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if full_run() { 20 } else { 1 }));
    group.throughput(Throughput::Elements((DEVICES * PATCHES_PER_DEVICE) as u64));
    group.bench_function("reported_patches_1000_devices_redb", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for round in 0..iters {
                    let mut tasks = tokio::task::JoinSet::new();
                    for c in &clients {
                        let c = c.clone();
                        tasks.spawn(async move {
                            for p in 0..PATCHES_PER_DEVICE {
                                c.update_reported(json!({"round": round, "n": p, "temp": 21.5}))
                                    .await
                                    .expect("acknowledged");
                            }
                        });
                    }
                    while let Some(r) = tasks.join_next().await {
                        r.unwrap();
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    drop(clients);
    drop(hub);
}

/// Creates a hub with `n` twins of about 1 KB in `dir` and returns when it is closed.
fn build_fleet(rt: &tokio::runtime::Runtime, dir: &std::path::Path, n: usize) {
    rt.block_on(async {
        let hub = Hub::builder()
            .path(dir.join("hub.redb"))
            .open()
            .await
            .unwrap();
        let started = Instant::now();
        let workers = 256;
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let hub = hub.clone();
            tasks.spawn(async move {
                let mut rng = fleet::Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
                let mut i = w;
                while i < n {
                    let twin = fleet::twin_json(i as u64, &mut rng);
                    let id = twin["deviceId"].as_str().unwrap().to_string();
                    let spec = DeviceSpec::new(id.parse().unwrap())
                        .tags(twin["tags"].clone())
                        .desired(twin["properties"]["desired"].clone());
                    hub.create_device(spec).await.unwrap();
                    hub.patch_reported(&id, &twin["properties"]["reported"])
                        .await
                        .unwrap();
                    i += workers;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let sample: Twin = hub.get_twin("dev-0000000").unwrap();
        eprintln!(
            "built {n} twins in {:.1} s; one twin is {} bytes of JSON",
            started.elapsed().as_secs_f64(),
            serde_json::to_vec(&sample.to_json()).unwrap().len()
        );
        hub.shutdown().await.unwrap();
    });
}

/// Queried on the loaded hub after each restart, as the query bench does over bare twins.
const GROUP_QUERY: &str = "SELECT properties.reported.firmware.version AS v, COUNT() AS n \
                           FROM devices GROUP BY properties.reported.firmware.version";
const WHERE_QUERY: &str =
    "SELECT COUNT() AS n FROM devices WHERE tags.location.region = 'us-west' \
                           AND properties.reported.firmware.version <> '2.0.1'";

/// The child process: open the hub, answer a query, report time and memory while the hub is
/// open (dropping a million twins, and what the allocator keeps after it, do not count), then
/// close it cleanly (so that the next child does not start with a crash recovery).
fn child(path: &str) {
    let rt = runtime();
    let before = rss_kib();
    let start = Instant::now();
    let (hub, hits) = rt.block_on(async {
        let hub = Hub::builder().path(path).open().await.unwrap();
        let hits = hub
            .query("SELECT COUNT() AS n FROM devices WHERE tags.location.region = 'us-west'")
            .unwrap();
        (hub, hits)
    });
    let elapsed = start.elapsed();
    let grown = rss_kib().saturating_sub(before);
    // the loaded hub's own query path (not timed in the restart): best of three of each
    let timed = |q: &str| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(hub.query(q).unwrap());
                t.elapsed().as_micros()
            })
            .min()
            .unwrap_or(0)
    };
    println!("QUERIES {} {}", timed(GROUP_QUERY), timed(WHERE_QUERY));
    println!(
        "RESTART {} {} {} {}",
        elapsed.as_micros(),
        hub.device_count(),
        grown,
        hits.first().and_then(|r| r["n"].as_u64()).unwrap_or(0)
    );
    drop(hub);
    drop(rt);
}

fn restart(c: &mut Criterion) {
    let n = fleet_size();
    let rt = runtime();
    let temp = tempfile::tempdir().unwrap();
    // IOT_DM_BENCH_DIR keeps the fleet there, and reuses a fleet built there before
    let dir = std::env::var_os(KEEP_ENV).map_or_else(|| temp.path().to_path_buf(), Into::into);
    if dir.join("hub.redb").exists() {
        eprintln!("reusing the fleet in {}", dir.display());
    } else {
        std::fs::create_dir_all(&dir).unwrap();
        build_fleet(&rt, &dir, n);
    }
    drop(rt);
    let store = dir.join("hub.redb");
    let exe = std::env::current_exe().unwrap();
    let mut last = (0u64, 0u64);
    let mut best_queries = (u64::MAX, u64::MAX);
    let mut group = c.benchmark_group("hub");
    group.sample_size(10);
    group.bench_function(format!("restart_{n}_twins_redb"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let out = Command::new(&exe).env(CHILD_ENV, &store).output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text
                    .lines()
                    .find(|l| l.starts_with("RESTART "))
                    .unwrap_or_else(|| {
                        panic!("child failed: {}", String::from_utf8_lossy(&out.stderr))
                    });
                let f: Vec<u64> = line[8..].split(' ').map(|x| x.parse().unwrap()).collect();
                assert_eq!(f[1] as usize, n, "every twin loaded");
                total += Duration::from_micros(f[0]);
                last = (f[2], f[3]);
                if let Some(q) = text.lines().find_map(|l| l.strip_prefix("QUERIES ")) {
                    let q: Vec<u64> = q.split(' ').map(|x| x.parse().unwrap()).collect();
                    best_queries = (best_queries.0.min(q[0]), best_queries.1.min(q[1]));
                }
            }
            total
        })
    });
    group.finish();
    eprintln!(
        "hub memory after loading {n} twins: {} MiB ({} bytes per twin); {} matched the query; \
         store file {} MiB",
        last.0 / 1024,
        last.0 * 1024 / n as u64,
        last.1,
        std::fs::metadata(&store)
            .map(|m| m.len() >> 20)
            .unwrap_or(0)
    );
    eprintln!(
        "queries on the loaded hub, best of every restart: GROUP BY firmware {:.1} ms, \
         WHERE count {:.1} ms",
        best_queries.0 as f64 / 1000.0,
        best_queries.1 as f64 / 1000.0
    );
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    reported_patches(&mut c);
    restart(&mut c);
    c.final_summary();
}
