//! Which configuration wins on a twin, and what the twin's desired properties and
//! `configurations` member become.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::{ConfigurationStatus, DesiredPath, DeviceContent};
use crate::clock::Timestamp;

/// A configuration as [`winner`] and [`plan_twin`] see it.
#[derive(Debug, Clone, Copy)]
pub struct Contender<'a> {
    /// The id.
    pub id: &'a str,
    /// The priority: the higher wins.
    pub priority: i64,
    /// When it was created: on equal priority, the newer wins.
    pub created: Timestamp,
    /// What it writes.
    pub content: &'a DeviceContent,
}

impl Contender<'_> {
    /// The order of precedence: priority, then creation time, then the smaller id (so that
    /// the outcome never depends on the order contenders are given in).
    fn precedence(&self, other: &Contender<'_>) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(self.created.cmp(&other.created))
            .then_with(|| other.id.cmp(self.id))
    }
}

/// The configuration that wins among those matching one twin: the highest priority, then the
/// newest, then the smallest id.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::configuration::{winner, Contender, DeviceContent};
/// let content = DeviceContent::default();
/// let c = |id, priority, secs| Contender { id, priority, created: Timestamp::from_unix_secs(secs), content: &content };
/// let w = winner(&[c("old-high", 20, 1), c("new-low", 10, 9), c("new-high", 20, 5)]);
/// assert_eq!(w.map(|w| w.id), Some("new-high"));
/// assert!(winner(&[]).is_none());
/// ```
pub fn winner<'a>(contenders: &[Contender<'a>]) -> Option<Contender<'a>> {
    contenders.iter().copied().max_by(|a, b| a.precedence(b))
}

/// What one twin becomes under the configurations matching it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TwinPlan {
    /// The twin's new `configurations` member: `{"<id>": {"status": "applied" | "targeted"}}`
    /// for every matching configuration.
    pub statuses: Value,
    /// The merge patch to apply to the desired properties; `None` when they stay as they are.
    pub desired: Option<Value>,
    /// The configuration applied afterwards, if any.
    pub applied: Option<String>,
}

/// The configuration a twin's `configurations` member records as applied.
pub fn applied_in(statuses: &Value) -> Option<&str> {
    statuses.as_object()?.iter().find_map(|(id, s)| {
        let status = s.get("status")?.as_str()?;
        (ConfigurationStatus::parse(status) == Some(ConfigurationStatus::Applied))
            .then_some(id.as_str())
    })
}

/// Plans one twin: `statuses` is its `configurations` member, `desired` gives its desired
/// properties (without `$metadata` and `$version`; called only when the applied configuration
/// changes), `matching` the configurations whose target
/// matches it, and `content_of` gives the content of the configuration the twin records as
/// applied (it may have been deleted since: the caller keeps its content until every twin is
/// planned again).
///
/// The winner is applied; the others are `targeted`. When the applied configuration changes,
/// the paths the previous one set are removed and the winner's are written, as one merge
/// patch; when it stays the same, the desired properties are left alone (a back end may have
/// changed them since).
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::configuration::{plan_twin, Configuration};
/// use serde_json::json;
/// let cfg = |id: &str, priority: i64, value: i64| Configuration::from_json(&json!({
///     "id": id, "targetCondition": "*", "priority": priority,
///     "content": {"deviceContent": {"properties.desired.fan": value}},
/// })).map(|c| c.created(Timestamp::EPOCH));
/// let (low, high) = (cfg("low", 1, 10)?, cfg("high", 2, 20)?);
/// let plan = plan_twin(&json!({}), || json!({}), &[low.contender(), high.contender()], |_| None);
/// assert_eq!(plan.desired, Some(json!({"fan": 20})));
/// assert_eq!(plan.statuses, json!({"high": {"status": "applied"}, "low": {"status": "targeted"}}));
/// // "high" is deleted: "low" takes over
/// let again = plan_twin(&plan.statuses, || json!({"fan": 20}), &[low.contender()], |_| Some(&high.content));
/// assert_eq!(again.desired, Some(json!({"fan": 10})));
/// # Ok::<(), iot_dm_core::configuration::ConfigurationError>(())
/// ```
pub fn plan_twin<'a>(
    statuses: &Value,
    desired: impl FnOnce() -> Value,
    matching: &[Contender<'_>],
    content_of: impl FnOnce(&str) -> Option<&'a DeviceContent>,
) -> TwinPlan {
    let win = winner(matching);
    let mut next = Map::new();
    for c in matching {
        let status = if win.is_some_and(|w| w.id == c.id) {
            ConfigurationStatus::Applied
        } else {
            ConfigurationStatus::Targeted
        };
        next.insert(c.id.to_string(), json!({"status": status.as_str()}));
    }
    let previous = applied_in(statuses);
    let change = if previous == win.map(|w| w.id) {
        None
    } else {
        let removed: Vec<&DesiredPath> = previous
            .and_then(content_of)
            .map(|c| c.paths().iter().map(|(p, _)| p).collect())
            .unwrap_or_default();
        let set = win.map(|w| w.content.paths()).unwrap_or_default();
        desired_change(&desired(), &removed, set)
    };
    TwinPlan {
        statuses: Value::Object(next),
        desired: change,
        applied: win.map(|w| w.id.to_string()),
    }
}

/// The merge patch that takes `desired` to: the `remove` paths deleted, then the `set` paths
/// written (a `null` value deletes). `None` when nothing changes.
///
/// ```
/// use iot_dm_core::configuration::desired_change;
/// use serde_json::json;
/// let desired = json!({"a": {"x": 1, "y": 2}, "b": 1});
/// let patch = desired_change(&desired, &[&vec!["a".into()]], &[(vec!["a".into(), "x".into()], json!(5))]);
/// // `a` is replaced by `{"x": 5}`: `y` goes
/// assert_eq!(patch, Some(json!({"a": {"x": 5, "y": null}})));
/// assert_eq!(desired_change(&desired, &[], &[(vec!["b".into()], json!(1))]), None);
/// ```
pub fn desired_change(
    desired: &Value,
    remove: &[&DesiredPath],
    set: &[(DesiredPath, Value)],
) -> Option<Value> {
    let empty = Map::new();
    let before = desired.as_object().unwrap_or(&empty);
    let mut after = before.clone();
    for path in remove {
        remove_at(&mut after, path);
    }
    for (path, value) in set {
        set_at(&mut after, path, value);
    }
    let patch = diff(before, &after);
    (!patch.is_empty()).then_some(Value::Object(patch))
}

fn remove_at(doc: &mut Map<String, Value>, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = doc;
    for seg in parents {
        match at.get_mut(seg) {
            Some(Value::Object(m)) => at = m,
            _ => return,
        }
    }
    at.remove(last);
}

fn set_at(doc: &mut Map<String, Value>, path: &[String], value: &Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = doc;
    for seg in parents {
        let slot = at
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        match slot {
            Value::Object(m) => at = m,
            _ => return,
        }
    }
    match without_nulls(value) {
        Some(v) => {
            at.insert(last.clone(), v);
        }
        None => {
            at.remove(last);
        }
    }
}

/// A value as a document stores it: object members that are `null` are left out (`None` for
/// a `null`).
fn without_nulls(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => Some(Value::Object(
            m.iter()
                .filter_map(|(k, x)| without_nulls(x).map(|x| (k.clone(), x)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// The merge patch from `a` to `b` (neither holds `null`s).
fn diff(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for k in a.keys() {
        if !b.contains_key(k) {
            out.insert(k.clone(), Value::Null);
        }
    }
    for (k, bv) in b {
        match (a.get(k), bv) {
            (Some(av), _) if av == bv => {}
            (Some(Value::Object(ao)), Value::Object(bo)) => {
                out.insert(k.clone(), Value::Object(diff(ao, bo)));
            }
            _ => {
                out.insert(k.clone(), bv.clone());
            }
        }
    }
    out
}
