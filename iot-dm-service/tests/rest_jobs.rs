//! Jobs over REST: the requests the official Python and Node service SDKs send (both pinned
//! releases send `api-version=2021-04-12`; older Python releases sent `2020-09-30`, accepted
//! too), the bodies they parse, the error codes, and `ServiceClient`.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use iot_dm_core::job::{JobRequest, JobStatus, JobType};
use iot_dm_core::query::PageRequest;
use iot_dm_service::api::prelude::*;
use iot_dm_service::api::JobFilter;
use iot_dm_service::hub::Hub;
use iot_dm_service::HubError;
use rest_support::{echo_device, Served, HOST};

const OWNER: &str = "iothubowner";

async fn put_python(s: &Served, id: &str, body: Value) -> rest_support::Answer {
    let token = s.token(OWNER);
    s.raw(
        Method::PUT,
        &format!("/jobs/v2/{id}?api-version=2020-09-30"),
        &[
            ("authorization", &token),
            ("content-type", "application/json; charset=utf-8"),
            ("accept", "application/json"),
        ],
        body.to_string(),
    )
    .await
}

async fn ended(s: &Served, id: &str) -> Value {
    for _ in 0..500 {
        let a = s
            .call(OWNER, Method::GET, &format!("/jobs/v2/{id}"), None)
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let v = a.json();
        if !["queued", "scheduled", "running"].contains(&v["status"].as_str().unwrap()) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} did not end");
}

#[tokio::test]
async fn sdk_requests_and_replies() {
    let s = Served::start().await;
    echo_device(&s.hub, "e1").await;
    echo_device(&s.hub, "e2").await;
    // Python: create_scheduled_job(job_id, JobRequest(...)), msrest leaving out None members
    let a = put_python(
        &s,
        "py-job",
        json!({"jobId": "py-job", "type": "scheduleDeviceMethod",
               "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"n": 1},
                                       "responseTimeoutInSeconds": 30},
               "queryCondition": "deviceId IN ['e1', 'e2']",
               "startTime": "2020-01-01T00:00:00.000Z", "maxExecutionTimeInSeconds": 60}),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let created = a.json();
    assert_eq!(created["status"], "queued");
    assert_eq!(created["jobId"], "py-job");
    assert_eq!(created["type"], "scheduleDeviceMethod");
    // Node: scheduleTwinUpdate with no start time sends startTime null and no time bound
    let a = s
        .call(
            OWNER,
            Method::PUT,
            "/jobs/v2/node-job",
            Some(json!({"jobId": "node-job", "type": "scheduleUpdateTwin",
                        "queryCondition": "deviceId = 'e2'", "startTime": null,
                        "updateTwin": {"etag": "*", "properties": {"desired": {"fw": "2"}}}})),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["maxExecutionTimeInSeconds"], 3600);

    let done = ended(&s, "py-job").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["deviceJobStatistics"],
        json!({"deviceCount": 2, "failedCount": 0, "succeededCount": 2,
               "runningCount": 0, "pendingCount": 0})
    );
    assert_eq!(ended(&s, "node-job").await["status"], "completed");
    assert_eq!(
        s.hub.get_twin("e2").unwrap().desired().doc().to_value()["fw"],
        "2"
    );

    // Python's query_scheduled_jobs (msrest, User-Agent naming iothubgatewayserviceapis)
    // deserializes a QueryResult {type, items, continuationToken}
    let token = s.token(OWNER);
    let a = s
        .raw(
            Method::GET,
            "/jobs/v2/query?jobType=scheduleDeviceMethod&jobStatus=completed&api-version=2021-04-12",
            &[
                ("authorization", &token),
                ("accept", "application/json"),
                (
                    "user-agent",
                    "python/3.11.7 (Linux-6.1-x86_64-with-glibc2.36) msrest/0.7.1 iothubgatewayserviceapis/2021-04-12",
                ),
            ],
            "",
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-ms-item-type"), Some("jobResponse"));
    let list = a.json();
    assert_eq!(list["type"], "jobResponse");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["jobId"], "py-job");
    assert!(list["continuationToken"].is_null());
    // Node's JobClient.createQuery(type, status, pageSize).next() hands IoT Hub's JSON array to
    // its caller, paged by headers; the last page has no x-ms-continuation
    let a = s
        .raw(
            Method::GET,
            "/jobs/v2/query?api-version=2021-04-12&jobStatus=completed&jobType=scheduleDeviceMethod",
            &[
                ("authorization", &token),
                ("user-agent", "azure-iothub/1.16.6"),
                ("x-ms-max-item-count", "1"),
            ],
            "",
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-ms-item-type"), Some("jobResponse"));
    assert_eq!(a.header("x-ms-continuation"), None);
    assert_eq!(a.header("vary"), Some("User-Agent"));
    let list = a.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["jobId"], "py-job");
    assert_eq!(list[0]["status"], "completed");
    let a = s
        .call(OWNER, Method::GET, "/jobs/v2/query?jobStatus=bogus", None)
        .await;
    assert_eq!((a.status.as_u16(), a.code()), (400, 400_004));
    assert!(a.message().contains("jobStatus"), "{}", a.message());

    // the device records
    let a = s
        .call(OWNER, Method::GET, "/jobs/v2/py-job/devices", None)
        .await;
    assert_eq!(a.header("x-ms-item-type"), Some("deviceJob"));
    let recs = a.json();
    assert_eq!(recs.as_array().unwrap().len(), 2);
    assert_eq!(recs[0]["deviceId"], "e1");
    assert_eq!(recs[0]["status"], "completed");
    assert_eq!(recs[0]["outcome"]["deviceMethodResponse"]["status"], 200);
    assert_eq!(
        recs[0]["outcome"]["deviceMethodResponse"]["payload"]["echo"],
        json!({"n": 1})
    );

    // the same records through the query language
    let a = s
        .call(
            OWNER,
            Method::POST,
            "/devices/query",
            Some(json!({"query": "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'py-job' AND devices.jobs.status = 'completed'"})),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-ms-item-type"), Some("deviceJob"));
    assert_eq!(a.json(), recs);
    let a = s
        .call(
            OWNER,
            Method::POST,
            "/devices/query",
            Some(json!({"query": "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'e2'"})),
        )
        .await;
    let jobs: Vec<String> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["jobId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(jobs, ["node-job", "py-job"], "e2 is in both jobs: {a:?}");

    // errors with IoT Hub's codes, naming the field
    let bad = put_python(
        &s,
        "bad",
        json!({"jobId": "bad", "type": "scheduleDeviceMethod", "queryCondition": "*",
               "cloudToDeviceMethod": {"methodName": "m"}, "maxExecutionTimeInSeconds": 0}),
    )
    .await;
    assert_eq!((bad.status.as_u16(), bad.code()), (400, 400_004));
    assert!(
        bad.message().contains("maxExecutionTimeInSeconds"),
        "{}",
        bad.message()
    );
    let bad = put_python(
        &s,
        "other",
        json!({"jobId": "mismatch", "type": "scheduleDeviceMethod"}),
    )
    .await;
    assert_eq!(bad.code(), 400_004);
    assert!(bad.message().contains("jobId"), "{}", bad.message());
    let bad = put_python(&s, "x", json!("not a job")).await;
    assert_eq!(bad.code(), 400_004);
    let again = put_python(&s, "py-job", created.clone()).await;
    assert_eq!((again.status.as_u16(), again.code()), (409, 409_104));
    let a = s.call(OWNER, Method::GET, "/jobs/v2/nope", None).await;
    assert_eq!((a.status.as_u16(), a.code()), (404, 404_002));
    assert!(
        a.message().starts_with("ErrorCode:JobNotFound;"),
        "{}",
        a.message()
    );
}

#[tokio::test]
async fn service_client_runs_jobs() {
    let hub = Hub::builder()
        .host_name(HOST)
        .max_active_jobs(2)
        .open()
        .await
        .unwrap();
    let s = Served::start_with(hub, None).await;
    let client = s.client(OWNER);
    echo_device(&s.hub, "c1").await;
    let later = |id: &str| {
        JobRequest::from_json(&json!({
            "jobId": id, "type": "scheduleUpdateTwin", "queryCondition": "*",
            "startTime": "2999-01-01T00:00:00Z", "updateTwin": {"tags": {"t": id}}}))
        .unwrap()
    };
    assert_eq!(
        client.create_job(&later("a")).await.unwrap().status,
        JobStatus::Queued
    );
    client.create_job(&later("b")).await.unwrap();
    let e = client.create_job(&later("c")).await.unwrap_err();
    assert!(matches!(e, HubError::TooManyActiveJobs { .. }), "{e:?}");
    assert!(e.is_throttled());
    let e = client.create_job(&later("a")).await.unwrap_err();
    assert!(
        matches!(&e, HubError::JobAlreadyExists { job_id } if job_id == "a"),
        "{e:?}"
    );
    let e = client.get_job("zz").await.unwrap_err();
    assert!(
        matches!(&e, HubError::JobNotFound { job_id } if job_id == "zz"),
        "{e:?}"
    );

    // paging: one job a page, the token in x-ms-continuation and in the body
    let first = client
        .query_jobs(&JobFilter::new(), &PageRequest::new().size(1))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    let next = first.continuation.clone().unwrap();
    let second = client
        .query_jobs(
            &JobFilter::new(),
            &PageRequest::new().size(1).continuation(next),
        )
        .await
        .unwrap();
    assert_eq!(second.items[0].job_id, "b");
    assert_eq!(second.continuation, None);

    let paused = client.pause_job("a").await.unwrap();
    assert_eq!(paused.status_message.as_deref(), Some("paused"));
    let resumed = client.resume_job("a").await.unwrap();
    assert_eq!(resumed.status_message, None);
    let cancelled = client.cancel_job("a").await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    client.cancel_job("b").await.unwrap();
    // the cap counts active jobs only
    let now = JobRequest::from_json(&json!({
        "jobId": "m", "type": "scheduleDeviceMethod", "queryCondition": "*",
        "cloudToDeviceMethod": {"methodName": "ping", "payload": 7}}))
    .unwrap();
    client.create_job(&now).await.unwrap();
    let job = loop {
        let j = client.get_job("m").await.unwrap();
        if !j.status.is_active() {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.job_type, JobType::ScheduleDeviceMethod);
    let recs = client.device_jobs("m", &PageRequest::new()).await.unwrap();
    assert_eq!(recs.items.len(), 1);
    assert_eq!(
        recs.items[0]
            .outcome
            .device_method_response
            .as_ref()
            .unwrap()
            .payload,
        json!({"echo": 7})
    );
    let cancelled = client
        .query_jobs(
            &JobFilter::new().status(JobStatus::Cancelled),
            &PageRequest::new(),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.items.len(), 2);
}
