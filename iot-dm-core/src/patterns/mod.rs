//! Device-management patterns shared by device and service: reboot, factory reset and
//! firmware update.
//!
//! Each pattern is a state machine the device drives and reports in its twin, and the service
//! reads back from the twin to follow the device's progress. Time enters as [`Timestamp`]
//! arguments, so both sides replay the same transitions.
//!
//! | pattern | status type | method | reported key |
//! |---|---|---|---|
//! | reboot | [`RebootStatus`] | [`REBOOT_METHOD`] | `deviceManagement.reboot` |
//! | factory reset | [`FactoryResetStatus`] | [`FACTORY_RESET_METHOD`] | `deviceManagement.factoryReset` |
//! | firmware update | [`FirmwareStatus`] | [`FIRMWARE_UPDATE_METHOD`] | `deviceManagement.firmware` |
//!
//! # Reported layout
//!
//! All patterns report under one reported property, [`REPORTED_ROOT`]:
//!
//! ```json
//! {"deviceManagement": {
//!   "reboot": {"state": "scheduled", "scheduledFor": "2024-05-10T02:00:00.000Z",
//!              "lastReboot": null, "reason": null, "lastUpdated": "2024-05-09T17:11:30.000Z"},
//!   "factoryReset": {"state": "idle", "keepNetworkConfig": null, "lastReset": null,
//!                    "reason": null, "lastUpdated": "2024-05-01T00:00:00.000Z"},
//!   "firmware": {"state": "downloading", "currentVersion": "1.9.0", "targetVersion": "2.0.1",
//!                "progress": 42, "bytesDownloaded": 440401, "totalBytes": 1048576,
//!                "result": null, "lastUpdated": "2024-05-09T17:12:00.000Z"}
//! }}
//! ```
//!
//! Every state of a pattern writes *every* field of its object, with `null` for the fields
//! that do not apply, so [`PatternStatus::to_patch`] is a JSON merge patch that overwrites
//! whatever a previous state left behind. Readers treat a missing field like `null`, since
//! the twin drops `null` members when it applies the patch. Keys are lower-camel ASCII
//! (no `.`, `$` or spaces), as twin keys require.
//!
//! The firmware request travels the other way, in the desired properties
//! (`deviceManagement.firmware`, see [`FirmwareUpdateRequest`]) or as the payload of the
//! `firmwareUpdate` method.
//!
//! ```
//! use iot_dm_core::clock::Timestamp;
//! use iot_dm_core::patterns::{PatternStatus, RebootEvent, RebootStatus};
//! use serde_json::json;
//!
//! let t0 = Timestamp::from_unix_secs(1_700_000_000);
//! // device side
//! let mut reboot = RebootStatus::new(t0);
//! reboot.apply(RebootEvent::Schedule { at: None }, t0)?;
//! let patch = reboot.to_patch(); // send as a reported-properties patch
//! assert_eq!(patch["deviceManagement"]["reboot"]["state"], json!("scheduled"));
//!
//! // service side, reading the reported section of the twin
//! let seen = RebootStatus::from_reported(&patch)?.expect("reported");
//! assert_eq!(seen, reboot);
//! # Ok::<(), iot_dm_core::patterns::PatternError>(())
//! ```

use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::method::MethodName;

mod factory_reset;
mod firmware;
mod reboot;

pub use factory_reset::{
    FactoryResetEvent, FactoryResetRequest, FactoryResetState, FactoryResetStatus,
};
pub use firmware::{
    FirmwareEvent, FirmwareFailure, FirmwareResultCode, FirmwareState, FirmwareStatus,
    FirmwareUpdateRequest, MAX_PACKAGE_SIZE, MAX_SIGNATURE_LEN, MAX_URI_LEN, MAX_VERSION_LEN,
};
pub use reboot::{RebootEvent, RebootRequest, RebootState, RebootStatus, MAX_REBOOT_DELAY_SECS};

/// The reported (and desired) property all patterns live under.
pub const REPORTED_ROOT: &str = "deviceManagement";

/// The direct method that asks a device to reboot.
pub const REBOOT_METHOD: &str = "reboot";
/// The direct method that asks a device to reset to factory settings.
pub const FACTORY_RESET_METHOD: &str = "factoryReset";
/// The direct method that asks a device to update its firmware.
pub const FIRMWARE_UPDATE_METHOD: &str = "firmwareUpdate";

/// Longest free-text field (failure reasons and messages), in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 1024;

/// An illegal pattern transition or a malformed pattern document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The event does not apply in the pattern's current state.
    #[error("{pattern}: cannot {event} while {state}")]
    IllegalTransition {
        /// `reboot`, `factoryReset` or `firmware`.
        pattern: &'static str,
        /// The current state's name.
        state: &'static str,
        /// The rejected event's name.
        event: &'static str,
    },
    /// A scheduled reboot was started before its time.
    #[error("reboot: cannot start before scheduledFor {scheduled_for}, it is {now}")]
    NotYetDue {
        /// When the reboot is scheduled.
        scheduled_for: Timestamp,
        /// When the start was attempted.
        now: Timestamp,
    },
    /// Download progress went backwards within one download.
    #[error("firmware: bytesDownloaded went backwards from {from} to {to} within one download")]
    ProgressBackwards {
        /// The bytes already reported.
        from: u64,
        /// The smaller count now reported.
        to: u64,
    },
    /// More bytes were reported than the package holds.
    #[error("firmware: bytesDownloaded {bytes} exceeds the package size of {size} bytes")]
    DownloadOverrun {
        /// The reported count.
        bytes: u64,
        /// The package size.
        size: u64,
    },
    /// A text is longer than its limit.
    #[error("{field} is {len} {unit} long, the limit is {limit}")]
    TextTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
        /// `bytes` or `characters`.
        unit: &'static str,
    },
    /// A required text is empty.
    #[error("{field} is empty")]
    EmptyText {
        /// The field.
        field: &'static str,
    },
    /// A text contains a character it may not hold.
    #[error("{field} contains {ch:?} at position {position}; {rule}")]
    InvalidChar {
        /// The field.
        field: &'static str,
        /// The offending character.
        ch: char,
        /// Its character position (0-based).
        position: usize,
        /// What the field allows.
        rule: &'static str,
    },
    /// The package URI is not an absolute `scheme://host/...` URI.
    #[error("packageUri {uri:?} is invalid: {reason}")]
    InvalidUri {
        /// The rejected URI.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The SHA-256 digest does not have 64 characters.
    #[error("sha256 is {len} characters long, expected 64 hex digits")]
    Sha256Length {
        /// The digest's length in characters.
        len: usize,
    },
    /// The SHA-256 digest holds a non-hex character.
    #[error("sha256 contains {ch:?} at position {position}, expected hex digits")]
    Sha256Char {
        /// The offending character.
        ch: char,
        /// Its position (0-based).
        position: usize,
    },
    /// A number is outside its allowed range.
    #[error("{field} is {value}, the allowed range is {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The rejected value.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A required JSON member is missing or `null`.
    #[error("{path} is missing")]
    MissingField {
        /// The member's path, e.g. `deviceManagement.firmware.targetVersion`.
        path: String,
    },
    /// A JSON member has the wrong type or an impossible value.
    #[error("{path} is invalid: expected {expected}")]
    InvalidField {
        /// The member's path.
        path: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// A JSON member holds a name outside its vocabulary (a state or a result code).
    #[error("{path} is {value:?}, expected one of {expected}")]
    UnknownValue {
        /// The member's path.
        path: String,
        /// The rejected name.
        value: String,
        /// The allowed names.
        expected: &'static str,
    },
}

/// A pattern's status as a device reports it: its reported JSON, a parser back from that
/// JSON, and the merge patch that writes it into the twin.
pub trait PatternStatus: Sized {
    /// The key under [`REPORTED_ROOT`] (`reboot`, `factoryReset`, `firmware`).
    const KEY: &'static str;
    /// The direct method that starts the pattern.
    const METHOD: &'static str;

    /// The pattern's object, with every field present (`null` where it does not apply).
    fn to_json(&self) -> Value;

    /// Parses the pattern's object; missing members count as `null`.
    fn from_json(value: &Value) -> Result<Self, PatternError>;

    /// The reported-properties merge patch `{"deviceManagement":{KEY:{...}}}`.
    fn to_patch(&self) -> Value {
        wrap(Self::KEY, self.to_json())
    }

    /// Reads the pattern from a twin's reported section (the object holding
    /// `deviceManagement`, `$version`, ...); `None` when the device never reported it.
    fn from_reported(reported: &Value) -> Result<Option<Self>, PatternError> {
        match pattern_member(reported, "reported", Self::KEY)? {
            Some(v) => Self::from_json(v).map(Some),
            None => Ok(None),
        }
    }

    /// [`Self::METHOD`] as a method name.
    fn method_name() -> MethodName {
        MethodName::known(Self::METHOD)
    }
}

/// `section.deviceManagement.key`, or `None` when absent or `null` at either level.
pub(crate) fn pattern_member<'a>(
    section: &'a Value,
    section_name: &'static str,
    key: &str,
) -> Result<Option<&'a Value>, PatternError> {
    let Some(map) = section.as_object() else {
        return Err(PatternError::InvalidField {
            path: section_name.to_string(),
            expected: "an object",
        });
    };
    let root = match map.get(REPORTED_ROOT) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(root)) => root,
        Some(_) => {
            return Err(PatternError::InvalidField {
                path: REPORTED_ROOT.to_string(),
                expected: "an object",
            })
        }
    };
    Ok(root.get(key).filter(|v| !v.is_null()))
}

/// The `{"deviceManagement":{key: body}}` wrapper.
pub(crate) fn wrap(key: &str, body: Value) -> Value {
    let mut inner = Map::new();
    inner.insert(key.to_string(), body);
    let mut root = Map::new();
    root.insert(REPORTED_ROOT.to_string(), Value::Object(inner));
    Value::Object(root)
}

/// A timestamp as JSON.
pub(crate) fn ts(t: Timestamp) -> Value {
    Value::String(t.to_string())
}

/// An optional timestamp as JSON (`null` when absent).
pub(crate) fn opt_ts(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, ts)
}

/// An optional string as JSON (`null` when absent).
pub(crate) fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// Checks a free-text field against [`MAX_TEXT_LEN`].
pub(crate) fn check_text(field: &'static str, text: &str) -> Result<String, PatternError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(PatternError::TextTooLong {
            field,
            len: text.len(),
            limit: MAX_TEXT_LEN,
            unit: "bytes",
        });
    }
    Ok(text.to_string())
}

/// A JSON object being parsed, with its path for error messages.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// `value` as an object at `path`.
    pub(crate) fn new(value: &'a Value, path: String) -> Result<Obj<'a>, PatternError> {
        match value.as_object() {
            Some(map) => Ok(Obj { map, path }),
            None => Err(PatternError::InvalidField {
                path,
                expected: "an object",
            }),
        }
    }

    fn path_of(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    /// A member, `None` when absent or `null`.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    pub(crate) fn missing(&self, field: &str) -> PatternError {
        PatternError::MissingField {
            path: self.path_of(field),
        }
    }

    pub(crate) fn invalid(&self, field: &str, expected: &'static str) -> PatternError {
        PatternError::InvalidField {
            path: self.path_of(field),
            expected,
        }
    }

    pub(crate) fn unknown(&self, field: &str, value: &str, expected: &'static str) -> PatternError {
        PatternError::UnknownValue {
            path: self.path_of(field),
            value: value.to_string(),
            expected,
        }
    }

    pub(crate) fn opt_str(&self, field: &str) -> Result<Option<&'a str>, PatternError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(field, "a string")),
        }
    }

    pub(crate) fn str(&self, field: &str) -> Result<&'a str, PatternError> {
        self.opt_str(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn opt_timestamp(&self, field: &str) -> Result<Option<Timestamp>, PatternError> {
        match self.opt_str(field) {
            Ok(None) => Ok(None),
            Ok(Some(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(field, "an ISO 8601 UTC timestamp")),
            Err(_) => Err(self.invalid(field, "an ISO 8601 UTC timestamp")),
        }
    }

    pub(crate) fn timestamp(&self, field: &str) -> Result<Timestamp, PatternError> {
        self.opt_timestamp(field)?
            .ok_or_else(|| self.missing(field))
    }

    pub(crate) fn opt_u64(&self, field: &str) -> Result<Option<u64>, PatternError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.invalid(field, "a non-negative integer")),
        }
    }

    pub(crate) fn u64(&self, field: &str) -> Result<u64, PatternError> {
        self.opt_u64(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn opt_bool(&self, field: &str) -> Result<Option<bool>, PatternError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(field, "a boolean")),
        }
    }

    pub(crate) fn bool(&self, field: &str) -> Result<bool, PatternError> {
        self.opt_bool(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn obj(&self, field: &str) -> Result<Obj<'a>, PatternError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(v) => Obj::new(v, self.path_of(field)),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(test)]
mod tests;
