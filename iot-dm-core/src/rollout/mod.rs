//! The rollout planner shared by jobs and automatic configurations: which devices of a target
//! set may start now, and when each is done, over virtual time.
//!
//! [`Rollout`] is a sans-IO state machine. It never reads a clock: every call takes `now`, and
//! an earlier `now` than one already seen counts as the latest one seen. The caller starts the
//! devices [`Rollout::poll_start`] hands out, feeds back outcomes ([`Rollout::on_outcome`]) and
//! twin changes ([`Rollout::on_twin_changed`]), drains [`Rollout::poll_change`] into its
//! device-job records, and wakes at [`Rollout::next_wakeup`].
//!
//! What the [`RolloutPolicy`] controls, in the order a device meets it when its turn comes:
//!
//! 1. **Pause, abort, cancel, deadline, canary.** Nothing starts while the rollout is paused
//!    ([`Rollout::pause`], or by itself after `pauseAfterDevices` devices have started and
//!    all of them finished), aborted, canceled or past its deadline. Started devices still
//!    finish.
//! 2. **Rate.** At most the rate's number of devices start in any 60 s interval (see
//!    [`RatePolicy`]); a full bucket allows one minute's worth at once, never more. Retries go
//!    before first attempts.
//! 3. **Maintenance window** in the device's local time (zone read from `timeZonePath`; UTC
//!    when absent or unknown, counted in [`RolloutStats::utc_fallback`]). A device outside its
//!    windows waits ([`DeviceState::WaitingForWindow`]) in a bucket keyed by its next opening.
//! 4. **Gate.** The condition is tested on the latest twin the caller gave; a device whose gate
//!    does not hold waits ([`DeviceState::Gated`]) until a twin change makes it hold.
//!
//! Then the device is [`DeviceState::Running`] with an attempt number. Its outcome, the
//! in-progress timeout, the success condition and its timeout, retries and the abort criteria
//! decide the rest. At the deadline every device not finished ends: those not started `failed`
//! (reason: where they waited), those started `timedOut` ([`FailureReason::Deadline`]).
//!
//! Memory: 8 bytes per device ([`DeviceIndex`] is the device's position in the target set,
//! the caller keeps the ids), plus 4 bytes while it sits in a queue or a window bucket and 16
//! bytes per timer of a started device (at most two: in progress, success): under 100 bytes
//! in the worst case, growth slack included. `poll_start` pops queues; it never scans all devices.
//! A cancel, an abort or the deadline walks the devices once.

mod device;
mod engine;
mod persist;
mod policy;
mod rate;
mod types;
mod window;
mod zones;

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use device::{
    Change, DeviceIndex, DeviceJobStatus, DeviceState, DeviceStatus, FailureReason, Outcome,
};
pub use policy::{
    AbortCriterion, AbortPolicy, FailureType, PolicyError, RateIncreaseCriteria, RatePolicy,
    RetryPolicy, RolloutPolicy, TimeoutPolicy, WindowPolicy, DEFAULT_SUCCESS_TIMEOUT_SECONDS,
    DEFAULT_TIME_ZONE_PATH, MAX_LIST_LEN, MAX_RATE_PER_MINUTE, MAX_RETRIES, MAX_TIMEOUT_SECONDS,
};

use crate::clock::Timestamp;
use crate::twin::Twin;
use device::{Slot, F_GATE_OK, F_SUCCESS_OK, STATE_COUNT};
use policy::Rules;
use window::Position;
use zones::Zones;

pub use types::{AbortInfo, RolloutError, RolloutStats, RolloutStatus, Start};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum TimerKind {
    InProgress,
    Success,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Timer {
    at: Timestamp,
    device: u32,
    attempt: u8,
    kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Canary {
    Off,
    Collecting,
    Holding,
    Done,
}

/// The rollout planner: see the [module docs](self).
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::rollout::{DeviceState, Outcome, Rollout, RolloutPolicy};
/// use iot_dm_core::twin::Twin;
/// use std::time::Duration;
///
/// let policy: RolloutPolicy = serde_json::from_value(serde_json::json!({
///     "rate": {"maxPerMinute": 2},
///     "gate": "properties.reported.battery > 30",
/// }))?;
/// let t0 = Timestamp::from_unix_secs(1_700_000_000);
/// let mut plan = Rollout::new(policy, None, t0)?;
/// let twins: Vec<Twin> = (0..3)
///     .map(|i| serde_json::from_value(serde_json::json!({
///         "deviceId": format!("d{i}"),
///         "properties": {"reported": {"battery": 50}}})))
///     .collect::<Result<_, _>>()?;
/// plan.add_devices(&twins, t0)?;
///
/// // two per minute: two now, the third a minute later
/// let starts = plan.poll_start(t0, 10);
/// assert_eq!(starts.len(), 2);
/// assert_eq!(plan.next_wakeup(), Some(t0 + Duration::from_secs(60)));
/// for s in &starts {
///     plan.on_outcome(s.device, s.attempt, Outcome::Succeeded, t0)?;
/// }
/// let later = plan.poll_start(t0 + Duration::from_secs(60), 10);
/// assert_eq!(later.len(), 1);
/// plan.on_outcome(later[0].device, 1, Outcome::Failed, t0 + Duration::from_secs(61))?;
/// assert_eq!(plan.device(later[0].device).map(|d| d.state), Some(DeviceState::Failed));
/// assert!(plan.is_finished());
/// assert_eq!(plan.stats().succeeded, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rollout {
    policy: RolloutPolicy,
    rules: Rules,
    deadline: Option<Timestamp>,
    now: Timestamp,
    slots: Vec<Slot>,
    counts: [u64; STATE_COUNT],
    retrying: u64,
    utc_fallback: u64,
    ready: VecDeque<u32>,
    retry: VecDeque<u32>,
    buckets: BTreeMap<Timestamp, Vec<u32>>,
    timers: BinaryHeap<Reverse<Timer>>,
    limiter: rate::Limiter,
    zones: Zones,
    progress: Progress,
    changes: VecDeque<Change>,
}

/// How far the rollout has come, beyond its devices (persisted as it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Progress {
    /// Devices started at least once.
    first_starts: u64,
    /// Starts, retries included.
    starts: u64,
    paused: bool,
    canary: Canary,
    canceled: bool,
    abort: Option<AbortInfo>,
    deadline_passed: bool,
}

fn after(t: Timestamp, secs: u64) -> Timestamp {
    t + Duration::from_secs(secs)
}

fn retry_wait(state: DeviceState, attempt: u8) -> bool {
    attempt > 0
        && matches!(
            state,
            DeviceState::Pending | DeviceState::WaitingForWindow | DeviceState::Gated
        )
}

impl Rollout {
    /// A rollout with `policy`, ending at `deadline` (the job's `maxExecutionTimeInSeconds`
    /// after its start), created at `now`.
    pub fn new(
        policy: RolloutPolicy,
        deadline: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Rollout, PolicyError> {
        let rules = policy.compile()?;
        let canary = if rules.pause_after.is_some() {
            Canary::Collecting
        } else {
            Canary::Off
        };
        Ok(Rollout {
            policy,
            rules,
            deadline,
            now,
            slots: Vec::new(),
            counts: [0; STATE_COUNT],
            retrying: 0,
            utc_fallback: 0,
            ready: VecDeque::new(),
            retry: VecDeque::new(),
            buckets: BTreeMap::new(),
            timers: BinaryHeap::new(),
            limiter: rate::Limiter::default(),
            zones: Zones::default(),
            progress: Progress {
                first_starts: 0,
                starts: 0,
                paused: false,
                canary,
                canceled: false,
                abort: None,
                deadline_passed: false,
            },
            changes: VecDeque::new(),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &RolloutPolicy {
        &self.policy
    }

    /// The deadline.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// Devices in the target set.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the target set is empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds one device; its index is the number of devices added before it.
    pub fn add_device(&mut self, twin: &Twin, now: Timestamp) -> Result<DeviceIndex, RolloutError> {
        let now = self.advance(now);
        let index = u32::try_from(self.slots.len()).map_err(|_| RolloutError::Closed)?;
        if index == u32::MAX || self.closed() {
            return Err(RolloutError::Closed);
        }
        self.slots.push(Slot {
            state: DeviceState::Pending,
            attempt: 0,
            failures: 0,
            timeouts: 0,
            flags: 0,
            reason: None,
            zone: zones::UTC,
        });
        self.counts[DeviceState::Pending as usize] += 1;
        self.read_twin(index as usize, twin);
        self.enqueue(index as usize, now);
        Ok(DeviceIndex(index))
    }

    /// Adds devices in order (the snapshot of the target set); returns how many.
    pub fn add_devices<'a, I>(&mut self, twins: I, now: Timestamp) -> Result<usize, RolloutError>
    where
        I: IntoIterator<Item = &'a Twin>,
    {
        let mut n = 0;
        for twin in twins {
            self.add_device(twin, now)?;
            n += 1;
        }
        Ok(n)
    }

    /// Devices to start now, at most `max`: retries first, then first attempts in the order
    /// added, as the pause, rate, windows and gate allow.
    pub fn poll_start(&mut self, now: Timestamp, max: usize) -> Vec<Start> {
        let now = self.advance(now);
        let mut out = Vec::new();
        if !self.accepting() {
            return out;
        }
        while out.len() < max {
            if let Some(rate) = self.rate() {
                if self.limiter.available(now, rate) == 0 {
                    break;
                }
            }
            let next = match self.retry.pop_front() {
                Some(i) => Some(i),
                None if self.canary_blocks() => None,
                None => self.ready.pop_front(),
            };
            let Some(i) = next.map(|i| i as usize) else {
                break;
            };
            if self.slots[i].state != DeviceState::Pending {
                continue;
            }
            if let Position::Closed { opens } = self.window(i, now) {
                self.set_state(i, DeviceState::WaitingForWindow);
                if let Some(at) = opens {
                    self.buckets.entry(at).or_default().push(i as u32);
                }
                continue;
            }
            if self.slots[i].flags & F_GATE_OK == 0 {
                self.set_state(i, DeviceState::Gated);
                continue;
            }
            out.push(self.start(i, now));
        }
        out
    }

    /// The device's twin changed: re-reads its zone, re-checks the gate (a gated device whose
    /// gate now holds waits for its turn again) and the success condition (a verifying device
    /// whose condition now holds succeeds). A zone change of a device waiting for its window
    /// takes effect when its current bucket opens.
    pub fn on_twin_changed(
        &mut self,
        device: DeviceIndex,
        twin: &Twin,
        now: Timestamp,
    ) -> Result<(), RolloutError> {
        let now = self.advance(now);
        let i = self.index(device)?;
        self.read_twin(i, twin);
        let slot = self.slots[i];
        match slot.state {
            DeviceState::Gated if slot.flags & F_GATE_OK != 0 => {
                self.set_state(i, DeviceState::Pending);
                self.enqueue(i, now);
            }
            DeviceState::Verifying if slot.flags & F_SUCCESS_OK != 0 => {
                self.finish(i, DeviceState::Succeeded, now);
            }
            _ => {}
        }
        Ok(())
    }

    /// The outcome of attempt `attempt` of a started device; returns its new state.
    ///
    /// `Succeeded` is taken while running; `Failed` and `TimedOut` while running or verifying.
    /// The success condition is tested on the latest twin given ([`add_device`](Self::add_device)
    /// or [`on_twin_changed`](Self::on_twin_changed)); if it does not hold yet the device
    /// verifies until it does or `successTimeoutSeconds` pass.
    pub fn on_outcome(
        &mut self,
        device: DeviceIndex,
        attempt: u8,
        outcome: Outcome,
        now: Timestamp,
    ) -> Result<DeviceState, RolloutError> {
        let now = self.advance(now);
        let i = self.index(device)?;
        let slot = self.slots[i];
        if slot.attempt != attempt {
            return Err(RolloutError::StaleAttempt {
                got: attempt,
                current: slot.attempt,
            });
        }
        match (slot.state, outcome) {
            (DeviceState::Running, Outcome::Succeeded) => match &self.rules.success {
                Some(_) if slot.flags & F_SUCCESS_OK != 0 => {
                    self.finish(i, DeviceState::Succeeded, now)
                }
                Some((_, secs)) => {
                    let at = after(now, *secs);
                    self.set_state(i, DeviceState::Verifying);
                    self.push_timer(i, at, TimerKind::Success);
                    self.note(i, None);
                }
                None => self.finish(i, DeviceState::Succeeded, now),
            },
            (DeviceState::Running | DeviceState::Verifying, Outcome::Failed) => {
                self.fail(i, FailureReason::Reported, now)
            }
            (DeviceState::Running | DeviceState::Verifying, Outcome::TimedOut) => {
                self.fail(i, FailureReason::ReportedTimeout, now)
            }
            (state, _) => return Err(RolloutError::NotRunning(state)),
        }
        Ok(self.slots[i].state)
    }

    /// Fires what is due at `now`: in-progress and success timeouts, windows opening, the
    /// deadline. Every other call does this too.
    pub fn poll_timers(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// The next change of a device to record, oldest first.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// The earliest time something can happen without input: a timer, a window opening, a
    /// token coming back, the deadline. The latest `now` seen when a device could start at
    /// once; `None` when only input can change anything.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let mut best = self.timers.peek().map(|Reverse(t)| t.at);
        let mut consider = |t: Option<Timestamp>| {
            if let Some(t) = t {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        };
        if !self.progress.deadline_passed {
            consider(self.deadline);
        }
        if self.accepting() {
            consider(self.next_window_opening());
            let queued =
                !self.retry.is_empty() || (!self.canary_blocks() && !self.ready.is_empty());
            if queued {
                consider(match self.rate() {
                    Some(rate) if self.limiter.peek_available(self.now, rate) == 0 => {
                        self.limiter.next_return(self.now)
                    }
                    _ => Some(self.now),
                });
            }
        }
        best
    }

    /// When the next waiting device's window opens.
    pub fn next_window_opening(&self) -> Option<Timestamp> {
        self.buckets.keys().next().copied()
    }

    /// Stops new starts until [`resume`](Self::resume); started devices still finish.
    pub fn pause(&mut self) {
        self.progress.paused = true;
    }

    /// Ends an operator pause and the canary hold (the canary is then over).
    pub fn resume(&mut self) {
        self.progress.paused = false;
        if matches!(self.progress.canary, Canary::Holding | Canary::Collecting)
            && self.progress.first_starts >= self.rules.pause_after.unwrap_or(0)
        {
            self.progress.canary = Canary::Done;
        }
    }

    /// Cancels every device not started (or waiting for a retry); started devices still finish
    /// but are not retried.
    pub fn cancel(&mut self, now: Timestamp) {
        let now = self.advance(now);
        if self.closed() {
            return;
        }
        self.progress.canceled = true;
        self.end_waiting(now, |_| (DeviceState::Canceled, None));
    }

    /// Why the rollout aborted, if it did.
    pub fn abort_info(&self) -> Option<&AbortInfo> {
        self.progress.abort.as_ref()
    }

    /// A device's state.
    pub fn device(&self, device: DeviceIndex) -> Option<DeviceStatus> {
        self.slots.get(device.slot()).map(Slot::status)
    }
}
