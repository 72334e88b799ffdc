//! [`MethodApi`] over `POST /twins/{id}/methods`.

use async_trait::async_trait;
use http::Method;

use iot_dm_core::method::{MethodRequest, MethodResponse};

use super::codec::{body, parse};
use super::errors::About;
use super::{path, ServiceClient};
use crate::api::MethodApi;
use crate::hub::HubError;

#[async_trait]
impl MethodApi for ServiceClient {
    async fn invoke_method(
        &self,
        device_id: &str,
        request: &MethodRequest,
    ) -> Result<MethodResponse, HubError> {
        let timeout_secs =
            request.response_timeout().as_secs() + request.connect_timeout().as_secs();
        let answer = self
            .call(
                Method::POST,
                &path(&["twins", device_id, "methods"], &[]),
                &[],
                body(request)?,
                About {
                    device_id: Some(device_id),
                    if_match: None,
                    timeout_secs,
                    ..About::default()
                },
            )
            .await?;
        parse(&answer, "method response")
    }
}
