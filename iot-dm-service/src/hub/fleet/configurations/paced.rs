//! The hub's side of configurations with a rollout policy: admitting twins after a round,
//! writing an abort (the durable state, then an alert), and pause and resume.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iot_dm_core::alert::{Alert, Counts as AlertCounts, Severity};
use iot_dm_core::configuration::Configuration;

use super::pacing::{Aborted, Advance};
use super::tally::Counts;
use super::Signal;
use crate::hub::engine::locked;
use crate::hub::error::HubError;
use crate::hub::Hub;

/// The alert source of a configuration's rollout (no rule id has a `.`).
pub(crate) fn alert_source(id: &str) -> String {
    format!("rollout.{id}")
}

impl Hub {
    /// Admits what the rollouts allow now and checks their abort criteria.
    pub(super) fn pace(&self, live: &BTreeMap<String, Arc<Configuration>>) -> Advance {
        let c = &self.inner.configurations;
        let counts: HashMap<String, Counts> = {
            let tallies = locked(&c.tallies);
            let pacing = locked(&c.pacing);
            tallies
                .iter()
                .filter(|(id, _)| pacing.has(id))
                .map(|(id, t)| (id.clone(), t.counts()))
                .collect()
        };
        let now = self.now();
        locked(&c.pacing).advance(live, |id| counts.get(id).copied(), now)
    }

    /// Makes each abort durable, then raises its alert.
    pub(super) async fn write_aborts(&self, aborted: Vec<Aborted>) -> Result<(), HubError> {
        let c = &self.inner.configurations;
        for a in aborted {
            let now = self.now();
            let alert = Alert::raised_by_hub(
                &alert_source(&a.configuration),
                Severity::Critical,
                &format!(
                    "configuration {} paused its rollout: {}",
                    a.configuration, a.reason
                ),
                now,
                AlertCounts {
                    matching: a.matching,
                    scope: a.scope,
                },
            );
            let alert_id = alert.id.clone();
            c.pacing_records
                .put_with(
                    &self.inner.committer,
                    |items| {
                        let mut r = items.get(&a.configuration).cloned().unwrap_or_default();
                        r.id = a.configuration.clone();
                        r.abort = Some(a.reason.clone());
                        r.alert = Some(alert_id);
                        Ok(r)
                    },
                    |_| (),
                )
                .await?;
            tracing::warn!(configuration = %a.configuration, reason = %a.reason, "configuration rollout aborted");
            self.raise_hub_alert(alert).await?;
        }
        Ok(())
    }

    /// Pauses or resumes the rollout of a configuration with a rollout policy, once durable,
    /// and waits for the configuration task to act on it.
    pub(super) async fn set_configuration_paused(
        &self,
        id: &str,
        paused: bool,
    ) -> Result<Configuration, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let c = &self.inner.configurations;
        let cfg = c.stored(id)?;
        if cfg.rollout.is_none() {
            return Err(HubError::invalid(
                "rolloutPolicy",
                format!("configuration {id} has no rollout policy to pause or resume"),
            ));
        }
        let mut cleared = None;
        c.pacing_records
            .put_with(
                &self.inner.committer,
                |items| {
                    let mut r = items.get(id).cloned().unwrap_or_default();
                    r.id = id.to_string();
                    r.paused = paused;
                    if !paused {
                        // resuming after an abort starts the rollout again
                        r.abort = None;
                        cleared = r.alert.take();
                    }
                    Ok(r)
                },
                |_| (),
            )
            .await?;
        if let Some(alert) = cleared {
            let counts = self.abort_counts(&cfg);
            self.clear_hub_alert(&alert, counts).await?;
        }
        let generation = c.signal_now(|generation| Signal::Pacing {
            generation,
            id: id.to_string(),
            paused,
        });
        c.reached(generation).await?;
        tracing::info!(configuration = %id, paused, "configuration rollout paused or resumed");
        let cfg = c.stored(id)?;
        Ok(c.with_results(&cfg))
    }

    /// The counts an abort alert of `cfg` clears with: its first metric criterion's metric
    /// over the twins applied.
    fn abort_counts(&self, cfg: &Configuration) -> AlertCounts {
        let counts = locked(&self.inner.configurations.tallies)
            .get(&cfg.id)
            .map(|t| t.counts())
            .unwrap_or_default();
        let matching = cfg
            .rollout
            .as_ref()
            .and_then(|r| r.metric_aborts.first())
            .and_then(|m| cfg.metric_queries.iter().position(|(n, _)| *n == m.metric))
            .and_then(|i| counts.metrics.get(i).copied())
            .unwrap_or(0);
        AlertCounts {
            matching,
            scope: counts.applied,
        }
    }

    /// After a configuration is deleted: its rollout state goes, and its abort alert clears.
    pub(super) async fn forget_pacing(&self, cfg: &Configuration) -> Result<(), HubError> {
        let c = &self.inner.configurations;
        let record = c.pacing_records.read().get(&cfg.id).cloned();
        let Some(record) = record else {
            return Ok(());
        };
        if let Some(alert) = &record.alert {
            self.clear_hub_alert(alert, self.abort_counts(cfg)).await?;
        }
        c.pacing_records
            .delete_with(&self.inner.committer, &cfg.id, |_, _| Ok(()))
            .await?;
        Ok(())
    }
}
