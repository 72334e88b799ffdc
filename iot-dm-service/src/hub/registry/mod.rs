//! The identity registry: device identities and their lifecycle, bulk import and export,
//! X.509 certification authorities, and the shared access policies of the service API.
//!
//! | file | what it holds |
//! |---|---|
//! | `device.rs` | [`Device`], what the registry stores for each device, and its credentials |
//! | `spec.rs` | [`DeviceSpec`], what to create, [`KeyKind`] and listing [`Page`]s |
//! | `devices.rs` | create, get, update, list and delete identities; the lifecycle (plan, provision, enable, disable, retire, replace) |
//! | `statistics.rs` | registry and service statistics |
//! | `bulk.rs` | bulk registry operations, and whole-registry export and import as JSON Lines |
//! | `x509.rs` | X.509 thumbprints and registered certification authorities |
//! | `policies.rs` | shared access policies and the authorization of service requests |

mod bulk;
mod device;
mod devices;
mod policies;
mod spec;
mod statistics;
mod x509;

pub use bulk::{
    BulkError, BulkResult, ImportDevice, ImportMode, ImportProperties, ImportReport, MAX_BULK,
};
pub use device::{generate_key, Authentication, Device, SymmetricKeys};
pub use spec::{DevicePage, DeviceSpec, KeyKind};
pub use statistics::{RegistryStatistics, ServiceStatistics};
pub use x509::{thumbprints, CaCertificate, MAX_CAS};

pub(crate) use policies::{load_policies, PolicyRegistry};
pub(crate) use x509::CaRegistry;
