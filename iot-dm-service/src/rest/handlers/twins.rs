//! Twins and direct methods: `GET/PATCH/PUT /twins/{id}`, `POST /twins/{id}/methods`.

use iot_dm_core::method::MethodRequest;
use iot_dm_core::twin::TwinPatch;

use crate::api::prelude::*;
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{route, service_connect, twin_read, Route};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(GET "/twins/{id}", twin_read(), get_twin),
        route!(PATCH "/twins/{id}", service_connect(), update_twin),
        route!(PUT "/twins/{id}", service_connect(), replace_twin),
        route!(POST "/twins/{id}/methods", service_connect(), invoke_method),
    ]
}

async fn get_twin(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.get_twin(cx.param("id"))?)
}

async fn update_twin(cx: Ctx) -> Result<Reply, ApiError> {
    let patch: TwinPatch = cx.json("twin patch")?;
    let twin = cx
        .hub
        .update_twin(cx.param("id"), &patch, cx.if_match()?)
        .await?;
    Reply::json(&twin)
}

async fn replace_twin(cx: Ctx) -> Result<Reply, ApiError> {
    let replacement: TwinPatch = cx.json("twin")?;
    let twin = cx
        .hub
        .replace_twin(cx.param("id"), &replacement, cx.if_match()?)
        .await?;
    Reply::json(&twin)
}

async fn invoke_method(cx: Ctx) -> Result<Reply, ApiError> {
    let request: MethodRequest = cx.json("method request")?;
    Reply::json(&cx.hub.invoke_method(cx.param("id"), &request).await?)
}
