//! Message property bags: the `k1=v1&k2=v2` tail of telemetry and cloud-to-device topics.
//!
//! Devices append the bag right after `devices/{id}/messages/events/`; the hub appends one to
//! `devices/{id}/messages/devicebound/`. Keys and values are percent-encoded, and the SDKs
//! escape the `$` of system keys (Python and Node send `%24.mid`, C formats `%s%%24.%s=%s`),
//! so both keys and values are decoded before use. Hex digits may be in either case, and `+`
//! is a literal plus, never a space.
//!
//! [`PropertyBag::encode`] renders a bag so that it stays a single topic level: everything but
//! ASCII letters, digits and `- . _ ~` is escaped (Python's `quote(s, safe="")`), including
//! `/`, `&`, `=`, `%`, `$`, `#` and `+`. A property with no value renders as `key`, an empty
//! value as `key=`.

use std::fmt;
use std::str::FromStr;

use super::encoding::{decode, encode, COMPONENT};
use crate::clock::{Timestamp, TimestampError};

/// A property IoT Hub defines (the `$.` keys).
///
/// ```
/// use iot_dm_core::wire::SystemProperty;
/// assert_eq!(SystemProperty::MessageId.key(), "$.mid");
/// assert_eq!(SystemProperty::from_key("$.ct"), Some(SystemProperty::ContentType));
/// assert_eq!(SystemProperty::from_key("color"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SystemProperty {
    /// `$.mid`: the message id.
    MessageId,
    /// `$.cid`: the correlation id.
    CorrelationId,
    /// `$.uid`: the user id.
    UserId,
    /// `$.ct`: the content type, e.g. `application/json`.
    ContentType,
    /// `$.ce`: the content encoding, e.g. `utf-8`.
    ContentEncoding,
    /// `$.exp`: the absolute expiry time (ISO 8601).
    Expiry,
    /// `$.ifid`: the interface id (security messages, Plug and Play).
    InterfaceId,
    /// `$.on`: the output name a module sends on.
    OutputName,
    /// `$.to`: the destination (`/devices/{id}/messages/deviceBound` on C2D messages).
    To,
    /// `$.ctime`: the creation time the C SDK sends.
    CreationTime,
    /// `$.sub`: the Plug and Play component name.
    ComponentName,
    /// `$.cdid`: the id of the device that sent the message (set by the hub).
    ConnectionDeviceId,
    /// `$.cmid`: the id of the module that sent the message (set by the hub).
    ConnectionModuleId,
    /// `$.diagid`: the C SDK's distributed-tracing diagnostic id.
    DiagnosticId,
    /// `$.diagctx`: the C SDK's distributed-tracing diagnostic context.
    DiagnosticContext,
}

impl SystemProperty {
    /// Every system property.
    pub const ALL: [SystemProperty; 15] = [
        SystemProperty::MessageId,
        SystemProperty::CorrelationId,
        SystemProperty::UserId,
        SystemProperty::ContentType,
        SystemProperty::ContentEncoding,
        SystemProperty::Expiry,
        SystemProperty::InterfaceId,
        SystemProperty::OutputName,
        SystemProperty::To,
        SystemProperty::CreationTime,
        SystemProperty::ComponentName,
        SystemProperty::ConnectionDeviceId,
        SystemProperty::ConnectionModuleId,
        SystemProperty::DiagnosticId,
        SystemProperty::DiagnosticContext,
    ];

    /// The decoded key, e.g. `$.mid`.
    pub const fn key(self) -> &'static str {
        match self {
            SystemProperty::MessageId => "$.mid",
            SystemProperty::CorrelationId => "$.cid",
            SystemProperty::UserId => "$.uid",
            SystemProperty::ContentType => "$.ct",
            SystemProperty::ContentEncoding => "$.ce",
            SystemProperty::Expiry => "$.exp",
            SystemProperty::InterfaceId => "$.ifid",
            SystemProperty::OutputName => "$.on",
            SystemProperty::To => "$.to",
            SystemProperty::CreationTime => "$.ctime",
            SystemProperty::ComponentName => "$.sub",
            SystemProperty::ConnectionDeviceId => "$.cdid",
            SystemProperty::ConnectionModuleId => "$.cmid",
            SystemProperty::DiagnosticId => "$.diagid",
            SystemProperty::DiagnosticContext => "$.diagctx",
        }
    }

    /// The system property a decoded key names, if any.
    pub fn from_key(key: &str) -> Option<SystemProperty> {
        SystemProperty::ALL.into_iter().find(|p| p.key() == key)
    }
}

/// A property bag that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertyBagError {
    /// A property has an empty key (`=value`).
    #[error("property {index} ({pair:?}) has an empty key; keys must be at least 1 character")]
    EmptyKey {
        /// Position of the property in the bag (0-based).
        index: usize,
        /// The property as written.
        pair: String,
    },
    /// A key or value does not decode to UTF-8.
    #[error("property {index} ({pair:?}): the {part} is not UTF-8 after percent-decoding")]
    NotUtf8 {
        /// Position of the property in the bag (0-based).
        index: usize,
        /// The property as written.
        pair: String,
        /// `key` or `value`.
        part: &'static str,
    },
}

/// An ordered list of `(key, value)` message properties; a value may be absent (`null`).
///
/// Keys may repeat (lookups return the first). Keys are never empty.
///
/// ```
/// use iot_dm_core::wire::PropertyBag;
/// // what the Python SDK sends for message_id "abc 1", content type and a custom property
/// let bag: PropertyBag = "%24.mid=abc%201&%24.ct=application%2Fjson&temp%20alert=true".parse()?;
/// assert_eq!(bag.message_id(), Some("abc 1"));
/// assert_eq!(bag.content_type(), Some("application/json"));
/// let app: Vec<_> = bag.application_properties().collect();
/// assert_eq!(app, [("temp alert", Some("true"))]);
///
/// let mut c2d = PropertyBag::new();
/// c2d.push("$.mid", Some("42"))?;
/// c2d.push("flag", None)?;
/// c2d.push("empty", Some(""))?;
/// c2d.push("path", Some("a/b&c=d"))?;
/// assert_eq!(c2d.encode(), "%24.mid=42&flag&empty=&path=a%2Fb%26c%3Dd");
/// # Ok::<(), iot_dm_core::wire::PropertyBagError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PropertyBag {
    entries: Vec<(String, Option<String>)>,
}

impl PropertyBag {
    /// An empty bag.
    pub fn new() -> PropertyBag {
        PropertyBag::default()
    }

    /// Parses the bag part of a topic: `&`-separated `key[=value]` pairs, each percent-decoded.
    ///
    /// Empty pairs (`a=1&&b=2`, a trailing `&`) are skipped. A pair is split at its first `=`,
    /// so a value written without encoding may itself contain `=`.
    pub fn parse(raw: &str) -> Result<PropertyBag, PropertyBagError> {
        let mut entries = Vec::new();
        for (index, pair) in raw.split('&').filter(|p| !p.is_empty()).enumerate() {
            let (k, v) = match pair.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (pair, None),
            };
            let not_utf8 = |part| PropertyBagError::NotUtf8 {
                index,
                pair: pair.to_string(),
                part,
            };
            let key = decode(k).map_err(|_| not_utf8("key"))?;
            if key.is_empty() {
                return Err(PropertyBagError::EmptyKey {
                    index,
                    pair: pair.to_string(),
                });
            }
            let value = match v {
                Some(v) => Some(decode(v).map_err(|_| not_utf8("value"))?.into_owned()),
                None => None,
            };
            entries.push((key.into_owned(), value));
        }
        Ok(PropertyBag { entries })
    }

    /// Renders the bag as one topic level (see the module docs for the rules).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&encode(k, COMPONENT));
            if let Some(v) = v {
                out.push('=');
                out.push_str(&encode(v, COMPONENT));
            }
        }
        out
    }

    /// Appends a property. `None` is a property without a value.
    pub fn push(&mut self, key: &str, value: Option<&str>) -> Result<(), PropertyBagError> {
        if key.is_empty() {
            return Err(PropertyBagError::EmptyKey {
                index: self.entries.len(),
                pair: value.map_or_else(String::new, |v| format!("={v}")),
            });
        }
        self.entries
            .push((key.to_string(), value.map(str::to_string)));
        Ok(())
    }

    /// Sets `key` to `value`: the first property with that key is replaced and any later ones
    /// are removed; if there is none, the property is appended.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<(), PropertyBagError> {
        match self.entries.iter().position(|(k, _)| k == key) {
            Some(first) => {
                let mut i = 0;
                self.entries.retain(|(k, _)| {
                    let keep = i <= first || k != key;
                    i += 1;
                    keep
                });
                if let Some(entry) = self.entries.get_mut(first) {
                    entry.1 = value.map(str::to_string);
                }
                Ok(())
            }
            None => self.push(key, value),
        }
    }

    /// Sets a system property (see [`PropertyBag::set`]).
    pub fn set_system(&mut self, property: SystemProperty, value: &str) {
        // system keys are never empty, so `set` cannot fail
        let _ = self.set(property.key(), Some(value));
    }

    /// Removes every property with `key`; returns the first one's value.
    pub fn remove(&mut self, key: &str) -> Option<Option<String>> {
        let first = self.entries.iter().position(|(k, _)| k == key)?;
        let (_, value) = self.entries.remove(first);
        self.entries.retain(|(k, _)| k != key);
        Some(value)
    }

    /// The first property with `key`: `None` if absent, `Some(None)` if it has no value.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// The value of a system property (`None` if absent or valueless).
    pub fn system(&self, property: SystemProperty) -> Option<&str> {
        self.get(property.key()).flatten()
    }

    /// `$.mid`.
    pub fn message_id(&self) -> Option<&str> {
        self.system(SystemProperty::MessageId)
    }

    /// `$.cid`.
    pub fn correlation_id(&self) -> Option<&str> {
        self.system(SystemProperty::CorrelationId)
    }

    /// `$.uid`.
    pub fn user_id(&self) -> Option<&str> {
        self.system(SystemProperty::UserId)
    }

    /// `$.ct`.
    pub fn content_type(&self) -> Option<&str> {
        self.system(SystemProperty::ContentType)
    }

    /// `$.ce`.
    pub fn content_encoding(&self) -> Option<&str> {
        self.system(SystemProperty::ContentEncoding)
    }

    /// `$.exp` as written.
    pub fn expiry(&self) -> Option<&str> {
        self.system(SystemProperty::Expiry)
    }

    /// `$.exp` parsed as an ISO 8601 UTC time.
    pub fn expiry_time(&self) -> Option<Result<Timestamp, TimestampError>> {
        self.expiry().map(str::parse)
    }

    /// `$.ifid`.
    pub fn interface_id(&self) -> Option<&str> {
        self.system(SystemProperty::InterfaceId)
    }

    /// `$.on`.
    pub fn output_name(&self) -> Option<&str> {
        self.system(SystemProperty::OutputName)
    }

    /// `$.to`.
    pub fn to(&self) -> Option<&str> {
        self.system(SystemProperty::To)
    }

    /// `$.sub`.
    pub fn component_name(&self) -> Option<&str> {
        self.system(SystemProperty::ComponentName)
    }

    /// Every property, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// The properties that are not [`SystemProperty`] keys, in order. Unknown `$.` keys count
    /// as application properties.
    pub fn application_properties(&self) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
        self.iter()
            .filter(|(k, _)| SystemProperty::from_key(k).is_none())
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bag has no properties.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for PropertyBag {
    /// Same as [`PropertyBag::encode`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for PropertyBag {
    type Err = PropertyBagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PropertyBag::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn python_sdk_bag() {
        // urlencode([("$.mid","abc 1"),("$.ct","application/json;charset=utf-8")], quote_via=quote)
        let bag = PropertyBag::parse("%24.mid=abc%201&%24.ct=application%2Fjson%3Bcharset%3Dutf-8")
            .unwrap();
        assert_eq!(bag.message_id(), Some("abc 1"));
        assert_eq!(bag.content_type(), Some("application/json;charset=utf-8"));
        assert_eq!(bag.application_properties().count(), 0);
    }

    #[test]
    fn docs_example_with_literal_dollar() {
        let bag = PropertyBag::parse("$.ct=application%2Fjson%3Bcharset%3Dutf-8").unwrap();
        assert_eq!(bag.content_type(), Some("application/json;charset=utf-8"));
    }

    #[test]
    fn c_sdk_bags() {
        // url-encoding on: lower-case hex; user properties first, then `%24.` system properties
        let bag = PropertyBag::parse(
            "temperatureAlert=true&%24.cid=c%2f1&%24.mid=m1&%24.ct=application%2fjson&%24.ce=utf-8",
        )
        .unwrap();
        assert_eq!(bag.correlation_id(), Some("c/1"));
        assert_eq!(bag.message_id(), Some("m1"));
        assert_eq!(bag.content_type(), Some("application/json"));
        assert_eq!(bag.content_encoding(), Some("utf-8"));
        assert_eq!(
            bag.application_properties().collect::<Vec<_>>(),
            [("temperatureAlert", Some("true"))]
        );
        // url-encoding off (the C default): raw values, a raw `=` inside a value
        let bag = PropertyBag::parse("%24.ct=application/json&sig=YWJj==&a+b=c d").unwrap();
        assert_eq!(bag.content_type(), Some("application/json"));
        assert_eq!(bag.get("sig"), Some(Some("YWJj==")));
        assert_eq!(bag.get("a+b"), Some(Some("c d")), "+ is not a space");
    }

    #[test]
    fn node_sdk_bag() {
        // querystring.stringify({'$.mid': 'x', '$.exp': '2030-01-01T00:00:00.000Z'}) then
        // encodeURIComponent for custom properties
        let bag = PropertyBag::parse("%24.mid=x&%24.exp=2030-01-01T00%3A00%3A00.000Z&k%C3%A9y=(v)")
            .unwrap();
        assert_eq!(bag.message_id(), Some("x"));
        assert_eq!(
            bag.expiry_time(),
            Some(Ok(Timestamp::from_unix_secs(1_893_456_000)))
        );
        assert_eq!(bag.get("kéy"), Some(Some("(v)")));
    }

    #[test]
    fn null_and_empty_values() {
        let bag = PropertyBag::parse("prop1&prop2=&prop3=a%20string").unwrap();
        assert_eq!(bag.get("prop1"), Some(None));
        assert_eq!(bag.get("prop2"), Some(Some("")));
        assert_eq!(bag.get("prop3"), Some(Some("a string")));
        assert_eq!(bag.get("prop4"), None);
        assert_eq!(bag.encode(), "prop1&prop2=&prop3=a%20string");
    }

    #[test]
    fn all_system_accessors() {
        let mut bag = PropertyBag::new();
        for p in SystemProperty::ALL {
            bag.set_system(p, p.key());
        }
        assert_eq!(bag.len(), SystemProperty::ALL.len());
        assert_eq!(bag.message_id(), Some("$.mid"));
        assert_eq!(bag.correlation_id(), Some("$.cid"));
        assert_eq!(bag.user_id(), Some("$.uid"));
        assert_eq!(bag.content_type(), Some("$.ct"));
        assert_eq!(bag.content_encoding(), Some("$.ce"));
        assert_eq!(bag.expiry(), Some("$.exp"));
        assert!(matches!(bag.expiry_time(), Some(Err(_))));
        assert_eq!(bag.interface_id(), Some("$.ifid"));
        assert_eq!(bag.output_name(), Some("$.on"));
        assert_eq!(bag.to(), Some("$.to"));
        assert_eq!(bag.component_name(), Some("$.sub"));
        assert_eq!(bag.application_properties().count(), 0);
        // unknown `$.` keys are application properties
        bag.push("$.custom", Some("1")).unwrap();
        assert_eq!(
            bag.application_properties().collect::<Vec<_>>(),
            [("$.custom", Some("1"))]
        );
    }

    #[test]
    fn set_replaces_first_and_drops_duplicates() {
        let mut bag = PropertyBag::parse("a=1&b=2&a=3").unwrap();
        assert_eq!(bag.get("a"), Some(Some("1")));
        bag.set("a", None).unwrap();
        assert_eq!(bag.encode(), "a&b=2");
        bag.set("c", Some("x")).unwrap();
        assert_eq!(bag.encode(), "a&b=2&c=x");
        assert_eq!(bag.remove("b"), Some(Some("2".to_string())));
        assert_eq!(bag.remove("b"), None);
        assert_eq!(bag.encode(), "a&c=x");
    }

    #[test]
    fn errors() {
        assert_eq!(
            PropertyBag::parse("a=1&=2"),
            Err(PropertyBagError::EmptyKey {
                index: 1,
                pair: "=2".to_string()
            })
        );
        assert_eq!(
            PropertyBag::parse("a=%FF"),
            Err(PropertyBagError::NotUtf8 {
                index: 0,
                pair: "a=%FF".to_string(),
                part: "value"
            })
        );
        assert!(matches!(
            PropertyBag::parse("%C3=1"),
            Err(PropertyBagError::NotUtf8 { part: "key", .. })
        ));
        let mut bag = PropertyBag::new();
        assert!(matches!(
            bag.push("", Some("v")),
            Err(PropertyBagError::EmptyKey { index: 0, .. })
        ));
        assert!(bag.is_empty());
    }

    #[test]
    fn skips_empty_pairs() {
        let bag = PropertyBag::parse("&a=1&&b&").unwrap();
        assert_eq!(bag.encode(), "a=1&b");
        assert!(PropertyBag::parse("").unwrap().is_empty());
    }

    fn bag_strategy() -> impl Strategy<Value = PropertyBag> {
        let key = prop_oneof![
            "\\PC{1,12}",
            "[$][.][a-z]{1,5}",
            "[a-zA-Z0-9/&=%+#? $.~-]{1,12}",
        ];
        let value = prop::option::of(prop_oneof!["\\PC{0,12}", "[a-zA-Z0-9/&=%+#? $.~-]{0,12}"]);
        prop::collection::vec((key, value), 0..8).prop_map(|entries| {
            let mut bag = PropertyBag::new();
            for (k, v) in &entries {
                bag.push(k, v.as_deref()).unwrap();
            }
            bag
        })
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(bag in bag_strategy()) {
            let encoded = bag.encode();
            prop_assert_eq!(PropertyBag::parse(&encoded).unwrap(), bag);
        }

        #[test]
        fn encoded_bag_is_one_topic_level(bag in bag_strategy()) {
            let encoded = bag.encode();
            prop_assert!(!encoded.contains(['/', '#', '+', '?', ' ', '$']), "{}", encoded);
            prop_assert!(encoded.is_ascii());
        }
    }
}
