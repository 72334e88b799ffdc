//! The reboot pattern: idle → scheduled → rebooting → succeeded | failed.
//!
//! Reported as `deviceManagement.reboot`:
//!
//! | field | type | set in |
//! |---|---|---|
//! | `state` | `idle` \| `scheduled` \| `rebooting` \| `succeeded` \| `failed` | always |
//! | `scheduledFor` | timestamp | `scheduled` |
//! | `lastReboot` | timestamp | once a reboot succeeded (kept afterwards) |
//! | `reason` | string | `failed` |
//! | `lastUpdated` | timestamp | always: when the state was entered |

use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    check_text, opt_str, opt_ts, ts, Obj, PatternError, PatternStatus, REBOOT_METHOD, REPORTED_ROOT,
};
use crate::clock::Timestamp;

const PATTERN: &str = "reboot";
const STATES: &str = "idle, scheduled, rebooting, succeeded, failed";

/// Longest reboot delay a [`RebootRequest`] may ask for (7 days), in seconds.
pub const MAX_REBOOT_DELAY_SECS: u64 = 7 * 24 * 3600;

/// Where a reboot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RebootState {
    /// No reboot pending.
    Idle,
    /// A reboot will start at or after `at` (a delay or a maintenance window's start).
    Scheduled {
        /// The earliest start.
        at: Timestamp,
    },
    /// The device is going down.
    Rebooting,
    /// The device came back up.
    Succeeded,
    /// The reboot did not happen or did not complete.
    Failed {
        /// Why.
        reason: String,
    },
}

impl RebootState {
    /// The reported name of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            RebootState::Idle => "idle",
            RebootState::Scheduled { .. } => "scheduled",
            RebootState::Rebooting => "rebooting",
            RebootState::Succeeded => "succeeded",
            RebootState::Failed { .. } => "failed",
        }
    }
}

/// Something that happens to a reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RebootEvent {
    /// Plan a reboot at `at`, or now when `None` (from idle, succeeded or failed).
    Schedule {
        /// The earliest start.
        at: Option<Timestamp>,
    },
    /// Drop a scheduled reboot (back to idle).
    Cancel,
    /// Begin rebooting (from scheduled, once its time has come).
    Start,
    /// The device is back up (from rebooting); records `lastReboot`.
    Complete,
    /// The reboot failed (from scheduled or rebooting).
    Fail {
        /// Why, at most [`super::MAX_TEXT_LEN`] bytes.
        reason: String,
    },
}

impl RebootEvent {
    /// The event's name, for errors.
    pub fn as_str(&self) -> &'static str {
        match self {
            RebootEvent::Schedule { .. } => "schedule",
            RebootEvent::Cancel => "cancel",
            RebootEvent::Start => "start",
            RebootEvent::Complete => "complete",
            RebootEvent::Fail { .. } => "fail",
        }
    }
}

/// A device's reboot status: the state, the last successful reboot and when the state was
/// entered.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::patterns::{PatternStatus, RebootEvent, RebootState, RebootStatus};
/// use serde_json::json;
///
/// let t = Timestamp::from_unix_secs;
/// let mut status = RebootStatus::new(t(0));
/// status.apply(RebootEvent::Schedule { at: Some(t(60)) }, t(0))?;
/// assert!(status.apply(RebootEvent::Start, t(30)).is_err()); // not yet due
/// status.apply(RebootEvent::Start, t(60))?;
/// status.apply(RebootEvent::Complete, t(90))?;
/// assert_eq!(status.state(), &RebootState::Succeeded);
/// assert_eq!(
///     status.to_json(),
///     json!({"state": "succeeded", "scheduledFor": null, "lastReboot": "1970-01-01T00:01:30.000Z",
///            "reason": null, "lastUpdated": "1970-01-01T00:01:30.000Z"})
/// );
/// # Ok::<(), iot_dm_core::patterns::PatternError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootStatus {
    state: RebootState,
    last_reboot: Option<Timestamp>,
    updated: Timestamp,
}

impl RebootStatus {
    /// An idle status with no recorded reboot, as of `now`.
    pub fn new(now: Timestamp) -> RebootStatus {
        RebootStatus {
            state: RebootState::Idle,
            last_reboot: None,
            updated: now,
        }
    }

    /// The current state.
    pub fn state(&self) -> &RebootState {
        &self.state
    }

    /// When the device last came back from a reboot.
    pub fn last_reboot(&self) -> Option<Timestamp> {
        self.last_reboot
    }

    /// When the current state was entered.
    pub fn updated(&self) -> Timestamp {
        self.updated
    }

    /// Applies `event` at `now`. On error the status is unchanged.
    pub fn apply(&mut self, event: RebootEvent, now: Timestamp) -> Result<(), PatternError> {
        use RebootEvent as E;
        use RebootState as S;
        let illegal = PatternError::IllegalTransition {
            pattern: PATTERN,
            state: self.state.as_str(),
            event: event.as_str(),
        };
        let mut last_reboot = self.last_reboot;
        let state = match (&self.state, event) {
            (S::Idle | S::Succeeded | S::Failed { .. }, E::Schedule { at }) => S::Scheduled {
                at: at.unwrap_or(now),
            },
            (S::Scheduled { .. }, E::Cancel) => S::Idle,
            (S::Scheduled { at }, E::Start) => {
                if now < *at {
                    return Err(PatternError::NotYetDue {
                        scheduled_for: *at,
                        now,
                    });
                }
                S::Rebooting
            }
            (S::Rebooting, E::Complete) => {
                last_reboot = Some(now);
                S::Succeeded
            }
            (S::Scheduled { .. } | S::Rebooting, E::Fail { reason }) => S::Failed {
                reason: check_text("reason", &reason)?,
            },
            _ => return Err(illegal),
        };
        self.state = state;
        self.last_reboot = last_reboot;
        self.updated = now;
        Ok(())
    }
}

impl PatternStatus for RebootStatus {
    const KEY: &'static str = "reboot";
    const METHOD: &'static str = REBOOT_METHOD;

    fn to_json(&self) -> Value {
        let (scheduled_for, reason) = match &self.state {
            RebootState::Scheduled { at } => (Some(*at), None),
            RebootState::Failed { reason } => (None, Some(reason.as_str())),
            _ => (None, None),
        };
        let mut m = Map::new();
        m.insert("state".into(), self.state.as_str().into());
        m.insert("scheduledFor".into(), opt_ts(scheduled_for));
        m.insert("lastReboot".into(), opt_ts(self.last_reboot));
        m.insert("reason".into(), opt_str(reason));
        m.insert("lastUpdated".into(), ts(self.updated));
        Value::Object(m)
    }

    fn from_json(value: &Value) -> Result<Self, PatternError> {
        let o = Obj::new(value, format!("{REPORTED_ROOT}.{}", Self::KEY))?;
        let state = match o.str("state")? {
            "idle" => RebootState::Idle,
            "scheduled" => RebootState::Scheduled {
                at: o.timestamp("scheduledFor")?,
            },
            "rebooting" => RebootState::Rebooting,
            "succeeded" => RebootState::Succeeded,
            "failed" => RebootState::Failed {
                reason: check_text("reason", o.str("reason")?)?,
            },
            other => return Err(o.unknown("state", other, STATES)),
        };
        Ok(RebootStatus {
            state,
            last_reboot: o.opt_timestamp("lastReboot")?,
            updated: o.timestamp("lastUpdated")?,
        })
    }
}

/// The `reboot` method's payload: `{"delayInSeconds": n, "notBefore": "<timestamp>"}`, both
/// optional (a `null` or empty payload means "now").
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::patterns::RebootRequest;
/// use serde_json::json;
/// let req = RebootRequest::from_payload(&json!({"delayInSeconds": 30}))?;
/// let now = Timestamp::from_unix_secs(100);
/// assert_eq!(req.scheduled_for(now), Timestamp::from_unix_secs(130));
/// assert!(RebootRequest::from_payload(&json!({"delayInSeconds": -1})).is_err());
/// # Ok::<(), iot_dm_core::patterns::PatternError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RebootRequest {
    delay: Duration,
    not_before: Option<Timestamp>,
}

impl RebootRequest {
    /// Reboot now.
    pub fn now() -> RebootRequest {
        RebootRequest::default()
    }

    /// Reboot after `delay_secs` seconds (at most [`MAX_REBOOT_DELAY_SECS`]).
    pub fn after_secs(delay_secs: u64) -> Result<RebootRequest, PatternError> {
        check_delay(delay_secs)?;
        Ok(RebootRequest {
            delay: Duration::from_secs(delay_secs),
            not_before: None,
        })
    }

    /// Reboot no earlier than `at` (a maintenance window's start).
    pub fn not_before(at: Timestamp) -> RebootRequest {
        RebootRequest {
            delay: Duration::ZERO,
            not_before: Some(at),
        }
    }

    /// The delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The earliest start, if set.
    pub fn earliest(&self) -> Option<Timestamp> {
        self.not_before
    }

    /// When the reboot may start for a request received at `now`: the later of
    /// `now + delay` and `notBefore`.
    pub fn scheduled_for(&self, now: Timestamp) -> Timestamp {
        let after_delay = now + self.delay;
        self.not_before
            .map_or(after_delay, |nb| nb.max(after_delay))
    }

    /// The [`RebootEvent::Schedule`] this request causes when received at `now`.
    pub fn event(&self, now: Timestamp) -> RebootEvent {
        RebootEvent::Schedule {
            at: Some(self.scheduled_for(now)),
        }
    }

    /// Parses the method payload.
    pub fn from_payload(payload: &Value) -> Result<RebootRequest, PatternError> {
        if payload.is_null() {
            return Ok(RebootRequest::now());
        }
        let o = Obj::new(payload, REBOOT_METHOD.to_string())?;
        let delay = o.opt_u64("delayInSeconds")?.unwrap_or(0);
        check_delay(delay)?;
        Ok(RebootRequest {
            delay: Duration::from_secs(delay),
            not_before: o.opt_timestamp("notBefore")?,
        })
    }

    /// The method payload; every field is present.
    pub fn to_payload(&self) -> Value {
        let mut m = Map::new();
        m.insert("delayInSeconds".into(), self.delay.as_secs().into());
        m.insert("notBefore".into(), opt_ts(self.not_before));
        Value::Object(m)
    }
}

fn check_delay(secs: u64) -> Result<(), PatternError> {
    if secs > MAX_REBOOT_DELAY_SECS {
        return Err(PatternError::OutOfRange {
            field: "delayInSeconds",
            value: secs,
            min: 0,
            max: MAX_REBOOT_DELAY_SECS,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
