//! The hub's job scheduler: one task per hub, the only writer of job and device-job records.
//!
//! Each round it takes the commands (create, cancel, pause, resume), the attempts that ended
//! and the twin changes that came in, moves every job on (start when due, snapshot the target
//! set, let the rollout plan hand out devices, record what the plan decided), writes every
//! change in one commit, and only then answers the commands and starts the attempts. So a
//! device is called only once its `running` record is durable: after a crash it is never
//! called again unknowingly (a method call that was in flight is recorded failed,
//! `Interrupted`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::{condition_of, twin_patch_of, DeviceJobStatus, JobStatus, JobType};
use iot_dm_core::rollout::{DeviceIndex, DeviceState, Outcome, Rollout, RolloutStatus};

use super::records::{delete_job_ops, Detail, Job, Slot};
use super::run::{self, planner_error, Done, Work};
use super::{commands, Command};
use crate::hub::engine::locked;
use crate::hub::error::HubError;
use crate::hub::events::HubEvent;
use crate::hub::{Hub, Inner};

/// Method calls one job runs at once, at most (the rate policy may allow fewer).
pub const MAX_IN_FLIGHT: usize = 256;

/// Twin updates one job runs at once, at most (the rate policy may allow fewer). They run in
/// the hub, not on a device, so what bounds them is the cost of the rounds that record them.
pub const MAX_TWIN_IN_FLIGHT: usize = 65_536;

/// A round that took longer than this is followed by a pause as long as it took (at most
/// [`MAX_PACE`]), so that the attempts that end meanwhile are recorded together: a round's
/// fixed cost (the plan it writes grows with the job) is paid once per batch, not per device.
const PACE_FROM: Duration = Duration::from_millis(2);

/// The longest pause between two rounds.
const MAX_PACE: Duration = Duration::from_millis(20);

/// The longest the scheduler sleeps, so that a clock that jumps is noticed.
const TICK: Duration = Duration::from_millis(200);

/// The status message of a job its canary holds.
const CANARY_HOLD: &str = "canary hold: the first devices finished; resume to go on";

/// What a round answers once its commit is durable.
pub(super) type Reply = (
    oneshot::Sender<Result<iot_dm_core::job::JobResponse, HubError>>,
    Result<iot_dm_core::job::JobResponse, HubError>,
);

/// An attempt to start after the commit.
struct Start {
    job_id: String,
    device: u32,
    attempt: u8,
    device_id: String,
    work: Work,
    until: Instant,
}

/// Spawns the scheduler of the hub behind `inner`.
pub(crate) fn spawn(inner: Weak<Inner>, commands: mpsc::UnboundedReceiver<Command>) {
    tokio::spawn(scheduler(inner, commands));
}

async fn scheduler(inner: Weak<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut wait = Duration::ZERO;
    // twin changes are watched only while a running job needs them (a gate or a success
    // condition): subscribed for good, the scheduler would wake for every change in the hub
    let mut events: Option<broadcast::Receiver<HubEvent>> = None;
    // events were missed (just subscribed, or lagging): look at every watched device again
    let mut recheck = false;
    let mut pace = Duration::ZERO;
    let mut progress = super::progress::Progress::default();
    loop {
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let mut cmds = Vec::new();
        let mut dones = Vec::new();
        let mut changed = Vec::new();
        tokio::select! {
            c = commands.recv() => match c {
                Some(c) => cmds.push(c),
                None => return,
            },
            Some(d) = done_rx.recv() => dones.push(d),
            e = next_event(&mut events) => match e {
                Ok(HubEvent::TwinChanged { device_id, .. }) => changed.push(device_id.to_string()),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => recheck = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
        while let Ok(c) = commands.try_recv() {
            cmds.push(c);
        }
        while let Ok(d) = done_rx.try_recv() {
            dones.push(d);
        }
        if let Some(rx) = &mut events {
            loop {
                match rx.try_recv() {
                    Ok(HubEvent::TwinChanged { device_id, .. }) => {
                        changed.push(device_id.to_string())
                    }
                    Ok(_) => {}
                    Err(broadcast::error::TryRecvError::Lagged(_)) => recheck = true,
                    Err(_) => break,
                }
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let hub = Hub { inner };
        if hub.is_closed() {
            return;
        }
        if std::mem::take(&mut recheck) {
            changed.extend(watched_devices(&hub));
        }
        let started = Instant::now();
        wait = round(&hub, cmds, dones, changed, &done_tx, &mut progress).await;
        let cost = started.elapsed();
        pace = if cost > PACE_FROM {
            cost.min(MAX_PACE)
        } else {
            Duration::ZERO
        };
        let watch = watching(&hub);
        if watch && events.is_none() {
            events = Some(hub.inner.events.subscribe());
            recheck = true;
            wait = Duration::ZERO;
        } else if !watch {
            events = None;
        }
    }
}

/// The next hub event, or never while nothing is watched.
async fn next_event(
    events: &mut Option<broadcast::Receiver<HubEvent>>,
) -> Result<HubEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether the job is running under a policy that reads twins as they change (a gate or a
/// success condition).
fn watches_twins(job: &Job) -> bool {
    job.job.status == JobStatus::Running
        && job.plan.as_ref().is_some_and(|plan| {
            let p = plan.policy();
            p.gate.is_some() || p.success_condition.is_some()
        })
}

/// Whether any job watches twins.
fn watching(hub: &Hub) -> bool {
    locked(&hub.inner.jobs.book).values().any(watches_twins)
}

/// The devices of the jobs that watch twins.
fn watched_devices(hub: &Hub) -> Vec<String> {
    let book = locked(&hub.inner.jobs.book);
    book.values()
        .filter(|job| watches_twins(job))
        .flat_map(|job| job.slots.iter().map(|s| s.id.to_string()))
        .collect()
}

/// One round; returns how long to sleep before the next.
async fn round(
    hub: &Hub,
    cmds: Vec<Command>,
    dones: Vec<Done>,
    changed: Vec<String>,
    done_tx: &mpsc::UnboundedSender<Done>,
    progress: &mut super::progress::Progress,
) -> Duration {
    let now = hub.now();
    let jobs = &hub.inner.jobs;
    let mut ops = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    let mut starts = Vec::new();
    let mut created = Vec::new();
    let wake;
    // readers wait for this round's commit (see `Jobs::gate`)
    let gate = jobs.gate.write().await;
    {
        let mut book = locked(&jobs.book);
        for cmd in cmds {
            commands::command(hub, &mut book, cmd, now, &mut replies, &mut created);
        }
        for d in dones {
            if let Some(job) = book.get_mut(&d.job_id) {
                finish_attempt(job, d, now);
            }
        }
        if !changed.is_empty() {
            twins_changed(hub, &mut book, &changed, now);
        }
        for job in book.values_mut() {
            advance(hub, job, now, &mut starts);
        }
        let expired: Vec<String> = book
            .values()
            .filter(|j| {
                !j.job.status.is_active()
                    && j.in_flight.is_empty()
                    && j.job
                        .end_time
                        .is_some_and(|t| t + jobs.config.retention <= now)
            })
            .map(|j| j.job.job_id.clone())
            .collect();
        for id in expired {
            tracing::info!(job = %id, "job history expired");
            ops.extend(delete_job_ops(&id));
            book.remove(&id);
        }
        for job in book.values_mut() {
            if let Err(e) = job.take_ops(&mut ops) {
                tracing::error!(job = %job.job.job_id, error = %e, "job record not written");
            }
        }
        wake = next_wake(&book, now, jobs.config.retention);
    }
    if !ops.is_empty() {
        if let Err(e) = hub.inner.committer.submit(ops).await {
            let e = HubError::from(e);
            tracing::error!(error = %e, "job records not durable; nothing of this round starts");
            let mut book = locked(&jobs.book);
            for id in &created {
                book.remove(id);
            }
            for (tx, _) in replies {
                let _ = tx.send(Err(e.clone()));
            }
            return TICK;
        }
    }
    drop(gate);
    progress.publish(hub, &locked(&jobs.book));
    for (tx, r) in replies {
        let _ = tx.send(r);
    }
    dispatch(hub, starts, done_tx);
    match wake {
        Some(t) if t <= now => Duration::from_millis(5),
        Some(t) => t.since(now).min(TICK),
        None => TICK,
    }
}

fn dispatch(hub: &Hub, starts: Vec<Start>, done_tx: &mpsc::UnboundedSender<Done>) {
    let mut book = locked(&hub.inner.jobs.book);
    for s in starts {
        let Some(job) = book.get_mut(&s.job_id) else {
            continue;
        };
        let device = s.device;
        let hub = hub.clone();
        let tx = done_tx.clone();
        let task = tokio::spawn(async move {
            let (outcome, detail) = run::run(hub, &s.job_id, &s.device_id, s.work, s.until).await;
            let _ = tx.send(Done {
                job_id: s.job_id,
                device: s.device,
                attempt: s.attempt,
                outcome,
                detail,
            });
        });
        job.in_flight.insert(device, Some(task.abort_handle()));
    }
}

/// Records the end of an attempt and tells the plan.
fn finish_attempt(job: &mut Job, d: Done, now: Timestamp) {
    job.in_flight.remove(&d.device);
    let Some(plan) = &mut job.plan else { return };
    match plan.on_outcome(DeviceIndex(d.device), d.attempt, d.outcome, now) {
        Ok(_) => {
            if let Some(slot) = job.slots.get_mut(d.device as usize) {
                slot.detail = Some(Box::new(d.detail));
            }
        }
        // the deadline, a timeout or a cancel ended the device first; its record says so
        Err(e) => {
            tracing::debug!(job = %job.job.job_id, device = d.device, error = %e, "late outcome")
        }
    }
}

fn twins_changed(
    hub: &Hub,
    book: &mut std::collections::BTreeMap<String, Job>,
    changed: &[String],
    now: Timestamp,
) {
    for job in book.values_mut() {
        let Some(plan) = &mut job.plan else { continue };
        let p = plan.policy();
        if job.job.status != JobStatus::Running
            || (p.gate.is_none() && p.success_condition.is_none())
        {
            continue;
        }
        for id in changed {
            let Ok(i) = job.slots.binary_search_by(|s| (*s.id).cmp(id.as_str())) else {
                continue;
            };
            if let Ok(twin) = hub.get_twin(id) {
                let _ = plan.on_twin_changed(DeviceIndex(i as u32), &twin, now);
            }
        }
        sync_waiting(job, now);
    }
}

/// Records devices the plan holds back (a window, the gate) as `scheduled`, and those it
/// lets go as `pending` again. The devices are walked only when the number held back changed.
fn sync_waiting(job: &mut Job, now: Timestamp) {
    let Some(plan) = &job.plan else { return };
    let stats = plan.stats();
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

/// Moves a job on: starts it when due, hands out devices, records the plan's decisions and
/// ends the job when every device is final.
fn advance(hub: &Hub, job: &mut Job, now: Timestamp, starts: &mut Vec<Start>) {
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
            starts.push(start_of(job, i, attempt, w.clone(), now));
            job.in_flight.insert(i, None);
        }
    }
    if job.job.status == JobStatus::Running {
        let room = in_flight_cap(job).saturating_sub(job.in_flight.len());
        if let (Some(w), Some(plan)) = (&work, &mut job.plan) {
            let handed = plan.poll_start(now, room);
            for s in handed {
                let i = s.device.0;
                job.in_flight.insert(i, None);
                job.set_status(i as usize, DeviceJobStatus::Running, now);
                if let Some(slot) = job.slots.get_mut(i as usize) {
                    slot.start = Some(now);
                    slot.end = None;
                }
                starts.push(start_of(job, i, s.attempt, w.clone(), now));
            }
        }
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

/// How many attempts of `job` may run at once.
fn in_flight_cap(job: &Job) -> usize {
    match job.job.job_type {
        JobType::ScheduleUpdateTwin => MAX_TWIN_IN_FLIGHT,
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

fn next_wake(
    book: &std::collections::BTreeMap<String, Job>,
    now: Timestamp,
    retention: Duration,
) -> Option<Timestamp> {
    let mut best: Option<Timestamp> = None;
    let mut consider = |t: Timestamp| best = Some(best.map_or(t, |b| b.min(t)));
    for job in book.values() {
        match job.job.status {
            JobStatus::Queued | JobStatus::Scheduled => consider(job.job.start_time.unwrap_or(now)),
            JobStatus::Running | JobStatus::Cancelled => {
                if let Some(t) = job.plan.as_ref().and_then(Rollout::next_wakeup) {
                    // a full job waits for an attempt to end, not for the clock
                    if t > now || job.in_flight.len() < in_flight_cap(job) {
                        consider(t);
                    }
                }
            }
            _ => {}
        }
        if let Some(end) = job.job.end_time {
            consider(end + retention);
        }
    }
    best
}

/// After a restart: a method call that was in flight is recorded failed (`Interrupted`) and
/// never repeated (a retry policy may try it again); a twin update that was in flight is
/// applied again.
pub(crate) fn recover(job: &mut Job, now: Timestamp) {
    if job.job.status != JobStatus::Running {
        return;
    }
    let running: Vec<u32> = (0..job.slots.len() as u32)
        .filter(|i| job.slots[*i as usize].status == DeviceJobStatus::Running)
        .collect();
    let is_method = job.job.job_type == JobType::ScheduleDeviceMethod;
    for i in running {
        let Some(plan) = &mut job.plan else { return };
        let Some(state) = plan.device(DeviceIndex(i)) else {
            continue;
        };
        if !state.state.is_in_flight() {
            continue;
        }
        if is_method {
            if plan
                .on_outcome(DeviceIndex(i), state.attempt, Outcome::Failed, now)
                .is_ok()
            {
                job.slots[i as usize].detail = Some(Box::new(Detail {
                    response: None,
                    error: Some(iot_dm_core::job::DeviceJobError {
                        code: "Interrupted".into(),
                        description: "interrupted: the hub stopped while the method call was in flight; it is not repeated".into(),
                    }),
                }));
            }
        } else {
            job.rerun.push(i);
        }
    }
    tracing::info!(job = %job.job.job_id, "job resumed");
}
