//! Firmware downloads: a real `iot-dm hub` process on loopback (its own development
//! certificates, a fresh store on disk) serving one image to 100 devices at once, each on its
//! own HTTPS connection with its own SAS token, reading the whole image.
//!
//! - `artifacts/download_x100/1MiB` and `/64MiB`: the time for all 100 downloads; criterion
//!   reports the aggregate throughput (100 × the image size per iteration).
//! - After each group the hub process's resident memory (VmRSS) and its peak (VmHWM) are
//!   printed: the hub streams images in 256 KiB chunks, so its memory does not grow with the
//!   image's size (compare the figures after the 1 MiB and the 64 MiB runs).
//!
//! Needs the `iot-dm` binary (the `cli` feature): `cargo bench --bench artifacts`. Under
//! `cargo test --benches` it runs once, small: 4 devices and the 1 MiB image.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use iot_dm::core::clock::Timestamp;
use iot_dm::core::wire::{self, SasToken, SymmetricKey};
use iot_dm::service::api::prelude::*;
use iot_dm::service::api::ArtifactUpload;
use iot_dm::service::client::ServiceClient;
use iot_dm::service::hub::DeviceSpec;

/// Devices downloading at once under `cargo bench`.
const DEVICES: usize = 100;
const MIB: usize = 1 << 20;

/// The hub process; killed when dropped.
struct HubProcess(Child);

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn start_hub(dir: &Path) -> (HubProcess, u16) {
    let rest = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_iot-dm"))
        .args(["hub", "--data"])
        .arg(dir)
        .args(["--mqtt", &format!("127.0.0.1:{}", free_port())])
        .args(["--rest", &format!("127.0.0.1:{rest}")])
        .arg("--owner-connection-string-file")
        .arg(dir.join("owner"))
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let hub = HubProcess(child);
    for _ in 0..200 {
        if std::fs::metadata(dir.join("owner")).is_ok_and(|m| m.len() > 0) {
            return (hub, rest);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the hub did not start");
}

/// Downloads the whole artifact on a new connection; returns the bytes read.
async fn download(
    connector: tokio_rustls::TlsConnector,
    port: u16,
    request: Arc<String>,
    expected: usize,
) -> usize {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let body_start = loop {
        let n = tls.read(&mut buf[filled..]).await.unwrap();
        assert!(n > 0, "the hub closed before the headers");
        filled += n;
        if let Some(p) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    assert!(buf.starts_with(b"HTTP/1.1 200"), "not a 200");
    let mut got = filled - body_start;
    while got < expected {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "the download ended after {got} of {expected} bytes");
        got += n;
    }
    got
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` runs the bench once, small
    let full = std::env::args().any(|a| a == "--bench");
    let devices = if full { DEVICES } else { 4 };
    let sizes: &[usize] = if full { &[1, 64] } else { &[1] };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (hub, port) = start_hub(dir.path());
    let pid = hub.0.id();
    let owner = std::fs::read_to_string(dir.path().join("owner")).unwrap();
    let ca = std::fs::read(dir.path().join("certs").join("ca.pem")).unwrap();
    let client = ServiceClient::builder(owner.trim())
        .unwrap()
        .ca_pem(&ca)
        .port(port)
        .build()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tokens: Vec<String> = rt.block_on(async {
        let mut tokens = Vec::new();
        for i in 0..devices {
            let d = client
                .create_device(DeviceSpec::new(format!("dl-{i}").parse().unwrap()))
                .await
                .unwrap();
            let key = SymmetricKey::new(d.symmetric_key.primary_key.unwrap()).unwrap();
            let uri = wire::device_resource_uri("localhost", &d.device_id);
            let expiry = Timestamp::now() + Duration::from_secs(24 * 3600);
            tokens.push(
                SasToken::generate(&uri, &key, expiry, None)
                    .as_str()
                    .to_string(),
            );
        }
        tokens
    });
    let (rss, hwm) = memory_mib(pid);
    println!("hub memory at start: VmRSS {rss} MiB, VmHWM {hwm} MiB");

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    for &size_mib in sizes {
        let size = size_mib * MIB;
        let image: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let info = rt.block_on(async {
            client
                .upload_artifact(&mut &image[..], ArtifactUpload::new().size(size as u64))
                .await
                .unwrap()
        });
        drop(image);
        let requests: Vec<Arc<String>> = tokens
            .iter()
            .map(|t| {
                Arc::new(format!(
                    "GET /artifacts/{}?api-version=2021-04-12 HTTP/1.1\r\nhost: localhost\r\nauthorization: {t}\r\nconnection: close\r\n\r\n",
                    info.sha256
                ))
            })
            .collect();
        let mut g = c.benchmark_group("artifacts");
        g.throughput(Throughput::Bytes((devices * size) as u64));
        g.bench_function(format!("download_x{devices}/{size_mib}MiB"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = requests
                            .iter()
                            .map(|r| {
                                tokio::spawn(download(connector.clone(), port, r.clone(), size))
                            })
                            .collect();
                        for t in tasks {
                            assert_eq!(t.await.unwrap(), size);
                        }
                    }
                    start.elapsed()
                })
            })
        });
        g.finish();
        let (rss, hwm) = memory_mib(pid);
        println!(
            "hub memory after {devices} concurrent downloads of {size_mib} MiB: VmRSS {rss} MiB, VmHWM {hwm} MiB"
        );
    }
    drop(hub);
}
