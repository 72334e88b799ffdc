//! Topic builders, the subscription filters, and the topic error type.
//!
//! Every topic here is written exactly as the official SDKs and IoT Hub write it:
//!
//! | direction | topic |
//! |---|---|
//! | device → hub | `$iothub/twin/GET/?$rid={rid}` |
//! | device → hub | `$iothub/twin/PATCH/properties/reported/?$rid={rid}` |
//! | hub → device | `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]` |
//! | hub → device | `$iothub/twin/PATCH/properties/desired/?$version={v}` |
//! | hub → device | `$iothub/methods/POST/{name}/?$rid={rid}` |
//! | device → hub | `$iothub/methods/res/{status}/?$rid={rid}` |
//! | device → hub | `devices/{d}[/modules/{m}]/messages/events/{bag}` |
//! | hub → device | `devices/{d}/messages/devicebound/{bag}` |
//! | hub → module | `devices/{d}/modules/{m}/inputs/{input}/{bag}` |
//!
//! `$rid` comes first in the query and `$version` second: the C SDK reads the request id as the
//! text right after `?$rid=` in the fifth topic level, so no other order works for it.
//!
//! Ids in `devices/...` topics come in two forms: the C and Node SDKs write them literally,
//! the Python SDK percent-encodes them (`quote(id, safe="")`). Ids made only of letters,
//! digits, `-`, `.` and `_` look the same either way; [`IdForm`] chooses for the others.

use std::borrow::Cow;

use super::encoding::{encode, COMPONENT, SEGMENT, WILDCARDS};
use super::property_bag::{PropertyBag, PropertyBagError};
use super::request_id::RequestId;
use crate::identity::{DeviceId, ModuleId};

/// Filter for twin GET and reported-patch responses.
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";

/// Filter for desired-property notifications.
pub const DESIRED_PATCH_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";

/// Filter for direct-method requests.
pub const METHOD_REQUEST_FILTER: &str = "$iothub/methods/POST/#";

/// A topic or subscription filter that is malformed or not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The request id (`$rid`) is empty.
    #[error("request id ($rid) is empty; it must be at least 1 character")]
    EmptyRequestId,
    /// The request id contains a character it may not.
    #[error("request id ($rid) {rid:?} contains {ch:?}; `&`, `#`, `+` and NUL are not allowed")]
    InvalidRequestId {
        /// The rejected id.
        rid: String,
        /// The offending character.
        ch: char,
    },
    /// The topic is not one this side of the connection accepts.
    #[error("topic {topic:?} is not {expected}")]
    Unrecognized {
        /// The topic as received.
        topic: String,
        /// What was expected, e.g. `a topic a device publishes to`.
        expected: &'static str,
    },
    /// A required query key is missing.
    #[error("topic {topic:?} lacks the required query key {key}")]
    MissingQueryKey {
        /// The topic as received.
        topic: String,
        /// The missing key, e.g. `$rid`.
        key: &'static str,
    },
    /// A query key appears more than once.
    #[error("topic {topic:?} has the query key {key} more than once; it may appear once")]
    DuplicateQueryKey {
        /// The topic as received.
        topic: String,
        /// The repeated key.
        key: &'static str,
    },
    /// The status level is not an integer in range.
    #[error("topic {topic:?} has status {status:?}; expected an integer in {range}")]
    InvalidStatus {
        /// The topic as received.
        topic: String,
        /// The status level as written.
        status: String,
        /// The allowed range.
        range: &'static str,
    },
    /// `$version` is not a non-negative integer.
    #[error("topic {topic:?} has $version {version:?}; expected a non-negative integer")]
    InvalidVersion {
        /// The topic as received.
        topic: String,
        /// The version as written.
        version: String,
    },
    /// A topic level (id, method or input name) is empty or not UTF-8 once decoded.
    #[error(
        "topic {topic:?}: the {what} level {level:?} is empty or not UTF-8 once percent-decoded"
    )]
    InvalidLevel {
        /// The topic as received.
        topic: String,
        /// Which level: `device id`, `module id`, `method name`, `input name`.
        what: &'static str,
        /// The level as written.
        level: String,
    },
    /// The topic or filter names another device or module than the connected one.
    #[error("topic {topic:?} names {found}, but the connection is authenticated as {expected}")]
    IdentityMismatch {
        /// The topic or filter as received.
        topic: String,
        /// The identity the topic names (`device d` or `module d/m`).
        found: String,
        /// The connected identity.
        expected: String,
    },
    /// The topic's property bag cannot be parsed.
    #[error("topic {topic:?}: {source}")]
    PropertyBag {
        /// The topic as received.
        topic: String,
        /// What is wrong with the bag.
        source: PropertyBagError,
    },
    /// A SUBSCRIBE filter that is none of the filters IoT Hub supports.
    #[error("subscription filter {filter:?} is not one IoT Hub supports; expected {TWIN_RESPONSE_FILTER}, {DESIRED_PATCH_FILTER}, {METHOD_REQUEST_FILTER}, devices/{{id}}/messages/devicebound/# or devices/{{id}}/modules/{{id}}/inputs/#")]
    UnknownFilter {
        /// The filter as received.
        filter: String,
    },
}

/// How device and module ids are written in `devices/...` topics.
///
/// ```
/// use iot_dm_core::identity::DeviceId;
/// use iot_dm_core::wire::{topic, IdForm, PropertyBag};
/// let id = DeviceId::new("dev:1")?;
/// let bag = PropertyBag::new();
/// assert_eq!(topic::c2d(&id, &bag, IdForm::Literal), "devices/dev:1/messages/devicebound/");
/// assert_eq!(topic::c2d(&id, &bag, IdForm::Encoded), "devices/dev%3A1/messages/devicebound/");
/// # Ok::<(), iot_dm_core::identity::IdError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IdForm {
    /// As the C and Node SDKs write them: verbatim (only `#` and `+`, which a topic name may
    /// not contain, are escaped).
    Literal,
    /// As the Python SDK writes them: `quote(id, safe="")`, everything but letters, digits and
    /// `- . _ ~` escaped. The default, and what the builders for device topics use.
    #[default]
    Encoded,
}

impl IdForm {
    /// `id` written in this form.
    pub fn write(self, id: &str) -> Cow<'_, str> {
        match self {
            IdForm::Literal => encode(id, WILDCARDS),
            IdForm::Encoded => encode(id, COMPONENT),
        }
    }

    /// Which form `level` writes `id` in, if it writes it at all (the literal form wins when
    /// both fit).
    pub fn detect(level: &str, id: &str) -> Option<IdForm> {
        if level == id {
            Some(IdForm::Literal)
        } else if super::encoding::decode(level).is_ok_and(|d| d == id) {
            Some(IdForm::Encoded)
        } else {
            None
        }
    }
}

/// `$iothub/twin/GET/?$rid={rid}`: a device asks for its twin.
///
/// ```
/// use iot_dm_core::wire::{topic, RequestId};
/// let rid = RequestId::new("3")?;
/// assert_eq!(topic::twin_get(&rid), "$iothub/twin/GET/?$rid=3");
/// # Ok::<(), iot_dm_core::wire::TopicError>(())
/// ```
pub fn twin_get(rid: &RequestId) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`: a device patches its reported
/// properties.
pub fn twin_patch_reported(rid: &RequestId) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

/// `$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]`: the hub answers a twin
/// request (200 to a GET, 204 with the new reported `$version` to a patch).
///
/// ```
/// use iot_dm_core::wire::{topic, RequestId};
/// let rid = RequestId::new("7")?;
/// assert_eq!(topic::twin_response(204, &rid, Some(5)), "$iothub/twin/res/204/?$rid=7&$version=5");
/// assert_eq!(topic::twin_response(200, &rid, None), "$iothub/twin/res/200/?$rid=7");
/// # Ok::<(), iot_dm_core::wire::TopicError>(())
/// ```
pub fn twin_response(status: u16, rid: &RequestId, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    }
}

/// `$iothub/twin/PATCH/properties/desired/?$version={version}`: the hub notifies a device of
/// a desired-property change.
pub fn desired_patch(version: u64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

/// `$iothub/methods/POST/{name}/?$rid={rid}`: the hub invokes a direct method.
///
/// Only characters that would break the topic (`# + / ? % "`, space, controls, non-ASCII)
/// are escaped in the name, because the C and Node SDKs use the level without decoding it.
///
/// ```
/// use iot_dm_core::wire::{topic, RequestId};
/// let rid = RequestId::new("1")?;
/// assert_eq!(topic::method_request("reboot", &rid), "$iothub/methods/POST/reboot/?$rid=1");
/// # Ok::<(), iot_dm_core::wire::TopicError>(())
/// ```
pub fn method_request(name: &str, rid: &RequestId) -> String {
    format!("$iothub/methods/POST/{}/?$rid={rid}", encode(name, SEGMENT))
}

/// `$iothub/methods/res/{status}/?$rid={rid}`: a device answers a direct method.
pub fn method_response(status: i32, rid: &RequestId) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// `devices/{d}[/modules/{m}]/messages/events/{bag}`: device-to-cloud telemetry (also the
/// only allowed Will topic). Ids are written in [`IdForm::Encoded`].
///
/// ```
/// use iot_dm_core::identity::{DeviceId, ModuleId};
/// use iot_dm_core::wire::{topic, PropertyBag};
/// let d = DeviceId::new("dev1")?;
/// let m = ModuleId::new("filter")?;
/// let mut bag = PropertyBag::new();
/// bag.push("$.ct", Some("application/json")).unwrap();
/// assert_eq!(topic::telemetry(&d, None, &bag), "devices/dev1/messages/events/%24.ct=application%2Fjson");
/// assert_eq!(topic::telemetry(&d, Some(&m), &PropertyBag::new()), "devices/dev1/modules/filter/messages/events/");
/// # Ok::<(), iot_dm_core::identity::IdError>(())
/// ```
pub fn telemetry(device: &DeviceId, module: Option<&ModuleId>, bag: &PropertyBag) -> String {
    format!(
        "{}/messages/events/{}",
        base(device, module, IdForm::Encoded),
        bag.encode()
    )
}

/// `devices/{d}/messages/devicebound/{bag}`: a cloud-to-device message. Use the [`IdForm`]
/// the device used in its subscription (see [`super::Subscription::CloudToDevice`]).
pub fn c2d(device: &DeviceId, bag: &PropertyBag, form: IdForm) -> String {
    format!(
        "{}/messages/devicebound/{}",
        base(device, None, form),
        bag.encode()
    )
}

/// `devices/{d}/modules/{m}/inputs/{input}/{bag}`: a message routed to a module input.
pub fn module_input(
    device: &DeviceId,
    module: &ModuleId,
    input: &str,
    bag: &PropertyBag,
    form: IdForm,
) -> String {
    format!(
        "{}/inputs/{}/{}",
        base(device, Some(module), form),
        encode(input, SEGMENT),
        bag.encode()
    )
}

/// `devices/{d}/messages/devicebound/#`: the filter for cloud-to-device messages.
pub fn c2d_filter(device: &DeviceId) -> String {
    format!(
        "{}/messages/devicebound/#",
        base(device, None, IdForm::Encoded)
    )
}

/// `devices/{d}/modules/{m}/inputs/#`: the filter for module input messages (as the Python,
/// Node and C# SDKs write it; the C SDK subscribes to `devices/{d}/modules/{m}/#`).
pub fn module_input_filter(device: &DeviceId, module: &ModuleId) -> String {
    format!("{}/inputs/#", base(device, Some(module), IdForm::Encoded))
}

fn base(device: &DeviceId, module: Option<&ModuleId>, form: IdForm) -> String {
    match module {
        Some(m) => format!(
            "devices/{}/modules/{}",
            form.write(device.as_str()),
            form.write(m.as_str())
        ),
        None => format!("devices/{}", form.write(device.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    #[test]
    fn twin_topics_match_the_sdks() {
        // C: "$iothub/twin/GET/?$rid=%"PRIu16 and the reported twin
        assert_eq!(twin_get(&rid("3")), "$iothub/twin/GET/?$rid=3");
        assert_eq!(
            twin_patch_reported(&rid("4")),
            "$iothub/twin/PATCH/properties/reported/?$rid=4"
        );
        // Node: uuid.v4()
        let uuid = rid("7c9e6679-7425-40de-944b-e07fc1f90ae7");
        assert_eq!(
            twin_get(&uuid),
            "$iothub/twin/GET/?$rid=7c9e6679-7425-40de-944b-e07fc1f90ae7"
        );
        assert_eq!(
            twin_response(204, &rid("4"), Some(12)),
            "$iothub/twin/res/204/?$rid=4&$version=12"
        );
        assert_eq!(
            twin_response(429, &rid("a%20b"), None),
            "$iothub/twin/res/429/?$rid=a%20b"
        );
        assert_eq!(
            desired_patch(23),
            "$iothub/twin/PATCH/properties/desired/?$version=23"
        );
    }

    #[test]
    fn method_topics_match_the_sdks() {
        assert_eq!(
            method_request("getMaxMinReport", &rid("1")),
            "$iothub/methods/POST/getMaxMinReport/?$rid=1"
        );
        assert_eq!(
            method_request("a b/c", &rid("1")),
            "$iothub/methods/POST/a%20b%2Fc/?$rid=1"
        );
        // C: "$iothub/methods/res/%d/?$rid=%s"
        assert_eq!(
            method_response(200, &rid("1")),
            "$iothub/methods/res/200/?$rid=1"
        );
        assert_eq!(
            method_response(-1, &rid("x")),
            "$iothub/methods/res/-1/?$rid=x"
        );
    }

    #[test]
    fn device_topics() {
        let d = DeviceId::new("my-device").unwrap();
        let m = ModuleId::new("m.1").unwrap();
        assert_eq!(
            c2d(&d, &PropertyBag::new(), IdForm::Literal),
            "devices/my-device/messages/devicebound/"
        );
        assert_eq!(c2d_filter(&d), "devices/my-device/messages/devicebound/#");
        assert_eq!(
            module_input_filter(&d, &m),
            "devices/my-device/modules/m.1/inputs/#"
        );
        let mut bag = PropertyBag::new();
        bag.push("$.to", Some("/devices/my-device/messages/deviceBound"))
            .unwrap();
        bag.push("iothub-ack", Some("full")).unwrap();
        assert_eq!(
            c2d(&d, &bag, IdForm::Encoded),
            "devices/my-device/messages/devicebound/%24.to=%2Fdevices%2Fmy-device%2Fmessages%2FdeviceBound&iothub-ack=full"
        );
        assert_eq!(
            module_input(&d, &m, "input 1", &PropertyBag::new(), IdForm::Literal),
            "devices/my-device/modules/m.1/inputs/input%201/"
        );
    }

    #[test]
    fn id_forms() {
        // Python: "devices/" + quote(device_id, safe="")
        let d = DeviceId::new("a:b+c#d$e%f").unwrap();
        assert_eq!(IdForm::Encoded.write(d.as_str()), "a%3Ab%2Bc%23d%24e%25f");
        assert_eq!(IdForm::Literal.write(d.as_str()), "a:b%2Bc%23d$e%f");
        assert_eq!(
            telemetry(&d, None, &PropertyBag::new()),
            "devices/a%3Ab%2Bc%23d%24e%25f/messages/events/"
        );
        assert_eq!(IdForm::detect("dev1", "dev1"), Some(IdForm::Literal));
        assert_eq!(IdForm::detect("a%3Ab", "a:b"), Some(IdForm::Encoded));
        assert_eq!(IdForm::detect("a%3ab", "a:b"), Some(IdForm::Encoded));
        assert_eq!(IdForm::detect("a%25", "a%25"), Some(IdForm::Literal));
        assert_eq!(IdForm::detect("a%25", "a%"), Some(IdForm::Encoded));
        assert_eq!(IdForm::detect("dev2", "dev1"), None);
    }
}
