//! `iot-dm alert ...`: fleet alert rules (more than a threshold of a scope's devices
//! matching a condition, for a while) and the alerts they raise, with acknowledgements and a
//! live table of alerts.

pub mod args;
mod show;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use serde_json::json;

use iot_dm::core::alert::{Alert, AlertRule, AlertState};
use iot_dm::core::clock::Timestamp;
use iot_dm::service::api::ServiceApi;
use iot_dm::service::HubError;

use crate::error::{CliError, CliResult};
use crate::input::json_object_arg;
use crate::output::Out;
use args::{AlertCommand, AlertListArgs, RuleCommand, RulePutArgs, StateArg};

/// How a command runs: who an acknowledgement names by default, and whether the live table
/// redraws a terminal in place.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The name `alert ack` records without --by (the connection string's policy).
    pub default_by: &'a str,
    /// Standard output is a terminal: `alert list --watch` clears it before each redraw.
    pub terminal: bool,
}

/// Runs an `alert` subcommand.
pub async fn run(
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    command: AlertCommand,
    cx: Context<'_>,
) -> CliResult {
    match command {
        AlertCommand::Rule(RuleCommand::Put(a)) => {
            let rule = put_request(&a)?;
            let stored = api.put_alert_rule(&rule).await?;
            show::rule(out, &stored)
        }
        AlertCommand::Rule(RuleCommand::Show(a)) => {
            show::rule(out, &api.get_alert_rule(&a.id).await?)
        }
        AlertCommand::Rule(RuleCommand::List) => show::rules(out, &api.list_alert_rules().await?),
        AlertCommand::Rule(RuleCommand::Delete(a)) => {
            api.delete_alert_rule(&a.id).await?;
            if out.json {
                out.json_value(&json!({"deleted": a.id}))
            } else {
                out.line(format!("deleted alert rule {}", a.id))
            }
        }
        AlertCommand::List(a) => list_or_watch(api, out, &a, cx.terminal).await,
        AlertCommand::Show(a) => show::alert(out, &api.get_alert(&a.id).await?),
        AlertCommand::Ack(a) => {
            let by = a.by.as_deref().unwrap_or(cx.default_by);
            show::alert(out, &api.acknowledge_alert(&a.id, by).await?)
        }
    }
}

/// The rule `alert rule put` sends: the --file's JSON (if any), the flags over it.
pub fn put_request(a: &RulePutArgs) -> CliResult<AlertRule> {
    let mut v = match &a.file {
        Some(f) => json_object_arg("--file", f)?,
        None => json!({}),
    };
    v["id"] = json!(a.id);
    if let Some(c) = &a.condition {
        v["condition"] = json!(c);
    }
    if let Some(c) = &a.configuration {
        v["scope"] = json!({ "configuration": c });
    }
    if let Some(j) = &a.job {
        v["scope"] = json!({ "job": j });
    }
    if let Some(n) = a.count {
        v["threshold"] = json!({ "count": n });
    }
    if let Some(p) = a.percent {
        v["threshold"] = json!({ "percent": p });
    }
    if let Some(s) = a.for_seconds {
        v["forSeconds"] = json!(s);
    }
    match a.severity {
        Some(s) => v["severity"] = json!(s.as_str()),
        None if v.get("severity").is_none() => v["severity"] = json!("warning"),
        None => {}
    }
    if let Some(d) = &a.description {
        v["description"] = json!(d);
    }
    if v.get("condition").is_none() {
        return Err(CliError::usage(
            "--condition is required (or a --file with a condition): a WHERE clause without WHERE, such as properties.reported.update.state = 'failed'",
        ));
    }
    if v.get("threshold").is_none() {
        return Err(CliError::usage(
            "--count N or --percent P is required (or a --file with a threshold)",
        ));
    }
    AlertRule::from_json(&v).map_err(|e| CliError::from(HubError::from(e)))
}

fn state_of(s: Option<StateArg>) -> Option<AlertState> {
    s.map(|s| match s {
        StateArg::Active => AlertState::Active,
        StateArg::Cleared => AlertState::Cleared,
    })
}

/// Draws the live table once: on a terminal in place of the last one, else after it.
fn redraw(out: &mut Out<'_>, alerts: &[Alert], terminal: bool) -> CliResult {
    if out.json {
        return show::alerts(out, alerts);
    }
    if terminal {
        // home the cursor and clear the screen
        out.line("\x1b[H\x1b[2J")?;
    } else {
        out.line("")?;
    }
    out.line(format!(
        "alerts at {} ({} shown; Ctrl-C to stop)",
        Timestamp::now(),
        alerts.len()
    ))?;
    show::alerts(out, alerts)
}

async fn list_or_watch(
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    a: &AlertListArgs,
    terminal: bool,
) -> CliResult {
    let state = state_of(a.state);
    let mut last = api.list_alerts(state).await?;
    if !a.watch {
        return show::alerts(out, &last);
    }
    redraw(out, &last, terminal)?;
    let every = Duration::from_millis(a.interval_ms.max(50));
    let until = a
        .watch_timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        out.flush()?;
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
        let now = api.list_alerts(state).await?;
        if now != last {
            redraw(out, &now, terminal)?;
            last = now;
        }
    }
}
