//! `iot-dm events`: the hub's event stream, one line per event (time, type, device, summary),
//! or one JSON object per line with `--json`.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use iot_dm::core::events::{EventTypes, Lost};
use iot_dm::service::client::{EventItem, EventsRequest, ServiceClient, StreamEvent};

use crate::error::{CliError, CliResult};
use crate::output::{clip, Out};

/// `iot-dm events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep reading (reconnecting after a dropped connection) until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only these types, comma-separated (twin.changed, device.connected, device.disconnected,
    /// identity.created, identity.updated, identity.deleted, lifecycle.changed, telemetry,
    /// job.progress).
    #[arg(long, value_name = "TYPES")]
    pub types: Option<String>,
    /// Only events about devices whose twin matches this WHERE condition when the event is
    /// delivered, e.g. "tags.site = 'north'".
    #[arg(long, value_name = "CONDITION")]
    pub devices: Option<String>,
    /// Start with the retained events after this id (what the hub retains; a `lost` line
    /// says what it no longer has).
    #[arg(long, value_name = "ID")]
    pub since: Option<u64>,
    /// Stop after this many events (lost signals included).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub limit: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: Option<u64>,
}

/// Reads the stream and prints it.
pub async fn run(client: &ServiceClient, out: &mut Out<'_>, args: &EventsArgs) -> CliResult {
    if !args.follow && args.limit.is_none() && args.timeout.is_none() {
        return Err(CliError::usage(
            "the stream does not end by itself: pass --follow, --limit N or --timeout SECS",
        ));
    }
    let mut request = EventsRequest::new();
    if let Some(t) = &args.types {
        let types: EventTypes = t
            .parse()
            .map_err(|e| CliError::usage(format!("--types: {e}")))?;
        request = request.types(types);
    }
    if let Some(c) = &args.devices {
        iot_dm::core::query::Condition::parse(c)
            .map_err(|e| CliError::usage(format!("--devices: {e}")))?;
        request = request.devices(c.clone());
    }
    if let Some(id) = args.since {
        request = request.after(id);
    }
    if let Some(n) = args.limit {
        request = request.limit(n);
    }
    if let Some(s) = args.timeout {
        request = request.timeout(Duration::from_secs(s));
    }
    let mut stream = client.events(request);
    while let Some(item) = stream.next().await {
        let line = match item? {
            EventItem::Event(e) if out.json => e.data.to_string(),
            EventItem::Event(e) => human(&e),
            EventItem::Lost(l) if out.json => lost_json(&l).to_string(),
            EventItem::Lost(l) => lost_line(&l),
            _ => continue,
        };
        out.line(line)?;
        out.flush()?;
    }
    Ok(())
}

fn lost_json(l: &Lost) -> Value {
    json!({
        "type": "lost",
        "id": l.next.saturating_sub(1),
        "after": l.after,
        "next": l.next,
        "reason": l.reason,
    })
}

fn lost_line(l: &Lost) -> String {
    let missed = l
        .missed()
        .map_or_else(|| "an unknown number of".to_string(), |n| n.to_string());
    let reason = serde_json::to_value(l.reason).unwrap_or(Value::Null);
    format!(
        "LOST {missed} events after id {} (reason: {}); going on with id {}",
        l.after,
        reason.as_str().unwrap_or("?"),
        l.next
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `time  type  device  summary`.
fn human(e: &StreamEvent) -> String {
    let d = &e.data;
    let summary = match e.event_type.as_str() {
        "twin.changed" => {
            let actor = &d["actor"];
            let by = match actor.get("id") {
                Some(id) => format!("{} {}", text(&actor["kind"]), text(id)),
                None => text(&actor["kind"]),
            };
            format!(
                "by {by}: version {} (desired {}, reported {})",
                text(&d["version"]),
                text(&d["desiredVersion"]),
                text(&d["reportedVersion"])
            )
        }
        "device.connected" => "connected".into(),
        "device.disconnected" => format!("disconnected: {}", text(&d["reason"])),
        "identity.created" => "identity created".into(),
        "identity.updated" => "identity updated".into(),
        "identity.deleted" => "identity deleted".into(),
        "lifecycle.changed" => format!(
            "{}: {} -> {}",
            text(&d["event"]),
            text(&d["from"]),
            if d["to"].is_null() {
                "deleted".into()
            } else {
                text(&d["to"])
            }
        ),
        "telemetry" => {
            let body = match d.get("body") {
                Some(b) => clip(&text(b)),
                None => "(binary)".into(),
            };
            format!("{} bytes: {body}", text(&d["size"]))
        }
        "job.progress" => {
            let s = &d["statistics"];
            format!(
                "job {} {}: {}/{} succeeded, {} failed, {} running, {} pending",
                text(&d["jobId"]),
                text(&d["status"]),
                text(&s["succeededCount"]),
                text(&s["deviceCount"]),
                text(&s["failedCount"]),
                text(&s["runningCount"]),
                text(&s["pendingCount"])
            )
        }
        "configuration.metrics" => {
            let s = &d["systemMetrics"];
            let mut line = format!(
                "configuration {}: {} targeted, {} applied",
                text(&d["configurationId"]),
                text(&s["targetedCount"]),
                text(&s["appliedCount"])
            );
            if let Some(m) = d["metrics"].as_object() {
                for (name, n) in m {
                    line.push_str(&format!(", {name} {}", text(n)));
                }
            }
            line
        }
        _ => clip(&d.to_string()),
    };
    format!(
        "{}  {:<19}  {}  {summary}",
        e.time().unwrap_or("-"),
        e.event_type,
        e.device_id().unwrap_or("-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot_dm::core::events::LostReason;

    fn event(t: &str, data: Value) -> StreamEvent {
        StreamEvent {
            id: 7,
            event_type: t.into(),
            data,
        }
    }

    #[test]
    fn lines_read_as_time_type_device_summary() {
        let e = event(
            "twin.changed",
            json!({"time": "2026-01-01T00:00:00.000Z", "deviceId": "d1",
                   "actor": {"kind": "job", "id": "fw"}, "version": 3, "desiredVersion": 2,
                   "reportedVersion": 1}),
        );
        assert_eq!(
            human(&e),
            "2026-01-01T00:00:00.000Z  twin.changed         d1  by job fw: version 3 (desired 2, reported 1)"
        );
        let j = event(
            "job.progress",
            json!({"time": "t", "jobId": "j", "status": "running",
                   "statistics": {"deviceCount": 4, "succeededCount": 1, "failedCount": 0,
                                  "runningCount": 2, "pendingCount": 1}}),
        );
        assert!(
            human(&j).ends_with("-  job j running: 1/4 succeeded, 0 failed, 2 running, 1 pending")
        );
        let c = event(
            "configuration.metrics",
            json!({"time": "t", "configurationId": "fan",
                   "systemMetrics": {"targetedCount": 5, "appliedCount": 4},
                   "metrics": {"compliant": 3}}),
        );
        assert!(
            human(&c).ends_with("-  configuration fan: 5 targeted, 4 applied, compliant 3"),
            "{}",
            human(&c)
        );
        let l = Lost {
            after: 3,
            next: 10,
            reason: LostReason::Lagged,
        };
        assert_eq!(
            lost_line(&l),
            "LOST 6 events after id 3 (reason: lagged); going on with id 10"
        );
        assert_eq!(lost_json(&l)["id"], 9);
    }
}
