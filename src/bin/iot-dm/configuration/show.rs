//! How configurations print: key/value lists and a metrics table for people, IoT Hub's JSON
//! for scripts.

use iot_dm::core::configuration::{Configuration, QueriesTestResult, RolloutProgress};
use serde_json::Value;

use crate::error::CliResult;
use crate::output::Out;

/// Every count of a configuration, system metrics first, by name, then its rollout's.
pub fn counts(cfg: &Configuration) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = cfg
        .system_metrics
        .results
        .iter()
        .chain(cfg.metrics.results.iter())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if let Some(r) = &cfg.rollout_status {
        all.extend(
            rollout_counts(r)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
    }
    all
}

fn rollout_counts(r: &RolloutProgress) -> [(&'static str, u64); 6] {
    [
        ("admitted", r.admitted),
        ("pending", r.pending),
        ("waitingForWindow", r.waiting_for_window),
        ("gated", r.gated),
        ("verifying", r.verifying),
        ("timedOut", r.timed_out),
    ]
}

/// The rollout table: its state, then each count.
fn rollout_table(out: &mut Out<'_>, r: &RolloutProgress) -> CliResult {
    let mut rows = vec![vec!["state".to_string(), r.state.clone()]];
    rows.extend(
        rollout_counts(r)
            .iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()]),
    );
    if r.utc_fallback > 0 {
        rows.push(vec!["utcFallback".into(), r.utc_fallback.to_string()]);
    }
    if let Some(reason) = &r.abort_reason {
        rows.push(vec!["abortReason".into(), reason.clone()]);
    }
    out.table(&["ROLLOUT", "VALUE"], &rows)
}

/// The metrics table: every system and custom metric with its count and query.
fn metrics_table(out: &mut Out<'_>, cfg: &Configuration) -> CliResult {
    let mut rows = Vec::new();
    for (kind, m) in [("system", &cfg.system_metrics), ("custom", &cfg.metrics)] {
        for (name, query) in &m.queries {
            rows.push(vec![
                name.clone(),
                kind.to_string(),
                m.results.get(name).map(u64::to_string).unwrap_or_default(),
                query.clone(),
            ]);
        }
    }
    out.table(&["METRIC", "KIND", "COUNT", "QUERY"], &rows)
}

/// One configuration.
pub fn configuration(out: &mut Out<'_>, cfg: &Configuration) -> CliResult {
    if out.json {
        return out.json_value(&cfg.to_json());
    }
    let labels: Vec<String> = cfg.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let content: Vec<String> = cfg
        .content
        .paths()
        .iter()
        .map(|(p, v)| format!("properties.desired.{} = {v}", p.join(".")))
        .collect();
    out.fields(&[
        ("id", cfg.id.clone()),
        ("target", cfg.target_condition.clone()),
        ("priority", cfg.priority.to_string()),
        ("labels", labels.join(", ")),
        ("content", content.join("; ")),
        ("created", cfg.created_time_utc.to_string()),
        ("updated", cfg.last_updated_time_utc.to_string()),
        ("etag", cfg.etag.clone()),
    ])?;
    out.line("")?;
    metrics_table(out, cfg)?;
    if let Some(r) = &cfg.rollout_status {
        out.line("")?;
        rollout_table(out, r)?;
    }
    Ok(())
}

/// What `show --watch` prints when the counts change.
pub fn watch_line(out: &mut Out<'_>, cfg: &Configuration) -> CliResult {
    if out.json {
        return out.json_value(&serde_json::json!({
            "id": cfg.id,
            "systemMetrics": {"results": cfg.system_metrics.results},
            "metrics": {"results": cfg.metrics.results},
            "rolloutStatus": cfg.rollout_status.as_ref().map(RolloutProgress::to_value),
        }));
    }
    let text: Vec<String> = counts(cfg)
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    out.line(format!("{}: {}", cfg.id, text.join(", ")))
}

/// Configurations as a table.
pub fn list(out: &mut Out<'_>, all: &[Configuration]) -> CliResult {
    if out.json {
        let v: Vec<Value> = all.iter().map(Configuration::to_json).collect();
        return out.json_value(&v);
    }
    let count = |c: &Configuration, name: &str| {
        c.system_metrics
            .results
            .get(name)
            .map(u64::to_string)
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.priority.to_string(),
                c.target_condition.clone(),
                count(c, "targetedCount"),
                count(c, "appliedCount"),
            ]
        })
        .collect();
    out.table(&["ID", "PRIORITY", "TARGET", "TARGETED", "APPLIED"], &rows)
}

/// The result of `configuration test`.
pub fn test_result(out: &mut Out<'_>, r: &QueriesTestResult) -> CliResult {
    if out.json {
        return out.json_value(r);
    }
    let ok = |e: &str| {
        if e.is_empty() {
            "ok".to_string()
        } else {
            e.to_string()
        }
    };
    let mut rows = vec![vec![
        "targetCondition".to_string(),
        ok(&r.target_condition_error),
    ]];
    for (name, e) in &r.custom_metric_query_errors {
        rows.push(vec![format!("metric {name}"), ok(e)]);
    }
    out.table(&["QUERY", "RESULT"], &rows)
}
