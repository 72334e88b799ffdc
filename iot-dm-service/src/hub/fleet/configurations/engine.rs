//! The hub's configuration task: the only writer of the twins' `configurations` member and of
//! the counts.
//!
//! It waits for a signal from the API (a configuration created, updated or deleted) or an
//! event from the hub (a twin changed, a device created, deleted or moved through its
//! lifecycle). A signal, or events missed by lagging behind, means a pass over every twin; an
//! event means planning that twin again. Planning a twin is core's `plan_twin` over the
//! configurations whose target matches it; when the plan changes the twin, the change is
//! written under the entry's lock (planned once more there, on the twin as it is then), and
//! the device gets the desired part as a notification once it is durable. Then the twin's
//! mark per configuration (targeted, applied, each metric) is compared with the one counted
//! before, and the counts move by the difference: nothing is counted twice, nothing is
//! re-queried on a timer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::configuration::{
    plan_twin, winner, Configuration, ConfigurationStatus, Contender, DeviceContent,
};
use iot_dm_core::doc::Doc;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::query::Condition;
use iot_dm_core::twin::Twin;

use super::tally::{basis, mark, metric_bits, status_of, Tally};
use super::Signal;
use crate::hub::engine::{lock, locked, Ack, Slot};
use crate::hub::error::HubError;
use crate::hub::events::{Actor, HubEvent};
use crate::hub::fleet::pace::DRAIN_EVERY;
use crate::hub::twins::DesiredChange;
use crate::hub::{Hub, Inner};
use crate::store::OnDurable;

/// Writes a pass has in flight before it waits for them to be durable.
const IN_FLIGHT: usize = 4096;

/// Twins a pass plans between two yields to the runtime.
const YIELD_EVERY: usize = 1024;

/// The longest wait between two looks at the rollouts while one may admit twins later.
const PACING_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The pause after a round that failed (a store that refuses writes), before the next.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// A twin's new `configurations` member, its desired patch, and who makes the change.
type Plan = (Value, Option<Value>, Actor);

/// The configurations as one round sees them.
struct Snapshot {
    live: BTreeMap<String, Arc<Configuration>>,
    retired: HashMap<String, Arc<Configuration>>,
    /// Whether any live configuration has a rollout policy.
    paced: bool,
    /// Whether a device's reported patch can change what a twin becomes: a target condition
    /// (or a rollout's gate or zone) reads reported properties or system fields.
    plan_reads_reported: bool,
    /// The configurations with a custom metric a reported patch can move, each with, per
    /// such metric, the part of its condition a reported patch cannot change (`None`: none,
    /// it always holds): where no part holds on a twin, its patches leave the metrics alone.
    metrics_read_reported: Vec<(Arc<Configuration>, Vec<Option<Condition>>)>,
}

impl Snapshot {
    fn take(hub: &Hub) -> Snapshot {
        let c = &hub.inner.configurations;
        let live = c
            .records
            .read()
            .iter()
            .map(|(k, s)| (k.clone(), s.0.clone()))
            .collect();
        let retired = locked(&c.retired).clone();
        let paced = c.records.read().values().any(|s| s.0.rollout.is_some());
        let live: BTreeMap<String, Arc<Configuration>> = live;
        let plan_reads_reported = paced
            || live.values().any(|c| {
                c.target
                    .as_ref()
                    .is_some_and(|t| t.reads().reported_change_matters())
            });
        let metrics_read_reported = live
            .values()
            .filter_map(|c| {
                let stable: Vec<Option<Condition>> = c
                    .metric_queries
                    .iter()
                    .filter(|(_, q)| q.reads().reported_change_matters())
                    .map(|(_, q)| q.where_condition().and_then(|w| w.split_for_reported().0))
                    .collect();
                (!stable.is_empty()).then(|| (c.clone(), stable))
            })
            .collect();
        Snapshot {
            live,
            retired,
            paced,
            plan_reads_reported,
            metrics_read_reported,
        }
    }

    fn content_of(&self, id: &str) -> Option<&DeviceContent> {
        self.live
            .get(id)
            .or_else(|| self.retired.get(id))
            .map(|c| &c.content)
    }

    /// What `twin` becomes: its new `configurations` member and desired patch, or `None`
    /// when it stays as it is. `held` are the configurations whose rollout has not admitted
    /// the twin yet: `targeted`, out of the running.
    fn plan(&self, twin: &Twin, held: &[&str]) -> Option<Plan> {
        let contenders: Vec<_> = self
            .live
            .values()
            .filter(|c| c.targets(twin) && !held.contains(&c.id.as_str()))
            .map(|c| c.contender())
            .collect();
        if settled(twin, &contenders, held) {
            // the common case of a pass: read on the stored document, nothing built
            return None;
        }
        let statuses = twin.configurations().to_value();
        let previous = iot_dm_core::configuration::applied_in(&statuses).map(str::to_string);
        let mut plan = plan_twin(
            &statuses,
            || twin.desired().doc().to_value(),
            &contenders,
            |id| self.content_of(id),
        );
        if let Some(m) = plan.statuses.as_object_mut() {
            for id in held {
                let status = ConfigurationStatus::Targeted.as_str();
                m.insert(id.to_string(), serde_json::json!({ "status": status }));
            }
        }
        let same = plan.statuses == statuses || (is_empty(&plan.statuses) && is_empty(&statuses));
        if same && plan.desired.is_none() {
            return None;
        }
        let actor = Actor::Configuration(plan.applied.or(previous).unwrap_or_default());
        Some((plan.statuses, plan.desired, actor))
    }
}

/// Whether `twin` already records exactly what `contenders` (those matching it) and `held`
/// make of it: the winner applied, the others targeted, nothing else.
fn settled(twin: &Twin, contenders: &[Contender<'_>], held: &[&str]) -> bool {
    let doc = twin.configurations();
    let members = if doc.is_empty() { 0 } else { doc.root().len() };
    if members != contenders.len() + held.len() {
        return false;
    }
    if !held
        .iter()
        .all(|id| status_of(twin, id) == Some(ConfigurationStatus::Targeted))
    {
        return false;
    }
    let win = winner(contenders).map(|w| w.id);
    contenders.iter().all(|c| {
        let want = if Some(c.id) == win {
            ConfigurationStatus::Applied
        } else {
            ConfigurationStatus::Targeted
        };
        status_of(twin, c.id) == Some(want)
    })
}

fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|m| m.is_empty())
}

pub(super) fn spawn(inner: &Arc<Inner>, signals: mpsc::UnboundedReceiver<Signal>) {
    let events = inner.events.subscribe();
    let ended = Ended(inner.configurations.done.clone());
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let _ended = ended;
        run(weak, signals, events).await;
    });
}

/// Tells the waiters that the task has ended (the hub shut down), however it ends.
struct Ended(Arc<tokio::sync::watch::Sender<u64>>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.send_replace(u64::MAX);
    }
}

/// What one round has to do.
#[derive(Default)]
struct Work {
    full: bool,
    devices: BTreeSet<DeviceId>,
    /// Devices whose only changes since they were last planned are their own reported
    /// patches (not in `devices`).
    reported: BTreeSet<DeviceId>,
    gone: Vec<DeviceId>,
    generation: u64,
    deleted: Vec<Arc<Configuration>>,
    /// Rollouts paused (`true`) or resumed since the last round.
    pausing: Vec<(String, bool)>,
}

impl Work {
    fn is_empty(&self) -> bool {
        !self.full
            && self.devices.is_empty()
            && self.reported.is_empty()
            && self.gone.is_empty()
            && self.pausing.is_empty()
    }

    fn signal(&mut self, s: Signal) {
        if let Signal::Pacing {
            generation,
            id,
            paused,
        } = s
        {
            // a resumed rollout may start afresh: every twin is shown to it again
            self.full |= !paused;
            self.pausing.push((id, paused));
            self.generation = self.generation.max(generation);
            return;
        }
        self.full = true;
        match s {
            Signal::Changed { generation } => self.generation = self.generation.max(generation),
            Signal::Deleted {
                generation,
                configuration,
            } => {
                self.generation = self.generation.max(generation);
                self.deleted.push(configuration);
            }
            Signal::Pacing { .. } => {}
        }
    }

    fn event(&mut self, e: Result<HubEvent, broadcast::error::RecvError>) -> bool {
        match e {
            Ok(HubEvent::TwinChanged {
                actor: Actor::Configuration(_),
                ..
            }) => {}
            Ok(HubEvent::TwinChanged {
                actor: Actor::Device,
                device_id,
                ..
            }) => {
                if !self.devices.contains(&device_id) {
                    self.reported.insert(device_id);
                }
            }
            Ok(
                HubEvent::TwinChanged { device_id, .. }
                | HubEvent::IdentityCreated { device_id }
                | HubEvent::IdentityUpdated { device_id }
                | HubEvent::Lifecycle { device_id, .. },
            ) => {
                self.reported.remove(&device_id);
                self.devices.insert(device_id);
            }
            Ok(HubEvent::IdentityDeleted { device_id }) => self.gone.push(device_id),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    "configurations: events missed, every twin is planned again"
                );
                self.full = true;
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    }
}

async fn run(
    inner: Weak<Inner>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    mut events: broadcast::Receiver<HubEvent>,
) {
    // the pass on open: counts rebuilt, interrupted applications finished
    let mut work = Work {
        full: true,
        generation: 1,
        ..Work::default()
    };
    // `configuration.metrics` events, and when a change held back is due
    let mut metrics = super::notify::Metrics::default();
    let mut due: Option<tokio::time::Instant> = None;
    // when a rollout may admit twins again
    let mut wake: Option<tokio::time::Instant> = None;
    loop {
        if work.is_empty() {
            let held = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let paced = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = paced => {
                    // nothing to plan but what the rollouts admit
                    wake = None;
                }
                s = signals.recv() => match s {
                    Some(s) => work.signal(s),
                    None => return,
                },
                e = events.recv() => if !work.event(e) { return },
                _ = held => {
                    let Some(inner) = inner.upgrade() else { return };
                    due = metrics.publish(&Hub { inner });
                    continue;
                }
            }
        }
        while let Ok(s) = signals.try_recv() {
            work.signal(s);
        }
        drain(&mut events, &mut work);
        let Some(inner) = inner.upgrade() else { return };
        let hub = Hub { inner };
        if hub.is_closed() {
            return;
        }
        let round = std::mem::take(&mut work);
        let generation = round.generation;
        let devices_only = !round.full && round.pausing.is_empty();
        let started = tokio::time::Instant::now();
        match hub.round(round, &mut events, &mut work).await {
            Ok(next) => wake = next.map(|t| wake_at(&hub, t)),
            Err(HubError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "configurations: a round failed; every twin is planned again");
                drop(hub);
                tokio::time::sleep(RETRY_AFTER).await;
                work.full = true;
                work.generation = work.generation.max(generation);
                continue;
            }
        }
        due = metrics.publish(&hub);
        if generation > 0 {
            hub.inner.configurations.done.send_if_modified(|done| {
                let moved = generation > *done;
                *done = (*done).max(generation);
                moved
            });
        }
        drop(hub);
        if devices_only && work.generation == 0 {
            // twins changing all the time: gather their events for a moment, so that a twin
            // changed many times is planned once (a signal ends the wait)
            let until = started + crate::hub::fleet::pace::gap_after(started.elapsed());
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    s = signals.recv() => match s {
                        Some(s) => { work.signal(s); break; }
                        None => return,
                    },
                    e = events.recv() => if !work.event(e) { return },
                }
            }
        }
    }
}

impl Hub {
    /// One round: `work` now; events that arrive during a pass over every twin are drained
    /// into `later` as it goes (so that the pass's own twin changes do not overflow the
    /// subscription and force another pass).
    async fn round(
        &self,
        work: Work,
        events: &mut broadcast::Receiver<HubEvent>,
        later: &mut Work,
    ) -> Result<Option<Timestamp>, HubError> {
        let snapshot = Snapshot::take(self);
        let c = &self.inner.configurations;
        if snapshot.paced || !work.pausing.is_empty() {
            let records = c.pacing_records.read();
            let mut pacing = locked(&c.pacing);
            for (id, paused) in &work.pausing {
                pacing.set_paused(id, *paused);
            }
            pacing.sync(&snapshot.live, &records, self.now());
        }
        {
            let mut tallies = locked(&c.tallies);
            tallies.retain(|id, _| snapshot.live.contains_key(id));
            for (id, cfg) in &snapshot.live {
                let t = tallies.entry(id.clone()).or_default();
                let basis = basis(cfg);
                if t.basis != basis {
                    // a new configuration, or new metric queries: count afresh (a full pass
                    // follows)
                    *t = Tally::fresh(basis);
                }
            }
            for id in &work.gone {
                for t in tallies.values_mut() {
                    t.set(id, 0);
                }
            }
        }
        let mut pending: Vec<Ack> = Vec::new();
        if work.full {
            let started = std::time::Instant::now();
            let mut n = 0usize;
            for entry in self.inner.state.devices.iter() {
                self.plan_device(entry.key(), entry.value(), &snapshot, &mut pending);
                n += 1;
                if pending.len() >= IN_FLIGHT {
                    settle(&mut pending).await?;
                }
                if n.is_multiple_of(YIELD_EVERY) {
                    tokio::task::yield_now().await;
                    drain(events, later);
                }
            }
            settle(&mut pending).await?;
            tracing::debug!(
                twins = n,
                configurations = snapshot.live.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "configurations: every twin planned"
            );
            // every twin has been planned without the deleted configurations
            let mut retired = locked(&c.retired);
            for gone in &work.deleted {
                if retired.get(&gone.id).is_some_and(|r| Arc::ptr_eq(r, gone)) {
                    retired.remove(&gone.id);
                }
            }
        } else {
            for (n, id) in work.devices.iter().enumerate() {
                match self.inner.state.slot(id.as_str()) {
                    Ok(slot) => self.plan_device(id, &slot, &snapshot, &mut pending),
                    Err(_) => self.forget_configured(id),
                }
                if n % DRAIN_EVERY == DRAIN_EVERY - 1 {
                    drain(events, later);
                }
            }
            for (n, id) in work.reported.iter().enumerate() {
                if n % DRAIN_EVERY == DRAIN_EVERY - 1 {
                    drain(events, later);
                }
                match self.inner.state.slot(id.as_str()) {
                    Ok(slot) if snapshot.plan_reads_reported => {
                        self.plan_device(id, &slot, &snapshot, &mut pending)
                    }
                    Ok(slot) => self.count_metrics(id, &slot, &snapshot),
                    Err(_) => self.forget_configured(id),
                }
            }
            settle(&mut pending).await?;
        }
        if !snapshot.paced {
            return Ok(None);
        }
        let step = self.pace(&snapshot.live);
        later.devices.extend(step.admitted);
        self.write_aborts(step.aborted).await?;
        Ok(step.wake)
    }

    /// A twin whose own reported patch cannot change what it becomes (no target reads
    /// reported properties): only the custom metrics that read them are counted again.
    fn count_metrics(&self, id: &DeviceId, slot: &Slot, snapshot: &Snapshot) {
        if snapshot.metrics_read_reported.is_empty() {
            return;
        }
        let twin = {
            let g = lock(slot);
            (!g.deleted && g.is_live()).then(|| g.twin.clone())
        };
        let Some(twin) = twin else {
            self.forget_configured(id);
            return;
        };
        let c = &self.inner.configurations;
        let Some(watching) = locked(&c.reported_watch).get(id).cloned() else {
            return;
        };
        // matched outside the lock, which readers of the counts share
        let bits: Vec<(&Configuration, u8)> = watching
            .iter()
            .filter_map(|cid| snapshot.live.get(cid.as_ref()))
            .map(|cfg| (&**cfg, metric_bits(cfg, &twin)))
            .collect();
        let mut tallies = locked(&c.tallies);
        for (cfg, bits) in bits {
            if let Some(t) = tallies.get_mut(&cfg.id) {
                t.set_metrics(id, bits);
            }
        }
    }

    /// Records which configurations' metrics a patch of `twin`'s device can move: those with
    /// a metric whose stable part holds on it now.
    fn watch_reported(&self, id: &DeviceId, twin: &Twin, snapshot: &Snapshot) {
        let watching: Vec<Arc<str>> = snapshot
            .metrics_read_reported
            .iter()
            .filter(|(_, stable)| {
                stable
                    .iter()
                    .any(|s| s.as_ref().is_none_or(|s| s.matches(twin)))
            })
            .map(|(cfg, _)| Arc::from(cfg.id.as_str()))
            .collect();
        let mut index = locked(&self.inner.configurations.reported_watch);
        if watching.is_empty() {
            index.remove(id);
        } else {
            index.insert(id.clone(), watching.into());
        }
    }

    fn forget_configured(&self, device: &DeviceId) {
        locked(&self.inner.configurations.reported_watch).remove(device);
        for t in locked(&self.inner.configurations.tallies).values_mut() {
            t.set(device, 0);
        }
    }

    /// Plans one twin, writes the change if there is one, and counts the twin as it is then.
    fn plan_device(&self, id: &DeviceId, slot: &Slot, snapshot: &Snapshot, pending: &mut Vec<Ack>) {
        let twin = {
            let g = lock(slot);
            (!g.deleted && g.is_live()).then(|| g.twin.clone())
        };
        let Some(mut twin) = twin else {
            self.forget_configured(id);
            return;
        };
        if snapshot.live.is_empty() && twin.configurations().is_empty() {
            // nothing targets it and nothing did: the common case of a hub without
            // configurations, kept cheap
            return;
        }
        let held = if snapshot.paced {
            locked(&self.inner.configurations.pacing).observe(&snapshot.live, &twin, self.now())
        } else {
            Vec::new()
        };
        if let Some(plan) = snapshot.plan(&twin, &held) {
            match self.write_plan(slot, snapshot, &held, (&twin, plan)) {
                Ok(Some((written, ack))) => {
                    twin = written;
                    pending.push(ack);
                }
                Ok(None) => {}
                Err(HubError::DeviceNotFound { .. }) => {
                    self.forget_configured(id);
                    return;
                }
                Err(e) => {
                    tracing::warn!(device = %id, error = %e, "configurations: the twin could not be changed");
                }
            }
        }
        {
            let mut tallies = locked(&self.inner.configurations.tallies);
            for (cid, cfg) in &snapshot.live {
                if let Some(t) = tallies.get_mut(cid) {
                    t.set(id, mark(cfg, &twin));
                }
            }
        }
        self.watch_reported(id, &twin, snapshot);
    }

    /// Plans the twin again under its entry's lock and writes what changes.
    fn write_plan(
        &self,
        slot: &Slot,
        snapshot: &Snapshot,
        held: &[&str],
        planned: (&Arc<Twin>, Plan),
    ) -> Result<Option<(Arc<Twin>, Ack)>, HubError> {
        let now = self.now();
        let limits = &self.inner.limits;
        let mut unchanged = false;
        let (twin, ack) = self.inner.write_then(slot, |e| {
            if !e.is_live() {
                return Err(HubError::not_found(e.device.device_id.as_str()));
            }
            let (seen, plan) = planned;
            // the plan made outside the lock holds while the twin is the one it was made on
            let plan = if Arc::ptr_eq(seen, &e.twin) {
                Some(plan)
            } else {
                snapshot.plan(&e.twin, held)
            };
            let Some((statuses, desired, actor)) = plan else {
                // changed meanwhile into what the plan wanted: the write is a no-op
                unchanged = true;
                return Ok((e.twin.clone(), None));
            };
            let twin = Arc::make_mut(&mut e.twin);
            let change = match desired {
                Some(patch) => {
                    let version = twin.patch_desired(&patch, now, limits)?;
                    Some(DesiredChange {
                        version,
                        body: patch,
                    })
                }
                None => None,
            };
            let doc = Doc::from_value(&statuses).map_err(|e| HubError::Internal {
                message: format!("a configurations member could not be stored: {e}"),
            })?;
            twin.set_configurations(doc);
            e.share_identity();
            let visible = e.twin.clone();
            let hub = self.clone();
            let then = OnDurable::new(move || {
                if let Some(change) = change {
                    hub.notify_desired(&visible.device_id, change);
                }
                hub.emit_twin_changed(&visible, actor);
            });
            Ok((e.twin.clone(), Some(then)))
        })?;
        if unchanged {
            return Ok(None);
        }
        Ok(Some((twin, ack)))
    }
}

/// The instant of the runtime's clock for `t` on the hub's clock, at most [`PACING_CHECK`]
/// away (a hub clock that is not the wall clock is checked at that pace).
fn wake_at(hub: &Hub, t: Timestamp) -> tokio::time::Instant {
    let now = hub.now();
    let ms = t.unix_millis().saturating_sub(now.unix_millis()).max(0);
    let wait = std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    tokio::time::Instant::now() + wait.min(PACING_CHECK)
}

/// Takes the events waiting on the subscription.
fn drain(events: &mut broadcast::Receiver<HubEvent>, work: &mut Work) {
    crate::hub::events::drain_events(events, |e| {
        work.event(e);
    });
}

/// Waits for the writes in flight.
async fn settle(pending: &mut Vec<Ack>) -> Result<(), HubError> {
    for ack in pending.drain(..) {
        ack.await?;
    }
    Ok(())
}
