//! # iot-dm-core
//!
//! The transport-agnostic core of iot-dm. It does no I/O and reads no clock on its own: time
//! comes in as a [`clock::Timestamp`] argument or through the [`clock::Clock`] trait, so every
//! state machine here is tested deterministically.
//!
//! | module | what it holds |
//! |---|---|
//! | [`clock`] | [`clock::Timestamp`] and the [`clock::Clock`] seam |
//! | [`identity`] | validated [`identity::DeviceId`] and [`identity::ModuleId`] |
//! | [`wire`] | the IoT Hub MQTT protocol: topics, property bags, username, SAS tokens, connection strings |
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod clock;
pub mod identity;
pub mod wire;
