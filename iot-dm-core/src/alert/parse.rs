//! Reading an alert rule from its JSON, field by field, with an error that names the field.

use serde_json::Value;

use super::{
    AlertRule, Scope, Severity, Threshold, MAX_ALERT_RULE_ID_LEN, MAX_DESCRIPTION_LEN,
    MAX_FOR_SECONDS,
};
use crate::configuration::parse::{member, string_member_or};
use crate::query::{Condition, QueryError};

/// The members a rule has.
const FIELDS: [&str; 7] = [
    "id",
    "condition",
    "scope",
    "threshold",
    "forSeconds",
    "severity",
    "description",
];

/// Why an alert rule is refused. [`AlertRuleError::field`] names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertRuleError {
    /// A rule must have this field, and it is absent or `null`.
    #[error("{field} is required")]
    Missing {
        /// The field's name (dotted below the rule).
        field: String,
    },
    /// A number or a text is over its limit.
    #[error("{field} is {value}, the limit is {limit}")]
    TooLarge {
        /// The field.
        field: String,
        /// What was given (a number, or a length in characters).
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A field's value is refused.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The field's name (dotted below the rule).
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// `condition` does not parse.
    #[error("condition is not a valid condition: {source}")]
    Condition {
        /// The parse error, with its position.
        source: QueryError,
    },
}

impl AlertRuleError {
    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            AlertRuleError::Missing { field }
            | AlertRuleError::Invalid { field, .. }
            | AlertRuleError::TooLarge { field, .. } => field,
            AlertRuleError::Condition { .. } => "condition",
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> AlertRuleError {
    AlertRuleError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn missing(field: &str) -> AlertRuleError {
    AlertRuleError::Missing {
        field: field.to_string(),
    }
}

/// Checks a rule id with the configurations' rules: 1 to [`MAX_ALERT_RULE_ID_LEN`]
/// lowercase ASCII letters, digits and `-+%_*!'`.
///
/// ```
/// use iot_dm_core::alert::validate_alert_rule_id;
/// assert!(validate_alert_rule_id("update-failures").is_ok());
/// assert!(validate_alert_rule_id("Update").is_err());
/// assert!(validate_alert_rule_id(&"a".repeat(129)).is_err());
/// ```
pub fn validate_alert_rule_id(id: &str) -> Result<(), AlertRuleError> {
    if id.is_empty() {
        return Err(invalid("id", "the id is empty"));
    }
    check_len("id", id, MAX_ALERT_RULE_ID_LEN)?;
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-+%_*!'".contains(c);
    if let Some(c) = id.chars().find(|c| !ok(*c)) {
        return Err(invalid(
            "id",
            format!("{c:?} is not allowed (lowercase letters, digits and -+%_*!' only)"),
        ));
    }
    Ok(())
}

fn string(v: &Value, name: &str) -> Result<Option<String>, AlertRuleError> {
    string_member_or(v, name, invalid)
}

/// Refuses a text longer than `limit` characters.
fn check_len(field: &str, text: &str, limit: usize) -> Result<(), AlertRuleError> {
    let n = text.chars().count();
    if n > limit {
        return Err(AlertRuleError::TooLarge {
            field: field.into(),
            value: n as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

pub(super) fn rule(v: &Value) -> Result<AlertRule, AlertRuleError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("rule", "expected a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            k,
            format!("unknown field; a rule has {}", FIELDS.join(", ")),
        ));
    }
    let id = string(v, "id")?.ok_or_else(|| missing("id"))?;
    validate_alert_rule_id(&id)?;
    let condition_text = string(v, "condition")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| missing("condition"))?;
    let condition = Condition::parse(condition_text.trim())
        .map_err(|source| AlertRuleError::Condition { source })?;
    let scope = scope(member(v, "scope"))?;
    if let Scope::Job(job_id) = &scope {
        super::JobCounter::new(&condition, job_id)?;
    }
    let threshold = threshold(member(v, "threshold").ok_or_else(|| missing("threshold"))?)?;
    let for_seconds = for_seconds(member(v, "forSeconds"))?;
    let severity = match string(v, "severity")? {
        None => return Err(missing("severity")),
        Some(s) => Severity::parse(&s).ok_or_else(|| {
            invalid(
                "severity",
                format!("{s:?} is not one of info, warning, critical"),
            )
        })?,
    };
    let description = string(v, "description")?.unwrap_or_default();
    check_len("description", &description, MAX_DESCRIPTION_LEN)?;
    Ok(AlertRule {
        id,
        condition_text,
        condition,
        scope,
        threshold,
        for_seconds,
        severity,
        description,
    })
}

fn for_seconds(v: Option<&Value>) -> Result<u64, AlertRuleError> {
    let Some(x) = v else {
        return Ok(0);
    };
    let n = x.as_u64().ok_or_else(|| {
        invalid(
            "forSeconds",
            format!("{x} is not a whole number of seconds"),
        )
    })?;
    if n > MAX_FOR_SECONDS {
        return Err(AlertRuleError::TooLarge {
            field: "forSeconds".into(),
            value: n,
            limit: MAX_FOR_SECONDS,
        });
    }
    Ok(n)
}

/// The one member of an object that must have exactly one.
fn only_member<'a>(field: &str, v: &'a Value) -> Result<(&'a str, &'a Value), AlertRuleError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(field, format!("expected an object, got {v}")))?;
    let mut it = obj.iter();
    match (it.next(), it.next()) {
        (Some((k, x)), None) => Ok((k.as_str(), x)),
        _ => Err(invalid(field, "expected an object with exactly one member")),
    }
}

fn scope(v: Option<&Value>) -> Result<Scope, AlertRuleError> {
    let Some(v) = v else {
        return Ok(Scope::All);
    };
    let (kind, x) = only_member("scope", v)?;
    let field = format!("scope.{kind}");
    let ok_id = |x: &Value| -> Result<String, AlertRuleError> {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| invalid(&field, format!("expected an id string, got {x}")))
    };
    match kind {
        "configuration" => {
            let id = ok_id(x)?;
            crate::configuration::validate_configuration_id(&id)
                .map_err(|e| invalid(&field, e.to_string()))?;
            Ok(Scope::Configuration(id))
        }
        "job" => {
            let id = ok_id(x)?;
            crate::job::validate_job_id(&id).map_err(|e| invalid(&field, e.to_string()))?;
            Ok(Scope::Job(id))
        }
        _ => Err(invalid(
            "scope",
            format!("{kind:?} is not a scope (configuration or job)"),
        )),
    }
}

fn threshold(v: &Value) -> Result<Threshold, AlertRuleError> {
    let (kind, x) = only_member("threshold", v)?;
    match kind {
        "count" => x.as_u64().map(Threshold::Count).ok_or_else(|| {
            invalid(
                "threshold.count",
                format!("{x} is not a whole number of devices"),
            )
        }),
        "percent" => x
            .as_f64()
            .filter(|p| (0.0..100.0).contains(p))
            .map(Threshold::Percent)
            .ok_or_else(|| {
                invalid(
                    "threshold.percent",
                    format!("{x} is not a number in 0 <= p < 100"),
                )
            }),
        _ => Err(invalid(
            "threshold",
            format!("{kind:?} is not a threshold (count or percent)"),
        )),
    }
}
