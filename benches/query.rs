//! Twin query benchmarks: a full WHERE scan, the JSON of a page of rows, the first page
//! through the paging API, a GROUP BY, and parsing.
//!
//! `cargo bench --bench query` builds 1,000,000 twins of about 1 KB each (set
//! `IOT_DM_BENCH_TWINS` to use another count) and lays them out as the hub does when it loads
//! its store: each page of 1024 records is encoded as stored, read back, and its documents made
//! section by section (`IOT_DM_BENCH_UNPACKED=1` keeps the layout of twins built one at a
//! time from JSON). Under `cargo test` the benches run once over a
//! small fleet.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use iot_dm::core::binary::Reader;
use iot_dm::core::query::{PageRequest, Query};
use iot_dm::core::twin::{install_deferred, Twin};
use serde_json::Value;

const SCAN: &str = "SELECT * FROM devices WHERE tags.location.region = 'us-west' \
                    AND properties.reported.firmware.version <> '2.0.1'";
const GROUP: &str = "SELECT properties.reported.firmware.version AS v, COUNT() AS n \
                     FROM devices GROUP BY properties.reported.firmware.version";
const PARSE: &str = "SELECT * FROM devices WHERE tags.location.region = 'us-west' \
                     AND tags.environment IN ['prod', 'staging'] \
                     AND properties.reported.firmware.version <> '2.0.1' \
                     AND properties.reported.battery.level >= 20 \
                     AND NOT IS_DEFINED(tags.decommissioned)";

/// Twins per page the hub loads (and packs) at a time.
const LOAD_PAGE: usize = 1024;

#[path = "common/fleet.rs"]
mod fleet;
#[path = "common/rss.rs"]
mod rss;
use fleet::{twin_json, Rng};
use rss::rss_kib;

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
        let rss_before = rss_kib();
        let started = Instant::now();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut json_bytes = 0usize;
        let mut build = |i: u64| -> Twin {
            let v = twin_json(i, &mut rng);
            json_bytes += v.to_string().len();
            serde_json::from_value(v).expect("generated twin is valid")
        };
        // laid out as the hub lays out the twins it loads: a page of stored records is read,
        // then its documents are made section by section (`install_deferred`)
        let packed = std::env::var_os("IOT_DM_BENCH_UNPACKED").is_none();
        let mut twins: Vec<Twin> = Vec::with_capacity(n);
        if packed {
            let mut stored: Vec<Vec<u8>> = Vec::with_capacity(LOAD_PAGE);
            for start in (0..n as u64).step_by(LOAD_PAGE) {
                let end = (start + LOAD_PAGE as u64).min(n as u64);
                stored.clear();
                for i in start..end {
                    let mut out = Vec::new();
                    build(i).write_binary(&mut out);
                    stored.push(out);
                }
                let mut read: Vec<_> = stored
                    .iter()
                    .map(|bytes| {
                        Twin::read_binary_deferred(&mut Reader::new(bytes))
                            .expect("a stored twin reads back")
                    })
                    .collect();
                let mut batch: Vec<_> = read.iter_mut().map(|(t, d)| (t, *d)).collect();
                install_deferred(&mut batch).expect("documents read back");
                drop(batch);
                twins.extend(read.into_iter().map(|(t, _)| t));
            }
        } else {
            twins.extend((0..n as u64).map(&mut build));
        }
        let heap: usize = twins.iter().map(Twin::heap_size).sum();
        let rss = rss_kib().saturating_sub(rss_before) * 1024;
        eprintln!(
            "built {n} twins in {:.1?} ({}): {} bytes of JSON per twin on average (without $metadata), \
             {} bytes of documents per twin (Twin::heap_size), {} bytes of Twin struct, \
             resident memory grew by {} bytes per twin",
            started.elapsed(),
            if packed {
                "read a page of 1024 stored records at a time, as the hub loads them"
            } else {
                "interleaved, as built one at a time"
            },
            json_bytes / n.max(1),
            heap / n.max(1),
            std::mem::size_of::<Twin>(),
            rss / n.max(1) as u64,
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
    // The scan the target is about: the WHERE over every twin, collecting every match.
    g.bench_function(
        format!("scan_{n}_where_collect_all_{matching}_matches"),
        |b| {
            b.iter(|| {
                let hits: Vec<&Twin> = scan.filter(black_box(twins)).expect("devices").collect();
                black_box(hits.len())
            })
        },
    );
    // What a caller does next: the JSON of the first 100 rows, on their own. In a heap
    // fragmented by building a million twins, the system allocator makes this several times
    // slower than in a fresh process.
    let hits: Vec<&Twin> = scan.filter(twins).expect("devices").take(100).collect();
    g.bench_function("first_100_rows_as_json", |b| {
        b.iter(|| {
            let page: Vec<Value> = hits.iter().map(|t| t.to_json()).collect();
            black_box(page)
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
