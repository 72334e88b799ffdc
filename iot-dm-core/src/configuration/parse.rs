//! Reading a configuration from its JSON, field by field, with an error that names the field.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    Configuration, DesiredPath, DeviceContent, Metrics, MAX_CONFIGURATION_ID_LEN,
    MAX_CUSTOM_METRICS, SCHEMA_VERSION,
};
use crate::clock::Timestamp;
use crate::query::{Collection, Condition, Query, QueryError};
use crate::rollout::PolicyError;

/// Why a configuration is refused. [`ConfigurationError::field`] names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigurationError {
    /// A required field is absent or `null`.
    #[error("{field} is required")]
    Missing {
        /// The field.
        field: String,
    },
    /// A field has a value the hub does not take.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `targetCondition` does not parse (IoT Hub's `400401 InvalidConfigurationTargetCondition`).
    #[error("targetCondition is not a valid condition: {source}")]
    TargetCondition {
        /// The parse error, with its position.
        source: QueryError,
    },
    /// `content` is not what the hub applies (IoT Hub's `400402 InvalidConfigurationContent`).
    #[error("{field} is invalid content: {reason}")]
    Content {
        /// The field (`content.deviceContent`, `content.modulesContent`, ...).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A custom metric query is not valid (IoT Hub's `400404
    /// InvalidConfigurationCustomMetricsQuery`).
    #[error("{field} is not a valid metric query: {reason}")]
    MetricQuery {
        /// The field (`metrics.queries.<name>`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// More custom metrics than [`MAX_CUSTOM_METRICS`].
    #[error("metrics.queries has {count} metrics, the limit is {limit}")]
    TooManyMetrics {
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An update changes the content (IoT Hub's `400403
    /// CannotModifyImmutableConfigurationContent`).
    #[error(
        "the content of configuration {id:?} cannot be changed; create a new configuration instead"
    )]
    ImmutableContent {
        /// The configuration.
        id: String,
    },
    /// `rolloutPolicy` breaks one of the rollout planner's rules.
    #[error(transparent)]
    Rollout(#[from] PolicyError),
    /// An update changes another field that cannot change.
    #[error("{field} cannot be changed")]
    Immutable {
        /// The field.
        field: String,
    },
}

impl ConfigurationError {
    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            ConfigurationError::Missing { field }
            | ConfigurationError::Invalid { field, .. }
            | ConfigurationError::Content { field, .. }
            | ConfigurationError::MetricQuery { field, .. }
            | ConfigurationError::Immutable { field } => field,
            ConfigurationError::TargetCondition { .. } => "targetCondition",
            ConfigurationError::TooManyMetrics { .. } => "metrics.queries",
            ConfigurationError::ImmutableContent { .. } => "content",
            ConfigurationError::Rollout(p) => p.field(),
        }
    }
}

pub(super) fn invalid(field: &str, reason: impl Into<String>) -> ConfigurationError {
    ConfigurationError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn content_err(field: &str, reason: impl Into<String>) -> ConfigurationError {
    ConfigurationError::Content {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Checks a configuration id: 1 to [`MAX_CONFIGURATION_ID_LEN`] lowercase ASCII letters,
/// digits and `-+%_*!'`.
///
/// ```
/// use iot_dm_core::configuration::validate_configuration_id;
/// assert!(validate_configuration_id("chiller-4000x").is_ok());
/// assert!(validate_configuration_id("Chiller").is_err());
/// assert!(validate_configuration_id(&"a".repeat(129)).is_err());
/// ```
pub fn validate_configuration_id(id: &str) -> Result<(), ConfigurationError> {
    check_name("id", "lowercase letters, digits and -+%_*!'", id, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || "-+%_*!'".contains(c)
    })
    .map_err(|reason| invalid("id", reason))
}

fn check_name(
    what: &str,
    allowed: &str,
    name: &str,
    ok: impl Fn(char) -> bool,
) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    let n = name.chars().count();
    if n > MAX_CONFIGURATION_ID_LEN {
        return Err(format!(
            "{n} characters, the limit is {MAX_CONFIGURATION_ID_LEN}"
        ));
    }
    if let Some(c) = name.chars().find(|c| !ok(*c)) {
        return Err(format!("{c:?} is not allowed ({allowed} only)"));
    }
    Ok(())
}

/// Parses a target condition: `*` (every device) gives `None`, anything else must be a
/// `WHERE` condition of the query language.
pub fn parse_target_condition(text: &str) -> Result<Option<Condition>, ConfigurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid(
            "targetCondition",
            "it is empty (use '*' for every device)",
        ));
    }
    if t == "*" {
        return Ok(None);
    }
    Condition::parse(t)
        .map(Some)
        .map_err(|source| ConfigurationError::TargetCondition { source })
}

/// Parses a custom metric query: a non-aggregate `SELECT ... FROM devices [WHERE ...]` without
/// `TOP`; its metric is the number of twins it returns.
pub fn parse_metric_query(name: &str, text: &str) -> Result<Query, ConfigurationError> {
    let field = format!("metrics.queries.{name}");
    let err = |reason: String| ConfigurationError::MetricQuery {
        field: field.clone(),
        reason,
    };
    let q = Query::parse(text).map_err(|e| err(e.to_string()))?;
    if q.collection() != Collection::Devices {
        return Err(err("a metric query reads FROM devices".into()));
    }
    if q.is_aggregate() || !q.statement().group_by.is_empty() {
        return Err(err(
            "a metric counts the twins a query returns: no aggregates or GROUP BY".into(),
        ));
    }
    if q.statement().top.is_some() {
        return Err(err("a metric counts every matching twin: no TOP".into()));
    }
    Ok(q)
}

/// A member that is absent or `null` is `None`.
pub(crate) fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).filter(|x| !x.is_null())
}

/// A string member, absent or `null` as `None`; anything else but a string is refused with
/// `invalid(name, reason)`.
pub(crate) fn string_member_or<E>(
    v: &Value,
    name: &str,
    invalid: impl Fn(&str, String) -> E,
) -> Result<Option<String>, E> {
    match member(v, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(name, format!("expected a string, got {other}"))),
    }
}

fn string_member(v: &Value, name: &str) -> Result<Option<String>, ConfigurationError> {
    string_member_or(v, name, invalid)
}

pub(super) fn configuration(v: &Value) -> Result<Configuration, ConfigurationError> {
    if !v.is_object() {
        return Err(invalid("configuration", "expected a JSON object"));
    }
    let id = string_member(v, "id")?
        .ok_or_else(|| ConfigurationError::Missing { field: "id".into() })?;
    validate_configuration_id(&id)?;
    let schema_version = string_member(v, "schemaVersion")?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| SCHEMA_VERSION.to_string());
    let labels = labels(member(v, "labels"))?;
    let content = content(member(v, "content"))?;
    let target_condition =
        string_member(v, "targetCondition")?.ok_or_else(|| ConfigurationError::Missing {
            field: "targetCondition".into(),
        })?;
    let target = parse_target_condition(&target_condition)?;
    let priority = match member(v, "priority") {
        None => 0,
        Some(p) => p
            .as_i64()
            .filter(|p| (0..=i64::from(i32::MAX)).contains(p))
            .ok_or_else(|| {
                invalid(
                    "priority",
                    format!("{p} is not an integer in 0..={}", i32::MAX),
                )
            })?,
    };
    let (metrics, metric_queries) = metrics(member(v, "metrics"))?;
    let rollout = super::rollout::parse(member(v, "rolloutPolicy"), &metrics.queries)?;
    Ok(Configuration {
        id,
        schema_version,
        labels,
        content,
        target_condition,
        target,
        priority,
        metrics,
        metric_queries,
        rollout,
        rollout_status: None,
        system_metrics: Metrics::default(),
        created_time_utc: Timestamp::EPOCH,
        last_updated_time_utc: Timestamp::EPOCH,
        etag: String::new(),
    })
}

fn labels(v: Option<&Value>) -> Result<BTreeMap<String, String>, ConfigurationError> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("labels", format!("expected an object, got {v}")))?;
    obj.iter()
        .map(|(k, x)| match x {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(invalid(
                &format!("labels.{k}"),
                format!("expected a string, got {other}"),
            )),
        })
        .collect()
}

/// Whether a content member other than `deviceContent` is absent or empty.
fn no_module_content(content: &Value, name: &str) -> Result<(), ConfigurationError> {
    match member(content, name) {
        None => Ok(()),
        Some(Value::Object(m)) if m.is_empty() => Ok(()),
        Some(_) => Err(content_err(
            &format!("content.{name}"),
            "this hub has no modules: only content.deviceContent is applied",
        )),
    }
}

fn content(v: Option<&Value>) -> Result<DeviceContent, ConfigurationError> {
    let v = v.ok_or_else(|| ConfigurationError::Missing {
        field: "content".into(),
    })?;
    if !v.is_object() {
        return Err(content_err(
            "content",
            format!("expected an object, got {v}"),
        ));
    }
    no_module_content(v, "modulesContent")?;
    no_module_content(v, "moduleContent")?;
    let field = "content.deviceContent";
    let raw = match member(v, "deviceContent") {
        None => return Err(content_err(field, "it is missing")),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(content_err(
                field,
                format!("expected an object, got {other}"),
            ))
        }
    };
    if raw.is_empty() {
        return Err(content_err(field, "it sets no property"));
    }
    let mut paths: Vec<(DesiredPath, Value)> = Vec::new();
    for (key, value) in &raw {
        let at = format!("{field}.{key}");
        let rest = key
            .strip_prefix("properties.desired")
            .ok_or_else(|| content_err(&at, "a path starts with properties.desired"))?;
        if rest.is_empty() {
            // the whole desired document: one path per member
            let members = value
                .as_object()
                .ok_or_else(|| content_err(&at, "properties.desired itself takes an object"))?;
            paths.extend(members.iter().map(|(k, x)| (vec![k.clone()], x.clone())));
            continue;
        }
        let rest = rest
            .strip_prefix('.')
            .ok_or_else(|| content_err(&at, "a path starts with properties.desired."))?;
        let path: DesiredPath = rest.split('.').map(str::to_string).collect();
        if let Some(bad) = path
            .iter()
            .find(|s| s.is_empty() || s.starts_with('$') || s.contains(' '))
        {
            return Err(content_err(
                &at,
                format!("the segment {bad:?} is empty, starts with '$' or has a space"),
            ));
        }
        paths.push((path, value.clone()));
    }
    check_overlaps(&paths, field)?;
    Ok(DeviceContent { raw, paths })
}

/// Two paths of which one is the other or lies under it would write the same property twice.
fn check_overlaps(paths: &[(DesiredPath, Value)], field: &str) -> Result<(), ConfigurationError> {
    for (i, (a, _)) in paths.iter().enumerate() {
        for (b, _) in &paths[i + 1..] {
            let n = a.len().min(b.len());
            if a[..n] == b[..n] {
                return Err(content_err(
                    field,
                    format!(
                        "properties.desired.{} and properties.desired.{} overlap",
                        a.join("."),
                        b.join(".")
                    ),
                ));
            }
        }
    }
    Ok(())
}

type ParsedMetrics = (Metrics, Vec<(String, Query)>);

fn metrics(v: Option<&Value>) -> Result<ParsedMetrics, ConfigurationError> {
    let Some(v) = v else {
        return Ok((Metrics::default(), Vec::new()));
    };
    if !v.is_object() {
        return Err(invalid("metrics", format!("expected an object, got {v}")));
    }
    let empty = Map::new();
    let queries = match member(v, "queries") {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(invalid(
                "metrics.queries",
                format!("expected an object, got {other}"),
            ))
        }
    };
    if queries.len() > MAX_CUSTOM_METRICS {
        return Err(ConfigurationError::TooManyMetrics {
            count: queries.len(),
            limit: MAX_CUSTOM_METRICS,
        });
    }
    let mut texts = BTreeMap::new();
    let mut parsed = Vec::new();
    for (name, q) in queries {
        let field = format!("metrics.queries.{name}");
        check_name("metric name", "letters, digits, - and _", name, |c| {
            c.is_ascii_alphanumeric() || c == '-' || c == '_'
        })
        .map_err(|reason| invalid(&field, reason))?;
        let text = q
            .as_str()
            .ok_or_else(|| invalid(&field, format!("expected a query string, got {q}")))?;
        parsed.push((name.clone(), parse_metric_query(name, text)?));
        texts.insert(name.clone(), text.to_string());
    }
    Ok((
        Metrics {
            queries: texts,
            results: BTreeMap::new(),
        },
        parsed,
    ))
}
