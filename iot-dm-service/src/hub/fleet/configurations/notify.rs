//! `configuration.metrics` events: after a round of the configuration task, each
//! configuration whose counts moved since its last event gets one, at most
//! [`JOB_PROGRESS_EVERY`] apart (a change held back is published when that time has passed:
//! [`Metrics::publish`] says when to call again); a new configuration's first counts are
//! published at once.

use std::collections::HashMap;

use tokio::time::Instant;

use super::tally::Counts;
use crate::hub::engine::locked;
use crate::hub::{Hub, HubEvent, JOB_PROGRESS_EVERY};

/// What was last published per configuration.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    sent: HashMap<String, (Counts, Instant)>,
}

impl Metrics {
    /// Publishes the configurations whose counts moved; returns when a change held back is
    /// due, if one is.
    pub(super) fn publish(&mut self, hub: &Hub) -> Option<Instant> {
        let c = &hub.inner.configurations;
        let now = Instant::now();
        let counts: Vec<(String, Counts)> = locked(&c.tallies)
            .iter()
            .map(|(id, t)| (id.clone(), t.counts()))
            .collect();
        self.sent
            .retain(|id, _| counts.iter().any(|(live, _)| live == id));
        let mut due: Option<Instant> = None;
        for (id, n) in counts {
            match self.sent.get(&id) {
                Some((last, _)) if *last == n => continue,
                Some((_, at)) if now.duration_since(*at) < JOB_PROGRESS_EVERY => {
                    let at = *at + JOB_PROGRESS_EVERY;
                    due = Some(due.map_or(at, |d| d.min(at)));
                    continue;
                }
                _ => {}
            }
            let Some(cfg) = c.records.read().get(&id).map(|s| s.0.clone()) else {
                continue;
            };
            let metrics = cfg
                .metric_queries
                .iter()
                .zip(n.metrics)
                .map(|((name, _), v)| (name.clone(), v))
                .collect();
            hub.emit(HubEvent::ConfigurationMetrics {
                configuration_id: id.clone(),
                targeted: n.targeted,
                applied: n.applied,
                metrics,
            });
            self.sent.insert(id, (n, now));
        }
        due
    }
}
