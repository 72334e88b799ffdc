//! Configurations with a `rolloutPolicy` (core's
//! [`ConfigurationRollout`](iot_dm_core::configuration::ConfigurationRollout)): which of the
//! twins a configuration targets it has admitted, paced by core's [`Rollout`], and the durable
//! pause and abort state.
//!
//! The configuration task is the only user. It shows every twin it plans to
//! [`Pacing::observe`] first: a targeted twin not admitted yet joins the configuration's
//! rollout and is held (its status `targeted`, the configuration out of the running for it).
//! After each round [`Pacing::advance`] admits the twins the policy lets start now (rate,
//! window in the twin's zone, gate), which the task then plans again, and checks the abort
//! criteria.
//!
//! What survives a restart: the twins a configuration was applied to (their status is on the
//! twin, and an applied twin is admitted again when first seen), and the pause and abort state
//! (stored under `configuration-rollout/`). The rate's memory of the last minute does not: a
//! restart may admit up to one minute's worth at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::configuration::{Configuration, ConfigurationStatus, RolloutProgress};
use iot_dm_core::identity::DeviceId;
use iot_dm_core::rollout::{DeviceIndex, Outcome, Rollout, RolloutPolicy, RolloutStatus};
use iot_dm_core::twin::Twin;

use super::tally::Counts;
use crate::hub::engine::MetaRecord;
use crate::hub::error::HubError;

/// The most twins one configuration admits in one round.
const MAX_ADMIT: usize = 8192;

/// The durable part of a configuration's rollout: paused by an operator, aborted (and the
/// alert that says so).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PacingRecord {
    pub(crate) id: String,
    pub(crate) paused: bool,
    pub(crate) abort: Option<String>,
    pub(crate) alert: Option<String>,
}

impl MetaRecord for PacingRecord {
    const PREFIX: &'static str = "configuration-rollout/";
    const WHAT: &'static str = "configuration rollout";

    fn name(&self) -> &str {
        &self.id
    }

    fn encode(&self) -> Result<Vec<u8>, HubError> {
        let v = json!({
            "id": self.id, "paused": self.paused, "abort": self.abort, "alert": self.alert,
        });
        serde_json::to_vec(&v).map_err(|e| HubError::Internal {
            message: format!(
                "configuration rollout {} could not be encoded: {e}",
                self.id
            ),
        })
    }

    fn decode(name: &str, bytes: &[u8]) -> Result<Self, HubError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| HubError::Internal {
            message: format!("stored configuration rollout {name} is not JSON: {e}"),
        })?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(PacingRecord {
            id: name.to_string(),
            paused: v.get("paused").and_then(Value::as_bool).unwrap_or(false),
            abort: text("abort"),
            alert: text("alert"),
        })
    }
}

/// One configuration's rollout.
struct Paced {
    /// What the rollout was built from: the policy (empty: build it again).
    key: String,
    /// The configuration's creation: another one means another configuration of that id.
    created: i64,
    /// The metric criteria wait until none holds: set on a resume after an abort, so that a
    /// criterion aborts when it starts to hold, not again because it still does.
    disarmed: bool,
    rollout: Rollout,
    index: HashMap<DeviceId, DeviceIndex>,
    ids: Vec<DeviceId>,
    admitted: HashSet<DeviceId>,
    paused: bool,
    abort: Option<String>,
}

impl Paced {
    fn progress(&self) -> RolloutProgress {
        let s = self.rollout.stats();
        let state = if self.abort.is_some() {
            "aborted"
        } else if self.paused || s.status == RolloutStatus::CanaryHold {
            "paused"
        } else {
            "running"
        };
        let mut p = RolloutProgress::default();
        p.state = state.to_string();
        p.admitted = self.admitted.len() as u64;
        p.pending = s.pending;
        p.waiting_for_window = s.waiting_for_window;
        p.gated = s.gated;
        p.verifying = s.verifying;
        p.timed_out = s.timed_out;
        p.utc_fallback = s.utc_fallback;
        p.abort_reason = self.abort.clone();
        p
    }
}

fn key_of(cfg: &Configuration) -> Option<String> {
    cfg.rollout.as_ref().map(|r| r.to_value().to_string())
}

/// An abort found by [`Pacing::advance`].
#[derive(Debug)]
pub(crate) struct Aborted {
    pub(crate) configuration: String,
    pub(crate) reason: String,
    /// The twins matching the criterion then, and the twins it was measured over.
    pub(crate) matching: u64,
    pub(crate) scope: u64,
}

/// What [`Pacing::advance`] did.
#[derive(Debug, Default)]
pub(crate) struct Advance {
    /// Twins admitted: plan them again.
    pub(crate) admitted: Vec<DeviceId>,
    /// Configurations that aborted in this call.
    pub(crate) aborted: Vec<Aborted>,
    /// When to call again without input.
    pub(crate) wake: Option<Timestamp>,
}

/// Every configuration's rollout; see the [module docs](self).
#[derive(Default)]
pub(crate) struct Pacing {
    by_id: HashMap<String, Paced>,
}

impl Pacing {
    /// Whether `id` is paced.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Brings the rollouts in line with the live configurations: new ones, changed policies
    /// (rebuilt, keeping the twins admitted), deleted ones. A rebuilt rollout has no twins
    /// until a pass over every twin shows them.
    pub(crate) fn sync(
        &mut self,
        live: &BTreeMap<String, Arc<Configuration>>,
        records: &BTreeMap<String, PacingRecord>,
        now: Timestamp,
    ) {
        self.by_id
            .retain(|id, _| live.get(id).is_some_and(|c| c.rollout.is_some()));
        for (id, cfg) in live {
            let (Some(key), Some(r)) = (key_of(cfg), cfg.rollout.as_ref()) else {
                continue;
            };
            if self.by_id.get(id).is_some_and(|p| p.key == key) {
                continue;
            }
            let record = records.get(id).cloned().unwrap_or_default();
            let (rollout, broken) = match Rollout::new(r.policy.clone(), None, now) {
                Ok(r) => (r, None),
                Err(e) => {
                    // checked when stored: a policy that no longer compiles holds every twin
                    tracing::warn!(configuration = %id, error = %e, "configurations: the rollout policy does not compile");
                    let r = Rollout::new(RolloutPolicy::default(), None, now)
                        .map_err(|_| ())
                        .ok();
                    match r {
                        Some(r) => (r, Some(format!("the rollout policy does not compile: {e}"))),
                        None => continue,
                    }
                }
            };
            let created = cfg.created_time_utc.ticks();
            let (admitted, disarmed) = self
                .by_id
                .remove(id)
                .filter(|old| old.created == created)
                .map(|old| (old.admitted, old.disarmed))
                .unwrap_or_default();
            let mut p = Paced {
                key,
                created,
                disarmed,
                rollout,
                index: HashMap::new(),
                ids: Vec::new(),
                admitted,
                paused: record.paused,
                abort: record.abort.or(broken),
            };
            if p.paused || p.abort.is_some() {
                p.rollout.pause();
            }
            self.by_id.insert(id.clone(), p);
        }
    }

    /// Shows `twin` to every paced configuration (`live` holds them) and returns those that
    /// target it but have not admitted it: they are held back on this twin.
    pub(crate) fn observe<'a>(
        &mut self,
        live: &'a BTreeMap<String, Arc<Configuration>>,
        twin: &Twin,
        now: Timestamp,
    ) -> Vec<&'a str> {
        let mut held = Vec::new();
        for (id, p) in self.by_id.iter_mut() {
            let Some((id, cfg)) = live.get_key_value(id) else {
                continue;
            };
            let targeted = cfg.targets(twin);
            let device = &twin.device_id;
            if let Some(&i) = p.index.get(device) {
                // a gate that now holds, a success condition that now holds
                let _ = p.rollout.on_twin_changed(i, twin, now);
            } else if targeted && !p.admitted.contains(device) {
                if super::tally::status_of(twin, id) == Some(ConfigurationStatus::Applied) {
                    // applied before the hub restarted
                    p.admitted.insert(device.clone());
                } else if let Ok(i) = p.rollout.add_device(twin, now) {
                    p.index.insert(device.clone(), i);
                    p.ids.push(device.clone());
                }
            }
            if targeted && !p.admitted.contains(device) {
                held.push(id.as_str());
            }
        }
        held
    }

    /// Admits what the policies allow at `now`, and checks the abort criteria on `counts`.
    pub(crate) fn advance(
        &mut self,
        live: &BTreeMap<String, Arc<Configuration>>,
        counts: impl Fn(&str) -> Option<Counts>,
        now: Timestamp,
    ) -> Advance {
        let mut out = Advance::default();
        for (id, p) in self.by_id.iter_mut() {
            let Some(cfg) = live.get(id) else {
                continue;
            };
            for s in p.rollout.poll_start(now, MAX_ADMIT) {
                let Some(device) = p.ids.get(s.device.0 as usize) else {
                    continue;
                };
                p.admitted.insert(device.clone());
                // the content is written as the twin is planned again: a success condition
                // decides from there
                let _ = p
                    .rollout
                    .on_outcome(s.device, s.attempt, Outcome::Succeeded, now);
                out.admitted.push(device.clone());
            }
            while p.rollout.poll_change().is_some() {}
            if p.disarmed && found_abort(cfg, None, counts(id)).is_none() {
                p.disarmed = false;
            }
            if p.abort.is_none() {
                let core = (!p.disarmed).then_some(&p.rollout);
                if let Some(a) = found_abort(cfg, core, counts(id).filter(|_| !p.disarmed)) {
                    p.abort = Some(a.reason.clone());
                    p.rollout.pause();
                    out.aborted.push(Aborted {
                        configuration: id.clone(),
                        ..a
                    });
                }
            }
            if let Some(t) = p.rollout.next_wakeup() {
                out.wake = Some(out.wake.map_or(t, |w| w.min(t)));
            }
        }
        out
    }

    /// Pauses (`true`) or resumes a configuration's rollout. Resuming an aborted one starts
    /// it again: `false` when that needs a pass over every twin.
    pub(crate) fn set_paused(&mut self, id: &str, paused: bool) -> bool {
        let Some(p) = self.by_id.get_mut(id) else {
            return true;
        };
        p.paused = paused;
        if paused {
            p.rollout.pause();
            return true;
        }
        if p.abort.take().is_some() || p.rollout.abort_info().is_some() {
            // a fresh rollout for the twins not admitted: built on the next sync
            p.key.clear();
            p.disarmed = true;
            return false;
        }
        p.rollout.resume();
        true
    }

    /// Where a configuration's rollout stands.
    pub(crate) fn progress(&self, id: &str) -> Option<RolloutProgress> {
        self.by_id.get(id).map(Paced::progress)
    }
}

/// The first abort criterion that holds: core's (success conditions timed out; `rollout`) or
/// one over a custom metric (`counts`).
fn found_abort(
    cfg: &Configuration,
    rollout: Option<&Rollout>,
    counts: Option<Counts>,
) -> Option<Aborted> {
    if let Some(info) = rollout.and_then(Rollout::abort_info) {
        let finished = info.finished.max(1);
        return Some(Aborted {
            configuration: String::new(),
            reason: format!(
                "rolloutPolicy.abort.criteria[{}] held: {} of {} finished twins failed or timed out",
                info.criterion_index,
                info.failed + info.timed_out,
                finished
            ),
            matching: info.failed + info.timed_out,
            scope: info.finished,
        });
    }
    let counts = counts?;
    let r = cfg.rollout.as_ref()?;
    for m in &r.metric_aborts {
        let Some(i) = cfg.metric_queries.iter().position(|(n, _)| *n == m.metric) else {
            continue;
        };
        let matching = counts.metrics.get(i).copied().unwrap_or(0);
        if m.holds(matching, counts.applied) {
            return Some(Aborted {
                configuration: String::new(),
                reason: format!(
                    "metric {:?} matches {matching} of the {} twins applied, more than {}%",
                    m.metric, counts.applied, m.threshold_percentage
                ),
                matching,
                scope: counts.applied,
            });
        }
    }
    None
}
