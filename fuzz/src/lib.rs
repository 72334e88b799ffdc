//! The bodies of iot-dm's fuzz targets, shared by the libFuzzer binaries in `fuzz_targets/`
//! and by the corpus replay that `cargo test` runs (`tests/fuzz_corpus.rs` at the root).
//!
//! | target | what the input is | what must hold |
//! |---|---|---|
//! | `mqtt_connect` | the whole byte stream of an MQTT connection to a served hub | no panic; the hub only sends well-formed packets, CONNACK first; it stays serviceable |
//! | `mqtt_session` | the bytes a device sends after a valid CONNECT (publishes to every topic family, subscriptions, acks) | the same |
//! | `rest_request` | a raw HTTP/1.1 request to the REST API (`{{token}}` becomes a valid owner token) | no panic, no 500, a well-formed status line |
//! | `rest_bodies` | a route of the REST API, its parameters and its JSON body, sent with an owner token | no panic, no 500 |
//! | `twin_docs` | twin patches, twin JSON, stored documents and stored twins | no panic; documents read back as written |
//! | `query` | the text of a query | no panic; what parses prints to text that parses to the same print; it runs over a fleet |

#![forbid(unsafe_code)]
#![allow(missing_docs)]

pub mod docs;
pub mod fixture;
pub mod mqtt;
pub mod query;
pub mod rest;
