//! Jobs end to end over real MQTT/TLS on 127.0.0.1, with the device client's MQTT transport:
//!
//! * a method job over 1,000 devices keeps to its rate: on a manual clock, the start times the
//!   hub recorded never put more than the rate's number of starts in any 60 s (the planner's
//!   rule), every device is called exactly once, and the job ends by the minute the rate
//!   allows, so a rate held too low fails as well;
//! * the hub is run as a process (`iot-dm hub` on a redb store) and killed with SIGKILL in the
//!   middle of a rate-limited method job; restarted on the same store, it resumes the job, the
//!   devices reconnect, the job completes, and no device is called twice.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions, unwrap

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use iot_dm::core::clock::{Clock, ManualClock, SystemClock, Timestamp};
use iot_dm::core::job::{DeviceJob, DeviceJobStatus, JobRequest, JobResponse, JobStatus};
use iot_dm::core::method::MethodResponse;
use iot_dm::core::query::PageRequest;
use iot_dm::core::twin::ConnectionState;
use iot_dm::device::{DeviceClient, DeviceCredentials, MqttTransport};
use iot_dm::service::api::prelude::*;
use iot_dm::service::client::ServiceClient;
use iot_dm::service::hub::{DeviceSpec, Hub, MAX_IN_FLIGHT};
use iot_dm::service::mqtt::Listener;
use iot_dm::service::tls::dev_certs::DevCerts;
use iot_dm::service::HubServer;

const BIN: &str = env!("CARGO_BIN_EXE_iot-dm");
const HOST: &str = "localhost";

/// Method calls each device received, by device id.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<String, u32>>>);

impl Calls {
    fn of(&self, id: &str) -> u32 {
        self.0.lock().unwrap().get(id).copied().unwrap_or(0)
    }
    fn count(&self, id: &str) {
        *self.0.lock().unwrap().entry(id.to_string()).or_default() += 1;
    }
}

/// How a simulated device answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// 200 at once.
    Now,
    /// Never before the test ends (the call is counted).
    Never,
}

/// Connects a device over MQTT/TLS and answers `reboot` as `answer` says, counting calls.
async fn device(
    port: u16,
    ca: &[u8],
    id: &str,
    key: &str,
    calls: &Calls,
    answer: Answer,
) -> DeviceClient {
    let creds = DeviceCredentials::symmetric_key(HOST, id.parse().unwrap(), key).unwrap();
    let transport = MqttTransport::builder(HOST)
        .port(port)
        .ca_pem(ca.to_vec())
        .build()
        .unwrap();
    let client = DeviceClient::builder(creds, transport)
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let (calls, id) = (calls.clone(), id.to_string());
    client.on_method("reboot", move |_call| {
        calls.count(&id);
        async move {
            if answer == Answer::Never {
                tokio::time::sleep(Duration::from_secs(120)).await;
            }
            MethodResponse::new(200, json!({"ok": true})).unwrap()
        }
    });
    client
}

fn method_job(id: &str, rate_per_minute: u64) -> JobRequest {
    JobRequest::from_json(&json!({
        "jobId": id, "type": "scheduleDeviceMethod", "queryCondition": "*",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": 30},
        "maxExecutionTimeInSeconds": 3600,
        "rolloutPolicy": {"rate": {"maxPerMinute": rate_per_minute}},
    }))
    .unwrap()
}

/// Every device record of job `id`.
async fn records(api: &dyn JobApi, id: &str) -> Vec<DeviceJob> {
    let mut out = Vec::new();
    let mut request = PageRequest::new().size(500);
    loop {
        let page = api.device_jobs(id, &request).await.unwrap();
        out.extend(page.items);
        match page.continuation {
            Some(c) => request = PageRequest::new().size(500).continuation(c),
            None => return out,
        }
    }
}

/// Polls `f` every 20 ms until it holds, for at most `secs` seconds.
async fn until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The planner's rule: no 60 s interval holds more than `rate` starts.
fn most_starts_in_a_minute(starts: &mut [Timestamp]) -> usize {
    starts.sort();
    let minute = Duration::from_secs(60);
    let mut most = 0;
    let mut j = 0;
    for i in 0..starts.len() {
        while j < starts.len() && starts[j] < starts[i] + minute {
            j += 1;
        }
        most = most.max(j - i);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_job_over_mqtt_keeps_to_its_rate() {
    const DEVICES: usize = 1_000;
    const RATE: u64 = 250;
    let t0 = SystemClock.now();
    let clock = ManualClock::new(t0);
    let hub = Hub::builder()
        .host_name(HOST)
        .clock(Arc::new(clock.clone()))
        .open()
        .await
        .unwrap();
    let certs = DevCerts::generate().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = HubServer::builder(hub.clone())
        .mqtt_with(|b| {
            b.listen(Listener::Tls, any)
                .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
        })
        .start()
        .await
        .unwrap();
    let port = server.mqtt_addr(Listener::Tls).unwrap().port();
    let calls = Calls::default();
    let mut clients = Vec::with_capacity(DEVICES);
    let ca = certs.ca_pem().as_bytes().to_vec();
    for chunk in (0..DEVICES).collect::<Vec<_>>().chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for i in chunk {
            let id = format!("dev-{i:04}");
            let d = hub
                .create_device(DeviceSpec::new(id.parse().unwrap()))
                .await
                .unwrap();
            let key = d.symmetric_key.primary_key.unwrap();
            let (ca, calls) = (ca.clone(), calls.clone());
            set.spawn(async move { device(port, &ca, &id, &key, &calls, Answer::Now).await });
        }
        while let Some(c) = set.join_next().await {
            clients.push(c.unwrap());
        }
    }
    for i in 0..DEVICES {
        let id = format!("dev-{i:04}");
        until("devices listen", 30, || async {
            hub.listening_for_methods(&id)
        })
        .await;
    }

    hub.create_job(&method_job("paced", RATE)).await.unwrap();
    // the clock moves in steps of 10 s once the hub has done all it may at the current time
    let step = Duration::from_secs(10);
    let mut ended: Option<JobResponse> = None;
    for _ in 0..60 {
        let mut last = u64::MAX;
        let mut quiet = 0;
        let settle = Instant::now() + Duration::from_secs(20);
        while quiet < 5 && Instant::now() < settle {
            let job = hub.get_job("paced").await.unwrap();
            let s = job.device_job_statistics.unwrap_or_default();
            let done = s.succeeded_count + s.failed_count;
            quiet = if s.running_count == 0 && done == last {
                quiet + 1
            } else {
                0
            };
            last = done;
            if !job.status.is_active() {
                ended = Some(job);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if ended.is_some() {
            break;
        }
        clock.advance(step);
    }
    let job = ended.expect("the job ended");
    let elapsed = clock.now().since(t0);
    let stats = job.device_job_statistics.unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(stats.succeeded_count, DEVICES as u64, "{job:?}");

    let recs = records(&hub, "paced").await;
    assert_eq!(recs.len(), DEVICES);
    let mut starts: Vec<Timestamp> = recs.iter().map(|r| r.start_time_utc.unwrap()).collect();
    let most = most_starts_in_a_minute(&mut starts);
    assert!(
        most as u64 <= RATE,
        "{most} starts within one minute, rate {RATE}"
    );
    // a minute's worth at once, then a minute's worth each minute: the last starts in the
    // fourth minute; a step and the limiter's second of lateness are the slack
    let allowed = Duration::from_secs(60 * (DEVICES as u64 / RATE - 1)) + step + step;
    assert!(
        elapsed <= allowed,
        "took {elapsed:?} of the hub's time, at most {allowed:?}"
    );
    assert!(
        most as u64 == RATE,
        "the rate was never reached: at most {most} starts in a minute"
    );
    for r in &recs {
        assert_eq!(r.status, DeviceJobStatus::Completed, "{r:?}");
        assert_eq!(
            calls.of(&r.device_id),
            1,
            "{} was called more than once",
            r.device_id
        );
    }
    for c in clients {
        c.close().await;
    }
    server.shutdown().await.unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hub process; killed when dropped.
struct HubProcess {
    child: Child,
}

impl HubProcess {
    /// Starts `iot-dm hub` on the store in `dir` and waits until it wrote the owner
    /// connection string (it listens by then).
    fn start(dir: &Path, mqtt: u16, rest: u16) -> (HubProcess, String) {
        let cs_file = dir.join("owner.cs");
        let _ = std::fs::remove_file(&cs_file);
        let child = Command::new(BIN)
            .args(["hub", "--data"])
            .arg(dir.join("data"))
            .args(["--mqtt", &format!("127.0.0.1:{mqtt}")])
            .args(["--rest", &format!("127.0.0.1:{rest}")])
            .args([
                "--host",
                HOST,
                "--log",
                "warn",
                "--owner-connection-string-file",
            ])
            .arg(&cs_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut hub = HubProcess { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cs_file.exists() {
            if let Some(status) = hub.child.try_wait().unwrap() {
                panic!("the hub exited early: {status}");
            }
            assert!(Instant::now() < deadline, "the hub did not start in 30 s");
            std::thread::sleep(Duration::from_millis(25));
        }
        let cs = std::fs::read_to_string(&cs_file).unwrap();
        (hub, cs.trim().to_string())
    }

    /// SIGKILL: no shutdown, no last commit.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(cs: &str, rest: u16, ca: &Path) -> ServiceClient {
    ServiceClient::builder(cs)
        .unwrap()
        .ca_pem(std::fs::read(ca).unwrap())
        .base_url(&format!("https://127.0.0.1:{rest}"))
        .unwrap()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_job_resumes_it_and_calls_no_device_twice() {
    // devices are called in id order, at most MAX_IN_FLIGHT at once: the first `answering`
    // answer, the next MAX_IN_FLIGHT hold their call (so the job is full of calls in flight),
    // and the devices past them wait their turn until after the restart
    let answering = 40;
    let holding = answering..answering + MAX_IN_FLIGHT;
    let devices = answering + MAX_IN_FLIGHT + 24;
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, rest) = (free_port(), free_port());
    let ca_path: PathBuf = dir.path().join("data").join("certs").join("ca.pem");
    let (hub, cs) = HubProcess::start(dir.path(), mqtt, rest);
    let api = service(&cs, rest, &ca_path);
    let ca = std::fs::read(&ca_path).unwrap();
    let calls = Calls::default();
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..devices {
        let id = format!("pump-{i:03}");
        let d = api
            .create_device(DeviceSpec::new(id.parse().unwrap()))
            .await
            .unwrap();
        let key = d.symmetric_key.primary_key.unwrap();
        let answer = if holding.contains(&i) {
            Answer::Never
        } else {
            Answer::Now
        };
        clients.push(device(mqtt, &ca, &id, &key, &calls, answer).await);
        ids.push(id);
    }
    until("devices connected", 20, || async {
        api.get_device(&ids[devices - 1])
            .await
            .is_ok_and(|d| d.identity.connection_state == ConnectionState::Connected)
    })
    .await;

    let rate = 10_000;
    api.create_job(&method_job("survive", rate)).await.unwrap();
    until(
        "the first devices answered, the next hold their calls",
        20,
        || async {
            let job = api.get_job("survive").await.unwrap();
            job.device_job_statistics.is_some_and(|s| {
                s.succeeded_count == answering as u64 && s.running_count == MAX_IN_FLIGHT as u64
            })
        },
    )
    .await;
    let before = api.get_job("survive").await.unwrap();
    assert_eq!(before.status, JobStatus::Running, "{before:?}");
    hub.kill9();

    let (hub, cs) = HubProcess::start(dir.path(), mqtt, rest);
    let api = service(&cs, rest, &ca_path);
    until("the job completed after the restart", 30, || async {
        // the hub may still be loading: an error is a retry
        api.get_job("survive")
            .await
            .is_ok_and(|job| !job.status.is_active())
    })
    .await;
    let job = api.get_job("survive").await.unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let recs = records(&api, "survive").await;
    assert_eq!(recs.len(), devices);
    for r in &recs {
        let i: usize = r.device_id["pump-".len()..].parse().unwrap();
        let n = calls.of(&r.device_id);
        assert!(n <= 1, "{} was called {n} times: {r:?}", r.device_id);
        if !holding.contains(&i) {
            // answered before the kill, or first called after the restart
            assert_eq!(r.status, DeviceJobStatus::Completed, "{r:?}");
            assert_eq!(n, 1, "{r:?}");
        } else {
            // its call was in flight when the hub died: recorded, never repeated
            assert_eq!(r.status, DeviceJobStatus::Failed, "{r:?}");
            assert_eq!(
                r.error.as_ref().map(|e| e.code.as_str()),
                Some("Interrupted"),
                "{r:?}"
            );
        }
    }
    let stats = job.device_job_statistics.unwrap();
    assert_eq!(stats.succeeded_count, (devices - MAX_IN_FLIGHT) as u64);
    for c in clients {
        c.close().await;
    }
    drop(hub);
}
