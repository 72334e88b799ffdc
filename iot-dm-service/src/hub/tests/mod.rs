//! The hub's unit tests, by wing, and what they share: a manual clock, device tokens, and a
//! raw device session that speaks IoT Hub's frames over the in-process link.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::link::{ConnectRequest, Credentials, DeviceFrame, Endpoint, Link, Message};
use iot_dm_core::method::MethodRequest;
use iot_dm_core::twin::{ConnectionState, TwinPatch};
use iot_dm_core::wire::{self, RequestId, SasToken, SymmetricKey};

use super::*;
#[allow(unused_imports)]
pub(super) use crate::api::prelude::*;

mod engine;
mod registry;
mod sessions;
mod twins;

const T0: i64 = 1_700_000_000;

/// A hub builder on a manual clock at `T0`, for `hub.example` (the host the tests' device
/// tokens name).
fn builder_at_t0() -> (HubBuilder, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let builder = Hub::builder()
        .clock(Arc::new(clock.clone()))
        .host_name("hub.example");
    (builder, clock)
}

async fn hub_with_clock() -> (Hub, ManualClock) {
    let (builder, clock) = builder_at_t0();
    (builder.open().await.unwrap(), clock)
}

fn token_for(device: &Device, key: Option<&str>, ttl: i64) -> String {
    let key = key
        .map(str::to_string)
        .or_else(|| device.symmetric_key.primary_key.clone())
        .unwrap();
    let key = SymmetricKey::new(key).unwrap();
    let uri = wire::device_resource_uri("hub.example", &device.device_id);
    SasToken::generate(&uri, &key, Timestamp::from_unix_secs(T0 + ttl), None)
        .as_str()
        .to_string()
}

fn request(device: &Device, token: String) -> ConnectRequest {
    ConnectRequest {
        device_id: device.device_id.clone(),
        module_id: None,
        credentials: Credentials::Sas(token),
        clean_session: true,
    }
}

/// A raw device session for tests.
struct Raw {
    link: Link,
    rid: u64,
}

impl Raw {
    async fn connect(hub: &Hub, device: &Device) -> Raw {
        let link = hub
            .connect(request(device, token_for(device, None, 3600)))
            .await
            .unwrap();
        let mut raw = Raw { link, rid: 0 };
        raw.subscribe(&[
            wire::topic::TWIN_RESPONSE_FILTER,
            wire::topic::DESIRED_PATCH_FILTER,
            wire::topic::METHOD_REQUEST_FILTER,
        ])
        .await;
        raw
    }

    async fn subscribe(&mut self, filters: &[&str]) {
        self.link
            .tx
            .send(DeviceFrame::Subscribe(
                filters.iter().map(|s| s.to_string()).collect(),
            ))
            .await
            .unwrap();
    }

    async fn publish(&mut self, topic: String, body: impl Into<bytes::Bytes>) {
        self.link
            .tx
            .send(DeviceFrame::Publish(Message::new(topic, body)))
            .await
            .unwrap();
    }

    fn next_rid(&mut self) -> RequestId {
        self.rid += 1;
        RequestId::new(self.rid.to_string()).unwrap()
    }

    async fn recv(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.link.rx.recv())
            .await
            .expect("a message within 5 s")
            .expect("link open")
    }

    async fn get_twin(&mut self) -> (String, Value) {
        let rid = self.next_rid();
        self.publish(wire::topic::twin_get(&rid), "").await;
        let m = self.recv().await;
        (m.topic, serde_json::from_slice(&m.payload).unwrap())
    }

    async fn patch_reported(&mut self, patch: Value) -> Message {
        let rid = self.next_rid();
        self.publish(wire::topic::twin_patch_reported(&rid), patch.to_string())
            .await;
        self.recv().await
    }

    async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), async {
                while self.link.rx.recv().await.is_some() {}
            })
            .await,
            Ok(())
        )
    }
}

async fn device(hub: &Hub, id: &str) -> Device {
    hub.create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap()
}
