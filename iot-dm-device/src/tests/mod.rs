//! Client tests against the real in-process hub behind a fault-injecting endpoint (paused
//! tokio time where timing matters).

mod methods;
mod patterns;
mod reconnect;
mod twin;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::testkit::FaultyEndpoint;
use iot_dm_core::link::Message;
use iot_dm_core::method::MethodRequest;
use iot_dm_core::twin::{Twin, TwinPatch};
use iot_dm_core::wire::{topic, RequestId};
use iot_dm_service::hub::{Authentication, DeviceSpec, Hub};
use serde_json::Value;

use crate::{DeviceClient, DeviceClientBuilder, DeviceCredentials, InMemoryTransport, LinkState};
use iot_dm_service::api::prelude::*;

pub(crate) const DEVICE: &str = "dev-1";
pub(crate) const HOST: &str = "hub.test";
pub(crate) const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
pub(crate) const START: i64 = 1_700_000_000;

const DESIRED_TOPIC: &str = "$iothub/twin/PATCH/properties/desired/";

/// The hub with device [`DEVICE`] (key [`KEY`]), seen through a [`FaultyEndpoint`]: the
/// fault switches and the record of what crossed the link come from the wrapper (`Deref`),
/// the back end from `hub`.
#[derive(Clone)]
pub(crate) struct TestHub {
    pub(crate) hub: Hub,
    link: Arc<FaultyEndpoint<Hub>>,
    next_raw: Arc<AtomicU64>,
}

impl Deref for TestHub {
    type Target = FaultyEndpoint<Hub>;

    fn deref(&self) -> &FaultyEndpoint<Hub> {
        &self.link
    }
}

impl TestHub {
    /// A hub on its own manual clock, which stays at [`START`]: it judges token expiry as of
    /// then, whatever the clients' clocks say.
    pub(crate) async fn new() -> TestHub {
        let hub = Hub::builder()
            .in_memory()
            .clock(Arc::new(clock()))
            .host_name(HOST)
            .open()
            .await
            .unwrap();
        let spec = DeviceSpec::new(DeviceId::new(DEVICE).unwrap())
            .authentication(Authentication::sas(KEY, KEY));
        hub.create_device(spec).await.unwrap();
        TestHub {
            link: Arc::new(FaultyEndpoint::new(hub.clone())),
            hub,
            next_raw: Arc::default(),
        }
    }

    pub(crate) fn twin(&self) -> Twin {
        self.hub.get_twin(DEVICE).unwrap()
    }

    /// Changes the desired properties as the service; returns the new version.
    pub(crate) async fn set_desired(&self, patch: Value) -> u64 {
        let patch = TwinPatch {
            tags: None,
            desired: Some(patch),
        };
        let twin = self.hub.update_twin(DEVICE, &patch, None).await.unwrap();
        twin.desired().version()
    }

    /// Changes the desired properties; the notification is lost on its way to the device.
    pub(crate) async fn set_desired_unseen(&self, patch: Value) -> u64 {
        let lost = self.dropped().len();
        self.drop_next(DESIRED_TOPIC);
        let version = self.set_desired(patch).await;
        eventually("the notification was lost", || {
            self.dropped().len() == lost + 1
        })
        .await;
        version
    }

    /// Sends the connected device a message the hub itself would not send.
    pub(crate) fn push(&self, topic: &str, body: &str) {
        assert!(
            self.inject(Message::new(topic.to_string(), body.to_string())),
            "a device is connected"
        );
    }

    /// Invokes a direct method through the hub: (status, JSON payload).
    pub(crate) async fn invoke(&self, name: &str, payload: Value) -> (i32, Value) {
        let request = MethodRequest::builder(name)
            .payload(payload)
            .connect_timeout(Duration::from_secs(30))
            .response_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let response = self.hub.invoke_method(DEVICE, &request).await.unwrap();
        (response.status, response.payload)
    }

    /// Sends a method request with a raw `body` (which the hub's API cannot send: empty or not
    /// JSON) and waits for the device's answer: (status, JSON payload).
    pub(crate) async fn invoke_raw(&self, name: &str, body: &str) -> (i32, Value) {
        let n = self.next_raw.fetch_add(1, Ordering::Relaxed);
        let rid = RequestId::new(format!("raw{n}")).unwrap();
        self.push(&topic::method_request(name, &rid), body);
        let suffix = format!("/?$rid={rid}");
        let mut answer = None;
        eventually("the device answered", || {
            answer = self
                .frames()
                .iter()
                .filter_map(|f| f.publish())
                .find(|m| m.topic.ends_with(&suffix))
                .cloned();
            answer.is_some()
        })
        .await;
        let m = answer.unwrap();
        let status = m
            .topic
            .strip_prefix("$iothub/methods/res/")
            .and_then(|rest| rest.split('/').next())
            .unwrap()
            .parse()
            .unwrap();
        (status, serde_json::from_slice(&m.payload).unwrap())
    }
}

pub(crate) fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_secs(START))
}

pub(crate) fn builder(hub: &TestHub) -> DeviceClientBuilder {
    builder_with_clock(hub, clock())
}

pub(crate) fn builder_with_clock(hub: &TestHub, clock: ManualClock) -> DeviceClientBuilder {
    let creds =
        DeviceCredentials::symmetric_key(HOST, DeviceId::new(DEVICE).unwrap(), KEY).unwrap();
    DeviceClient::builder(creds, InMemoryTransport::new(hub.link.clone()))
        .clock(Arc::new(clock))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
}

pub(crate) async fn connect(hub: &TestHub) -> DeviceClient {
    builder(hub).connect().await.unwrap()
}

/// `f`'s output, or a test failure once two minutes of (paused) time have passed: a broken
/// client fails the test instead of hanging it.
pub(crate) async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("finished within 120s of paused time")
}

/// Waits (in paused time) until `f` holds.
pub(crate) async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits until the client's state satisfies `f`.
pub(crate) async fn wait_state(client: &DeviceClient, f: impl Fn(&LinkState) -> bool) {
    let mut rx = client.link_state();
    tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| f(s)))
        .await
        .expect("state reached in time")
        .expect("driver alive");
}

/// The `se=` of a SAS token.
pub(crate) fn token_expiry(req: &iot_dm_core::link::ConnectRequest) -> i64 {
    match &req.credentials {
        iot_dm_core::link::Credentials::Sas(t) => iot_dm_core::wire::SasToken::parse(t)
            .unwrap()
            .expiry_unix_secs(),
        other => panic!("not a SAS token: {other:?}"),
    }
}
