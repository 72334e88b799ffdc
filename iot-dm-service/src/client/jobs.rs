//! [`JobApi`] over IoT Hub's jobs v2 routes (`/jobs/v2/...`) and ours (pause, resume, device
//! records).

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;

use iot_dm_core::job::{DeviceJob, JobRequest, JobResponse};
use iot_dm_core::query::PageRequest;

use super::codec::{body, continuation, paging, parse};
use super::errors::About;
use super::{path, ServiceClient};
use crate::api::{DeviceJobPage, JobApi, JobFilter, JobPage};
use crate::hub::HubError;

fn job(id: &str) -> About<'_> {
    About {
        job_id: Some(id),
        ..About::default()
    }
}

/// The job list body: a JSON array of jobs (IoT Hub's), or the `QueryResult` object
/// `{"type", "items", "continuationToken"}` of IoT Hub's REST specification.
#[derive(Deserialize)]
#[serde(untagged)]
enum ListBody {
    Array(Vec<JobResponse>),
    #[serde(rename_all = "camelCase")]
    QueryResult {
        items: Vec<JobResponse>,
        #[serde(default)]
        continuation_token: Option<String>,
    },
}

impl ServiceClient {
    async fn job_action(&self, job_id: &str, action: &str) -> Result<JobResponse, HubError> {
        let answer = self
            .call(
                Method::POST,
                &path(&["jobs", "v2", job_id, action], &[]),
                &[],
                None,
                job(job_id),
            )
            .await?;
        parse(&answer, "job")
    }
}

#[async_trait]
impl JobApi for ServiceClient {
    async fn create_job(&self, request: &JobRequest) -> Result<JobResponse, HubError> {
        request.validate()?;
        let answer = self
            .call(
                Method::PUT,
                &path(&["jobs", "v2", &request.job_id], &[]),
                &[],
                body(request)?,
                job(&request.job_id),
            )
            .await?;
        parse(&answer, "job")
    }

    async fn get_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        self.get_json(&["jobs", "v2", job_id], job(job_id), "job")
            .await
    }

    async fn cancel_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        self.job_action(job_id, "cancel").await
    }

    async fn pause_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        self.job_action(job_id, "pause").await
    }

    async fn resume_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        self.job_action(job_id, "resume").await
    }

    async fn query_jobs(
        &self,
        filter: &JobFilter,
        request: &PageRequest,
    ) -> Result<JobPage, HubError> {
        let mut query = Vec::new();
        if let Some(t) = filter.job_type {
            query.push(("jobType", t.as_str().to_string()));
        }
        if let Some(s) = filter.status {
            query.push(("jobStatus", s.as_str().to_string()));
        }
        let answer = self
            .call(
                Method::GET,
                &path(&["jobs", "v2", "query"], &query),
                &paging(request),
                None,
                About::default(),
            )
            .await?;
        let (items, token) = match parse(&answer, "job list")? {
            ListBody::Array(items) => (items, None),
            ListBody::QueryResult {
                items,
                continuation_token,
            } => (items, continuation_token),
        };
        Ok(JobPage::new(items, continuation(&answer).or(token)))
    }

    async fn device_jobs(
        &self,
        job_id: &str,
        request: &PageRequest,
    ) -> Result<DeviceJobPage, HubError> {
        let answer = self
            .call(
                Method::GET,
                &path(&["jobs", "v2", job_id, "devices"], &[]),
                &paging(request),
                None,
                job(job_id),
            )
            .await?;
        let items: Vec<DeviceJob> = parse(&answer, "device job page")?;
        Ok(DeviceJobPage::new(items, continuation(&answer)))
    }
}
