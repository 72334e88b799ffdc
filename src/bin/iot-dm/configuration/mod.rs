//! `iot-dm configuration ...`: IoT Hub's automatic device configurations (desired properties
//! for every device a target selects, by priority), with their metrics.

pub mod args;
mod show;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use iot_dm::core::configuration::{Configuration, QueriesTest};
use iot_dm::service::api::ServiceApi;
use iot_dm::service::HubError;

use crate::error::{CliError, CliResult};
use crate::input::json_object_arg;
use crate::output::Out;
use args::{
    ConfigurationCommand, ConfigurationCreateArgs, ConfigurationFields, ConfigurationShowArgs,
    ConfigurationUpdateArgs,
};

/// Runs a `configuration` subcommand.
pub async fn run(
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    command: ConfigurationCommand,
) -> CliResult {
    match command {
        ConfigurationCommand::Create(a) => {
            let cfg = create_request(&a)?;
            let stored = api.put_configuration(&cfg, None).await?;
            show::configuration(out, &stored)
        }
        ConfigurationCommand::Show(a) => show_or_watch(api, out, &a).await,
        ConfigurationCommand::List(a) => {
            let all = api.list_configurations(a.top).await?;
            show::list(out, &all)
        }
        ConfigurationCommand::Update(a) => update(api, out, &a).await,
        ConfigurationCommand::Delete(a) => {
            api.delete_configuration(&a.id, a.etag.as_deref()).await?;
            if out.json {
                out.json_value(&json!({"deleted": a.id}))
            } else {
                out.line(format!("deleted configuration {}", a.id))
            }
        }
        ConfigurationCommand::Pause(a) => {
            let cfg = api.pause_configuration(&a.id).await?;
            show::configuration(out, &cfg)
        }
        ConfigurationCommand::Resume(a) => {
            let cfg = api.resume_configuration(&a.id).await?;
            show::configuration(out, &cfg)
        }
        ConfigurationCommand::Test(a) => {
            let metrics = pairs("--metric", &a.metrics)?;
            let test = QueriesTest::new(a.target.clone(), metrics.into_iter().collect());
            let result = api.test_configuration_queries(&test).await?;
            show::test_result(out, &result)
        }
    }
}

/// `NAME=VALUE` arguments, in order.
fn pairs(flag: &str, items: &[String]) -> CliResult<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| CliError::usage(format!("{flag} {item:?}: expected NAME=VALUE")))
        })
        .collect()
}

fn parsed(v: &Value) -> CliResult<Configuration> {
    Configuration::from_json(v).map_err(|e| CliError::from(HubError::from(e)))
}

/// Applies the flags to a configuration's JSON: the target and priority replace, labels and
/// metrics are added (or replace those of the same name).
fn apply_fields(v: &mut Value, f: &ConfigurationFields) -> CliResult {
    if let Some(t) = &f.target {
        v["targetCondition"] = json!(t);
    }
    if let Some(p) = f.priority {
        v["priority"] = json!(p);
    }
    let labels = pairs("--label", &f.labels)?;
    if !labels.is_empty() {
        let mut m = object_of(v["labels"].take());
        for (k, x) in labels {
            m.insert(k, json!(x));
        }
        v["labels"] = Value::Object(m);
    }
    let metrics = pairs("--metric", &f.metrics)?;
    if !metrics.is_empty() {
        let mut m = object_of(v["metrics"].take());
        let mut queries = object_of(m.remove("queries").unwrap_or_default());
        for (k, q) in metrics {
            queries.insert(k, json!(q));
        }
        m.insert("queries".into(), Value::Object(queries));
        v["metrics"] = Value::Object(m);
    }
    if let Some(p) = &f.rollout_policy {
        v["rolloutPolicy"] = json_object_arg("--rollout-policy", p)?;
    }
    Ok(())
}

/// `v` as an object; anything else (absent, `null`) as an empty one.
fn object_of(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The configuration `configuration create` sends.
pub fn create_request(a: &ConfigurationCreateArgs) -> CliResult<Configuration> {
    let mut v = match &a.file {
        Some(f) => json_object_arg("--file", f)?,
        None => json!({}),
    };
    v["id"] = json!(a.id);
    if let Some(c) = &a.content {
        v["content"] = json!({"deviceContent": json_object_arg("--content", c)?});
    }
    if v.get("content").is_none() {
        return Err(CliError::usage(
            "--content (or a --file with content) is required: {\"properties.desired.<path>\": value}",
        ));
    }
    if v.get("targetCondition").is_none() && a.fields.target.is_none() {
        return Err(CliError::usage(
            "--target is required (a condition such as tags.site = 'north', or * for every device)",
        ));
    }
    apply_fields(&mut v, &a.fields)?;
    parsed(&v)
}

/// The configuration `configuration update` sends, from the one the hub has.
pub fn update_request(
    current: &Configuration,
    a: &ConfigurationUpdateArgs,
) -> CliResult<Configuration> {
    let mut v = current.to_json();
    if a.replace {
        v["labels"] = json!({});
        v["metrics"] = json!({"queries": {}});
    }
    apply_fields(&mut v, &a.fields)?;
    parsed(&v)
}

async fn update(api: &dyn ServiceApi, out: &mut Out<'_>, a: &ConfigurationUpdateArgs) -> CliResult {
    let current = api.get_configuration(&a.id).await?;
    let next = update_request(&current, a)?;
    let etag = a.etag.clone().unwrap_or_else(|| current.etag.clone());
    let stored = api.put_configuration(&next, Some(&etag)).await?;
    show::configuration(out, &stored)
}

async fn show_or_watch(
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    a: &ConfigurationShowArgs,
) -> CliResult {
    let cfg = api.get_configuration(&a.id).await?;
    show::configuration(out, &cfg)?;
    if !a.watch {
        return Ok(());
    }
    let every = Duration::from_millis(a.interval_ms.max(50));
    let until = a
        .watch_timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut last = show::counts(&cfg);
    loop {
        out.flush()?;
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        tokio::time::sleep(every).await;
        let cfg = api.get_configuration(&a.id).await?;
        let now = show::counts(&cfg);
        if now != last {
            show::watch_line(out, &cfg)?;
            last = now;
        }
    }
}
