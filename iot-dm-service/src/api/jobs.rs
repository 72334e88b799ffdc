//! [`JobApi`]: IoT Hub's jobs v2 (scheduled twin updates and direct methods over a fleet),
//! with our rollout control.

use async_trait::async_trait;

use iot_dm_core::job::{DeviceJob, JobRequest, JobResponse, JobStatus, JobType};
use iot_dm_core::query::PageRequest;

use crate::hub::HubError;

/// Which jobs [`JobApi::query_jobs`] lists (`GET /jobs/v2/query?jobType=&jobStatus=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
}

impl JobFilter {
    /// Every job.
    pub fn new() -> JobFilter {
        JobFilter::default()
    }

    /// Only jobs of `job_type`.
    pub fn job_type(mut self, job_type: JobType) -> JobFilter {
        self.job_type = Some(job_type);
        self
    }

    /// Only jobs in `status`.
    pub fn status(mut self, status: JobStatus) -> JobFilter {
        self.status = Some(status);
        self
    }

    /// Whether `job` passes.
    pub fn matches(&self, job: &JobResponse) -> bool {
        self.job_type.is_none_or(|t| t == job.job_type)
            && self.status.is_none_or(|s| s == job.status)
    }
}

/// One page of jobs, in job-id order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobPage {
    /// The jobs.
    pub items: Vec<JobResponse>,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// One page of a job's device records, in device-id order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeviceJobPage {
    /// The records.
    pub items: Vec<DeviceJob>,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

impl JobPage {
    /// A page.
    pub fn new(items: Vec<JobResponse>, continuation: Option<String>) -> JobPage {
        JobPage {
            items,
            continuation,
        }
    }
}

impl DeviceJobPage {
    /// A page.
    pub fn new(items: Vec<DeviceJob>, continuation: Option<String>) -> DeviceJobPage {
        DeviceJobPage {
            items,
            continuation,
        }
    }
}

/// Jobs over the fleet: create, read, cancel, pause and resume them, list them, and read their
/// per-device records.
///
/// A job's target (`queryCondition`) is evaluated once, when it starts. A method job waits for
/// an offline device until the job's time runs out; a device that never comes is recorded
/// failed with `DeviceNotOnline`. `deviceJobStatistics` always agrees with the device records.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use iot_dm_core::job::{JobRequest, JobStatus};
/// use iot_dm_service::api::prelude::*;
/// use iot_dm_service::hub::{DeviceSpec, Hub};
/// use serde_json::json;
///
/// let hub = Hub::builder().open().await?;
/// hub.create_device(DeviceSpec::new("pump-1".parse()?)).await?;
/// let request = JobRequest::from_json(&json!({
///     "jobId": "tag-all", "type": "scheduleUpdateTwin", "queryCondition": "*",
///     "updateTwin": {"tags": {"fleet": "a"}, "etag": "*"},
/// }))?;
/// assert_eq!(hub.create_job(&request).await?.status, JobStatus::Queued);
/// let job = loop {
///     let job = hub.get_job("tag-all").await?;
///     if !job.status.is_active() { break job; }
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
/// };
/// assert_eq!(job.status, JobStatus::Completed);
/// assert_eq!(hub.get_twin("pump-1")?.tags().to_value(), json!({"fleet": "a"}));
/// # Ok(()) }
/// ```
#[async_trait]
pub trait JobApi: Send + Sync + std::fmt::Debug {
    /// Creates a job (`PUT /jobs/v2/{id}`); the reply says `queued`. `409104
    /// JobAlreadyExists` for a retained id, `429004` past the cap on active jobs.
    async fn create_job(&self, request: &JobRequest) -> Result<JobResponse, HubError>;

    /// A job (`GET /jobs/v2/{id}`); `404002 JobNotFound` when there is none.
    async fn get_job(&self, job_id: &str) -> Result<JobResponse, HubError>;

    /// Cancels a job (`POST /jobs/v2/{id}/cancel`): devices not started are canceled, started
    /// ones finish. A job that already ended is returned as it is.
    async fn cancel_job(&self, job_id: &str) -> Result<JobResponse, HubError>;

    /// Ours: stops starting devices until [`resume_job`](Self::resume_job)
    /// (`POST /jobs/v2/{id}/pause`).
    async fn pause_job(&self, job_id: &str) -> Result<JobResponse, HubError>;

    /// Ours: ends a pause or the canary hold (`POST /jobs/v2/{id}/resume`).
    async fn resume_job(&self, job_id: &str) -> Result<JobResponse, HubError>;

    /// One page of jobs (`GET /jobs/v2/query`).
    async fn query_jobs(
        &self,
        filter: &JobFilter,
        request: &PageRequest,
    ) -> Result<JobPage, HubError>;

    /// One page of a job's device records (ours: `GET /jobs/v2/{id}/devices`).
    async fn device_jobs(
        &self,
        job_id: &str,
        request: &PageRequest,
    ) -> Result<DeviceJobPage, HubError>;
}
