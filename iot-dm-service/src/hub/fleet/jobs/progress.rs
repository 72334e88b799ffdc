//! Moving one job on within a scheduler round: start it when due (snapshot the target set and
//! make the plan), hand devices out, and record what the plan decided, ending the job when
//! every device is final.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::{
    condition_of, twin_patch_of, DeviceJobStatus, JobStatus, JobType, RolloutStatistics,
};
use iot_dm_core::rollout::{DeviceIndex, DeviceState, Rollout, RolloutStatus};

use super::records::{Detail, Job, Slot};
use super::run::{planner_error, Work};
use super::scheduler::{Start, MAX_IN_FLIGHT, MAX_TWIN_BATCH};
use crate::hub::Hub;

/// The status message of a job its canary holds.
const CANARY_HOLD: &str = "canary hold: the first devices finished; resume to go on";

/// Records devices the plan holds back (a window, the gate) as `scheduled`, and those it
/// lets go as `pending` again (the devices are walked only when the number held back
/// changed); a job with a policy keeps its `rolloutStatistics` current.
pub(super) fn sync_waiting(job: &mut Job, now: Timestamp) {
    let Some(plan) = &job.plan else { return };
    let stats = plan.stats();
    if job.job.rollout_policy.is_some() {
        let held = Some(RolloutStatistics {
            waiting_for_window_count: stats.waiting_for_window,
            gated_count: stats.gated,
            utc_fallback_count: stats.utc_fallback,
        });
        if job.job.rollout_statistics != held {
            job.job.rollout_statistics = held;
            job.dirty = true;
        }
    }
    let waiting = stats.waiting_for_window + stats.gated;
    if waiting == job.waiting {
        return;
    }
    job.waiting = waiting;
    let moved: Vec<(usize, DeviceJobStatus)> = job
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            matches!(
                s.status,
                DeviceJobStatus::Pending | DeviceJobStatus::Scheduled
            )
        })
        .filter_map(|(i, s)| {
            let want = plan
                .device(DeviceIndex(i as u32))?
                .state
                .device_job_status();
            (want != s.status
                && matches!(want, DeviceJobStatus::Pending | DeviceJobStatus::Scheduled))
            .then_some((i, want))
        })
        .collect();
    for (i, status) in moved {
        job.set_status(i, status, now);
    }
}

/// Moves a job on: starts it when due and hands out devices: twin updates into `twins` (the
/// round applies them before its commit), method calls into `starts` (tasks run them after
/// it). [`settle`] records what came of it.
pub(super) fn advance(
    hub: &Hub,
    job: &mut Job,
    now: Timestamp,
    starts: &mut Vec<Start>,
    twins: &mut Vec<Start>,
) {
    match job.job.status {
        JobStatus::Queued | JobStatus::Scheduled => {
            if job.job.start_time.is_none_or(|t| t <= now) {
                start_job(hub, job, now);
            } else if job.job.status == JobStatus::Queued {
                job.job.status = JobStatus::Scheduled;
                job.dirty = true;
            }
        }
        JobStatus::Running | JobStatus::Cancelled => {}
        JobStatus::Completed | JobStatus::Failed => return,
    }
    if job.plan.is_none() {
        return;
    }
    let work = work_of(job);
    if let Some(plan) = &mut job.plan {
        plan.poll_timers(now);
    }
    for i in std::mem::take(&mut job.rerun) {
        if let (Some(w), Some(plan)) = (&work, &job.plan) {
            let attempt = plan.device(DeviceIndex(i)).map_or(1, |d| d.attempt);
            let start = start_of(job, i, attempt, w.clone(), now);
            match w {
                Work::Twin(_) => twins.push(start),
                Work::Method(_) => {
                    job.in_flight.insert(i, None);
                    starts.push(start);
                }
            }
        }
    }
    if job.job.status == JobStatus::Running {
        let room = in_flight_cap(job).saturating_sub(job.in_flight.len());
        if let (Some(w), Some(plan)) = (&work, &mut job.plan) {
            let handed = plan.poll_start(now, room);
            for s in handed {
                let i = s.device.0;
                job.set_status(i as usize, DeviceJobStatus::Running, now);
                if let Some(slot) = job.slots.get_mut(i as usize) {
                    slot.start = Some(now);
                    slot.end = None;
                }
                let start = start_of(job, i, s.attempt, w.clone(), now);
                match w {
                    Work::Twin(_) => twins.push(start),
                    Work::Method(_) => {
                        job.in_flight.insert(i, None);
                        starts.push(start);
                    }
                }
            }
        }
    }
}

/// Records what the plan decided this round, and ends the job when every device is final.
pub(super) fn settle(hub: &Hub, job: &mut Job, now: Timestamp) {
    if job.plan.is_none() {
        return;
    }
    drain(Some(hub), job, now);
    sync_waiting(job, now);
    if let Some(plan) = &job.plan {
        let hold = plan.status() == RolloutStatus::CanaryHold;
        let said = job.job.status_message.as_deref() == Some(CANARY_HOLD);
        if job.job.status == JobStatus::Running && hold != said {
            job.job.status_message = hold.then(|| CANARY_HOLD.to_string());
            job.dirty = true;
        }
    }
    let Some(plan) = &job.plan else { return };
    if job.job.status == JobStatus::Running && plan.is_finished() {
        let stats = plan.stats();
        match plan.status() {
            RolloutStatus::Aborted => {
                let why = plan
                    .abort_info()
                    .map(|a| format!("abort criterion {} held ({} of {} finished devices failed or timed out)", a.criterion_index, a.failed + a.timed_out, a.finished))
                    .unwrap_or_else(|| "an abort criterion held".into());
                job.job.status = JobStatus::Failed;
                job.job.failure_reason = Some("RolloutAborted".into());
                job.job.status_message = Some(why);
            }
            _ => {
                job.job.status = JobStatus::Completed;
                job.job.status_message = Some(format!(
                    "{} of {} devices succeeded",
                    stats.succeeded, stats.total
                ));
            }
        }
        job.job.end_time = Some(now);
        job.dirty = true;
        tracing::info!(job = %job.job.job_id, status = job.job.status.as_str(), "job ended");
    }
}

/// How many attempts of `job` may run at once (twin updates: in one round).
pub(super) fn in_flight_cap(job: &Job) -> usize {
    match job.job.job_type {
        JobType::ScheduleUpdateTwin => MAX_TWIN_BATCH,
        JobType::ScheduleDeviceMethod => MAX_IN_FLIGHT,
    }
}

/// What the job does to each device, made once.
fn work_of(job: &mut Job) -> Option<Work> {
    if job.work.is_none() {
        job.work = match job.job.job_type {
            JobType::ScheduleUpdateTwin => job
                .job
                .update_twin
                .as_ref()
                .map(|u| Work::Twin(Arc::new(twin_patch_of(u)))),
            JobType::ScheduleDeviceMethod => job
                .job
                .cloud_to_device_method
                .as_ref()
                .and_then(|m| m.request().ok())
                .map(|m| Work::Method(Arc::new(m))),
        };
    }
    job.work.clone()
}

fn start_of(job: &Job, i: u32, attempt: u8, work: Work, now: Timestamp) -> Start {
    let deadline = job.plan.as_ref().and_then(Rollout::deadline).unwrap_or(now);
    Start {
        job_id: job.job.job_id.clone(),
        device: i,
        attempt,
        device_id: job
            .slots
            .get(i as usize)
            .map(|s| s.id.to_string())
            .unwrap_or_default(),
        work,
        until: Instant::now() + deadline.since(now),
    }
}

/// Snapshots the target set and makes the plan.
fn start_job(hub: &Hub, job: &mut Job, now: Timestamp) {
    let fail = |job: &mut Job, reason: &str, message: String| {
        job.job.status = JobStatus::Failed;
        job.job.failure_reason = Some(reason.into());
        job.job.status_message = Some(message);
        job.job.end_time = Some(now);
        job.dirty = true;
    };
    let condition = match condition_of(job.job.query_condition.as_deref().unwrap_or("*")) {
        Ok(c) => c,
        Err(e) => return fail(job, "InvalidQueryCondition", e.to_string()),
    };
    let mut twins = match &condition {
        Some(c) => hub.twins_matching(c),
        None => hub.live_twins(),
    };
    twins.sort_by(|a, b| a.device_id.as_str().cmp(b.device_id.as_str()));
    let policy = job.job.rollout_policy.clone().unwrap_or_default();
    let deadline = job.job.start_time.unwrap_or(now).max(now)
        + Duration::from_secs(
            job.job
                .max_execution_time_in_seconds
                .unwrap_or(iot_dm_core::job::DEFAULT_MAX_EXECUTION_SECONDS),
        );
    let mut plan = match Rollout::new(policy, Some(deadline), now) {
        Ok(p) => p,
        Err(e) => return fail(job, "InvalidRolloutPolicy", e.to_string()),
    };
    if let Err(e) = plan.add_devices(twins.iter().map(|t| &**t), now) {
        return fail(job, "TooManyDevices", e.to_string());
    }
    job.set_slots(
        twins
            .iter()
            .map(|t| Slot::new(t.device_id.as_str(), now))
            .collect(),
    );
    job.counts = Default::default();
    job.counts.device_count = job.slots.len() as u64;
    job.counts.pending_count = job.slots.len() as u64;
    job.job.device_job_statistics = Some(job.counts);
    job.plan = Some(plan);
    job.job.status = JobStatus::Running;
    job.dirty = true;
    tracing::info!(job = %job.job.job_id, devices = job.slots.len(), "job started");
}

/// Records every change the plan made to a device.
pub(super) fn drain(hub: Option<&Hub>, job: &mut Job, now: Timestamp) {
    let is_method = job.job.job_type == JobType::ScheduleDeviceMethod;
    loop {
        let Some(plan) = &mut job.plan else { return };
        let Some(change) = plan.poll_change() else {
            return;
        };
        let message = plan.failure_message(change.device);
        let i = change.device.0 as usize;
        let status = change.state.device_job_status();
        if change.state.is_final() {
            if let Some(Some(task)) = job.in_flight.remove(&change.device.0) {
                task.abort();
            }
            let needs_error = matches!(change.state, DeviceState::Failed | DeviceState::TimedOut)
                && job.slots.get(i).is_some_and(|s| s.detail.is_none());
            if needs_error {
                if let (Some(hub), Some(slot)) = (hub, job.slots.get_mut(i)) {
                    slot.detail = Some(Box::new(Detail {
                        response: None,
                        error: Some(planner_error(
                            hub,
                            &slot.id,
                            is_method,
                            change.reason,
                            message,
                        )),
                    }));
                }
            }
            if let Some(slot) = job.slots.get_mut(i) {
                slot.end = Some(now);
            }
        }
        if job
            .slots
            .get(i)
            .is_some_and(|s| s.status != status || s.detail.is_some())
        {
            job.set_status(i, status, now);
        }
    }
}
