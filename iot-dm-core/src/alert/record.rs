//! The alert record the hub keeps in its history.

use serde_json::{json, Value};

use super::{AlertRule, Counts, Severity};
use crate::clock::Timestamp;

/// Whether an alert is still raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertState {
    /// Raised and not cleared.
    Active,
    /// Cleared.
    Cleared,
}

impl AlertState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Active => "active",
            AlertState::Cleared => "cleared",
        }
    }

    /// The state a wire spelling names.
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "active" => Some(AlertState::Active),
            "cleared" => Some(AlertState::Cleared),
            _ => None,
        }
    }
}

/// One alert: raised by a rule, maybe cleared, maybe acknowledged.
///
/// ```
/// use iot_dm_core::alert::{Alert, AlertRule, AlertState, Counts};
/// use iot_dm_core::clock::Timestamp;
/// use serde_json::json;
///
/// let rule = AlertRule::from_json(&json!({
///     "id": "offline", "condition": "connectionState = 'Disconnected'",
///     "threshold": {"count": 10}, "severity": "warning",
/// }))?;
/// let at = Timestamp::from_unix_secs(60);
/// let mut alert = Alert::raised("offline-1", &rule, at, Counts { matching: 11, scope: 50 });
/// assert_eq!(alert.state(), AlertState::Active);
/// assert!(alert.acknowledge("ops@example.com", at));
/// alert.clear(Timestamp::from_unix_secs(120), Counts { matching: 2, scope: 50 });
/// assert_eq!(alert.state(), AlertState::Cleared);
/// assert_eq!(Alert::from_json(&alert.to_json()), Some(alert));
/// # Ok::<(), iot_dm_core::alert::AlertRuleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Alert {
    /// The alert's id.
    pub id: String,
    /// The rule that raised it.
    pub rule_id: String,
    /// The rule's severity when it was raised.
    pub severity: Severity,
    /// When it was raised.
    pub raised_at: Timestamp,
    /// The counts when it was raised.
    pub raised_counts: Counts,
    /// When it cleared, and the counts then.
    pub cleared: Option<(Timestamp, Counts)>,
    /// When it was acknowledged, and by whom.
    pub acknowledged: Option<(Timestamp, String)>,
    /// What happened, for an alert the hub raises itself (a rule's alert is described by
    /// its rule).
    pub description: Option<String>,
}

impl Alert {
    /// A new active alert.
    pub fn raised(id: &str, rule: &AlertRule, at: Timestamp, counts: Counts) -> Alert {
        Alert {
            id: id.to_string(),
            rule_id: rule.id.clone(),
            severity: rule.severity,
            raised_at: at,
            raised_counts: counts,
            cleared: None,
            acknowledged: None,
            description: None,
        }
    }

    /// A new active alert the hub raises itself, under `source` (a name no rule can have,
    /// such as `rollout.<configuration>`), saying what happened.
    ///
    /// ```
    /// use iot_dm_core::alert::{Alert, Counts, Severity};
    /// use iot_dm_core::clock::Timestamp;
    /// let a = Alert::raised_by_hub("rollout.fw-1-1", Severity::Critical, "aborted",
    ///     Timestamp::from_unix_secs(5), Counts { matching: 3, scope: 20 });
    /// assert_eq!(a.rule_id, "rollout.fw-1-1");
    /// assert_eq!(Alert::from_json(&a.to_json()), Some(a));
    /// ```
    pub fn raised_by_hub(
        source: &str,
        severity: Severity,
        description: &str,
        at: Timestamp,
        counts: Counts,
    ) -> Alert {
        Alert {
            id: format!("{source}-{}", at.unix_millis()),
            rule_id: source.to_string(),
            severity,
            raised_at: at,
            raised_counts: counts,
            cleared: None,
            acknowledged: None,
            description: Some(description.to_string()),
        }
    }

    /// Whether it is active or cleared.
    pub fn state(&self) -> AlertState {
        if self.cleared.is_some() {
            AlertState::Cleared
        } else {
            AlertState::Active
        }
    }

    /// Clears it (a second clear keeps the first).
    pub fn clear(&mut self, at: Timestamp, counts: Counts) {
        if self.cleared.is_none() {
            self.cleared = Some((at, counts));
        }
    }

    /// Acknowledges it; `false` when it already was (the first acknowledgement is kept).
    pub fn acknowledge(&mut self, by: &str, at: Timestamp) -> bool {
        if self.acknowledged.is_some() {
            return false;
        }
        self.acknowledged = Some((at, by.to_string()));
        true
    }

    /// The alert as JSON; [`Alert::from_json`] reads it back.
    pub fn to_json(&self) -> Value {
        let counts = |c: Counts| json!({"matching": c.matching, "scope": c.scope});
        let mut v = json!({
            "id": self.id,
            "ruleId": self.rule_id,
            "severity": self.severity.as_str(),
            "state": self.state().as_str(),
            "raisedAt": self.raised_at,
            "raisedCounts": counts(self.raised_counts),
            "clearedAt": self.cleared.as_ref().map(|c| c.0),
            "clearedCounts": self.cleared.as_ref().map(|c| counts(c.1)),
            "acknowledgedAt": self.acknowledged.as_ref().map(|a| a.0),
            "acknowledgedBy": self.acknowledged.as_ref().map(|a| a.1.clone()),
        });
        if let (Some(d), Some(obj)) = (&self.description, v.as_object_mut()) {
            obj.insert("description".into(), json!(d));
        }
        v
    }

    /// Reads an alert written by [`Alert::to_json`]; `None` when it is not one.
    pub fn from_json(v: &Value) -> Option<Alert> {
        let time = |f: &str| -> Option<Timestamp> { v.get(f)?.as_str()?.parse().ok() };
        let counts = |f: &str| -> Option<Counts> {
            let c = v.get(f)?;
            Some(Counts {
                matching: c.get("matching")?.as_u64()?,
                scope: c.get("scope")?.as_u64()?,
            })
        };
        let cleared = match time("clearedAt") {
            None => None,
            Some(at) => Some((at, counts("clearedCounts")?)),
        };
        let acknowledged = match time("acknowledgedAt") {
            None => None,
            Some(at) => Some((at, v.get("acknowledgedBy")?.as_str()?.to_string())),
        };
        Some(Alert {
            id: v.get("id")?.as_str()?.to_string(),
            rule_id: v.get("ruleId")?.as_str()?.to_string(),
            severity: Severity::parse(v.get("severity")?.as_str()?)?,
            raised_at: time("raisedAt")?,
            raised_counts: counts("raisedCounts")?,
            cleared,
            acknowledged,
            description: v
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}
