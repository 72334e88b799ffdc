//! [`MessageApi`] over `POST /devices/{id}/commands` (ours) and `DELETE /devices/{id}/commands`
//! (IoT Hub's purge).

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;

use super::codec::{body, device, parse};
use super::{path, ServiceClient};
use crate::api::MessageApi;
use crate::hub::{CloudMessage, HubError, MessageBody};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sent {
    message_id: String,
}

/// IoT Hub's `PurgeMessageQueueResult` (its device and module ids are not needed).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Purged {
    total_messages_purged: usize,
}

#[async_trait]
impl MessageApi for ServiceClient {
    async fn send_c2d(&self, device_id: &str, message: CloudMessage) -> Result<String, HubError> {
        let answer = self
            .call(
                Method::POST,
                &path(&["devices", device_id, "commands"], &[]),
                &[],
                body(&MessageBody::from(&message))?,
                device(device_id),
            )
            .await?;
        Ok(parse::<Sent>(&answer, "sent message")?.message_id)
    }

    async fn purge_c2d(&self, device_id: &str) -> Result<usize, HubError> {
        let answer = self
            .call(
                Method::DELETE,
                &path(&["devices", device_id, "commands"], &[]),
                &[],
                None,
                device(device_id),
            )
            .await?;
        Ok(parse::<Purged>(&answer, "purge result")?.total_messages_purged)
    }
}
