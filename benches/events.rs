//! The event stream's costs:
//!
//! - `events/reported_patch_in_memory`: `Hub::patch_reported` one after another on an
//!   in-memory hub, each publishing its `twin.changed` event (to the retention ring and the
//!   in-process broadcast): the hot path the stream must not slow down. The same loop runs on
//!   a hub without the stream to compare (see `benches/README.md`).
//! - `events/resume_from_ring`: a reader resuming after an id reads 100,000 retained events
//!   through `Hub::event_stream` (the ring's resume cost, no I/O).
//! - `events/sse_to_one_reader`: 20,000 retained events delivered over loopback HTTP to one
//!   `ServiceClient::events` reader (framing, JSON, the socket, the client's parsing).
//!
//! Under `cargo test` the benches run once on small numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use serde_json::json;

use iot_dm::service::client::{EventItem, EventsRequest, ServiceClient};
use iot_dm::service::hub::{DeviceSpec, Hub, StreamItem};
use iot_dm::service::rest::RestServer;

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn scaled(n: usize) -> usize {
    if full_run() {
        n
    } else {
        n / 100
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A hub whose stream retains `n` reported patches of one device; returns the first's id.
async fn hub_with_events(n: usize) -> (Hub, u64) {
    let hub = hub_with_device().await;
    let mut live = hub.event_stream(None);
    for i in 0..n {
        hub.patch_reported("d1", &json!({ "n": i })).await.unwrap();
    }
    let Some(StreamItem::Event(first)) = live.next().await else {
        panic!("no event")
    };
    (hub, first.id)
}

async fn hub_with_device() -> Hub {
    let hub = Hub::builder().in_memory().open().await.unwrap();
    hub.create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    hub
}

fn reported_patch(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("events");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(if full_run() { 10 } else { 1 }));
    group.throughput(Throughput::Elements(1));
    for (name, retention) in [
        ("reported_patch_in_memory", None),
        ("reported_patch_in_memory_retention_16", Some(16)),
    ] {
        let hub = rt.block_on(async {
            let mut b = Hub::builder().in_memory();
            if let Some(n) = retention {
                b = b.event_retention(n, usize::MAX);
            }
            let hub = b.open().await.unwrap();
            hub.create_device(DeviceSpec::new("d1".parse().unwrap()))
                .await
                .unwrap();
            hub
        });
        group.bench_function(name, |b| {
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                rt.block_on(hub.patch_reported("d1", &json!({"n": n, "temp": 21.5})))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn resume(c: &mut Criterion) {
    let rt = runtime();
    let n = scaled(100_000);
    let (hub, first) = rt.block_on(hub_with_events(n));
    let mut group = c.benchmark_group("events");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("resume_from_ring", |b| {
        b.iter(|| {
            let mut cursor = hub.event_stream(Some(first - 1));
            let mut read = 0;
            while let Some(item) = cursor.try_next() {
                assert!(matches!(item, StreamItem::Event(_)));
                read += 1;
            }
            assert_eq!(read, n);
        })
    });
    group.finish();
}

fn sse(c: &mut Criterion) {
    let rt = runtime();
    let n = scaled(20_000) as u64;
    let (hub, server, client, first) = rt.block_on(async {
        let (hub, first) = hub_with_events(n as usize).await;
        let server = RestServer::builder(hub.clone()).start().await.unwrap();
        let client = ServiceClient::builder(&hub.service_connection_string("iothubowner").unwrap())
            .unwrap()
            .base_url(&format!("http://{}", server.local_addr()))
            .unwrap()
            .build()
            .unwrap();
        (hub, server, client, first)
    });
    let mut group = c.benchmark_group("events");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n));
    group.bench_function("sse_to_one_reader", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut events = client.events(EventsRequest::new().after(first - 1).limit(n));
                    let mut read = 0;
                    while let Some(item) = events.next().await {
                        assert!(matches!(item.unwrap(), EventItem::Event(_)));
                        read += 1;
                    }
                    assert_eq!(read, n);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    rt.block_on(server.shutdown());
    drop(hub);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    reported_patch(&mut c);
    resume(&mut c);
    sse(&mut c);
    c.final_summary();
}
