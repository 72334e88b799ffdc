//! # iot-dm-core
//!
//! The transport-agnostic core of iot-dm. It does no I/O and reads no clock on its own: time
//! comes in as a [`clock::Timestamp`] argument or through the [`clock::Clock`] trait, so every
//! state machine here is tested deterministically.
//!
//! | module | what it holds |
//! |---|---|
//! | [`alert`] | fleet alerts: [`alert::AlertRule`], the [`alert::Evaluator`] that raises and clears, [`alert::Alert`] records |
//! | [`clock`] | [`clock::Timestamp`] and the [`clock::Clock`] seam |
//! | [`events`] | the hub's event stream: [`events::EventType`] names, the `lost` signal, Server-Sent Events framing |
//! | [`identity`] | validated [`identity::DeviceId`] and [`identity::ModuleId`] |
//! | [`doc`] | [`doc::Doc`], the compact JSON document twins are stored in, with merge patch |
//! | [`twin`] | [`twin::Twin`]: identity fields, tags, desired and reported properties, patches, limits |
//! | [`link`] | the device-hub seam: [`link::Endpoint`], [`link::Link`] and the frames on it |
//! | [`lifecycle`] | the device lifecycle state machine: [`lifecycle::LifecycleState`], [`lifecycle::DeviceLifecycle`] |
//! | [`method`] | direct-method envelopes: [`method::MethodName`], [`method::MethodRequest`], [`method::MethodResponse`], payload codec |
//! | [`patterns`] | reboot, factory-reset and firmware-update state machines with their reported JSON |
//! | [`wire`] | the IoT Hub MQTT protocol: topics, property bags, username, SAS tokens, connection strings |
//! | [`query`] | the IoT Hub query language: [`query::Query`] parse, match, execute and page over twins |
//! | [`configuration`] | IoT Hub's automatic device configurations: [`configuration::Configuration`], its checks, which one wins on a twin |
//! | [`job`] | IoT Hub's jobs v2 records: [`job::JobRequest`], [`job::JobResponse`], [`job::DeviceJob`], their checks |
//! | [`rollout`] | the sans-IO rollout planner of jobs: [`rollout::Rollout`], rate, abort, timeouts, retries, windows, gates |
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod alert;
pub mod binary;
pub mod clock;
pub mod configuration;
pub mod doc;
pub mod events;
pub mod identity;
pub mod job;
pub mod lifecycle;
pub mod link;
pub mod method;
pub mod patterns;
pub mod query;
pub mod rollout;
pub mod twin;
pub mod wire;
