use serde_json::{json, Value};

use super::*;
use crate::clock::Timestamp;
use crate::job::DeviceJobStatistics;

fn rule(condition: &str) -> Result<AlertRule, AlertRuleError> {
    AlertRule::from_json(&json!({
        "id": "j-42-failures",
        "condition": condition,
        "scope": {"job": "j-42"},
        "threshold": {"percent": 2},
        "severity": "critical",
    }))
}

fn stats() -> DeviceJobStatistics {
    DeviceJobStatistics {
        device_count: 100,
        failed_count: 3,
        succeeded_count: 80,
        running_count: 7,
        pending_count: 6,
        canceled_count: 4,
    }
}

fn counted(condition: &str) -> u64 {
    let r = rule(condition).unwrap();
    let Scope::Job(id) = &r.scope else {
        panic!("not a job scope")
    };
    let c = JobCounter::new(&r.condition, id).unwrap();
    let counts = c.counts(Some(&stats()));
    assert_eq!(counts.scope, 100, "{condition}");
    counts.matching
}

#[test]
fn each_status_bucket_is_decided_once_and_the_matching_ones_summed() {
    assert_eq!(counted("status = 'failed'"), 3);
    assert_eq!(counted("devices.jobs.status = 'failed'"), 3);
    assert_eq!(counted("STATUS = 'completed'"), 80);
    assert_eq!(counted("status IN ['failed', 'canceled']"), 7);
    assert_eq!(counted("status NIN ['completed']"), 20);
    assert_eq!(counted("status != 'completed' AND status != 'running'"), 13);
    assert_eq!(counted("status IN ['pending', 'scheduled']"), 6);
    assert_eq!(counted("NOT (status = 'failed')"), 97);
    assert_eq!(counted("jobId = 'j-42' AND status = 'failed'"), 3);
    // another job's records are not this job's
    assert_eq!(counted("jobId = 'j-43' AND status = 'failed'"), 0);
    assert_eq!(counted("jobId = 'j-42'"), 100);
    assert_eq!(counted("IS_DEFINED(status)"), 100);
}

#[test]
fn a_job_condition_naming_another_field_is_refused_naming_condition() {
    let cases = [
        ("deviceId = 'd1'", "\"deviceId\""),
        (
            "status = 'failed' AND tags.ring = 'canary'",
            "\"tags.ring\"",
        ),
        (
            "outcome.deviceMethodResponse.status = 500",
            "\"outcome.deviceMethodResponse.status\"",
        ),
        ("properties.reported.update.state = 'failed'", "properties"),
        ("status = jobId", "comparisons of record fields"),
        ("LOWER(status) = 'failed'", "device job records"),
        ("status = 'pending'", "pending from scheduled"),
        ("status != 'scheduled'", "pending from scheduled"),
    ];
    for (condition, says) in cases {
        let e = rule(condition).unwrap_err();
        assert_eq!(e.field(), "condition", "{condition}: {e}");
        let text = e.to_string();
        assert!(text.contains(says), "{condition}: {text}");
        if says.starts_with('"') {
            assert!(text.contains("only jobId and status"), "{text}");
        }
    }
    // the same conditions are fine for a twin scope
    let twin: Value = json!({"id": "x", "condition": "deviceId = 'd1'",
                             "threshold": {"count": 0}, "severity": "info"});
    assert!(AlertRule::from_json(&twin).is_ok());
}

#[test]
fn a_missing_job_is_an_empty_scope_that_never_exceeds_a_percentage() {
    let mut watch = RuleWatch::new(rule("status = 'failed'").unwrap());
    assert_eq!(watch.job_id(), Some("j-42"));
    let t = Timestamp::from_unix_secs(10);
    assert_eq!(watch.observe_job(None, t), None);
    assert_eq!(watch.counts(), Counts::default());
    // the job appears, queued: no devices yet
    let empty = DeviceJobStatistics::default();
    assert_eq!(watch.observe_job(Some(&empty), t), None);
    // 2 of 100 is not more than 2%
    let mut s = DeviceJobStatistics {
        device_count: 100,
        failed_count: 2,
        pending_count: 98,
        ..DeviceJobStatistics::default()
    };
    assert_eq!(watch.observe_job(Some(&s), t), None);
    s.failed_count = 3;
    s.pending_count = 97;
    let up = watch.observe_job(Some(&s), t);
    assert!(
        matches!(
            up,
            Some(Transition::Raised {
                counts: Counts {
                    matching: 3,
                    scope: 100
                },
                ..
            })
        ),
        "{up:?}"
    );
    // twins are not looked at for a job scope
    let twin: crate::twin::Twin = serde_json::from_value(json!({"deviceId": "d1"})).unwrap();
    watch.count(&twin.device_id, Some(&twin), true);
    assert_eq!(
        watch.counts(),
        Counts {
            matching: 3,
            scope: 100
        }
    );
    // the job is deleted: the scope empties and the alert clears
    let down = watch.observe_job(None, t);
    assert!(matches!(down, Some(Transition::Cleared { .. })), "{down:?}");
}

#[test]
fn a_twin_scoped_watch_ignores_job_statistics() {
    let r = AlertRule::from_json(&json!({"id": "x", "condition": "status = 'disabled'",
                                         "threshold": {"count": 0}, "severity": "info"}))
    .unwrap();
    let mut watch = RuleWatch::new(r);
    assert_eq!(watch.job_id(), None);
    assert_eq!(
        watch.observe_job(Some(&stats()), Timestamp::from_unix_secs(1)),
        None
    );
    assert_eq!(watch.counts(), Counts::default());
}
