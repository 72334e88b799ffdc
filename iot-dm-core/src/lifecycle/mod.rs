//! The device lifecycle: plan, provision, configure, monitor, retire.
//!
//! A device record moves through four [`LifecycleState`]s:
//!
//! | state | stage | credentials | may connect |
//! |---|---|---|---|
//! | `planned` | plan | none; twin and tags exist | no |
//! | `disabled` | provision | issued | no |
//! | `enabled` | monitor | issued | yes |
//! | `retired` | retire | revoked; twin archived | no |
//!
//! Configuration (desired properties, tags) applies to every provisioned device, enabled or
//! not, so no state sits in [`Stage::Configure`] alone.
//!
//! [`LifecycleEvent`]s move a record between states; [`LifecycleState::apply`] returns the
//! [`Transition`] with the [`Effect`]s the registry must carry out (issue or revoke
//! credentials, close connections, archive or hand over the twin), or a [`LifecycleError`]
//! naming the state and the event. `retired` is terminal: only `replace` (a new identity
//! takes over the twin, the retired record keeps a pointer to it) and `delete` apply.
//! [`DeviceLifecycle`] is the record itself: the state plus status reason, successor and the
//! time of the last transition.

mod binary;

use std::fmt;
use std::str::FromStr;

use crate::clock::Timestamp;
use crate::identity::DeviceId;

/// Longest allowed status reason, in characters (IoT Hub's `statusReason` limit).
pub const MAX_STATUS_REASON_LEN: usize = 128;

/// The five stages of device management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    /// The device is planned: its twin and tags exist, it has no credentials.
    Plan,
    /// The device has credentials but is not (or no longer) allowed to connect.
    Provision,
    /// Desired properties are being set; this overlaps provision and monitor.
    Configure,
    /// The device is live and reports.
    Monitor,
    /// The device is taken out of service.
    Retire,
}

impl Stage {
    /// All stages, in order.
    pub const ALL: [Stage; 5] = [
        Stage::Plan,
        Stage::Provision,
        Stage::Configure,
        Stage::Monitor,
        Stage::Retire,
    ];

    /// The lower-camel name (`plan`, `provision`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Provision => "provision",
            Stage::Configure => "configure",
            Stage::Monitor => "monitor",
            Stage::Retire => "retire",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a device record stands; serialized as `planned`, `enabled`, `disabled`, `retired`.
///
/// ```
/// use iot_dm_core::lifecycle::{Effect, LifecycleEvent, LifecycleState, Stage};
/// let t = LifecycleState::Planned.apply(&LifecycleEvent::Provision { enabled: true })?;
/// assert_eq!(t.to, Some(LifecycleState::Enabled));
/// assert_eq!(t.effects, &[Effect::IssueCredentials, Effect::AllowConnections]);
/// assert!(LifecycleState::Enabled.can_connect());
/// assert_eq!(LifecycleState::Enabled.stage(), Stage::Monitor);
///
/// // illegal transitions name the state and the event
/// let err = LifecycleState::Planned.apply(&LifecycleEvent::Enable).unwrap_err();
/// assert_eq!(err.to_string(), "cannot enable a device in state planned: not provisioned yet; provision it first");
/// # Ok::<(), iot_dm_core::lifecycle::LifecycleError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LifecycleState {
    /// Twin and tags exist; no credentials; cannot connect.
    Planned,
    /// Provisioned and allowed to connect.
    Enabled,
    /// Provisioned but refused on connect.
    Disabled,
    /// Credentials revoked, twin archived. Terminal except for replacement and deletion.
    Retired,
}

impl LifecycleState {
    /// All states.
    pub const ALL: [LifecycleState; 4] = [
        LifecycleState::Planned,
        LifecycleState::Enabled,
        LifecycleState::Disabled,
        LifecycleState::Retired,
    ];

    /// The lifecycle stage the state belongs to (see the module table).
    pub const fn stage(self) -> Stage {
        match self {
            LifecycleState::Planned => Stage::Plan,
            LifecycleState::Disabled => Stage::Provision,
            LifecycleState::Enabled => Stage::Monitor,
            LifecycleState::Retired => Stage::Retire,
        }
    }

    /// Whether the hub accepts connections for the device.
    pub const fn can_connect(self) -> bool {
        matches!(self, LifecycleState::Enabled)
    }

    /// Whether the device holds valid credentials.
    pub const fn is_provisioned(self) -> bool {
        matches!(self, LifecycleState::Enabled | LifecycleState::Disabled)
    }

    /// The lower-camel name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Planned => "planned",
            LifecycleState::Enabled => "enabled",
            LifecycleState::Disabled => "disabled",
            LifecycleState::Retired => "retired",
        }
    }

    /// The transition `event` causes from this state, or why it is illegal.
    pub fn apply(self, event: &LifecycleEvent) -> Result<Transition, LifecycleError> {
        use Effect::*;
        use LifecycleState::*;
        let kind = event.kind();
        let illegal = |reason: &'static str| LifecycleError::IllegalTransition {
            state: self,
            event: kind,
            reason,
        };
        let mut status_reason = None;
        let mut successor = None;
        let (to, effects): (Option<LifecycleState>, &'static [Effect]) = match (self, event) {
            (Planned, LifecycleEvent::Provision { enabled: true }) => {
                (Some(Enabled), &[IssueCredentials, AllowConnections])
            }
            (Planned, LifecycleEvent::Provision { enabled: false }) => {
                (Some(Disabled), &[IssueCredentials])
            }
            (Planned, LifecycleEvent::Enable) => {
                return Err(illegal("not provisioned yet; provision it first"))
            }
            (Planned, LifecycleEvent::Disable { .. }) => {
                return Err(illegal(
                    "not provisioned yet; provision it with enabled = false instead",
                ))
            }
            (Planned, LifecycleEvent::Retire) => {
                return Err(illegal("never provisioned; delete it instead"))
            }
            (Enabled | Disabled, LifecycleEvent::Provision { .. }) => {
                return Err(illegal("already provisioned"))
            }
            (Enabled, LifecycleEvent::Enable) => return Err(illegal("already enabled")),
            (Disabled, LifecycleEvent::Enable) => (Some(Enabled), &[AllowConnections]),
            (Enabled, LifecycleEvent::Disable { reason }) => {
                status_reason = Some(check_reason(reason)?);
                (Some(Disabled), &[BlockConnections])
            }
            (Disabled, LifecycleEvent::Disable { .. }) => return Err(illegal("already disabled")),
            (Enabled, LifecycleEvent::Retire) => (
                Some(Retired),
                &[BlockConnections, RevokeCredentials, ArchiveTwin],
            ),
            (Disabled, LifecycleEvent::Retire) => {
                (Some(Retired), &[RevokeCredentials, ArchiveTwin])
            }
            (Planned | Enabled | Disabled, LifecycleEvent::Replace { .. }) => {
                return Err(illegal("only retired devices can be replaced"))
            }
            (Retired, LifecycleEvent::Replace { successor: s }) => {
                successor = Some(s.clone());
                (Some(Retired), &[TransferTwin])
            }
            (Planned | Retired, LifecycleEvent::Delete) => (None, &[RemoveRecord]),
            (Enabled, LifecycleEvent::Delete) => {
                (None, &[BlockConnections, RevokeCredentials, RemoveRecord])
            }
            (Disabled, LifecycleEvent::Delete) => (None, &[RevokeCredentials, RemoveRecord]),
            (
                Retired,
                LifecycleEvent::Provision { .. }
                | LifecycleEvent::Enable
                | LifecycleEvent::Disable { .. }
                | LifecycleEvent::Retire,
            ) => {
                return Err(illegal(
                    "retired devices are terminal; only replace and delete apply",
                ))
            }
        };
        Ok(Transition {
            from: self,
            event: kind,
            to,
            effects,
            status_reason,
            successor,
        })
    }
}

fn check_reason(reason: &str) -> Result<String, LifecycleError> {
    let len = reason.chars().count();
    if len > MAX_STATUS_REASON_LEN {
        return Err(LifecycleError::ReasonTooLong {
            len,
            limit: MAX_STATUS_REASON_LEN,
        });
    }
    Ok(reason.to_string())
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LifecycleState {
    type Err = LifecycleError;
    fn from_str(s: &str) -> Result<Self, LifecycleError> {
        LifecycleState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| LifecycleError::UnknownState {
                text: s.to_string(),
            })
    }
}

/// Something that happens to a device record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleEvent {
    /// Issue credentials to a planned device; `enabled` decides whether it may connect.
    Provision {
        /// Whether the new identity starts enabled.
        enabled: bool,
    },
    /// Let a disabled device connect again.
    Enable,
    /// Refuse an enabled device's connections.
    Disable {
        /// Why (stored as `statusReason`, at most [`MAX_STATUS_REASON_LEN`] characters).
        reason: String,
    },
    /// Revoke the credentials and archive the twin.
    Retire,
    /// A new identity takes over a retired device's twin.
    Replace {
        /// The identity that takes over.
        successor: DeviceId,
    },
    /// Remove the record.
    Delete,
}

impl LifecycleEvent {
    /// The event without its data.
    pub fn kind(&self) -> EventKind {
        match self {
            LifecycleEvent::Provision { .. } => EventKind::Provision,
            LifecycleEvent::Enable => EventKind::Enable,
            LifecycleEvent::Disable { .. } => EventKind::Disable,
            LifecycleEvent::Retire => EventKind::Retire,
            LifecycleEvent::Replace { .. } => EventKind::Replace,
            LifecycleEvent::Delete => EventKind::Delete,
        }
    }
}

/// A [`LifecycleEvent`] without its data, for errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// [`LifecycleEvent::Provision`].
    Provision,
    /// [`LifecycleEvent::Enable`].
    Enable,
    /// [`LifecycleEvent::Disable`].
    Disable,
    /// [`LifecycleEvent::Retire`].
    Retire,
    /// [`LifecycleEvent::Replace`].
    Replace,
    /// [`LifecycleEvent::Delete`].
    Delete,
}

impl EventKind {
    /// The lower-camel name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Provision => "provision",
            EventKind::Enable => "enable",
            EventKind::Disable => "disable",
            EventKind::Retire => "retire",
            EventKind::Replace => "replace",
            EventKind::Delete => "delete",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the registry must do to carry out a transition, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Effect {
    /// Create the identity and its credentials.
    IssueCredentials,
    /// Accept the device's connections.
    AllowConnections,
    /// Close live connections and refuse new ones (CONNACK 5).
    BlockConnections,
    /// Invalidate the device's credentials.
    RevokeCredentials,
    /// Freeze the twin read-only for the record.
    ArchiveTwin,
    /// Copy the archived twin (tags, desired properties) to the successor.
    TransferTwin,
    /// Delete the record and its twin.
    RemoveRecord,
}

/// The outcome of a legal lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The state before.
    pub from: LifecycleState,
    /// The event applied.
    pub event: EventKind,
    /// The state after, or `None` when the record is deleted.
    pub to: Option<LifecycleState>,
    /// What the registry must do, in order.
    pub effects: &'static [Effect],
    /// The new status reason (set by `disable`, cleared by every other event).
    pub status_reason: Option<String>,
    /// The successor recorded by `replace`.
    pub successor: Option<DeviceId>,
}

/// An illegal lifecycle event or an invalid lifecycle record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The event does not apply in the device's state.
    #[error("cannot {event} a device in state {state}: {reason}")]
    IllegalTransition {
        /// The device's state.
        state: LifecycleState,
        /// The rejected event.
        event: EventKind,
        /// Why it does not apply.
        reason: &'static str,
    },
    /// The disable reason is longer than [`MAX_STATUS_REASON_LEN`].
    #[error("statusReason is {len} characters long, the limit is {limit}")]
    ReasonTooLong {
        /// The reason's length in characters.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The retired device already has a successor; a device is replaced once.
    #[error("cannot replace a retired device twice: it was already replaced by {successor}")]
    AlreadyReplaced {
        /// The recorded successor.
        successor: DeviceId,
    },
    /// A record names a successor but is not retired.
    #[error("successor is set on a {state} device; only retired devices have a successor")]
    SuccessorNotRetired {
        /// The record's state.
        state: LifecycleState,
    },
    /// A state name is not one of `planned`, `enabled`, `disabled`, `retired`.
    #[error("unknown lifecycle state {text:?}; expected planned, enabled, disabled or retired")]
    UnknownState {
        /// The rejected text.
        text: String,
    },
}

/// A device's lifecycle record: state, status reason, successor and the time of the last
/// transition. Serialized as `{"state":..,"statusReason":..,"successor":..,"since":..}`.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::identity::DeviceId;
/// use iot_dm_core::lifecycle::{DeviceLifecycle, LifecycleEvent, LifecycleState};
///
/// let t0 = Timestamp::from_unix_secs(1_700_000_000);
/// let mut rec = DeviceLifecycle::new(t0);
/// rec.apply(LifecycleEvent::Provision { enabled: true }, t0)?;
/// rec.apply(LifecycleEvent::Retire, t0)?;
/// let successor = DeviceId::new("pump-7b").unwrap();
/// rec.apply(LifecycleEvent::Replace { successor: successor.clone() }, t0)?;
/// assert_eq!(rec.state(), LifecycleState::Retired);
/// assert_eq!(rec.successor(), Some(&successor));
/// # Ok::<(), iot_dm_core::lifecycle::LifecycleError>(())
/// ```
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RawLifecycle")]
pub struct DeviceLifecycle {
    state: LifecycleState,
    since: Timestamp,
    /// The status reason and successor: most devices have neither, so they live behind one
    /// pointer that is `None` then (never `Some` of two `None`s).
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Extra {
    status_reason: Option<String>,
    successor: Option<DeviceId>,
}

fn extra(status_reason: Option<String>, successor: Option<DeviceId>) -> Option<Box<Extra>> {
    if status_reason.is_none() && successor.is_none() {
        None
    } else {
        Some(Box::new(Extra {
            status_reason,
            successor,
        }))
    }
}

impl fmt::Debug for DeviceLifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceLifecycle")
            .field("state", &self.state)
            .field("status_reason", &self.status_reason())
            .field("successor", &self.successor())
            .field("since", &self.since)
            .finish()
    }
}

impl serde::Serialize for DeviceLifecycle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            state: LifecycleState,
            status_reason: Option<&'a str>,
            successor: Option<&'a DeviceId>,
            since: Timestamp,
        }
        Out {
            state: self.state,
            status_reason: self.status_reason(),
            successor: self.successor(),
            since: self.since,
        }
        .serialize(s)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLifecycle {
    state: LifecycleState,
    #[serde(default)]
    status_reason: Option<String>,
    #[serde(default)]
    successor: Option<DeviceId>,
    since: Timestamp,
}

impl TryFrom<RawLifecycle> for DeviceLifecycle {
    type Error = LifecycleError;
    fn try_from(raw: RawLifecycle) -> Result<Self, LifecycleError> {
        if raw.successor.is_some() && raw.state != LifecycleState::Retired {
            return Err(LifecycleError::SuccessorNotRetired { state: raw.state });
        }
        let status_reason = raw.status_reason.as_deref().map(check_reason).transpose()?;
        Ok(DeviceLifecycle {
            state: raw.state,
            since: raw.since,
            extra: extra(status_reason, raw.successor),
        })
    }
}

impl DeviceLifecycle {
    /// A planned device, as of `now`.
    pub fn new(now: Timestamp) -> DeviceLifecycle {
        DeviceLifecycle {
            state: LifecycleState::Planned,
            since: now,
            extra: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> LifecycleState {
        self.state
    }

    /// Why the device was disabled, if it is disabled with a reason.
    pub fn status_reason(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.status_reason.as_deref())
    }

    /// The identity that took over a retired device's twin.
    pub fn successor(&self) -> Option<&DeviceId> {
        self.extra.as_ref().and_then(|e| e.successor.as_ref())
    }

    /// When the last transition happened.
    pub fn since(&self) -> Timestamp {
        self.since
    }

    /// Applies `event` at `now`. On error the record is unchanged.
    ///
    /// A `delete` leaves the record as it was and returns a transition with `to == None`: the
    /// caller removes the record after carrying out the effects.
    pub fn apply(
        &mut self,
        event: LifecycleEvent,
        now: Timestamp,
    ) -> Result<Transition, LifecycleError> {
        if let (LifecycleEvent::Replace { .. }, Some(successor)) = (&event, self.successor()) {
            return Err(LifecycleError::AlreadyReplaced {
                successor: successor.clone(),
            });
        }
        let transition = self.state.apply(&event)?;
        if let Some(to) = transition.to {
            self.state = to;
            let successor = transition
                .successor
                .clone()
                .or_else(|| self.successor().cloned());
            self.extra = extra(transition.status_reason.clone(), successor);
            self.since = now;
        }
        Ok(transition)
    }
}

#[cfg(test)]
mod tests;
