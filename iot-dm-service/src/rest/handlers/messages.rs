//! Cloud-to-device messages: `POST /devices/{id}/commands` queues one (ours: IoT Hub sends
//! them over AMQP), `DELETE /devices/{id}/commands` purges the queue (IoT Hub's route).

use serde::Serialize;

use crate::api::prelude::*;
use crate::hub::{CloudMessage, MessageBody};
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{route, service_connect, Route};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(POST "/devices/{id}/commands", service_connect(), send),
        route!(DELETE "/devices/{id}/commands", service_connect(), purge),
    ]
}

/// `{"messageId": ...}`, the answer to a send.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Sent {
    message_id: String,
}

/// IoT Hub's `PurgeMessageQueueResult`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Purged<'a> {
    device_id: &'a str,
    module_id: Option<&'a str>,
    total_messages_purged: usize,
}

async fn send(cx: Ctx) -> Result<Reply, ApiError> {
    let body: MessageBody = cx.json("cloud-to-device message")?;
    let message_id = cx
        .hub
        .send_c2d(cx.param("id"), CloudMessage::from(body))
        .await?;
    Reply::json(&Sent { message_id })
}

async fn purge(cx: Ctx) -> Result<Reply, ApiError> {
    let id = cx.param("id");
    let total_messages_purged = cx.hub.purge_c2d(id).await?;
    Reply::json(&Purged {
        device_id: id,
        module_id: None,
        total_messages_purged,
    })
}
