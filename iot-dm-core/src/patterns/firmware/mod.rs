//! The firmware-update pattern, with the states and result codes of LwM2M object 5 extended
//! by verification and rollback.
//!
//! ```text
//! idle | succeeded | failed | rolledBack
//!   --start--> downloading --progress*--> --downloaded--> downloaded --verify--> verifying
//!   --apply--> applying [--reboot--> rebooting] --succeed--> succeeded
//! idle | succeeded | failed | rolledBack --alreadyInstalled--> succeeded
//! any active state --fail--> failed
//! verifying | applying | rebooting --rollBack--> rolledBack
//! downloading | downloaded | verifying --cancel--> idle
//! succeeded | failed | rolledBack --clear--> idle
//! ```
//!
//! Reported as `deviceManagement.firmware`:
//!
//! | field | type | set in |
//! |---|---|---|
//! | `state` | `idle` \| `downloading` \| `downloaded` \| `verifying` \| `applying` \| `rebooting` \| `succeeded` \| `failed` \| `rolledBack` | always |
//! | `currentVersion` | string | when known |
//! | `targetVersion` | string | every state but `idle` |
//! | `progress` | integer 0-100 | `downloading` |
//! | `bytesDownloaded` | integer | `downloading` |
//! | `totalBytes` | integer | `downloading` |
//! | `result` | `{"code": .., "message": ..}` | `failed`, `rolledBack` |
//! | `lastUpdated` | timestamp | always: when the state was entered |

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::{
    check_text, opt_str, ts, Obj, PatternError, PatternStatus, FIRMWARE_UPDATE_METHOD,
    REPORTED_ROOT,
};
use crate::clock::Timestamp;

mod request;

pub use request::{
    FirmwareUpdateRequest, MAX_PACKAGE_SIZE, MAX_SIGNATURE_LEN, MAX_URI_LEN, MAX_VERSION_LEN,
};

const PATTERN: &str = "firmware";
const STATES: &str =
    "idle, downloading, downloaded, verifying, applying, rebooting, succeeded, failed, rolledBack";
const CODES: &str = "integrityFailure, outOfStorage, outOfMemory, connectionLost, invalidUri, \
                     unsupportedPackage, unsupportedProtocol, updateFailed";

/// Why a firmware update failed, after LwM2M object 5's "Update Result" resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum FirmwareResultCode {
    /// The package's digest or signature did not match (LwM2M 5).
    IntegrityFailure,
    /// Not enough storage for the package (LwM2M 2).
    OutOfStorage,
    /// Ran out of memory during the update (LwM2M 3).
    OutOfMemory,
    /// The connection broke during the download (LwM2M 4).
    ConnectionLost,
    /// The package URI is malformed or unreachable (LwM2M 7).
    InvalidUri,
    /// The package type is not supported (LwM2M 6).
    UnsupportedPackage,
    /// The URI's protocol is not supported (LwM2M 9).
    UnsupportedProtocol,
    /// Any other failure while applying (LwM2M 8).
    UpdateFailed,
}

impl FirmwareResultCode {
    /// All codes.
    pub const ALL: [FirmwareResultCode; 8] = [
        FirmwareResultCode::IntegrityFailure,
        FirmwareResultCode::OutOfStorage,
        FirmwareResultCode::OutOfMemory,
        FirmwareResultCode::ConnectionLost,
        FirmwareResultCode::InvalidUri,
        FirmwareResultCode::UnsupportedPackage,
        FirmwareResultCode::UnsupportedProtocol,
        FirmwareResultCode::UpdateFailed,
    ];

    /// The reported name.
    pub const fn as_str(self) -> &'static str {
        match self {
            FirmwareResultCode::IntegrityFailure => "integrityFailure",
            FirmwareResultCode::OutOfStorage => "outOfStorage",
            FirmwareResultCode::OutOfMemory => "outOfMemory",
            FirmwareResultCode::ConnectionLost => "connectionLost",
            FirmwareResultCode::InvalidUri => "invalidUri",
            FirmwareResultCode::UnsupportedPackage => "unsupportedPackage",
            FirmwareResultCode::UnsupportedProtocol => "unsupportedProtocol",
            FirmwareResultCode::UpdateFailed => "updateFailed",
        }
    }

    /// The LwM2M object 5 "Update Result" value (resource 5/0/5).
    pub const fn lwm2m_update_result(self) -> u8 {
        match self {
            FirmwareResultCode::OutOfStorage => 2,
            FirmwareResultCode::OutOfMemory => 3,
            FirmwareResultCode::ConnectionLost => 4,
            FirmwareResultCode::IntegrityFailure => 5,
            FirmwareResultCode::UnsupportedPackage => 6,
            FirmwareResultCode::InvalidUri => 7,
            FirmwareResultCode::UpdateFailed => 8,
            FirmwareResultCode::UnsupportedProtocol => 9,
        }
    }

    /// The code for an LwM2M "Update Result" failure value (2-9).
    pub fn from_lwm2m_update_result(value: u8) -> Option<FirmwareResultCode> {
        FirmwareResultCode::ALL
            .into_iter()
            .find(|c| c.lwm2m_update_result() == value)
    }
}

impl fmt::Display for FirmwareResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FirmwareResultCode {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        FirmwareResultCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| PatternError::UnknownValue {
                path: "result.code".to_string(),
                value: s.to_string(),
                expected: CODES,
            })
    }
}

/// A failed or rolled-back update's result: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareFailure {
    /// What went wrong.
    pub code: FirmwareResultCode,
    /// Details, at most [`super::MAX_TEXT_LEN`] bytes (may be empty).
    pub message: String,
}

impl FirmwareFailure {
    /// A failure with a size-checked message.
    pub fn new(
        code: FirmwareResultCode,
        message: impl Into<String>,
    ) -> Result<FirmwareFailure, PatternError> {
        let message = message.into();
        check_text("result.message", &message)?;
        Ok(FirmwareFailure { code, message })
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), self.code.as_str().into());
        m.insert("message".into(), self.message.clone().into());
        Value::Object(m)
    }

    fn from_obj(o: &Obj<'_>) -> Result<FirmwareFailure, PatternError> {
        let code = o.str("code")?;
        let code = FirmwareResultCode::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
            .ok_or_else(|| o.unknown("code", code, CODES))?;
        FirmwareFailure::new(code, o.opt_str("message")?.unwrap_or(""))
    }
}

/// Where a firmware update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FirmwareState {
    /// No update running.
    Idle,
    /// Fetching the package.
    Downloading {
        /// Percent done, 0-100.
        progress: u8,
        /// Bytes fetched so far.
        bytes_downloaded: u64,
        /// The package size.
        total_bytes: u64,
    },
    /// The package is fetched.
    Downloaded,
    /// Checking the package's digest (and signature).
    Verifying,
    /// Installing the package.
    Applying,
    /// Restarting into the new firmware.
    Rebooting,
    /// The new firmware runs.
    Succeeded,
    /// The update failed; the old firmware still runs.
    Failed(FirmwareFailure),
    /// The new firmware was installed but the device went back to the old one.
    RolledBack(FirmwareFailure),
}

impl FirmwareState {
    /// The reported name of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            FirmwareState::Idle => "idle",
            FirmwareState::Downloading { .. } => "downloading",
            FirmwareState::Downloaded => "downloaded",
            FirmwareState::Verifying => "verifying",
            FirmwareState::Applying => "applying",
            FirmwareState::Rebooting => "rebooting",
            FirmwareState::Succeeded => "succeeded",
            FirmwareState::Failed(_) => "failed",
            FirmwareState::RolledBack(_) => "rolledBack",
        }
    }

    /// Whether an update is in progress (downloading to rebooting).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            FirmwareState::Downloading { .. }
                | FirmwareState::Downloaded
                | FirmwareState::Verifying
                | FirmwareState::Applying
                | FirmwareState::Rebooting
        )
    }

    /// The LwM2M object 5 "State" value (resource 5/0/3): 0 idle, 1 downloading,
    /// 2 downloaded, 3 updating. Finished updates are idle in LwM2M terms.
    pub fn lwm2m_state(&self) -> u8 {
        match self {
            FirmwareState::Downloading { .. } => 1,
            FirmwareState::Downloaded | FirmwareState::Verifying => 2,
            FirmwareState::Applying | FirmwareState::Rebooting => 3,
            _ => 0,
        }
    }
}

/// Something that happens to a firmware update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FirmwareEvent {
    /// Begin an update (from idle, succeeded, failed or rolledBack).
    Start {
        /// What to install.
        request: FirmwareUpdateRequest,
    },
    /// The device already runs the requested version: the update succeeds without a
    /// download (from idle, succeeded, failed or rolledBack); it becomes the current version.
    AlreadyInstalled {
        /// What was asked for.
        request: FirmwareUpdateRequest,
    },
    /// `bytes` of the package are fetched (from downloading; never fewer than before).
    Progress {
        /// Bytes fetched so far.
        bytes: u64,
    },
    /// The whole package is fetched (from downloading).
    DownloadComplete,
    /// Begin checking the package (from downloaded).
    Verify,
    /// The package checked out; begin installing (from verifying).
    Apply,
    /// Restart into the new firmware (from applying).
    Reboot,
    /// The new firmware runs (from applying or rebooting); it becomes the current version.
    Succeed,
    /// The update failed (from any active state).
    Fail(FirmwareFailure),
    /// The device went back to the old firmware (from verifying, applying or rebooting).
    RollBack(FirmwareFailure),
    /// Abandon the update before installing (from downloading, downloaded or verifying).
    Cancel,
    /// Acknowledge a finished update (from succeeded, failed or rolledBack).
    Clear,
}

impl FirmwareEvent {
    /// The event's name, for errors.
    pub fn as_str(&self) -> &'static str {
        match self {
            FirmwareEvent::Start { .. } => "start",
            FirmwareEvent::AlreadyInstalled { .. } => "alreadyInstalled",
            FirmwareEvent::Progress { .. } => "progress",
            FirmwareEvent::DownloadComplete => "downloadComplete",
            FirmwareEvent::Verify => "verify",
            FirmwareEvent::Apply => "apply",
            FirmwareEvent::Reboot => "reboot",
            FirmwareEvent::Succeed => "succeed",
            FirmwareEvent::Fail(_) => "fail",
            FirmwareEvent::RollBack(_) => "rollBack",
            FirmwareEvent::Cancel => "cancel",
            FirmwareEvent::Clear => "clear",
        }
    }
}

/// A device's firmware-update status: state, running and target versions, and when the
/// state was entered.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::patterns::{
///     FirmwareEvent as E, FirmwareState, FirmwareStatus, FirmwareUpdateRequest, PatternStatus,
/// };
///
/// let t = Timestamp::from_unix_secs;
/// let mut fw = FirmwareStatus::new(Some("1.9.0"), t(0))?;
/// let request = FirmwareUpdateRequest::new(
///     "2.0.1",
///     "https://updates.example.com/fw/2.0.1.bin",
///     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
///     1000,
/// )?;
/// fw.apply(E::Start { request }, t(1))?;
/// fw.apply(E::Progress { bytes: 420 }, t(2))?;
/// assert_eq!(fw.to_json()["progress"], 42);
/// assert!(fw.apply(E::Progress { bytes: 100 }, t(3)).is_err()); // backwards
/// for event in [E::DownloadComplete, E::Verify, E::Apply, E::Reboot, E::Succeed] {
///     fw.apply(event, t(4))?;
/// }
/// assert_eq!(fw.state(), &FirmwareState::Succeeded);
/// assert_eq!(fw.current_version(), Some("2.0.1"));
/// assert_eq!(FirmwareStatus::from_json(&fw.to_json())?, fw);
/// # Ok::<(), iot_dm_core::patterns::PatternError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareStatus {
    state: FirmwareState,
    current_version: Option<String>,
    target_version: Option<String>,
    updated: Timestamp,
}

impl FirmwareStatus {
    /// An idle status running `current_version` (if known), as of `now`.
    pub fn new(current_version: Option<&str>, now: Timestamp) -> Result<Self, PatternError> {
        Ok(FirmwareStatus {
            state: FirmwareState::Idle,
            current_version: current_version
                .map(|v| request::validate_version("currentVersion", v))
                .transpose()?,
            target_version: None,
            updated: now,
        })
    }

    /// The current state.
    pub fn state(&self) -> &FirmwareState {
        &self.state
    }

    /// The version the device runs, if known.
    pub fn current_version(&self) -> Option<&str> {
        self.current_version.as_deref()
    }

    /// The version being (or last) installed; `None` when idle.
    pub fn target_version(&self) -> Option<&str> {
        self.target_version.as_deref()
    }

    /// When the current state was entered.
    pub fn updated(&self) -> Timestamp {
        self.updated
    }

    /// Applies `event` at `now`. On error the status is unchanged.
    pub fn apply(&mut self, event: FirmwareEvent, now: Timestamp) -> Result<(), PatternError> {
        use FirmwareEvent as E;
        use FirmwareState as S;
        let illegal = PatternError::IllegalTransition {
            pattern: PATTERN,
            state: self.state.as_str(),
            event: event.as_str(),
        };
        let mut target = self.target_version.clone();
        let mut current = self.current_version.clone();
        let state = match (&self.state, event) {
            (S::Idle | S::Succeeded | S::Failed(_) | S::RolledBack(_), E::Start { request }) => {
                target = Some(request.target_version().to_string());
                S::Downloading {
                    progress: 0,
                    bytes_downloaded: 0,
                    total_bytes: request.size(),
                }
            }
            (
                S::Idle | S::Succeeded | S::Failed(_) | S::RolledBack(_),
                E::AlreadyInstalled { request },
            ) => {
                target = Some(request.target_version().to_string());
                current.clone_from(&target);
                S::Succeeded
            }
            (
                S::Downloading {
                    bytes_downloaded,
                    total_bytes,
                    ..
                },
                E::Progress { bytes },
            ) => {
                if bytes < *bytes_downloaded {
                    return Err(PatternError::ProgressBackwards {
                        from: *bytes_downloaded,
                        to: bytes,
                    });
                }
                if bytes > *total_bytes {
                    return Err(PatternError::DownloadOverrun {
                        bytes,
                        size: *total_bytes,
                    });
                }
                S::Downloading {
                    progress: percent(bytes, *total_bytes),
                    bytes_downloaded: bytes,
                    total_bytes: *total_bytes,
                }
            }
            (S::Downloading { .. }, E::DownloadComplete) => S::Downloaded,
            (S::Downloaded, E::Verify) => S::Verifying,
            (S::Verifying, E::Apply) => S::Applying,
            (S::Applying, E::Reboot) => S::Rebooting,
            (S::Applying | S::Rebooting, E::Succeed) => {
                current.clone_from(&target);
                S::Succeeded
            }
            (s, E::Fail(failure)) if s.is_active() => {
                check_text("result.message", &failure.message)?;
                S::Failed(failure)
            }
            (S::Verifying | S::Applying | S::Rebooting, E::RollBack(failure)) => {
                check_text("result.message", &failure.message)?;
                S::RolledBack(failure)
            }
            (S::Downloading { .. } | S::Downloaded | S::Verifying, E::Cancel) => {
                target = None;
                S::Idle
            }
            (S::Succeeded | S::Failed(_) | S::RolledBack(_), E::Clear) => {
                target = None;
                S::Idle
            }
            _ => return Err(illegal),
        };
        self.state = state;
        self.target_version = target;
        self.current_version = current;
        self.updated = now;
        Ok(())
    }
}

/// `bytes` of `total` as a whole percentage, 0-100 (`bytes <= total`, `total > 0`).
fn percent(bytes: u64, total: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    let p = u128::from(bytes) * 100 / u128::from(total);
    u8::try_from(p.min(100)).unwrap_or(100)
}

impl PatternStatus for FirmwareStatus {
    const KEY: &'static str = "firmware";
    const METHOD: &'static str = FIRMWARE_UPDATE_METHOD;

    fn to_json(&self) -> Value {
        let (progress, bytes, total) = match self.state {
            FirmwareState::Downloading {
                progress,
                bytes_downloaded,
                total_bytes,
            } => (
                Value::from(progress),
                Value::from(bytes_downloaded),
                Value::from(total_bytes),
            ),
            _ => (Value::Null, Value::Null, Value::Null),
        };
        let result = match &self.state {
            FirmwareState::Failed(f) | FirmwareState::RolledBack(f) => f.to_json(),
            _ => Value::Null,
        };
        let mut m = Map::new();
        m.insert("state".into(), self.state.as_str().into());
        m.insert("currentVersion".into(), opt_str(self.current_version()));
        m.insert("targetVersion".into(), opt_str(self.target_version()));
        m.insert("progress".into(), progress);
        m.insert("bytesDownloaded".into(), bytes);
        m.insert("totalBytes".into(), total);
        m.insert("result".into(), result);
        m.insert("lastUpdated".into(), ts(self.updated));
        Value::Object(m)
    }

    fn from_json(value: &Value) -> Result<Self, PatternError> {
        let o = Obj::new(value, format!("{REPORTED_ROOT}.{}", Self::KEY))?;
        let state = match o.str("state")? {
            "idle" => FirmwareState::Idle,
            "downloading" => {
                let progress = o.u64("progress")?;
                let progress = u8::try_from(progress)
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| o.invalid("progress", "an integer from 0 to 100"))?;
                let bytes_downloaded = o.u64("bytesDownloaded")?;
                let total_bytes = o.u64("totalBytes")?;
                if bytes_downloaded > total_bytes {
                    return Err(o.invalid("bytesDownloaded", "at most totalBytes"));
                }
                FirmwareState::Downloading {
                    progress,
                    bytes_downloaded,
                    total_bytes,
                }
            }
            "downloaded" => FirmwareState::Downloaded,
            "verifying" => FirmwareState::Verifying,
            "applying" => FirmwareState::Applying,
            "rebooting" => FirmwareState::Rebooting,
            "succeeded" => FirmwareState::Succeeded,
            "failed" => FirmwareState::Failed(FirmwareFailure::from_obj(&o.obj("result")?)?),
            "rolledBack" => {
                FirmwareState::RolledBack(FirmwareFailure::from_obj(&o.obj("result")?)?)
            }
            other => return Err(o.unknown("state", other, STATES)),
        };
        let version = |field: &'static str| -> Result<Option<String>, PatternError> {
            o.opt_str(field)?
                .map(|v| request::validate_version(field, v))
                .transpose()
        };
        let target_version = match state {
            FirmwareState::Idle => None,
            _ => Some(version("targetVersion")?.ok_or_else(|| o.missing("targetVersion"))?),
        };
        Ok(FirmwareStatus {
            state,
            current_version: version("currentVersion")?,
            target_version,
            updated: o.timestamp("lastUpdated")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
