//! Fleet alerts over the hub: rules (core's [`AlertRule`]) kept with the hub's named records,
//! each watched incrementally by the alert task, and the history of the alerts they raised.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the stored records, the hub's alert operations |
//! | `engine.rs` | the alert task: keeps each rule's matching devices, raises and clears |
//! | `api.rs` | [`AlertApi`](crate::api::AlertApi) over these operations |
//!
//! **When it evaluates.** A twin change, a device created, updated or deleted, a connect or
//! disconnect, or a lifecycle move is seen through the hub's events, and that twin alone is
//! matched again against every rule. A rule created or replaced, and a rule scoped by a
//! configuration whose record changed, is counted afresh over every twin. `forSeconds` is
//! timed on the hub's clock, checked every [`TICK`].
//!
//! **Job scopes.** A rule scoped by a job (`{"job": id}`) counts the job's devices from the
//! job's `deviceJobStatistics`, never from the twins: its condition (naming only `status`
//! and `jobId`, see [`iot_dm_core::alert::JobCounter`]) is decided once per device-job status
//! and the matching statuses' counts are summed, over the job's `deviceCount`. The rule is
//! counted from the job record when it is created, replaced or the hub opens, and again on
//! each of the job's `job.progress` events (published once the scheduler's round is
//! durable). A job that does not exist (yet) is an empty scope; the rule starts counting
//! with the job's first event.
//!
//! **Durable.** Rules are stored under `alert-rule/`, alerts under `alert/`. On open an
//! active alert resumes as raised, and every rule is counted afresh.
//!
//! Limits: at most [`HubBuilder::max_alert_rules`](crate::hub::HubBuilder::max_alert_rules)
//! rules (default [`DEFAULT_MAX_ALERT_RULES`]).
//!
//! **Events.** A raise, a clear and a first acknowledgement are published, once durable, as
//! [`HubEvent::Alert`] (the stream's `alert` type).

mod api;
mod engine;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use iot_dm_core::alert::{Alert, AlertRule, AlertState, DEFAULT_MAX_ALERT_RULES};

use crate::hub::engine::{MetaCollection, MetaRecord};
use crate::hub::error::HubError;
use crate::hub::events::{AlertChange, HubEvent};
use crate::hub::{Hub, Inner};
use crate::store::Store;

/// How often the alert task checks `forSeconds` against the hub's clock.
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// The longest name an acknowledgement records, in characters.
pub const MAX_ACKNOWLEDGED_BY_LEN: usize = 128;

/// The default cap, for the builder.
pub(crate) const DEFAULT_MAX: usize = DEFAULT_MAX_ALERT_RULES;

fn encode_err(what: &str, name: &str, e: serde_json::Error) -> HubError {
    HubError::Internal {
        message: format!("{what} {name} could not be encoded: {e}"),
    }
}

fn decode_json(what: &str, name: &str, bytes: &[u8]) -> Result<Value, HubError> {
    serde_json::from_slice(bytes).map_err(|e| HubError::Internal {
        message: format!("stored {what} {name} is not JSON: {e}"),
    })
}

/// A record stored as its JSON: `$ty($inner)` with an `id`, `to_json` and a fallible read.
macro_rules! json_record {
    ($ty:ident, $inner:ty, $prefix:literal, $what:literal, $read:expr) => {
        impl MetaRecord for $ty {
            const PREFIX: &'static str = $prefix;
            const WHAT: &'static str = $what;

            fn name(&self) -> &str {
                &self.0.id
            }

            fn encode(&self) -> Result<Vec<u8>, HubError> {
                serde_json::to_vec(&self.0.to_json())
                    .map_err(|e| encode_err(Self::WHAT, &self.0.id, e))
            }

            fn decode(name: &str, bytes: &[u8]) -> Result<Self, HubError> {
                let v = decode_json(Self::WHAT, name, bytes)?;
                let read: fn(&str, &Value) -> Result<$inner, HubError> = $read;
                read(name, &v).map($ty)
            }
        }
    };
}

/// A stored rule.
#[derive(Debug, Clone)]
pub(crate) struct StoredRule(pub(crate) Arc<AlertRule>);

json_record!(
    StoredRule,
    Arc<AlertRule>,
    "alert-rule/",
    "alert rule",
    |_, v| { Ok(Arc::new(AlertRule::from_json(v)?)) }
);

/// A stored alert.
#[derive(Debug, Clone)]
pub(crate) struct StoredAlert(pub(crate) Alert);

json_record!(StoredAlert, Alert, "alert/", "alert", |name, v| {
    Alert::from_json(v).ok_or_else(|| HubError::Internal {
        message: format!("stored alert {name} is not an alert"),
    })
});

/// The hub's alert rules and alerts, and the way to reach the alert task.
pub(crate) struct Alerts {
    pub(crate) max: usize,
    pub(crate) rules: MetaCollection<StoredRule>,
    pub(crate) history: MetaCollection<StoredAlert>,
    /// Rule ids created, replaced or deleted, for the task.
    signals: mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("rules", &self.rules.read().len())
            .field("alerts", &self.history.read().len())
            .finish()
    }
}

impl Alerts {
    /// Loads every stored rule and alert and returns the task's end of the signal channel.
    pub(crate) async fn open(
        store: &dyn Store,
        max: usize,
    ) -> Result<(Alerts, mpsc::UnboundedReceiver<String>), HubError> {
        let rules = MetaCollection::<StoredRule>::load(store).await?;
        let history = MetaCollection::<StoredAlert>::load(store).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((
            Alerts {
                max: max.max(1),
                rules,
                history,
                signals: tx,
            },
            rx,
        ))
    }

    /// The active alert of a rule, if any.
    pub(crate) fn active_of(&self, rule_id: &str) -> Option<Alert> {
        self.history
            .read()
            .values()
            .find(|a| a.0.rule_id == rule_id && a.0.state() == AlertState::Active)
            .map(|a| a.0.clone())
    }
}

/// Starts the alert task of the hub behind `inner`.
pub(crate) fn spawn_engine(inner: &Arc<Inner>, signals: mpsc::UnboundedReceiver<String>) {
    engine::spawn(inner, signals);
}

fn rule_not_found(id: &str) -> HubError {
    HubError::AlertRuleNotFound { id: id.to_string() }
}

impl Hub {
    /// Creates or replaces an alert rule; the rule is counted afresh over every twin (a
    /// job-scoped rule: from its job's device statistics). An active alert of a replaced rule
    /// stays active until the new rule clears it.
    pub async fn put_alert_rule(&self, rule: &AlertRule) -> Result<AlertRule, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let a = &self.inner.alerts;
        let stored = a
            .rules
            .put_with(
                &self.inner.committer,
                |items| {
                    if !items.contains_key(&rule.id) && items.len() >= a.max {
                        return Err(HubError::TooManyAlertRules { limit: a.max });
                    }
                    Ok(StoredRule(Arc::new(rule.clone())))
                },
                |s| s.0.clone(),
            )
            .await?;
        // a closed channel means the hub is shutting down
        let _ = a.signals.send(stored.id.clone());
        tracing::info!(rule = %stored.id, "alert rule stored");
        Ok((*stored).clone())
    }

    /// An alert rule.
    pub fn alert_rule(&self, id: &str) -> Result<AlertRule, HubError> {
        let rules = self.inner.alerts.rules.read();
        rules
            .get(id)
            .map(|s| (*s.0).clone())
            .ok_or_else(|| rule_not_found(id))
    }

    /// Every alert rule, by id.
    pub fn alert_rules(&self) -> Vec<AlertRule> {
        let rules = self.inner.alerts.rules.read();
        rules.values().map(|s| (*s.0).clone()).collect()
    }

    /// Deletes an alert rule; its active alert, if any, is cleared.
    pub async fn delete_alert_rule(&self, id: &str) -> Result<(), HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let a = &self.inner.alerts;
        let gone = a
            .rules
            .delete_with(&self.inner.committer, id, |item, _| {
                item.map(|_| ()).ok_or_else(|| rule_not_found(id))
            })
            .await?;
        if gone.is_none() {
            return Err(rule_not_found(id));
        }
        let _ = a.signals.send(id.to_string());
        tracing::info!(rule = %id, "alert rule deleted");
        Ok(())
    }

    /// The alerts in `state` (every alert for `None`), oldest first.
    pub fn alerts(&self, state: Option<AlertState>) -> Vec<Alert> {
        let history = self.inner.alerts.history.read();
        let mut out: Vec<Alert> = history
            .values()
            .filter(|a| state.is_none_or(|s| a.0.state() == s))
            .map(|a| a.0.clone())
            .collect();
        out.sort_by(|x, y| (x.raised_at, &x.id).cmp(&(y.raised_at, &y.id)));
        out
    }

    /// One alert.
    pub fn alert(&self, id: &str) -> Result<Alert, HubError> {
        let history = self.inner.alerts.history.read();
        history
            .get(id)
            .map(|a| a.0.clone())
            .ok_or_else(|| HubError::AlertNotFound { id: id.to_string() })
    }

    /// Acknowledges an alert (active or cleared) on behalf of `by`; a second acknowledgement
    /// keeps the first.
    pub async fn acknowledge_alert(&self, id: &str, by: &str) -> Result<Alert, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        if by.trim().is_empty() {
            return Err(HubError::invalid("by", "name who acknowledges the alert"));
        }
        let len = by.chars().count();
        if len > MAX_ACKNOWLEDGED_BY_LEN {
            return Err(HubError::invalid(
                "by",
                format!("{len} characters, the limit is {MAX_ACKNOWLEDGED_BY_LEN}"),
            ));
        }
        let now = self.now();
        let mut first = false;
        let alert = self
            .inner
            .alerts
            .history
            .put_with(
                &self.inner.committer,
                |items| {
                    let mut alert = items
                        .get(id)
                        .map(|a| a.0.clone())
                        .ok_or_else(|| HubError::AlertNotFound { id: id.to_string() })?;
                    first = alert.acknowledge(by, now);
                    Ok(StoredAlert(alert))
                },
                |a| a.0.clone(),
            )
            .await?;
        if first {
            tracing::info!(alert = %id, by, "alert acknowledged");
            self.emit(HubEvent::Alert {
                change: AlertChange::Acknowledged,
                alert: Box::new(alert.clone()),
            });
        }
        Ok(alert)
    }
}

impl Hub {
    /// Stores an alert the hub raises itself (not a rule's), then publishes it.
    pub(crate) async fn raise_hub_alert(&self, alert: Alert) -> Result<(), HubError> {
        tracing::warn!(alert = %alert.id, source = %alert.rule_id, description = ?alert.description, "alert raised");
        self.write_hub_alert(AlertChange::Raised, alert).await
    }

    /// Clears an alert the hub raised itself, if it is still active.
    pub(crate) async fn clear_hub_alert(
        &self,
        id: &str,
        counts: iot_dm_core::alert::Counts,
    ) -> Result<(), HubError> {
        let Ok(mut alert) = self.alert(id) else {
            return Ok(());
        };
        if alert.state() != AlertState::Active {
            return Ok(());
        }
        alert.clear(self.now(), counts);
        tracing::info!(alert = %id, "alert cleared");
        self.write_hub_alert(AlertChange::Cleared, alert).await
    }

    async fn write_hub_alert(&self, change: AlertChange, alert: Alert) -> Result<(), HubError> {
        let event = HubEvent::Alert {
            change,
            alert: Box::new(alert.clone()),
        };
        self.inner
            .alerts
            .history
            .put_with(&self.inner.committer, |_| Ok(StoredAlert(alert)), |_| ())
            .await?;
        self.emit(event);
        Ok(())
    }
}
