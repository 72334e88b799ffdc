//! # iot-dm-device
//!
//! The iot-dm device client: device twins (get, reported patches, desired-property updates),
//! direct methods and telemetry, over IoT Hub's MQTT device protocol, through a pluggable
//! [`Transport`].
//!
//! A [`DeviceClient`] is a cheap, cloneable handle. The session itself belongs to a
//! background task (the *driver*) that the client spawns on the tokio runtime: it owns the
//! [link](iot_dm_core::link::Link) to the hub, reconnects, re-subscribes, renews SAS tokens
//! and keeps desired properties in order, so the application never polls an event loop.
//! [`DeviceClient`] has a complete example.
//!
//! | module | what it holds |
//! |---|---|
//! | [`DeviceClient`], [`DesiredUpdates`], [`CloudMessages`] | the handle and its streams |
//! | [`DeviceClientBuilder`], [`DeviceCredentials`] | configuration and identity |
//! | [`Transport`], [`InMemoryTransport`] | how sessions are opened |
#![cfg_attr(
    feature = "mqtt",
    doc = "| [`mqtt`]: [`MqttTransport`] | IoT Hub's MQTT device protocol over TLS or WebSocket (feature `mqtt`, on by default) |"
)]
//! | [`TwinState`], [`DesiredPatch`], [`MethodCall`], [`CloudMessage`], [`LinkState`] | the values handed out |
//! | [`Error`], [`TransportError`] | errors, with predicates (`is_timeout()`, `is_refused()`, ...) |
//! | [`patterns`] | device management: reboot, factory reset, configuration and firmware update as opt-in handlers |
//!
//! ## Connection and reconnection
//!
//! * [`DeviceClientBuilder::connect`] opens the first session and fails with a typed error if
//!   it cannot (refused credentials: [`Error::is_refused`]); it does not retry.
//! * After every (re)connect the client subscribes to the twin response, desired-patch,
//!   method and cloud-to-device topics (even when the hub says it kept the session), then
//!   GETs the twin to resync the desired properties.
//! * When the link is lost (the hub ended the session, or sending failed) the state becomes
//!   [`LinkState::Disconnected`] and the client reconnects after an exponential back-off
//!   with jitter (see [`DeviceClientBuilder::reconnect_backoff`]). The back-off returns to its
//!   first step only after a session lasted 10 seconds, so sessions cut at once do not cause a
//!   reconnect storm.
//! * A hub that refuses the credentials on a reconnect (`NotAuthorized`: a revoked key, an
//!   expired ready-made token, a disabled or deleted device) closes the client with
//!   [`CloseReason::Refused`]; it is reported, not retried. A hub that is unavailable is
//!   retried with the back-off.
//! * With a shared access key the client signs a token valid for the configured TTL (one
//!   hour by default) and reconnects with a fresh one after 80 % of it. Expiry is computed
//!   with the builder's [`Clock`](iot_dm_core::clock::Clock).
//!
//! ## Ordering guarantees
//!
//! * Twin requests and telemetry are sent in the order they were issued, across reconnects.
//!   While offline they wait in a bounded queue ([`DeviceClientBuilder::queue_capacity`];
//!   full: [`Error::QueueFull`]). A twin request sent but not answered when the link dropped
//!   is sent again after the reconnect, before later ones (at-least-once).
//! * [`DeviceClient::update_reported`] resolves only when the hub acknowledged the patch,
//!   with the new reported version.
//! * Desired patches are delivered in strictly increasing version order; a notification
//!   whose version is not above the last one delivered is dropped. A change is never lost
//!   silently: a version gap, an unreadable notification or a reconnect triggers a twin GET,
//!   and if the desired version moved the whole document is delivered as a `full` patch
//!   before any later patch.
//! * Method calls run concurrently, each in its own task; their answers go out on the
//!   session they came in on (an answer for a session that has ended is dropped).
//! * Cloud-to-device messages go to every open [`CloudMessages`] stream, in arrival order,
//!   and are acknowledged to the hub once handed over. One that arrives while no stream is
//!   open is acknowledged and dropped (with a warning in the log).
//!
//! ## Cancel safety
//!
//! Every async method of [`DeviceClient`] is cancel-safe in this sense: dropping its future
//! before the operation was sent withdraws the operation (it is never sent); dropping it
//! later leaves the outcome unknown, as with a timeout. [`DesiredUpdates::recv`] is
//! cancel-safe: no change is lost. The operation timeout counts only from the moment a
//! request is sent; wrap a call in `tokio::time::timeout` to bound the wait while offline.
//!
//! ## Logging
//!
//! The client logs through `tracing`: connections at `info`, losses and retries at `warn`,
//! protocol details at `debug`.
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backoff;
mod client;
mod config;
mod credentials;
mod driver;
mod error;
mod methods;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod patterns;
mod transport;
mod types;

#[cfg(test)]
mod tests;

pub use client::{CloudMessages, DesiredUpdates, DeviceClient, MAX_TELEMETRY_BYTES};
pub use config::{
    DeviceClientBuilder, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_QUEUE_CAPACITY, DEFAULT_SAS_TTL, MIN_SAS_TTL,
};
pub use credentials::DeviceCredentials;
pub use error::{Error, Operation, TransportError};
pub use methods::METHOD_NOT_IMPLEMENTED;
#[cfg(feature = "mqtt")]
pub use mqtt::MqttTransport;
pub use transport::{InMemoryTransport, Transport};
pub use types::{
    CloseReason, CloudMessage, DesiredPatch, DisconnectReason, LinkState, MethodCall, TwinState,
};

/// The method response type handlers return (from `iot-dm-core`).
pub use iot_dm_core::method::MethodResponse;
/// Telemetry and cloud-to-device message properties (from `iot-dm-core`).
pub use iot_dm_core::wire::PropertyBag;
