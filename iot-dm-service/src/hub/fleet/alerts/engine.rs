//! The alert task: the only writer of alerts. It keeps, per rule, a core
//! [`RuleWatch`] (the scope's devices and those matching the condition), fed one twin at a
//! time from the hub's events, and writes an alert when a watch raises or clears. A rule
//! scoped by a job is fed that job's statistics from its `job.progress` events instead.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use tokio::sync::{broadcast, mpsc};

use iot_dm_core::alert::{Alert, AlertRule, RuleWatch, Scope, Transition};
use iot_dm_core::identity::DeviceId;
use iot_dm_core::job::DeviceJobStatistics;
use iot_dm_core::twin::Twin;

use super::{StoredAlert, TICK};
use crate::api::JobApi;
use crate::hub::engine::{lock, Slot};
use crate::hub::events::{Actor, AlertChange, HubEvent};
use crate::hub::fleet::pace::DRAIN_EVERY;
use crate::hub::{Hub, Inner};

/// One rule as the task watches it.
struct Watched {
    watch: RuleWatch,
    /// The ETag of the scope's configuration when last counted (`None`: no such
    /// configuration, or no configuration scope).
    scope_etag: Option<String>,
    /// Whether a device's own reported patch can change the rule's count for it (its
    /// condition, or its scope's target, reads reported properties or system fields).
    reads_reported: bool,
    /// Whether a device's own reported patch can move it in or out of the scope.
    scope_reads_reported: bool,
}

/// What the task has to do next round.
#[derive(Default)]
struct Work {
    /// Rules to count afresh (created, replaced, deleted).
    rules: BTreeSet<String>,
    /// Every rule to count afresh (events were missed).
    all: bool,
    /// Devices to match again.
    devices: BTreeSet<DeviceId>,
    /// Devices whose only changes are their own reported patches (not in `devices`).
    reported: BTreeSet<DeviceId>,
    /// Jobs whose statistics moved, as their latest `job.progress` event has them.
    jobs: BTreeMap<String, DeviceJobStatistics>,
}

impl Work {
    /// Takes an event; `false` once the hub's events have ended.
    fn event(&mut self, e: Result<HubEvent, broadcast::error::RecvError>) -> bool {
        let e = match e {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Closed) => return false,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    "alerts: events missed, every rule is counted afresh"
                );
                self.all = true;
                return true;
            }
        };
        if let HubEvent::TwinChanged {
            device_id,
            actor: Actor::Device,
            ..
        } = e
        {
            if !self.devices.contains(&device_id) {
                self.reported.insert(device_id);
            }
            return true;
        }
        if let HubEvent::JobProgress {
            job_id, statistics, ..
        } = e
        {
            self.jobs.insert(job_id, statistics);
            return true;
        }
        if let HubEvent::TwinChanged { device_id, .. }
        | HubEvent::IdentityCreated { device_id }
        | HubEvent::IdentityUpdated { device_id }
        | HubEvent::IdentityDeleted { device_id }
        | HubEvent::Connected { device_id }
        | HubEvent::Disconnected { device_id, .. }
        | HubEvent::Lifecycle { device_id, .. } = e
        {
            self.reported.remove(&device_id);
            self.devices.insert(device_id);
        }
        true
    }

    fn has_devices(&self) -> bool {
        !self.devices.is_empty() || !self.reported.is_empty()
    }
}

pub(super) fn spawn(inner: &Arc<Inner>, signals: mpsc::UnboundedReceiver<String>) {
    let events = inner.events.subscribe();
    let weak = Arc::downgrade(inner);
    tokio::spawn(run(weak, signals, events));
}

async fn run(
    inner: Weak<Inner>,
    mut signals: mpsc::UnboundedReceiver<String>,
    mut events: broadcast::Receiver<HubEvent>,
) {
    let mut watches: BTreeMap<String, Watched> = BTreeMap::new();
    // the count on open
    let mut work = Work {
        all: true,
        ..Work::default()
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            s = signals.recv() => match s {
                Some(id) => { work.rules.insert(id); }
                None => return,
            },
            e = events.recv() => if !work.event(e) { return },
            _ = tick.tick() => {}
        }
        while let Ok(id) = signals.try_recv() {
            work.rules.insert(id);
        }
        crate::hub::events::drain_events(&mut events, |e| {
            work.event(e);
        });
        let Some(inner) = inner.upgrade() else { return };
        let hub = Hub { inner };
        if hub.is_closed() {
            return;
        }
        let round = std::mem::take(&mut work);
        let devices_only = round.rules.is_empty() && !round.all && round.has_devices();
        let started = tokio::time::Instant::now();
        hub.alert_round(&mut watches, round, &mut events, &mut work)
            .await;
        drop(hub);
        if devices_only {
            // twins changing all the time: gather their events for a moment, so that a twin
            // changed many times is matched once (a rule's change ends the wait)
            let until = started + crate::hub::fleet::pace::gap_after(started.elapsed());
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    s = signals.recv() => match s {
                        Some(id) => { work.rules.insert(id); break; }
                        None => return,
                    },
                    e = events.recv() => if !work.event(e) { return },
                }
            }
        }
    }
}

/// The twin behind a slot, if the device is live.
fn live_twin(slot: &Slot) -> Option<Arc<Twin>> {
    let g = lock(slot);
    (!g.deleted && g.is_live()).then(|| g.twin.clone())
}

impl Hub {
    /// Whether `twin` is in the rule's scope.
    fn in_alert_scope(&self, rule: &AlertRule, twin: &Twin) -> bool {
        match &rule.scope {
            Scope::Configuration(id) => {
                let records = self.inner.configurations.records.read();
                records.get(id).is_some_and(|c| c.0.targets(twin))
            }
            Scope::All => true,
            // a job scope counts the job's statistics, no twin
            _ => false,
        }
    }

    /// Whether the rule's scope is a configuration whose target reads reported properties.
    fn scope_reads_reported(&self, rule: &AlertRule) -> bool {
        match &rule.scope {
            Scope::Configuration(id) => {
                let records = self.inner.configurations.records.read();
                records.get(id).is_some_and(|c| {
                    c.0.target
                        .as_ref()
                        .is_some_and(|t| t.reads().reported_change_matters())
                })
            }
            _ => false,
        }
    }

    fn scope_etag(&self, rule: &AlertRule) -> Option<String> {
        match &rule.scope {
            Scope::Configuration(id) => {
                let records = self.inner.configurations.records.read();
                records.get(id).map(|c| c.0.etag.clone())
            }
            _ => None,
        }
    }

    /// A job's device statistics as last made durable (zero until it starts), `None` when
    /// there is no such job.
    async fn job_statistics(&self, job_id: &str) -> Option<DeviceJobStatistics> {
        match self.get_job(job_id).await {
            Ok(job) => Some(job.device_job_statistics.unwrap_or_default()),
            Err(e) => {
                if !matches!(e, crate::hub::HubError::JobNotFound { .. }) {
                    tracing::debug!(job = %job_id, error = %e, "alerts: a job could not be read");
                }
                None
            }
        }
    }

    /// One round: rules counted afresh, devices matched again, `forSeconds` timed, and the
    /// alerts that raise or clear written.
    async fn alert_round(
        &self,
        watches: &mut BTreeMap<String, Watched>,
        mut work: Work,
        events: &mut broadcast::Receiver<HubEvent>,
        later: &mut Work,
    ) {
        let now = self.now();
        let rules: BTreeMap<String, Arc<AlertRule>> = self
            .inner
            .alerts
            .rules
            .read()
            .iter()
            .map(|(k, s)| (k.clone(), s.0.clone()))
            .collect();
        if work.all {
            work.rules.extend(rules.keys().cloned());
            work.rules.extend(watches.keys().cloned());
        }
        // a configuration scope that changed (created, re-targeted, deleted)
        for (id, w) in watches.iter() {
            if self.scope_etag(w.watch.rule()) != w.scope_etag {
                work.rules.insert(id.clone());
            }
        }
        let mut out: Vec<(Arc<AlertRule>, Transition)> = Vec::new();
        for id in &work.rules {
            let old = watches.remove(id);
            let Some(rule) = rules.get(id) else {
                // deleted: its active alert clears
                if let Some(w) = old.filter(|w| w.watch.evaluator().is_active()) {
                    let rule = Arc::new(w.watch.rule().clone());
                    let t = Transition::Cleared {
                        at: now,
                        counts: w.watch.counts(),
                        raised_at: now,
                    };
                    out.push((rule, t));
                }
                continue;
            };
            let mut watch = RuleWatch::new((**rule).clone());
            if let Some(active) = self.inner.alerts.active_of(id) {
                watch = watch.resume_raised(active.raised_at);
            }
            let scope_etag = self.scope_etag(rule);
            let raised = match watch.job_id().map(str::to_string) {
                Some(job_id) => {
                    let stats = self.job_statistics(&job_id).await;
                    watch.observe_job(stats.as_ref(), now)
                }
                None => {
                    for entry in self.inner.state.devices.iter() {
                        let twin = live_twin(entry.value());
                        let in_scope = twin.as_ref().is_some_and(|t| self.in_alert_scope(rule, t));
                        watch.count(entry.key(), twin.as_deref(), in_scope);
                    }
                    watch.evaluate(now)
                }
            };
            tracing::debug!(rule = %id, counts = ?watch.counts(), "alerts: rule counted");
            if let Some(t) = raised {
                out.push((rule.clone(), t));
            }
            let scope_reads_reported = self.scope_reads_reported(rule);
            let reads_reported =
                rule.condition.reads().reported_change_matters() || scope_reads_reported;
            watches.insert(
                id.clone(),
                Watched {
                    watch,
                    scope_etag,
                    reads_reported,
                    scope_reads_reported,
                },
            );
        }
        let all = work.devices.iter().map(|d| (d, false));
        let reported = work.reported.iter().map(|d| (d, true));
        for (n, (device, only_reported)) in all.chain(reported).enumerate() {
            if n % DRAIN_EVERY == DRAIN_EVERY - 1 {
                crate::hub::events::drain_events(events, |e| {
                    later.event(e);
                });
            }
            if only_reported && !watches.values().any(|w| w.reads_reported) {
                continue;
            }
            let twin = self
                .inner
                .state
                .slot(device.as_str())
                .ok()
                .and_then(|slot| live_twin(&slot));
            for w in watches
                .values_mut()
                .filter(|w| !only_reported || w.reads_reported)
            {
                let in_scope = if only_reported && !w.scope_reads_reported && twin.is_some() {
                    // a device's own patch leaves its scope as it was
                    w.watch.is_in_scope(device)
                } else {
                    twin.as_ref()
                        .is_some_and(|t| self.in_alert_scope(w.watch.rule(), t))
                };
                if let Some(t) = w.watch.observe(device, twin.as_deref(), in_scope, now) {
                    out.push((Arc::new(w.watch.rule().clone()), t));
                }
            }
        }
        for (job_id, stats) in &work.jobs {
            for w in watches.values_mut() {
                if w.watch.job_id() != Some(job_id.as_str()) {
                    continue;
                }
                if let Some(t) = w.watch.observe_job(Some(stats), now) {
                    out.push((Arc::new(w.watch.rule().clone()), t));
                }
            }
        }
        for w in watches.values_mut() {
            if let Some(t) = w.watch.tick(now) {
                out.push((Arc::new(w.watch.rule().clone()), t));
            }
        }
        for (rule, t) in out {
            self.write_transition(&rule, t).await;
        }
    }

    /// Writes the alert a raise creates or a clear closes.
    async fn write_transition(&self, rule: &AlertRule, t: Transition) {
        let (change, alert) = match t {
            Transition::Raised { at, counts } => {
                let id = format!("{}-{}", rule.id, at.unix_millis());
                tracing::info!(rule = %rule.id, alert = %id, ?counts, "alert raised");
                (AlertChange::Raised, Alert::raised(&id, rule, at, counts))
            }
            Transition::Cleared { at, counts, .. } => {
                let Some(mut alert) = self.inner.alerts.active_of(&rule.id) else {
                    return;
                };
                tracing::info!(rule = %rule.id, alert = %alert.id, ?counts, "alert cleared");
                alert.clear(at, counts);
                (AlertChange::Cleared, alert)
            }
            _ => return,
        };
        let event = HubEvent::Alert {
            change,
            alert: Box::new(alert.clone()),
        };
        let written = self
            .inner
            .alerts
            .history
            .put_with(&self.inner.committer, |_| Ok(StoredAlert(alert)), |_| ())
            .await;
        match written {
            Ok(()) => self.emit(event),
            Err(e) => {
                tracing::warn!(rule = %rule.id, error = %e, "alerts: an alert could not be written")
            }
        }
    }
}
