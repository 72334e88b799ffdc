//! [`ConfigurationApi`] over IoT Hub's configuration routes (`/configurations/...`).

use async_trait::async_trait;
use http::Method;
use serde_json::Value;

use iot_dm_core::configuration::{Configuration, QueriesTest, QueriesTestResult};

use super::codec::{body, parse};
use super::errors::About;
use super::{path, ServiceClient};
use crate::api::ConfigurationApi;
use crate::hub::HubError;

fn about(id: &str) -> About<'_> {
    About {
        configuration_id: Some(id),
        ..About::default()
    }
}

/// A configuration from the hub's JSON (timestamps, ETag and results kept).
fn read(v: &Value) -> Result<Configuration, HubError> {
    Configuration::from_stored(v).map_err(|e| HubError::Transport {
        message: format!("the hub answered a configuration this client cannot read: {e}"),
    })
}

fn if_match(m: Option<&str>) -> Vec<(&'static str, String)> {
    m.map(|m| vec![("if-match", m.to_string())])
        .unwrap_or_default()
}

#[async_trait]
impl ConfigurationApi for ServiceClient {
    async fn put_configuration(
        &self,
        configuration: &Configuration,
        if_match_etag: Option<&str>,
    ) -> Result<Configuration, HubError> {
        let id = &configuration.id;
        let answer = self
            .call(
                Method::PUT,
                &path(&["configurations", id], &[]),
                &if_match(if_match_etag),
                body(&configuration.to_json())?,
                About {
                    if_match: if_match_etag,
                    ..about(id)
                },
            )
            .await?;
        read(&parse::<Value>(&answer, "configuration")?)
    }

    async fn get_configuration(&self, id: &str) -> Result<Configuration, HubError> {
        let v: Value = self
            .get_json(&["configurations", id], about(id), "configuration")
            .await?;
        read(&v)
    }

    async fn list_configurations(
        &self,
        top: Option<usize>,
    ) -> Result<Vec<Configuration>, HubError> {
        let query: Vec<(&str, String)> = top.map(|t| ("top", t.to_string())).into_iter().collect();
        let answer = self
            .call(
                Method::GET,
                &path(&["configurations"], &query),
                &[],
                None,
                About::default(),
            )
            .await?;
        let items: Vec<Value> = parse(&answer, "configuration list")?;
        items.iter().map(read).collect()
    }

    async fn delete_configuration(
        &self,
        id: &str,
        if_match_etag: Option<&str>,
    ) -> Result<(), HubError> {
        self.call(
            Method::DELETE,
            &path(&["configurations", id], &[]),
            &if_match(if_match_etag),
            None,
            About {
                if_match: if_match_etag,
                ..about(id)
            },
        )
        .await?;
        Ok(())
    }

    async fn test_configuration_queries(
        &self,
        test: &QueriesTest,
    ) -> Result<QueriesTestResult, HubError> {
        let answer = self
            .call(
                Method::POST,
                &path(&["configurations", "testQueries"], &[]),
                &[],
                body(test)?,
                About::default(),
            )
            .await?;
        parse(&answer, "query test result")
    }

    async fn pause_configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.configuration_action(id, "pause").await
    }

    async fn resume_configuration(&self, id: &str) -> Result<Configuration, HubError> {
        self.configuration_action(id, "resume").await
    }
}

impl ServiceClient {
    /// `POST /configurations/{id}/{action}` (ours).
    async fn configuration_action(
        &self,
        id: &str,
        action: &str,
    ) -> Result<Configuration, HubError> {
        let answer = self
            .call(
                Method::POST,
                &path(&["configurations", id, action], &[]),
                &[],
                None,
                about(id),
            )
            .await?;
        read(&parse::<Value>(&answer, "configuration")?)
    }
}
