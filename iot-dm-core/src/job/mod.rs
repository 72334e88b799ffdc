//! IoT Hub's jobs v2 records: the job a back end schedules ([`JobRequest`]), the job as the hub
//! reports it ([`JobResponse`]), and the per-device record of `devices.jobs` ([`DeviceJob`]).
//!
//! Two job types: `scheduleUpdateTwin` (merge tags and desired properties into every targeted
//! twin) and `scheduleDeviceMethod` (invoke a direct method on every targeted device). The
//! target is a `queryCondition` (a `WHERE` clause only, or `*` for every device), evaluated once,
//! when the job starts. Beyond IoT Hub, a job may carry a [`RolloutPolicy`] (rate, abort,
//! retries, maintenance windows, gate, success condition, canary), planned by
//! [`crate::rollout`].
//!
//! The wire spellings are IoT Hub's: job statuses `queued, scheduled, running, completed,
//! failed, cancelled` ([`JobStatus`]) and device-job statuses `pending, scheduled, running,
//! completed, failed, canceled` ([`DeviceJobStatus`]).
//!
//! ```
//! use iot_dm_core::job::{JobRequest, JobType};
//! use serde_json::json;
//!
//! // what the Python service SDK sends for `create_scheduled_job`
//! let request = JobRequest::from_json(&json!({
//!     "jobId": "reboot-north",
//!     "type": "scheduleDeviceMethod",
//!     "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"delay": 5},
//!                             "responseTimeoutInSeconds": 30},
//!     "queryCondition": "tags.site = 'north'",
//!     "startTime": null,
//!     "maxExecutionTimeInSeconds": 600,
//! }))?;
//! assert_eq!(request.job_type, JobType::ScheduleDeviceMethod);
//! assert_eq!(request.method()?.map(|m| m.name().as_str().to_string()), Some("reboot".into()));
//! # Ok::<(), iot_dm_core::job::JobError>(())
//! ```

mod filter;
mod record;
mod request;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Timestamp;
pub use crate::rollout::DeviceJobStatus;
use crate::rollout::RolloutPolicy;

pub use filter::DeviceJobFilter;
pub use record::{decode_device_job, DeviceJobRecord, RECORD_TAG};
pub use request::{condition_of, twin_patch_of, validate_job_id, JobError, MAX_JOB_ID_LEN};

/// The `maxExecutionTimeInSeconds` of a job that gives none: one hour.
pub const DEFAULT_MAX_EXECUTION_SECONDS: u64 = 3600;

/// The greatest `maxExecutionTimeInSeconds` accepted: seven days.
pub const MAX_EXECUTION_SECONDS: u64 = 7 * 24 * 3600;

/// The kind of a job (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobType {
    /// `scheduleUpdateTwin`: merge `updateTwin` into every targeted twin.
    ScheduleUpdateTwin,
    /// `scheduleDeviceMethod`: invoke `cloudToDeviceMethod` on every targeted device.
    ScheduleDeviceMethod,
}

impl JobType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::ScheduleUpdateTwin => "scheduleUpdateTwin",
            JobType::ScheduleDeviceMethod => "scheduleDeviceMethod",
        }
    }

    /// The type a wire spelling names (exact, as the SDKs send it).
    pub fn parse(s: &str) -> Option<JobType> {
        match s {
            "scheduleUpdateTwin" => Some(JobType::ScheduleUpdateTwin),
            "scheduleDeviceMethod" => Some(JobType::ScheduleDeviceMethod),
            _ => None,
        }
    }
}

/// Where a job stands, as IoT Hub spells it (`cancelled` with two l's, as the C# and Python
/// models do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    /// Accepted, not started yet (the create reply).
    Queued,
    /// Waiting for its `startTime`.
    Scheduled,
    /// Running over its devices.
    Running,
    /// Every device is done, or the job's time ran out.
    Completed,
    /// The job could not run, or an abort criterion of its rollout policy held; see
    /// `failureReason` and `statusMessage`.
    Failed,
    /// Cancelled by the back end.
    Cancelled,
}

impl JobStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The status a wire spelling names; `canceled` (the docs' spelling) is accepted too.
    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s.to_ascii_lowercase().as_str() {
            "queued" | "enqueued" => JobStatus::Queued,
            "scheduled" => JobStatus::Scheduled,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" | "canceled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job still counts against the cap on active jobs (queued, scheduled,
    /// running).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobStatus::Queued | JobStatus::Scheduled | JobStatus::Running
        )
    }
}

/// `cloudToDeviceMethod`: the direct method a method job invokes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudToDeviceMethod {
    /// The method name.
    pub method_name: String,
    /// The JSON payload (`null` when absent).
    #[serde(default)]
    pub payload: Value,
    /// How long each device has to answer (5 to 300 s, default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_in_seconds: Option<u64>,
    /// Accepted for IoT Hub compatibility; a job waits for an offline device until the job's
    /// own time runs out, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_in_seconds: Option<u64>,
}

/// `deviceJobStatistics`: device counts by status. `deviceCount` is the target set; the other
/// counts add up to it (`canceledCount`, ours, counts devices a cancel stopped before they
/// started and is left out while zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobStatistics {
    /// Devices in the target set.
    pub device_count: u64,
    /// Devices `failed`.
    pub failed_count: u64,
    /// Devices `completed`.
    pub succeeded_count: u64,
    /// Devices `running`.
    pub running_count: u64,
    /// Devices `pending` or `scheduled`.
    pub pending_count: u64,
    /// Devices `canceled`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub canceled_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DeviceJobStatistics {
    /// Counts one device of `status` in.
    pub fn count(&mut self, status: DeviceJobStatus) {
        match status {
            DeviceJobStatus::Pending | DeviceJobStatus::Scheduled => self.pending_count += 1,
            DeviceJobStatus::Running => self.running_count += 1,
            DeviceJobStatus::Completed => self.succeeded_count += 1,
            DeviceJobStatus::Failed => self.failed_count += 1,
            DeviceJobStatus::Canceled => self.canceled_count += 1,
        }
    }
}

/// A validated job, as created: what [`JobRequest::from_json`] accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRequest {
    /// The id: 1 to 64 ASCII letters, digits and `-`.
    pub job_id: String,
    /// The kind.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The target: a `WHERE` clause without `WHERE`, or `*` for every device.
    pub query_condition: String,
    /// When to start; `None` means now.
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    /// How long the job may run, from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<u64>,
    /// The twin patch of a twin job: `tags` and/or `properties.desired` (other members an SDK
    /// serializer adds, such as `deviceId`, `$metadata` or `etag`, are kept but not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    /// The method of a method job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<CloudToDeviceMethod>,
    /// Ours: how the job rolls out. Absent: every device at once, as IoT Hub does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_policy: Option<RolloutPolicy>,
}

/// A job as the hub reports it (`GET /jobs/v2/{id}`, the create and cancel replies, the job
/// list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    /// The id.
    pub job_id: String,
    /// The kind.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// Where it stands.
    pub status: JobStatus,
    /// The target condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_condition: Option<String>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<Timestamp>,
    /// When it starts (scheduled) or started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// When it ended; absent while it has not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    /// Its time bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<u64>,
    /// The twin patch of a twin job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    /// The method of a method job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<CloudToDeviceMethod>,
    /// Why it failed (always set on a failed job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// A sentence on where it stands (always set on a failed job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Device counts by status, once the job has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_job_statistics: Option<DeviceJobStatistics>,
    /// Ours: the rollout policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_policy: Option<RolloutPolicy>,
    /// Ours: what the rollout policy holds back, once a job with a policy has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_statistics: Option<RolloutStatistics>,
}

/// `rolloutStatistics` of a job with a rollout policy (ours): the devices its policy holds
/// back, which IoT Hub's `deviceJobStatistics` counts as pending (their records say
/// `scheduled`), by what they wait for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatistics {
    /// Devices outside their maintenance window, waiting for it.
    pub waiting_for_window_count: u64,
    /// Devices whose twin does not satisfy the gate, waiting for it to.
    pub gated_count: u64,
    /// Devices whose time zone could not be read or is unknown, so their windows are in UTC.
    pub utc_fallback_count: u64,
}

impl JobResponse {
    /// The record of a job just created from `request` at `now`: `queued`.
    pub fn queued(request: &JobRequest, now: Timestamp) -> JobResponse {
        JobResponse {
            job_id: request.job_id.clone(),
            job_type: request.job_type,
            status: JobStatus::Queued,
            query_condition: Some(request.query_condition.clone()),
            created_time: Some(now),
            start_time: Some(request.start_time.unwrap_or(now)),
            end_time: None,
            max_execution_time_in_seconds: Some(
                request
                    .max_execution_time_in_seconds
                    .unwrap_or(DEFAULT_MAX_EXECUTION_SECONDS),
            ),
            update_twin: request.update_twin.clone(),
            cloud_to_device_method: request.cloud_to_device_method.clone(),
            failure_reason: None,
            status_message: None,
            device_job_statistics: None,
            rollout_policy: request.rollout_policy.clone(),
            rollout_statistics: None,
        }
    }
}

/// A device method's answer, in a device-job record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMethodResponse {
    /// The status the device chose.
    pub status: i32,
    /// The device's payload.
    #[serde(default)]
    pub payload: Value,
}

/// `outcome` of a device-job record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobOutcome {
    /// The method's answer (method jobs; `null` otherwise).
    #[serde(default)]
    pub device_method_response: Option<DeviceMethodResponse>,
}

/// `error` of a failed device-job record: IoT Hub's error code name (`DeviceNotOnline`,
/// `GatewayTimeout`, `PreconditionFailed`, ...; ours: `Interrupted`, `JobCancelled`, the
/// rollout's reasons) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceJobError {
    /// The code.
    pub code: String,
    /// What happened.
    pub description: String,
}

/// One device of a job (`SELECT * FROM devices.jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJob {
    /// The device.
    pub device_id: String,
    /// The job.
    pub job_id: String,
    /// The job's kind.
    pub job_type: JobType,
    /// Where the device stands.
    pub status: DeviceJobStatus,
    /// When the device was started (its latest attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<Timestamp>,
    /// When the device finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<Timestamp>,
    /// When the record was made (the job's start).
    pub created_date_time_utc: Timestamp,
    /// When the record last changed.
    pub last_updated_date_time_utc: Timestamp,
    /// The method's answer.
    #[serde(default)]
    pub outcome: DeviceJobOutcome,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeviceJobError>,
}
