//! The back end of the endpoint conformance suite: an in-memory [`Hub`], with whatever
//! endpoint reaches it (the hub itself, a fault-injecting wrapper, its MQTT endpoint).

use std::time::Duration;

use serde_json::Value;

use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::testkit::{BoxError, Fixture, TwinView};
use iot_dm_core::link::Endpoint;
use iot_dm_core::method::MethodRequest;
use iot_dm_core::twin::TwinPatch;
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{Authentication, DeviceSpec, Hub};

/// A hub in memory answering to `host`.
pub async fn hub(host: &str) -> Hub {
    Hub::builder()
        .in_memory()
        .host_name(host)
        .open()
        .await
        .expect("an in-memory hub opens")
}

/// `endpoint`, with `hub` as the back end.
pub struct HubFixture<E> {
    pub hub: Hub,
    pub endpoint: E,
    /// How long a check waits for any one thing.
    pub patience: Duration,
}

impl<E> HubFixture<E> {
    pub fn new(hub: Hub, endpoint: E) -> HubFixture<E> {
        HubFixture {
            hub,
            endpoint,
            patience: Duration::from_secs(10),
        }
    }
}

#[async_trait::async_trait]
impl<E: Endpoint> Fixture for HubFixture<E> {
    fn endpoint(&self) -> &dyn Endpoint {
        &self.endpoint
    }

    fn host_name(&self) -> String {
        self.hub.host_name().to_string()
    }

    fn patience(&self) -> Duration {
        self.patience
    }

    async fn create_device(&self, device: &DeviceId, key: &str) -> Result<(), BoxError> {
        let spec = DeviceSpec::new(device.clone()).authentication(Authentication::sas(key, key));
        self.hub.create_device(spec).await?;
        Ok(())
    }

    async fn update_desired(&self, device: &DeviceId, patch: &Value) -> Result<u64, BoxError> {
        let patch = TwinPatch {
            tags: None,
            desired: Some(patch.clone()),
        };
        let twin = self.hub.update_twin(device.as_str(), &patch, None).await?;
        Ok(twin.desired().version())
    }

    async fn invoke_method(
        &self,
        device: &DeviceId,
        name: &str,
        payload: &Value,
    ) -> Result<(i32, Value), BoxError> {
        let request = MethodRequest::builder(name)
            .payload(payload.clone())
            .connect_timeout(Duration::from_secs(10))
            .response_timeout(Duration::from_secs(10))
            .build()?;
        let response = self.hub.invoke_method(device.as_str(), &request).await?;
        Ok((response.status, response.payload))
    }

    async fn twin(&self, device: &DeviceId) -> Result<TwinView, BoxError> {
        let twin = self.hub.get_twin(device.as_str())?;
        Ok(TwinView {
            desired: twin.desired().doc().to_value(),
            desired_version: twin.desired().version(),
            reported: twin.reported().doc().to_value(),
            reported_version: twin.reported().version(),
        })
    }
}
