//! Twin serialization benchmarks: what `SELECT *` and `GET /twins/{id}` cost per twin.
//!
//! * `twin/to_json`: [`Twin::to_json`] (a `serde_json::Value`, what query rows hold).
//! * `twin/to_vec`: `serde_json::to_vec(&twin)`, the bytes of a REST response.
//! * `twin/section_metadata`: `Section::metadata_value` of the reported properties.
//! * `twin/get_path`: one nested lookup in a cached document.
//!
//! The twins are the shared ~1 KB bench fleet; every other one has had a reported patch, so
//! its `$metadata` holds more than one timestamp.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use iot_dm::core::clock::Timestamp;
use iot_dm::core::twin::{Twin, TwinLimits};
use serde_json::json;

#[path = "common/fleet.rs"]
mod fleet;
use fleet::{twin_json, Rng};

const TWINS: usize = 256;

fn twins() -> Vec<Twin> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let limits = TwinLimits::default();
    (0..TWINS as u64)
        .map(|i| {
            let mut twin: Twin =
                serde_json::from_value(twin_json(i, &mut rng)).expect("generated twin is valid");
            if i % 2 == 1 {
                let now = Timestamp::from_unix_millis(1_790_000_000_123 + i as i64);
                twin.patch_reported(&json!({"battery": {"level": i % 100}}), now, &limits)
                    .expect("patch is valid");
            }
            twin
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let twins = twins();
    let bytes: usize = twins
        .iter()
        .map(|t| serde_json::to_vec(t).map_or(0, |v| v.len()))
        .sum();
    eprintln!(
        "{TWINS} twins, {} bytes of service JSON per twin on average",
        bytes / TWINS
    );
    let mut g = c.benchmark_group("twin");
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % TWINS;
        &twins[i]
    };
    g.bench_function("to_json", |b| {
        b.iter(|| black_box(black_box(next()).to_json()))
    });
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % TWINS;
        &twins[i]
    };
    g.bench_function("to_vec", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(next())).expect("serializes")))
    });
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % TWINS;
        &twins[i]
    };
    g.bench_function("section_metadata", |b| {
        b.iter(|| black_box(black_box(next()).reported().metadata_value()))
    });
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % TWINS;
        &twins[i]
    };
    g.bench_function("get_path", |b| {
        b.iter(|| {
            let doc = black_box(next()).reported().doc();
            black_box(doc.get_path(&["firmware", "version"]).map(|n| n.value()))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
