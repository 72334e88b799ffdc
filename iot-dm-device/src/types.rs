//! The values the client hands out: twin state, desired patches, method calls and the
//! connection state.

use std::fmt;

use bytes::Bytes;
use iot_dm_core::wire::PropertyBag;
use serde_json::{Map, Value};

/// The twin as a device sees it: desired and reported properties with their versions (no
/// tags, no metadata), as [`DeviceClient::get_twin`](crate::DeviceClient::get_twin) returns it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TwinState {
    /// The desired properties, without `$version` and `$metadata`.
    pub desired: Value,
    /// The reported properties, without `$version` and `$metadata`.
    pub reported: Value,
    /// The desired `$version`.
    pub desired_version: u64,
    /// The reported `$version`.
    pub reported_version: u64,
}

impl TwinState {
    /// Reads the body of a twin GET response:
    /// `{"desired":{..,"$version":n},"reported":{..,"$version":m}}`.
    ///
    /// The error names the section and field that is missing or malformed.
    pub(crate) fn from_json(body: &Value) -> Result<TwinState, String> {
        let (desired, desired_version) = section(body, "desired")?;
        let (reported, reported_version) = section(body, "reported")?;
        Ok(TwinState {
            desired,
            reported,
            desired_version,
            reported_version,
        })
    }
}

/// Splits a twin section into its properties and its `$version`.
pub(crate) fn section(body: &Value, name: &str) -> Result<(Value, u64), String> {
    let Some(Value::Object(map)) = body.get(name) else {
        return Err(format!("twin body has no `{name}` object"));
    };
    let version = map.get("$version").and_then(Value::as_u64).ok_or_else(|| {
        format!("twin body field `{name}.$version` is missing or not an unsigned integer")
    })?;
    Ok((strip_meta(map), version))
}

/// The object without `$version` and `$metadata`.
pub(crate) fn strip_meta(map: &Map<String, Value>) -> Value {
    Value::Object(
        map.iter()
            .filter(|(k, _)| k.as_str() != "$version" && k.as_str() != "$metadata")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// A change of the desired properties, as delivered by
/// [`DeviceClient::desired_updates`](crate::DeviceClient::desired_updates).
///
/// Patches come in increasing `version` order. A `full` patch carries the whole desired
/// document instead of a change: it is the first item of every stream, and it is delivered
/// again after a reconnect when the desired properties changed while the device was offline.
/// A consumer applies an ordinary patch as a JSON merge patch (`null` deletes) and replaces
/// its state with a full one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DesiredPatch {
    /// The desired `$version` after this change.
    pub version: u64,
    /// The merge patch (or, when `full`, the whole desired document), without `$version`.
    pub patch: Value,
    /// Whether `patch` is the whole desired document rather than a change.
    pub full: bool,
}

/// A direct-method invocation handed to a method handler.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MethodCall {
    /// The method name, percent-decoded.
    pub name: String,
    /// The JSON payload (`null` when the body was empty).
    pub payload: Value,
    /// The hub's request id, echoed in the response.
    pub request_id: String,
}

/// A cloud-to-device message, or for a module identity a message routed to one of its
/// inputs, as delivered by [`DeviceClient::cloud_messages`](crate::DeviceClient::cloud_messages).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudMessage {
    /// The message body.
    pub payload: Bytes,
    /// The application and system properties (`$.mid`, `$.ct`, ...).
    pub properties: PropertyBag,
    /// The module input the message was routed to (module identities only).
    pub input: Option<String>,
}

/// Why the client is not connected right now (it is reconnecting).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The hub ended the session (the device was disabled, another connection with the same
    /// identity replaced this one, or the SAS token expired).
    SessionEnded,
    /// Sending to the hub failed.
    LinkBroken,
    /// The client is reconnecting with a fresh SAS token before the current one expires.
    TokenRenewal,
    /// [`DeviceClient::reconnect`](crate::DeviceClient::reconnect) asked for a new session.
    Requested,
    /// A connection attempt failed (the hub is unreachable or unavailable).
    ConnectFailed {
        /// What failed.
        error: String,
    },
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::SessionEnded => f.write_str("the hub ended the session"),
            DisconnectReason::LinkBroken => f.write_str("the link to the hub broke"),
            DisconnectReason::TokenRenewal => f.write_str("renewing the SAS token"),
            DisconnectReason::Requested => f.write_str("reconnecting on request"),
            DisconnectReason::ConnectFailed { error } => write!(f, "connect failed: {error}"),
        }
    }
}

/// Why the client stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`DeviceClient::close`](crate::DeviceClient::close) was called, or every handle was
    /// dropped.
    Requested,
    /// The hub refused the credentials on a reconnect (wrong, expired or revoked credentials,
    /// or a disabled or deleted device). Retrying cannot help, so the client stopped.
    Refused {
        /// The hub's reason.
        reason: String,
    },
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Requested => f.write_str("closed on request"),
            CloseReason::Refused { reason } => {
                write!(f, "the hub refused the credentials: {reason}")
            }
        }
    }
}

/// The state of the client's connection, published through
/// [`DeviceClient::link_state`](crate::DeviceClient::link_state).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// A connection attempt is under way.
    Connecting,
    /// A session is up and subscribed.
    Connected,
    /// The session was lost; the client waits out its back-off and reconnects.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The client stopped; it will not reconnect.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

impl LinkState {
    /// Whether a session is up.
    pub fn is_connected(&self) -> bool {
        matches!(self, LinkState::Connected)
    }

    /// Whether the client stopped for good.
    pub fn is_closed(&self) -> bool {
        matches!(self, LinkState::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn twin_state_strips_versions_and_metadata() {
        let t = TwinState::from_json(&json!({
            "desired": {"a": 1, "$version": 3, "$metadata": {}},
            "reported": {"$version": 1},
        }))
        .unwrap();
        assert_eq!(t.desired, json!({"a": 1}));
        assert_eq!(t.reported, json!({}));
        assert_eq!(t.desired_version, 3);
        assert_eq!(t.reported_version, 1);
    }

    #[test]
    fn twin_state_names_the_broken_field() {
        let e = TwinState::from_json(&json!({"desired": {"$version": 1}})).unwrap_err();
        assert!(e.contains("`reported`"), "{e}");
        let e = TwinState::from_json(&json!({"desired": {"$version": "x"}, "reported": {}}))
            .unwrap_err();
        assert!(e.contains("desired.$version"), "{e}");
    }
}
