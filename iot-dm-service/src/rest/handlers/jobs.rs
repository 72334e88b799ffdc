//! IoT Hub's jobs v2: `PUT/GET /jobs/v2/{jobId}`, `POST /jobs/v2/{jobId}/cancel`,
//! `GET /jobs/v2/query?jobType=&jobStatus=`; ours: `POST /jobs/v2/{jobId}/pause|resume` and
//! `GET /jobs/v2/{jobId}/devices` (the job's device records, paged).
//!
//! The job list is a page of jobs with `x-ms-item-type: jobResponse` and, while more pages
//! follow, `x-ms-continuation`. Its body has one of two shapes (see [`ListShape`]): a JSON
//! array of jobs, as IoT Hub sends it and as the Node, C# and Java SDKs and their callers read
//! it, or, for clients generated from IoT Hub's REST specification (the Python SDK), the
//! `QueryResult` object `{"type", "items", "continuationToken"}` that specification declares.

use serde::Serialize;

use iot_dm_core::job::{JobRequest, JobResponse, JobStatus, JobType};

use crate::api::prelude::*;
use crate::api::JobFilter;
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{route, service_connect, twin_read, Route};
use crate::HubError;

use super::{body_with_path_id, page_request};

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
    let body = body_with_path_id(&cx, "jobId", "jobId", "job request")?;
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
    let shape = ListShape::of(cx.header("user-agent").ok().flatten());
    let body = shape.body(&page.items, page.continuation.as_deref());
    let reply = Reply::json(&body)?
        .header("x-ms-item-type", "jobResponse")
        .header("vary", "User-Agent");
    Ok(paged(reply, page.continuation.as_deref()))
}

/// The body shape of a job list page.
///
/// IoT Hub answers `GET /jobs/v2/query` with a JSON array of jobs, the paging in headers; the
/// Node SDK hands that array to its caller (`query.next()`), the C# and Java SDKs parse it as
/// a list. IoT Hub's REST specification declares a `QueryResult` object instead, and clients
/// generated from it deserialize the body as one: the Python SDK (`query_scheduled_jobs`,
/// msrest) fails on an array. Those clients name the specification in their `User-Agent`
/// (`iothubgatewayserviceapis/{api-version}`), so they get the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListShape {
    /// `[job, ...]`.
    Array,
    /// `{"type": "jobResponse", "items": [job, ...], "continuationToken": token-or-null}`.
    QueryResult,
}

impl ListShape {
    /// The shape for a request with this `User-Agent`.
    pub(crate) fn of(user_agent: Option<&str>) -> ListShape {
        let generated = user_agent.is_some_and(|ua| {
            ua.to_ascii_lowercase()
                .contains("iothubgatewayserviceapis/")
        });
        if generated {
            ListShape::QueryResult
        } else {
            ListShape::Array
        }
    }

    /// The body of a page of `items` followed by `continuation`.
    pub(crate) fn body<'a>(
        self,
        items: &'a [JobResponse],
        continuation: Option<&'a str>,
    ) -> ListBody<'a> {
        match self {
            ListShape::Array => ListBody::Array(items),
            ListShape::QueryResult => ListBody::QueryResult {
                kind: "jobResponse",
                items,
                continuation_token: continuation,
            },
        }
    }
}

/// A job list body in its [`ListShape`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ListBody<'a> {
    Array(&'a [JobResponse]),
    #[serde(rename_all = "camelCase")]
    QueryResult {
        #[serde(rename = "type")]
        kind: &'static str,
        items: &'a [JobResponse],
        continuation_token: Option<&'a str>,
    },
}

async fn devices(cx: Ctx) -> Result<Reply, ApiError> {
    let page = cx
        .hub
        .device_jobs(cx.param("jobId"), &page_request(&cx)?)
        .await?;
    let reply = Reply::json(&page.items)?.header("x-ms-item-type", "deviceJob");
    Ok(paged(reply, page.continuation.as_deref()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// The `User-Agent` of the Python SDK's `query_scheduled_jobs` (msrest, azure-iot-hub 2.7.0).
    const PYTHON: &str = "python/3.11.7 (Linux-6.1-x86_64-with-glibc2.36) msrest/0.7.1 iothubgatewayserviceapis/2021-04-12";
    /// The `User-Agent` of the Node SDK's `JobClient.createQuery(...).next()`.
    const NODE: &str = "azure-iothub/1.16.6";

    fn job(id: &str) -> JobResponse {
        serde_json::from_value(json!({
            "jobId": id, "type": "scheduleDeviceMethod", "status": "completed",
            "queryCondition": "*", "createdTime": "2026-12-03T17:00:00Z",
            "startTime": "2026-12-03T17:00:00Z", "endTime": "2026-12-03T17:00:01Z",
            "maxExecutionTimeInSeconds": 3600,
            "cloudToDeviceMethod": {"methodName": "reboot", "payload": null,
                                    "responseTimeoutInSeconds": 30},
            "deviceJobStatistics": {"deviceCount": 1, "failedCount": 0, "succeededCount": 1,
                                    "runningCount": 0, "pendingCount": 0}
        }))
        .unwrap()
    }

    #[test]
    fn the_spec_generated_client_gets_query_result_and_the_others_an_array() {
        assert_eq!(ListShape::of(Some(PYTHON)), ListShape::QueryResult);
        assert_eq!(ListShape::of(Some(NODE)), ListShape::Array);
        assert_eq!(ListShape::of(None), ListShape::Array);
        assert_eq!(
            ListShape::of(Some("Microsoft.Azure.Devices/1.39.0")),
            ListShape::Array
        );
    }

    #[test]
    fn list_bodies_as_each_sdk_parses_them() {
        let items = [job("j1"), job("j2")];
        let one = serde_json::to_value(job("j1")).unwrap();
        let two = serde_json::to_value(job("j2")).unwrap();
        // Node: the array itself is `page.result`
        let array = serde_json::to_value(ListShape::Array.body(&items, Some("j2"))).unwrap();
        assert_eq!(array, json!([one, two]));
        // Python: msrest deserializes QueryResult {type, items: [object], continuationToken}
        let object =
            serde_json::to_value(ListShape::QueryResult.body(&items[..1], Some("j1"))).unwrap();
        assert_eq!(
            object,
            json!({"type": "jobResponse", "items": [one], "continuationToken": "j1"})
        );
        let last = serde_json::to_value(ListShape::QueryResult.body(&[], None)).unwrap();
        assert_eq!(
            last,
            json!({"type": "jobResponse", "items": [], "continuationToken": null})
        );
        // the spellings both SDKs read from a job
        let j = &array[0];
        assert_eq!(j["status"], "completed");
        assert_eq!(j["type"], "scheduleDeviceMethod");
        for field in ["createdTime", "startTime", "endTime"] {
            assert!(j[field].as_str().unwrap().ends_with('Z'), "{field}: {j}");
        }
        assert_eq!(j["deviceJobStatistics"]["succeededCount"], 1);
    }
}
