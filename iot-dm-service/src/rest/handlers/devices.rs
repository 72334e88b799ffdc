//! The identity registry: `PUT/GET/DELETE /devices/{id}`, `GET /devices`, `POST /devices`
//! (bulk).

use serde::Deserialize;
use serde_json::Value;

use iot_dm_core::identity::DeviceId;
use iot_dm_core::twin::{Capabilities, DeviceStatus};

use crate::api::prelude::*;
use crate::hub::{Authentication, DeviceSpec, ImportDevice, MAX_BULK};
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{registry_read, registry_write, route, Route};
use crate::HubError;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(PUT "/devices/{id}", registry_write(), put_device),
        route!(GET "/devices/{id}", registry_read(), get_device),
        route!(DELETE "/devices/{id}", registry_write(), delete_device),
        route!(GET "/devices", registry_read(), list_devices),
        route!(POST "/devices", registry_write(), bulk),
    ]
}

/// The body of `PUT /devices/{id}`: IoT Hub's device JSON, read leniently (read-only fields a
/// client sends back are ignored), plus our create-time `tags` and `properties.desired`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceBody {
    device_id: Option<String>,
    status: Option<DeviceStatus>,
    status_reason: Option<String>,
    authentication: Option<Authentication>,
    capabilities: Option<Capabilities>,
    tags: Option<Value>,
    properties: Option<Desired>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Desired {
    pub(crate) desired: Option<Value>,
}

/// Empty keys and thumbprints mean "none" (SDKs send `""` to ask for generated keys).
pub(crate) fn normalize(mut auth: Authentication) -> Authentication {
    for slot in [
        &mut auth.symmetric_key.primary_key,
        &mut auth.symmetric_key.secondary_key,
        &mut auth.x509_thumbprint.primary_thumbprint,
        &mut auth.x509_thumbprint.secondary_thumbprint,
    ] {
        if slot.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *slot = None;
        }
    }
    auth
}

pub(crate) fn parse_id(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(id).map_err(|e| ApiError::from(HubError::invalid("deviceId", e.to_string())))
}

async fn put_device(cx: Ctx) -> Result<Reply, ApiError> {
    let id = cx.param("id");
    let body: DeviceBody = cx.json("device")?;
    if let Some(body_id) = &body.device_id {
        if body_id != id {
            return Err(ApiError::argument(
                "deviceId",
                format!("the body names {body_id:?} but the path names {id:?}"),
            ));
        }
    }
    let auth = body.authentication.map(normalize);
    match cx.if_match()? {
        None => {
            let mut spec = DeviceSpec::new(parse_id(id)?);
            if let Some(a) = auth {
                spec = spec.authentication(a);
            }
            if body.status == Some(DeviceStatus::Disabled) {
                spec = spec.disabled(body.status_reason.unwrap_or_else(|| "disabled".into()));
            }
            if let Some(c) = body.capabilities {
                spec = spec.capabilities(c);
            }
            if let Some(t) = body.tags {
                spec = spec.tags(t);
            }
            if let Some(d) = body.properties.and_then(|p| p.desired) {
                spec = spec.desired(d);
            }
            Reply::json(&cx.hub.create_device(spec).await?)
        }
        Some(if_match) => {
            if body.tags.is_some() || body.properties.is_some() {
                return Err(ApiError::argument(
                    "tags",
                    "tags and properties are only accepted when creating a device; update the twin instead",
                ));
            }
            let mut device = cx.hub.get_device(id)?;
            if let Some(s) = body.status {
                device.identity_mut().status = s;
            }
            if body.status_reason.is_some() {
                device.identity_mut().status_reason = body.status_reason;
            }
            if let Some(a) = auth {
                device.set_authentication(a);
            }
            if let Some(c) = body.capabilities {
                device.identity_mut().capabilities = c;
            }
            Reply::json(&cx.hub.update_device(device, Some(if_match)).await?)
        }
    }
}

async fn get_device(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.get_device(cx.param("id"))?)
}

async fn delete_device(cx: Ctx) -> Result<Reply, ApiError> {
    cx.hub.delete_device(cx.param("id"), cx.if_match()?).await?;
    Ok(Reply::no_content())
}

async fn list_devices(cx: Ctx) -> Result<Reply, ApiError> {
    let top = match cx.query("top") {
        None | Some("") => 1000,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::argument(
                    "top",
                    format!("{t:?} is not a whole number in 1..=1000"),
                ))
            }
        },
    };
    let continuation = cx.header("x-ms-continuation")?.filter(|c| !c.is_empty());
    let page = cx.hub.list_devices(continuation, top)?;
    let reply = Reply::json(&page.items)?;
    Ok(match &page.continuation {
        Some(c) => reply.header("x-ms-continuation", c),
        None => reply,
    })
}

async fn bulk(cx: Ctx) -> Result<Reply, ApiError> {
    let devices: Vec<ImportDevice> = cx.json("list of ExportImportDevice")?;
    if devices.len() > MAX_BULK {
        return Err(HubError::TooManyDevices {
            count: devices.len(),
            limit: MAX_BULK,
        }
        .into());
    }
    let result = cx.hub.bulk(devices).await?;
    let status = if result.is_successful {
        http::StatusCode::OK
    } else {
        http::StatusCode::BAD_REQUEST
    };
    Reply::json_status(status, &result)
}
