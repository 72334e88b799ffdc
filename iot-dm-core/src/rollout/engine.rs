//! The planner's inner transitions: queues, state counts, retries, abort, deadline, time.

use std::cmp::Reverse;

use super::device::{Slot, F_GATE_OK, F_SUCCESS_OK, F_UTC_FALLBACK};
use super::window::Position;
use super::{
    after, retry_wait, zones, AbortInfo, Canary, Change, DeviceIndex, DeviceState, FailureReason,
    FailureType, Rollout, RolloutError, Start, Timer, TimerKind,
};
use crate::clock::Timestamp;
use crate::twin::Twin;

impl Rollout {
    pub(super) fn rate(&self) -> Option<u64> {
        let succeeded = self.counts[DeviceState::Succeeded as usize];
        self.rules
            .rate
            .as_ref()
            .map(|r| r.per_minute(self.progress.starts, succeeded))
    }

    pub(super) fn closed(&self) -> bool {
        self.progress.canceled || self.progress.abort.is_some() || self.progress.deadline_passed
    }

    pub(super) fn accepting(&self) -> bool {
        !self.closed() && !self.progress.paused && self.progress.canary != Canary::Holding
    }

    pub(super) fn canary_blocks(&self) -> bool {
        match (self.progress.canary, self.rules.pause_after) {
            (Canary::Collecting, Some(n)) => self.progress.first_starts >= n,
            (Canary::Holding, _) => true,
            _ => false,
        }
    }

    pub(super) fn index(&self, device: DeviceIndex) -> Result<usize, RolloutError> {
        let i = device.slot();
        if i < self.slots.len() {
            Ok(i)
        } else {
            Err(RolloutError::UnknownDevice(device))
        }
    }

    pub(super) fn window(&mut self, i: usize, now: Timestamp) -> Position {
        self.zones
            .position(&self.rules.windows, self.slots[i].zone, now)
    }

    pub(super) fn read_twin(&mut self, i: usize, twin: &Twin) {
        let mut flags = 0;
        if self.rules.gate.as_ref().is_none_or(|g| g.matches(twin)) {
            flags |= F_GATE_OK;
        }
        if self
            .rules
            .success
            .as_ref()
            .is_none_or(|(c, _)| c.matches(twin))
        {
            flags |= F_SUCCESS_OK;
        }
        let zone = self
            .rules
            .tz_path
            .read(twin)
            .and_then(|name| self.zones.resolve(name));
        let slot = &mut self.slots[i];
        let was_fallback = slot.flags & F_UTC_FALLBACK != 0;
        if zone.is_none() {
            flags |= F_UTC_FALLBACK;
        }
        slot.zone = zone.unwrap_or(zones::UTC);
        slot.flags = flags;
        match (was_fallback, zone.is_none()) {
            (false, true) => self.utc_fallback += 1,
            (true, false) => self.utc_fallback -= 1,
            _ => {}
        }
    }

    /// Puts a pending device in its queue, or in its window bucket when the window is closed.
    pub(super) fn enqueue(&mut self, i: usize, now: Timestamp) {
        if let Position::Closed { opens } = self.window(i, now) {
            self.set_state(i, DeviceState::WaitingForWindow);
            if let Some(at) = opens {
                self.buckets.entry(at).or_default().push(i as u32);
            }
            return;
        }
        if self.slots[i].attempt > 0 {
            self.retry.push_back(i as u32);
        } else {
            self.ready.push_back(i as u32);
        }
    }

    pub(super) fn set_state(&mut self, i: usize, new: DeviceState) {
        let slot = &mut self.slots[i];
        let old = slot.state;
        self.counts[old as usize] -= 1;
        self.counts[new as usize] += 1;
        if retry_wait(old, slot.attempt) {
            self.retrying -= 1;
        }
        if retry_wait(new, slot.attempt) {
            self.retrying += 1;
        }
        slot.state = new;
    }

    pub(super) fn note(&mut self, i: usize, reason: Option<FailureReason>) {
        let slot = &self.slots[i];
        self.changes.push_back(Change {
            device: DeviceIndex(i as u32),
            attempt: slot.attempt,
            state: slot.state,
            reason,
        });
    }

    pub(super) fn push_timer(&mut self, i: usize, at: Timestamp, kind: TimerKind) {
        self.timers.push(Reverse(Timer {
            at,
            device: i as u32,
            attempt: self.slots[i].attempt,
            kind,
        }));
    }

    pub(super) fn start(&mut self, i: usize, now: Timestamp) -> Start {
        self.set_state(i, DeviceState::Running);
        let slot = &mut self.slots[i];
        slot.attempt = slot.attempt.saturating_add(1);
        let attempt = slot.attempt;
        if attempt == 1 {
            self.progress.first_starts += 1;
        }
        self.progress.starts += 1;
        if self.rules.rate.is_some() {
            self.limiter.spend(now);
        }
        if let Some(secs) = self.rules.in_progress_timeout {
            self.push_timer(i, after(now, secs), TimerKind::InProgress);
        }
        Start {
            device: DeviceIndex(i as u32),
            attempt,
        }
    }

    pub(super) fn fail(&mut self, i: usize, reason: FailureReason, now: Timestamp) {
        let timeout = reason.is_timeout();
        let slot = &mut self.slots[i];
        slot.reason = Some(reason);
        let (used, allowed) = if timeout {
            slot.timeouts = slot.timeouts.saturating_add(1);
            (slot.timeouts, self.rules.retries_timed_out)
        } else {
            slot.failures = slot.failures.saturating_add(1);
            (slot.failures, self.rules.retries_failed)
        };
        if used <= allowed && !self.closed() {
            self.set_state(i, DeviceState::Pending);
            self.note(i, Some(reason));
            self.enqueue(i, now);
        } else {
            let state = if timeout {
                DeviceState::TimedOut
            } else {
                DeviceState::Failed
            };
            self.finish(i, state, now);
        }
    }

    pub(super) fn finish(&mut self, i: usize, state: DeviceState, now: Timestamp) {
        if state == DeviceState::Succeeded {
            self.slots[i].reason = None;
        }
        self.set_state(i, state);
        let reason = self.slots[i]
            .reason
            .filter(|_| state != DeviceState::Canceled);
        self.note(i, reason);
        self.check_abort(now);
        if self.progress.canary == Canary::Collecting
            && self.progress.first_starts >= self.rules.pause_after.unwrap_or(u64::MAX)
            && self.counts[DeviceState::Running as usize] == 0
            && self.counts[DeviceState::Verifying as usize] == 0
            && self.retrying == 0
        {
            self.progress.canary = Canary::Holding;
        }
    }

    pub(super) fn check_abort(&mut self, now: Timestamp) {
        if self.closed() || self.rules.abort.is_empty() {
            return;
        }
        let c = |s: DeviceState| self.counts[s as usize];
        let (succeeded, failed, timed_out) = (
            c(DeviceState::Succeeded),
            c(DeviceState::Failed),
            c(DeviceState::TimedOut),
        );
        let finished = succeeded + failed + timed_out;
        let fired = self.rules.abort.iter().position(|k| {
            let bad = match k.failure_type {
                FailureType::Failed => failed,
                FailureType::TimedOut => timed_out,
                FailureType::Any => failed + timed_out,
            };
            finished >= k.min_finished_devices
                && bad as f64 * 100.0 >= k.threshold_percentage * finished as f64
        });
        let Some(k) = fired else { return };
        self.progress.abort = Some(AbortInfo {
            criterion_index: k,
            criterion: self.rules.abort[k].clone(),
            at: now,
            finished,
            succeeded,
            failed,
            timed_out,
        });
        // devices never started are canceled; those waiting for a retry end on their failure
        self.end_waiting(now, |slot| match slot.reason {
            Some(r) if slot.attempt > 0 && r.is_timeout() => (DeviceState::TimedOut, Some(r)),
            Some(r) if slot.attempt > 0 => (DeviceState::Failed, Some(r)),
            _ => (DeviceState::Canceled, None),
        });
    }

    /// Ends every device that is not started and not final, as `end` says; clears the queues.
    pub(super) fn end_waiting(
        &mut self,
        now: Timestamp,
        end: impl Fn(&Slot) -> (DeviceState, Option<FailureReason>),
    ) {
        self.ready.clear();
        self.retry.clear();
        self.buckets.clear();
        for i in 0..self.slots.len() {
            let slot = self.slots[i];
            if slot.state.is_final() || slot.state.is_in_flight() {
                continue;
            }
            let (state, reason) = end(&slot);
            self.slots[i].reason = reason;
            self.finish(i, state, now);
        }
    }

    /// Moves time to `now` (never backwards) and fires what is due.
    pub(super) fn advance(&mut self, now: Timestamp) -> Timestamp {
        let now = now.max(self.now);
        self.now = now;
        if self.progress.deadline_passed {
            return now;
        }
        let cutoff = self.deadline.map_or(now, |d| d.min(now));
        while let Some(Reverse(t)) = self.timers.peek().copied() {
            if t.at > cutoff || self.deadline.is_some_and(|d| t.at >= d) {
                break;
            }
            self.timers.pop();
            let i = t.device as usize;
            let Some(slot) = self.slots.get(i).copied() else {
                continue;
            };
            match (t.kind, slot.state) {
                (TimerKind::InProgress, DeviceState::Running) if slot.attempt == t.attempt => {
                    self.fail(i, FailureReason::InProgressTimeout, t.at)
                }
                (TimerKind::Success, DeviceState::Verifying) if slot.attempt == t.attempt => {
                    self.fail(i, FailureReason::SuccessConditionNotMet, t.at)
                }
                _ => {}
            }
        }
        if self.deadline.is_some_and(|d| d <= now) {
            self.expire_deadline(now);
            return now;
        }
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now {
                break;
            }
            for i in entry.remove() {
                let i = i as usize;
                if self.slots[i].state == DeviceState::WaitingForWindow {
                    self.set_state(i, DeviceState::Pending);
                    self.enqueue(i, now);
                }
            }
        }
        now
    }

    pub(super) fn expire_deadline(&mut self, now: Timestamp) {
        self.progress.deadline_passed = true;
        self.timers.clear();
        self.ready.clear();
        self.retry.clear();
        self.buckets.clear();
        for i in 0..self.slots.len() {
            let (state, reason) = match self.slots[i].state {
                DeviceState::Pending => (DeviceState::Failed, FailureReason::NotStarted),
                DeviceState::WaitingForWindow => {
                    (DeviceState::Failed, FailureReason::WindowNotOpen)
                }
                DeviceState::Gated => (DeviceState::Failed, FailureReason::GateNotSatisfied),
                DeviceState::Running | DeviceState::Verifying => {
                    (DeviceState::TimedOut, FailureReason::Deadline)
                }
                _ => continue,
            };
            self.slots[i].reason = Some(reason);
            self.finish(i, state, now);
        }
    }
}
