//! The `rolloutPolicy` object of a job: its JSON form, defaults, limits and validation.

use serde::{Deserialize, Serialize};

use super::rate::RateRule;
use super::window::Window;
use crate::query::{Condition, QueryError};

/// The largest rate, in devices per minute.
pub const MAX_RATE_PER_MINUTE: u64 = 1_000_000;
/// The largest number of retries of one kind.
pub const MAX_RETRIES: u64 = 10;
/// The largest in-progress or success timeout, in seconds (7 days).
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;
/// The success timeout when `successCondition` is set and `successTimeoutSeconds` is not.
pub const DEFAULT_SUCCESS_TIMEOUT_SECONDS: u64 = 300;
/// The twin path the device's IANA time zone is read from when `timeZonePath` is absent.
pub const DEFAULT_TIME_ZONE_PATH: &str = "tags.location.timezone";
/// The largest number of abort criteria or maintenance windows.
pub const MAX_LIST_LEN: usize = 16;

/// How a rollout proceeds: the optional `rolloutPolicy` object of a job.
///
/// Every field is optional. An empty policy (`{}`) behaves like an IoT Hub job: every device
/// may start at once, no abort, no timeout but the job's deadline, no retries, no window, no
/// gate, and "done" is what the caller reports.
///
/// ```
/// use iot_dm_core::rollout::RolloutPolicy;
/// let p: RolloutPolicy = serde_json::from_value(serde_json::json!({
///     "rate": {"baseRatePerMinute": 10, "incrementFactor": 2.0,
///              "rateIncreaseCriteria": {"numberOfSucceededDevices": 50}, "maxPerMinute": 200},
///     "abort": {"criteria": [{"failureType": "any", "thresholdPercentage": 10, "minFinishedDevices": 20}]},
///     "timeout": {"inProgressTimeoutSeconds": 600},
///     "retries": {"failed": 2, "timedOut": 1},
///     "maintenanceWindows": [{"daysOfWeek": ["sat", "sun"], "startTime": "02:00", "durationMinutes": 180},
///                            {"cron": "30 1 * * 1-5", "durationMinutes": 60}],
///     "gate": "properties.reported.battery.level > 30 AND properties.reported.inUse = false",
///     "successCondition": "properties.reported.firmware.version = '2.0'",
///     "pauseAfterDevices": 10
/// }))?;
/// p.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutPolicy {
    /// How fast devices start. Absent: no limit (the caller's own `max` per poll applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RatePolicy>,
    /// When the rollout aborts. Absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortPolicy>,
    /// When a started device times out. Absent: only the deadline ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutPolicy>,
    /// How often a failed or timed-out device is tried again. Absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// Recurring windows, in the device's local time, when a device may start; a device may
    /// start when any window is open. Empty (the default): always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance_windows: Vec<WindowPolicy>,
    /// The twin path of the device's IANA time zone name (`tags...`, `properties.reported...`
    /// or `properties.desired...`). Default [`DEFAULT_TIME_ZONE_PATH`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone_path: Option<String>,
    /// A query condition a device must satisfy when its turn comes (the context gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// A query condition that must hold after the device reports done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// How long after "done" the success condition may take to hold. Default
    /// [`DEFAULT_SUCCESS_TIMEOUT_SECONDS`]; only with `successCondition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_timeout_seconds: Option<u64>,
    /// The canary: pause by itself once this many devices have started and all of them have
    /// finished, until resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_devices: Option<u64>,
}

/// `rolloutPolicy.rate`: a constant rate (`maxPerMinute` alone) or an exponential ramp
/// (`baseRatePerMinute`, `incrementFactor` and `rateIncreaseCriteria`, capped by
/// `maxPerMinute`, default [`MAX_RATE_PER_MINUTE`]).
///
/// The ramp follows AWS IoT Jobs: the rate starts at the base and is multiplied by the factor
/// each time the criterion count grows by its number again, so base 50, factor 2, every 1000
/// notified devices gives 50, 100, 200, 400, ... per minute. The new rate applies at once,
/// within the minute the count is reached.
///
/// Exactly: a start spends a token from a bucket of one minute's worth (the current rate), and
/// the token comes back 60 s after that start. So in any interval `[a, a + 60 s)` at most the
/// rate's number of devices start, and a full bucket allows at most one minute's worth at
/// once. Starts within the same second share one record whose tokens come back 60 s after the
/// latest of them: never early, at most a second late.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RatePolicy {
    /// The constant rate, or the ramp's cap: 1..=1000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u64>,
    /// The ramp's first rate: 1..=1000000, at most `maxPerMinute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_rate_per_minute: Option<u64>,
    /// The ramp's multiplier: more than 1, at most 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment_factor: Option<f64>,
    /// When the ramp steps up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_increase_criteria: Option<RateIncreaseCriteria>,
}

/// `rolloutPolicy.rate.rateIncreaseCriteria`: exactly one of the two counts, each 1..=1000000.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateIncreaseCriteria {
    /// Step up each time this many more devices have been started (retries count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_notified_devices: Option<u64>,
    /// Step up each time this many more devices have succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_succeeded_devices: Option<u64>,
}

/// `rolloutPolicy.abort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortPolicy {
    /// The rollout aborts when any of these holds (at most 16).
    #[serde(default)]
    pub criteria: Vec<AbortCriterion>,
}

/// One abort criterion: it holds once at least `minFinishedDevices` devices have finished and
/// `failures of failureType * 100 >= thresholdPercentage * finished`.
///
/// "Finished" counts devices in a final state (succeeded, failed, timed out); a device that
/// will be retried has not finished yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortCriterion {
    /// Which failures count.
    pub failure_type: FailureType,
    /// 0..=100.
    pub threshold_percentage: f64,
    /// At least 1.
    pub min_finished_devices: u64,
}

/// Which failures an abort criterion counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureType {
    /// Devices that ended `failed`.
    Failed,
    /// Devices that ended `timedOut`.
    TimedOut,
    /// Both.
    Any,
}

/// `rolloutPolicy.timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutPolicy {
    /// A started device without an outcome after this many seconds times out: 1..=604800.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_timeout_seconds: Option<u64>,
}

/// `rolloutPolicy.retries`: how many more attempts a device gets, 0..=10 each (default 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after a failure.
    #[serde(default)]
    pub failed: u64,
    /// Retries after a timeout.
    #[serde(default)]
    pub timed_out: u64,
}

/// One recurring maintenance window: either `daysOfWeek` + `startTime`, or `cron`; with
/// `durationMinutes` (1..=1440) of elapsed time from each opening.
///
/// `cron` has the five fields `minute hour day-of-month month day-of-week` (0-59, 0-23, 1-31,
/// 1-12, 0-7 with 0 and 7 Sunday); each field is `*`, a number, a range `a-b`, a step `*/n` or
/// `a-b/n`, or a list of those joined by `,`. As in cron, when both day fields are restricted a
/// day matches if either does. Local times that do not exist (a spring-forward gap) open at the
/// same offset before the gap, i.e. later by the gap's length; repeated ones open at the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowPolicy {
    /// Day names, `mon` .. `sun` (any case, or full names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_of_week: Option<Vec<String>>,
    /// Local opening time `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// A five-field cron expression for the openings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// How long each opening lasts.
    pub duration_minutes: u64,
}

/// A policy that breaks a rule. Each variant names the field path, such as
/// `rolloutPolicy.rate.maxPerMinute`. The message text is not API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A number outside its range.
    #[error("{field} must be {limit}")]
    OutOfRange {
        /// The field path.
        field: String,
        /// The allowed range, e.g. `1..=1000000`.
        limit: &'static str,
    },
    /// A field that another one requires.
    #[error("{field} is required {context}")]
    Missing {
        /// The field path.
        field: String,
        /// Why it is required.
        context: &'static str,
    },
    /// Fields that cannot be used together.
    #[error("{field}: {reason}")]
    Conflict {
        /// The field path.
        field: String,
        /// Which fields clash.
        reason: &'static str,
    },
    /// A query condition that does not parse.
    #[error("{field} is not a valid condition: {source}")]
    Condition {
        /// The field path.
        field: String,
        /// The parse error.
        source: QueryError,
    },
    /// A value of the wrong shape (a day name, a time, a cron field, a twin path).
    #[error("{field} {value:?} is invalid: {reason}")]
    Invalid {
        /// The field path.
        field: String,
        /// The rejected text.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

impl PolicyError {
    /// The field path the error is about, e.g. `rolloutPolicy.rate.maxPerMinute`.
    pub fn field(&self) -> &str {
        match self {
            PolicyError::OutOfRange { field, .. }
            | PolicyError::Missing { field, .. }
            | PolicyError::Conflict { field, .. }
            | PolicyError::Condition { field, .. }
            | PolicyError::Invalid { field, .. } => field,
        }
    }
}

pub(crate) fn out_of_range(field: impl Into<String>, limit: &'static str) -> PolicyError {
    PolicyError::OutOfRange {
        field: field.into(),
        limit,
    }
}

/// Where a twin value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TwinPath {
    Tags(Vec<String>),
    Reported(Vec<String>),
    Desired(Vec<String>),
}

impl TwinPath {
    fn parse(field: &str, text: &str) -> Result<TwinPath, PolicyError> {
        let segs: Vec<String> = text.split('.').map(str::to_string).collect();
        let invalid = |reason: &str| PolicyError::Invalid {
            field: field.to_string(),
            value: text.to_string(),
            reason: reason.to_string(),
        };
        if segs.iter().any(String::is_empty) {
            return Err(invalid("empty path segment"));
        }
        match segs.as_slice() {
            [root, rest @ ..] if root == "tags" && !rest.is_empty() => {
                Ok(TwinPath::Tags(rest.to_vec()))
            }
            [p, s, rest @ ..] if p == "properties" && !rest.is_empty() => match s.as_str() {
                "reported" => Ok(TwinPath::Reported(rest.to_vec())),
                "desired" => Ok(TwinPath::Desired(rest.to_vec())),
                _ => Err(invalid(
                    "expected properties.reported or properties.desired",
                )),
            },
            _ => Err(invalid(
                "expected tags.<path>, properties.reported.<path> or properties.desired.<path>",
            )),
        }
    }

    /// The string at this path of `twin`, if there is one.
    pub(crate) fn read<'t>(&self, twin: &'t crate::twin::Twin) -> Option<&'t str> {
        let node = match self {
            TwinPath::Tags(p) => twin.tags().get_path(p),
            TwinPath::Reported(p) => twin.reported().doc().get_path(p),
            TwinPath::Desired(p) => twin.desired().doc().get_path(p),
        }?;
        match node.value() {
            crate::doc::ValueRef::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A validated policy, ready for the planner.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub rate: Option<RateRule>,
    pub abort: Vec<AbortCriterion>,
    pub in_progress_timeout: Option<u64>,
    pub retries_failed: u8,
    pub retries_timed_out: u8,
    pub windows: Vec<Window>,
    pub tz_path: TwinPath,
    pub gate: Option<Condition>,
    pub success: Option<(Condition, u64)>,
    pub pause_after: Option<u64>,
}

fn condition(field: &str, text: &Option<String>) -> Result<Option<Condition>, PolicyError> {
    text.as_deref()
        .map(|t| {
            Condition::parse(t).map_err(|source| PolicyError::Condition {
                field: field.to_string(),
                source,
            })
        })
        .transpose()
}

pub(crate) fn in_range(
    field: &str,
    v: u64,
    lo: u64,
    hi: u64,
    limit: &'static str,
) -> Result<u64, PolicyError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(out_of_range(field, limit))
    }
}

impl RolloutPolicy {
    /// Checks every rule; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.compile().map(|_| ())
    }

    pub(crate) fn compile(&self) -> Result<Rules, PolicyError> {
        const P: &str = "rolloutPolicy";
        let rate = self.rate.as_ref().map(RatePolicy::compile).transpose()?;
        let criteria = self.abort.as_ref().map_or(&[][..], |a| &a.criteria[..]);
        if criteria.len() > MAX_LIST_LEN {
            return Err(out_of_range(
                format!("{P}.abort.criteria"),
                "at most 16 criteria",
            ));
        }
        for (i, c) in criteria.iter().enumerate() {
            let f = format!("{P}.abort.criteria[{i}]");
            let t = c.threshold_percentage;
            if !(t.is_finite() && (0.0..=100.0).contains(&t)) {
                return Err(out_of_range(format!("{f}.thresholdPercentage"), "0..=100"));
            }
            if c.min_finished_devices == 0 {
                return Err(out_of_range(
                    format!("{f}.minFinishedDevices"),
                    "at least 1",
                ));
            }
        }
        let in_progress_timeout = self
            .timeout
            .as_ref()
            .and_then(|t| t.in_progress_timeout_seconds)
            .map(|s| {
                let f = format!("{P}.timeout.inProgressTimeoutSeconds");
                in_range(&f, s, 1, MAX_TIMEOUT_SECONDS, "1..=604800")
            })
            .transpose()?;
        let retries = self.retries.clone().unwrap_or_default();
        let retry = |name: &str, n: u64| {
            let f = format!("{P}.retries.{name}");
            in_range(&f, n, 0, MAX_RETRIES, "0..=10").map(|n| n as u8)
        };
        let retries_failed = retry("failed", retries.failed)?;
        let retries_timed_out = retry("timedOut", retries.timed_out)?;
        if self.maintenance_windows.len() > MAX_LIST_LEN {
            return Err(out_of_range(
                format!("{P}.maintenanceWindows"),
                "at most 16 windows",
            ));
        }
        let windows = self
            .maintenance_windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window::compile(&format!("{P}.maintenanceWindows[{i}]"), w))
            .collect::<Result<Vec<_>, _>>()?;
        let tz_path = TwinPath::parse(
            &format!("{P}.timeZonePath"),
            self.time_zone_path
                .as_deref()
                .unwrap_or(DEFAULT_TIME_ZONE_PATH),
        )?;
        let gate = condition(&format!("{P}.gate"), &self.gate)?;
        let success_cond = condition(&format!("{P}.successCondition"), &self.success_condition)?;
        let success_timeout = self
            .success_timeout_seconds
            .map(|s| {
                let f = format!("{P}.successTimeoutSeconds");
                in_range(&f, s, 1, MAX_TIMEOUT_SECONDS, "1..=604800")
            })
            .transpose()?;
        let success = match (success_cond, success_timeout) {
            (Some(c), t) => Some((c, t.unwrap_or(DEFAULT_SUCCESS_TIMEOUT_SECONDS))),
            (None, Some(_)) => {
                return Err(PolicyError::Missing {
                    field: format!("{P}.successCondition"),
                    context: "when successTimeoutSeconds is given",
                })
            }
            (None, None) => None,
        };
        let pause_after = self
            .pause_after_devices
            .map(|n| {
                in_range(
                    &format!("{P}.pauseAfterDevices"),
                    n,
                    1,
                    u64::from(u32::MAX),
                    "1..=4294967295",
                )
            })
            .transpose()?;
        Ok(Rules {
            rate,
            abort: criteria.to_vec(),
            in_progress_timeout,
            retries_failed,
            retries_timed_out,
            windows,
            tz_path,
            gate,
            success,
            pause_after,
        })
    }
}
