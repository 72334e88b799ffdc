//! How rules and alerts print: key/value lists and tables for people, the hub's JSON for
//! scripts.

use serde_json::Value;

use iot_dm::core::alert::{Alert, AlertRule, Counts, Scope, Threshold};

use crate::error::CliResult;
use crate::output::Out;

/// Which devices a rule counts, in words.
pub fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::Configuration(id) => format!("configuration {id}"),
        Scope::Job(id) => format!("job {id}"),
        _ => "every device".to_string(),
    }
}

/// When a rule holds, in words.
pub fn threshold_text(t: Threshold) -> String {
    match t {
        Threshold::Count(n) => format!("> {n} devices"),
        Threshold::Percent(p) => format!("> {p}%"),
        _ => String::new(),
    }
}

fn counts_text(c: Counts) -> String {
    format!("{} of {}", c.matching, c.scope)
}

/// One rule.
pub fn rule(out: &mut Out<'_>, r: &AlertRule) -> CliResult {
    if out.json {
        return out.json_value(&r.to_json());
    }
    out.fields(&[
        ("id", r.id.clone()),
        ("condition", r.condition_text.clone()),
        ("scope", scope_text(&r.scope)),
        ("threshold", threshold_text(r.threshold)),
        ("for", format!("{} s", r.for_seconds)),
        ("severity", r.severity.to_string()),
        ("description", r.description.clone()),
    ])
}

/// Rules as a table.
pub fn rules(out: &mut Out<'_>, all: &[AlertRule]) -> CliResult {
    if out.json {
        let v: Vec<Value> = all.iter().map(AlertRule::to_json).collect();
        return out.json_value(&v);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.severity.to_string(),
                scope_text(&r.scope),
                threshold_text(r.threshold),
                format!("{} s", r.for_seconds),
                r.condition_text.clone(),
            ]
        })
        .collect();
    out.table(
        &["ID", "SEVERITY", "SCOPE", "THRESHOLD", "FOR", "CONDITION"],
        &rows,
    )
}

/// One alert.
pub fn alert(out: &mut Out<'_>, a: &Alert) -> CliResult {
    if out.json {
        return out.json_value(&a.to_json());
    }
    let (cleared, cleared_counts) = match a.cleared {
        Some((at, c)) => (at.to_string(), counts_text(c)),
        None => (String::new(), String::new()),
    };
    let acknowledged = match &a.acknowledged {
        Some((at, by)) => format!("{at} by {by}"),
        None => String::new(),
    };
    out.fields(&[
        ("id", a.id.clone()),
        ("rule", a.rule_id.clone()),
        ("severity", a.severity.to_string()),
        ("state", a.state().as_str().to_string()),
        ("raised", a.raised_at.to_string()),
        ("matching", counts_text(a.raised_counts)),
        ("cleared", cleared),
        ("cleared matching", cleared_counts),
        ("acknowledged", acknowledged),
    ])
}

/// Alerts as a table.
pub fn alerts(out: &mut Out<'_>, all: &[Alert]) -> CliResult {
    if out.json {
        let v: Vec<Value> = all.iter().map(Alert::to_json).collect();
        return out.json_value(&v);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.rule_id.clone(),
                a.severity.to_string(),
                a.state().as_str().to_string(),
                a.raised_at.to_string(),
                counts_text(a.raised_counts),
                a.cleared.map(|(at, _)| at.to_string()).unwrap_or_default(),
                a.acknowledged
                    .as_ref()
                    .map(|(_, by)| by.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out.table(
        &[
            "ID",
            "RULE",
            "SEVERITY",
            "STATE",
            "RAISED",
            "MATCHING",
            "CLEARED",
            "ACKNOWLEDGED BY",
        ],
        &rows,
    )
}
