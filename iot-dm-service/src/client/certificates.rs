//! [`CertificateApi`] over our `/certificates` routes (Azure IoT Hub manages its CAs through
//! Azure Resource Manager, so these calls work against our hub only).

use async_trait::async_trait;
use http::Method;
use serde_json::json;

use super::codec::{body, parse};
use super::errors::About;
use super::{path, ServiceClient};
use crate::api::CertificateApi;
use crate::hub::{CaCertificate, HubError};

#[async_trait]
impl CertificateApi for ServiceClient {
    async fn add_ca_certificate(&self, name: &str, pem: &str) -> Result<CaCertificate, HubError> {
        let answer = self
            .call(
                Method::PUT,
                &path(&["certificates", name], &[]),
                &[],
                body(&json!({ "certificate": pem }))?,
                About::default(),
            )
            .await?;
        parse(&answer, "CA certificate")
    }

    async fn ca_certificates(&self) -> Result<Vec<CaCertificate>, HubError> {
        self.get_json(&["certificates"], About::default(), "CA certificate list")
            .await
    }

    async fn remove_ca_certificate(&self, name: &str) -> Result<(), HubError> {
        self.call(
            Method::DELETE,
            &path(&["certificates", name], &[]),
            &[],
            None,
            About::default(),
        )
        .await?;
        Ok(())
    }
}
