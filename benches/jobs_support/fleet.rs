//! The fleet of the jobs benchmarks: a hub with N small twins, the twin job timed from create
//! to `completed`, and the memory a running job keeps per device.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use iot_dm_core::job::{JobRequest, JobStatus};
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{DeviceSpec, Hub};
use iot_dm_service::HubError;

use crate::rss::rss_kib;
use crate::LIMIT;

pub const HOST: &str = "localhost";
const REGIONS: [&str; 3] = ["us", "eu", "ap"];

/// Whether this is a measurement run (`cargo bench`), not `cargo test`'s single pass.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A size from the environment, else `full` under `cargo bench` and `small` under test.
pub fn env_size(var: &str, full: usize, small: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(if full_run() { full } else { small })
}

/// A two-worker runtime whose threads are named `name`.
pub fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Prints the runs of a timed benchmark against its target (in seconds).
pub fn summary(name: &str, runs: &[Duration], target: f64) {
    if runs.is_empty() {
        return;
    }
    let mut s: Vec<f64> = runs.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    println!(
        "{name}: {} runs, best {:.3} s, median {:.3} s, worst {:.3} s (target at most {target} s)",
        s.len(),
        s[0],
        s[s.len() / 2],
        s[s.len() - 1]
    );
}

static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// A fresh job id.
pub fn job_id(kind: &str) -> String {
    format!("bench-{kind}-{}", NEXT_JOB.fetch_add(1, Ordering::Relaxed))
}

/// The twin job of the benchmarks: every twin, a tags and desired patch, `rollout` if given.
pub fn twin_job_request(id: &str, rollout: Option<Value>) -> JobRequest {
    let mut v = json!({
        "jobId": id, "type": "scheduleUpdateTwin", "queryCondition": "*",
        "updateTwin": {"deviceId": null, "etag": "*", "tags": {"wave": id},
                       "properties": {"desired": {"fw": {"version": "2.1.0"}}}},
    });
    if let Some(r) = rollout {
        v["rolloutPolicy"] = r;
    }
    JobRequest::from_json(&v).expect("job request")
}

/// Polls job `id` until it is no longer active, for at most [`LIMIT`].
pub async fn until_ended(hub: &Hub, id: &str) -> iot_dm_core::job::JobResponse {
    let deadline = Instant::now() + LIMIT;
    loop {
        let job = hub.get_job(id).await.expect("job");
        if !job.status.is_active() {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {job:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits (bounded) until an ended job's history is gone, so that its deletion is not timed.
pub async fn until_forgotten(hub: &Hub, id: &str) {
    let deadline = Instant::now() + LIMIT;
    while !matches!(hub.get_job(id).await, Err(HubError::JobNotFound { .. })) {
        assert!(Instant::now() < deadline, "job {id} was not forgotten");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `n` devices with small tags, 64 at a time.
pub async fn create_devices(hub: &Hub, n: usize, prefix: &str) {
    let started = Instant::now();
    let workers = 64;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let hub = hub.clone();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let mut i = w;
            while i < n {
                let id = format!("{prefix}{i:07}");
                let spec = DeviceSpec::new(id.parse().expect("id"))
                    .tags(json!({"region": REGIONS[i % 3], "n": i}));
                hub.create_device(spec).await.expect("device");
                i += workers;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("create task");
    }
    eprintln!(
        "jobs: created {n} devices in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// An in-memory hub with N twins; ended jobs are forgotten a second later.
pub struct Fleet {
    pub hub: Hub,
}

impl Fleet {
    pub async fn twins(n: usize) -> Fleet {
        let hub = Hub::builder()
            .in_memory()
            .host_name(HOST)
            .job_retention(Duration::from_secs(1))
            .open()
            .await
            .expect("hub");
        create_devices(&hub, n, "twin-").await;
        Fleet { hub }
    }

    /// Runs one twin job over every twin; returns the time from create to `completed`.
    pub async fn twin_job(&self, rollout: Option<Value>) -> Duration {
        let id = job_id("twin");
        let request = twin_job_request(&id, rollout);
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
}

/// Starts a twin job over every one of the `n` twins that stays running (its rate keeps it
/// so) and waits until it is.
async fn start_held_job(hub: &Hub, n: usize) -> String {
    let id = job_id("memory");
    let request = twin_job_request(&id, Some(json!({"rate": {"maxPerMinute": 1}})));
    hub.create_job(&request).await.expect("create");
    let deadline = Instant::now() + LIMIT;
    loop {
        let job = hub.get_job(&id).await.expect("job");
        if job.status == JobStatus::Running
            && job
                .device_job_statistics
                .is_some_and(|s| s.device_count == n as u64)
        {
            return id;
        }
        assert!(Instant::now() < deadline, "job {id} did not start: {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Jobs whose growth is measured, after the first.
const MEASURED_JOBS: usize = 3;

/// The resident-memory growth per device of a running job over `n` twins, on a redb hub in
/// `dir`, and what the figure includes. A first job is started before the baseline, so that
/// the heap has already grown for what a start needs only for a moment (the first commit of
/// every device record); the growth is that of [`MEASURED_JOBS`] more running jobs.
pub async fn memory_per_device_job(dir: &Path, n: usize) -> (f64, String) {
    let hub = Hub::builder()
        .path(dir.join("hub.redb"))
        .host_name(HOST)
        .open()
        .await
        .expect("hub");
    create_devices(&hub, n, "mem-").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fresh = rss_kib();
    let mut ids = vec![start_held_job(&hub, n).await];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    for _ in 0..MEASURED_JOBS {
        ids.push(start_held_job(&hub, n).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    let per = (after.saturating_sub(before) * 1024) as f64 / (MEASURED_JOBS * n) as f64;
    let first = (before.saturating_sub(fresh) * 1024) as f64 / n as f64;
    for id in ids {
        hub.cancel_job(&id).await.expect("cancel");
    }
    (
        per,
        format!(
            "RSS {} -> {} MiB over {MEASURED_JOBS} jobs after a first; the first job, with what \
             its start needs for a moment, grew it {first:.0} B per device",
            before / 1024,
            after / 1024
        ),
    )
}
