//! `job wait ID` and `job create --wait`: follow a job until it ends, with a progress bar on a
//! terminal, then print a summary. The exit code says how the job ended.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use iot_dm::core::job::{DeviceJobStatistics, DeviceJobStatus, JobResponse, JobStatus};
use iot_dm::service::api::ServiceApi;

use super::args::FollowArgs;
use crate::error::{CliError, CliResult};
use crate::output::Out;

/// The shortest `--interval-ms`.
const MIN_INTERVAL_MS: u64 = 50;
/// Jobs up to this many devices have their held-back devices counted from the records; for
/// larger ones the bar shows them with the pending ones.
const COUNT_HELD_UP_TO: u64 = 10_000;
/// How often the held-back devices are counted again.
const RECOUNT: Duration = Duration::from_secs(2);
/// Transport failures in a row tolerated while following.
const RETRIES: u32 = 5;

/// Checks the follow flags.
pub fn check(f: &FollowArgs) -> CliResult {
    if f.interval_ms < MIN_INTERVAL_MS {
        return Err(CliError::usage(format!(
            "--interval-ms {} is too short: at least {MIN_INTERVAL_MS}",
            f.interval_ms
        )));
    }
    Ok(())
}

/// What a job's held-back (`scheduled`) devices wait for, when its policy can hold any back.
fn held_label(job: &JobResponse) -> Option<&'static str> {
    let p = job.rollout_policy.as_ref()?;
    match (!p.maintenance_windows.is_empty(), p.gate.is_some()) {
        (true, true) => Some("waiting for a window or the gate"),
        (true, false) => Some("waiting for a window"),
        (false, true) => Some("gated"),
        (false, false) => None,
    }
}

/// How many devices the plan holds back (`scheduled` records), when worth counting.
async fn held(api: &dyn ServiceApi, job: &JobResponse) -> CliResult<Option<u64>> {
    let Some(stats) = job.device_job_statistics else {
        return Ok(None);
    };
    if held_label(job).is_none()
        || job.status != JobStatus::Running
        || stats.pending_count == 0
        || stats.device_count > COUNT_HELD_UP_TO
    {
        return Ok(None);
    }
    let records = super::all_devices(api, &job.job_id, super::PAGE).await?;
    Ok(Some(
        records
            .iter()
            .filter(|r| r.status == DeviceJobStatus::Scheduled)
            .count() as u64,
    ))
}

/// The bar's message: the job's status and its device counts.
pub fn progress_text(job: &JobResponse, held: Option<u64>) -> String {
    let mut text = job.status.as_str().to_string();
    match (job.status, job.device_job_statistics) {
        (JobStatus::Queued | JobStatus::Scheduled, _) => {
            if let Some(t) = job.start_time {
                text.push_str(&format!(", starts at {t}"));
            }
        }
        (_, Some(s)) => {
            text.push_str(&format!(
                ": {} succeeded, {} failed",
                s.succeeded_count, s.failed_count
            ));
            let held = held.unwrap_or(0).min(s.pending_count);
            let label = held_label(job).unwrap_or("held back");
            for (n, what) in [
                (s.running_count, "running"),
                (held, label),
                (s.pending_count - held, "pending"),
                (s.canceled_count, "canceled"),
            ] {
                if n > 0 {
                    text.push_str(&format!(", {n} {what}"));
                }
            }
        }
        (_, None) => {}
    }
    if job.status.is_active() {
        if let Some(m) = &job.status_message {
            text.push_str(&format!(" ({m})"));
        }
    }
    text
}

fn done(s: &DeviceJobStatistics) -> u64 {
    s.succeeded_count + s.failed_count + s.canceled_count
}

fn bar(interactive: bool) -> ProgressBar {
    if !interactive {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:16}] {pos}/{len} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Follows `job_id` until it ends; prints the summary. Fails (exit 1) unless it completed.
pub async fn follow(
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    job_id: &str,
    f: &FollowArgs,
) -> CliResult {
    check(f)?;
    let interactive = !out.json && std::io::stderr().is_terminal();
    let bar = bar(interactive);
    let begun = Instant::now();
    let mut failures = 0;
    let mut last_status = None;
    let mut last_count: Option<Instant> = None;
    let mut held_now: Option<u64> = None;
    loop {
        let job = match api.get_job(job_id).await {
            Ok(job) => {
                failures = 0;
                job
            }
            Err(e) if e.is_transport() && failures < RETRIES => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(f.interval_ms)).await;
                continue;
            }
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        };
        if !job.status.is_active() {
            bar.finish_and_clear();
            return summary(out, &job);
        }
        // only a detail of the bar: when the records cannot be read, the bar goes without
        // (a job without a count to show costs no request; one with a count is counted again
        // every RECOUNT)
        if held_now.is_none() || last_count.is_none_or(|t: Instant| t.elapsed() >= RECOUNT) {
            held_now = held(api, &job).await.unwrap_or_default();
            last_count = Some(Instant::now());
        }
        let held = held_now.filter(|_| job.status == JobStatus::Running);
        if let Some(s) = job.device_job_statistics {
            bar.set_length(s.device_count);
            bar.set_position(done(&s));
        }
        let text = progress_text(&job, held);
        // while it runs the counts say it all
        let short = text.strip_prefix("running: ").unwrap_or(&text).to_string();
        bar.set_message(short);
        if !interactive && !out.json && last_status != Some(job.status) {
            eprintln!("job {job_id}: {text}");
        }
        last_status = Some(job.status);
        if let Some(limit) = f.wait_timeout {
            if begun.elapsed() >= Duration::from_secs(limit) {
                bar.finish_and_clear();
                if out.json {
                    out.json_value(&job)?;
                } else {
                    out.line(format!("job {job_id} {text}"))?;
                }
                return Err(CliError::Job(format!(
                    "job {job_id} is still {} after {limit} s; it goes on (follow it with `iot-dm job wait {job_id}`)",
                    job.status.as_str()
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(f.interval_ms)).await;
    }
}

/// The one-line outcome of an ended job.
pub fn outcome(job: &JobResponse) -> String {
    let mut text = format!("job {} {}", job.job_id, job.status.as_str());
    if let Some(s) = job.device_job_statistics {
        text.push_str(&format!(
            ": {} of {} device(s) succeeded, {} failed",
            s.succeeded_count, s.device_count, s.failed_count
        ));
        if s.canceled_count > 0 {
            text.push_str(&format!(", {} canceled", s.canceled_count));
        }
    }
    text
}

/// Prints how the job ended; an error unless it completed.
fn summary(out: &mut Out<'_>, job: &JobResponse) -> CliResult {
    if out.json {
        out.json_value(job)?;
    } else {
        out.line(outcome(job))?;
        if let Some(r) = &job.failure_reason {
            out.line(format!("failure reason: {r}"))?;
        }
        if let Some(m) = &job.status_message {
            out.line(format!("status message: {m}"))?;
        }
    }
    out.flush()?;
    if job.status == JobStatus::Completed {
        return Ok(());
    }
    let mut why = format!("job {} {}", job.job_id, job.status.as_str());
    for detail in [&job.failure_reason, &job.status_message]
        .into_iter()
        .flatten()
    {
        why.push_str(&format!(": {detail}"));
    }
    Err(CliError::Job(why))
}
