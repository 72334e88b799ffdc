//! Benchmarks of the hub's storage layer: acknowledged, durable writes into redb.
//!
//! * `committer/redb/200B x1000`: 1,000 concurrent writers, each writing 200-byte records through
//!   the group-commit [`Committer`] and awaiting every acknowledgement.
//! * `committer/redb/1500B x1000`: the same with 1.5 KB records (a typical twin).
//! * `committer/memory/200B x1000`: the committer's own overhead, without fsync.
//! * `redb/put 1500B`: one 1.5 KB put per durable commit, no grouping: the fsync floor.
//!
//! After each committer benchmark a summary line gives acknowledged writes/s and the mean
//! number of writes per group commit. Set `IOT_DM_BENCH_QUICK=1` for a short run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iot_dm_service::store::{Committer, MemoryStore, Op, RedbStore, Store, Table};

const SUBMITTERS: u64 = 1_000;

fn quick() -> bool {
    std::env::var_os("IOT_DM_BENCH_QUICK").is_some_and(|v| v != "0")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn tempdir() -> tempfile::TempDir {
    // Under the target directory, on a real disk: a tmpfs would make fsync free.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory")
}

/// Totals across every measured and warm-up round of one benchmark.
#[derive(Default)]
struct Totals {
    writes: AtomicU64,
    nanos: AtomicU64,
}

/// `SUBMITTERS` writers, each doing `iters` acknowledged writes of `size` bytes.
async fn committer_round(
    committer: &Committer,
    next_key: &Arc<AtomicU64>,
    size: usize,
    iters: u64,
) -> Duration {
    let started = Instant::now();
    let writers: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let (committer, next_key) = (committer.clone(), Arc::clone(next_key));
            tokio::spawn(async move {
                for _ in 0..iters {
                    let n = next_key.fetch_add(1, Ordering::Relaxed);
                    let mut value = vec![0x5a; size];
                    value[..8].copy_from_slice(&n.to_le_bytes());
                    committer
                        .submit(vec![Op::put(Table::Log, n.to_be_bytes(), value)])
                        .await
                        .expect("acknowledged write");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task");
    }
    started.elapsed()
}

fn bench_committer(c: &mut Criterion, name: &str, store: impl Store, size: usize) {
    let rt = runtime();
    let committer = rt.block_on(async { Committer::new(store) });
    let next_key = Arc::new(AtomicU64::new(0));
    let totals = Totals::default();
    let mut group = c.benchmark_group("committer");
    group.throughput(Throughput::Elements(SUBMITTERS));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(committer_round(&committer, &next_key, size, iters));
            totals
                .writes
                .fetch_add(iters * SUBMITTERS, Ordering::Relaxed);
            let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            totals.nanos.fetch_add(nanos, Ordering::Relaxed);
            elapsed
        });
    });
    group.finish();

    let stats = committer.stats();
    let writes = totals.writes.load(Ordering::Relaxed);
    let secs = Duration::from_nanos(totals.nanos.load(Ordering::Relaxed)).as_secs_f64();
    println!(
        "summary committer/{name}: {writes} acknowledged writes in {:.1} s = {:.0} writes/s; \
         {} group commits, {:.1} writes per commit on average, {:.1} MB committed",
        secs,
        writes as f64 / secs.max(f64::MIN_POSITIVE),
        stats.batches,
        stats.avg_batch_ops(),
        stats.bytes as f64 / 1e6,
    );
}

fn committer_benches(c: &mut Criterion) {
    let dir = tempdir();
    let store = runtime()
        .block_on(RedbStore::open(dir.path().join("bench-200.redb")))
        .expect("open redb store");
    bench_committer(c, "redb/200B x1000", store, 200);

    let store = runtime()
        .block_on(RedbStore::open(dir.path().join("bench-1500.redb")))
        .expect("open redb store");
    bench_committer(c, "redb/1500B x1000", store, 1500);

    bench_committer(c, "memory/200B x1000", MemoryStore::new(), 200);
}

fn single_put_benches(c: &mut Criterion) {
    let dir = tempdir();
    let rt = runtime();
    let store = rt
        .block_on(RedbStore::open(dir.path().join("bench-single.redb")))
        .expect("open redb store");
    let mut next = 0u64;
    let mut group = c.benchmark_group("redb");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put 1500B", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    next += 1;
                    store
                        .commit(vec![Op::put(
                            Table::Devices,
                            next.to_be_bytes(),
                            vec![0xa5; 1500],
                        )])
                        .await
                        .expect("durable put");
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

fn config() -> Criterion {
    let c = Criterion::default().sample_size(10);
    if quick() {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    } else {
        c.warm_up_time(Duration::from_secs(3))
            .measurement_time(Duration::from_secs(20))
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = committer_benches, single_put_benches
}
criterion_main!(benches);
