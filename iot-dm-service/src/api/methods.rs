//! [`MethodApi`]: direct methods.

use async_trait::async_trait;

use iot_dm_core::method::{MethodRequest, MethodResponse};

use crate::hub::HubError;

/// Direct methods: a request to a connected device and its answer.
#[async_trait]
pub trait MethodApi: Send + Sync + std::fmt::Debug {
    /// Invokes a direct method (`POST /twins/{id}/methods`) and returns the device's status and
    /// payload. [`HubError::DeviceNotOnline`] when the device does not listen within the
    /// connect timeout, [`HubError::GatewayTimeout`] when it does not answer within the
    /// response timeout.
    async fn invoke_method(
        &self,
        device_id: &str,
        request: &MethodRequest,
    ) -> Result<MethodResponse, HubError>;
}
