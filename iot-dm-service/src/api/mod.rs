//! The back-end API: one trait per area of the hub, and [`ServiceApi`], their union, for
//! everything a back-end application, operator tool or supervisor dashboard does with a hub.
//! Each trait has two implementations:
//!
//! - [`Hub`](crate::Hub), the embedded hub, in the same process;
//! - `ServiceClient`, a remote hub over HTTPS (IoT Hub's service REST API, plus our own
//!   routes), built from a service connection string.
//!
//! | trait | area |
//! |---|---|
//! | [`RegistryApi`] | device identities, bulk operations, keys, the lifecycle, statistics |
//! | [`TwinApi`] | twins: read, update, replace, the archive of retired devices |
//! | [`QueryApi`] | queries over live and archived twins, page by page |
//! | [`MethodApi`] | direct methods |
//! | [`MessageApi`] | cloud-to-device messages |
//! | [`AccessApi`] | shared access policies |
//! | [`CertificateApi`] | X.509 certification authorities |
//! | [`JobApi`] | jobs over the fleet: scheduled twin updates and direct methods |
//! | [`ArtifactApi`] | firmware artifacts: upload, list, delete (not part of [`ServiceApi`]) |
//! | [`ConfigurationApi`] | automatic device configurations: desired properties by target and priority |
//! | [`AlertApi`] | fleet alerts: rules over a scope's devices, the alerts they raise, acknowledgements |
//!
//! Code written against `&dyn ServiceApi` (or a generic `A: ServiceApi`, or only the area
//! traits it needs) switches between the two by configuration. Errors are [`HubError`](crate::HubError) in both
//! cases, with the same variants and predicates (`is_not_found()`, `is_precondition_failed()`,
//! ...): the remote client maps IoT Hub's error codes back to them, and adds the failures only
//! a remote call can have (unauthorized, forbidden, throttled, unreachable).
//!
//! Calling the methods on a concrete `Hub` or `ServiceClient` needs the traits in scope:
//! `use iot_dm_service::api::prelude::*;`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iot_dm_service::api::ServiceApi;
//! use iot_dm_service::hub::{DeviceSpec, Hub};
//!
//! // Works the same against `Hub` and against a remote `ServiceClient`.
//! async fn enroll(api: &dyn ServiceApi, spec: DeviceSpec) -> Result<u64, iot_dm_service::HubError> {
//!     api.create_device(spec).await?;
//!     Ok(api.registry_statistics().await?.total_device_count)
//! }
//!
//! let hub = Hub::builder().open().await?;
//! assert_eq!(enroll(&hub, DeviceSpec::new("pump-1".parse()?)).await?, 1);
//! # Ok(()) }
//! ```

/// The `api-version` [`ServiceClient`](crate::client::ServiceClient) sends (one of those the
/// REST server accepts).
pub const API_VERSION: &str = "2021-04-12";

mod access;
mod alerts;
mod artifacts;
mod certificates;
mod configurations;
mod jobs;
mod messages;
mod methods;
mod query;
mod registry;
mod twins;

pub use access::AccessApi;
pub use alerts::AlertApi;
pub use artifacts::{ArtifactApi, ArtifactUpload};
pub use certificates::CertificateApi;
pub use configurations::ConfigurationApi;
pub use jobs::{DeviceJobPage, JobApi, JobFilter, JobPage};
pub use messages::MessageApi;
pub use methods::MethodApi;
pub use query::QueryApi;
pub use registry::RegistryApi;
pub use twins::TwinApi;

pub use crate::hub::{RegistryStatistics, ServiceStatistics};

/// Every area trait, for `use iot_dm_service::api::prelude::*;`.
pub mod prelude {
    pub use super::{
        AccessApi, AlertApi, ArtifactApi, CertificateApi, ConfigurationApi, JobApi, MessageApi,
        MethodApi, QueryApi, RegistryApi, ServiceApi, TwinApi,
    };
}

/// Everything a back end does with a hub: the union of the area traits, implemented by every
/// type that implements all of them. See the [module docs](self).
///
/// Every method is one request to the hub; none of them retries.
pub trait ServiceApi:
    RegistryApi
    + TwinApi
    + QueryApi
    + MethodApi
    + MessageApi
    + AccessApi
    + CertificateApi
    + JobApi
    + ConfigurationApi
    + AlertApi
{
}

impl<T> ServiceApi for T where
    T: RegistryApi
        + TwinApi
        + QueryApi
        + MethodApi
        + MessageApi
        + AccessApi
        + CertificateApi
        + JobApi
        + ConfigurationApi
        + AlertApi
{
}

#[cfg(test)]
mod tests {
    use super::ServiceApi;

    #[test]
    fn both_implementations_are_service_apis() {
        fn is_api<T: ServiceApi + ?Sized>() {}
        is_api::<crate::Hub>();
        is_api::<crate::client::ServiceClient>();
        is_api::<dyn ServiceApi>();
    }
}
