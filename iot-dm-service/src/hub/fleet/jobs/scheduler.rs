//! The hub's job scheduler: one task per hub, the only writer of job and device-job records.
//!
//! Each round it takes the commands (create, cancel, pause, resume), the attempts that ended
//! and the twin changes that came in, moves every job on (start when due, snapshot the target
//! set, let the rollout plan hand out devices, record what the plan decided), writes every
//! change in one commit, and only then answers the commands and starts the attempts. So a
//! device is called only once its `running` record is durable: after a crash it is never
//! called again unknowingly (a method call that was in flight is recorded failed,
//! `Interrupted`).

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::{DeviceJobStatus, JobStatus, JobType};
use iot_dm_core::rollout::{DeviceIndex, Outcome, Rollout};

use super::progress::{advance, in_flight_cap, settle, sync_waiting};
use super::records::{delete_job_ops, Detail, Job};
use super::run::{self, Done, Work};
use super::{commands, Command};
use crate::hub::engine::locked;
use crate::hub::error::HubError;
use crate::hub::events::HubEvent;
use crate::hub::{Hub, Inner};

/// Method calls one job runs at once, at most (the rate policy may allow fewer).
pub const MAX_IN_FLIGHT: usize = 256;

/// Twin updates one job applies in one round, at most (the rate policy may allow fewer). They
/// are applied by the round itself, in the hub (on every core, no task per device), and
/// recorded final in its commit: the twin writes are queued before the commit and the store
/// commits in order, so once the records are durable the twins are too. The batch bounds how
/// long a round keeps API reads of jobs waiting for its commit.
pub const MAX_TWIN_BATCH: usize = 8_192;

/// A round that took longer than this is followed by a pause as long as it took (at most
/// [`MAX_PACE`]), so that the attempts that end meanwhile are recorded together: a round's
/// fixed cost (the plan it writes grows with the job) is paid once per batch, not per device.
const PACE_FROM: Duration = Duration::from_millis(2);

/// The longest pause between two rounds.
const MAX_PACE: Duration = Duration::from_millis(20);

/// While devices write their twins, a job's rounds are followed by a pause this many times as
/// long as the round took, so that a job keeps to about a seventh of the hub's time and yields
/// the rest to the devices (a job is background work; devices' own traffic comes first).
const BACKGROUND_FACTOR: u32 = 6;

/// The longest pause a busy hub makes a job take between two rounds.
const MAX_BACKGROUND_PACE: Duration = Duration::from_millis(250);

/// How long after the last device write the hub counts as busy with devices.
const DEVICES_BUSY_FOR: Duration = Duration::from_secs(1);

/// The longest the scheduler sleeps, so that a clock that jumps is noticed.
const TICK: Duration = Duration::from_millis(200);

/// What a round answers once its commit is durable.
pub(super) type Reply = (
    oneshot::Sender<Result<iot_dm_core::job::JobResponse, HubError>>,
    Result<iot_dm_core::job::JobResponse, HubError>,
);

/// An attempt: a method call to start after the commit, or a twin update the round applies.
pub(super) struct Start {
    pub(super) job_id: String,
    pub(super) device: u32,
    pub(super) attempt: u8,
    pub(super) device_id: String,
    pub(super) work: Work,
    pub(super) until: Instant,
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
    // devices' own twin writes, to yield to them (see `BACKGROUND_FACTOR`)
    let mut device_writes = 0u64;
    let mut devices_busy_until: Option<Instant> = None;
    let mut progress = match inner.upgrade() {
        Some(inner) => super::notify::Progress::loaded(&locked(&inner.jobs.book)),
        None => return,
    };
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
        let writes = hub.inner.sequencer.device_writes();
        if writes != device_writes {
            device_writes = writes;
            devices_busy_until = Some(Instant::now() + DEVICES_BUSY_FOR);
        }
        let devices_busy = devices_busy_until.is_some_and(|t| Instant::now() < t);
        pace = pace_after(cost, devices_busy, attempts_in_flight(&hub));
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

/// The pause after a round that took `cost`: none for a cheap round; as long as the round
/// while attempts run on devices (the attempts that end meanwhile are then recorded together,
/// so a round's fixed cost is paid once per batch); and [`BACKGROUND_FACTOR`] times as long
/// while devices write their twins.
pub(super) fn pace_after(cost: Duration, devices_busy: bool, attempts_in_flight: bool) -> Duration {
    if cost <= PACE_FROM {
        return Duration::ZERO;
    }
    let mut pace = Duration::ZERO;
    if attempts_in_flight {
        pace = cost.min(MAX_PACE);
    }
    if devices_busy {
        pace = pace.max((cost * BACKGROUND_FACTOR).min(MAX_BACKGROUND_PACE));
    }
    pace
}

/// Whether any job has attempts running on devices.
fn attempts_in_flight(hub: &Hub) -> bool {
    locked(&hub.inner.jobs.book)
        .values()
        .any(|j| !j.in_flight.is_empty())
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
    progress: &mut super::notify::Progress,
) -> Duration {
    let now = hub.now();
    let jobs = &hub.inner.jobs;
    let mut ops = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    let mut starts = Vec::new();
    let mut created = Vec::new();
    let mut twins = Vec::new();
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
            advance(hub, job, now, &mut starts, &mut twins);
        }
    }
    if !twins.is_empty() {
        // applied with the job records unlocked (the gate still keeps readers waiting)
        let applied = run::apply_batch(hub, std::mem::take(&mut twins)).await;
        let mut book = locked(&jobs.book);
        for d in applied {
            if let Some(job) = book.get_mut(&d.job_id) {
                finish_attempt(job, d, now);
            }
        }
    }
    {
        let mut book = locked(&jobs.book);
        for job in book.values_mut() {
            settle(hub, job, now);
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
            let _ = tx.send(run::attempt(hub, s).await);
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
/// never repeated (a retry policy may try it again); a twin update that was in flight (a
/// store written by an earlier version, which ran them as tasks) is applied again.
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
