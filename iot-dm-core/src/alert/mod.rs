//! Fleet alerts: a rule ([`AlertRule`]) that watches how many twins match a `WHERE`
//! condition, within a scope, and the pure state machine ([`Evaluator`]) that decides when
//! an alert is raised and when it clears. [`RuleWatch`] keeps one rule current twin by twin.
//!
//! A rule holds when more than `threshold` of the scope's devices match its `condition`:
//! more than `n` devices (`{"count": n}`) or more than `p` percent of the scope
//! (`{"percent": p}`). It must hold for `forSeconds` before the alert is raised, and stop
//! holding for `forSeconds` before it clears. The scope is every device, the devices a
//! configuration targets (`{"configuration": id}`) or a job's devices (`{"job": id}`).
//!
//! **Job scopes.** A rule scoped by a job counts the job's devices (its `deviceCount`), and
//! its condition is tested on each device's job record as `devices.jobs` shows it, not on
//! the twin: `{"condition": "status = 'failed'", "scope": {"job": "j-42"}, "threshold":
//! {"percent": 2}}` holds while more than 2% of job j-42's devices failed. The condition may
//! name only `status` and `jobId` (the fields the job's `deviceJobStatistics` keep apart),
//! and is decided once per status against `{"jobId": .., "status": ..}`, the counts of the
//! matching statuses summed ([`JobCounter`]); any other field is refused when the rule is
//! read, naming `condition`. A job that does not exist (yet) is an empty scope, which never
//! exceeds a percentage.
//!
//! ```
//! use iot_dm_core::alert::{AlertRule, Counts, Evaluator, Scope, Transition};
//! use iot_dm_core::clock::Timestamp;
//! use serde_json::json;
//!
//! let rule = AlertRule::from_json(&json!({
//!     "id": "update-failures",
//!     "condition": "properties.reported.update.state = 'failed'",
//!     "scope": {"configuration": "fw-2-1"},
//!     "threshold": {"percent": 5},
//!     "forSeconds": 60,
//!     "severity": "critical",
//!     "description": "more than 5% of the fw-2-1 devices failed their update",
//! }))?;
//! assert_eq!(rule.scope, Scope::Configuration("fw-2-1".into()));
//!
//! let mut ev = Evaluator::new(&rule);
//! let t0 = Timestamp::from_unix_secs(1_000);
//! // 6 of 100 devices failed: the rule holds, the alert waits 60 s
//! assert_eq!(ev.update(Counts { matching: 6, scope: 100 }, t0), None);
//! assert_eq!(ev.wake_at(), Some(Timestamp::from_unix_secs(1_060)));
//! let raised = ev.tick(Timestamp::from_unix_secs(1_060));
//! assert!(matches!(raised, Some(Transition::Raised { .. })));
//! # Ok::<(), iot_dm_core::alert::AlertRuleError>(())
//! ```

mod eval;
mod job;
#[cfg(test)]
mod job_tests;
mod parse;
mod record;
#[cfg(test)]
mod tests;
mod watch;

use std::fmt;

use serde_json::{json, Map, Value};

use crate::query::Condition;

pub use eval::{Counts, Evaluator, Phase, Transition};
pub use job::{JobCounter, JOB_RECORD_FIELDS};
pub use parse::{validate_alert_rule_id, AlertRuleError};
pub use record::{Alert, AlertState};
pub use watch::RuleWatch;

/// The longest rule id, in characters (the configurations' limit).
pub const MAX_ALERT_RULE_ID_LEN: usize = 128;

/// The longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// The longest `forSeconds`: one week.
pub const MAX_FOR_SECONDS: u64 = 7 * 24 * 3600;

/// The most rules a hub keeps by default.
pub const DEFAULT_MAX_ALERT_RULES: usize = 100;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

impl Severity {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The severity a wire spelling names.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which devices a rule counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Every device.
    All,
    /// The devices a configuration targets.
    Configuration(String),
    /// A job's devices.
    Job(String),
}

impl Scope {
    fn to_value(&self) -> Value {
        match self {
            Scope::All => Value::Null,
            Scope::Configuration(id) => json!({ "configuration": id }),
            Scope::Job(id) => json!({ "job": id }),
        }
    }
}

/// When a rule holds, for a matching count and a scope size.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Threshold {
    /// More than this many matching devices.
    Count(u64),
    /// More than this percentage (`0 <= p < 100`) of the scope's devices.
    Percent(f64),
}

impl Threshold {
    /// Whether `counts` exceed the threshold. An empty scope never exceeds a percentage.
    ///
    /// ```
    /// use iot_dm_core::alert::{Counts, Threshold};
    /// assert!(Threshold::Percent(5.0).exceeded(Counts { matching: 6, scope: 100 }));
    /// assert!(!Threshold::Percent(5.0).exceeded(Counts { matching: 5, scope: 100 }));
    /// assert!(Threshold::Count(2).exceeded(Counts { matching: 3, scope: 3 }));
    /// ```
    pub fn exceeded(self, counts: Counts) -> bool {
        match self {
            Threshold::Count(n) => counts.matching > n,
            Threshold::Percent(p) => {
                counts.scope > 0 && (counts.matching as f64) * 100.0 > p * (counts.scope as f64)
            }
        }
    }

    fn to_value(self) -> Value {
        match self {
            Threshold::Count(n) => json!({ "count": n }),
            Threshold::Percent(p) => json!({ "percent": p }),
        }
    }
}

/// An alert rule, checked.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AlertRule {
    /// The rule's id (the configurations' naming rules).
    pub id: String,
    /// The condition as given.
    pub condition_text: String,
    /// The condition, parsed.
    pub condition: Condition,
    /// Which devices count.
    pub scope: Scope,
    /// When the rule holds.
    pub threshold: Threshold,
    /// How long the rule must hold before raising, and fail before clearing.
    pub for_seconds: u64,
    /// How bad the alert is.
    pub severity: Severity,
    /// What the alert means, for people.
    pub description: String,
}

impl AlertRule {
    /// Reads a rule from its JSON, refusing every bad field with an error that names it.
    pub fn from_json(v: &Value) -> Result<AlertRule, AlertRuleError> {
        parse::rule(v)
    }

    /// The rule as JSON; [`AlertRule::from_json`] reads it back.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("condition".into(), json!(self.condition_text));
        let scope = self.scope.to_value();
        if !scope.is_null() {
            m.insert("scope".into(), scope);
        }
        m.insert("threshold".into(), self.threshold.to_value());
        m.insert("forSeconds".into(), json!(self.for_seconds));
        m.insert("severity".into(), json!(self.severity.as_str()));
        m.insert("description".into(), json!(self.description));
        Value::Object(m)
    }
}
