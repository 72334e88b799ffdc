//! [`AlertApi`] for the embedded hub: the wing's operations, as they are.

use async_trait::async_trait;

use iot_dm_core::alert::{Alert, AlertRule, AlertState};

use crate::api::AlertApi;
use crate::hub::error::HubError;
use crate::hub::Hub;

#[async_trait]
impl AlertApi for Hub {
    async fn put_alert_rule(&self, rule: &AlertRule) -> Result<AlertRule, HubError> {
        Hub::put_alert_rule(self, rule).await
    }

    async fn get_alert_rule(&self, id: &str) -> Result<AlertRule, HubError> {
        self.alert_rule(id)
    }

    async fn list_alert_rules(&self) -> Result<Vec<AlertRule>, HubError> {
        Ok(self.alert_rules())
    }

    async fn delete_alert_rule(&self, id: &str) -> Result<(), HubError> {
        Hub::delete_alert_rule(self, id).await
    }

    async fn list_alerts(&self, state: Option<AlertState>) -> Result<Vec<Alert>, HubError> {
        Ok(self.alerts(state))
    }

    async fn get_alert(&self, id: &str) -> Result<Alert, HubError> {
        self.alert(id)
    }

    async fn acknowledge_alert(&self, id: &str, by: &str) -> Result<Alert, HubError> {
        Hub::acknowledge_alert(self, id, by).await
    }
}
