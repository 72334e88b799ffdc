//! `GET /statistics/devices` and `GET /statistics/service`.

use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{registry_read, route, twin_read, Route};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(GET "/statistics/devices", registry_read(), devices),
        route!(GET "/statistics/service", twin_read(), service),
    ]
}

async fn devices(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.registry_statistics())
}

async fn service(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.service_statistics())
}
