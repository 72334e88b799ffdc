//! The device-management patterns over the in-memory transport, against the in-process hub.

mod configuration;
#[cfg(feature = "firmware")]
mod firmware;
#[cfg(feature = "firmware")]
mod https;
mod reboot;

use std::sync::Arc;

use iot_dm_core::clock::{Clock, Timestamp};
use serde_json::Value;

use super::*;

/// A clock that moves with tokio's (paused or real) time from [`START`], so scheduled
/// reboots come due.
#[derive(Debug)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_secs(START).saturating_add(self.origin.elapsed())
    }
}

pub(crate) async fn connect_ticking(hub: &TestHub) -> DeviceClient {
    builder(hub)
        .clock(Arc::new(TokioClock {
            origin: tokio::time::Instant::now(),
        }))
        .connect()
        .await
        .unwrap()
}

/// The twin's reported properties.
pub(crate) fn reported(hub: &TestHub) -> Value {
    hub.twin().reported().doc().to_value()
}

/// `deviceManagement.<key>` in the twin's reported properties.
pub(crate) fn pattern(hub: &TestHub, key: &str) -> Value {
    reported(hub)["deviceManagement"][key].clone()
}

/// Every reported patch the device sent, in order.
pub(crate) fn reported_patches(hub: &TestHub) -> Vec<Value> {
    hub.frames()
        .iter()
        .filter_map(|f| f.publish())
        .filter(|m| {
            m.topic
                .starts_with("$iothub/twin/PATCH/properties/reported/")
        })
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect()
}

/// The `state`s a pattern went through, from the reported patches.
pub(crate) fn states(hub: &TestHub, key: &str) -> Vec<String> {
    reported_patches(hub)
        .iter()
        .filter_map(|p| {
            p["deviceManagement"][key]["state"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// Waits until `deviceManagement.<key>.state` is `state`.
pub(crate) async fn wait_pattern(hub: &TestHub, key: &str, state: &str) -> Value {
    let what = format!("{key} {state}");
    eventually(&what, || pattern(hub, key)["state"] == state).await;
    pattern(hub, key)
}
