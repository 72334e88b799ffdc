//! [`Rights`]: IoT Hub's four shared-access rights, as a set.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// IoT Hub's shared-access rights, as a set.
///
/// `|` unions two sets. The text form is IoT Hub's: the names joined by `", "` in the order
/// `RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect`; parsing accepts any order,
/// any case, `,` with or without spaces, and the empty string for [`Rights::NONE`]. Serde uses
/// the same text.
///
/// ```
/// use iot_dm_service::access::Rights;
/// let rights: Rights = "registryWrite,RegistryRead".parse()?;
/// assert_eq!(rights, Rights::REGISTRY_READ | Rights::REGISTRY_WRITE);
/// assert_eq!(rights.to_string(), "RegistryRead, RegistryWrite");
/// assert!(Rights::ALL.contains(rights));
/// assert!(!rights.intersects(Rights::SERVICE_CONNECT));
/// assert!("Admin".parse::<Rights>().is_err());
/// # Ok::<(), iot_dm_service::access::RightsError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Rights(u8);

/// The names, in IoT Hub's order, with their bits.
const NAMES: [(&str, Rights); 4] = [
    ("RegistryRead", Rights::REGISTRY_READ),
    ("RegistryWrite", Rights::REGISTRY_WRITE),
    ("ServiceConnect", Rights::SERVICE_CONNECT),
    ("DeviceConnect", Rights::DEVICE_CONNECT),
];

impl Rights {
    /// Read the identity registry.
    pub const REGISTRY_READ: Rights = Rights(1);
    /// Write the identity registry.
    pub const REGISTRY_WRITE: Rights = Rights(2);
    /// The back-end operations: twins, methods, queries.
    pub const SERVICE_CONNECT: Rights = Rights(4);
    /// Connect as any device.
    pub const DEVICE_CONNECT: Rights = Rights(8);
    /// All four.
    pub const ALL: Rights = Rights(15);
    /// None.
    pub const NONE: Rights = Rights(0);

    /// Whether every right of `other` is in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` have a right in common.
    pub const fn intersects(self, other: Rights) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of the two sets (also `self | other`).
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
}

impl std::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, rhs: Rights) -> Rights {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for Rights {
    fn bitor_assign(&mut self, rhs: Rights) {
        *self = self.union(rhs);
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, bit) in NAMES {
            if self.contains(bit) {
                if !first {
                    f.write_str(", ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Text that is not a list of IoT Hub rights.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RightsError {
    /// A name that is not one of the four rights.
    #[error("unknown right {name:?}; rights are RegistryRead, RegistryWrite, ServiceConnect and DeviceConnect, separated by commas")]
    Unknown {
        /// The name as written (at most 64 characters of it).
        name: String,
    },
}

impl FromStr for Rights {
    type Err = RightsError;
    fn from_str(s: &str) -> Result<Rights, RightsError> {
        let mut rights = Rights::NONE;
        if s.trim().is_empty() {
            return Ok(rights);
        }
        for part in s.split(',') {
            let part = part.trim();
            let bit = NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(part))
                .map(|(_, bit)| *bit)
                .ok_or_else(|| RightsError::Unknown {
                    name: part.chars().take(64).collect(),
                })?;
            rights |= bit;
        }
        Ok(rights)
    }
}

impl Serialize for Rights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rights, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_set_round_trips_through_text_and_json() {
        for bits in 0..=15u8 {
            let rights = Rights(bits);
            let text = rights.to_string();
            assert_eq!(text.parse::<Rights>().unwrap(), rights, "{text}");
            let json = serde_json::to_string(&rights).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Rights>(&json).unwrap(), rights);
        }
        assert_eq!(
            Rights::ALL.to_string(),
            "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"
        );
        assert_eq!(Rights::NONE.to_string(), "");
    }

    #[test]
    fn parsing_is_lenient_about_order_case_and_spaces() {
        assert_eq!(
            " deviceconnect ,REGISTRYWRITE".parse::<Rights>().unwrap(),
            Rights::DEVICE_CONNECT | Rights::REGISTRY_WRITE
        );
        assert_eq!(
            "ServiceConnect, ServiceConnect".parse::<Rights>().unwrap(),
            Rights::SERVICE_CONNECT
        );
    }

    #[test]
    fn unknown_names_are_refused_by_name() {
        let err = "RegistryRead, Admin".parse::<Rights>().unwrap_err();
        assert_eq!(
            err,
            RightsError::Unknown {
                name: "Admin".into()
            }
        );
        assert!(err.to_string().contains("RegistryRead, RegistryWrite"));
        assert!("RegistryRead,".parse::<Rights>().is_err());
        assert!(serde_json::from_str::<Rights>("\"Root\"").is_err());
        assert!(serde_json::from_str::<Rights>("3").is_err());
    }

    #[test]
    fn set_operations() {
        let rw = Rights::REGISTRY_READ | Rights::REGISTRY_WRITE;
        assert!(rw.contains(Rights::REGISTRY_READ));
        assert!(!rw.contains(Rights::REGISTRY_READ | Rights::SERVICE_CONNECT));
        assert!(rw.intersects(Rights::REGISTRY_READ | Rights::SERVICE_CONNECT));
        assert!(!rw.intersects(Rights::NONE));
        assert!(rw.contains(Rights::NONE));
        assert!(Rights::NONE.is_empty());
        assert_eq!(
            Rights::REGISTRY_READ
                | Rights::REGISTRY_WRITE
                | Rights::SERVICE_CONNECT
                | Rights::DEVICE_CONNECT,
            Rights::ALL
        );
    }
}
