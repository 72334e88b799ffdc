//! [`CertificateApi`]: X.509 certification authorities.

use async_trait::async_trait;

use crate::hub::{CaCertificate, HubError};

/// The CA certificates devices registered as `certificateAuthority` chain their client
/// certificates to (at most [`MAX_CAS`](crate::hub::MAX_CAS)). Our routes (`/certificates`);
/// Azure IoT Hub manages its CAs through Azure Resource Manager instead.
#[async_trait]
pub trait CertificateApi: Send + Sync + std::fmt::Debug {
    /// Registers a CA certificate (PEM) under `name`, replacing one of the same name
    /// (`PUT /certificates/{name}`).
    async fn add_ca_certificate(&self, name: &str, pem: &str) -> Result<CaCertificate, HubError>;
    /// The registered CA certificates, sorted by name (`GET /certificates`).
    async fn ca_certificates(&self) -> Result<Vec<CaCertificate>, HubError>;
    /// Removes a CA certificate; devices it vouched for can no longer connect
    /// (`DELETE /certificates/{name}`).
    async fn remove_ca_certificate(&self, name: &str) -> Result<(), HubError>;
}
