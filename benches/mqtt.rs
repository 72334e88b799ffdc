//! Benchmarks of the hub's MQTT endpoint over loopback, with an in-memory hub:
//!
//! * `mqtt/reported_patch_tls_1000_devices`: acknowledged reported-property patches per second
//!   from 1,000 TLS devices, each keeping a few patches in flight;
//! * `mqtt/reported_patch_tcp_1000_devices` and `mqtt/reported_patch_hub_links_1000_devices`:
//!   the same over plain TCP, and through in-process links without MQTT (the hub's own
//!   ceiling on this machine);
//! * `mqtt/method_round_trip_tls`: direct-method latency with one call outstanding (p50 and
//!   p99 printed after the run);
//! * `mqtt/tls_connect`: full TLS handshakes + CONNECT/CONNACK per second;
//! * idle memory per connection, plain and TLS (printed first): the hub's RSS growth while a
//!   child process holds N connections open, divided by N.
//!
//! `cargo bench --bench mqtt`; set `IOT_DM_BENCH_QUICK=1` for a short run. A filter argument
//! (e.g. `cargo bench --bench mqtt -- connect`) selects benchmarks; `memory` selects the memory
//! report. The load generator shares the machine's cores with the hub but runs on its own
//! runtime; after each benchmark the hub runtime's CPU time per operation is printed, which
//! says more than wall-clock figures on a busy machine.

#[path = "mqtt_support/client.rs"]
mod client;
#[path = "mqtt_support/memory.rs"]
mod memory;
#[path = "common/rss.rs"]
mod rss;

use iot_dm::service::api::prelude::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use rumqttc::mqttbytes::v4::Packet;
use serde_json::json;

use iot_dm_core::clock::{Clock, SystemClock, Timestamp};
use iot_dm_core::link::{ConnectRequest, Credentials, DeviceFrame, Endpoint, Link, Message};
use iot_dm_core::method::MethodRequest;
use iot_dm_core::wire::{self, SasToken, SymmetricKey};
use iot_dm_service::hub::DeviceSpec;
use iot_dm_service::mqtt::{Listener, MqttServer, MqttServerBuilder};
use iot_dm_service::tls::dev_certs::DevCerts;
use iot_dm_service::{Hub, HubServer};

use client::{BoxError, Client};

const HOST: &str = "localhost";
/// Patches each device keeps in flight.
const WINDOW: u64 = 8;
/// Every wait of the load generator is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

struct Setup {
    hub: Hub,
    server: Served,
    certs: DevCerts,
    devices: Vec<(String, String)>,
}

/// The listeners: the hub served, or an MQTT endpoint over [`memory::StubEndpoint`].
enum Served {
    Hub(HubServer),
    Stub(MqttServer),
}

impl Setup {
    /// A hub with `devices` SAS devices and a TCP and a TLS listener; with `stub` the
    /// listeners serve [`memory::StubEndpoint`] instead of the hub.
    async fn new(devices: usize, max_connections: usize, stub: bool) -> Setup {
        let hub = Hub::builder()
            .in_memory()
            .host_name(HOST)
            .open()
            .await
            .expect("hub");
        let certs = DevCerts::generate().expect("certificates");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let listeners = |b: MqttServerBuilder| {
            b.listen(Listener::Tcp, any)
                .listen(Listener::Tls, any)
                .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
                .max_connections(max_connections)
        };
        let server = if stub {
            let builder = listeners(MqttServer::builder(memory::StubEndpoint));
            Served::Stub(builder.start().await.expect("server"))
        } else {
            let builder = HubServer::builder(hub.clone()).mqtt_with(listeners);
            Served::Hub(builder.start().await.expect("server"))
        };
        let expiry = Timestamp::from_unix_secs(SystemClock.now().unix_secs() + 24 * 3600);
        let mut list = Vec::with_capacity(devices);
        for i in 0..devices {
            let id = format!("bench-{i:05}");
            let d = hub
                .create_device(DeviceSpec::new(id.parse().expect("id")))
                .await
                .expect("device");
            let key = SymmetricKey::new(d.symmetric_key.primary_key.expect("key")).expect("key");
            let uri = wire::device_resource_uri(HOST, &d.device_id);
            let token = SasToken::generate(&uri, &key, expiry, None)
                .as_str()
                .to_string();
            list.push((id, token));
        }
        Setup {
            hub,
            server,
            certs,
            devices: list,
        }
    }

    /// The MQTT endpoint, of the hub or of the stub.
    fn mqtt(&self) -> &MqttServer {
        match &self.server {
            Served::Hub(s) => s.mqtt().expect("the MQTT endpoint"),
            Served::Stub(s) => s,
        }
    }

    fn addr(&self, kind: Listener) -> SocketAddr {
        self.mqtt().local_addr(kind).expect("listener")
    }

    /// Stops the listeners (and the hub, when it is served).
    async fn shutdown(self) {
        match self.server {
            Served::Hub(s) => s.shutdown().await.expect("shutdown"),
            Served::Stub(s) => s.shutdown().await,
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    named_runtime("iot-hub")
}

fn named_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The hub (server) and the load generator run on separate runtimes, so the hub's CPU time can
/// be told apart from the load generator's on a shared machine.
struct Rts {
    hub: tokio::runtime::Runtime,
    load: tokio::runtime::Runtime,
}

/// CPU seconds used so far by the threads named `iot-hub` (the hub runtime).
fn hub_cpu_secs() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with("iot-hub") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // fields 14 and 15 of stat (utime, stime), counted from the state field (3)
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / 100.0 // USER_HZ
}

/// Prints the hub's CPU time per operation over a benchmark.
fn report_cpu(name: &str, what: &str, cpu_before: f64, ops: u64) {
    let cpu = hub_cpu_secs() - cpu_before;
    if ops == 0 || cpu <= 0.0 {
        return;
    }
    let per = cpu / ops as f64;
    println!(
        "{name}: hub CPU {:.1} us per {what} over {ops} {what}s, i.e. {:.0} {what}s/s per hub core",
        per * 1e6,
        1.0 / per
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn quick() -> bool {
    std::env::var_os("IOT_DM_BENCH_QUICK").is_some()
}

fn configure(base: Criterion) -> Criterion {
    if quick() {
        base.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    } else {
        base.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(8))
    }
}

async fn patch_loop(mut c: Client, n: u64, first_rid: u64) -> Result<Client, BoxError> {
    let mut sent = 0;
    let mut acked = 0;
    let payload = br#"{"temperature":21.5,"status":"ok"}"#;
    while sent < n.min(WINDOW) {
        c.publish(
            format!(
                "$iothub/twin/PATCH/properties/reported/?$rid={}",
                first_rid + sent
            ),
            payload.to_vec(),
        )?;
        sent += 1;
    }
    c.flush().await?;
    while acked < n {
        c.fill().await?;
        while let Some(p) = c.try_next()? {
            let Packet::Publish(p) = p else { continue };
            if !p.topic.starts_with("$iothub/twin/res/204/") {
                return Err(format!("unexpected response {}", p.topic).into());
            }
            acked += 1;
            if sent < n {
                c.publish(
                    format!(
                        "$iothub/twin/PATCH/properties/reported/?$rid={}",
                        first_rid + sent
                    ),
                    payload.to_vec(),
                )?;
                sent += 1;
            }
        }
        c.flush().await?;
    }
    Ok(c)
}

fn bench_patches(c: &mut Criterion, rts: &Rts, kind: Listener) {
    let devices = 1000;
    let setup = rts.hub.block_on(Setup::new(devices, devices + 100, false));
    let tls = (kind == Listener::Tls).then(|| setup.certs.client_config().expect("client config"));
    let addr = setup.addr(kind);
    let mut clients: Vec<Client> = rts.load.block_on(async {
        let mut v = Vec::with_capacity(devices);
        for (id, token) in &setup.devices {
            let c = Client::connect(
                addr,
                tls.clone(),
                HOST,
                id,
                token,
                0,
                &["$iothub/twin/res/#"],
            );
            v.push(
                tokio::time::timeout(LIMIT, c)
                    .await
                    .expect("bounded")
                    .expect("connect"),
            );
        }
        v
    });
    let rid = AtomicU64::new(1);
    let mut group = c.benchmark_group("mqtt");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    let name = format!("reported_patch_{}_1000_devices", kind.as_str());
    let (cpu, mut ops) = (hub_cpu_secs(), 0u64);
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            ops += iters;
            let taken = std::mem::take(&mut clients);
            let n = taken.len() as u64;
            let start = Instant::now();
            let back = rts.load.block_on(async {
                let mut tasks = Vec::with_capacity(taken.len());
                for (i, cl) in taken.into_iter().enumerate() {
                    let share = iters / n + u64::from((i as u64) < iters % n);
                    let first = rid.fetch_add(share.max(1), Ordering::Relaxed);
                    tasks.push(tokio::spawn(patch_loop(cl, share, first)));
                }
                let mut back = Vec::with_capacity(tasks.len());
                for t in tasks {
                    let cl = tokio::time::timeout(LIMIT, t).await.expect("bounded");
                    back.push(cl.expect("task").expect("patches"));
                }
                back
            });
            let elapsed = start.elapsed();
            clients = back;
            elapsed
        })
    });
    group.finish();
    report_cpu(&format!("mqtt/{name}"), "patch", cpu, ops);
    drop(clients);
    rts.hub.block_on(setup.shutdown());
}

/// The same load through in-process links: the hub's own ceiling, without MQTT.
async fn link_patch_loop(mut link: Link, n: u64, first_rid: u64) -> Result<Link, BoxError> {
    let payload = bytes::Bytes::from_static(br#"{"temperature":21.5,"status":"ok"}"#);
    let frame = |rid: u64| {
        DeviceFrame::Publish(Message::new(
            format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}"),
            payload.clone(),
        ))
    };
    let mut sent = 0;
    while sent < n.min(WINDOW) {
        link.tx.send(frame(first_rid + sent)).await?;
        sent += 1;
    }
    for _ in 0..n {
        let m = link.rx.recv().await.ok_or("hub closed the session")?;
        if !m.topic.starts_with("$iothub/twin/res/204/") {
            return Err(format!("unexpected response {}", m.topic).into());
        }
        if sent < n {
            link.tx.send(frame(first_rid + sent)).await?;
            sent += 1;
        }
    }
    Ok(link)
}

fn bench_patches_links(c: &mut Criterion, rts: &Rts) {
    let devices = 1000;
    let setup = rts.hub.block_on(Setup::new(devices, 16, false));
    // sessions spawn their tasks on the runtime that opens them: the hub's
    let mut links: Vec<Link> = rts.hub.block_on(async {
        let mut v = Vec::with_capacity(devices);
        for (id, token) in &setup.devices {
            let req = ConnectRequest {
                device_id: id.parse().expect("id"),
                module_id: None,
                credentials: Credentials::Sas(token.clone()),
                clean_session: true,
            };
            let mut link = setup.hub.connect(req).await.expect("session");
            link.tx
                .send(DeviceFrame::Subscribe(vec!["$iothub/twin/res/#".into()]))
                .await
                .expect("subscribe");
            v.push(link);
        }
        v
    });
    let rid = AtomicU64::new(1);
    let mut group = c.benchmark_group("mqtt");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    let (cpu, mut ops) = (hub_cpu_secs(), 0u64);
    group.bench_function("reported_patch_hub_links_1000_devices", |b| {
        b.iter_custom(|iters| {
            ops += iters;
            let taken = std::mem::take(&mut links);
            let n = taken.len() as u64;
            let start = Instant::now();
            let back = rts.load.block_on(async {
                let mut tasks = Vec::with_capacity(taken.len());
                for (i, l) in taken.into_iter().enumerate() {
                    let share = iters / n + u64::from((i as u64) < iters % n);
                    let first = rid.fetch_add(share.max(1), Ordering::Relaxed);
                    tasks.push(tokio::spawn(link_patch_loop(l, share, first)));
                }
                let mut back = Vec::with_capacity(tasks.len());
                for t in tasks {
                    let l = tokio::time::timeout(LIMIT, t).await.expect("bounded");
                    back.push(l.expect("task").expect("patches"));
                }
                back
            });
            let elapsed = start.elapsed();
            links = back;
            elapsed
        })
    });
    group.finish();
    report_cpu(
        "mqtt/reported_patch_hub_links_1000_devices",
        "patch",
        cpu,
        ops,
    );
}

fn bench_method(c: &mut Criterion, rts: &Rts) {
    let setup = rts.hub.block_on(Setup::new(1, 10, false));
    let tls = setup.certs.client_config().expect("client config");
    let (id, token) = setup.devices[0].clone();
    let mut device = rts
        .load
        .block_on(Client::connect(
            setup.addr(Listener::Tls),
            Some(tls),
            HOST,
            &id,
            &token,
            0,
            &["$iothub/methods/POST/#"],
        ))
        .expect("connect");
    // the device answers every request at once
    let responder = rts.load.spawn(async move {
        loop {
            let Ok(p) = device.next().await else { return };
            if let Packet::Publish(p) = p {
                let rid = p
                    .topic
                    .rsplit("$rid=")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = device.publish(
                    format!("$iothub/methods/res/200/?$rid={rid}"),
                    b"{}".to_vec(),
                );
                if device.flush().await.is_err() {
                    return;
                }
            }
        }
    });
    let request = MethodRequest::builder("ping")
        .payload(json!({"n": 1}))
        .connect_timeout_secs(5)
        .response_timeout_secs(5)
        .build()
        .expect("request");
    let hub = setup.hub.clone();
    let call = |hub: &Hub| {
        let start = Instant::now();
        rts.load
            .block_on(hub.invoke_method(&id, &request))
            .expect("method");
        start.elapsed()
    };
    let mut group = c.benchmark_group("mqtt");
    group.bench_function("method_round_trip_tls", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| call(&hub)).sum())
    });
    group.finish();
    let n = if quick() { 1000 } else { 5000 };
    let cpu = hub_cpu_secs();
    let mut samples: Vec<Duration> = (0..n).map(|_| call(&hub)).collect();
    report_cpu("mqtt/method_round_trip_tls", "call", cpu, n);
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "mqtt/method_round_trip_tls: {n} calls, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (targets 0.5 / 5 ms)",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
    responder.abort();
    rts.hub.block_on(setup.shutdown());
}

fn bench_connect(c: &mut Criterion, rts: &Rts) {
    let devices = 1000;
    let setup = Arc::new(rts.hub.block_on(Setup::new(devices, 4096, false)));
    let mut config = (*setup.certs.client_config().expect("client config")).clone();
    // every connect is a full handshake
    config.resumption = rustls::client::Resumption::disabled();
    let tls = Arc::new(config);
    let concurrency = 32u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("mqtt");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    let (cpu, mut ops) = (hub_cpu_secs(), 0u64);
    group.bench_function("tls_connect", |b| {
        b.iter_custom(|iters| {
            ops += iters;
            let start = Instant::now();
            rts.load.block_on(async {
                let done = Arc::new(AtomicU64::new(0));
                let mut tasks = Vec::new();
                for _ in 0..concurrency.min(iters) {
                    let (setup, tls, next, done) =
                        (setup.clone(), tls.clone(), next.clone(), done.clone());
                    tasks.push(tokio::spawn(async move {
                        while done.fetch_add(1, Ordering::Relaxed) < iters {
                            let i =
                                next.fetch_add(1, Ordering::Relaxed) as usize % setup.devices.len();
                            let (id, token) = &setup.devices[i];
                            let cl = Client::connect(
                                setup.addr(Listener::Tls),
                                Some(tls.clone()),
                                HOST,
                                id,
                                token,
                                0,
                                &[],
                            )
                            .await
                            .expect("connect");
                            cl.disconnect().await.expect("disconnect");
                        }
                    }));
                }
                for t in tasks {
                    tokio::time::timeout(LIMIT, t)
                        .await
                        .expect("bounded")
                        .expect("task");
                }
            });
            start.elapsed()
        })
    });
    group.finish();
    report_cpu("mqtt/tls_connect", "connect", cpu, ops);
}

fn main() {
    if memory::is_child() {
        memory::child_main();
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // built by `cargo test --all-targets`: nothing to measure
        println!("mqtt benchmarks: run with `cargo bench --bench mqtt`");
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    println!(
        "cpu: {} ({} logical cpus)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if wants("mqtt/memory") {
        memory::report(quick());
    }
    let rts = Rts {
        hub: runtime(),
        load: named_runtime("load"),
    };
    let mut c = configure(Criterion::default()).configure_from_args();
    if wants("mqtt/reported_patch_tls_1000_devices") {
        bench_patches(&mut c, &rts, Listener::Tls);
    }
    if wants("mqtt/reported_patch_tcp_1000_devices") {
        bench_patches(&mut c, &rts, Listener::Tcp);
    }
    if wants("mqtt/reported_patch_hub_links_1000_devices") {
        bench_patches_links(&mut c, &rts);
    }
    if wants("mqtt/method_round_trip_tls") {
        bench_method(&mut c, &rts);
    }
    if wants("mqtt/tls_connect") {
        bench_connect(&mut c, &rts);
    }
    c.final_summary();
}
