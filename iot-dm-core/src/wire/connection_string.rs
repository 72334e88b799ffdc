//! Connection strings: `Key=value` pairs separated by `;`.
//!
//! * device: `HostName=..;DeviceId=..;SharedAccessKey=..`, optionally `ModuleId=..`,
//!   `GatewayHostName=..` (IoT Edge) and `SharedAccessKeyName=..` (a policy key with
//!   DeviceConnect); instead of a key, `x509=true` or a ready-made `SharedAccessSignature=..`;
//! * service: `HostName=..;SharedAccessKeyName=..;SharedAccessKey=..`.
//!
//! Each pair is split at its first `=` (keys are base64 and end in `=` padding). Key names
//! are matched case-insensitively and written back in their canonical spelling. An empty
//! pair (a trailing `;`) is ignored.

use std::fmt;
use std::str::FromStr;

use super::encoding::shown_name;
use super::key::{KeyError, SymmetricKey};
use super::sas::{SasError, SasToken};
use crate::clock::Timestamp;
use crate::identity::IdError;

/// A connection string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// A pair has no `=`.
    #[error("connection string part {index} ({len} characters) has no `=`; parts are Key=value")]
    MalformedPart {
        /// Position of the part (0-based).
        index: usize,
        /// Its length (the text itself may be a key, so it is not kept).
        len: usize,
    },
    /// A pair has an empty key (`=value`).
    #[error("connection string part {index} has an empty key")]
    EmptyKey {
        /// Position of the part (0-based).
        index: usize,
    },
    /// A key is not a connection-string key, or not one this kind of string allows.
    #[error("connection string key {key} is not allowed in a {kind} connection string; allowed are {allowed}")]
    UnexpectedKey {
        /// The key as written, or `<N characters>` when it may be a secret.
        key: String,
        /// `device` or `service`.
        kind: &'static str,
        /// The keys allowed.
        allowed: &'static str,
    },
    /// A key appears twice.
    #[error("connection string key {key} appears more than once; it may appear once")]
    DuplicateKey {
        /// The canonical key name.
        key: &'static str,
    },
    /// A key has an empty value.
    #[error("connection string key {key} has an empty value")]
    EmptyValue {
        /// The canonical key name.
        key: &'static str,
    },
    /// A required key is missing.
    #[error("connection string lacks the required key {key}")]
    MissingKey {
        /// The canonical key name (or the alternatives).
        key: &'static str,
    },
    /// Two keys that exclude each other are both present.
    #[error("connection string has both {first} and {second}; use one authentication scheme")]
    Conflict {
        /// The first key.
        first: &'static str,
        /// The second key.
        second: &'static str,
    },
    /// `x509` is not `true`.
    #[error("connection string x509 is {value:?}; the only accepted value is true")]
    InvalidX509 {
        /// The value as written.
        value: String,
    },
    /// `DeviceId` is not a valid device id.
    #[error("connection string DeviceId: {source}")]
    InvalidDeviceId {
        /// Why the id is invalid.
        source: IdError,
    },
    /// `ModuleId` is not a valid module id.
    #[error("connection string ModuleId: {source}")]
    InvalidModuleId {
        /// Why the id is invalid.
        source: IdError,
    },
    /// `SharedAccessKey` is not a valid key.
    #[error("connection string SharedAccessKey: {source}")]
    InvalidKey {
        /// Why the key is invalid.
        source: KeyError,
    },
    /// `SharedAccessSignature` is not a valid SAS token.
    #[error("connection string SharedAccessSignature: {source}")]
    InvalidSas {
        /// Why the token is invalid.
        source: SasError,
    },
    /// A SAS token was asked of a connection string without a shared access key.
    #[error(
        "connection string has no SharedAccessKey to sign a SAS token with (it uses {scheme})"
    )]
    NoSharedAccessKey {
        /// The scheme it uses instead: `x509` or `SharedAccessSignature`.
        scheme: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    HostName,
    DeviceId,
    ModuleId,
    SharedAccessKeyName,
    SharedAccessKey,
    SharedAccessSignature,
    X509,
    GatewayHostName,
}

impl Field {
    pub(super) const ALL: [Field; 8] = [
        Field::HostName,
        Field::DeviceId,
        Field::ModuleId,
        Field::SharedAccessKeyName,
        Field::SharedAccessKey,
        Field::SharedAccessSignature,
        Field::X509,
        Field::GatewayHostName,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Field::HostName => "HostName",
            Field::DeviceId => "DeviceId",
            Field::ModuleId => "ModuleId",
            Field::SharedAccessKeyName => "SharedAccessKeyName",
            Field::SharedAccessKey => "SharedAccessKey",
            Field::SharedAccessSignature => "SharedAccessSignature",
            Field::X509 => "x509",
            Field::GatewayHostName => "GatewayHostName",
        }
    }
}

pub(super) const DEVICE_KEYS: &str =
    "HostName, DeviceId, ModuleId, SharedAccessKey, SharedAccessKeyName, SharedAccessSignature, x509, GatewayHostName";
const SERVICE_KEYS: &str = "HostName, SharedAccessKeyName, SharedAccessKey";

/// The parsed `Key=value` parts, indexed by [`Field`].
pub(super) struct Parts<'a>([Option<&'a str>; 8]);

impl<'a> Parts<'a> {
    pub(super) fn parse(
        s: &'a str,
        kind: &'static str,
        allowed_names: &'static str,
        allowed: &[Field],
    ) -> Result<Parts<'a>, ConnectionStringError> {
        let mut parts = Parts([None; 8]);
        for (index, part) in s.split(';').filter(|p| !p.is_empty()).enumerate() {
            let (key, value) =
                part.split_once('=')
                    .ok_or(ConnectionStringError::MalformedPart {
                        index,
                        len: part.len(),
                    })?;
            if key.is_empty() {
                return Err(ConnectionStringError::EmptyKey { index });
            }
            let (i, field) = Field::ALL
                .iter()
                .enumerate()
                .find(|(_, f)| f.name().eq_ignore_ascii_case(key) && allowed.contains(f))
                .ok_or_else(|| ConnectionStringError::UnexpectedKey {
                    key: shown_name(key),
                    kind,
                    allowed: allowed_names,
                })?;
            let slot = parts
                .0
                .get_mut(i)
                .ok_or(ConnectionStringError::EmptyKey { index })?;
            if slot.is_some() {
                return Err(ConnectionStringError::DuplicateKey { key: field.name() });
            }
            if value.is_empty() {
                return Err(ConnectionStringError::EmptyValue { key: field.name() });
            }
            *slot = Some(value);
        }
        Ok(parts)
    }

    pub(super) fn get(&self, field: Field) -> Option<&'a str> {
        Field::ALL
            .iter()
            .position(|f| *f == field)
            .and_then(|i| self.0.get(i).copied().flatten())
    }

    pub(super) fn require(&self, field: Field) -> Result<&'a str, ConnectionStringError> {
        self.get(field)
            .ok_or(ConnectionStringError::MissingKey { key: field.name() })
    }
}

/// A service (shared access policy) connection string.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::wire::ServiceConnectionString;
/// let cs: ServiceConnectionString =
///     "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=".parse()?;
/// assert_eq!(cs.key_name(), "iothubowner");
/// let token = cs.sas_token(Timestamp::from_unix_secs(1_700_003_600));
/// assert_eq!(token.key_name(), Some("iothubowner"));
/// assert_eq!(token.resource_uri(), "myhub.azure-devices.net");
/// # Ok::<(), iot_dm_core::wire::ConnectionStringError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConnectionString {
    host_name: String,
    key_name: String,
    key: SymmetricKey,
}

impl ServiceConnectionString {
    /// Parses a service connection string.
    pub fn parse(s: &str) -> Result<ServiceConnectionString, ConnectionStringError> {
        let parts = Parts::parse(
            s,
            "service",
            SERVICE_KEYS,
            &[
                Field::HostName,
                Field::SharedAccessKeyName,
                Field::SharedAccessKey,
            ],
        )?;
        Ok(ServiceConnectionString {
            host_name: parts.require(Field::HostName)?.to_string(),
            key_name: parts.require(Field::SharedAccessKeyName)?.to_string(),
            key: SymmetricKey::new(parts.require(Field::SharedAccessKey)?)
                .map_err(|source| ConnectionStringError::InvalidKey { source })?,
        })
    }

    /// The hub host name.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The shared access policy name.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The policy key.
    pub fn key(&self) -> &SymmetricKey {
        &self.key
    }

    /// A hub-wide SAS token (`sr={host}`, `skn={policy}`) that expires at `expiry`.
    pub fn sas_token(&self, expiry: Timestamp) -> SasToken {
        SasToken::generate(&self.host_name, &self.key, expiry, Some(&self.key_name))
    }
}

impl fmt::Display for ServiceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host_name,
            self.key_name,
            self.key.expose_base64()
        )
    }
}

impl FromStr for ServiceConnectionString {
    type Err = ConnectionStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceConnectionString::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";

    #[test]
    fn sas_token_matches_the_python_sdk() {
        // the policy known-answer token in the sas module, made by azure-iot-device 2.14.0
        let expiry = Timestamp::from_unix_secs(1_700_003_600);
        let service = ServiceConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(
            service.sas_token(expiry).as_str(),
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=nKsCZYCUq%2FLS3GhvH1GwrXYMCqfCyLGHlBLBKh%2BOgO0%3D&se=1700003600&skn=iothubowner"
        );
    }

    #[test]
    fn service_forms_and_errors() {
        let s = format!(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={KEY}"
        );
        let cs = ServiceConnectionString::parse(&s).unwrap();
        assert_eq!(cs.to_string(), s);
        assert_eq!(cs.host_name(), "myhub.azure-devices.net");
        assert_eq!(cs.key().expose_base64(), KEY);
        // order does not matter
        let reordered = format!(
            "SharedAccessKey={KEY};SharedAccessKeyName=service;HostName=myhub.azure-devices.net"
        );
        assert_eq!(ServiceConnectionString::parse(&reordered).unwrap(), cs);
        assert_eq!(
            ServiceConnectionString::parse(&format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}")),
            Err(ConnectionStringError::UnexpectedKey {
                key: "DeviceId".to_string(),
                kind: "service",
                allowed: SERVICE_KEYS,
            })
        );
        assert_eq!(
            ServiceConnectionString::parse(&format!("HostName=h;SharedAccessKey={KEY}")),
            Err(ConnectionStringError::MissingKey {
                key: "SharedAccessKeyName"
            })
        );
        assert_eq!(
            ServiceConnectionString::parse("HostName=h;SharedAccessKeyName=p"),
            Err(ConnectionStringError::MissingKey {
                key: "SharedAccessKey"
            })
        );
        // a key pasted without its name is not echoed in the error, with or without padding
        let err = ServiceConnectionString::parse(&format!("HostName=h;{KEY}")).unwrap_err();
        assert_eq!(
            err,
            ConnectionStringError::UnexpectedKey {
                key: "<43 characters>".to_string(),
                kind: "service",
                allowed: SERVICE_KEYS,
            }
        );
        assert!(!err.to_string().contains("aW90"));
        let unpadded = KEY.trim_end_matches('=');
        let err = ServiceConnectionString::parse(&format!("HostName=h;{unpadded}")).unwrap_err();
        assert_eq!(
            err,
            ConnectionStringError::MalformedPart { index: 1, len: 43 }
        );
        assert!(!err.to_string().contains("aW90"));
    }
}
