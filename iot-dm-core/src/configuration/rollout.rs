//! `rolloutPolicy` on a configuration (ours, beyond IoT Hub): the jobs' rollout policy,
//! applied to the twins a configuration targets, plus abort criteria over its custom metrics.
//!
//! A configuration with a policy does not write its content to every twin it targets at once.
//! A twin it targets waits (its status is `targeted`, and whatever applied before stays) until
//! the policy admits it: at the policy's `rate`, inside the twin's maintenance window in its
//! own time zone, and once its `gate` holds. From then on the configuration competes for the
//! twin as any configuration does (priority, then age). A `successCondition` makes an admitted
//! twin count as succeeded only once it holds, and as timed out when it has not held within
//! `successTimeoutSeconds`; the jobs' abort criteria (`failureType`) count those.
//!
//! An abort criterion may instead name a custom metric (`{"metric": "failed",
//! "thresholdPercentage": 5, "minAppliedDevices": 20}`): it holds when more than that
//! percentage of the twins the configuration is applied to match the metric's query, once at
//! least `minAppliedDevices` are. A criterion that holds pauses the configuration (twins
//! already admitted keep the content) and raises an alert, until an operator resumes it.
//!
//! `retries` and `timeout` are refused: writing a configuration's content does not fail and
//! does not stay in progress.
//!
//! ```
//! use iot_dm_core::configuration::Configuration;
//! use serde_json::json;
//!
//! let cfg = Configuration::from_json(&json!({
//!     "id": "fw-2-1", "targetCondition": "tags.model = 'x'", "priority": 10,
//!     "content": {"deviceContent": {"properties.desired.firmware": {"version": "2.1"}}},
//!     "metrics": {"queries": {"failed":
//!         "SELECT deviceId FROM devices WHERE properties.reported.update.state = 'failed'"}},
//!     "rolloutPolicy": {
//!         "rate": {"maxPerMinute": 100},
//!         "gate": "properties.reported.battery > 30",
//!         "abort": {"criteria": [{"metric": "failed", "thresholdPercentage": 5, "minAppliedDevices": 20}]},
//!     },
//! }))?;
//! let rollout = cfg.rollout.as_ref().unwrap();
//! assert_eq!(rollout.metric_aborts[0].metric, "failed");
//! // 2 of 20 applied twins failed: 10% > 5%
//! assert!(rollout.metric_aborts[0].holds(2, 20));
//! assert!(!rollout.metric_aborts[0].holds(2, 19));
//! # Ok::<(), iot_dm_core::configuration::ConfigurationError>(())
//! ```

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::parse::invalid;
use super::ConfigurationError;
use crate::rollout::{RolloutPolicy, MAX_LIST_LEN};

/// A configuration's `rolloutPolicy`: see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConfigurationRollout {
    /// The jobs' policy: rate, maintenance windows, gate, success condition, canary, and the
    /// abort criteria by `failureType`.
    pub policy: RolloutPolicy,
    /// The abort criteria over custom metrics.
    pub metric_aborts: Vec<MetricAbort>,
}

/// An abort criterion over a custom metric.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricAbort {
    /// The custom metric (a key of `metrics.queries`).
    pub metric: String,
    /// 0..=100: the criterion holds above this share of the applied twins.
    pub threshold_percentage: f64,
    /// At least 1: the criterion is not checked before this many twins are applied.
    pub min_applied_devices: u64,
}

impl MetricAbort {
    /// Whether the criterion holds with `matching` twins matching the metric among `applied`
    /// twins the configuration is applied to.
    pub fn holds(&self, matching: u64, applied: u64) -> bool {
        applied >= self.min_applied_devices
            && (matching as f64) * 100.0 > self.threshold_percentage * (applied as f64)
    }

    fn to_value(&self) -> Value {
        json!({
            "metric": self.metric,
            "thresholdPercentage": self.threshold_percentage,
            "minAppliedDevices": self.min_applied_devices,
        })
    }
}

impl ConfigurationRollout {
    /// The wire form: the policy with the metric criteria among `abort.criteria`.
    pub fn to_value(&self) -> Value {
        let mut v = serde_json::to_value(&self.policy).unwrap_or_else(|_| json!({}));
        if !self.metric_aborts.is_empty() {
            if let Some(obj) = v.as_object_mut() {
                let abort = obj
                    .entry("abort")
                    .or_insert_with(|| json!({"criteria": []}));
                if let Some(list) = abort.as_object_mut().and_then(|a| {
                    a.entry("criteria")
                        .or_insert_with(|| json!([]))
                        .as_array_mut()
                }) {
                    list.extend(self.metric_aborts.iter().map(MetricAbort::to_value));
                }
            }
        }
        v
    }
}

const FIELD: &str = "rolloutPolicy";

/// Reads `rolloutPolicy`; `metrics` are the configuration's custom metric queries.
pub(super) fn parse(
    v: Option<&Value>,
    metrics: &BTreeMap<String, String>,
) -> Result<Option<ConfigurationRollout>, ConfigurationError> {
    let v = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(FIELD, format!("expected an object, got {v}")))?;
    for refused in ["retries", "timeout"] {
        if obj.contains_key(refused) {
            return Err(invalid(
                &format!("{FIELD}.{refused}"),
                "writing a configuration's content neither fails nor stays in progress; \
                 retries and in-progress timeouts are for jobs",
            ));
        }
    }
    let mut rest: Map<String, Value> = obj.clone();
    let mut metric_aborts = Vec::new();
    if let Some(abort) = rest.get_mut("abort").and_then(Value::as_object_mut) {
        if let Some(criteria) = abort.get_mut("criteria").and_then(Value::as_array_mut) {
            if criteria.len() > MAX_LIST_LEN {
                return Err(invalid(
                    &format!("{FIELD}.abort.criteria"),
                    format!("{} criteria, the limit is {MAX_LIST_LEN}", criteria.len()),
                ));
            }
            let mut kept = Vec::new();
            for (i, c) in criteria.drain(..).enumerate() {
                if c.get("metric").is_some() {
                    metric_aborts.push(metric_abort(i, &c, metrics)?);
                } else {
                    kept.push(c);
                }
            }
            *criteria = kept;
        }
    }
    let policy: RolloutPolicy =
        serde_json::from_value(Value::Object(rest)).map_err(|e| invalid(FIELD, e.to_string()))?;
    policy.validate()?;
    Ok(Some(ConfigurationRollout {
        policy,
        metric_aborts,
    }))
}

fn metric_abort(
    i: usize,
    c: &Value,
    metrics: &BTreeMap<String, String>,
) -> Result<MetricAbort, ConfigurationError> {
    let f = format!("{FIELD}.abort.criteria[{i}]");
    let obj = c
        .as_object()
        .ok_or_else(|| invalid(&f, format!("expected an object, got {c}")))?;
    if let Some(other) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "metric" | "thresholdPercentage" | "minAppliedDevices"
        )
    }) {
        return Err(invalid(
            &format!("{f}.{other}"),
            "a metric criterion has metric, thresholdPercentage and minAppliedDevices",
        ));
    }
    let metric = obj
        .get("metric")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{f}.metric"), "expected a custom metric's name"))?;
    if !metrics.contains_key(metric) {
        return Err(invalid(
            &format!("{f}.metric"),
            format!("{metric:?} is not one of this configuration's metrics.queries"),
        ));
    }
    let threshold_percentage = obj
        .get("thresholdPercentage")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && (0.0..=100.0).contains(t))
        .ok_or_else(|| invalid(&format!("{f}.thresholdPercentage"), "expected 0..=100"))?;
    let min_applied_devices = match obj.get("minAppliedDevices") {
        None => 1,
        Some(n) => n
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid(&format!("{f}.minAppliedDevices"), "expected at least 1"))?,
    };
    Ok(MetricAbort {
        metric: metric.to_string(),
        threshold_percentage,
        min_applied_devices,
    })
}

/// Where a configuration's rollout stands (`rolloutStatus`, filled in by the hub).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct RolloutProgress {
    /// `running`, `paused` (by an operator or the canary) or `aborted` (an abort criterion
    /// held; resuming starts again).
    pub state: String,
    /// Targeted twins admitted: free to receive the content.
    pub admitted: u64,
    /// Targeted twins waiting for their turn (the rate, or the pause).
    pub pending: u64,
    /// Targeted twins waiting for their maintenance window.
    pub waiting_for_window: u64,
    /// Targeted twins whose gate does not hold.
    pub gated: u64,
    /// Admitted twins whose `successCondition` does not hold yet.
    pub verifying: u64,
    /// Admitted twins whose `successCondition` did not hold in time.
    pub timed_out: u64,
    /// Twins whose windows use UTC because their time zone is absent or unknown.
    pub utc_fallback: u64,
    /// Why it aborted, when it did.
    pub abort_reason: Option<String>,
}

impl RolloutProgress {
    /// The wire form.
    pub fn to_value(&self) -> Value {
        let mut v = json!({
            "state": self.state,
            "admittedCount": self.admitted,
            "pendingCount": self.pending,
            "waitingForWindowCount": self.waiting_for_window,
            "gatedCount": self.gated,
            "verifyingCount": self.verifying,
            "timedOutCount": self.timed_out,
            "utcFallbackCount": self.utc_fallback,
        });
        if let (Some(r), Some(obj)) = (&self.abort_reason, v.as_object_mut()) {
            obj.insert("abortReason".into(), json!(r));
        }
        v
    }

    /// Reads the wire form; absent counts are 0.
    pub fn from_value(v: &Value) -> RolloutProgress {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        RolloutProgress {
            state: v
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            admitted: n("admittedCount"),
            pending: n("pendingCount"),
            waiting_for_window: n("waitingForWindowCount"),
            gated: n("gatedCount"),
            verifying: n("verifyingCount"),
            timed_out: n("timedOutCount"),
            utc_fallback: n("utcFallbackCount"),
            abort_reason: v
                .get("abortReason")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}
