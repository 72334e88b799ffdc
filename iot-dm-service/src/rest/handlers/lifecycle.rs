//! Our lifecycle and administration routes (IoT Hub has none): plan, provision, enable,
//! disable, retire, replace, and key regeneration.

use serde::Deserialize;
use serde_json::Value;

use iot_dm_core::twin::Capabilities;

use crate::api::prelude::*;
use crate::hub::{Authentication, DeviceSpec};
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{registry_write, route, Route};

use super::devices::{normalize, parse_id, Desired};
use super::WhichKey;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(POST "/devices/{id}/plan", registry_write(), plan),
        route!(POST "/devices/{id}/provision", registry_write(), provision),
        route!(POST "/devices/{id}/enable", registry_write(), enable),
        route!(POST "/devices/{id}/disable", registry_write(), disable),
        route!(POST "/devices/{id}/retire", registry_write(), retire),
        route!(POST "/devices/{id}/replace", registry_write(), replace),
        route!(POST "/devices/{id}/keys/regenerate", registry_write(), regenerate_key),
    ]
}

#[derive(Debug, Default, Deserialize)]
struct PlanBody {
    tags: Option<Value>,
    properties: Option<Desired>,
    capabilities: Option<Capabilities>,
}

#[derive(Debug, Default, Deserialize)]
struct ProvisionBody {
    authentication: Option<Authentication>,
}

#[derive(Debug, Default, Deserialize)]
struct DisableBody {
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplaceBody {
    device_id: String,
    authentication: Option<Authentication>,
}

async fn plan(cx: Ctx) -> Result<Reply, ApiError> {
    let body: PlanBody = cx.optional_json("plan")?.unwrap_or_default();
    let mut spec = DeviceSpec::new(parse_id(cx.param("id"))?);
    if let Some(t) = body.tags {
        spec = spec.tags(t);
    }
    if let Some(d) = body.properties.and_then(|p| p.desired) {
        spec = spec.desired(d);
    }
    if let Some(c) = body.capabilities {
        spec = spec.capabilities(c);
    }
    Reply::json(&cx.hub.plan_device(spec).await?)
}

async fn provision(cx: Ctx) -> Result<Reply, ApiError> {
    let body: ProvisionBody = cx.optional_json("provisioning")?.unwrap_or_default();
    let auth = body.authentication.map(normalize);
    Reply::json(&cx.hub.provision_device(cx.param("id"), auth).await?)
}

async fn enable(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.enable_device(cx.param("id")).await?)
}

async fn disable(cx: Ctx) -> Result<Reply, ApiError> {
    let body: DisableBody = cx.optional_json("disable")?.unwrap_or_default();
    let reason = body.reason.unwrap_or_else(|| "disabled".into());
    Reply::json(&cx.hub.disable_device(cx.param("id"), &reason).await?)
}

async fn retire(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.retire_device(cx.param("id")).await?)
}

async fn replace(cx: Ctx) -> Result<Reply, ApiError> {
    let body: ReplaceBody = cx.json("successor")?;
    let mut spec = DeviceSpec::new(parse_id(&body.device_id)?);
    if let Some(a) = body.authentication {
        spec = spec.authentication(normalize(a));
    }
    Reply::json(&cx.hub.replace_device(cx.param("id"), spec).await?)
}

async fn regenerate_key(cx: Ctx) -> Result<Reply, ApiError> {
    let which: WhichKey = cx.json("key choice")?;
    Reply::json(&cx.hub.regenerate_key(cx.param("id"), which.kind()?).await?)
}
