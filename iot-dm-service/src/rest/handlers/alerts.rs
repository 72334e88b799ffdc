//! Fleet alerts (ours; IoT Hub has none): `PUT/GET/DELETE /alerts/rules/{id}`,
//! `GET /alerts/rules`, `GET /alerts?state=active|cleared|all`, `GET /alerts/{id}` and
//! `POST /alerts/{id}/acknowledge`.
//!
//! A `PUT` creates or replaces a rule (200) once it is durable; the hub counts it over every
//! twin right after. An acknowledgement records the name its optional body gives
//! (`{"by": name}`), or else the policy the caller's token names.

use serde_json::Value;

use iot_dm_core::alert::{Alert, AlertRule, AlertState};

use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{registry_read, registry_write, route, Route};
use crate::HubError;

use super::body_with_path_id;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(GET "/alerts", registry_read(), list_alerts),
        route!(GET "/alerts/rules", registry_read(), list_rules),
        route!(PUT "/alerts/rules/{id}", registry_write(), put_rule),
        route!(GET "/alerts/rules/{id}", registry_read(), get_rule),
        route!(DELETE "/alerts/rules/{id}", registry_write(), delete_rule),
        route!(GET "/alerts/{id}", registry_read(), get_alert),
        route!(POST "/alerts/{id}/acknowledge", registry_write(), acknowledge),
    ]
}

async fn put_rule(cx: Ctx) -> Result<Reply, ApiError> {
    let body = body_with_path_id(&cx, "id", "id", "alert rule")?;
    let rule = AlertRule::from_json(&body).map_err(HubError::from)?;
    Reply::json(&cx.hub.put_alert_rule(&rule).await?.to_json())
}

async fn get_rule(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.alert_rule(cx.param("id"))?.to_json())
}

async fn list_rules(cx: Ctx) -> Result<Reply, ApiError> {
    let body: Vec<Value> = cx
        .hub
        .alert_rules()
        .iter()
        .map(AlertRule::to_json)
        .collect();
    Reply::json(&body)
}

async fn delete_rule(cx: Ctx) -> Result<Reply, ApiError> {
    cx.hub.delete_alert_rule(cx.param("id")).await?;
    Ok(Reply::no_content())
}

async fn list_alerts(cx: Ctx) -> Result<Reply, ApiError> {
    let state = match cx.query("state").filter(|s| !s.is_empty()) {
        None | Some("all") => None,
        Some(s) => Some(AlertState::parse(s).ok_or_else(|| {
            ApiError::argument("state", format!("{s:?} is not one of active, cleared, all"))
        })?),
    };
    let body: Vec<Value> = cx.hub.alerts(state).iter().map(Alert::to_json).collect();
    Reply::json(&body)
}

async fn get_alert(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.alert(cx.param("id"))?.to_json())
}

/// The optional body of an acknowledgement.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Acknowledgement {
    by: Option<String>,
}

async fn acknowledge(cx: Ctx) -> Result<Reply, ApiError> {
    let by = cx
        .optional_json::<Acknowledgement>("acknowledgement")?
        .and_then(|a| a.by)
        .unwrap_or_else(|| cx.grant.policy.clone());
    Reply::json(
        &cx.hub
            .acknowledge_alert(cx.param("id"), &by)
            .await?
            .to_json(),
    )
}
