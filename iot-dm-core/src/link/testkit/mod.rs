//! Test kit for [`Endpoint`]s (cargo feature `testkit`): a conformance suite any endpoint
//! implementation can run, and [`FaultyEndpoint`], a wrapper that injects link faults into
//! a real endpoint.
//!
//! # The conformance suite
//!
//! An implementation provides a [`Fixture`]: the endpoint under test and a back end that
//! provisions devices, changes desired properties, invokes direct methods and reads twins.
//! The [`checks`] then drive raw device sessions over IoT Hub's MQTT topics (twin GET, reported
//! PATCH, desired notifications, direct methods, refusals, closing on protocol violations).
//! [`endpoint_conformance!`](crate::endpoint_conformance) turns them into one test each:
//!
//! ```ignore
//! mod conformance {
//!     // `my_fixture()` is an `async fn` returning a `Fixture`
//!     iot_dm_core::endpoint_conformance!(super::my_fixture().await);
//! }
//! ```
//!
//! The generated tests use `#[tokio::test]`, so the calling crate needs `tokio` with the
//! `macros` and `rt-multi-thread` features.

use std::time::Duration;

use serde_json::Value;

use super::{ConnectRefused, Endpoint};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::identity::DeviceId;

pub mod checks;
mod faulty;

pub use faulty::{FaultyEndpoint, SessionFrame, SessionMessage};

/// Whatever a fixture's back end reports as a failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The desired and reported documents of a twin, without `$version` and `$metadata`.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinView {
    /// The desired properties.
    pub desired: Value,
    /// The desired `$version`.
    pub desired_version: u64,
    /// The reported properties.
    pub reported: Value,
    /// The reported `$version`.
    pub reported_version: u64,
}

/// An endpoint under test and the back end behind it.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    /// The endpoint the checks connect devices to.
    fn endpoint(&self) -> &dyn Endpoint;

    /// The host name devices sign their SAS tokens for.
    fn host_name(&self) -> String;

    /// The time the endpoint judges token expiry by (the system clock by default).
    fn now(&self) -> Timestamp {
        SystemClock.now()
    }

    /// How long a check waits for any one thing (10 s by default).
    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// Creates an enabled device that authenticates with SAS tokens signed with `key`
    /// (base64).
    async fn create_device(&self, device: &DeviceId, key: &str) -> Result<(), BoxError>;

    /// Merges `patch` into the device's desired properties, as the service; returns the new
    /// desired `$version`.
    async fn update_desired(&self, device: &DeviceId, patch: &Value) -> Result<u64, BoxError>;

    /// Invokes a direct method and returns the device's status and payload.
    async fn invoke_method(
        &self,
        device: &DeviceId,
        name: &str,
        payload: &Value,
    ) -> Result<(i32, Value), BoxError>;

    /// The device's twin, as the service reads it.
    async fn twin(&self, device: &DeviceId) -> Result<TwinView, BoxError>;
}

/// Why a conformance check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The endpoint did something the protocol does not allow.
    #[error("{check}: {what}")]
    Mismatch {
        /// The check.
        check: &'static str,
        /// What was expected and what happened.
        what: String,
    },
    /// Nothing happened within the fixture's patience.
    #[error("{check}: nothing within {after:?} while waiting for {what}")]
    Timeout {
        /// The check.
        check: &'static str,
        /// What the check waited for.
        what: String,
        /// How long it waited.
        after: Duration,
    },
    /// The link closed while the check expected more.
    #[error("{check}: the link closed while waiting for {what}")]
    Closed {
        /// The check.
        check: &'static str,
        /// What the check waited for.
        what: String,
    },
    /// The endpoint refused a connection the check expected it to accept.
    #[error("{check}: the endpoint refused a valid device: {refused}")]
    Refused {
        /// The check.
        check: &'static str,
        /// The refusal.
        refused: ConnectRefused,
    },
    /// The fixture's back end failed.
    #[error("{check}: the back end could not {what}: {source}")]
    Backend {
        /// The check.
        check: &'static str,
        /// What the back end was asked to do.
        what: &'static str,
        /// Its error.
        #[source]
        source: BoxError,
    },
}

/// One `#[tokio::test]` per conformance check, each building its fixture with the given
/// expression (evaluated inside the async test, so it may `.await`).
#[macro_export]
macro_rules! endpoint_conformance {
    ($fixture:expr) => {
        $crate::endpoint_conformance!(@each $fixture;
            twin_get_returns_the_twin,
            reported_patch_is_acknowledged_and_visible,
            desired_notifications_arrive_in_version_order,
            direct_method_round_trip,
            unknown_device_is_not_authorized,
            wrong_key_is_not_authorized,
            refused_subscription_closes_the_link,
            protocol_violation_closes_the_link,
        );
    };
    (@each $fixture:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture;
                if let Err(failure) = $crate::link::testkit::checks::$check(&fixture).await {
                    panic!("{failure}");
                }
            }
        )+
    };
}
