use serde_json::{json, Value};

use super::*;

fn ok(v: Value) -> JobRequest {
    JobRequest::from_json(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn refused(v: Value) -> JobError {
    match JobRequest::from_json(&v) {
        Ok(r) => panic!("accepted {v}: {r:?}"),
        Err(e) => e,
    }
}

fn method_job() -> Value {
    json!({
        "jobId": "m1", "type": "scheduleDeviceMethod", "queryCondition": "*",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": 30}
    })
}

fn twin_job() -> Value {
    json!({
        "jobId": "t1", "type": "scheduleUpdateTwin", "queryCondition": "deviceId = 'd1'",
        "updateTwin": {"properties": {"desired": {"x": 1}}, "etag": "*"}
    })
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = &mut cur[*p];
    }
    cur[path[path.len() - 1]] = value;
    v
}

#[test]
fn python_service_sdk_requests_are_read() {
    // azure-iot-hub 2.x (api-version 2020-09-30): msrest leaves out None members and writes
    // datetimes with milliseconds and Z
    let r = ok(json!({
        "jobId": "job01", "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "testMethod", "payload": {"a": 1},
                                "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 10},
        "queryCondition": "deviceId IN ['d1','d2']",
        "startTime": "2019-05-04T15:53:00.077Z", "maxExecutionTimeInSeconds": 20
    }));
    assert_eq!(
        r.start_time.map(|t| t.to_string()).unwrap(),
        "2019-05-04T15:53:00.077Z"
    );
    assert_eq!(r.max_execution(), std::time::Duration::from_secs(20));
    let m = r.method().unwrap().unwrap();
    assert_eq!(m.name().as_str(), "testMethod");
    assert_eq!(m.payload(), &json!({"a": 1}));
    // a Twin model with an etag, tags and desired properties
    let r = ok(json!({
        "jobId": "job02", "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {"site": "north"},
                       "properties": {"desired": {"test1": "value1"}}},
        "queryCondition": "tags.site = 'north'", "maxExecutionTimeInSeconds": 20
    }));
    let (patch, if_match) = r.twin_patch().unwrap();
    assert_eq!(patch.tags, Some(json!({"site": "north"})));
    assert_eq!(patch.desired, Some(json!({"test1": "value1"})));
    assert_eq!(if_match, None);
}

#[test]
fn node_service_sdk_requests_are_read() {
    // azure-iothub (api-version 2021-04-12) sends startTime null when none is given, leaves
    // out maxExecutionTimeInSeconds, and fills the method's defaults (payload null)
    let r = ok(json!({
        "jobId": "node-job", "type": "scheduleDeviceMethod", "queryCondition": "*",
        "startTime": null,
        "cloudToDeviceMethod": {"methodName": "m", "payload": null, "responseTimeoutInSeconds": 30}
    }));
    assert_eq!(r.start_time, None);
    assert_eq!(r.max_execution_time_in_seconds, None);
    assert_eq!(r.max_execution().as_secs(), DEFAULT_MAX_EXECUTION_SECONDS);
    assert!(r.condition().unwrap().is_none());
    let r = ok(json!({
        "jobId": "node-twin", "type": "scheduleUpdateTwin", "queryCondition": "deviceId = 'x'",
        "startTime": "2026-12-03T10:00:00.000Z",
        "updateTwin": {"etag": "*", "properties": {"desired": {"fw": "2.0"}}}
    }));
    assert!(r.twin_patch().unwrap().0.tags.is_none());
}

#[test]
fn members_serializers_add_to_update_twin_are_tolerated() {
    let r = ok(json!({
        "jobId": "c", "type": "scheduleUpdateTwin", "queryCondition": "*",
        "updateTwin": {"deviceId": null, "moduleId": null, "etag": "\"AAAAAAAAAAE=\"",
                       "version": 3, "status": "enabled", "$metadata": {},
                       "tags": {"a": 1}, "properties": {"desired": {"b": 2}, "reported": {}}}
    }));
    let (patch, if_match) = r.twin_patch().unwrap();
    assert_eq!(patch.tags, Some(json!({"a": 1})));
    assert_eq!(patch.desired, Some(json!({"b": 2})));
    assert_eq!(if_match.as_deref(), Some("AAAAAAAAAAE="));
    // extra top-level members are ignored too
    ok(with(twin_job(), &["extra"], json!(true)));
}

#[test]
fn every_malformed_field_is_named() {
    let cases: Vec<(Value, &str)> = vec![
        (with(method_job(), &["jobId"], json!("")), "jobId"),
        (with(method_job(), &["jobId"], json!("a b")), "jobId"),
        (with(method_job(), &["jobId"], json!("é")), "jobId"),
        (
            with(method_job(), &["jobId"], json!("x".repeat(65))),
            "jobId",
        ),
        (with(method_job(), &["jobId"], json!(7)), "jobId"),
        (with(method_job(), &["jobId"], Value::Null), "jobId"),
        (with(method_job(), &["type"], json!("export")), "type"),
        (with(method_job(), &["type"], Value::Null), "type"),
        (
            with(method_job(), &["queryCondition"], Value::Null),
            "queryCondition",
        ),
        (
            with(method_job(), &["queryCondition"], json!("")),
            "queryCondition",
        ),
        (
            with(
                method_job(),
                &["queryCondition"],
                json!("SELECT * FROM devices"),
            ),
            "queryCondition",
        ),
        (
            with(
                method_job(),
                &["queryCondition"],
                json!("WHERE deviceId = 'a'"),
            ),
            "queryCondition",
        ),
        (
            with(method_job(), &["queryCondition"], json!("deviceId = ")),
            "queryCondition",
        ),
        (
            with(method_job(), &["startTime"], json!("yesterday")),
            "startTime",
        ),
        (with(method_job(), &["startTime"], json!(5)), "startTime"),
        (
            with(method_job(), &["maxExecutionTimeInSeconds"], json!(0)),
            "maxExecutionTimeInSeconds",
        ),
        (
            with(method_job(), &["maxExecutionTimeInSeconds"], json!(-1)),
            "maxExecutionTimeInSeconds",
        ),
        (
            with(method_job(), &["maxExecutionTimeInSeconds"], json!("10")),
            "maxExecutionTimeInSeconds",
        ),
        (
            with(method_job(), &["cloudToDeviceMethod"], Value::Null),
            "cloudToDeviceMethod",
        ),
        (
            with(method_job(), &["cloudToDeviceMethod"], json!(3)),
            "cloudToDeviceMethod",
        ),
        (
            with(
                method_job(),
                &["cloudToDeviceMethod", "methodName"],
                Value::Null,
            ),
            "cloudToDeviceMethod.methodName",
        ),
        (
            with(
                method_job(),
                &["cloudToDeviceMethod", "methodName"],
                json!("a/b"),
            ),
            "cloudToDeviceMethod.methodName",
        ),
        (
            with(
                method_job(),
                &["cloudToDeviceMethod", "responseTimeoutInSeconds"],
                json!(1),
            ),
            "cloudToDeviceMethod.responseTimeoutInSeconds",
        ),
        (
            with(
                method_job(),
                &["cloudToDeviceMethod", "connectTimeoutInSeconds"],
                json!(301),
            ),
            "cloudToDeviceMethod.connectTimeoutInSeconds",
        ),
        (
            with(method_job(), &["updateTwin"], json!({"tags": {}})),
            "updateTwin",
        ),
        (with(twin_job(), &["updateTwin"], Value::Null), "updateTwin"),
        (with(twin_job(), &["updateTwin"], json!([])), "updateTwin"),
        (
            with(twin_job(), &["updateTwin"], json!({"etag": "*"})),
            "updateTwin.tags or updateTwin.properties.desired",
        ),
        (
            with(twin_job(), &["updateTwin", "tags"], json!(1)),
            "updateTwin.tags",
        ),
        (
            with(
                twin_job(),
                &["updateTwin", "properties", "desired"],
                json!("x"),
            ),
            "updateTwin.properties.desired",
        ),
        (
            with(
                twin_job(),
                &["updateTwin", "properties", "reported"],
                json!({"r": 1}),
            ),
            "updateTwin.properties.reported",
        ),
        (
            with(twin_job(), &["updateTwin", "etag"], json!(1)),
            "updateTwin.etag",
        ),
        (
            with(
                twin_job(),
                &["cloudToDeviceMethod"],
                json!({"methodName": "m"}),
            ),
            "cloudToDeviceMethod",
        ),
        (
            with(twin_job(), &["rolloutPolicy"], json!({"bogus": 1})),
            "rolloutPolicy",
        ),
        (
            with(
                twin_job(),
                &["rolloutPolicy"],
                json!({"rate": {"maxPerMinute": 0}}),
            ),
            "rolloutPolicy.rate.maxPerMinute",
        ),
        (json!([1]), "job"),
    ];
    for (body, field) in cases {
        let e = refused(body.clone());
        assert_eq!(e.field(), field, "{body}: {e}");
        assert!(e.to_string().contains(field), "{body}: {e}");
    }
}

#[test]
fn job_ids_follow_iot_hubs_rules() {
    for id in ["a", "job-01", "ABC-def-123", &"x".repeat(64)] {
        validate_job_id(id).unwrap();
    }
    for id in ["", "a_b", "a.b", "a/b", " a", &"x".repeat(65)] {
        assert!(validate_job_id(id).is_err(), "{id:?}");
    }
}

#[test]
fn responses_use_iot_hubs_spellings() {
    let request = ok(method_job());
    let t0 = Timestamp::from_unix_secs(1_700_000_000);
    let mut r = JobResponse::queued(&request, t0);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["status"], "queued");
    assert_eq!(v["type"], "scheduleDeviceMethod");
    assert_eq!(
        v["maxExecutionTimeInSeconds"],
        DEFAULT_MAX_EXECUTION_SECONDS
    );
    assert_eq!(v["startTime"], v["createdTime"]);
    assert!(v.get("endTime").is_none());
    r.status = JobStatus::Cancelled;
    let mut stats = DeviceJobStatistics {
        device_count: 3,
        ..Default::default()
    };
    stats.count(DeviceJobStatus::Completed);
    stats.count(DeviceJobStatus::Failed);
    stats.count(DeviceJobStatus::Scheduled);
    r.device_job_statistics = Some(stats);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["status"], "cancelled");
    assert_eq!(
        v["deviceJobStatistics"],
        json!({"deviceCount": 3, "failedCount": 1, "succeededCount": 1,
               "runningCount": 0, "pendingCount": 1})
    );
    let back: JobResponse = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
    for s in [
        "queued",
        "scheduled",
        "running",
        "completed",
        "failed",
        "cancelled",
    ] {
        assert_eq!(JobStatus::parse(s).unwrap().as_str(), s);
    }
    assert_eq!(JobStatus::parse("canceled"), Some(JobStatus::Cancelled));
    assert_eq!(JobStatus::parse("bogus"), None);
}

#[test]
fn device_job_records_have_the_devices_jobs_shape() {
    let t = Timestamp::from_unix_secs(1_700_000_000);
    let rec = DeviceJob {
        device_id: "d".into(),
        job_id: "j".into(),
        job_type: JobType::ScheduleDeviceMethod,
        status: DeviceJobStatus::Canceled,
        start_time_utc: Some(t),
        end_time_utc: Some(t),
        created_date_time_utc: t,
        last_updated_date_time_utc: t,
        outcome: DeviceJobOutcome {
            device_method_response: Some(DeviceMethodResponse {
                status: 200,
                payload: json!({"ok": true}),
            }),
        },
        error: Some(DeviceJobError {
            code: "DeviceNotOnline".into(),
            description: "Timed out waiting for device to connect".into(),
        }),
    };
    let v = serde_json::to_value(&rec).unwrap();
    for k in [
        "deviceId",
        "jobId",
        "jobType",
        "status",
        "startTimeUtc",
        "endTimeUtc",
        "createdDateTimeUtc",
        "lastUpdatedDateTimeUtc",
    ] {
        assert!(v.get(k).is_some(), "{k} in {v}");
    }
    assert_eq!(v["status"], "canceled");
    assert_eq!(v["outcome"]["deviceMethodResponse"]["status"], 200);
    assert_eq!(v["error"]["code"], "DeviceNotOnline");
    let back: DeviceJob = serde_json::from_value(v).unwrap();
    assert_eq!(back, rec);
    // a twin job's record: deviceMethodResponse is null
    let twin = DeviceJob {
        outcome: DeviceJobOutcome::default(),
        error: None,
        ..rec
    };
    let v = serde_json::to_value(&twin).unwrap();
    assert_eq!(v["outcome"], json!({"deviceMethodResponse": null}));
}

#[test]
fn devices_jobs_conditions() {
    use crate::query::Query;
    let rec = json!({"deviceId": "d", "jobId": "j", "jobType": "scheduleUpdateTwin",
                     "status": "completed", "createdDateTimeUtc": "2016-09-02T00:00:00Z",
                     "outcome": {"deviceMethodResponse": {"status": 200, "payload": null}}});
    let f = |w: &str| {
        DeviceJobFilter::new(
            &Query::parse(&format!("SELECT * FROM devices.jobs WHERE {w}")).unwrap(),
        )
    };
    let yes = |w: &str| assert!(f(w).unwrap().matches_json(&rec), "{w}");
    let no = |w: &str| assert!(!f(w).unwrap().matches_json(&rec), "{w}");
    // IoT Hub's documented example
    yes("devices.jobs.deviceId='d' AND devices.jobs.jobType='scheduleUpdateTwin' AND devices.jobs.status='completed' AND devices.jobs.createdTimeUtc > '2016-09-01'");
    yes("status IN ['completed', 'failed']");
    yes("NOT (status = 'failed')");
    yes("devices.jobs.outcome.deviceMethodResponse.status >= 200");
    yes("'j' = devices.jobs.jobId");
    yes("IS_DEFINED(devices.jobs.outcome)");
    no("status = 'failed' OR deviceId = 'x'");
    no("devices.jobs.status NIN ['completed']");
    no("IS_DEFINED(devices.jobs.error)");
    no("devices.jobs.outcome.deviceMethodResponse.status > 'a'");
    assert_eq!(
        f("devices.jobs.jobId = 'j' AND status = 'x'")
            .unwrap()
            .job_id(),
        Some("j")
    );
    assert_eq!(
        f("devices.jobs.jobId = 'j' OR status = 'x'")
            .unwrap()
            .job_id(),
        None
    );
    for w in [
        "jobId = deviceId",
        "LENGTH(jobId) = 1",
        "status = 'a' + 'b'",
    ] {
        let e = f(w).unwrap_err();
        assert_eq!(e.field(), "query", "{w}");
    }
    let twins = DeviceJobFilter::new(&Query::parse("SELECT * FROM devices").unwrap());
    assert!(twins.is_err());
    // no WHERE: every record
    let all = DeviceJobFilter::new(&Query::parse("SELECT * FROM devices.jobs").unwrap()).unwrap();
    assert!(all.matches_json(&rec));
}
