//! [`AlertApi`]: fleet alerts (ours; IoT Hub has none).

use async_trait::async_trait;

use iot_dm_core::alert::{Alert, AlertRule, AlertState};

use crate::hub::HubError;

/// Fleet alerts: rules that watch how many of a scope's devices match a condition, and the
/// alerts they raise. A rule ([`AlertRule`]) holds when more than its threshold (a count or a
/// percentage) of its scope's devices match its condition; once it has held for
/// `forSeconds` an alert is raised, and once it has stopped holding for `forSeconds` the
/// alert clears. The scope is every device, the devices a configuration targets, or a job's
/// devices (whose condition is tested on each device's job record, naming only `status` and
/// `jobId`). An alert stays in the history once cleared, and may be acknowledged once.
///
/// Errors: `404501 AlertRuleNotFound`, `404502 AlertNotFound`, `413501
/// AlertRuleCountLimitExceeded` past the hub's cap, and `400004` naming the field of a rule
/// the hub refuses.
///
/// On the embedded hub a rule is counted over the fleet in the background once it is durable;
/// the alerts it raises appear in [`AlertApi::list_alerts`] (and on the event stream) when
/// the alert task has written them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use iot_dm_core::alert::{AlertRule, AlertState};
/// use iot_dm_service::api::prelude::*;
/// use iot_dm_service::hub::{DeviceSpec, Hub};
/// use serde_json::json;
///
/// let hub = Hub::builder().open().await?;
/// for id in ["pump-1", "pump-2"] {
///     hub.create_device(DeviceSpec::new(id.parse()?)).await?;
/// }
/// let rule = AlertRule::from_json(&json!({
///     "id": "failed-updates",
///     "condition": "properties.reported.update.state = 'failed'",
///     "threshold": {"count": 0},
///     "severity": "warning",
/// }))?;
/// hub.put_alert_rule(&rule).await?;
/// assert_eq!(hub.list_alert_rules().await?.len(), 1);
/// hub.patch_reported("pump-1", &json!({"update": {"state": "failed"}})).await?;
/// // the alert task raises the alert in the background
/// let mut active = Vec::new();
/// for _ in 0..500 {
///     active = hub.list_alerts(Some(AlertState::Active)).await?;
///     if !active.is_empty() { break }
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
/// }
/// assert_eq!(active[0].rule_id, "failed-updates");
/// let acked = AlertApi::acknowledge_alert(&hub, &active[0].id, "ops@example.com").await?;
/// assert_eq!(acked.acknowledged.map(|(_, by)| by), Some("ops@example.com".to_string()));
/// # Ok(()) }
/// ```
#[async_trait]
pub trait AlertApi: Send + Sync + std::fmt::Debug {
    /// Creates or replaces a rule (`PUT /alerts/rules/{id}`); the rule as stored. An active
    /// alert of a replaced rule stays active until the new rule clears it.
    async fn put_alert_rule(&self, rule: &AlertRule) -> Result<AlertRule, HubError>;

    /// A rule (`GET /alerts/rules/{id}`).
    async fn get_alert_rule(&self, id: &str) -> Result<AlertRule, HubError>;

    /// Every rule, in id order (`GET /alerts/rules`).
    async fn list_alert_rules(&self) -> Result<Vec<AlertRule>, HubError>;

    /// Deletes a rule (`DELETE /alerts/rules/{id}`); its active alert, if any, clears.
    async fn delete_alert_rule(&self, id: &str) -> Result<(), HubError>;

    /// The alerts in `state` (`None`: every alert), oldest first
    /// (`GET /alerts?state=active|cleared|all`).
    async fn list_alerts(&self, state: Option<AlertState>) -> Result<Vec<Alert>, HubError>;

    /// One alert (`GET /alerts/{id}`).
    async fn get_alert(&self, id: &str) -> Result<Alert, HubError>;

    /// Acknowledges an alert, active or cleared, on behalf of `by` (a person or a tool, at
    /// most [`MAX_ACKNOWLEDGED_BY_LEN`](crate::hub::MAX_ACKNOWLEDGED_BY_LEN) characters)
    /// (`POST /alerts/{id}/acknowledge`); a second acknowledgement keeps the first. The alert
    /// as it stands.
    async fn acknowledge_alert(&self, id: &str, by: &str) -> Result<Alert, HubError>;
}
