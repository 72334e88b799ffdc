//! Idle memory per connection: each figure comes from a fresh hub process (so memory freed by
//! an earlier measurement cannot be reused and hide a cost), whose RSS is read before and
//! after a separate load-generator process opens N idle connections to it.
//!
//! Roles, chosen by the `IOT_DM_BENCH_CHILD` environment variable:
//! * unset: the benchmark itself, which runs one hub process per mode and prints its result;
//! * `hub:links|tcp|tls`: a hub process measuring one mode (`links`: in-process hub sessions
//!   without MQTT, the hub's own share);
//! * `load:tcp|tls`: the load generator holding the connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iot_dm_core::link::{
    ConnectRefused, ConnectRequest, Credentials, DeviceFrame, Endpoint, Link, LinkClosed, LinkRx,
    LinkTx, Message,
};
use iot_dm_service::mqtt::Listener;

use super::client::Client;
use super::{Setup, HOST};

const ROLE: &str = "IOT_DM_BENCH_CHILD";
const ADDR: &str = "IOT_DM_BENCH_ADDR";
const DEVICES: &str = "IOT_DM_BENCH_DEVICES";
const CA: &str = "IOT_DM_BENCH_CA";
const COUNT: &str = "IOT_DM_BENCH_COUNT";

use crate::rss::rss_kib;

pub fn is_child() -> bool {
    std::env::var_os(ROLE).is_some()
}

/// Runs one hub process per mode and prints what they measured.
pub fn report(quick: bool) {
    let n: usize = std::env::var("IOT_DM_BENCH_MEMORY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 2000 } else { 5000 });
    let exe = std::env::current_exe().expect("own path");
    for mode in ["links", "stub-tcp", "stub-tls", "tcp", "tls"] {
        let out = Command::new(&exe)
            .env(ROLE, format!("hub:{mode}"))
            .env(COUNT, n.to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("hub process");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            println!("mqtt/memory/{mode}: measurement failed ({})", out.status);
        }
    }
}

pub fn child_main() {
    let role = std::env::var(ROLE).unwrap_or_default();
    match role.split_once(':') {
        Some(("hub", mode)) => hub_main(mode),
        Some(("load", mode)) => load_main(mode),
        _ => panic!("unknown role {role}"),
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hub_main(mode: &str) {
    let n: usize = std::env::var(COUNT)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let rt = super::runtime();
    let (stub, transport) = match mode.strip_prefix("stub-") {
        Some(t) => (true, t),
        None => (false, mode),
    };
    let setup = rt.block_on(Setup::new(n, n + 16, stub));
    let dir = std::env::temp_dir().join(format!("iot-dm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let devices_path = dir.join("devices.txt");
    let ca_path = dir.join("ca.pem");
    let lines: String = setup
        .devices
        .iter()
        .map(|(id, t)| format!("{id}\t{t}\n"))
        .collect();
    std::fs::write(&devices_path, lines).expect("devices file");
    std::fs::write(&ca_path, setup.certs.ca_pem()).expect("ca file");
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib();

    let (after, label) = if mode == "links" {
        let links = rt.block_on(async {
            let mut v = Vec::with_capacity(n);
            for (id, token) in &setup.devices {
                let req = ConnectRequest {
                    device_id: id.parse().expect("id"),
                    module_id: None,
                    credentials: Credentials::Sas(token.clone()),
                    clean_session: false,
                };
                v.push(setup.hub.connect(req).await.expect("session"));
            }
            v
        });
        std::thread::sleep(Duration::from_millis(1000));
        let after = rss_kib();
        drop(links);
        (after, "hub sessions alone (in-process links, no MQTT)")
    } else {
        let addr = setup.addr(if transport == "tls" {
            Listener::Tls
        } else {
            Listener::Tcp
        });
        let exe = std::env::current_exe().expect("own path");
        let mut child = Command::new(exe)
            .env(ROLE, format!("load:{transport}"))
            .env(ADDR, addr.to_string())
            .env(DEVICES, &devices_path)
            .env(CA, &ca_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("load generator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("load generator output");
        assert!(line.starts_with("ready"), "load generator: {line}");
        wait_until("all devices connected", Duration::from_secs(60), || {
            setup.mqtt().connections() == n && (stub || setup.hub.connected_devices() == n)
        });
        std::thread::sleep(Duration::from_millis(1000));
        let after = rss_kib();
        drop(child.stdin.take());
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let label = match (stub, transport) {
            (true, "tls") => {
                "the MQTT endpoint alone over TLS (a stub endpoint instead of the hub)"
            }
            (true, _) => {
                "the MQTT endpoint alone over plain TCP (a stub endpoint instead of the hub)"
            }
            (false, "tls") => "MQTT over TLS, hub included",
            (false, _) => "MQTT over plain TCP, hub included",
        };
        (after, label)
    };
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    let target = match mode {
        "tls" => " (target 16 KiB)",
        "tcp" => " (target 4 KiB)",
        _ => "",
    };
    println!(
        "mqtt/memory/{mode}: {n} idle connections, RSS {before} KiB -> {after} KiB: {:.2} KiB per connection{target}; {label}",
        per / 1024.0
    );
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Accepts every device and never sends anything: isolates the endpoint's own memory.
pub struct StubEndpoint;

struct Sink;

#[async_trait::async_trait]
impl LinkTx<DeviceFrame> for Sink {
    async fn send(&mut self, _: DeviceFrame) -> Result<(), LinkClosed> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl LinkRx<Message> for Sink {
    async fn recv(&mut self) -> Option<Message> {
        std::future::pending().await
    }
}

#[async_trait::async_trait]
impl Endpoint for StubEndpoint {
    async fn connect(&self, _: ConnectRequest) -> Result<Link, ConnectRefused> {
        Ok(Link {
            tx: Box::new(Sink),
            rx: Box::new(Sink),
            session_present: false,
        })
    }
}

fn load_main(mode: &str) {
    let addr: SocketAddr = std::env::var(ADDR).expect("addr").parse().expect("addr");
    let devices =
        std::fs::read_to_string(std::env::var(DEVICES).expect("devices")).expect("devices");
    let tls = (mode == "tls").then(|| {
        let ca = std::fs::read(std::env::var(CA).expect("ca")).expect("ca");
        iot_dm_service::tls::client_config(&ca, None).expect("client config")
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // bounded: a load generator that cannot connect everything within two minutes gives up
    // (and its hub process sees it end)
    let clients = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), connect_all(&devices, addr, tls))
            .await
            .expect("connections within the time limit")
    });
    println!("ready {}", clients.len());
    let _ = std::io::stdout().flush();
    // hold the connections until the hub process closes our stdin
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(clients);
}

async fn connect_all(
    devices: &str,
    addr: SocketAddr,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Vec<Client> {
    let pairs: Vec<(String, String)> = devices
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut clients = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(64) {
        let mut set = tokio::task::JoinSet::new();
        for (id, token) in chunk {
            let (id, token, tls) = (id.clone(), token.clone(), tls.clone());
            set.spawn(async move { Client::connect(addr, tls, HOST, &id, &token, 0, &[]).await });
        }
        while let Some(r) = set.join_next().await {
            clients.push(r.expect("task").expect("connect"));
        }
    }
    clients
}
