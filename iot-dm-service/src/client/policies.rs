//! [`AccessApi`] over our administration routes (`/policies`), for the owner (a policy with
//! every right). Azure IoT Hub manages its policies through Azure Resource Manager instead, so
//! these calls work against our hub only.

use async_trait::async_trait;
use http::Method;
use serde_json::json;

use super::codec::{body, key_name, parse};
use super::errors::About;
use super::{path, ServiceClient};
use crate::access::AccessPolicy;
use crate::api::AccessApi;
use crate::hub::{HubError, KeyKind};

#[async_trait]
impl AccessApi for ServiceClient {
    async fn access_policies(&self) -> Result<Vec<AccessPolicy>, HubError> {
        self.get_json(&["policies"], About::default(), "access policy list")
            .await
    }

    async fn access_policy(&self, name: &str) -> Result<AccessPolicy, HubError> {
        self.get_json(&["policies", name], About::default(), "access policy")
            .await
    }

    async fn put_access_policy(&self, policy: AccessPolicy) -> Result<AccessPolicy, HubError> {
        let answer = self
            .call(
                Method::PUT,
                &path(&["policies", &policy.key_name], &[]),
                &[],
                body(&policy)?,
                About::default(),
            )
            .await?;
        parse(&answer, "access policy")
    }

    async fn delete_access_policy(&self, name: &str) -> Result<(), HubError> {
        self.call(
            Method::DELETE,
            &path(&["policies", name], &[]),
            &[],
            None,
            About::default(),
        )
        .await?;
        Ok(())
    }

    async fn regenerate_policy_key(
        &self,
        name: &str,
        which: KeyKind,
    ) -> Result<AccessPolicy, HubError> {
        let answer = self
            .call(
                Method::POST,
                &path(&["policies", name, "keys", "regenerate"], &[]),
                &[],
                body(&json!({ "key": key_name(which) }))?,
                About::default(),
            )
            .await?;
        parse(&answer, "access policy")
    }

    /// Made from the policy the hub returns and the host name of the client's connection
    /// string.
    async fn service_connection_string(&self, policy: &str) -> Result<String, HubError> {
        let policy = self.access_policy(policy).await?;
        Ok(format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host_name(),
            policy.key_name,
            policy.primary_key
        ))
    }
}
