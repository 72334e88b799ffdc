//! The Azure IoT Hub MQTT device protocol, without I/O.
//!
//! These are the primitives both ends of an IoT Hub MQTT connection share: the hub's MQTT
//! endpoint uses them to authenticate and route what devices send, and the device client uses
//! them to build what it sends. Everything follows what the official C, Python and Node SDKs
//! actually put on the wire, including their differences (lower- and upper-case
//! percent-escapes, literal and encoded ids, field order).
//!
//! | file | what it holds |
//! |---|---|
//! | [`topic`] | topic builders, subscription filters, [`TopicError`], [`IdForm`] |
//! | `device_topic` | [`DeviceTopic`]: the hub's parser of what devices publish |
//! | `hub_topic` | [`HubTopic`]: the device's parser of what the hub publishes |
//! | `topic_parse` | the query, level and identity helpers both parsers share |
//! | `subscription` | [`Subscription`]: which SUBSCRIBE filter a device sent |
//! | `topic_filter` | [`topic_matches`], a matcher that works for `$iothub/...` topics |
//! | `property_bag` | [`PropertyBag`] and [`SystemProperty`] |
//! | `username` | [`Username`]: the CONNECT username, parsed leniently and built canonically |
//! | `key` | [`SymmetricKey`] |
//! | `sas` | [`SasToken`]: parse and generate |
//! | `sas_verify` | the hub's checks: signature, expiry, resource (level-prefix rule), policy name |
//! | `connection_string` | [`ServiceConnectionString`], [`ConnectionStringError`] and the shared `Key=value` parser |
//! | `device_connection_string` | [`DeviceConnectionString`] and [`DeviceCredential`] |
//! | `request_id` | [`RequestId`] and the [`RequestIds`] counter |
//!
//! # Example: a hub answering a twin GET
//!
//! ```
//! use iot_dm_core::identity::DeviceId;
//! use iot_dm_core::wire::{topic, DeviceTopic};
//!
//! let me = DeviceId::new("thermostat-1")?;
//! let DeviceTopic::TwinGet { rid } = DeviceTopic::parse("$iothub/twin/GET/?$rid=3", &me, None)? else {
//!     unreachable!()
//! };
//! assert_eq!(topic::twin_response(200, &rid, None), "$iothub/twin/res/200/?$rid=3");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod connection_string;
mod device_connection_string;
mod device_topic;
mod encoding;
mod hub_topic;
mod key;
mod property_bag;
mod request_id;
mod sas;
mod sas_verify;
mod subscription;
pub mod topic;
mod topic_filter;
mod topic_parse;
mod username;

pub use connection_string::{ConnectionStringError, ServiceConnectionString};
pub use device_connection_string::{DeviceConnectionString, DeviceCredential};
pub use device_topic::DeviceTopic;
pub use hub_topic::HubTopic;
pub use key::{KeyError, SymmetricKey};
pub use property_bag::{PropertyBag, PropertyBagError, SystemProperty};
pub use request_id::{RequestId, RequestIds, REQUEST_ID_FORBIDDEN};
pub use sas::{SasError, SasToken, SAS_PREFIX};
pub use sas_verify::{device_resource_uri, module_resource_uri};
pub use subscription::Subscription;
pub use topic::{IdForm, TopicError};
pub use topic_filter::{is_valid_filter, topic_matches};
pub use username::{Username, UsernameBuilder, UsernameError, API_VERSION};
