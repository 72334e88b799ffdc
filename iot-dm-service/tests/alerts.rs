//! Fleet alerts end to end over REST on 127.0.0.1: a configuration-scoped percentage rule
//! raised after its duration, acknowledged and cleared on recovery (on a manual clock), a
//! count rule over every device kept across a restart, a job-scoped failure rate raised by a
//! method job whose devices answer errors, refused input, and the `alert` events on the
//! stream (`GET /events`).

#![allow(clippy::unwrap_used)]

mod jobs_support;
mod rest_support;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::configuration::Configuration;
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{DeviceSpec, Hub};

use rest_support::{Served, HOST};

const WRITER: &str = "registryReadWrite";

async fn devices(hub: &Hub, n: usize) {
    for i in 0..n {
        hub.create_device(DeviceSpec::new(format!("d{i}").parse().unwrap()))
            .await
            .unwrap();
    }
}

async fn report(hub: &Hub, range: std::ops::Range<usize>, state: &str) {
    for i in range {
        hub.patch_reported(&format!("d{i}"), &json!({"update": {"state": state}}))
            .await
            .unwrap();
    }
}

/// `GET /alerts?state=...` until `ok` holds (at most 5 s); the alerts then.
async fn alerts_until(s: &Served, state: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..250 {
        let a = s
            .call(
                "registryRead",
                Method::GET,
                &format!("/alerts?state={state}"),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        last = a.json().as_array().cloned().unwrap_or_default();
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("alerts ({state}) never got there: {last:?}")
}

/// Time for the alert task to go round a few times.
async fn a_few_rounds() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn more_than_five_percent_of_a_configurations_devices_failing_raises_then_clears() {
    let clock = ManualClock::new(Timestamp::now());
    let hub = Hub::builder()
        .host_name(HOST)
        .clock(Arc::new(clock.clone()))
        .open()
        .await
        .unwrap();
    let s = Served::start_with(hub, None).await;
    let mut cursor = s.hub.event_stream(None);
    devices(&s.hub, 40).await;
    // the first event's id, to read the stream from over REST at the end
    let Some(iot_dm_service::hub::StreamItem::Event(first)) = cursor.try_next() else {
        panic!("no event recorded")
    };
    let canary = serde_json::from_value(json!({"tags": {"ring": "canary"}})).unwrap();
    for i in 0..20 {
        s.hub
            .update_twin(&format!("d{i}"), &canary, None)
            .await
            .unwrap();
    }
    let cfg = Configuration::from_json(&json!({
        "id": "fw-2-1", "targetCondition": "tags.ring = 'canary'",
        "content": {"deviceContent": {"properties.desired.fw": "2.1"}},
    }))
    .unwrap();
    s.hub.put_configuration(&cfg, None).await.unwrap();
    let rule = json!({
        "condition": "properties.reported.update.state = 'failed'",
        "scope": {"configuration": "fw-2-1"},
        "threshold": {"percent": 5}, "forSeconds": 60, "severity": "critical",
        "description": "the 2.1 rollout fails",
    });
    let put = s
        .call(WRITER, Method::PUT, "/alerts/rules/fw-failures", Some(rule))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put:?}");
    assert_eq!(put.json()["id"], json!("fw-failures"));
    // 20 devices outside the scope fail, and 2 of the 20 inside (10%)
    report(&s.hub, 20..40, "failed").await;
    report(&s.hub, 0..2, "failed").await;
    a_few_rounds().await;
    alerts_until(&s, "all", |a| a.is_empty()).await;
    clock.advance(Duration::from_secs(60));
    let active = alerts_until(&s, "active", |a| a.len() == 1).await;
    let alert = &active[0];
    assert_eq!(alert["ruleId"], json!("fw-failures"));
    assert_eq!(alert["severity"], json!("critical"));
    assert_eq!(alert["raisedCounts"], json!({"matching": 2, "scope": 20}));
    let id = alert["id"].as_str().unwrap().to_string();
    let ack = s
        .call(
            WRITER,
            Method::POST,
            &format!("/alerts/{id}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{ack:?}");
    assert_eq!(ack.json()["acknowledgedBy"], json!(WRITER));
    // recovered, but not yet for 60 s
    report(&s.hub, 0..2, "ok").await;
    a_few_rounds().await;
    alerts_until(&s, "active", |a| a.len() == 1).await;
    clock.advance(Duration::from_secs(60));
    let cleared = alerts_until(&s, "cleared", |a| a.len() == 1).await;
    assert_eq!(cleared[0]["id"], json!(id));
    assert_eq!(
        cleared[0]["clearedCounts"],
        json!({"matching": 0, "scope": 20})
    );
    assert_eq!(cleared[0]["acknowledgedBy"], json!(WRITER));
    let one = s
        .call("registryRead", Method::GET, &format!("/alerts/{id}"), None)
        .await;
    assert_eq!(one.json(), cleared[0]);
    // the stream has the raise, the acknowledgement and the clear, in that order
    let token = s.token("registryRead");
    let last = first.id.to_string();
    let sse = s
        .raw(
            Method::GET,
            &format!("/events?types=alert&timeout=1&{}", rest_support::API),
            &[("authorization", &token), ("last-event-id", &last)],
            "",
        )
        .await;
    assert_eq!(sse.status, StatusCode::OK, "{sse:?}");
    let text = String::from_utf8_lossy(&sse.body).to_string();
    assert_eq!(text.matches("event: alert\n").count(), 3, "{text}");
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    let changes: Vec<&str> = data.iter().map(|d| d["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["raised", "acknowledged", "cleared"], "{text}");
    assert!(data
        .iter()
        .all(|d| d["type"] == json!("alert") && d["alert"]["id"] == json!(id)));
    assert_eq!(data[2]["alert"], cleared[0]);
}

#[tokio::test]
async fn a_count_rule_over_every_device_and_its_alerts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let open = || Hub::builder().host_name(HOST).path(&path).open();
    let s = Served::start_with(open().await.unwrap(), None).await;
    devices(&s.hub, 5).await;
    let rule = json!({
        "id": "many-failed", "condition": "properties.reported.update.state = 'failed'",
        "threshold": {"count": 2}, "severity": "warning",
    });
    let put = s
        .call(WRITER, Method::PUT, "/alerts/rules/many-failed", Some(rule))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put:?}");
    report(&s.hub, 0..2, "failed").await;
    a_few_rounds().await;
    alerts_until(&s, "all", |a| a.is_empty()).await;
    report(&s.hub, 2..3, "failed").await;
    let raised = alerts_until(&s, "active", |a| a.len() == 1).await;
    assert_eq!(
        raised[0]["raisedCounts"],
        json!({"matching": 3, "scope": 5})
    );
    let rules = s
        .call("registryRead", Method::GET, "/alerts/rules", None)
        .await;
    s.hub.shutdown().await.unwrap();
    drop(s);
    let s = Served::start_with(open().await.unwrap(), None).await;
    let again = s
        .call("registryRead", Method::GET, "/alerts/rules", None)
        .await;
    assert_eq!(again.json(), rules.json());
    a_few_rounds().await;
    // the same alert, resumed, not raised twice
    assert_eq!(alerts_until(&s, "all", |a| a.len() == 1).await, raised);
    report(&s.hub, 0..3, "ok").await;
    alerts_until(&s, "cleared", |a| a.len() == 1).await;
    let gone = s
        .call(WRITER, Method::DELETE, "/alerts/rules/many-failed", None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let missing = s
        .call(
            "registryRead",
            Method::GET,
            "/alerts/rules/many-failed",
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, 404_501)
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let s = Served::start().await;
    let good = json!({"condition": "tags.a = 1", "threshold": {"count": 0}, "severity": "info"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("condition", json!("tags.a = ")), "condition"),
        (
            with("threshold", json!({"percent": 150})),
            "threshold.percent",
        ),
        (
            with("threshold", json!({"count": "many"})),
            "threshold.count",
        ),
        (with("forSeconds", json!(-1)), "forSeconds"),
        (with("severity", json!("fatal")), "severity"),
        (
            with("scope", json!({"configuration": "Not Valid"})),
            "scope.configuration",
        ),
        (with("scope", json!({"job": "Not Valid"})), "scope.job"),
        // a job-scoped condition is tested on job records: a twin path is refused
        (
            with("scope", json!({"job": "rollout"})),
            "only jobId and status",
        ),
        (with("description", json!("x".repeat(2000))), "description"),
        (with("colour", json!("red")), "colour"),
        (with("id", json!("other")), "id"),
    ];
    for (body, field) in cases {
        let a = s
            .call(WRITER, Method::PUT, "/alerts/rules/r1", Some(body.clone()))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {a:?}");
        assert!(a.message().contains(field), "{body}: {}", a.message());
    }
    let bad_id = s
        .call(
            WRITER,
            Method::PUT,
            "/alerts/rules/Upper",
            Some(good.clone()),
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST, "{bad_id:?}");
    let state = s
        .call("registryRead", Method::GET, "/alerts?state=open", None)
        .await;
    assert_eq!(state.status, StatusCode::BAD_REQUEST);
    assert!(state.message().contains("state"), "{}", state.message());
    let none = s
        .call("registryRead", Method::GET, "/alerts/nope", None)
        .await;
    assert_eq!((none.status, none.code()), (StatusCode::NOT_FOUND, 404_502));
    let ack = s
        .call(WRITER, Method::POST, "/alerts/nope/acknowledge", None)
        .await;
    assert_eq!(ack.code(), 404_502);
    // a reader may not write
    let read_only = s
        .call("registryRead", Method::PUT, "/alerts/rules/r1", Some(good))
        .await;
    assert_eq!(read_only.status, StatusCode::FORBIDDEN);
    assert!(s.hub.alert_rules().is_empty());
}

#[tokio::test]
async fn a_job_scoped_rule_raises_when_the_jobs_failure_rate_passes_its_percentage() {
    use iot_dm_core::job::JobStatus;
    use jobs_support::{connect_answering, ended, method_job, Calls};

    // devices connect with tokens for the jobs support's host name
    let hub = Hub::builder()
        .host_name(jobs_support::HOST)
        .open()
        .await
        .unwrap();
    let s = Served::start_with(hub, None).await;
    jobs_support::devices(&s.hub, 20, |_| json!({})).await;
    // the rule comes first: its job does not exist yet, an empty scope
    let rule = json!({
        "condition": "status = 'failed'", "scope": {"job": "j-42"},
        "threshold": {"percent": 10}, "severity": "critical",
        "description": "job j-42 failure rate above 10%",
    });
    let put = s
        .call(
            WRITER,
            Method::PUT,
            "/alerts/rules/j-42-failures",
            Some(rule),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put:?}");
    assert_eq!(put.json()["scope"], json!({"job": "j-42"}));
    // a rule of another job's failures, which must stay quiet
    let other = json!({
        "condition": "status = 'failed'", "scope": {"job": "j-43"},
        "threshold": {"count": 0}, "severity": "info",
    });
    let put = s
        .call(
            WRITER,
            Method::PUT,
            "/alerts/rules/j-43-failures",
            Some(other),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put:?}");
    a_few_rounds().await;
    alerts_until(&s, "all", |a| a.is_empty()).await;
    // 16 devices answer 200, 4 answer 500: 20% of the job's devices fail
    let calls = Calls::default();
    for i in 0..20 {
        let status = if i % 5 == 0 { 500 } else { 200 };
        connect_answering(&s.hub, &format!("d{i:02}"), &calls, Some(status)).await;
    }
    s.hub
        .create_job(&method_job("j-42", "*", json!({})))
        .await
        .unwrap();
    let done = ended(&s.hub, "j-42").await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    let stats = done.device_job_statistics.unwrap();
    assert_eq!((stats.device_count, stats.failed_count), (20, 4));
    assert_eq!(calls.total(), 20);
    let active = alerts_until(&s, "active", |a| !a.is_empty()).await;
    assert_eq!(active.len(), 1, "{active:?}");
    let alert = &active[0];
    assert_eq!(alert["ruleId"], json!("j-42-failures"));
    assert_eq!(alert["severity"], json!("critical"));
    // raised as soon as more than 10% had failed: 3 or 4 of the job's 20 devices
    let raised = &alert["raisedCounts"];
    assert_eq!(raised["scope"], json!(20), "{alert}");
    let matching = raised["matching"].as_u64().unwrap();
    assert!((3..=4).contains(&matching), "{alert}");
    a_few_rounds().await;
    // one alert, and none for the other job's rule
    assert_eq!(alerts_until(&s, "all", |a| a.len() == 1).await.len(), 1);
}
