//! IoT Hub's automatic device configurations: `PUT/GET/DELETE /configurations/{id}`,
//! `GET /configurations?top=n` and `POST /configurations/testQueries`; ours: `POST
//! /configurations/{id}/pause|resume` for a configuration with a `rolloutPolicy`.
//!
//! A `PUT` without `If-Match` creates (201; `409401` when the id exists), with `If-Match` (an
//! ETag or `*`) it updates (200). The answer comes once the configuration is durable; the hub
//! applies it to the twins right after, in the background.

use http::StatusCode;
use serde_json::Value;

use iot_dm_core::configuration::{Configuration, QueriesTest};

use crate::api::prelude::*;
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{registry_read, registry_write, route, Route};
use crate::HubError;

use super::body_with_path_id;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(GET "/configurations", registry_read(), list),
        route!(POST "/configurations/testQueries", registry_read(), test_queries),
        route!(PUT "/configurations/{id}", registry_write(), put),
        route!(GET "/configurations/{id}", registry_read(), get),
        route!(DELETE "/configurations/{id}", registry_write(), delete),
        route!(POST "/configurations/{id}/pause", registry_write(), pause),
        route!(POST "/configurations/{id}/resume", registry_write(), resume),
    ]
}

async fn put(cx: Ctx) -> Result<Reply, ApiError> {
    let body = body_with_path_id(&cx, "id", "id", "configuration")?;
    let cfg = Configuration::from_json(&body).map_err(HubError::from)?;
    let if_match = cx.if_match()?;
    let stored = cx.hub.put_configuration(&cfg, if_match).await?;
    let status = if if_match.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Reply::json_status(status, &stored.to_json())
}

async fn get(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.get_configuration(cx.param("id")).await?.to_json())
}

async fn list(cx: Ctx) -> Result<Reply, ApiError> {
    let top = match cx.query("top").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(t.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::argument("top", format!("{t:?} is not a positive whole number"))
        })?),
    };
    let all = cx.hub.list_configurations(top).await?;
    let body: Vec<Value> = all.iter().map(Configuration::to_json).collect();
    Reply::json(&body)
}

async fn delete(cx: Ctx) -> Result<Reply, ApiError> {
    cx.hub
        .delete_configuration(cx.param("id"), cx.if_match()?)
        .await?;
    Ok(Reply::no_content())
}

async fn test_queries(cx: Ctx) -> Result<Reply, ApiError> {
    let test: QueriesTest = cx.json("configuration queries test")?;
    Reply::json(&cx.hub.test_configuration_queries(&test).await?)
}

async fn pause(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.pause_configuration(cx.param("id")).await?.to_json())
}

async fn resume(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.resume_configuration(cx.param("id")).await?.to_json())
}
