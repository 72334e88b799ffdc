//! [`AlertApi`] over our alert routes (`/alerts/...`; IoT Hub has none).

use async_trait::async_trait;
use http::Method;
use serde_json::{json, Value};

use iot_dm_core::alert::{Alert, AlertRule, AlertState};

use super::codec::{body, parse};
use super::errors::About;
use super::{path, ServiceClient};
use crate::api::AlertApi;
use crate::hub::HubError;

fn about(id: &str) -> About<'_> {
    About {
        alert_id: Some(id),
        ..About::default()
    }
}

fn unreadable(what: &str, why: impl std::fmt::Display) -> HubError {
    HubError::Transport {
        message: format!("the hub answered {what} this client cannot read: {why}"),
    }
}

/// A rule from the hub's JSON.
fn rule(v: &Value) -> Result<AlertRule, HubError> {
    AlertRule::from_json(v).map_err(|e| unreadable("an alert rule", e))
}

/// An alert from the hub's JSON.
fn alert(v: &Value) -> Result<Alert, HubError> {
    Alert::from_json(v).ok_or_else(|| unreadable("an alert", v))
}

#[async_trait]
impl AlertApi for ServiceClient {
    async fn put_alert_rule(&self, r: &AlertRule) -> Result<AlertRule, HubError> {
        let answer = self
            .call(
                Method::PUT,
                &path(&["alerts", "rules", &r.id], &[]),
                &[],
                body(&r.to_json())?,
                about(&r.id),
            )
            .await?;
        rule(&parse::<Value>(&answer, "alert rule")?)
    }

    async fn get_alert_rule(&self, id: &str) -> Result<AlertRule, HubError> {
        let v: Value = self
            .get_json(&["alerts", "rules", id], about(id), "alert rule")
            .await?;
        rule(&v)
    }

    async fn list_alert_rules(&self) -> Result<Vec<AlertRule>, HubError> {
        let items: Vec<Value> = self
            .get_json(&["alerts", "rules"], About::default(), "alert rule list")
            .await?;
        items.iter().map(rule).collect()
    }

    async fn delete_alert_rule(&self, id: &str) -> Result<(), HubError> {
        self.call(
            Method::DELETE,
            &path(&["alerts", "rules", id], &[]),
            &[],
            None,
            about(id),
        )
        .await?;
        Ok(())
    }

    async fn list_alerts(&self, state: Option<AlertState>) -> Result<Vec<Alert>, HubError> {
        let state = state.map_or("all", AlertState::as_str);
        let answer = self
            .call(
                Method::GET,
                &path(&["alerts"], &[("state", state.to_string())]),
                &[],
                None,
                About::default(),
            )
            .await?;
        let items: Vec<Value> = parse(&answer, "alert list")?;
        items.iter().map(alert).collect()
    }

    async fn get_alert(&self, id: &str) -> Result<Alert, HubError> {
        let v: Value = self.get_json(&["alerts", id], about(id), "alert").await?;
        alert(&v)
    }

    async fn acknowledge_alert(&self, id: &str, by: &str) -> Result<Alert, HubError> {
        let answer = self
            .call(
                Method::POST,
                &path(&["alerts", id, "acknowledge"], &[]),
                &[],
                body(&json!({ "by": by }))?,
                about(id),
            )
            .await?;
        alert(&parse::<Value>(&answer, "alert")?)
    }
}
