//! # iot-dm-service
//!
//! The service side of iot-dm.
//!
//! | module | what it holds |
//! |---|---|
//! | [`access`] | shared access policies, rights, roles and rate limits of the service API |
//! | [`artifacts`] | the firmware artifact store: images by SHA-256, uploaded once, served to devices in ranges |
//! | [`api`] | the back-end operations, one trait per area and their union [`api::ServiceApi`], implemented by the embedded hub and by the remote client |
//! | [`client`] | [`client::ServiceClient`], the back-end API of a remote hub over HTTPS, from a service connection string |
//! | [`hub`] | the embeddable [`hub::Hub`]: identity registry, twin store, direct methods, cloud-to-device messages, the device lifecycle, the device-facing endpoint and the event stream ([`hub::Hub::event_stream`]) |
//! | [`store`] | durable storage: the [`store::Store`] trait, memory and redb backends, group commit |
//! | [`mqtt`] | the MQTT 3.1.1 device endpoint (TCP, TLS, WebSocket) the official Azure IoT device SDKs connect to |
//! | [`rest`] | the service REST API over HTTPS (IoT Hub's routes plus our lifecycle and administration routes) |
//! | [`server`] | [`server::HubServer`]: a hub served over its MQTT endpoint and its REST API from one configuration, shut down in order |
//! | [`tls`] | TLS shared by the endpoints and the client: rustls configurations from PEM, thumbprints, development certificates |
//!
//! Cargo features (all on by default): `store-redb` (the embedded durable store), `mqtt` (the
//! device endpoint), `rest` (the service REST API server), `client` (`ServiceClient`),
//! `dev-certs` (development certificates). A back end that only talks to a remote hub builds
//! with `default-features = false, features = ["client"]`: the API traits, their types,
//! `ServiceClient` and the in-memory hub, without redb, rcgen, the MQTT codec, WebSocket or
//! the HTTP server. [`server::HubServer`] needs `mqtt` and `rest`.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod access;
#[cfg(any(feature = "mqtt", feature = "rest"))]
mod admission;
pub mod api;
pub mod artifacts;
#[cfg(feature = "client")]
pub mod client;
pub mod hub;
#[cfg(any(feature = "mqtt", feature = "rest"))]
mod listen;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "rest")]
pub mod rest;
#[cfg(all(feature = "mqtt", feature = "rest"))]
pub mod server;
pub mod store;
pub mod tls;

pub use hub::{Hub, HubBuilder, HubError};
#[cfg(all(feature = "mqtt", feature = "rest"))]
pub use server::{HubServer, HubServerBuilder, HubServerError};
