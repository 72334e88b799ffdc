//! What the jobs tests share: a hub on a manual clock, devices connected through the
//! in-memory link that count and answer method calls, and readers of a job's records that
//! check its statistics.

// each test file uses what it needs
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::job::{DeviceJob, DeviceJobStatus, JobRequest, JobResponse, JobStatus};
use iot_dm_core::link::{ConnectRequest, Credentials, DeviceFrame, Endpoint, Message};
use iot_dm_core::query::PageRequest;
use iot_dm_core::wire::{self, RequestId, SasToken, SymmetricKey};
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{Device, DeviceSpec, Hub};
use iot_dm_service::store::Store;

pub const HOST: &str = "hub.example";
pub const T0: i64 = 1_700_000_000;

/// Method calls each device answered, across hubs.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<Mutex<HashMap<String, u32>>>);

impl Calls {
    pub fn of(&self, id: &str) -> u32 {
        self.0.lock().unwrap().get(id).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
}

pub fn token(device: &Device) -> String {
    let key = SymmetricKey::new(
        device
            .authentication()
            .symmetric_key
            .primary_key
            .clone()
            .unwrap(),
    )
    .unwrap();
    let uri = wire::device_resource_uri(HOST, &device.device_id);
    SasToken::generate(
        &uri,
        &key,
        Timestamp::from_unix_secs(T0 + 100_000_000),
        None,
    )
    .as_str()
    .to_string()
}

/// Connects `id` and answers every method call with 200 (counting it), unless `answer` is
/// false (the call is counted and left unanswered). Returns once the device listens.
pub async fn connect(
    hub: &Hub,
    id: &str,
    calls: &Calls,
    answer: bool,
) -> tokio::task::JoinHandle<()> {
    connect_answering(hub, id, calls, answer.then_some(200)).await
}

/// Connects `id` and answers every method call with `status` (counting it); `None` leaves
/// the calls unanswered (still counted).
pub async fn connect_answering(
    hub: &Hub,
    id: &str,
    calls: &Calls,
    status: Option<i32>,
) -> tokio::task::JoinHandle<()> {
    let device = hub.get_device(id).unwrap();
    let mut link = hub
        .connect(ConnectRequest {
            device_id: device.device_id.clone(),
            module_id: None,
            credentials: Credentials::Sas(token(&device)),
            clean_session: true,
        })
        .await
        .unwrap();
    link.tx
        .send(DeviceFrame::Subscribe(vec![
            wire::topic::METHOD_REQUEST_FILTER.to_string(),
        ]))
        .await
        .unwrap();
    let calls = calls.clone();
    let id = id.to_string();
    let task = tokio::spawn(async move {
        while let Some(m) = link.rx.recv().await {
            let Some(rid) = m.topic.strip_prefix("$iothub/methods/POST/") else {
                continue;
            };
            let rid = rid.rsplit("$rid=").next().unwrap().to_string();
            *calls.0.lock().unwrap().entry(id.clone()).or_default() += 1;
            if let Some(status) = status {
                let rid = RequestId::new(rid).unwrap();
                let body = json!({"device": id, "got": serde_json::from_slice::<Value>(&m.payload).unwrap()});
                let reply =
                    Message::new(wire::topic::method_response(status, &rid), body.to_string());
                if link.tx.send(DeviceFrame::Publish(reply)).await.is_err() {
                    break;
                }
            }
        }
    });
    wait_for(|| async { hub.listening_for_methods(id_of(&device)) }).await;
    task
}

pub fn id_of(d: &Device) -> &str {
    d.device_id.as_str()
}

/// Polls `f` every 10 ms for up to 10 s.
pub async fn wait_for<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 10 s");
}

pub async fn ended(hub: &Hub, id: &str) -> JobResponse {
    let mut last = None;
    for _ in 0..1000 {
        let job = hub.get_job(id).await.unwrap();
        if !job.status.is_active() || job.status == JobStatus::Cancelled {
            return job;
        }
        last = Some(job);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} did not end: {last:?}");
}

pub async fn records(hub: &Hub, id: &str) -> Vec<DeviceJob> {
    let mut out = Vec::new();
    let mut request = PageRequest::new().size(7);
    loop {
        let page = hub.device_jobs(id, &request).await.unwrap();
        out.extend(page.items);
        match page.continuation {
            Some(c) => request = PageRequest::new().size(7).continuation(c),
            None => return out,
        }
    }
}

/// The statistics agree with the device records.
pub async fn consistent(hub: &Hub, job: &JobResponse) -> Vec<DeviceJob> {
    let recs = records(hub, &job.job_id).await;
    let stats = job.device_job_statistics.unwrap();
    let n = |s: DeviceJobStatus| recs.iter().filter(|r| r.status == s).count() as u64;
    assert_eq!(stats.device_count, recs.len() as u64, "{job:?}");
    assert_eq!(
        stats.succeeded_count,
        n(DeviceJobStatus::Completed),
        "{job:?}"
    );
    assert_eq!(stats.failed_count, n(DeviceJobStatus::Failed), "{job:?}");
    assert_eq!(stats.running_count, n(DeviceJobStatus::Running), "{job:?}");
    assert_eq!(
        stats.canceled_count,
        n(DeviceJobStatus::Canceled),
        "{job:?}"
    );
    assert_eq!(
        stats.pending_count,
        n(DeviceJobStatus::Pending) + n(DeviceJobStatus::Scheduled),
        "{job:?}"
    );
    recs
}

pub async fn hub_on(clock: Option<&ManualClock>, store: Option<Arc<dyn Store>>) -> Hub {
    let mut b = Hub::builder().host_name(HOST);
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    if let Some(s) = store {
        b = b.store(s);
    }
    b.open().await.unwrap()
}

pub async fn devices(hub: &Hub, n: usize, tags: impl Fn(usize) -> Value) {
    for i in 0..n {
        hub.create_device(DeviceSpec::new(format!("d{i:02}").parse().unwrap()).tags(tags(i)))
            .await
            .unwrap();
    }
}

pub fn job(v: Value) -> JobRequest {
    JobRequest::from_json(&v).unwrap()
}

pub fn method_job(id: &str, condition: &str, extra: Value) -> JobRequest {
    let mut v = json!({
        "jobId": id, "type": "scheduleDeviceMethod", "queryCondition": condition,
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"n": 1}, "responseTimeoutInSeconds": 5},
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    job(v)
}

/// A hub on a manual clock with `n` connected devices that answer, running method job `id`
/// over all of them at `per_minute`.
pub async fn paced_job(id: &str, n: usize, per_minute: u64) -> (Hub, ManualClock, Calls) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = hub_on(Some(&clock), None).await;
    devices(&hub, n, |_| json!({})).await;
    let calls = Calls::default();
    for i in 0..n {
        connect(&hub, &format!("d{i:02}"), &calls, true).await;
    }
    hub.create_job(&method_job(
        id,
        "*",
        json!({"rolloutPolicy": {"rate": {"maxPerMinute": per_minute}}}),
    ))
    .await
    .unwrap();
    (hub, clock, calls)
}

/// Waits until `n` devices of job `id` succeeded.
pub async fn succeeded(hub: &Hub, id: &str, n: u64) {
    wait_for(|| async {
        hub.get_job(id)
            .await
            .unwrap()
            .device_job_statistics
            .is_some_and(|s| s.succeeded_count == n)
    })
    .await;
}
