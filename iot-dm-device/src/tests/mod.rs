//! Client tests against a fake hub (paused tokio time where timing matters).

mod fake_hub;
mod methods;
mod reconnect;
mod twin;

use std::sync::Arc;
use std::time::Duration;

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::identity::DeviceId;

use crate::{
    ConnectionState, DeviceClient, DeviceClientBuilder, DeviceCredentials, InMemoryTransport,
};
use fake_hub::FakeHub;

pub(crate) const DEVICE: &str = "dev-1";
pub(crate) const HOST: &str = "hub.test";
pub(crate) const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
pub(crate) const START: i64 = 1_700_000_000;

pub(crate) fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_secs(START))
}

pub(crate) fn builder(hub: &FakeHub) -> DeviceClientBuilder {
    builder_with_clock(hub, clock())
}

pub(crate) fn builder_with_clock(hub: &FakeHub, clock: ManualClock) -> DeviceClientBuilder {
    let creds =
        DeviceCredentials::symmetric_key(HOST, DeviceId::new(DEVICE).unwrap(), KEY).unwrap();
    DeviceClient::builder(creds, InMemoryTransport::new(Arc::new(hub.clone())))
        .clock(Arc::new(clock))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
}

pub(crate) async fn connect(hub: &FakeHub) -> DeviceClient {
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
pub(crate) async fn wait_state(client: &DeviceClient, f: impl Fn(&ConnectionState) -> bool) {
    let mut rx = client.connection_state();
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
