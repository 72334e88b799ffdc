//! The factory-reset pattern: idle → resetting → succeeded | failed, optionally keeping the
//! network configuration.
//!
//! Reported as `deviceManagement.factoryReset`:
//!
//! | field | type | set in |
//! |---|---|---|
//! | `state` | `idle` \| `resetting` \| `succeeded` \| `failed` | always |
//! | `keepNetworkConfig` | boolean | `resetting`, `succeeded` |
//! | `lastReset` | timestamp | once a reset succeeded (kept afterwards) |
//! | `reason` | string | `failed` |
//! | `lastUpdated` | timestamp | always: when the state was entered |

use serde_json::{Map, Value};

use super::{
    check_text, opt_str, opt_ts, ts, Obj, PatternError, PatternStatus, FACTORY_RESET_METHOD,
    REPORTED_ROOT,
};
use crate::clock::Timestamp;

const PATTERN: &str = "factoryReset";
const STATES: &str = "idle, resetting, succeeded, failed";

/// Where a factory reset stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FactoryResetState {
    /// No reset running.
    Idle,
    /// The device is wiping its state.
    Resetting {
        /// Whether the network configuration survives.
        keep_network_config: bool,
    },
    /// The reset completed.
    Succeeded {
        /// Whether the network configuration was kept.
        keep_network_config: bool,
    },
    /// The reset failed.
    Failed {
        /// Why.
        reason: String,
    },
}

impl FactoryResetState {
    /// The reported name of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            FactoryResetState::Idle => "idle",
            FactoryResetState::Resetting { .. } => "resetting",
            FactoryResetState::Succeeded { .. } => "succeeded",
            FactoryResetState::Failed { .. } => "failed",
        }
    }
}

/// Something that happens to a factory reset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FactoryResetEvent {
    /// Begin a reset (from idle, succeeded or failed).
    Start {
        /// Whether to keep the network configuration.
        keep_network_config: bool,
    },
    /// The reset completed (from resetting); records `lastReset`.
    Complete,
    /// The reset failed (from resetting).
    Fail {
        /// Why, at most [`super::MAX_TEXT_LEN`] bytes.
        reason: String,
    },
}

impl FactoryResetEvent {
    /// The event's name, for errors.
    pub fn as_str(&self) -> &'static str {
        match self {
            FactoryResetEvent::Start { .. } => "start",
            FactoryResetEvent::Complete => "complete",
            FactoryResetEvent::Fail { .. } => "fail",
        }
    }
}

/// A device's factory-reset status.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::patterns::{FactoryResetEvent, FactoryResetStatus, PatternStatus};
/// use serde_json::json;
///
/// let t = Timestamp::from_unix_secs;
/// let mut status = FactoryResetStatus::new(t(0));
/// status.apply(FactoryResetEvent::Start { keep_network_config: true }, t(1))?;
/// assert_eq!(
///     status.to_json(),
///     json!({"state": "resetting", "keepNetworkConfig": true, "lastReset": null,
///            "reason": null, "lastUpdated": "1970-01-01T00:00:01.000Z"})
/// );
/// assert!(status.apply(FactoryResetEvent::Start { keep_network_config: false }, t(2)).is_err());
/// # Ok::<(), iot_dm_core::patterns::PatternError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryResetStatus {
    state: FactoryResetState,
    last_reset: Option<Timestamp>,
    updated: Timestamp,
}

impl FactoryResetStatus {
    /// An idle status with no recorded reset, as of `now`.
    pub fn new(now: Timestamp) -> FactoryResetStatus {
        FactoryResetStatus {
            state: FactoryResetState::Idle,
            last_reset: None,
            updated: now,
        }
    }

    /// The current state.
    pub fn state(&self) -> &FactoryResetState {
        &self.state
    }

    /// When the last reset completed.
    pub fn last_reset(&self) -> Option<Timestamp> {
        self.last_reset
    }

    /// When the current state was entered.
    pub fn updated(&self) -> Timestamp {
        self.updated
    }

    /// Applies `event` at `now`. On error the status is unchanged.
    pub fn apply(&mut self, event: FactoryResetEvent, now: Timestamp) -> Result<(), PatternError> {
        use FactoryResetEvent as E;
        use FactoryResetState as S;
        let illegal = PatternError::IllegalTransition {
            pattern: PATTERN,
            state: self.state.as_str(),
            event: event.as_str(),
        };
        let mut last_reset = self.last_reset;
        let state = match (&self.state, event) {
            (
                S::Idle | S::Succeeded { .. } | S::Failed { .. },
                E::Start {
                    keep_network_config,
                },
            ) => S::Resetting {
                keep_network_config,
            },
            (
                S::Resetting {
                    keep_network_config,
                },
                E::Complete,
            ) => {
                last_reset = Some(now);
                S::Succeeded {
                    keep_network_config: *keep_network_config,
                }
            }
            (S::Resetting { .. }, E::Fail { reason }) => S::Failed {
                reason: check_text("reason", &reason)?,
            },
            _ => return Err(illegal),
        };
        self.state = state;
        self.last_reset = last_reset;
        self.updated = now;
        Ok(())
    }
}

impl PatternStatus for FactoryResetStatus {
    const KEY: &'static str = "factoryReset";
    const METHOD: &'static str = FACTORY_RESET_METHOD;

    fn to_json(&self) -> Value {
        let (keep, reason) = match &self.state {
            FactoryResetState::Resetting {
                keep_network_config,
            }
            | FactoryResetState::Succeeded {
                keep_network_config,
            } => (Some(*keep_network_config), None),
            FactoryResetState::Failed { reason } => (None, Some(reason.as_str())),
            FactoryResetState::Idle => (None, None),
        };
        let mut m = Map::new();
        m.insert("state".into(), self.state.as_str().into());
        m.insert(
            "keepNetworkConfig".into(),
            keep.map_or(Value::Null, Value::Bool),
        );
        m.insert("lastReset".into(), opt_ts(self.last_reset));
        m.insert("reason".into(), opt_str(reason));
        m.insert("lastUpdated".into(), ts(self.updated));
        Value::Object(m)
    }

    fn from_json(value: &Value) -> Result<Self, PatternError> {
        let o = Obj::new(value, format!("{REPORTED_ROOT}.{}", Self::KEY))?;
        let state = match o.str("state")? {
            "idle" => FactoryResetState::Idle,
            "resetting" => FactoryResetState::Resetting {
                keep_network_config: o.bool("keepNetworkConfig")?,
            },
            "succeeded" => FactoryResetState::Succeeded {
                keep_network_config: o.bool("keepNetworkConfig")?,
            },
            "failed" => FactoryResetState::Failed {
                reason: check_text("reason", o.str("reason")?)?,
            },
            other => return Err(o.unknown("state", other, STATES)),
        };
        Ok(FactoryResetStatus {
            state,
            last_reset: o.opt_timestamp("lastReset")?,
            updated: o.timestamp("lastUpdated")?,
        })
    }
}

/// The `factoryReset` method's payload: `{"keepNetworkConfig": bool}` (a `null` or empty
/// payload wipes everything).
///
/// ```
/// use iot_dm_core::patterns::{FactoryResetEvent, FactoryResetRequest};
/// use serde_json::{json, Value};
/// let req = FactoryResetRequest::from_payload(&json!({"keepNetworkConfig": true}))?;
/// assert_eq!(req.event(), FactoryResetEvent::Start { keep_network_config: true });
/// assert!(!FactoryResetRequest::from_payload(&Value::Null)?.keep_network_config);
/// # Ok::<(), iot_dm_core::patterns::PatternError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FactoryResetRequest {
    /// Whether the network configuration survives the reset.
    pub keep_network_config: bool,
}

impl FactoryResetRequest {
    /// Parses the method payload.
    pub fn from_payload(payload: &Value) -> Result<FactoryResetRequest, PatternError> {
        if payload.is_null() {
            return Ok(FactoryResetRequest::default());
        }
        let o = Obj::new(payload, FACTORY_RESET_METHOD.to_string())?;
        Ok(FactoryResetRequest {
            keep_network_config: o.opt_bool("keepNetworkConfig")?.unwrap_or(false),
        })
    }

    /// The method payload.
    pub fn to_payload(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "keepNetworkConfig".into(),
            Value::Bool(self.keep_network_config),
        );
        Value::Object(m)
    }

    /// The [`FactoryResetEvent::Start`] this request causes.
    pub fn event(&self) -> FactoryResetEvent {
        FactoryResetEvent::Start {
            keep_network_config: self.keep_network_config,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
