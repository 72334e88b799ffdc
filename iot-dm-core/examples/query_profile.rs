//! Times the two benchmark queries (a WHERE scan and a GROUP BY) over the benchmark fleet,
//! without the benchmark harness: quick to build, and small enough to run under an
//! instruction-counting profiler.
//!
//! ```text
//! cargo run --release -p iot-dm-core --example query_profile -- [twins] [scan|group|both] [rounds]
//! ```
//!
//! The twins' sections are packed a page at a time, as the hub packs what it loads; set
//! `IOT_DM_BENCH_UNPACKED=1` to keep the layout of twins built one at a time.
//!
//! The query work happens in `run_scan` and `run_group`, so a profiler can count just those.
//! Each query reports wall time and on-CPU time (from `/proc/thread-self/schedstat`), which
//! leaves out time spent waiting for a CPU on a busy machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use iot_dm_core::query::Query;
use iot_dm_core::twin::{pack_sections, Twin};

#[path = "../../benches/common/fleet.rs"]
mod fleet;

const SCAN: &str = "SELECT * FROM devices WHERE tags.location.region = 'us-west' \
                    AND properties.reported.firmware.version <> '2.0.1'";
const GROUP: &str = "SELECT properties.reported.firmware.version AS v, COUNT() AS n \
                     FROM devices GROUP BY properties.reported.firmware.version";

/// Time this thread has spent on a CPU, from `/proc/thread-self/schedstat` (Linux; zero
/// elsewhere): unlike wall time, it leaves out time spent waiting for a CPU on a busy machine.
fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Runs `f` and returns (wall time, on-CPU time).
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    f();
    (wall.elapsed(), cpu_time().saturating_sub(cpu))
}

#[inline(never)]
fn run_scan(q: &Query, twins: &[Twin]) -> usize {
    q.filter(twins).map(|it| it.count()).unwrap_or(0)
}

#[inline(never)]
fn run_group(q: &Query, twins: &[Twin]) -> usize {
    q.execute(twins).map(|rows| rows.len()).unwrap_or(0)
}

fn report(name: &str, times: Vec<(Duration, Duration)>, n: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        (v[0], v[v.len() / 2])
    };
    let (min, median) = stats(times.iter().map(|t| t.0).collect());
    let (cpu_min, cpu_median) = stats(times.iter().map(|t| t.1).collect());
    println!(
        "{name}: wall min {:.1} ms, median {:.1} ms; on-CPU min {:.1} ms, median {:.1} ms; \
         {} rounds ({:.0} ns/twin at wall min)",
        ms(min),
        ms(median),
        ms(cpu_min),
        ms(cpu_median),
        times.len(),
        min.as_nanos() as f64 / n.max(1) as f64
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let which = args.next().unwrap_or_else(|| "both".into());
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;

    let mut rng = fleet::Rng(0x9E37_79B9_7F4A_7C15);
    let mut twins: Vec<Twin> = (0..n as u64)
        .map(|i| serde_json::from_value(fleet::twin_json(i, &mut rng)))
        .collect::<Result<_, _>>()?;
    // the hub's layout after loading: each page's sections together (as the benchmark does)
    if std::env::var_os("IOT_DM_BENCH_UNPACKED").is_none() {
        twins.chunks_mut(1024).for_each(pack_sections);
    }
    let scan = Query::parse(SCAN)?;
    let group = Query::parse(GROUP)?;

    if which == "scan" || which == "both" {
        let times = (0..rounds)
            .map(|_| {
                timed(|| {
                    black_box(run_scan(&scan, black_box(&twins)));
                })
            })
            .collect();
        println!("scan matches {}", run_scan(&scan, &twins));
        report("scan", times, n);
    }
    if which == "group" || which == "both" {
        let times = (0..rounds)
            .map(|_| {
                timed(|| {
                    black_box(run_group(&group, black_box(&twins)));
                })
            })
            .collect();
        println!("group rows {:?}", group.execute(&twins)?);
        report("group", times, n);
    }
    Ok(())
}
