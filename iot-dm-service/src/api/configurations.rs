//! [`ConfigurationApi`]: IoT Hub's automatic device configurations.

use async_trait::async_trait;

use iot_dm_core::configuration::{Configuration, QueriesTest, QueriesTestResult};

use crate::hub::HubError;

/// Automatic device configurations: every twin a configuration's `targetCondition` matches
/// gets its `content.deviceContent` in its desired properties; where several match, the
/// highest `priority` wins, then the newest. The twin records `configurations.[[id]].status`
/// (`targeted` or `applied`), and each configuration counts `targetedCount`, `appliedCount`
/// and its custom metrics as twins change.
///
/// On the embedded hub the call returns once the configuration is durable, and the hub then
/// applies it to every twin in the background ([`Hub::configurations_applied`] waits for
/// that).
///
/// [`Hub::configurations_applied`]: crate::Hub::configurations_applied
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use iot_dm_core::configuration::Configuration;
/// use iot_dm_service::api::prelude::*;
/// use iot_dm_service::hub::{DeviceSpec, Hub};
/// use serde_json::json;
///
/// let hub = Hub::builder().open().await?;
/// hub.create_device(DeviceSpec::new("pump-1".parse()?)).await?;
/// let cfg = Configuration::from_json(&json!({
///     "id": "fan-speed", "targetCondition": "*", "priority": 10,
///     "content": {"deviceContent": {"properties.desired.fan": {"speed": 3}}},
/// }))?;
/// hub.put_configuration(&cfg, None).await?;
/// hub.configurations_applied().await?;
/// assert_eq!(hub.get_twin("pump-1")?.desired().doc().to_value(), json!({"fan": {"speed": 3}}));
/// let cfg = hub.get_configuration("fan-speed").await?;
/// assert_eq!(cfg.system_metrics.results["appliedCount"], 1);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait ConfigurationApi: Send + Sync + std::fmt::Debug {
    /// Creates (`if_match` `None`) or updates (`if_match` the ETag or `*`) a configuration
    /// (`PUT /configurations/{id}`). Creating an existing id is `409401
    /// ConfigurationAlreadyExists`; updating a missing one `404301 ConfigurationNotFound`; a
    /// stale ETag `412`; changing the content `400403`; past the cap `413101`.
    async fn put_configuration(
        &self,
        configuration: &Configuration,
        if_match: Option<&str>,
    ) -> Result<Configuration, HubError>;

    /// A configuration with its current metrics (`GET /configurations/{id}`).
    async fn get_configuration(&self, id: &str) -> Result<Configuration, HubError>;

    /// At most `top` configurations, in id order (`GET /configurations?top=n`).
    async fn list_configurations(&self, top: Option<usize>)
        -> Result<Vec<Configuration>, HubError>;

    /// Deletes a configuration (`DELETE /configurations/{id}`), if `if_match` (an ETag or
    /// `*`; `None` for no precondition) matches. Its settings are removed from the twins it
    /// was applied to, and the next configuration in line applies there.
    async fn delete_configuration(&self, id: &str, if_match: Option<&str>) -> Result<(), HubError>;

    /// Checks a target condition and custom metric queries without storing anything
    /// (`POST /configurations/testQueries`).
    async fn test_configuration_queries(
        &self,
        test: &QueriesTest,
    ) -> Result<QueriesTestResult, HubError>;

    /// Pauses the rollout of a configuration with a `rolloutPolicy` (ours: `POST
    /// /configurations/{id}/pause`): no more targeted twins are admitted; those admitted keep
    /// the content. A configuration without a policy is refused (`400`, field
    /// `rolloutPolicy`).
    async fn pause_configuration(&self, id: &str) -> Result<Configuration, HubError>;

    /// Resumes a paused rollout (`POST /configurations/{id}/resume`). After an abort the
    /// rollout starts again for the twins not admitted, and the abort's alert clears.
    async fn resume_configuration(&self, id: &str) -> Result<Configuration, HubError>;
}
