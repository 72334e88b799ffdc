//! Jobs end to end over the in-process hub, with devices connected through the in-memory link:
//! twin-update jobs, method jobs with a rate, cancel, offline devices, restart mid-job, and
//! refused requests.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::job::{DeviceJobStatus, JobRequest, JobStatus, JobType};
use iot_dm_core::query::PageRequest;
use iot_dm_service::api::prelude::*;
use iot_dm_service::api::JobFilter;
use iot_dm_service::hub::{Actor, Hub, HubEvent};
use iot_dm_service::store::{MemoryStore, Store};
use iot_dm_service::HubError;

mod jobs_support;

use jobs_support::*;

#[tokio::test]
async fn a_twin_job_updates_every_targeted_twin_once() {
    let hub = hub_on(None, None).await;
    devices(
        &hub,
        30,
        |i| json!({"env": if i % 3 == 0 { "dev" } else { "prod" }}),
    )
    .await;
    let before = hub.get_twin("d00").unwrap().version();
    let mut events = hub.events();
    let created = hub
        .create_job(&job(json!({
            "jobId": "fw-prod", "type": "scheduleUpdateTwin", "queryCondition": "tags.env = 'prod'",
            "updateTwin": {"deviceId": null, "etag": "*", "tags": {"wave": 1},
                           "properties": {"desired": {"fw": "2.0"}}},
        })))
        .await
        .unwrap();
    assert_eq!(created.status, JobStatus::Queued);
    let done = ended(&hub, "fw-prod").await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert!(done.end_time.is_some());
    let recs = consistent(&hub, &done).await;
    assert_eq!(recs.len(), 20);
    assert!(recs.iter().all(|r| r.status == DeviceJobStatus::Completed
        && r.job_type == JobType::ScheduleUpdateTwin
        && r.end_time_utc.is_some()));
    for i in 0..30 {
        let twin = hub.get_twin(&format!("d{i:02}")).unwrap();
        let desired = twin.desired().doc().to_value();
        if i % 3 == 0 {
            assert!(desired.get("fw").is_none());
            assert_eq!(twin.version(), before);
        } else {
            assert_eq!(desired["fw"], "2.0");
            assert_eq!(twin.tags().to_value()["wave"], 1);
            assert_eq!(twin.version(), before + 1, "one write per device");
        }
    }
    let mut by_job = 0;
    while let Ok(e) = events.try_recv() {
        if let HubEvent::TwinChanged { actor, .. } = e {
            assert_eq!(actor, Actor::Job("fw-prod".into()));
            by_job += 1;
        }
    }
    assert_eq!(by_job, 20);
    // the records through the query language, page by page
    let sql = "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'fw-prod' AND devices.jobs.status = 'completed'";
    let mut rows = Vec::new();
    let mut request = PageRequest::new().size(6);
    loop {
        let page = QueryApi::query_page(&hub, sql, &request).await.unwrap();
        rows.extend(page.items);
        match page.continuation {
            Some(c) => request = PageRequest::new().size(6).continuation(c),
            None => break,
        }
    }
    assert_eq!(
        rows,
        recs.iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect::<Vec<_>>()
    );
    let none = QueryApi::query_page(
        &hub,
        "SELECT * FROM devices.jobs WHERE devices.jobs.status = 'failed'",
        &PageRequest::new(),
    )
    .await
    .unwrap();
    assert!(none.items.is_empty());
    let page = hub
        .query_jobs(
            &JobFilter::new()
                .job_type(JobType::ScheduleUpdateTwin)
                .status(JobStatus::Completed),
            &PageRequest::new(),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let none = hub
        .query_jobs(
            &JobFilter::new().job_type(JobType::ScheduleDeviceMethod),
            &PageRequest::new(),
        )
        .await
        .unwrap();
    assert!(none.items.is_empty());
}

#[tokio::test]
async fn a_method_job_keeps_to_its_rate() {
    let (hub, clock, calls) = paced_job("paced", 5, 2).await;
    wait_for(|| async { calls.total() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(calls.total(), 2, "no more than two in the first minute");
    let job = hub.get_job("paced").await.unwrap();
    assert_eq!(job.status, JobStatus::Running);
    consistent(&hub, &job).await;
    clock.advance(Duration::from_secs(60));
    wait_for(|| async { calls.total() == 4 }).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(calls.total(), 4);
    clock.advance(Duration::from_secs(60));
    let done = ended(&hub, "paced").await;
    assert_eq!(done.status, JobStatus::Completed);
    let recs = consistent(&hub, &done).await;
    for r in &recs {
        assert_eq!(r.status, DeviceJobStatus::Completed);
        let resp = r.outcome.device_method_response.as_ref().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.payload["got"], json!({"n": 1}));
        assert_eq!(calls.of(&r.device_id), 1);
    }
}

#[tokio::test]
async fn cancel_stops_devices_not_started() {
    let (hub, clock, calls) = paced_job("slow", 3, 1).await;
    succeeded(&hub, "slow", 1).await;
    let cancelled = hub.cancel_job("slow").await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(
        serde_json::to_value(&cancelled).unwrap()["status"],
        "cancelled"
    );
    clock.advance(Duration::from_secs(180));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.total(), 1);
    let job = hub.get_job("slow").await.unwrap();
    let recs = consistent(&hub, &job).await;
    let canceled = recs
        .iter()
        .filter(|r| r.status == DeviceJobStatus::Canceled)
        .count();
    assert_eq!(canceled, 2);
    let e = hub.cancel_job("nope").await.unwrap_err();
    assert!(matches!(e, HubError::JobNotFound { .. }) && e.code() == 404_002);
}

#[tokio::test]
async fn an_offline_device_is_served_when_it_connects() {
    let hub = hub_on(None, None).await;
    devices(&hub, 2, |_| json!({})).await;
    let calls = Calls::default();
    connect(&hub, "d00", &calls, true).await;
    hub.create_job(&method_job("wait", "*", json!({})))
        .await
        .unwrap();
    wait_for(|| async { calls.of("d00") == 1 }).await;
    succeeded(&hub, "wait", 1).await;
    let job = hub.get_job("wait").await.unwrap();
    assert_eq!(job.status, JobStatus::Running);
    let recs = consistent(&hub, &job).await;
    assert_eq!(recs[1].status, DeviceJobStatus::Running);
    connect(&hub, "d01", &calls, true).await;
    let done = ended(&hub, "wait").await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.device_job_statistics.unwrap().succeeded_count, 2);
    assert_eq!((calls.of("d00"), calls.of("d01")), (1, 1));
}

#[tokio::test]
async fn a_device_that_never_connects_fails_with_device_not_online() {
    let hub = hub_on(None, None).await;
    devices(&hub, 1, |_| json!({})).await;
    hub.create_job(&method_job(
        "lonely",
        "deviceId = 'd00'",
        json!({"maxExecutionTimeInSeconds": 1}),
    ))
    .await
    .unwrap();
    let done = ended(&hub, "lonely").await;
    assert_eq!(done.status, JobStatus::Completed);
    let recs = consistent(&hub, &done).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, DeviceJobStatus::Failed);
    let err = recs[0].error.as_ref().unwrap();
    assert_eq!(err.code, "DeviceNotOnline");
    assert_eq!(err.description, "Timed out waiting for device to connect");
}

#[tokio::test]
async fn a_restart_mid_job_resumes_it_and_calls_no_device_twice() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = hub_on(Some(&clock), Some(store.clone())).await;
    devices(&hub, 3, |_| json!({})).await;
    let calls = Calls::default();
    connect(&hub, "d00", &calls, true).await;
    // d01 takes the call and never answers: it is in flight when the hub stops
    connect(&hub, "d01", &calls, false).await;
    connect(&hub, "d02", &calls, true).await;
    hub.create_job(&method_job(
        "resume",
        "*",
        json!({"rolloutPolicy": {"rate": {"maxPerMinute": 2}}}),
    ))
    .await
    .unwrap();
    wait_for(|| async { calls.of("d00") == 1 && calls.of("d01") == 1 }).await;
    succeeded(&hub, "resume", 1).await;
    hub.shutdown().await.unwrap();

    let hub = hub_on(Some(&clock), Some(store)).await;
    let job = hub.get_job("resume").await.unwrap();
    assert_eq!(job.status, JobStatus::Running);
    let recs = consistent(&hub, &job).await;
    assert_eq!(recs[0].status, DeviceJobStatus::Completed);
    let calls2 = Calls::default();
    for i in 0..3 {
        connect(&hub, &format!("d{i:02}"), &calls2, true).await;
    }
    clock.advance(Duration::from_secs(60));
    let done = ended(&hub, "resume").await;
    assert_eq!(done.status, JobStatus::Completed);
    let recs = consistent(&hub, &done).await;
    assert_eq!(recs[1].status, DeviceJobStatus::Failed);
    assert_eq!(recs[1].error.as_ref().unwrap().code, "Interrupted");
    assert!(recs[1]
        .error
        .as_ref()
        .unwrap()
        .description
        .starts_with("interrupted"));
    assert_eq!(recs[2].status, DeviceJobStatus::Completed);
    assert_eq!(
        (calls2.of("d00"), calls2.of("d01"), calls2.of("d02")),
        (0, 0, 1),
        "only the device never called before is called"
    );
    assert_eq!(calls.of("d02"), 0);
}

#[tokio::test]
async fn refused_requests_name_the_field_and_change_nothing() {
    let hub = Hub::builder().max_active_jobs(1).open().await.unwrap();
    devices(&hub, 2, |_| json!({"a": 1})).await;
    let before = hub.get_twin("d00").unwrap().version();
    let good = json!({"jobId": "t", "type": "scheduleUpdateTwin", "queryCondition": "*",
                      "updateTwin": {"tags": {"a": 2}, "etag": "*"}});
    let bad = [
        ("jobId", json!("bad id")),
        ("type", json!("import")),
        ("queryCondition", json!("SELECT * FROM devices")),
        ("startTime", json!("soon")),
        ("maxExecutionTimeInSeconds", json!(0)),
        ("updateTwin", json!({"properties": {"reported": {"r": 1}}})),
        ("rolloutPolicy", json!({"rate": {"maxPerMinute": 0}})),
    ];
    for (field, value) in bad {
        let mut v = good.clone();
        v[field] = value;
        let e = HubError::from(JobRequest::from_json(&v).unwrap_err());
        assert_eq!(e.code(), 400_004, "{e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    // a request built in code is checked too
    let mut r = job(good.clone());
    r.job_id = "a/b".into();
    let e = hub.create_job(&r).await.unwrap_err();
    assert!(
        e.to_string().contains("jobId") && e.code() == 400_004,
        "{e}"
    );
    let mut r = job(good.clone());
    r.update_twin = None;
    let e = hub.create_job(&r).await.unwrap_err();
    assert!(e.to_string().contains("updateTwin"), "{e}");
    assert!(hub
        .query_jobs(&JobFilter::new(), &PageRequest::new())
        .await
        .unwrap()
        .items
        .is_empty());
    for id in ["d00", "d01"] {
        let twin = hub.get_twin(id).unwrap();
        assert_eq!(twin.version(), before);
        assert_eq!(twin.tags().to_value(), json!({"a": 1}));
    }
    // a scheduled job holds the only active slot; the same id again is a conflict
    let mut later = good.clone();
    later["startTime"] = json!("2999-01-01T00:00:00Z");
    let created = hub.create_job(&job(later.clone())).await.unwrap();
    assert_eq!(created.status, JobStatus::Queued);
    wait_for(|| async { hub.get_job("t").await.unwrap().status == JobStatus::Scheduled }).await;
    let e = hub.create_job(&job(later)).await.unwrap_err();
    assert!(
        matches!(e, HubError::JobAlreadyExists { .. }) && e.code() == 409_104,
        "{e}"
    );
    let mut other = good.clone();
    other["jobId"] = json!("u");
    let e = hub.create_job(&job(other)).await.unwrap_err();
    assert!(e.is_throttled() && e.code() == 429_004, "{e}");
    assert_eq!(e.code_name(), "ThrottlingMaxActiveJobCountExceeded");
    assert_eq!(hub.get_twin("d00").unwrap().version(), before);
}

#[tokio::test]
async fn pause_holds_new_starts_until_resume() {
    let (hub, clock, calls) = paced_job("held", 3, 1).await;
    succeeded(&hub, "held", 1).await;
    let paused = hub.pause_job("held").await.unwrap();
    assert_eq!(paused.status, JobStatus::Running);
    assert_eq!(paused.status_message.as_deref(), Some("paused"));
    clock.advance(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.total(), 1, "nothing starts while paused");
    hub.resume_job("held").await.unwrap();
    succeeded(&hub, "held", 2).await;
    clock.advance(Duration::from_secs(60));
    let done = ended(&hub, "held").await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(calls.total(), 3);
}

#[tokio::test]
async fn a_gated_device_waits_scheduled_until_its_twin_lets_it_go() {
    let hub = hub_on(None, None).await;
    devices(&hub, 2, |_| json!({})).await;
    hub.patch_reported("d00", &json!({"ready": true}))
        .await
        .unwrap();
    hub.create_job(&job(json!({
        "jobId": "gated", "type": "scheduleUpdateTwin", "queryCondition": "*",
        "updateTwin": {"properties": {"desired": {"go": 1}}},
        "rolloutPolicy": {"gate": "properties.reported.ready = true"},
    })))
    .await
    .unwrap();
    succeeded(&hub, "gated", 1).await;
    wait_for(|| async {
        let recs = records(&hub, "gated").await;
        recs.len() == 2 && recs[1].status == DeviceJobStatus::Scheduled
    })
    .await;
    let job = hub.get_job("gated").await.unwrap();
    assert_eq!(job.status, JobStatus::Running);
    consistent(&hub, &job).await;
    // ours: what the policy holds back, by what it waits for
    let held = job
        .rollout_statistics
        .expect("a job with a policy says what it holds");
    assert_eq!(
        (held.gated_count, held.waiting_for_window_count),
        (1, 0),
        "{job:?}"
    );
    assert!(hub
        .get_twin("d01")
        .unwrap()
        .desired()
        .doc()
        .to_value()
        .get("go")
        .is_none());
    hub.patch_reported("d01", &json!({"ready": true}))
        .await
        .unwrap();
    let done = ended(&hub, "gated").await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.rollout_statistics.map(|r| r.gated_count), Some(0));
    assert_eq!(
        hub.get_twin("d01").unwrap().desired().doc().to_value()["go"],
        1
    );
}

#[tokio::test]
async fn an_ended_job_is_forgotten_after_its_retention() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = Hub::builder()
        .clock(Arc::new(clock.clone()))
        .job_retention(Duration::from_secs(10))
        .open()
        .await
        .unwrap();
    devices(&hub, 1, |_| json!({})).await;
    hub.create_job(&job(json!({
        "jobId": "brief", "type": "scheduleUpdateTwin", "queryCondition": "*",
        "updateTwin": {"tags": {"x": 1}},
    })))
    .await
    .unwrap();
    ended(&hub, "brief").await;
    assert_eq!(records(&hub, "brief").await.len(), 1);
    clock.advance(Duration::from_secs(11));
    wait_for(|| async { hub.get_job("brief").await.is_err() }).await;
    let e = hub
        .device_jobs("brief", &PageRequest::new())
        .await
        .unwrap_err();
    assert!(matches!(e, HubError::JobNotFound { .. }));
    let rows = QueryApi::query_page(&hub, "SELECT * FROM devices.jobs", &PageRequest::new())
        .await
        .unwrap();
    assert!(
        rows.items.is_empty(),
        "device records deleted too: {rows:?}"
    );
}
