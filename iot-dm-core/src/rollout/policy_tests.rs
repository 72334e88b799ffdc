//! Policy validation, the IoT Hub status mapping and damaged saved states.

use serde_json::json;

use super::test_util::*;
use super::*;

#[test]
fn restore_rejects_a_damaged_state() {
    let r = plan(json!({}), 3);
    let mut v = serde_json::to_value(&r).unwrap();
    use base64::Engine as _;
    v["ready"] = json!(base64::engine::general_purpose::STANDARD.encode(9u32.to_le_bytes()));
    let err = serde_json::from_value::<Rollout>(v).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let mut v = serde_json::to_value(&r).unwrap();
    v["format"] = json!(3);
    assert!(serde_json::from_value::<Rollout>(v).is_err());
}

#[test]
fn device_job_status_mapping() {
    use DeviceJobStatus as J;
    use DeviceState as S;
    let cases = [
        (S::Pending, J::Pending),
        (S::WaitingForWindow, J::Scheduled),
        (S::Gated, J::Scheduled),
        (S::Running, J::Running),
        (S::Verifying, J::Running),
        (S::Succeeded, J::Completed),
        (S::Failed, J::Failed),
        (S::TimedOut, J::Failed),
        (S::Canceled, J::Canceled),
    ];
    for (s, j) in cases {
        assert_eq!(s.device_job_status(), j);
        assert_eq!(serde_json::to_value(j).unwrap(), json!(j.as_str()));
    }
}

#[test]
fn validation_errors_name_the_field() {
    let cases = [
        (
            json!({"rate": {"maxPerMinute": 0}}),
            "rolloutPolicy.rate.maxPerMinute must be 1..=1000000",
        ),
        (
            json!({"rate": {}}),
            "rolloutPolicy.rate.maxPerMinute is required",
        ),
        (
            json!({"rate": {"baseRatePerMinute": 5, "incrementFactor": 1.0,
            "rateIncreaseCriteria": {"numberOfNotifiedDevices": 5}}}),
            "rolloutPolicy.rate.incrementFactor must be more than 1",
        ),
        (
            json!({"rate": {"baseRatePerMinute": 5, "incrementFactor": 2}}),
            "rolloutPolicy.rate.rateIncreaseCriteria is required",
        ),
        (
            json!({"rate": {"baseRatePerMinute": 50, "maxPerMinute": 10, "incrementFactor": 2,
            "rateIncreaseCriteria": {"numberOfNotifiedDevices": 5}}}),
            "rolloutPolicy.rate.baseRatePerMinute must be 1..=maxPerMinute",
        ),
        (
            json!({"rate": {"baseRatePerMinute": 5, "incrementFactor": 2, "rateIncreaseCriteria":
            {"numberOfNotifiedDevices": 5, "numberOfSucceededDevices": 5}}}),
            "rolloutPolicy.rate.rateIncreaseCriteria: numberOfNotifiedDevices and",
        ),
        (
            json!({"abort": {"criteria": [{"failureType": "any", "thresholdPercentage": 101,
            "minFinishedDevices": 1}]}}),
            "rolloutPolicy.abort.criteria[0].thresholdPercentage must be 0..=100",
        ),
        (
            json!({"abort": {"criteria": [{"failureType": "any", "thresholdPercentage": 1,
            "minFinishedDevices": 0}]}}),
            "rolloutPolicy.abort.criteria[0].minFinishedDevices must be at least 1",
        ),
        (
            json!({"timeout": {"inProgressTimeoutSeconds": 0}}),
            "rolloutPolicy.timeout.inProgressTimeoutSeconds must be 1..=604800",
        ),
        (
            json!({"retries": {"failed": 11}}),
            "rolloutPolicy.retries.failed must be 0..=10",
        ),
        (
            json!({"retries": {"timedOut": 99}}),
            "rolloutPolicy.retries.timedOut must be 0..=10",
        ),
        (
            json!({"maintenanceWindows": [{"cron": "* * * * *", "durationMinutes": 0}]}),
            "rolloutPolicy.maintenanceWindows[0].durationMinutes must be 1..=1440",
        ),
        (
            json!({"maintenanceWindows": [{"cron": "61 * * * *", "durationMinutes": 5}]}),
            "rolloutPolicy.maintenanceWindows[0].cron \"61 * * * *\" is invalid",
        ),
        (
            json!({"maintenanceWindows": [{"cron": "0 0 31 2 *", "durationMinutes": 5}]}),
            "no month has such a day",
        ),
        (
            json!({"maintenanceWindows": [{"daysOfWeek": ["mon", "funday"], "startTime": "02:00",
            "durationMinutes": 5}]}),
            "rolloutPolicy.maintenanceWindows[0].daysOfWeek \"funday\" is invalid",
        ),
        (
            json!({"maintenanceWindows": [{"daysOfWeek": ["mon"], "startTime": "24:00",
            "durationMinutes": 5}]}),
            "rolloutPolicy.maintenanceWindows[0].startTime \"24:00\" is invalid",
        ),
        (
            json!({"maintenanceWindows": [{"daysOfWeek": ["mon"], "durationMinutes": 5}]}),
            "rolloutPolicy.maintenanceWindows[0].startTime is required",
        ),
        (
            json!({"maintenanceWindows": [{"cron": "* * * * *", "startTime": "01:00",
            "durationMinutes": 5}]}),
            "rolloutPolicy.maintenanceWindows[0]: cron excludes",
        ),
        (
            json!({"timeZonePath": "deviceId"}),
            "rolloutPolicy.timeZonePath \"deviceId\" is invalid",
        ),
        (
            json!({"gate": "battery >"}),
            "rolloutPolicy.gate is not a valid condition",
        ),
        (
            json!({"successCondition": "x = "}),
            "rolloutPolicy.successCondition is not a valid",
        ),
        (
            json!({"successTimeoutSeconds": 5}),
            "rolloutPolicy.successCondition is required",
        ),
        (
            json!({"pauseAfterDevices": 0}),
            "rolloutPolicy.pauseAfterDevices must be",
        ),
    ];
    for (p, want) in cases {
        let err = policy(p.clone()).validate().unwrap_err();
        assert!(err.to_string().contains(want), "{p}: {err}");
        assert!(Rollout::new(policy(p), None, t0()).is_err());
    }
    assert!(serde_json::from_value::<RolloutPolicy>(json!({"rate": {"perMinute": 5}})).is_err());
    // the empty policy and the defaults are valid
    let p = policy(json!({}));
    assert_eq!(p, RolloutPolicy::default());
    assert_eq!(serde_json::to_value(&p).unwrap(), json!({}));
}
