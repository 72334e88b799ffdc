//! IoT Hub's automatic device configurations over the fleet: every twin a configuration's
//! target matches gets the content of the configuration that wins for it (core's
//! [`plan_twin`](iot_dm_core::configuration::plan_twin)), and each configuration counts, as it
//! goes, the twins it targets, the twins it is applied to, and the twins each custom metric
//! query matches.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the stored records, [`ConfigurationApi`] for the hub |
//! | `engine.rs` | the hub's configuration task: applies configurations, keeps the counts |
//! | `notify.rs` | the `configuration.metrics` events of the hub's event stream |
//! | `tally.rs` | each twin's mark per configuration and the counts they add up to |
//! | `pacing.rs` | configurations with a rollout policy: the twins each has admitted |
//! | `paced.rs` | the hub's side of those: aborts (and their alert), pause and resume |
//!
//! **When it applies.** A create, update or delete returns once the configuration record is
//! durable; the configuration task then goes over every twin at once (in the background), and
//! [`Hub::configurations_applied`] resolves when it has. The counts read while a pass runs are
//! those of the twins gone over so far. A twin change (tags, reported properties, a new or
//! deleted device, a lifecycle move) is seen through the hub's event stream and that twin
//! alone is planned again, within milliseconds. Twin changes made by the task itself are not
//! planned again (a configuration whose target reads desired properties it writes would
//! otherwise flip for ever).
//!
//! **When a configuration stops applying** to a twin (deleted, re-targeted, out-ranked), the
//! paths it set are removed from the twin's desired properties, and the next configuration in
//! line, if any, is written instead. Should the hub stop between a delete and the end of the
//! pass that follows it, the twins not yet gone over keep the deleted configuration's settings
//! (its status is dropped when they are next planned).
//!
//! **With a rollout policy** (ours; core's
//! [`ConfigurationRollout`](iot_dm_core::configuration::ConfigurationRollout)) a
//! configuration competes for a twin it targets only once its rollout has admitted the twin
//! (rate, window, gate); until then the twin records it as `targeted`. An abort criterion that
//! holds pauses it and raises an alert (source `rollout.<id>`) until it is resumed.
//!
//! **Durable.** Configurations are stored with the hub's other named records (`configuration/`
//! prefix); the twins' `configurations` member is part of the twin record. On open the task
//! goes over every twin once to rebuild the counts (reads wait for that pass) and to finish
//! any application a stop interrupted.
//!
//! Limits: at most [`HubBuilder::max_configurations`](crate::hub::HubBuilder::max_configurations)
//! configurations (default [`DEFAULT_MAX_CONFIGURATIONS`], IoT Hub's 100; past it `413101
//! ConfigurationCountLimitExceeded`), at most five custom metrics each.

mod engine;
mod notify;
mod paced;
mod pacing;
mod tally;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_paced;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use iot_dm_core::configuration::{
    desired_change, Configuration, QueriesTest, QueriesTestResult, APPLIED_COUNT,
    DEFAULT_MAX_CONFIGURATIONS, TARGETED_COUNT,
};
use iot_dm_core::twin::Twin;

use crate::api::ConfigurationApi;
use crate::hub::engine::{locked, MetaCollection, MetaRecord};
use crate::hub::error::HubError;
use crate::hub::{Hub, Inner};
use crate::store::Store;

pub(crate) use tally::Tally;

/// A stored configuration.
#[derive(Debug, Clone)]
pub(crate) struct Stored(pub(crate) Arc<Configuration>);

impl MetaRecord for Stored {
    const PREFIX: &'static str = "configuration/";
    const WHAT: &'static str = "configuration";

    fn name(&self) -> &str {
        &self.0.id
    }

    fn encode(&self) -> Result<Vec<u8>, HubError> {
        serde_json::to_vec(&self.0.to_json()).map_err(|e| HubError::Internal {
            message: format!("configuration {} could not be encoded: {e}", self.0.id),
        })
    }

    fn decode(name: &str, bytes: &[u8]) -> Result<Self, HubError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| HubError::Internal {
            message: format!("stored configuration {name} is not JSON: {e}"),
        })?;
        Ok(Stored(Arc::new(Configuration::from_stored(&v)?)))
    }
}

/// What the API tells the configuration task.
#[derive(Debug)]
pub(crate) enum Signal {
    /// A configuration was created or updated: go over every twin.
    Changed { generation: u64 },
    /// A configuration was deleted: go over every twin, removing what it set.
    Deleted {
        generation: u64,
        configuration: Arc<Configuration>,
    },
    /// A configuration's rollout was paused or resumed (durably): act on it.
    Pacing {
        generation: u64,
        id: String,
        paused: bool,
    },
}

/// The hub's configurations: the records, the counts the task keeps, the way to reach it.
pub(crate) struct Configurations {
    pub(crate) max: usize,
    pub(crate) records: MetaCollection<Stored>,
    /// Per configuration id, what the task counted.
    pub(crate) tallies: Mutex<HashMap<String, Tally>>,
    /// Deleted configurations whose content may still be on twins, until the pass after the
    /// delete is over.
    pub(crate) retired: Mutex<HashMap<String, Arc<Configuration>>>,
    /// Per twin, the configurations whose custom metrics its device's own patches can move
    /// (the task's; see `engine.rs`).
    pub(crate) reported_watch: Mutex<HashMap<iot_dm_core::identity::DeviceId, Arc<[Arc<str>]>>>,
    /// The rollouts of configurations with a rollout policy (the task's).
    pacing: Mutex<pacing::Pacing>,
    /// Their durable pause and abort state.
    pacing_records: MetaCollection<pacing::PacingRecord>,
    signals: mpsc::UnboundedSender<Signal>,
    /// The last generation asked of the task (1 is the pass on open).
    requested: AtomicU64,
    /// The last generation the task finished; `u64::MAX` once the task has ended.
    pub(crate) done: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Configurations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configurations")
            .field("configurations", &self.records.read().len())
            .finish()
    }
}

impl Configurations {
    /// Loads every stored configuration and returns the task's end of the signal channel.
    pub(crate) async fn open(
        store: &dyn Store,
        max: usize,
    ) -> Result<(Configurations, mpsc::UnboundedReceiver<Signal>), HubError> {
        let records = MetaCollection::<Stored>::load(store).await?;
        let pacing_records = MetaCollection::<pacing::PacingRecord>::load(store).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, _) = watch::channel(0);
        let done = Arc::new(done);
        Ok((
            Configurations {
                max: max.max(1),
                records,
                tallies: Mutex::new(HashMap::new()),
                retired: Mutex::new(HashMap::new()),
                reported_watch: Mutex::new(HashMap::new()),
                pacing: Mutex::new(pacing::Pacing::default()),
                pacing_records,
                signals: tx,
                requested: AtomicU64::new(1),
                done,
            },
            rx,
        ))
    }

    fn next_generation(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn signal(&self, make: impl FnOnce(u64) -> Signal) {
        self.signal_now(make);
    }

    /// Signals the task and returns the generation to wait for.
    fn signal_now(&self, make: impl FnOnce(u64) -> Signal) -> u64 {
        let generation = self.next_generation();
        // a closed channel means the hub is shutting down: nothing left to apply
        let _ = self.signals.send(make(generation));
        generation
    }

    /// Waits until the task finished generation `n`; `Closed` once the task has ended.
    async fn reached(&self, n: u64) -> Result<(), HubError> {
        let mut rx = self.done.subscribe();
        let done = rx
            .wait_for(|done| *done >= n)
            .await
            .map(|d| *d)
            .map_err(|_| HubError::Closed)?;
        if done == u64::MAX {
            return Err(HubError::Closed);
        }
        Ok(())
    }

    /// The stored configuration `id`.
    fn stored(&self, id: &str) -> Result<Arc<Configuration>, HubError> {
        self.records
            .read()
            .get(id)
            .map(|s| s.0.clone())
            .ok_or_else(|| not_found(id))
    }

    /// The configuration as readers see it: with the task's counts as its results.
    fn with_results(&self, cfg: &Configuration) -> Configuration {
        let mut out = cfg.clone();
        let tallies = locked(&self.tallies);
        let counts = tallies.get(&cfg.id).map(|t| t.counts()).unwrap_or_default();
        out.system_metrics.results = [
            (TARGETED_COUNT.to_string(), counts.targeted),
            (APPLIED_COUNT.to_string(), counts.applied),
        ]
        .into();
        out.metrics.results = cfg
            .metric_queries
            .iter()
            .zip(counts.metrics)
            .map(|((name, _), n)| (name.clone(), n))
            .collect();
        drop(tallies);
        out.rollout_status = locked(&self.pacing).progress(&cfg.id).or_else(|| {
            // the task has not seen it yet: nothing admitted so far
            cfg.rollout.as_ref().map(|_| {
                let mut p = iot_dm_core::configuration::RolloutProgress::default();
                p.state = "running".into();
                p
            })
        });
        out
    }
}

/// Starts the configuration task of the hub behind `inner`.
pub(crate) fn spawn_engine(inner: &Arc<Inner>, signals: mpsc::UnboundedReceiver<Signal>) {
    engine::spawn(inner, signals);
}

impl Hub {
    /// Resolves once every configuration created, updated or deleted before the call has been
    /// applied to every twin (and the counts of the pass on open are complete).
    pub async fn configurations_applied(&self) -> Result<(), HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let c = &self.inner.configurations;
        c.reached(c.requested.load(Ordering::SeqCst)).await
    }

    /// Refuses content the twin limits would refuse on an empty twin.
    fn check_content(&self, cfg: &Configuration) -> Result<(), HubError> {
        let Some(patch) =
            desired_change(&Value::Object(Default::default()), &[], cfg.content.paths())
        else {
            return Ok(());
        };
        let mut scratch =
            Twin::new(
                "configuration-content-check"
                    .parse()
                    .map_err(|_| HubError::Internal {
                        message: "the scratch device id is invalid".into(),
                    })?,
            );
        scratch
            .patch_desired(&patch, self.now(), &self.inner.limits)
            .map(|_| ())
            .map_err(|e| {
                HubError::Configuration(iot_dm_core::configuration::ConfigurationError::Content {
                    field: "content.deviceContent".into(),
                    reason: e.to_string(),
                })
            })
    }
}

pub(super) fn not_found(id: &str) -> HubError {
    HubError::ConfigurationNotFound { id: id.to_string() }
}

fn check_etag(cfg: &Configuration, if_match: &str) -> Result<(), HubError> {
    if iot_dm_core::twin::ETag::new(cfg.etag.clone()).matches(if_match) {
        Ok(())
    } else {
        Err(HubError::PreconditionFailed {
            expected: if_match.to_string(),
            actual: cfg.etag.clone(),
        })
    }
}

/// Configurations of the embedded hub.
#[async_trait]
impl ConfigurationApi for Hub {
    async fn put_configuration(
        &self,
        configuration: &Configuration,
        if_match: Option<&str>,
    ) -> Result<Configuration, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        self.check_content(configuration)?;
        let c = &self.inner.configurations;
        let now = self.now();
        let id = configuration.id.clone();
        let stored = c
            .records
            .put_with(
                &self.inner.committer,
                |items| {
                    let next = match (items.get(&id), if_match) {
                        (Some(_), None) => {
                            return Err(HubError::ConfigurationAlreadyExists { id: id.clone() })
                        }
                        (None, Some(_)) => return Err(not_found(&id)),
                        (None, None) => {
                            if items.len() >= c.max {
                                return Err(HubError::TooManyConfigurations { limit: c.max });
                            }
                            configuration.clone().created(now)
                        }
                        (Some(old), Some(m)) => {
                            check_etag(&old.0, m)?;
                            old.0.updated(configuration.clone(), now)?
                        }
                    };
                    Ok(Stored(Arc::new(next)))
                },
                |s| s.0.clone(),
            )
            .await?;
        c.signal(|generation| Signal::Changed { generation });
        tracing::info!(configuration = %stored.id, etag = %stored.etag, "configuration stored");
        Ok(c.with_results(&stored))
    }

    async fn get_configuration(&self, id: &str) -> Result<Configuration, HubError> {
        let c = &self.inner.configurations;
        c.reached(1).await?;
        let cfg = c.stored(id)?;
        Ok(c.with_results(&cfg))
    }

    async fn list_configurations(
        &self,
        top: Option<usize>,
    ) -> Result<Vec<Configuration>, HubError> {
        let c = &self.inner.configurations;
        c.reached(1).await?;
        let all: Vec<Arc<Configuration>> = c.records.read().values().map(|s| s.0.clone()).collect();
        Ok(all
            .iter()
            .take(top.unwrap_or(c.max).min(c.max))
            .map(|cfg| c.with_results(cfg))
            .collect())
    }

    async fn delete_configuration(&self, id: &str, if_match: Option<&str>) -> Result<(), HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let c = &self.inner.configurations;
        let current = c.records.read().get(id).map(|s| s.0.clone());
        let Some(current) = current else {
            return Err(not_found(id));
        };
        // the task may plan twins between the delete and its signal: it finds the content here
        locked(&c.retired).insert(id.to_string(), current.clone());
        let removed = c
            .records
            .delete_with(&self.inner.committer, id, |item, _| {
                match (item, if_match) {
                    (None, _) => Err(not_found(id)),
                    (Some(s), Some(m)) => check_etag(&s.0, m),
                    (Some(_), None) => Ok(()),
                }
            })
            .await;
        match removed {
            Ok(Some(gone)) => {
                locked(&c.retired).insert(id.to_string(), gone.0.clone());
                self.forget_pacing(&gone.0).await?;
                c.signal(|generation| Signal::Deleted {
                    generation,
                    configuration: gone.0,
                });
                tracing::info!(configuration = %id, "configuration deleted");
                Ok(())
            }
            other => {
                let mut retired = locked(&c.retired);
                if retired.get(id).is_some_and(|r| Arc::ptr_eq(r, &current)) {
                    retired.remove(id);
                }
                other.and(Err(not_found(id)))
            }
        }
    }

    async fn test_configuration_queries(
        &self,
        test: &QueriesTest,
    ) -> Result<QueriesTestResult, HubError> {
        Ok(test.run())
    }

    async fn pause_configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.set_configuration_paused(id, true).await
    }

    async fn resume_configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.set_configuration_paused(id, false).await
    }
}

/// The default cap, re-exported for the builder.
pub(crate) const DEFAULT_MAX: usize = DEFAULT_MAX_CONFIGURATIONS;
