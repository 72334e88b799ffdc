//! The `iot-dm job ...` command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `iot-dm job ...`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create a job: a twin update (--tags, --desired) or a direct method (--method) over the
    /// devices --query selects, with an optional rollout policy; or the whole request from
    /// --file (flags override it).
    Create(Box<JobCreateArgs>),
    /// Show a job and its device counts.
    Show(JobIdArgs),
    /// List jobs (every page), optionally of one type or status.
    List(JobListArgs),
    /// Cancel a job: devices not started are canceled, started ones finish.
    Cancel(JobIdArgs),
    /// Pause a job: no more devices start until it is resumed.
    Pause(JobIdArgs),
    /// Resume a paused job, or one holding after its canary devices.
    Resume(JobIdArgs),
    /// The job's per-device records.
    Devices(JobDevicesArgs),
    /// Follow a job with a progress bar until it ends; exit 1 unless it completed.
    Wait(JobWaitArgs),
}

/// A job id.
#[derive(Debug, Args)]
pub struct JobIdArgs {
    /// The job id.
    pub job_id: String,
}

/// Which kind of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobTypeArg {
    /// Twin updates (`scheduleUpdateTwin`).
    #[value(alias = "scheduleUpdateTwin")]
    Twin,
    /// Direct methods (`scheduleDeviceMethod`).
    #[value(alias = "scheduleDeviceMethod")]
    Method,
}

/// `job list`.
#[derive(Debug, Args)]
pub struct JobListArgs {
    /// Only jobs of this type.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub job_type: Option<JobTypeArg>,
    /// Only jobs in this status: queued, scheduled, running, completed, failed, cancelled.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
}

/// `job devices`.
#[derive(Debug, Args)]
pub struct JobDevicesArgs {
    /// The job id.
    pub job_id: String,
    /// Only devices in this status: pending, scheduled, running, completed, failed, canceled.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
}

/// How a job is followed (`job wait`, `job create --wait`).
#[derive(Debug, Args, Clone)]
pub struct FollowArgs {
    /// Milliseconds between two looks at the job (at least 50).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub interval_ms: u64,
    /// Give up (exit 1) when the job has not ended after this many seconds; the job goes on.
    #[arg(long, value_name = "S")]
    pub wait_timeout: Option<u64>,
}

/// `job wait`.
#[derive(Debug, Args)]
pub struct JobWaitArgs {
    /// The job id.
    pub job_id: String,
    /// How the job is followed.
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// Which failures an abort criterion counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailureTypeArg {
    /// Failed and timed-out devices.
    Any,
    /// Failed devices.
    Failed,
    /// Timed-out devices.
    TimedOut,
}

impl FailureTypeArg {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureTypeArg::Any => "any",
            FailureTypeArg::Failed => "failed",
            FailureTypeArg::TimedOut => "timedOut",
        }
    }
}

/// `job create`.
#[derive(Debug, Args)]
pub struct JobCreateArgs {
    /// The job id: 1 to 64 ASCII letters, digits and '-'.
    pub job_id: String,
    /// The whole request as JSON (IoT Hub's job body, with an optional `rolloutPolicy`); the
    /// flags below override its members. The job id argument replaces its `jobId`.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The devices: a WHERE clause without WHERE (e.g. "tags.site = 'north'"), or * for all.
    #[arg(long, value_name = "CONDITION")]
    pub query: Option<String>,
    /// When to start, RFC 3339 (e.g. 2026-06-01T02:00:00Z or 2026-06-01T04:00:00+02:00); now
    /// when absent.
    #[arg(long, value_name = "RFC3339")]
    pub start_time: Option<String>,
    /// Seconds the job may run, from its start (default 3600).
    #[arg(long, value_name = "S")]
    pub max_execution_time: Option<u64>,

    /// Twin update: tags to merge (JSON object; `@FILE` reads a file).
    #[arg(long, value_name = "JSON", help_heading = "Twin update")]
    pub tags: Option<String>,
    /// Twin update: desired properties to merge (JSON object; `@FILE` reads a file).
    #[arg(long, value_name = "JSON", help_heading = "Twin update")]
    pub desired: Option<String>,
    /// Twin update: apply only to twins whose ETag is this (`*` for any).
    #[arg(long, help_heading = "Twin update")]
    pub etag: Option<String>,

    /// Direct method: the method name.
    #[arg(long, value_name = "NAME", help_heading = "Direct method", conflicts_with_all = ["tags", "desired", "etag"])]
    pub method: Option<String>,
    /// Direct method: the payload (JSON; `@FILE` reads a file).
    #[arg(long, value_name = "JSON", help_heading = "Direct method")]
    pub payload: Option<String>,
    /// Direct method: seconds each device has to answer (5 to 300, default 30).
    #[arg(long, value_name = "S", help_heading = "Direct method")]
    pub response_timeout: Option<u64>,
    /// Direct method: seconds to wait for a device to connect (IoT Hub's field; a job waits
    /// for offline devices until its own time runs out).
    #[arg(long, value_name = "S", help_heading = "Direct method")]
    pub connect_timeout: Option<u64>,

    /// The rollout policy.
    #[command(flatten)]
    pub rollout: RolloutArgs,

    /// Follow the job with a progress bar until it ends; exit 1 unless it completed.
    #[arg(long)]
    pub wait: bool,
    /// How the job is followed with --wait.
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// The rollout-policy flags of `job create`.
#[derive(Debug, Args, Default)]
pub struct RolloutArgs {
    /// Devices started per minute at most (the constant rate, or the ramp's cap).
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub max_per_minute: Option<u64>,
    /// Exponential ramp: the first rate, devices per minute.
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub ramp_base: Option<u64>,
    /// Exponential ramp: the rate's multiplier at each step (more than 1, at most 5).
    #[arg(long, value_name = "F", help_heading = "Rollout")]
    pub ramp_factor: Option<f64>,
    /// Exponential ramp: step up each time this many more devices succeeded.
    #[arg(
        long,
        value_name = "N",
        help_heading = "Rollout",
        conflicts_with = "ramp_every_notified"
    )]
    pub ramp_every_succeeded: Option<u64>,
    /// Exponential ramp: step up each time this many more devices were started.
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub ramp_every_notified: Option<u64>,
    /// Seconds a started device may take before it times out.
    #[arg(long, value_name = "S", help_heading = "Rollout")]
    pub timeout: Option<u64>,
    /// Retries of a device that failed (0 to 10).
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub retries: Option<u64>,
    /// Retries of a device that timed out (0 to 10).
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub retries_timed_out: Option<u64>,
    /// Abort the rollout when this percentage of the finished devices failed (0 to 100).
    #[arg(long, value_name = "P", help_heading = "Rollout")]
    pub abort_failure_percent: Option<f64>,
    /// ... once at least this many devices finished (default 1).
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub abort_min_devices: Option<u64>,
    /// Which failures the abort percentage counts (default any).
    #[arg(long, value_enum, value_name = "TYPE", help_heading = "Rollout")]
    pub abort_failure_type: Option<FailureTypeArg>,
    /// A maintenance window in the device's local time, when devices may start (repeatable):
    /// 'DAYS HH:MM MINUTES' (e.g. 'sat,sun 02:00 180', 'daily 01:30 60') or a five-field cron
    /// and the minutes (e.g. '30 1 * * 1-5 60'). MINUTES may end in m, or be hours with h.
    #[arg(long, value_name = "WINDOW", help_heading = "Rollout")]
    pub window: Vec<String>,
    /// The twin path of the device's IANA time zone (default tags.location.timezone).
    #[arg(long, value_name = "PATH", help_heading = "Rollout")]
    pub timezone_path: Option<String>,
    /// A condition a device's twin must meet when its turn comes (the gate), e.g.
    /// "properties.reported.battery > 30".
    #[arg(long, value_name = "CONDITION", help_heading = "Rollout")]
    pub gate: Option<String>,
    /// A condition the twin must meet after the device is done, for it to count as succeeded.
    #[arg(long, value_name = "CONDITION", help_heading = "Rollout")]
    pub success: Option<String>,
    /// Seconds the success condition may take to hold (default 300).
    #[arg(long, value_name = "S", help_heading = "Rollout")]
    pub success_timeout: Option<u64>,
    /// The canary: hold once this many devices started and finished, until `job resume`.
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub canary: Option<u64>,
}
