//! The service REST API over HTTPS on loopback, through `ServiceClient` (keep-alive TLS
//! connections from its pool), against an in-memory hub with development certificates:
//!
//! - `rest/get_twin`, `rest/update_twin`: one request at a time (round-trip latency);
//! - `rest/get_twin_x16`: 16 requests in flight from clones of one client (throughput);
//! - `embedded/get_twin`: the same read through the embedded `Hub`, for comparison.
//!
//! Under `cargo test` each bench runs once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use serde_json::json;

use iot_dm::core::twin::TwinPatch;
use iot_dm::service::access::{AccessPolicy, Rights};
use iot_dm::service::api::prelude::*;
use iot_dm::service::client::ServiceClient;
use iot_dm::service::hub::{DeviceSpec, Hub};
use iot_dm::service::tls::dev_certs::DevCerts;
use iot_dm::service::HubServer;

const CONCURRENCY: u64 = 16;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (hub, server, client) = rt.block_on(async {
        let hub = Hub::builder().host_name("localhost").open().await.unwrap();
        for i in 0..100 {
            hub.create_device(
                DeviceSpec::new(format!("d{i}").parse().unwrap())
                    .tags(json!({"site": "north", "rack": i})),
            )
            .await
            .unwrap();
        }
        // the built-in policies' default rate limit (2,000/s) would throttle the bench
        hub.put_access_policy(AccessPolicy::new("bench", Rights::ALL).with_rate_limit(None))
            .await
            .unwrap();
        let certs = DevCerts::generate().unwrap();
        let server = HubServer::builder(hub.clone())
            .rest_listen("127.0.0.1:0".parse().unwrap())
            .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
            .start()
            .await
            .unwrap();
        let client = ServiceClient::builder(&hub.service_connection_string("bench").unwrap())
            .unwrap()
            .ca_pem(certs.ca_pem())
            .port(server.rest_addr().unwrap().port())
            .max_idle_connections(CONCURRENCY as usize)
            .build()
            .unwrap();
        (hub, server, client)
    });
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("rest");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_twin", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client.get_twin("d7").await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    let patch: TwinPatch =
        serde_json::from_value(json!({"properties": {"desired": {"interval": 30}}})).unwrap();
    g.bench_function("update_twin", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client.update_twin("d8", &patch, None).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("get_twin_x16", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let per_task = iters.div_ceil(CONCURRENCY);
                let tasks: Vec<_> = (0..CONCURRENCY)
                    .map(|t| {
                        let c = client.clone();
                        tokio::spawn(async move {
                            for _ in 0..per_task {
                                c.get_twin(&format!("d{t}")).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_task * CONCURRENCY) as f64)
            })
        })
    });
    g.finish();
    let mut g = c.benchmark_group("embedded");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_twin", |b| {
        b.iter(|| rt.block_on(TwinApi::get_twin(&hub, "d7")).unwrap())
    });
    g.finish();
    rt.block_on(server.shutdown()).unwrap();
    c.final_summary();
}
