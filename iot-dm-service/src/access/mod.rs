//! Access control for the service API: IoT Hub's shared access policies, their rights, the
//! built-in roles, and a per-policy rate limit.
//!
//! This module is pure (no I/O). The hub keeps the policy set durably and checks requests
//! against it with `Hub::authorize` (see [`crate::hub::Hub`]).
//!
//! | item | what it is |
//! |---|---|
//! | [`Rights`] | IoT Hub's rights as a set: `RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect` |
//! | [`Need`] | what a route needs: any of, or all of, some rights |
//! | [`Role`] | the built-in roles (operator, supervisor, IT) and the built-in policy of each |
//! | [`AccessPolicy`] | a shared access policy: name, two keys, rights, rate limit |
//! | [`RateLimit`], [`TokenBucket`] | the per-policy rate limit and its limiter |
//! | [`Grant`] | who a request was authorized as |
//!
//! ```
//! use iot_dm_service::access::{Need, Rights, Role};
//! let need = Need::AnyOf(Rights::REGISTRY_READ | Rights::REGISTRY_WRITE);
//! assert!(need.is_met_by(Role::Supervisor.rights()));
//! assert!(!Need::AllOf(Rights::REGISTRY_WRITE).is_met_by(Role::Supervisor.rights()));
//! assert_eq!(Role::Operator.policy_name(), "iothubowner");
//! ```

mod bucket;
mod policy;
mod rights;

pub use bucket::TokenBucket;
pub use policy::{
    validate_policy_name, AccessPolicy, RateLimit, DEFAULT_RATE_LIMIT, MAX_POLICIES,
    MAX_POLICY_NAME,
};
pub use rights::{Rights, RightsError};

use std::fmt;

/// What a route needs of the caller's rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Need {
    /// At least one of these rights (`AnyOf(Rights::NONE)` needs nothing).
    AnyOf(Rights),
    /// Every one of these rights.
    AllOf(Rights),
}

impl Need {
    /// Whether `granted` satisfies this need.
    pub fn is_met_by(self, granted: Rights) -> bool {
        match self {
            Need::AnyOf(r) => r.is_empty() || granted.intersects(r),
            Need::AllOf(r) => granted.contains(r),
        }
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::AnyOf(r) => write!(f, "any of [{r}]"),
            Need::AllOf(r) => write!(f, "all of [{r}]"),
        }
    }
}

/// The built-in roles, each backed by a built-in policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Runs the hub: every right (`iothubowner`).
    Operator,
    /// Watches the fleet: reads the registry (`registryRead`).
    Supervisor,
    /// Manages devices: reads and writes the registry (`registryReadWrite`).
    It,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Operator, Role::Supervisor, Role::It];

    /// The rights of the role's policy.
    pub fn rights(self) -> Rights {
        match self {
            Role::Operator => Rights::ALL,
            Role::Supervisor => Rights::REGISTRY_READ,
            Role::It => Rights::REGISTRY_READ | Rights::REGISTRY_WRITE,
        }
    }

    /// The name of the role's built-in policy.
    pub fn policy_name(self) -> &'static str {
        match self {
            Role::Operator => "iothubowner",
            Role::Supervisor => "registryRead",
            Role::It => "registryReadWrite",
        }
    }
}

/// The built-in policies a new hub starts with: name and rights.
pub const BUILT_IN_POLICIES: [(&str, Rights); 5] = [
    ("iothubowner", Rights::ALL),
    ("service", Rights::SERVICE_CONNECT),
    ("registryRead", Rights::REGISTRY_READ),
    (
        "registryReadWrite",
        Rights::REGISTRY_READ.union(Rights::REGISTRY_WRITE),
    ),
    ("device", Rights::DEVICE_CONNECT),
];

/// Who a request was authorized as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The policy the token was signed for.
    pub policy: String,
    /// The policy's rights.
    pub rights: Rights,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_has_its_rights_and_built_in_policy() {
        assert_eq!(Role::Operator.rights(), Rights::ALL);
        assert_eq!(Role::Supervisor.rights(), Rights::REGISTRY_READ);
        assert_eq!(
            Role::It.rights(),
            Rights::REGISTRY_READ | Rights::REGISTRY_WRITE
        );
        for role in Role::ALL {
            let (_, rights) = BUILT_IN_POLICIES
                .iter()
                .find(|(name, _)| *name == role.policy_name())
                .unwrap();
            assert_eq!(*rights, role.rights(), "{role:?}");
        }
    }

    #[test]
    fn needs() {
        let read = Need::AnyOf(Rights::REGISTRY_READ | Rights::REGISTRY_WRITE);
        assert!(read.is_met_by(Rights::REGISTRY_WRITE));
        assert!(read.is_met_by(Rights::REGISTRY_READ));
        assert!(!read.is_met_by(Rights::SERVICE_CONNECT));
        let owner = Need::AllOf(Rights::ALL);
        assert!(owner.is_met_by(Rights::ALL));
        assert!(!owner.is_met_by(Role::It.rights()));
        assert!(Need::AnyOf(Rights::NONE).is_met_by(Rights::NONE));
        assert_eq!(read.to_string(), "any of [RegistryRead, RegistryWrite]");
    }
}
