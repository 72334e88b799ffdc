//! `iot-dm job ...`: IoT Hub jobs v2 (twin updates and direct methods over the devices a
//! query selects) with the hub's rollout policy.

pub mod args;
mod flags;
mod show;
mod wait;

#[cfg(test)]
mod tests;

use iot_dm::core::job::{DeviceJob, DeviceJobStatus, JobResponse, JobStatus, JobType};
use iot_dm::core::query::PageRequest;
use iot_dm::service::api::{JobFilter, ServiceApi};

use crate::error::{CliError, CliResult};
use crate::output::Out;
use args::{JobCommand, JobCreateArgs, JobDevicesArgs, JobListArgs, JobTypeArg};

/// Rows fetched per request when paging.
pub const PAGE: usize = 1000;

/// Runs a `job` subcommand.
pub async fn run(api: &dyn ServiceApi, out: &mut Out<'_>, command: JobCommand) -> CliResult {
    match command {
        JobCommand::Create(a) => create(api, out, &a).await,
        JobCommand::Show(a) => {
            let job = api.get_job(&a.job_id).await?;
            show::job(out, &job)
        }
        JobCommand::List(a) => list(api, out, &a).await,
        JobCommand::Cancel(a) => {
            let job = api.cancel_job(&a.job_id).await?;
            show::job(out, &job)
        }
        JobCommand::Pause(a) => {
            let job = api.pause_job(&a.job_id).await?;
            show::job(out, &job)
        }
        JobCommand::Resume(a) => {
            let job = api.resume_job(&a.job_id).await?;
            show::job(out, &job)
        }
        JobCommand::Devices(a) => devices(api, out, &a).await,
        JobCommand::Wait(a) => wait::follow(api, out, &a.job_id, &a.follow).await,
    }
}

/// `job create ID ...`: checks the request locally, creates the job, then shows it or follows
/// it (`--wait`).
pub async fn create(api: &dyn ServiceApi, out: &mut Out<'_>, args: &JobCreateArgs) -> CliResult {
    let request = flags::request(args)?;
    wait::check(&args.follow)?;
    let job = api.create_job(&request).await?;
    if args.wait {
        if !out.json {
            out.line(format!(
                "created job {} ({})",
                job.job_id,
                show::type_name(job.job_type)
            ))?;
            out.flush()?;
        }
        wait::follow(api, out, &job.job_id, &args.follow).await
    } else {
        show::job(out, &job)
    }
}

/// A `--status` of `job list`.
fn job_status(text: &str) -> CliResult<JobStatus> {
    JobStatus::parse(text).ok_or_else(|| {
        CliError::usage(format!(
            "--status {text:?}: expected queued, scheduled, running, completed, failed or cancelled"
        ))
    })
}

/// A `--status` of `job devices`.
fn device_status(text: &str) -> CliResult<DeviceJobStatus> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "pending" => DeviceJobStatus::Pending,
        "scheduled" => DeviceJobStatus::Scheduled,
        "running" => DeviceJobStatus::Running,
        "completed" | "succeeded" => DeviceJobStatus::Completed,
        "failed" => DeviceJobStatus::Failed,
        "canceled" | "cancelled" => DeviceJobStatus::Canceled,
        _ => {
            return Err(CliError::usage(format!(
                "--status {text:?}: expected pending, scheduled, running, completed, failed or canceled"
            )))
        }
    })
}

/// Every job the filter passes, paging through the continuations, `page` at a time.
pub async fn all_jobs(
    api: &dyn ServiceApi,
    filter: &JobFilter,
    page: usize,
) -> CliResult<Vec<JobResponse>> {
    let mut jobs = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let request = PageRequest::new()
            .size(page)
            .continuation_opt(continuation.take());
        let page = api.query_jobs(filter, &request).await?;
        jobs.extend(page.items);
        match page.continuation {
            Some(c) => continuation = Some(c),
            None => return Ok(jobs),
        }
    }
}

/// Every device record of a job, paging through the continuations, `page` at a time.
pub async fn all_devices(
    api: &dyn ServiceApi,
    job_id: &str,
    page: usize,
) -> CliResult<Vec<DeviceJob>> {
    let mut records = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let request = PageRequest::new()
            .size(page)
            .continuation_opt(continuation.take());
        let page = api.device_jobs(job_id, &request).await?;
        records.extend(page.items);
        match page.continuation {
            Some(c) => continuation = Some(c),
            None => return Ok(records),
        }
    }
}

/// `job list [--type T] [--status S]`.
pub async fn list(api: &dyn ServiceApi, out: &mut Out<'_>, args: &JobListArgs) -> CliResult {
    let mut filter = JobFilter::new();
    if let Some(t) = args.job_type {
        filter = filter.job_type(match t {
            JobTypeArg::Twin => JobType::ScheduleUpdateTwin,
            JobTypeArg::Method => JobType::ScheduleDeviceMethod,
        });
    }
    if let Some(s) = &args.status {
        filter = filter.status(job_status(s)?);
    }
    let jobs = all_jobs(api, &filter, PAGE).await?;
    if out.json {
        return out.json_value(&jobs);
    }
    show::job_table(out, &jobs)?;
    out.line(format!("{} job(s)", jobs.len()))
}

/// `job devices ID [--status S]`.
pub async fn devices(api: &dyn ServiceApi, out: &mut Out<'_>, args: &JobDevicesArgs) -> CliResult {
    let want = args.status.as_deref().map(device_status).transpose()?;
    let mut records = all_devices(api, &args.job_id, PAGE).await?;
    if let Some(s) = want {
        records.retain(|r| r.status == s);
    }
    if out.json {
        return out.json_value(&records);
    }
    show::device_table(out, &records)?;
    out.line(format!("{} device(s)", records.len()))
}
