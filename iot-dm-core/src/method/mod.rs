//! Direct methods: the invocation envelope, the device's answer and the payload codec.
//!
//! A back end invokes a method with `POST /twins/{deviceId}/methods` and a body of the shape
//!
//! ```json
//! {"methodName":"reboot","payload":{"delayInSeconds":5},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0}
//! ```
//!
//! ([`MethodRequest`]). The hub forwards only the payload to the device, on
//! `$iothub/methods/POST/{methodName}/?$rid={rid}`; the device answers on
//! `$iothub/methods/res/{status}/?$rid={rid}` with a JSON body, and the back end receives
//! `{"status":<int>,"payload":<json>}` ([`MethodResponse`]).
//!
//! Payloads are limited to [`MAX_PAYLOAD_BYTES`] (128 KiB of serialized JSON) each way.
//! [`decode_payload`] and [`encode_payload`] convert between the bytes on the wire and JSON
//! values the way the official SDKs do: an empty body is `null`, and a `null` payload is sent
//! as the literal `null`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use crate::clock::Timestamp;

/// Longest allowed method name, in characters.
pub const MAX_METHOD_NAME_LEN: usize = 128;

/// Printable US-ASCII characters that a method name may not contain (space and tab are not
/// printable and are rejected as well).
pub const METHOD_NAME_EXCLUDED: &str = "$()<>@,;:\\\"/[]?={}";

/// Largest method payload, in bytes of serialized JSON, in either direction (128 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// Response timeout used when a request does not set one, in seconds.
pub const DEFAULT_RESPONSE_TIMEOUT_SECS: u32 = 30;
/// Smallest allowed response timeout, in seconds.
pub const MIN_RESPONSE_TIMEOUT_SECS: u32 = 5;
/// Largest allowed response timeout, in seconds.
pub const MAX_RESPONSE_TIMEOUT_SECS: u32 = 300;
/// Connect timeout used when a request does not set one, in seconds: the device must
/// already be online.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u32 = 0;
/// Largest allowed connect timeout, in seconds.
pub const MAX_CONNECT_TIMEOUT_SECS: u32 = 300;

const RESPONSE_TIMEOUT_FIELD: &str = "responseTimeoutInSeconds";
const CONNECT_TIMEOUT_FIELD: &str = "connectTimeoutInSeconds";

/// A method name, request or payload that breaks the direct-method rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MethodError {
    /// The method name is empty.
    #[error("method name is empty")]
    EmptyName,
    /// The method name is longer than [`MAX_METHOD_NAME_LEN`].
    #[error("method name is {len} characters long, the limit is {limit}")]
    NameTooLong {
        /// The name's length in characters.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The method name contains a character outside the allowed set.
    #[error(
        "method name {name:?} contains {ch:?} at position {position}; allowed are printable \
         US-ASCII characters except space and {excluded}",
        excluded = METHOD_NAME_EXCLUDED
    )]
    InvalidNameChar {
        /// The rejected name.
        name: String,
        /// The offending character.
        ch: char,
        /// Its character position (0-based).
        position: usize,
    },
    /// A timeout is outside its allowed range.
    #[error("{field} is {value}, the allowed range is {min}..={max} seconds")]
    TimeoutOutOfRange {
        /// `responseTimeoutInSeconds` or `connectTimeoutInSeconds`.
        field: &'static str,
        /// The rejected number of seconds (saturated to the `i64` range).
        value: i64,
        /// The smallest allowed value.
        min: u32,
        /// The largest allowed value.
        max: u32,
    },
    /// A timeout given as a [`Duration`] has a fractional second; the wire carries whole
    /// seconds.
    #[error("{field} must be a whole number of seconds, got {value:?}")]
    TimeoutNotWholeSeconds {
        /// `responseTimeoutInSeconds` or `connectTimeoutInSeconds`.
        field: &'static str,
        /// The rejected duration.
        value: Duration,
    },
    /// The serialized payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("method payload is {size} bytes, the limit is {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size in bytes of serialized JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload bytes are not valid UTF-8 JSON.
    #[error("method payload is not valid JSON: {reason}")]
    InvalidPayload {
        /// The parser's description, with line and column.
        reason: String,
    },
}

fn validate_name(name: &str) -> Result<(), MethodError> {
    if name.is_empty() {
        return Err(MethodError::EmptyName);
    }
    for (position, ch) in name.chars().enumerate() {
        if position >= MAX_METHOD_NAME_LEN {
            return Err(MethodError::NameTooLong {
                len: name.chars().count(),
                limit: MAX_METHOD_NAME_LEN,
            });
        }
        if !ch.is_ascii_graphic() || METHOD_NAME_EXCLUDED.contains(ch) {
            return Err(MethodError::InvalidNameChar {
                name: name.to_string(),
                ch,
                position,
            });
        }
    }
    Ok(())
}

/// A validated direct-method name: 1 to [`MAX_METHOD_NAME_LEN`] printable US-ASCII
/// characters, none of them in [`METHOD_NAME_EXCLUDED`].
///
/// The name travels in the MQTT topic `$iothub/methods/POST/{name}/...`. `#`, `+` and `%` are
/// allowed by the hub's rule but are special in topics; the topic layer percent-encodes them.
///
/// ```
/// use iot_dm_core::method::{MethodError, MethodName};
/// let name = MethodName::new("reboot")?;
/// assert_eq!(name.as_str(), "reboot");
/// assert!(matches!(
///     MethodName::new("get/status"),
///     Err(MethodError::InvalidNameChar { ch: '/', position: 3, .. })
/// ));
/// # Ok::<(), MethodError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MethodName(String);

impl MethodName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<MethodName, MethodError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(MethodName(name))
    }

    /// Wraps a name known to be valid (crate constants, checked by tests).
    pub(crate) fn known(name: &'static str) -> MethodName {
        debug_assert!(validate_name(name).is_ok(), "{name}");
        MethodName(name.to_string())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for MethodName {
    type Err = MethodError;
    fn from_str(s: &str) -> Result<Self, MethodError> {
        MethodName::new(s)
    }
}

impl TryFrom<String> for MethodName {
    type Error = MethodError;
    fn try_from(s: String) -> Result<Self, MethodError> {
        MethodName::new(s)
    }
}

impl TryFrom<&str> for MethodName {
    type Error = MethodError;
    fn try_from(s: &str) -> Result<Self, MethodError> {
        MethodName::new(s)
    }
}

impl AsRef<str> for MethodName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for MethodName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for MethodName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MethodName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MethodName::new(s).map_err(serde::de::Error::custom)
    }
}

/// An `io::Write` that only counts bytes.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size of `payload` as compact serialized JSON, in bytes, without allocating it.
pub fn payload_size(payload: &Value) -> usize {
    let mut counter = ByteCounter(0);
    // Writing a `Value` into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, payload);
    counter.0
}

fn check_size(size: usize) -> Result<(), MethodError> {
    if size > MAX_PAYLOAD_BYTES {
        Err(MethodError::PayloadTooLarge {
            size,
            limit: MAX_PAYLOAD_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Checks that `payload` serializes to at most [`MAX_PAYLOAD_BYTES`].
pub fn check_payload(payload: &Value) -> Result<(), MethodError> {
    check_size(payload_size(payload))
}

/// Decodes a method payload from the bytes a device or the hub sent.
///
/// Empty (or all-whitespace) bodies decode to `null`, as the Python SDK's
/// `json.loads(payload or 'null')` does; bodies over [`MAX_PAYLOAD_BYTES`] and invalid JSON
/// are typed errors.
///
/// ```
/// use iot_dm_core::method::{decode_payload, encode_payload};
/// use serde_json::{json, Value};
/// assert_eq!(decode_payload(b"")?, Value::Null);
/// assert_eq!(decode_payload(b"null")?, Value::Null);
/// assert_eq!(decode_payload(br#"{"delay":5}"#)?, json!({"delay": 5}));
/// assert!(decode_payload(b"{oops").is_err());
/// assert_eq!(encode_payload(&Value::Null)?, b"null");
/// # Ok::<(), iot_dm_core::method::MethodError>(())
/// ```
pub fn decode_payload(bytes: &[u8]) -> Result<Value, MethodError> {
    check_size(bytes.len())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| MethodError::InvalidPayload {
        reason: e.to_string(),
    })
}

/// Encodes a method payload as compact JSON bytes (`null` becomes the literal `null`), or
/// fails with [`MethodError::PayloadTooLarge`].
pub fn encode_payload(payload: &Value) -> Result<Vec<u8>, MethodError> {
    check_payload(payload)?;
    serde_json::to_vec(payload).map_err(|e| MethodError::InvalidPayload {
        reason: e.to_string(),
    })
}

fn whole_secs(field: &'static str, d: Duration, min: u32, max: u32) -> Result<u32, MethodError> {
    if d.subsec_nanos() != 0 {
        return Err(MethodError::TimeoutNotWholeSeconds { field, value: d });
    }
    secs_in_range(
        field,
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        min,
        max,
    )
}

fn secs_in_range(field: &'static str, value: i64, min: u32, max: u32) -> Result<u32, MethodError> {
    match u32::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(MethodError::TimeoutOutOfRange {
            field,
            value,
            min,
            max,
        }),
    }
}

/// A direct-method invocation, in the exact REST body shape.
///
/// Build one with [`MethodRequest::builder`]; deserializing validates the name, both timeouts
/// (missing or `null` timeouts take the defaults) and the payload size.
///
/// ```
/// use iot_dm_core::method::{MethodError, MethodRequest};
/// use serde_json::json;
/// use std::time::Duration;
///
/// let req = MethodRequest::builder("reboot")
///     .payload(json!({"delayInSeconds": 5}))
///     .response_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(
///     serde_json::to_value(&req).unwrap(),
///     json!({"methodName": "reboot", "payload": {"delayInSeconds": 5},
///            "responseTimeoutInSeconds": 60, "connectTimeoutInSeconds": 0})
/// );
///
/// let parsed: MethodRequest = serde_json::from_str(r#"{"methodName":"ping"}"#).unwrap();
/// assert_eq!(parsed.response_timeout(), Duration::from_secs(30));
/// assert!(parsed.payload().is_null());
///
/// let err = MethodRequest::builder("reboot").response_timeout_secs(301).build();
/// assert!(matches!(err, Err(MethodError::TimeoutOutOfRange { max: 300, .. })));
/// # Ok::<(), MethodError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawMethodRequest")]
pub struct MethodRequest {
    method_name: MethodName,
    payload: Value,
    response_timeout_in_seconds: u32,
    connect_timeout_in_seconds: u32,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMethodRequest {
    method_name: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    response_timeout_in_seconds: Option<i64>,
    #[serde(default)]
    connect_timeout_in_seconds: Option<i64>,
}

impl TryFrom<RawMethodRequest> for MethodRequest {
    type Error = MethodError;
    fn try_from(raw: RawMethodRequest) -> Result<Self, MethodError> {
        let method_name = MethodName::new(raw.method_name)?;
        let response = raw
            .response_timeout_in_seconds
            .unwrap_or(DEFAULT_RESPONSE_TIMEOUT_SECS.into());
        let connect = raw
            .connect_timeout_in_seconds
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS.into());
        check_payload(&raw.payload)?;
        Ok(MethodRequest {
            method_name,
            payload: raw.payload,
            response_timeout_in_seconds: secs_in_range(
                RESPONSE_TIMEOUT_FIELD,
                response,
                MIN_RESPONSE_TIMEOUT_SECS,
                MAX_RESPONSE_TIMEOUT_SECS,
            )?,
            connect_timeout_in_seconds: secs_in_range(
                CONNECT_TIMEOUT_FIELD,
                connect,
                0,
                MAX_CONNECT_TIMEOUT_SECS,
            )?,
        })
    }
}

impl MethodRequest {
    /// Starts a request for method `name` with a `null` payload and default timeouts.
    pub fn builder(name: impl Into<String>) -> MethodRequestBuilder {
        MethodRequestBuilder {
            name: name.into(),
            payload: Value::Null,
            response_timeout: Duration::from_secs(DEFAULT_RESPONSE_TIMEOUT_SECS.into()),
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS.into()),
        }
    }

    /// The method name.
    pub fn name(&self) -> &MethodName {
        &self.method_name
    }

    /// The payload (`null` when none was given).
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// Takes the payload out of the request.
    pub fn into_payload(self) -> Value {
        self.payload
    }

    /// How long the hub waits for the device's answer once the request is delivered.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_in_seconds.into())
    }

    /// How long the hub waits for a disconnected device to come online (zero: not at all).
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_in_seconds.into())
    }

    /// The time by which the device must be online, for a request received at `received`.
    pub fn connect_deadline(&self, received: Timestamp) -> Timestamp {
        received + self.connect_timeout()
    }

    /// The time by which the device must answer, for a request delivered at `delivered`.
    pub fn response_deadline(&self, delivered: Timestamp) -> Timestamp {
        delivered + self.response_timeout()
    }

    /// The payload as the bytes the hub publishes to the device.
    pub fn device_payload(&self) -> Result<Vec<u8>, MethodError> {
        encode_payload(&self.payload)
    }
}

/// Builds a [`MethodRequest`]; every check happens in [`MethodRequestBuilder::build`].
#[derive(Debug, Clone)]
pub struct MethodRequestBuilder {
    name: String,
    payload: Value,
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl MethodRequestBuilder {
    /// Sets the JSON payload (default `null`).
    pub fn payload(mut self, payload: impl Into<Value>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the response timeout: whole seconds, 5 to 300 (default 30).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the response timeout in seconds, 5 to 300 (default 30).
    pub fn response_timeout_secs(self, secs: u32) -> Self {
        self.response_timeout(Duration::from_secs(secs.into()))
    }

    /// Sets the connect timeout: whole seconds, 0 to 300 (default 0).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the connect timeout in seconds, 0 to 300 (default 0).
    pub fn connect_timeout_secs(self, secs: u32) -> Self {
        self.connect_timeout(Duration::from_secs(secs.into()))
    }

    /// Validates the name, the timeouts and the payload size.
    pub fn build(self) -> Result<MethodRequest, MethodError> {
        let method_name = MethodName::new(self.name)?;
        let response_timeout_in_seconds = whole_secs(
            RESPONSE_TIMEOUT_FIELD,
            self.response_timeout,
            MIN_RESPONSE_TIMEOUT_SECS,
            MAX_RESPONSE_TIMEOUT_SECS,
        )?;
        let connect_timeout_in_seconds = whole_secs(
            CONNECT_TIMEOUT_FIELD,
            self.connect_timeout,
            0,
            MAX_CONNECT_TIMEOUT_SECS,
        )?;
        check_payload(&self.payload)?;
        Ok(MethodRequest {
            method_name,
            payload: self.payload,
            response_timeout_in_seconds,
            connect_timeout_in_seconds,
        })
    }
}

/// A device's answer to a direct method, as the back end receives it:
/// `{"status":<int>,"payload":<json>}`.
///
/// The device chooses `status` (it travels in the response topic) and `payload` (the
/// response body). Deserializing checks the payload size; a missing payload is `null`.
///
/// ```
/// use iot_dm_core::method::MethodResponse;
/// use serde_json::json;
/// let resp = MethodResponse::from_device(200, br#"{"rebootedAt":"soon"}"#)?;
/// assert!(resp.is_success());
/// assert_eq!(
///     serde_json::to_value(&resp).unwrap(),
///     json!({"status": 200, "payload": {"rebootedAt": "soon"}})
/// );
/// # Ok::<(), iot_dm_core::method::MethodError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawMethodResponse")]
pub struct MethodResponse {
    /// The status code the device chose.
    pub status: i32,
    /// The device's JSON answer.
    pub payload: Value,
}

#[derive(serde::Deserialize)]
struct RawMethodResponse {
    status: i32,
    #[serde(default)]
    payload: Value,
}

impl TryFrom<RawMethodResponse> for MethodResponse {
    type Error = MethodError;
    fn try_from(raw: RawMethodResponse) -> Result<Self, MethodError> {
        MethodResponse::new(raw.status, raw.payload)
    }
}

impl MethodResponse {
    /// A response with a size-checked payload.
    pub fn new(status: i32, payload: Value) -> Result<MethodResponse, MethodError> {
        check_payload(&payload)?;
        Ok(MethodResponse { status, payload })
    }

    /// A response from the status and raw body a device published (see [`decode_payload`]).
    pub fn from_device(status: i32, body: &[u8]) -> Result<MethodResponse, MethodError> {
        Ok(MethodResponse {
            status,
            payload: decode_payload(body)?,
        })
    }

    /// The body a device publishes for this response (see [`encode_payload`]).
    pub fn device_body(&self) -> Result<Vec<u8>, MethodError> {
        encode_payload(&self.payload)
    }

    /// Whether the status is in `200..=299`.
    pub fn is_success(&self) -> bool {
        (200..=299).contains(&self.status)
    }
}

#[cfg(test)]
mod tests;
