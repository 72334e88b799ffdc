//! IoT Hub's automatic device configurations: the record a back end stores
//! ([`Configuration`]), its checks ([`Configuration::from_json`], [`Configuration::check_update`])
//! and the pure rule that decides, for one twin, which configuration wins and what it writes
//! ([`plan_twin`]).
//!
//! A configuration names a target (`targetCondition`, a `WHERE` clause or `*`), a `priority`
//! and `content.deviceContent`: twin paths `properties.desired.<path>` with the value to write
//! there (`null` removes the property). Every twin the target matches gets the content of the
//! configuration that wins for it: the highest `priority`, then the newest `createdTimeUtc`,
//! then the smallest id. The twin records, per configuration that matches it, `targeted` (a
//! higher one won) or `applied` (its content was written), in its `configurations` member.
//! When the configuration applied to a twin stops being the winner (deleted, re-targeted, or
//! out-ranked), the paths it set are removed from the twin's desired properties and the new
//! winner's content, if any, is written instead.
//!
//! ```
//! use iot_dm_core::clock::Timestamp;
//! use iot_dm_core::configuration::Configuration;
//! use serde_json::json;
//!
//! // what the Python service SDK sends for `create_configuration`
//! let cfg = Configuration::from_json(&json!({
//!     "id": "chiller-settings",
//!     "schemaVersion": "1.0",
//!     "labels": {"HostPlatform": "Linux"},
//!     "content": {"deviceContent": {"properties.desired.chillerWaterSettings": {"temperature": 38}}},
//!     "targetCondition": "tags.location.state = 'Washington'",
//!     "priority": 20,
//!     "metrics": {"queries": {"compliant":
//!         "SELECT deviceId FROM devices WHERE configurations.[[chiller-settings]].status = 'Applied'"}},
//! }))?;
//! assert_eq!(cfg.priority, 20);
//! assert_eq!(cfg.content.paths()[0].0, vec!["chillerWaterSettings".to_string()]);
//! let stored = cfg.created(Timestamp::from_unix_millis(1_700_000_000_000));
//! assert_eq!(stored.to_json()["createdTimeUtc"], json!("2023-11-14T22:13:20.000Z"));
//! # Ok::<(), iot_dm_core::configuration::ConfigurationError>(())
//! ```

mod assign;
pub(crate) mod parse;
mod rollout;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::clock::Timestamp;
use crate::query::{Condition, Query};

pub use assign::{applied_in, desired_change, plan_twin, winner, Contender, TwinPlan};
pub use parse::{
    parse_metric_query, parse_target_condition, validate_configuration_id, ConfigurationError,
};
pub use rollout::{ConfigurationRollout, MetricAbort, RolloutProgress};

/// The longest configuration id and metric name, in characters.
pub const MAX_CONFIGURATION_ID_LEN: usize = 128;

/// The most custom metrics one configuration has (IoT Hub's limit).
pub const MAX_CUSTOM_METRICS: usize = 5;

/// The most configurations a hub keeps by default (IoT Hub's paid tiers).
pub const DEFAULT_MAX_CONFIGURATIONS: usize = 100;

/// The `schemaVersion` a configuration gets when it names none.
pub const SCHEMA_VERSION: &str = "1.0";

/// The system metric counting the twins the target condition matches.
pub const TARGETED_COUNT: &str = "targetedCount";

/// The system metric counting the twins the configuration's content was written to.
pub const APPLIED_COUNT: &str = "appliedCount";

/// Where a configuration stands on one twin (`configurations.[[id]].status`). The wire form is
/// lowercase; queries compare it case-insensitively (`= 'Applied'` matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigurationStatus {
    /// The target matches the twin, but a configuration of higher priority won.
    Targeted,
    /// The configuration's content was written to the twin.
    Applied,
}

impl ConfigurationStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigurationStatus::Targeted => "targeted",
            ConfigurationStatus::Applied => "applied",
        }
    }

    /// The status a spelling names, case-insensitively.
    pub fn parse(s: &str) -> Option<ConfigurationStatus> {
        if s.eq_ignore_ascii_case("targeted") {
            Some(ConfigurationStatus::Targeted)
        } else if s.eq_ignore_ascii_case("applied") {
            Some(ConfigurationStatus::Applied)
        } else {
            None
        }
    }
}

/// A twin path below `properties.desired`, as segments.
pub type DesiredPath = Vec<String>;

/// `content.deviceContent`: the desired-property paths a configuration sets, in key order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceContent {
    /// As given (`properties.desired.<path>` to value), for the wire.
    raw: Map<String, Value>,
    /// Parsed: the path below `properties.desired` and its value.
    paths: Vec<(DesiredPath, Value)>,
}

impl DeviceContent {
    /// The paths and values, in key order.
    pub fn paths(&self) -> &[(DesiredPath, Value)] {
        &self.paths
    }

    /// The content as the wire has it: `{"properties.desired.<path>": value}`.
    pub fn to_value(&self) -> Value {
        Value::Object(self.raw.clone())
    }
}

/// Custom metrics or system metrics: a query per name, and the latest count per name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    /// Name to query text.
    pub queries: BTreeMap<String, String>,
    /// Name to count (filled in by the hub).
    pub results: BTreeMap<String, u64>,
}

impl Metrics {
    fn to_value(&self) -> Value {
        json!({"queries": self.queries, "results": self.results})
    }
}

/// An automatic device configuration. See the [module docs](self).
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::configuration::{Configuration, ConfigurationError};
/// use serde_json::json;
///
/// let v = json!({"id": "fan", "targetCondition": "*",
///                "content": {"deviceContent": {"properties.desired.fan": 1}}});
/// let stored = Configuration::from_json(&v)?.created(Timestamp::from_unix_secs(1));
/// // the priority may change, the content may not
/// let mut higher = v.clone();
/// higher["priority"] = json!(5);
/// let next = stored.updated(Configuration::from_json(&higher)?, Timestamp::from_unix_secs(2))?;
/// assert_eq!((next.priority, next.created_time_utc), (5, stored.created_time_utc));
/// let mut other = v.clone();
/// other["content"] = json!({"deviceContent": {"properties.desired.fan": 2}});
/// let refused = stored.updated(Configuration::from_json(&other)?, Timestamp::from_unix_secs(2));
/// assert!(matches!(refused, Err(ConfigurationError::ImmutableContent { .. })));
/// # Ok::<(), ConfigurationError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Configuration {
    /// The id (immutable): at most [`MAX_CONFIGURATION_ID_LEN`] lowercase letters, digits and
    /// `-+%_*!'`.
    pub id: String,
    /// `schemaVersion` (`1.0` unless given).
    pub schema_version: String,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// `content.deviceContent` (immutable).
    pub content: DeviceContent,
    /// The target condition as given (`*` for every device).
    pub target_condition: String,
    /// The parsed target; `None` for `*`.
    pub target: Option<Condition>,
    /// The priority: the higher wins.
    pub priority: i64,
    /// Custom metrics: at most [`MAX_CUSTOM_METRICS`].
    pub metrics: Metrics,
    /// The parsed custom metric queries, in name order (as in `metrics.queries`).
    pub metric_queries: Vec<(String, Query)>,
    /// `rolloutPolicy` (ours): how the content reaches the twins it targets; `None`: at once.
    /// See [`ConfigurationRollout`].
    pub rollout: Option<ConfigurationRollout>,
    /// `rolloutStatus` (ours, filled in by the hub for a configuration with a rollout policy).
    pub rollout_status: Option<RolloutProgress>,
    /// `targetedCount` and `appliedCount`: the queries are the hub's, the results its counts.
    pub system_metrics: Metrics,
    /// When it was created (set by the hub).
    pub created_time_utc: Timestamp,
    /// When it was last changed (set by the hub).
    pub last_updated_time_utc: Timestamp,
    /// The ETag (set by the hub; changes with every update).
    pub etag: String,
}

impl PartialEq for Configuration {
    fn eq(&self, other: &Configuration) -> bool {
        self.to_json() == other.to_json()
    }
}

impl Configuration {
    /// Parses and checks a configuration as a back end sends it. `createdTimeUtc`,
    /// `lastUpdatedTimeUtc`, `etag`, `systemMetrics` and `metrics.results` are the hub's and
    /// ignored here. Every malformed field is refused with an error naming it.
    pub fn from_json(v: &Value) -> Result<Configuration, ConfigurationError> {
        parse::configuration(v)
    }

    /// Reads a configuration the hub stored with [`Configuration::to_json`] (timestamps,
    /// ETag and metric results kept).
    pub fn from_stored(v: &Value) -> Result<Configuration, ConfigurationError> {
        let mut cfg = parse::configuration(v)?;
        let time = |field: &str| -> Result<Timestamp, ConfigurationError> {
            serde_json::from_value(v.get(field).cloned().unwrap_or(Value::Null))
                .map_err(|e| parse::invalid(field, e.to_string()))
        };
        cfg.created_time_utc = time("createdTimeUtc")?;
        cfg.last_updated_time_utc = time("lastUpdatedTimeUtc")?;
        cfg.etag = v
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        cfg.system_metrics = system_metrics(&cfg);
        cfg.system_metrics.results = results(v.get("systemMetrics"));
        cfg.metrics.results = results(v.get("metrics"));
        cfg.rollout_status = v.get("rolloutStatus").map(RolloutProgress::from_value);
        Ok(cfg)
    }

    /// This configuration as created at `now`: both timestamps `now`, the first ETag, and the
    /// hub's system metric queries.
    pub fn created(mut self, now: Timestamp) -> Configuration {
        self.created_time_utc = now;
        self.last_updated_time_utc = now;
        self.etag = etag_of(now, 1);
        self.system_metrics = system_metrics(&self);
        self
    }

    /// Checks `update` against this stored configuration (the id and the content may not
    /// change) and returns the stored configuration with the mutable fields (labels,
    /// priority, target condition, custom metric queries, rollout policy, schema version) taken from
    /// `update`, stamped `now` with a new ETag.
    pub fn updated(
        &self,
        update: Configuration,
        now: Timestamp,
    ) -> Result<Configuration, ConfigurationError> {
        self.check_update(&update)?;
        let version = etag_version(&self.etag).saturating_add(1);
        let mut next = update;
        next.created_time_utc = self.created_time_utc;
        next.last_updated_time_utc = now;
        next.etag = etag_of(self.created_time_utc, version);
        next.system_metrics = system_metrics(&next);
        next.metrics.results = self
            .metrics
            .results
            .iter()
            .filter(|(k, _)| next.metrics.queries.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        next.system_metrics.results = self.system_metrics.results.clone();
        Ok(next)
    }

    /// Whether `update` may replace this configuration: same id, same content.
    pub fn check_update(&self, update: &Configuration) -> Result<(), ConfigurationError> {
        if update.id != self.id {
            return Err(ConfigurationError::Immutable { field: "id".into() });
        }
        if update.content != self.content {
            return Err(ConfigurationError::ImmutableContent {
                id: self.id.clone(),
            });
        }
        Ok(())
    }

    /// Whether this configuration targets `twin`.
    pub fn targets(&self, twin: &crate::twin::Twin) -> bool {
        self.target.as_ref().is_none_or(|c| c.matches(twin))
    }

    /// The wire form (IoT Hub's `Configuration` JSON, with `rolloutPolicy` when there is one).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "schemaVersion": self.schema_version,
            "labels": self.labels,
            "content": {"deviceContent": self.content.to_value()},
            "targetCondition": self.target_condition,
            "priority": self.priority,
            "metrics": self.metrics.to_value(),
            "systemMetrics": self.system_metrics.to_value(),
            "createdTimeUtc": self.created_time_utc,
            "lastUpdatedTimeUtc": self.last_updated_time_utc,
            "etag": self.etag,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(r) = &self.rollout {
                obj.insert("rolloutPolicy".into(), r.to_value());
            }
            if let Some(s) = &self.rollout_status {
                obj.insert("rolloutStatus".into(), s.to_value());
            }
        }
        v
    }

    /// The contender this configuration is for [`winner`] and [`plan_twin`].
    pub fn contender(&self) -> Contender<'_> {
        Contender {
            id: &self.id,
            priority: self.priority,
            created: self.created_time_utc,
            content: &self.content,
        }
    }
}

/// The `results` member of stored metrics (counts only).
fn results(metrics: Option<&Value>) -> BTreeMap<String, u64> {
    metrics
        .and_then(|m| m.get("results"))
        .and_then(Value::as_object)
        .map(|r| {
            r.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /configurations/testQueries`: a target condition and custom metric queries to check
/// without storing anything.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct QueriesTest {
    /// The target condition to check (`None` or empty: not checked).
    #[serde(default)]
    pub target_condition: Option<String>,
    /// The custom metric queries to check, by name.
    #[serde(default)]
    pub custom_metric_queries: Option<BTreeMap<String, String>>,
}

/// What [`QueriesTest::run`] found: an empty string for a query that is valid.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct QueriesTestResult {
    /// Why the target condition is invalid, or empty.
    #[serde(default)]
    pub target_condition_error: String,
    /// Why each custom metric query is invalid, or empty, by name.
    #[serde(default)]
    pub custom_metric_query_errors: BTreeMap<String, String>,
}

impl QueriesTest {
    /// A test of `target_condition` and `queries`.
    pub fn new(target_condition: Option<String>, queries: BTreeMap<String, String>) -> QueriesTest {
        QueriesTest {
            target_condition,
            custom_metric_queries: Some(queries),
        }
    }

    /// Checks every query with the rules a configuration is created with.
    ///
    /// ```
    /// use iot_dm_core::configuration::QueriesTest;
    /// use std::collections::BTreeMap;
    /// let test = QueriesTest::new(Some("tags.x = ".into()),
    ///     BTreeMap::from([("ok".to_string(), "SELECT deviceId FROM devices".to_string())]));
    /// let result = test.run();
    /// assert!(result.target_condition_error.contains("targetCondition"));
    /// assert_eq!(result.custom_metric_query_errors["ok"], "");
    /// ```
    pub fn run(&self) -> QueriesTestResult {
        let target_condition_error = match self.target_condition.as_deref() {
            Some(t) if !t.trim().is_empty() => parse_target_condition(t)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let custom_metric_query_errors = self
            .custom_metric_queries
            .iter()
            .flatten()
            .map(|(name, q)| {
                let e = parse_metric_query(name, q)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                (name.clone(), e)
            })
            .collect();
        QueriesTestResult {
            target_condition_error,
            custom_metric_query_errors,
        }
    }
}

/// The hub's system metric queries for `cfg`.
fn system_metrics(cfg: &Configuration) -> Metrics {
    let condition = match cfg.target_condition.trim() {
        "*" => String::new(),
        c => format!(" WHERE {c}"),
    };
    let queries = BTreeMap::from([
        (
            TARGETED_COUNT.to_string(),
            format!("SELECT deviceId FROM devices{condition}"),
        ),
        (
            APPLIED_COUNT.to_string(),
            format!(
                "SELECT deviceId FROM devices WHERE configurations.[[{}]].status = 'Applied'",
                cfg.id
            ),
        ),
    ]);
    Metrics {
        queries,
        results: BTreeMap::new(),
    }
}

/// An ETag that differs between two configurations of the same id created at different times,
/// and between two versions of one configuration.
fn etag_of(created: Timestamp, version: u64) -> String {
    use base64::Engine;
    let mut bytes = created.ticks().to_be_bytes().to_vec();
    bytes.extend_from_slice(&version.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn etag_version(etag: &str) -> u64 {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(etag.trim_matches('"'))
        .ok()
        .and_then(|b| b.get(8..16).and_then(|v| v.try_into().ok()))
        .map_or(1, u64::from_be_bytes)
}
