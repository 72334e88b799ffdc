//! A network cut, a stalled link and a slow link between a device and a real `iot-dm hub`.
//!
//! The device (the device client over MQTT/TLS, reconnecting by itself) reaches the hub through
//! a TCP proxy inside the test that can delay every chunk, pause (hold every byte while the
//! connections stay open) and cut (close every connection and refuse new ones for a while).
//! Back ends reach the hub directly over REST. Through each fault the back end changes desired
//! properties, invokes direct methods (each with an id of its own in its payload; the device
//! counts how many times each id ran) and runs jobs v2 (a twin update and a method). In the
//! end the device must have applied every desired change and hold the latest desired version,
//! every method answered 200 must have run exactly once, and no method ran twice.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use iot_dm::core::job::{JobRequest, JobStatus};
use iot_dm::core::method::{MethodRequest, MethodResponse};
use iot_dm::core::twin::TwinPatch;
use iot_dm::device::{DeviceClient, DeviceCredentials, MqttTransport};
use iot_dm::service::api::prelude::*;
use iot_dm::service::client::ServiceClient;
use iot_dm::service::hub::DeviceSpec;

use hub_process::HubProcess;

/// A TCP proxy on 127.0.0.1 with faults on demand.
struct Proxy {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    refuse: Arc<AtomicBool>,
    paused: watch::Sender<bool>,
    /// Bumped to cut every open connection.
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            delay_ms: Arc::default(),
            refuse: Arc::default(),
            paused: watch::channel(false).0,
            cuts: watch::channel(0).0,
        };
        let (delay, refuse) = (proxy.delay_ms.clone(), proxy.refuse.clone());
        let (paused, cuts) = (proxy.paused.subscribe(), proxy.cuts.subscribe());
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset at once
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(
                    Box::new(dr),
                    Box::new(uw),
                    delay.clone(),
                    paused.clone(),
                    cuts.clone(),
                ));
                tokio::spawn(pump(
                    Box::new(ur),
                    Box::new(dw),
                    delay.clone(),
                    paused.clone(),
                    cuts.clone(),
                ));
            }
        });
        proxy
    }

    /// Delays every chunk by `ms` (0: no delay).
    fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Holds (or lets go of) every byte, the connections staying open.
    fn pause(&self, on: bool) {
        self.paused.send_replace(on);
    }

    /// Closes every connection; while `down`, new ones are closed as they come.
    fn cut(&self, down: bool) {
        self.refuse.store(down, Ordering::SeqCst);
        if down {
            self.cuts.send_modify(|n| *n += 1);
        }
    }
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// Copies `r` to `w` chunk by chunk, with the proxy's delay and pauses, until either side
/// closes or the proxy cuts.
async fn pump(
    mut r: Reader,
    mut w: Writer,
    delay: Arc<AtomicU64>,
    mut paused: watch::Receiver<bool>,
    mut cuts: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    cuts.borrow_and_update();
    loop {
        let n = tokio::select! {
            n = r.read(&mut buf) => match n { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = cuts.changed() => return,
        };
        let ms = delay.load(Ordering::SeqCst);
        let hold = async {
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let _ = paused.wait_for(|p| !*p).await;
        };
        tokio::select! {
            _ = hold => {}
            _ = cuts.changed() => return,
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// What the device did, kept by the test.
#[derive(Default)]
struct Device {
    /// The desired document as the device applied it, and its version.
    desired: Value,
    version: u64,
    /// How many times each method id ran.
    runs: HashMap<String, u32>,
}

fn merge(doc: &mut Value, patch: &Value) {
    match (doc.as_object_mut(), patch.as_object()) {
        (Some(d), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *doc = patch.clone(),
    }
}

async fn connect(port: u16, ca: &[u8], key: &str, dev: &Arc<Mutex<Device>>) -> DeviceClient {
    let creds =
        DeviceCredentials::symmetric_key("localhost", "net-1".parse().unwrap(), key).unwrap();
    let transport = MqttTransport::builder("localhost")
        .port(port)
        .ca_pem(ca.to_vec())
        .keep_alive(Duration::from_secs(2))
        .ack_timeout(Duration::from_secs(2))
        .network_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let client = DeviceClient::builder(creds, transport)
        .connect_timeout(Duration::from_secs(10))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let d = dev.clone();
    client.on_method("count", move |call| {
        let d = d.clone();
        async move {
            let id = call.payload["id"].as_str().unwrap_or_default().to_string();
            *d.lock().unwrap().runs.entry(id.clone()).or_default() += 1;
            MethodResponse::new(200, json!({ "id": id })).unwrap()
        }
    });
    let mut desired = client.desired_updates();
    let d = dev.clone();
    tokio::spawn(async move {
        while let Some(p) = desired.recv().await {
            let mut d = d.lock().unwrap();
            if p.full {
                d.desired = p.patch;
            } else {
                assert_eq!(p.version, d.version + 1, "a desired version was skipped");
                merge(&mut d.desired, &p.patch);
            }
            d.version = p.version;
        }
    });
    client
}

/// The back end's side of the scenario.
struct Back {
    api: ServiceClient,
    /// Method ids answered 200, and how many were sent.
    answered: Vec<String>,
    sent: usize,
    desired_writes: u64,
}

impl Back {
    async fn desired(&mut self, key: &str, value: u64) {
        let patch: TwinPatch =
            serde_json::from_value(json!({"properties": {"desired": {key: value}}})).unwrap();
        self.api.update_twin("net-1", &patch, None).await.unwrap();
        self.desired_writes += 1;
    }

    /// Invokes `count` with id `id`; `connect_secs` is how long the hub waits for the device.
    async fn method(&mut self, id: &str, connect_secs: u32, response_secs: u32) -> bool {
        self.sent += 1;
        let req = MethodRequest::builder("count")
            .payload(json!({ "id": id }))
            .connect_timeout_secs(connect_secs)
            .response_timeout_secs(response_secs)
            .build()
            .unwrap();
        match self.api.invoke_method("net-1", &req).await {
            Ok(r) if r.status == 200 => {
                self.answered.push(id.to_string());
                true
            }
            _ => false,
        }
    }
}

/// Creates a job and waits until it ends.
async fn run_job(api: ServiceClient, body: Value) -> JobStatus {
    let id = body["jobId"].as_str().unwrap().to_string();
    api.create_job(&JobRequest::from_json(&body).unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = api.get_job(&id).await.unwrap();
        if !job.status.is_active() {
            return job.status;
        }
        assert!(Instant::now() < deadline, "job {id} still {:?}", job.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the device holds the hub's desired version and document.
async fn until_in_step(api: &ServiceClient, dev: &Arc<Mutex<Device>>, when: &str) -> u64 {
    let started = Instant::now();
    let twin = api.get_twin("net-1").await.unwrap();
    let (version, doc) = (twin.desired().version(), twin.desired().doc().to_value());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        {
            let d = dev.lock().unwrap();
            if d.version == version {
                assert_eq!(
                    d.desired, doc,
                    "{when}: the device applied another document"
                );
                println!(
                    "{when}: the device holds desired version {version} after {} ms",
                    started.elapsed().as_millis()
                );
                return version;
            }
            assert!(
                Instant::now() < deadline,
                "{when}: the device has desired version {} of {version}",
                d.version
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_a_stall_and_a_slow_link_lose_no_desired_change_and_run_no_method_twice() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("the scenario did not end in 120 s");
}

async fn scenario() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let hub = tokio::task::block_in_place(|| HubProcess::start(dir.path()));
    let api = hub.service_client();
    let device = api
        .create_device(DeviceSpec::new("net-1".parse().unwrap()))
        .await
        .unwrap();
    let key = device.symmetric_key.primary_key.unwrap();
    let proxy = Proxy::start(hub.mqtt_port).await;
    let ca = std::fs::read(&hub.ca).unwrap();
    let dev = Arc::new(Mutex::new(Device::default()));
    let client = connect(proxy.port, &ca, &key, &dev).await;
    let mut back = Back {
        api: hub.service_client(),
        answered: Vec::new(),
        sent: 0,
        desired_writes: 0,
    };
    until_in_step(&back.api, &dev, "connected").await;

    // a slow link: 40 ms a chunk each way
    proxy.delay(40);
    for i in 1..=10 {
        back.desired("slow", i).await;
        assert!(back.method(&format!("slow-{i}"), 0, 10).await, "slow-{i}");
    }
    until_in_step(&back.api, &dev, "slow link").await;
    proxy.delay(0);

    // a cut for 2 s: desired changes while the device is away, a method that waits for it
    proxy.cut(true);
    for i in 1..=10 {
        back.desired("cut", i).await;
    }
    let waiting = {
        let api = hub.service_client();
        tokio::spawn(async move {
            let req = MethodRequest::builder("count")
                .payload(json!({"id": "during-cut"}))
                .connect_timeout_secs(15)
                .response_timeout_secs(10)
                .build()
                .unwrap();
            api.invoke_method("net-1", &req).await
        })
    };
    let offline = back.method("offline", 0, 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut(false);
    until_in_step(&back.api, &dev, "after the cut").await;
    match waiting.await.unwrap() {
        Ok(r) if r.status == 200 => back.answered.push("during-cut".into()),
        other => panic!("a method waiting 15 s for the device failed: {other:?}"),
    }
    back.sent += 1;

    // a stall: the connections stay open and carry nothing for over 5 s (past the keep-alive):
    // a method times out, desired changes wait
    proxy.pause(true);
    for i in 1..=5 {
        back.desired("stall", i).await;
    }
    let stalled = back.method("stalled", 0, 5).await;
    proxy.pause(false);
    until_in_step(&back.api, &dev, "after the stall").await;

    // jobs v2 through a cut, on a slow link: a desired update, and a method that waits for
    // the device to come back
    proxy.delay(20);
    proxy.cut(true);
    let twin_job = json!({
        "jobId": "net-twin", "type": "scheduleUpdateTwin", "queryCondition": "*",
        "updateTwin": {"properties": {"desired": {"job": 1}}},
    });
    assert_eq!(
        run_job(hub.service_client(), twin_job).await,
        JobStatus::Completed
    );
    back.desired_writes += 1;
    let method_job = tokio::spawn(run_job(
        hub.service_client(),
        json!({
            "jobId": "net-method", "type": "scheduleDeviceMethod", "queryCondition": "*",
            "cloudToDeviceMethod": {"methodName": "count", "payload": {"id": "job"},
                "connectTimeoutInSeconds": 15, "responseTimeoutInSeconds": 10},
        }),
    ));
    back.sent += 1;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut(false);
    let method_job_status = method_job.await.unwrap();
    let version = until_in_step(&back.api, &dev, "after the jobs").await;
    proxy.delay(0);

    // a last method over the healed link, then the tally
    assert!(back.method("last", 0, 10).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.close().await;
    let d = dev.lock().unwrap();
    for id in &back.answered {
        assert_eq!(d.runs.get(id), Some(&1), "method {id} answered 200");
    }
    let twice: Vec<_> = d.runs.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "methods ran more than once: {twice:?}");
    assert_eq!(
        d.runs.get("job"),
        Some(&1),
        "the job's method: {method_job_status:?}"
    );
    println!(
        "in {:.1} s: {} desired changes (the device ends at version {version} with the hub's \
         document), {} methods sent, {} answered 200, ran {} ({} offline, {} stalled ran {} \
         times), job method {method_job_status:?}, methods run twice 0",
        started.elapsed().as_secs_f64(),
        back.desired_writes,
        back.sent,
        back.answered.len(),
        d.runs.values().sum::<u32>(),
        if offline { "answered" } else { "refused" },
        if stalled { "answered" } else { "timed out" },
        d.runs.get("stalled").copied().unwrap_or(0),
    );
}
