//! MQTT/TLS devices for the jobs benchmarks: a `HubServer` on 127.0.0.1 in this process, the
//! devices that answer the method job in a child process (so that neither process holds two
//! descriptors per connection), and the patching devices on a load runtime of their own.
//!
//! Roles, chosen by `IOT_DM_BENCH_JOBS_CHILD`: unset, the benchmark; `devices`, the child that
//! connects the devices listed in `IOT_DM_BENCH_JOBS_LIST` and answers every method with 200
//! until its stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::Packet;
use serde_json::json;

use iot_dm_core::clock::{Clock, SystemClock, Timestamp};
use iot_dm_core::job::{JobRequest, JobStatus};
use iot_dm_core::wire::{self, SasToken, SymmetricKey};
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{DeviceSpec, Hub};
use iot_dm_service::mqtt::Listener;
use iot_dm_service::tls::dev_certs::DevCerts;
use iot_dm_service::HubServer;

use crate::client::{BoxError, Client};
use crate::fleet::{create_devices, job_id, twin_job_request, until_ended, until_forgotten, HOST};
use crate::LIMIT;

const ROLE: &str = "IOT_DM_BENCH_JOBS_CHILD";
const ADDR: &str = "IOT_DM_BENCH_JOBS_ADDR";
const CA: &str = "IOT_DM_BENCH_JOBS_CA";
const LIST: &str = "IOT_DM_BENCH_JOBS_LIST";
/// Patches each patching device keeps in flight.
const WINDOW: u64 = 8;

pub fn is_child() -> bool {
    std::env::var_os(ROLE).is_some()
}

/// A hub served over MQTT/TLS, with the child holding the method devices.
pub struct Served {
    hub: Hub,
    server: HubServer,
    certs: DevCerts,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// A SAS token for `id`, valid for a day.
async fn sas_device(hub: &Hub, id: &str) -> (String, String) {
    let d = hub
        .create_device(DeviceSpec::new(id.parse().expect("id")))
        .await
        .expect("device");
    let key = SymmetricKey::new(d.symmetric_key.primary_key.expect("key")).expect("key");
    let expiry = Timestamp::from_unix_secs(SystemClock.now().unix_secs() + 24 * 3600);
    let uri = wire::device_resource_uri(HOST, &d.device_id);
    let token = SasToken::generate(&uri, &key, expiry, None)
        .as_str()
        .to_string();
    (id.to_string(), token)
}

impl Served {
    /// A hub with `methods` devices connected from a child process (answering methods) and
    /// `twins` idle twins.
    pub async fn start(methods: usize, twins: usize) -> Served {
        let hub = Hub::builder()
            .in_memory()
            .host_name(HOST)
            .job_retention(Duration::from_secs(1))
            .open()
            .await
            .expect("hub");
        let certs = DevCerts::generate().expect("certificates");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let server = HubServer::builder(hub.clone())
            .mqtt_with(|b| {
                b.listen(Listener::Tls, any)
                    .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
                    .max_connections(methods + 5_000)
                    // every device of the bench connects at once from one loopback address:
                    // the per-source guard against floods would hold most of them back
                    .max_opening(methods + 5_000, methods + 5_000)
            })
            .start()
            .await
            .expect("server");
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut served = Served {
            hub,
            server,
            certs,
            child: None,
            _dir: dir,
        };
        if twins > 0 {
            create_devices(&served.hub, twins, "twin-").await;
        }
        if methods > 0 {
            let mut list = String::new();
            for i in 0..methods {
                let (id, token) = sas_device(&served.hub, &format!("m-{i:06}")).await;
                list.push_str(&format!("{id}\t{token}\n"));
            }
            served.child = Some(served.spawn_child(&list, methods).await);
        }
        served
    }

    fn addr(&self) -> SocketAddr {
        self.server.mqtt_addr(Listener::Tls).expect("TLS listener")
    }

    async fn spawn_child(&self, list: &str, n: usize) -> Child {
        let ca_path = self._dir.path().join("ca.pem");
        let list_path = self._dir.path().join("devices.txt");
        std::fs::write(&ca_path, self.certs.ca_pem()).expect("ca file");
        std::fs::write(&list_path, list).expect("device list");
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .env(ROLE, "devices")
            .env(ADDR, self.addr().to_string())
            .env(CA, &ca_path)
            .env(LIST, &list_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("device process");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("reader")
        .expect("the device process's first line");
        assert!(line.starts_with("ready"), "device process: {line:?}");
        // the hub has seen every subscription once each device listens for methods
        let deadline = Instant::now() + LIMIT;
        for i in 0..n {
            let id = format!("m-{i:06}");
            while !self.hub.listening_for_methods(&id) {
                assert!(Instant::now() < deadline, "{id} never listened");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        eprintln!(
            "jobs: {n} TLS devices connected in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        child
    }

    /// Runs one method job over the child's devices; the time from create to `completed`.
    pub async fn method_job(&self) -> Duration {
        let id = job_id("method");
        let request = JobRequest::from_json(&json!({
            "jobId": id, "type": "scheduleDeviceMethod", "queryCondition": "*",
            "cloudToDeviceMethod": {"methodName": "ping", "payload": {"n": 1},
                                    "responseTimeoutInSeconds": 30},
        }))
        .expect("job request");
        let start = Instant::now();
        self.hub.create_job(&request).await.expect("create");
        let job = until_ended(&self.hub, &id).await;
        let took = start.elapsed();
        let stats = job.device_job_statistics.unwrap_or_default();
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        assert_eq!(stats.succeeded_count, stats.device_count, "{job:?}");
        until_forgotten(&self.hub, &id).await;
        took
    }

    /// Reported patches per second from `patchers` TLS devices for `secs` alone, then while a
    /// twin job runs over every twin (the window ends when the job does); and what the job did.
    /// Acknowledged reported patches per second from `patchers` MQTT/TLS devices, alone and
    /// while a twin job runs over the fleet, and what became of the job.
    pub async fn patch_ratio(
        &self,
        load: &tokio::runtime::Handle,
        patchers: usize,
        secs: f64,
    ) -> (f64, f64, String) {
        let id = job_id("under-load");
        let (alone, with, what) = self
            .patch_ratio_with(
                load,
                patchers,
                secs,
                async |_| {},
                async |hub, window| job_during(hub, &id, window).await,
            )
            .await;
        until_forgotten(&self.hub, &id).await;
        (alone, with, what)
    }

    /// Acknowledged reported patches per second from `patchers` MQTT/TLS devices (named
    /// `p-00000`...), first alone for `secs`, then, after `prepare` (not measured), for `secs`
    /// again while `during` runs (it is given the window and says what it did; the load goes
    /// on until it returns, and a `during` that returns early ends the window).
    pub async fn patch_ratio_with(
        &self,
        load: &tokio::runtime::Handle,
        patchers: usize,
        secs: f64,
        prepare: impl AsyncFnOnce(&Hub),
        during: impl AsyncFnOnce(&Hub, Duration) -> String,
    ) -> (f64, f64, String) {
        let mut pairs = Vec::with_capacity(patchers);
        for i in 0..patchers {
            pairs.push(sas_device(&self.hub, &format!("p-{i:05}")).await);
        }
        let tls = self.certs.client_config().expect("client config");
        let addr = self.addr();
        let acks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = pairs
            .into_iter()
            .map(|(id, token)| {
                let (tls, acks, stop) = (tls.clone(), acks.clone(), stop.clone());
                load.spawn(async move {
                    let c = Client::connect(
                        addr,
                        Some(tls),
                        HOST,
                        &id,
                        &token,
                        0,
                        &["$iothub/twin/res/#"],
                    )
                    .await?;
                    patch_until(c, &acks, &stop).await
                })
            })
            .collect();
        // everyone connected and patching: wait for the first acknowledgements
        let deadline = Instant::now() + LIMIT;
        while acks.load(Ordering::Relaxed) < patchers as u64 * WINDOW {
            assert!(Instant::now() < deadline, "patchers did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let window = Duration::from_secs_f64(secs);
        let (a0, t0) = (acks.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(window).await;
        let alone = (acks.load(Ordering::Relaxed) - a0) as f64 / t0.elapsed().as_secs_f64();
        prepare(&self.hub).await;
        let (a1, t1) = (acks.load(Ordering::Relaxed), Instant::now());
        let counted = {
            let acks = acks.clone();
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                (acks.load(Ordering::Relaxed), t1.elapsed())
            })
        };
        let what = during(&self.hub, window).await;
        // `during` may end before the window does: then the window ends with it
        let (a2, elapsed) = if t1.elapsed() < window {
            counted.abort();
            (acks.load(Ordering::Relaxed), t1.elapsed())
        } else {
            counted.await.expect("window")
        };
        let with = (a2 - a1) as f64 / elapsed.as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(LIMIT, t)
                .await
                .expect("bounded")
                .expect("task")
                .expect("patches");
        }
        (alone, with, what)
    }

    pub async fn shutdown(mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
        self.server.shutdown().await.expect("shutdown");
    }
}

/// Runs a twin job over the fleet for at most `window`; says how far it came.
async fn job_during(hub: &Hub, id: &str, window: Duration) -> String {
    hub.create_job(&twin_job_request(id, None))
        .await
        .expect("create");
    let t1 = Instant::now();
    let mut ended = None;
    while t1.elapsed() < window {
        let job = hub.get_job(id).await.expect("job");
        if !job.status.is_active() {
            ended = Some(t1.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let job = until_ended(hub, id).await;
    let s = job.device_job_statistics.unwrap_or_default();
    match ended {
        Some(t) => format!(
            "it ended within the window, after {:.2} s: {} of {} succeeded",
            t.as_secs_f64(),
            s.succeeded_count,
            s.device_count
        ),
        None => format!(
            "still running at the window's end, {} of {} done",
            s.succeeded_count, s.device_count
        ),
    }
}

/// Keeps [`WINDOW`] patches in flight until `stop`, counting acknowledgements.
async fn patch_until(mut c: Client, acks: &AtomicU64, stop: &AtomicBool) -> Result<(), BoxError> {
    let payload = br#"{"temperature":21.5,"status":"ok"}"#;
    let topic = |rid: u64| format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}");
    let (mut sent, mut acked) = (0u64, 0u64);
    while sent < WINDOW {
        c.publish(topic(sent), payload.to_vec())?;
        sent += 1;
    }
    c.flush().await?;
    let deadline = Instant::now() + LIMIT;
    while acked < sent {
        tokio::time::timeout_at(deadline.into(), c.fill()).await??;
        while let Some(p) = c.try_next()? {
            let Packet::Publish(p) = p else { continue };
            if !p.topic.starts_with("$iothub/twin/res/204/") {
                return Err(format!("unexpected response {}", p.topic).into());
            }
            acked += 1;
            acks.fetch_add(1, Ordering::Relaxed);
            if !stop.load(Ordering::Relaxed) {
                c.publish(topic(sent), payload.to_vec())?;
                sent += 1;
            }
        }
        c.flush().await?;
    }
    Ok(())
}

/// The child: connects every listed device and answers each method call with 200.
pub fn child_main() {
    let addr: SocketAddr = std::env::var(ADDR).expect("addr").parse().expect("addr");
    let list = std::fs::read_to_string(std::env::var(LIST).expect("list")).expect("list");
    let ca = std::fs::read(std::env::var(CA).expect("ca")).expect("ca");
    let tls = iot_dm_service::tls::client_config(&ca, None).expect("client config");
    let rt = crate::fleet::runtime("devices");
    let pairs: Vec<(String, String)> = list
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let clients = rt.block_on(async {
        let mut clients = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(64) {
            let mut set = tokio::task::JoinSet::new();
            for (id, token) in chunk {
                let (id, token, tls) = (id.clone(), token.clone(), tls.clone());
                set.spawn(async move {
                    let filters = ["$iothub/methods/POST/#"];
                    Client::connect(addr, Some(tls), HOST, &id, &token, 0, &filters).await
                });
            }
            while let Some(r) = tokio::time::timeout(LIMIT, set.join_next())
                .await
                .expect("connections within the time limit")
            {
                clients.push(r.expect("task").expect("connect"));
            }
        }
        clients
    });
    for c in clients {
        rt.spawn(answer(c));
    }
    println!("ready {}", pairs.len());
    let _ = std::io::stdout().flush();
    // answer until the benchmark closes our stdin (or ends)
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// Answers every method request with 200, batching the responses of one read.
async fn answer(mut c: Client) {
    loop {
        if c.fill().await.is_err() {
            return;
        }
        loop {
            match c.try_next() {
                Ok(Some(Packet::Publish(p))) => {
                    let rid = p
                        .topic
                        .rsplit("$rid=")
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let topic = format!("$iothub/methods/res/200/?$rid={rid}");
                    if c.publish(topic, b"{\"ok\":true}".to_vec()).is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if c.flush().await.is_err() {
            return;
        }
    }
}
