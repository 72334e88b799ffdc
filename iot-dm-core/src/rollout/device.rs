//! The per-device record, its states and how they map onto IoT Hub's device-job statuses.

use serde::{Deserialize, Serialize};

/// A device of a rollout: its position in the target set, in the order it was added (the
/// first device added is `DeviceIndex(0)`).
///
/// The planner keeps no device ids, so that a million devices fit in a few bytes each; the
/// caller keeps the ids (it holds the device-job records anyway) in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceIndex(pub u32);

impl DeviceIndex {
    pub(crate) fn slot(self) -> usize {
        self.0 as usize
    }
}

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[repr(u8)]
pub enum DeviceState {
    /// Waiting for its turn: the rate, a pause, the canary, or a retry not yet started.
    Pending = 0,
    /// Waiting for its maintenance window to open.
    WaitingForWindow = 1,
    /// Its turn came but the gate did not hold; re-checked when its twin changes.
    Gated = 2,
    /// Started, no outcome yet.
    Running = 3,
    /// Reported done; waiting for the success condition to hold.
    Verifying = 4,
    /// Done (final).
    Succeeded = 5,
    /// Failed, retries spent (final).
    Failed = 6,
    /// Timed out, retries spent (final).
    TimedOut = 7,
    /// Canceled before it started (final).
    Canceled = 8,
}

/// The device-job status IoT Hub reports (`devices.jobs`), as C#'s `DeviceJobStatus` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceJobStatus {
    /// `pending`.
    Pending,
    /// `scheduled`.
    Scheduled,
    /// `running`.
    Running,
    /// `completed`.
    Completed,
    /// `failed`.
    Failed,
    /// `canceled`.
    Canceled,
}

impl DeviceJobStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceJobStatus::Pending => "pending",
            DeviceJobStatus::Scheduled => "scheduled",
            DeviceJobStatus::Running => "running",
            DeviceJobStatus::Completed => "completed",
            DeviceJobStatus::Failed => "failed",
            DeviceJobStatus::Canceled => "canceled",
        }
    }
}

pub(crate) const STATE_COUNT: usize = 9;
const STATES: [DeviceState; STATE_COUNT] = [
    DeviceState::Pending,
    DeviceState::WaitingForWindow,
    DeviceState::Gated,
    DeviceState::Running,
    DeviceState::Verifying,
    DeviceState::Succeeded,
    DeviceState::Failed,
    DeviceState::TimedOut,
    DeviceState::Canceled,
];

impl DeviceState {
    /// The IoT Hub status: `pending` (incl. retries), `scheduled` (window, gate), `running`
    /// (incl. verifying), `completed`, `failed` (incl. timed out), `canceled`.
    pub fn device_job_status(self) -> DeviceJobStatus {
        match self {
            DeviceState::Pending => DeviceJobStatus::Pending,
            DeviceState::WaitingForWindow | DeviceState::Gated => DeviceJobStatus::Scheduled,
            DeviceState::Running | DeviceState::Verifying => DeviceJobStatus::Running,
            DeviceState::Succeeded => DeviceJobStatus::Completed,
            DeviceState::Failed | DeviceState::TimedOut => DeviceJobStatus::Failed,
            DeviceState::Canceled => DeviceJobStatus::Canceled,
        }
    }

    /// Whether nothing more happens to the device.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeviceState::Succeeded
                | DeviceState::Failed
                | DeviceState::TimedOut
                | DeviceState::Canceled
        )
    }

    /// Whether the device has been started and has no outcome yet.
    pub fn is_in_flight(self) -> bool {
        matches!(self, DeviceState::Running | DeviceState::Verifying)
    }

    pub(crate) fn from_u8(v: u8) -> Option<DeviceState> {
        STATES.get(usize::from(v)).copied()
    }
}

/// Why a device failed or timed out (the latest reason, kept while it waits for a retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[repr(u8)]
pub enum FailureReason {
    /// The caller reported [`Outcome::Failed`]; the caller keeps the details.
    Reported = 1,
    /// The caller reported [`Outcome::TimedOut`].
    ReportedTimeout = 2,
    /// No outcome within `inProgressTimeoutSeconds`.
    InProgressTimeout = 3,
    /// Reported done, but the success condition did not hold within `successTimeoutSeconds`.
    SuccessConditionNotMet = 4,
    /// The deadline passed while the device waited for the gate.
    GateNotSatisfied = 5,
    /// The deadline passed while the device waited for its maintenance window.
    WindowNotOpen = 6,
    /// The deadline passed before the device's turn came (rate, pause, canary).
    NotStarted = 7,
    /// The deadline passed while the device was running or verifying.
    Deadline = 8,
}

const REASONS: [FailureReason; 8] = [
    FailureReason::Reported,
    FailureReason::ReportedTimeout,
    FailureReason::InProgressTimeout,
    FailureReason::SuccessConditionNotMet,
    FailureReason::GateNotSatisfied,
    FailureReason::WindowNotOpen,
    FailureReason::NotStarted,
    FailureReason::Deadline,
];

impl FailureReason {
    /// Whether the reason makes the device `timedOut` (otherwise `failed`).
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            FailureReason::ReportedTimeout
                | FailureReason::InProgressTimeout
                | FailureReason::Deadline
        )
    }

    pub(crate) fn from_u8(v: u8) -> Option<FailureReason> {
        REASONS.get(usize::from(v).wrapping_sub(1)).copied()
    }
}

/// What the caller learned about a started device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Outcome {
    /// The device did it (then the success condition, if any, must hold).
    Succeeded,
    /// The device failed (e.g. a method status >= 400, or the device rejected the update).
    Failed,
    /// The caller gave up waiting (e.g. a method response timeout, device not online).
    TimedOut,
}

/// A device's state, as [`Rollout::device`](super::Rollout::device) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    /// Its state.
    pub state: DeviceState,
    /// Its latest attempt (1 for the first start, 0 before it).
    pub attempt: u8,
    /// Failures so far (retried or final).
    pub failures: u8,
    /// Timeouts so far (retried or final).
    pub timeouts: u8,
    /// Why it failed or timed out last.
    pub reason: Option<FailureReason>,
    /// Its time zone could not be read or is unknown, so windows use UTC.
    pub utc_fallback: bool,
}

/// A change of a device the caller has to act on or record, from
/// [`Rollout::poll_change`](super::Rollout::poll_change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The device.
    pub device: DeviceIndex,
    /// Its attempt at the time.
    pub attempt: u8,
    /// Its new state: final, `verifying`, or `pending` when a retry is scheduled.
    pub state: DeviceState,
    /// Why, for a failure, a timeout or a scheduled retry.
    pub reason: Option<FailureReason>,
}

pub(crate) const F_GATE_OK: u8 = 1;
pub(crate) const F_SUCCESS_OK: u8 = 2;
pub(crate) const F_UTC_FALLBACK: u8 = 4;

/// The per-device record: 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub state: DeviceState,
    pub attempt: u8,
    pub failures: u8,
    pub timeouts: u8,
    pub flags: u8,
    pub reason: Option<FailureReason>,
    pub zone: u16,
}

impl Slot {
    pub(crate) fn status(&self) -> DeviceStatus {
        DeviceStatus {
            state: self.state,
            attempt: self.attempt,
            failures: self.failures,
            timeouts: self.timeouts,
            reason: self.reason,
            utc_fallback: self.flags & F_UTC_FALLBACK != 0,
        }
    }

    pub(crate) fn to_bytes(self) -> [u8; 8] {
        let z = self.zone.to_le_bytes();
        [
            self.state as u8,
            self.attempt,
            self.failures,
            self.timeouts,
            self.flags,
            self.reason.map_or(0, |r| r as u8),
            z[0],
            z[1],
        ]
    }

    pub(crate) fn from_bytes(b: [u8; 8]) -> Option<Slot> {
        Some(Slot {
            state: DeviceState::from_u8(b[0])?,
            attempt: b[1],
            failures: b[2],
            timeouts: b[3],
            flags: b[4],
            reason: match b[5] {
                0 => None,
                r => Some(FailureReason::from_u8(r)?),
            },
            zone: u16::from_le_bytes([b[6], b[7]]),
        })
    }
}
