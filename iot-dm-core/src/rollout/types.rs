//! The planner's public result and error types.

use serde::{Deserialize, Serialize};

use super::{AbortCriterion, Canary, DeviceIndex, DeviceState, FailureReason, Rollout};
use crate::clock::Timestamp;

/// A device to start now, from [`Rollout::poll_start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// The device.
    pub device: DeviceIndex,
    /// Its attempt, 1 for the first; pass it back to [`Rollout::on_outcome`].
    pub attempt: u8,
}

/// Where the rollout as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStatus {
    /// Starting devices as the policy allows.
    Running,
    /// Paused by the operator.
    Paused,
    /// Paused by itself after the canary devices finished, until resumed.
    CanaryHold,
    /// An abort criterion held; see [`Rollout::abort_info`].
    Aborted,
    /// Canceled by the operator.
    Canceled,
    /// Every device is final (including after the deadline).
    Completed,
}

/// Why and when the rollout aborted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortInfo {
    /// The index of the criterion in `rolloutPolicy.abort.criteria`.
    pub criterion_index: usize,
    /// The criterion that held.
    pub criterion: AbortCriterion,
    /// When.
    pub at: Timestamp,
    /// Finished devices then (succeeded + failed + timed out).
    pub finished: u64,
    /// Succeeded devices then.
    pub succeeded: u64,
    /// Failed devices then.
    pub failed: u64,
    /// Timed-out devices then.
    pub timed_out: u64,
}

/// Counts by state and the rollout's standing, from [`Rollout::stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStats {
    /// Devices in the target set.
    pub total: u64,
    /// [`DeviceState::Pending`].
    pub pending: u64,
    /// [`DeviceState::WaitingForWindow`].
    pub waiting_for_window: u64,
    /// [`DeviceState::Gated`].
    pub gated: u64,
    /// [`DeviceState::Running`].
    pub running: u64,
    /// [`DeviceState::Verifying`].
    pub verifying: u64,
    /// [`DeviceState::Succeeded`].
    pub succeeded: u64,
    /// [`DeviceState::Failed`].
    pub failed: u64,
    /// [`DeviceState::TimedOut`].
    pub timed_out: u64,
    /// [`DeviceState::Canceled`].
    pub canceled: u64,
    /// Devices waiting to start again (pending, waiting for a window or gated, attempt >= 1).
    pub retrying: u64,
    /// Devices started at least once.
    pub started_devices: u64,
    /// Starts, retries included.
    pub starts: u64,
    /// Devices whose windows use UTC because their zone is absent or unknown.
    pub utc_fallback: u64,
    /// The current rate limit, if any.
    pub rate_per_minute: Option<u64>,
    /// The rollout's standing.
    pub status: RolloutStatus,
    /// Set once the rollout aborted.
    pub abort: Option<AbortInfo>,
}

/// A call the rollout cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// No device has this index.
    #[error("no device {0:?} in this rollout")]
    UnknownDevice(DeviceIndex),
    /// The outcome is for an earlier attempt (or one not started yet).
    #[error("outcome for attempt {got} but the device is at attempt {current}")]
    StaleAttempt {
        /// The attempt given.
        got: u8,
        /// The device's attempt.
        current: u8,
    },
    /// The device is not waiting for this outcome.
    #[error("the device is {0:?}, not running")]
    NotRunning(DeviceState),
    /// The rollout is canceled, aborted or past its deadline, or already has `u32::MAX`
    /// devices: it takes no more.
    #[error("the rollout takes no more devices")]
    Closed,
}

/// Reporting.
impl Rollout {
    /// The rollout's standing.
    pub fn status(&self) -> RolloutStatus {
        if self.progress.canceled {
            RolloutStatus::Canceled
        } else if self.progress.abort.is_some() {
            RolloutStatus::Aborted
        } else if self.is_finished() {
            RolloutStatus::Completed
        } else if self.progress.paused {
            RolloutStatus::Paused
        } else if self.progress.canary == Canary::Holding {
            RolloutStatus::CanaryHold
        } else {
            RolloutStatus::Running
        }
    }

    /// Whether every device is final.
    pub fn is_finished(&self) -> bool {
        let final_count: u64 = [
            DeviceState::Succeeded,
            DeviceState::Failed,
            DeviceState::TimedOut,
            DeviceState::Canceled,
        ]
        .iter()
        .map(|s| self.counts[*s as usize])
        .sum();
        final_count == self.slots.len() as u64
    }

    /// A sentence for a failed or timed-out device's `error.description`; it names the gate or
    /// the success condition when they are the cause.
    pub fn failure_message(&self, device: DeviceIndex) -> Option<String> {
        let slot = self.slots.get(device.slot())?;
        let gate = self.rules.gate.as_ref().map(ToString::to_string);
        let success = self.rules.success.as_ref().map(|(c, _)| c.to_string());
        Some(match slot.reason? {
            FailureReason::Reported => "the device reported a failure".to_string(),
            FailureReason::ReportedTimeout => "timed out waiting for the device".to_string(),
            FailureReason::InProgressTimeout => "no outcome within inProgressTimeoutSeconds".into(),
            FailureReason::SuccessConditionNotMet => format!(
                "the success condition `{}` did not hold within successTimeoutSeconds",
                success.unwrap_or_default()
            ),
            FailureReason::GateNotSatisfied => format!(
                "the gate `{}` did not hold before the deadline",
                gate.unwrap_or_default()
            ),
            FailureReason::WindowNotOpen => {
                "no maintenance window opened before the deadline".into()
            }
            FailureReason::NotStarted => "the deadline passed before the device started".into(),
            FailureReason::Deadline => "the deadline passed while the device was running".into(),
        })
    }

    /// Counts by state and the rollout's standing.
    pub fn stats(&self) -> RolloutStats {
        let c = |s: DeviceState| self.counts[s as usize];
        RolloutStats {
            total: self.slots.len() as u64,
            pending: c(DeviceState::Pending),
            waiting_for_window: c(DeviceState::WaitingForWindow),
            gated: c(DeviceState::Gated),
            running: c(DeviceState::Running),
            verifying: c(DeviceState::Verifying),
            succeeded: c(DeviceState::Succeeded),
            failed: c(DeviceState::Failed),
            timed_out: c(DeviceState::TimedOut),
            canceled: c(DeviceState::Canceled),
            retrying: self.retrying,
            started_devices: self.progress.first_starts,
            starts: self.progress.starts,
            utc_fallback: self.utc_fallback,
            rate_per_minute: self.rate(),
            status: self.status(),
            abort: self.progress.abort.clone(),
        }
    }
}
