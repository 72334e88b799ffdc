//! # iot-dm-service
//!
//! The service side of iot-dm: the embeddable [`hub::Hub`] (identity registry, twin store,
//! queries, direct methods, the device lifecycle and the device-facing endpoint) and its
//! durable [`store`].
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod hub;
pub mod mqtt;
pub mod store;

pub use hub::{Hub, HubBuilder, HubError};
