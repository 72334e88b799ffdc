//! IoT Hub's jobs v2: `PUT/GET /jobs/v2/{jobId}`, `POST /jobs/v2/{jobId}/cancel`,
//! `GET /jobs/v2/query?jobType=&jobStatus=`; ours: `POST /jobs/v2/{jobId}/pause|resume` and
//! `GET /jobs/v2/{jobId}/devices` (the job's device records, paged).
//!
//! The job list is `{"type": "jobResponse", "items": [...], "continuationToken": ...}` (the
//! `QueryResult` the Python service SDK deserializes; the Node SDK hands the body to its caller
//! as it is), and the `x-ms-continuation` header carries the same token.

use serde_json::{json, Value};

use iot_dm_core::job::{JobRequest, JobStatus, JobType};

use crate::api::prelude::*;
use crate::api::JobFilter;
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{route, service_connect, twin_read, Route};
use crate::HubError;

use super::page_request;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(PUT "/jobs/v2/{jobId}", service_connect(), create),
        route!(GET "/jobs/v2/query", twin_read(), list),
        route!(GET "/jobs/v2/{jobId}", twin_read(), get),
        route!(POST "/jobs/v2/{jobId}/cancel", service_connect(), cancel),
        route!(POST "/jobs/v2/{jobId}/pause", service_connect(), pause),
        route!(POST "/jobs/v2/{jobId}/resume", service_connect(), resume),
        route!(GET "/jobs/v2/{jobId}/devices", twin_read(), devices),
    ]
}

fn paged(reply: Reply, continuation: Option<&str>) -> Reply {
    match continuation {
        Some(c) => reply.header("x-ms-continuation", c),
        None => reply,
    }
}

async fn create(cx: Ctx) -> Result<Reply, ApiError> {
    let id = cx.param("jobId");
    let mut body: Value = cx.json("job request")?;
    if let Some(obj) = body.as_object_mut() {
        match obj.get("jobId") {
            None | Some(Value::Null) => {
                obj.insert("jobId".into(), json!(id));
            }
            Some(Value::String(b)) if b == id => {}
            Some(other) => {
                return Err(ApiError::argument(
                    "jobId",
                    format!("the body names {other} but the path names {id:?}"),
                ))
            }
        }
    }
    let request = JobRequest::from_json(&body).map_err(HubError::from)?;
    Reply::json(&cx.hub.create_job(&request).await?)
}

async fn get(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.get_job(cx.param("jobId")).await?)
}

async fn cancel(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.cancel_job(cx.param("jobId")).await?)
}

async fn pause(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.pause_job(cx.param("jobId")).await?)
}

async fn resume(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.resume_job(cx.param("jobId")).await?)
}

async fn list(cx: Ctx) -> Result<Reply, ApiError> {
    let mut filter = JobFilter::new();
    if let Some(t) = cx.query("jobType").filter(|t| !t.is_empty()) {
        filter = filter.job_type(JobType::parse(t).ok_or_else(|| {
            ApiError::argument(
                "jobType",
                format!("{t:?} is not one of scheduleUpdateTwin, scheduleDeviceMethod"),
            )
        })?);
    }
    if let Some(s) = cx.query("jobStatus").filter(|s| !s.is_empty()) {
        filter = filter.status(JobStatus::parse(s).ok_or_else(|| {
            ApiError::argument(
                "jobStatus",
                format!(
                    "{s:?} is not one of queued, scheduled, running, completed, failed, cancelled"
                ),
            )
        })?);
    }
    let page = cx.hub.query_jobs(&filter, &page_request(&cx)?).await?;
    let body = json!({
        "type": "jobResponse",
        "items": page.items,
        "continuationToken": page.continuation,
    });
    let reply = Reply::json(&body)?.header("x-ms-item-type", "jobResponse");
    Ok(paged(reply, page.continuation.as_deref()))
}

async fn devices(cx: Ctx) -> Result<Reply, ApiError> {
    let page = cx
        .hub
        .device_jobs(cx.param("jobId"), &page_request(&cx)?)
        .await?;
    let reply = Reply::json(&page.items)?.header("x-ms-item-type", "deviceJob");
    Ok(paged(reply, page.continuation.as_deref()))
}
