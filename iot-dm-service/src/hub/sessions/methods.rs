//! Direct methods: a synchronous request to a connected device.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use iot_dm_core::lifecycle::LifecycleState;
use iot_dm_core::link::{Message, QoS};
use iot_dm_core::method::{encode_payload, MethodRequest, MethodResponse};
use iot_dm_core::wire::{self, RequestId};

use super::SessionHandle;
use crate::api::MethodApi;
use crate::hub::engine::locked;
use crate::hub::error::HubError;
use crate::hub::Hub;

/// Direct methods of the embedded hub.
#[async_trait]
impl MethodApi for Hub {
    /// Invokes a direct method and returns the device's status and payload.
    ///
    /// Waits up to the request's connect timeout for the device to be online and listening for
    /// methods ([`HubError::DeviceNotOnline`], IoT Hub's 404103, when it is not), then up to
    /// the response timeout for its answer ([`HubError::GatewayTimeout`], 504101). Unknown,
    /// planned, disabled and retired devices give [`HubError::DeviceNotFound`] (404001).
    /// Any number of invocations may be in flight, to one device or many.
    async fn invoke_method(
        &self,
        device_id: &str,
        request: &MethodRequest,
    ) -> Result<MethodResponse, HubError> {
        let device = self.get_device(device_id)?;
        if device.state() != LifecycleState::Enabled {
            return Err(HubError::not_found(device_id));
        }
        let session = self.wait_for_listener(device_id, request).await?;
        let rid = RequestId::new(
            self.inner
                .sessions
                .next_rid
                .fetch_add(1, Ordering::Relaxed)
                .to_string(),
        )
        .map_err(|e| HubError::Internal {
            message: e.to_string(),
        })?;
        let (tx, rx) = oneshot::channel();
        locked(&session.shared.pending).insert(rid.as_str().to_string(), tx);
        let payload = Bytes::from(encode_payload(request.payload())?);
        if !self.send_method_request(&session, request.name().as_str(), &rid, payload) {
            self.forget(&session, &rid);
            return Err(HubError::DeviceNotOnline {
                device_id: device_id.to_string(),
            });
        }
        match tokio::time::timeout(request.response_timeout(), rx).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => Err(HubError::DeviceNotOnline {
                device_id: device_id.to_string(),
            }),
            Err(_) => {
                self.forget(&session, &rid);
                Err(HubError::GatewayTimeout {
                    device_id: device_id.to_string(),
                    timeout_secs: request.response_timeout().as_secs(),
                })
            }
        }
    }
}

impl Hub {
    /// Whether the device has a session that listens for direct methods now.
    pub fn listening_for_methods(&self, device_id: &str) -> bool {
        self.inner
            .sessions
            .get(device_id)
            .is_some_and(|h| h.shared.subs.methods.load(Ordering::Relaxed))
    }

    fn forget(&self, session: &SessionHandle, rid: &RequestId) {
        locked(&session.shared.pending).remove(rid.as_str());
    }

    async fn wait_for_listener(
        &self,
        device_id: &str,
        request: &MethodRequest,
    ) -> Result<SessionHandle, HubError> {
        let deadline = Instant::now() + request.connect_timeout();
        let sessions = &self.inner.sessions;
        loop {
            let notified = sessions.changed.notified();
            if let Some(h) = sessions.get(device_id) {
                if h.shared.subs.methods.load(Ordering::Relaxed) {
                    return Ok(h);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(HubError::DeviceNotOnline {
                    device_id: device_id.to_string(),
                });
            }
        }
    }
}

impl Hub {
    pub(crate) fn send_method_request(
        &self,
        h: &SessionHandle,
        name: &str,
        rid: &RequestId,
        payload: Bytes,
    ) -> bool {
        let msg =
            Message::new(wire::topic::method_request(name, rid), payload).with_qos(QoS::AtMostOnce);
        h.outbound.try_send(msg).is_ok()
    }
}
