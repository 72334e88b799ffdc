//! The `job` commands against an in-memory hub, and the request built from flags.

use clap::Parser;
use serde_json::json;

use iot_dm::core::job::{JobStatus, JobType};
use iot_dm::service::api::prelude::*;
use iot_dm::service::hub::DeviceSpec;

use super::args::JobCommand;
use super::flags::{flag_of, request, window};
use crate::cli::{Cli, Command};
use crate::test_util::{hub, run};

fn create_args(argv: &[&str]) -> Box<super::args::JobCreateArgs> {
    let mut all = vec!["iot-dm", "job", "create"];
    all.extend_from_slice(argv);
    match Cli::try_parse_from(all).unwrap().command {
        Command::Job(JobCommand::Create(a)) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn flags_make_the_request() {
    let a = create_args(&[
        "fw-2",
        "--query",
        "tags.site = 'north'",
        "--desired",
        r#"{"fw":"2.0"}"#,
        "--etag",
        "*",
        "--max-per-minute",
        "200",
        "--ramp-base",
        "10",
        "--ramp-factor",
        "2",
        "--ramp-every-succeeded",
        "50",
        "--timeout",
        "600",
        "--retries",
        "2",
        "--retries-timed-out",
        "1",
        "--abort-failure-percent",
        "10",
        "--abort-min-devices",
        "20",
        "--window",
        "sat,sun 02:00 3h",
        "--window",
        "30 1 * * 1-5 60",
        "--timezone-path",
        "tags.tz",
        "--gate",
        "properties.reported.battery > 30",
        "--success",
        "properties.reported.fw = '2.0'",
        "--success-timeout",
        "120",
        "--canary",
        "5",
        "--max-execution-time",
        "7200",
        "--start-time",
        "2030-01-01T00:00:00Z",
    ]);
    let r = request(&a).unwrap();
    assert_eq!(r.job_type, JobType::ScheduleUpdateTwin);
    assert_eq!(r.max_execution_time_in_seconds, Some(7200));
    assert_eq!(
        r.update_twin,
        Some(json!({"properties": {"desired": {"fw": "2.0"}}, "etag": "*"}))
    );
    let p = serde_json::to_value(r.rollout_policy.unwrap()).unwrap();
    assert_eq!(
        p,
        json!({
            "rate": {"maxPerMinute": 200, "baseRatePerMinute": 10, "incrementFactor": 2.0,
                     "rateIncreaseCriteria": {"numberOfSucceededDevices": 50}},
            "abort": {"criteria": [{"failureType": "any", "thresholdPercentage": 10.0,
                                    "minFinishedDevices": 20}]},
            "timeout": {"inProgressTimeoutSeconds": 600},
            "retries": {"failed": 2, "timedOut": 1},
            "maintenanceWindows": [
                {"daysOfWeek": ["sat", "sun"], "startTime": "02:00", "durationMinutes": 180},
                {"cron": "30 1 * * 1-5", "durationMinutes": 60}],
            "timeZonePath": "tags.tz",
            "gate": "properties.reported.battery > 30",
            "successCondition": "properties.reported.fw = '2.0'",
            "successTimeoutSeconds": 120,
            "pauseAfterDevices": 5
        })
    );
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.json");
    std::fs::write(
        &path,
        json!({"jobId": "other", "type": "scheduleDeviceMethod", "queryCondition": "*",
               "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"a": 1}},
               "rolloutPolicy": {"rate": {"maxPerMinute": 5}, "gate": "tags.ok = true"}})
        .to_string(),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let r = request(&create_args(&[
        "mine",
        "--file",
        file,
        "--payload",
        r#"{"b":2}"#,
        "--max-per-minute",
        "50",
    ]))
    .unwrap();
    assert_eq!(r.job_id, "mine");
    let m = r.cloud_to_device_method.unwrap();
    assert_eq!(
        (m.method_name.as_str(), m.payload),
        ("reboot", json!({"b": 2}))
    );
    let p = r.rollout_policy.unwrap();
    assert_eq!(p.rate.unwrap().max_per_minute, Some(50));
    assert_eq!(p.gate.as_deref(), Some("tags.ok = true"));
    // --tags turns it into a twin job
    let r = request(&create_args(&[
        "mine",
        "--file",
        file,
        "--tags",
        r#"{"x":1}"#,
    ]))
    .unwrap();
    assert_eq!(r.job_type, JobType::ScheduleUpdateTwin);
    assert!(r.cloud_to_device_method.is_none());
    // a bad member of the file names the file and the field
    std::fs::write(
        &path,
        r#"{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"tags":3}}"#,
    )
    .unwrap();
    let err = request(&create_args(&["j", "--file", file])).unwrap_err();
    assert!(err.to_string().starts_with(file), "{err}");
    assert!(err.to_string().contains("updateTwin.tags"), "{err}");
}

#[test]
fn bad_flags_name_the_flag_and_the_field() {
    let q = ["--query", "*"];
    for (argv, needle) in [
        (
            vec!["--max-per-minute", "0", "--tags", "{}"],
            "--max-per-minute: rolloutPolicy.rate.maxPerMinute",
        ),
        (
            vec!["--method", "reboot", "--response-timeout", "1"],
            "--response-timeout: cloudToDeviceMethod.responseTimeoutInSeconds",
        ),
        (
            vec!["--method", "bad name!"],
            "--method: cloudToDeviceMethod.methodName",
        ),
        (
            vec!["--tags", "{}", "--retries", "11"],
            "--retries: rolloutPolicy.retries.failed",
        ),
        (
            vec!["--tags", "{}", "--abort-failure-percent", "150"],
            "--abort-failure-percent: rolloutPolicy.abort.criteria[0].thresholdPercentage",
        ),
        (
            vec!["--tags", "{}", "--window", "sat 25:00 60"],
            "--window: rolloutPolicy.maintenanceWindows[0].startTime",
        ),
        (
            vec!["--tags", "{}", "--window", "sat 02:00"],
            "--window \"sat 02:00\"",
        ),
        (
            vec!["--tags", "{}", "--gate", "battery >"],
            "--gate: rolloutPolicy.gate",
        ),
        (
            vec!["--tags", "{}", "--success-timeout", "5"],
            "--success: rolloutPolicy.successCondition is required",
        ),
        (
            vec!["--tags", "{}", "--timezone-path", "location"],
            "--timezone-path: rolloutPolicy.timeZonePath",
        ),
        (
            vec!["--tags", "{}", "--canary", "0"],
            "--canary: rolloutPolicy.pauseAfterDevices",
        ),
        (
            vec!["--tags", "{}", "--start-time", "tomorrow"],
            "--start-time: startTime",
        ),
        (
            vec!["--tags", "{}", "--max-execution-time", "0"],
            "--max-execution-time: maxExecutionTimeInSeconds",
        ),
        (vec!["--tags", "[1]"], "--tags must be a JSON object"),
        (vec!["--payload", "{}"], "need --method"),
        (
            vec!["--tags", "{}", "--ramp-factor", "NaN"],
            "--ramp-factor must be a finite number",
        ),
        (vec![], "what should the job do"),
    ] {
        let mut all = vec!["j"];
        all.extend_from_slice(&q);
        all.extend(argv.iter().copied());
        let err = request(&create_args(&all)).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{argv:?}: {err}");
        assert!(err.to_string().contains(needle), "{argv:?}: {err}");
    }
    let err = request(&create_args(&["j", "--tags", "{}"])).unwrap_err();
    assert!(err.to_string().contains("--query is required"), "{err}");
    let err = request(&create_args(&[
        "j",
        "--query",
        "SELECT * FROM devices",
        "--tags",
        "{\"a\":1}",
    ]))
    .unwrap_err();
    assert!(
        err.to_string().starts_with("--query: queryCondition"),
        "{err}"
    );
    let err = request(&create_args(&[
        "bad/id",
        "--query",
        "*",
        "--tags",
        "{\"a\":1}",
    ]))
    .unwrap_err();
    assert!(err.to_string().starts_with("the job id: jobId"), "{err}");
    assert_eq!(
        flag_of("rolloutPolicy.maintenanceWindows[3].cron"),
        Some("--window")
    );
    assert_eq!(
        window("daily 01:30 90m").unwrap()["daysOfWeek"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[tokio::test]
async fn create_show_list_and_devices() {
    let hub = hub().await;
    for id in ["a", "b"] {
        hub.create_device(DeviceSpec::new(id.parse().unwrap()))
            .await
            .unwrap();
    }
    let a = create_args(&[
        "t1",
        "--query",
        "*",
        "--tags",
        r#"{"site":"north"}"#,
        "--wait",
        "--interval-ms",
        "50",
    ]);
    let text = run(false, async |o| super::create(&hub, o, &a).await)
        .await
        .unwrap();
    assert!(text.starts_with("created job t1 (twin update)\n"), "{text}");
    assert!(
        text.contains("job t1 completed: 2 of 2 device(s) succeeded, 0 failed"),
        "{text}"
    );
    let shown = run(false, async |o| {
        super::run(
            &hub,
            o,
            JobCommand::Show(super::args::JobIdArgs {
                job_id: "t1".into(),
            }),
        )
        .await
    })
    .await
    .unwrap();
    assert!(shown.contains("status          completed"), "{shown}");
    assert!(shown.contains("DEVICES  SUCCEEDED"), "{shown}");
    let list = super::args::JobListArgs {
        job_type: Some(super::args::JobTypeArg::Twin),
        status: Some("completed".into()),
    };
    let text = run(false, async |o| super::list(&hub, o, &list).await)
        .await
        .unwrap();
    assert!(text.ends_with("1 job(s)\n"), "{text}");
    let devices = super::args::JobDevicesArgs {
        job_id: "t1".into(),
        status: Some("completed".into()),
    };
    let text = run(false, async |o| super::devices(&hub, o, &devices).await)
        .await
        .unwrap();
    assert!(text.starts_with("DEVICE ID"), "{text}");
    assert!(text.ends_with("2 device(s)\n"), "{text}");
    let job = hub.get_job("t1").await.unwrap();
    assert_eq!(job.status, JobStatus::Completed);
}

#[tokio::test]
async fn lists_page_through_continuations() {
    let hub = hub().await;
    for id in ["a", "b", "c"] {
        hub.create_device(DeviceSpec::new(id.parse().unwrap()))
            .await
            .unwrap();
    }
    for id in ["j1", "j2", "j3"] {
        let a = create_args(&[id, "--query", "*", "--tags", r#"{"x":1}"#]);
        run(true, async |o| super::create(&hub, o, &a).await)
            .await
            .unwrap();
    }
    let filter = iot_dm::service::api::JobFilter::new();
    let jobs = super::all_jobs(&hub, &filter, 1).await.unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, ["j1", "j2", "j3"]);
    let w = super::args::FollowArgs {
        interval_ms: 50,
        wait_timeout: Some(30),
    };
    run(false, async |o| {
        super::wait::follow(&hub, o, "j3", &w).await
    })
    .await
    .unwrap();
    let records = super::all_devices(&hub, "j3", 1).await.unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.device_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn the_bar_shows_what_the_policy_holds_back_by_cause() {
    let job: iot_dm::core::job::JobResponse = serde_json::from_value(json!({
        "jobId": "fw", "type": "scheduleUpdateTwin", "status": "running",
        "deviceJobStatistics": {"deviceCount": 10, "failedCount": 1, "succeededCount": 2,
                                "runningCount": 1, "pendingCount": 6},
        "rolloutStatistics": {"waitingForWindowCount": 3, "gatedCount": 2,
                              "utcFallbackCount": 1}
    }))
    .unwrap();
    assert_eq!(
        super::wait::progress_text(&job),
        "running: 2 succeeded, 1 failed, 1 running, 3 waiting for a window, 2 gated, 1 pending \
         [1 without a readable time zone: windows in UTC]"
    );
}
