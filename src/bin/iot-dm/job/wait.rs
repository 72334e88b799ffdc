//! `job wait ID` and `job create --wait`: follow a job until it ends, with a progress bar on a
//! terminal, then print a summary. The exit code says how the job ended.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use iot_dm::core::job::{DeviceJobStatistics, JobResponse, JobStatus};
use iot_dm::service::api::ServiceApi;

use super::args::FollowArgs;
use crate::error::{CliError, CliResult};
use crate::output::Out;

/// The shortest `--interval-ms`.
const MIN_INTERVAL_MS: u64 = 50;
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

/// The bar's message: the job's status and its device counts, with the devices the rollout
/// policy holds back (`rolloutStatistics`) apart from the pending ones.
pub fn progress_text(job: &JobResponse) -> String {
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
            let r = job.rollout_statistics.unwrap_or_default();
            let window = r.waiting_for_window_count.min(s.pending_count);
            let gated = r.gated_count.min(s.pending_count - window);
            for (n, what) in [
                (s.running_count, "running"),
                (window, "waiting for a window"),
                (gated, "gated"),
                (s.pending_count - window - gated, "pending"),
                (s.canceled_count, "canceled"),
            ] {
                if n > 0 {
                    text.push_str(&format!(", {n} {what}"));
                }
            }
            if r.utc_fallback_count > 0 {
                text.push_str(&format!(
                    " [{} without a readable time zone: windows in UTC]",
                    r.utc_fallback_count
                ));
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
        if let Some(s) = job.device_job_statistics {
            bar.set_length(s.device_count);
            bar.set_position(done(&s));
        }
        let text = progress_text(&job);
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
