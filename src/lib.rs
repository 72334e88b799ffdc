//! # iot-dm
//!
//! IoT device management in Rust: device twins, direct methods, twin queries and the device
//! lifecycle, with a self-hostable hub that speaks Azure IoT Hub's device protocol.
//!
//! This facade re-exports the crate family:
//!
//! | crate | re-exported as | what it holds |
//! |---|---|---|
//! | `iot-dm-core` | [`core`] | twins and patches, methods, lifecycle and patterns, queries, the wire protocol; no I/O |
//! | `iot-dm-device` | `device` (feature `device`, on by default) | the device client and its transports |
//! | `iot-dm-service` | `service` (feature `service`, on by default) | the hub and the back-end API |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use iot_dm_core as core;
#[cfg(feature = "device")]
pub use iot_dm_device as device;
#[cfg(feature = "service")]
pub use iot_dm_service as service;
