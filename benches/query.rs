//! Twin query benchmarks: a full WHERE scan, a GROUP BY, and parsing.
//!
//! `cargo bench --bench query` builds 1,000,000 twins of about 1 KB each (set
//! `IOT_DM_BENCH_TWINS` to use another count). Under `cargo test` the benches run once over a
//! small fleet.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use iot_dm::core::query::{PageRequest, Query};
use iot_dm::core::twin::Twin;
use serde_json::{json, Value};

const SCAN: &str = "SELECT * FROM devices WHERE tags.location.region = 'us-west' \
                    AND properties.reported.firmware.version <> '2.0.1'";
const GROUP: &str = "SELECT properties.reported.firmware.version AS v, COUNT() AS n \
                     FROM devices GROUP BY properties.reported.firmware.version";
const PARSE: &str = "SELECT * FROM devices WHERE tags.location.region = 'us-west' \
                     AND tags.environment IN ['prod', 'staging'] \
                     AND properties.reported.firmware.version <> '2.0.1' \
                     AND properties.reported.battery.level >= 20 \
                     AND NOT IS_DEFINED(tags.decommissioned)";

/// Deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REGIONS: [(&str, [&str; 3]); 8] = [
    ("us-west", ["Seattle", "Portland", "San Jose"]),
    ("us-east", ["Boston", "Atlanta", "Newark"]),
    ("eu-west", ["Dublin", "Amsterdam", "Paris"]),
    ("eu-north", ["Stockholm", "Oslo", "Helsinki"]),
    ("ap-south", ["Mumbai", "Chennai", "Pune"]),
    ("ap-east", ["Tokyo", "Osaka", "Seoul"]),
    ("sa-east", ["Sao Paulo", "Santiago", "Lima"]),
    ("af-south", ["Cape Town", "Nairobi", "Lagos"]),
];
const FIRMWARE: [&str; 6] = ["1.8.2", "1.9.0", "2.0.0", "2.0.1", "2.0.1", "2.1.0-beta"];

/// The JSON of twin `i`: about 1 KB of tags and properties.
fn twin_json(i: u64, rng: &mut Rng) -> Value {
    let (region, cities) = REGIONS[(rng.next() % REGIONS.len() as u64) as usize];
    let fw = rng.pick(&FIRMWARE);
    let interval = [15, 30, 60, 300][rng.below(4) as usize];
    let day = 1 + rng.below(28);
    json!({
        "deviceId": format!("dev-{i:07}"),
        "status": "enabled",
        "connectionState": if rng.below(4) == 0 { "Disconnected" } else { "Connected" },
        "lastActivityTime": format!("2026-10-{day:02}T12:{:02}:{:02}.123Z", rng.below(60), rng.below(60)),
        "tags": {
            "location": {
                "region": region,
                "city": rng.pick(&cities),
                "building": format!("bldg-{}", rng.below(40)),
                "floor": rng.below(12),
            },
            "customer": {
                "id": format!("cust-{:05}", rng.below(5000)),
                "tier": rng.pick(&["gold", "silver", "bronze"]),
            },
            "environment": rng.pick(&["prod", "prod", "prod", "staging", "dev"]),
            "deviceModel": {
                "manufacturer": "Contoso",
                "model": rng.pick(&["TH-200", "GW-500", "CAM-3"]),
                "hwRevision": rng.pick(&["rev-b", "rev-c"]),
            },
            "owner": format!("team-{}", rng.below(30)),
        },
        "properties": {
            "desired": {
                "config": {
                    "telemetryInterval": interval,
                    "logLevel": "info",
                    "features": {"ota": true, "diagnostics": false, "edgeCompute": false},
                },
                "firmware": {"version": "2.0.1", "url": "https://updates.example.com/fw/2.0.1.bin"},
            },
            "reported": {
                "firmware": {
                    "version": fw,
                    "lastUpdate": format!("2026-09-{day:02}T03:{:02}:00.000Z", rng.below(60)),
                    "updateStatus": rng.pick(&["current", "current", "pending", "failed"]),
                    "bootloader": "bl-1.4.2",
                },
                "config": {
                    "telemetryInterval": interval,
                    "logLevel": rng.pick(&["info", "info", "debug", "warn"]),
                    "features": {"ota": true, "diagnostics": rng.below(2) == 0, "edgeCompute": false},
                },
                "battery": {
                    "level": rng.below(101),
                    "charging": rng.below(3) == 0,
                    "health": rng.pick(&["good", "good", "fair", "poor"]),
                },
                "network": {
                    "type": rng.pick(&["wifi", "cellular", "ethernet"]),
                    "rssi": -(30 + rng.below(60) as i64),
                    "ip": format!("10.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254)),
                },
                "uptimeSecs": rng.below(10_000_000),
            },
        },
    })
}

fn twin_count() -> usize {
    if let Some(n) = std::env::var("IOT_DM_BENCH_TWINS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    // `cargo bench` passes --bench; `cargo test` runs the benches once, on a small fleet.
    if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        1_000
    }
}

fn twins() -> &'static [Twin] {
    static TWINS: OnceLock<Vec<Twin>> = OnceLock::new();
    TWINS.get_or_init(|| {
        let n = twin_count();
        let started = Instant::now();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut json_bytes = 0usize;
        let twins: Vec<Twin> = (0..n as u64)
            .map(|i| {
                let v = twin_json(i, &mut rng);
                json_bytes += v.to_string().len();
                serde_json::from_value(v).expect("generated twin is valid")
            })
            .collect();
        let heap: usize = twins.iter().map(Twin::heap_size).sum();
        eprintln!(
            "built {n} twins in {:.1?}: {} bytes of JSON per twin on average (without $metadata), {} bytes of documents per twin",
            started.elapsed(),
            json_bytes / n.max(1),
            heap / n.max(1),
        );
        twins
    })
}

fn bench(c: &mut Criterion) {
    // Parse first, in a fresh process: after the large frees of the scan benches the
    // allocator's state (heap trimming) makes small allocations much slower.
    let mut g = c.benchmark_group("parse");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("parse_5_predicates", |b| {
        b.iter(|| black_box(Query::parse(black_box(PARSE)).expect("parses")))
    });
    g.finish();

    let twins = twins();
    let n = twins.len();

    let scan = Query::parse(SCAN).expect("scan query parses");
    let matching = scan.filter(twins).expect("devices").count();
    eprintln!("scan query matches {matching} of {n} twins");
    let mut g = c.benchmark_group("query");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function(format!("scan_{n}_filter_all_and_first_page_of_100"), |b| {
        b.iter(|| {
            let hits: Vec<&Twin> = scan.filter(black_box(twins)).expect("devices").collect();
            let page: Vec<Value> = hits.iter().take(100).map(|t| t.to_json()).collect();
            black_box((hits.len(), page))
        })
    });
    g.bench_function(format!("scan_{n}_first_page_via_page_api"), |b| {
        let req = PageRequest::new();
        b.iter(|| black_box(scan.page(black_box(twins), &req).expect("page")))
    });
    let group = Query::parse(GROUP).expect("group query parses");
    eprintln!(
        "group query rows: {}",
        Value::Array(group.execute(twins).expect("execute"))
    );
    g.bench_function(format!("group_by_firmware_{n}"), |b| {
        b.iter(|| black_box(group.execute(black_box(twins)).expect("execute")))
    });
    g.finish();

    // Materialising every match is dominated by building each twin's JSON; timed once (best
    // of three) rather than sampled, to keep the run short.
    let best = (0..3)
        .map(|_| {
            let started = Instant::now();
            black_box(scan.execute(black_box(twins)).expect("execute").len());
            started.elapsed()
        })
        .min()
        .unwrap_or_default();
    eprintln!("scan_{n}_materialise_all_{matching}_matches: {best:.1?} (best of 3)");
}

criterion_group!(benches, bench);
criterion_main!(benches);
