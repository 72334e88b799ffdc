//! X.509 certification authorities (ours; IoT Hub manages them through Azure Resource
//! Manager): `GET /certificates`, `PUT/DELETE /certificates/{name}`. Registering a CA vouches
//! for device identities, so changing them takes RegistryWrite, as identities do.

use serde::Deserialize;

use crate::api::prelude::*;
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{registry_read, registry_write, route, Route};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(GET "/certificates", registry_read(), list),
        route!(PUT "/certificates/{name}", registry_write(), put),
        route!(DELETE "/certificates/{name}", registry_write(), delete),
    ]
}

/// `{"certificate": "-----BEGIN CERTIFICATE-----..."}`, the body of a PUT.
#[derive(Debug, Deserialize)]
struct CertificateBody {
    certificate: String,
}

async fn list(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.ca_certificates())
}

async fn put(cx: Ctx) -> Result<Reply, ApiError> {
    let body: CertificateBody = cx.json("CA certificate")?;
    let ca = cx
        .hub
        .add_ca_certificate(cx.param("name"), &body.certificate)
        .await?;
    Reply::json(&ca)
}

async fn delete(cx: Ctx) -> Result<Reply, ApiError> {
    cx.hub.remove_ca_certificate(cx.param("name")).await?;
    Ok(Reply::no_content())
}
