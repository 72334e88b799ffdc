//! [`TwinApi`] over `/twins/{id}` and `/archive/twins/{id}`.

use async_trait::async_trait;
use http::Method;

use iot_dm_core::twin::{Twin, TwinPatch};

use super::codec::{body, device, parse, twin_body};
use super::errors::About;
use super::{path, ServiceClient};
use crate::api::TwinApi;
use crate::hub::HubError;

#[async_trait]
impl TwinApi for ServiceClient {
    async fn get_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        self.get_json(&["twins", device_id], device(device_id), "twin")
            .await
    }

    async fn update_twin(
        &self,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.twin_write(Method::PATCH, device_id, patch, if_match)
            .await
    }

    async fn replace_twin(
        &self,
        device_id: &str,
        replacement: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.twin_write(Method::PUT, device_id, replacement, if_match)
            .await
    }

    async fn get_archived_twin(&self, device_id: &str) -> Result<Twin, HubError> {
        self.get_json(&["archive", "twins", device_id], device(device_id), "twin")
            .await
    }
}

impl ServiceClient {
    async fn twin_write(
        &self,
        method: Method,
        device_id: &str,
        patch: &TwinPatch,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        let headers: Vec<(&'static str, String)> = if_match
            .map(|m| vec![("if-match", m.to_string())])
            .unwrap_or_default();
        let answer = self
            .call(
                method,
                &path(&["twins", device_id], &[]),
                &headers,
                body(&twin_body(patch.tags.as_ref(), patch.desired.as_ref()))?,
                About {
                    device_id: Some(device_id),
                    if_match,
                    timeout_secs: 0,
                    ..About::default()
                },
            )
            .await?;
        parse(&answer, "twin")
    }
}
