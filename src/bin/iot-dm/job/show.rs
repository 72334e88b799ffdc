//! How jobs and their device records print: key/value lists and tables for people, JSON for
//! scripts.

use iot_dm::core::clock::Timestamp;
use iot_dm::core::job::{DeviceJob, DeviceJobStatistics, JobResponse, JobType};
use iot_dm::core::rollout::{FailureType, RolloutPolicy, WindowPolicy};

use crate::error::CliResult;
use crate::output::Out;

/// The short name of a job type.
pub fn type_name(t: JobType) -> &'static str {
    match t {
        JobType::ScheduleUpdateTwin => "twin update",
        JobType::ScheduleDeviceMethod => "direct method",
    }
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

/// What the job does, in one line.
fn work(job: &JobResponse) -> (&'static str, String) {
    match (&job.cloud_to_device_method, &job.update_twin) {
        (Some(m), _) => {
            let mut text = m.method_name.clone();
            if !m.payload.is_null() {
                text.push_str(&format!(" {}", m.payload));
            }
            if let Some(s) = m.response_timeout_in_seconds {
                text.push_str(&format!(" (answer within {s} s)"));
            }
            ("method", text)
        }
        (None, Some(u)) => ("twin update", u.to_string()),
        (None, None) => ("work", String::new()),
    }
}

fn window_text(w: &WindowPolicy) -> String {
    let when = match (&w.cron, &w.days_of_week, &w.start_time) {
        (Some(cron), _, _) => format!("cron '{cron}'"),
        (None, days, start) => format!(
            "{} {}",
            days.as_ref().map(|d| d.join(",")).unwrap_or_default(),
            start.as_deref().unwrap_or_default()
        ),
    };
    format!("{when} for {} min", w.duration_minutes)
}

/// The policy as `name  value` lines.
pub fn policy_fields(p: &RolloutPolicy) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    if let Some(r) = &p.rate {
        let mut text = String::new();
        match (r.base_rate_per_minute, r.increment_factor) {
            (Some(base), Some(factor)) => {
                text.push_str(&format!("from {base}/min, x{factor}"));
                if let Some(c) = &r.rate_increase_criteria {
                    match (c.number_of_succeeded_devices, c.number_of_notified_devices) {
                        (Some(n), _) => text.push_str(&format!(" every {n} succeeded")),
                        (None, Some(n)) => text.push_str(&format!(" every {n} started")),
                        (None, None) => {}
                    }
                }
                if let Some(max) = r.max_per_minute {
                    text.push_str(&format!(", up to {max}/min"));
                }
            }
            _ => {
                if let Some(max) = r.max_per_minute {
                    text.push_str(&format!("{max}/min"));
                }
            }
        }
        f.push(("rate", text));
    }
    for c in p.abort.iter().flat_map(|a| a.criteria.iter()) {
        let kind = match c.failure_type {
            FailureType::Failed => "failed",
            FailureType::TimedOut => "timed out",
            FailureType::Any => "failed or timed out",
        };
        f.push((
            "abort",
            format!(
                "when {}% {kind}, after {} finished",
                c.threshold_percentage, c.min_finished_devices
            ),
        ));
    }
    if let Some(s) = p
        .timeout
        .as_ref()
        .and_then(|t| t.in_progress_timeout_seconds)
    {
        f.push(("device timeout", format!("{s} s")));
    }
    if let Some(r) = &p.retries {
        f.push((
            "retries",
            format!("{} after failure, {} after timeout", r.failed, r.timed_out),
        ));
    }
    for w in &p.maintenance_windows {
        f.push(("window", window_text(w)));
    }
    if let Some(path) = &p.time_zone_path {
        f.push(("time zone path", path.clone()));
    }
    if let Some(g) = &p.gate {
        f.push(("gate", g.clone()));
    }
    if let Some(s) = &p.success_condition {
        let within = p
            .success_timeout_seconds
            .unwrap_or(iot_dm::core::rollout::DEFAULT_SUCCESS_TIMEOUT_SECONDS);
        f.push(("success", format!("{s} (within {within} s)")));
    }
    if let Some(n) = p.pause_after_devices {
        f.push(("canary", format!("hold after {n} device(s)")));
    }
    f
}

/// The device counts as a one-row table.
pub fn stats_table(out: &mut Out<'_>, s: &DeviceJobStatistics) -> CliResult {
    out.table(
        &[
            "DEVICES",
            "SUCCEEDED",
            "FAILED",
            "RUNNING",
            "PENDING",
            "CANCELED",
        ],
        &[vec![
            s.device_count.to_string(),
            s.succeeded_count.to_string(),
            s.failed_count.to_string(),
            s.running_count.to_string(),
            s.pending_count.to_string(),
            s.canceled_count.to_string(),
        ]],
    )
}

/// A job: its fields, then its device counts (JSON with `--json`).
pub fn job(out: &mut Out<'_>, job: &JobResponse) -> CliResult {
    if out.json {
        return out.json_value(job);
    }
    let (work_name, work_text) = work(job);
    let mut fields: Vec<(&str, String)> = vec![
        ("job id", job.job_id.clone()),
        (
            "type",
            format!("{} ({})", type_name(job.job_type), job.job_type.as_str()),
        ),
        ("status", job.status.as_str().to_string()),
        ("query", job.query_condition.clone().unwrap_or_default()),
        (work_name, work_text),
        ("created", time(job.created_time)),
        ("start", time(job.start_time)),
        ("end", time(job.end_time)),
    ];
    if let Some(s) = job.max_execution_time_in_seconds {
        fields.push(("max execution", format!("{s} s")));
    }
    if let Some(r) = &job.failure_reason {
        fields.push(("failure reason", r.clone()));
    }
    if let Some(m) = &job.status_message {
        fields.push(("status message", m.clone()));
    }
    if let Some(p) = &job.rollout_policy {
        fields.extend(policy_fields(p));
    }
    out.fields(&fields)?;
    if let Some(s) = &job.device_job_statistics {
        out.line("")?;
        stats_table(out, s)?;
    }
    Ok(())
}

/// Jobs as a table.
pub fn job_table(out: &mut Out<'_>, jobs: &[JobResponse]) -> CliResult {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let s = j.device_job_statistics.unwrap_or_default();
            let counted = j.device_job_statistics.is_some();
            let n = |v: u64| {
                if counted {
                    v.to_string()
                } else {
                    String::new()
                }
            };
            vec![
                j.job_id.clone(),
                type_name(j.job_type).to_string(),
                j.status.as_str().to_string(),
                time(j.start_time),
                time(j.end_time),
                n(s.device_count),
                n(s.succeeded_count),
                n(s.failed_count),
            ]
        })
        .collect();
    out.table(
        &[
            "JOB ID",
            "TYPE",
            "STATUS",
            "START",
            "END",
            "DEVICES",
            "SUCCEEDED",
            "FAILED",
        ],
        &rows,
    )
}

/// Device records as a table.
pub fn device_table(out: &mut Out<'_>, records: &[DeviceJob]) -> CliResult {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.device_id.clone(),
                r.status.as_str().to_string(),
                time(r.start_time_utc),
                time(r.end_time_utc),
                r.outcome
                    .device_method_response
                    .as_ref()
                    .map(|m| m.status.to_string())
                    .unwrap_or_default(),
                r.error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    out.table(
        &[
            "DEVICE ID",
            "STATUS",
            "START",
            "END",
            "METHOD STATUS",
            "ERROR CODE",
        ],
        &rows,
    )
}
