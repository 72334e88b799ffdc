//! Device and module connection strings: [`DeviceConnectionString`].

use std::fmt;
use std::str::FromStr;

use super::connection_string::{ConnectionStringError, Field, Parts, DEVICE_KEYS};
use super::key::SymmetricKey;
use super::sas::SasToken;
use super::sas_verify::{device_resource_uri, module_resource_uri};
use crate::clock::Timestamp;
use crate::identity::{DeviceId, ModuleId};

/// How a device authenticates.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceCredential {
    /// `SharedAccessKey=..` (with `SharedAccessKeyName` when it is a policy key).
    SharedAccessKey {
        /// The key.
        key: SymmetricKey,
        /// The policy name, for a policy key with DeviceConnect.
        key_name: Option<String>,
    },
    /// `SharedAccessSignature=..`: a token made elsewhere; it cannot be renewed.
    SharedAccessSignature(SasToken),
    /// `x509=true`: the device presents a client certificate.
    X509,
}

impl fmt::Debug for DeviceCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceCredential::SharedAccessKey { key, key_name } => f
                .debug_struct("SharedAccessKey")
                .field("key", key)
                .field("key_name", key_name)
                .finish(),
            DeviceCredential::SharedAccessSignature(token) => {
                f.debug_tuple("SharedAccessSignature").field(token).finish()
            }
            DeviceCredential::X509 => f.write_str("X509"),
        }
    }
}

/// A device or module connection string.
///
/// `Display` writes it back (key included); `Debug` never shows the key.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::wire::DeviceConnectionString;
/// let cs: DeviceConnectionString =
///     "HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=".parse()?;
/// assert_eq!(cs.host_name(), "myhub.azure-devices.net");
/// assert_eq!(cs.device_id().as_str(), "dev-01");
/// assert!(!format!("{cs:?}").contains("aW90"));
/// let token = cs.sas_token(Timestamp::from_unix_secs(1_700_003_600))?;
/// assert_eq!(token.resource_uri(), "myhub.azure-devices.net/devices/dev-01");
/// # Ok::<(), iot_dm_core::wire::ConnectionStringError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConnectionString {
    host_name: String,
    device_id: DeviceId,
    module_id: Option<ModuleId>,
    gateway_host_name: Option<String>,
    credential: DeviceCredential,
}

impl DeviceConnectionString {
    /// Parses a device or module connection string.
    pub fn parse(s: &str) -> Result<DeviceConnectionString, ConnectionStringError> {
        let parts = Parts::parse(s, "device", DEVICE_KEYS, &Field::ALL)?;
        let host_name = parts.require(Field::HostName)?.to_string();
        let device_id = DeviceId::new(parts.require(Field::DeviceId)?)
            .map_err(|source| ConnectionStringError::InvalidDeviceId { source })?;
        let module_id = parts
            .get(Field::ModuleId)
            .map(ModuleId::new)
            .transpose()
            .map_err(|source| ConnectionStringError::InvalidModuleId { source })?;
        let key = parts.get(Field::SharedAccessKey);
        let sas = parts.get(Field::SharedAccessSignature);
        let x509 = parts.get(Field::X509);
        let key_name = parts.get(Field::SharedAccessKeyName);
        let credential = match (key, sas, x509) {
            (Some(key), None, None) => DeviceCredential::SharedAccessKey {
                key: SymmetricKey::new(key)
                    .map_err(|source| ConnectionStringError::InvalidKey { source })?,
                key_name: key_name.map(str::to_string),
            },
            (None, Some(sas), None) => DeviceCredential::SharedAccessSignature(
                SasToken::parse(sas)
                    .map_err(|source| ConnectionStringError::InvalidSas { source })?,
            ),
            (None, None, Some(x509)) => {
                if !x509.eq_ignore_ascii_case("true") {
                    return Err(ConnectionStringError::InvalidX509 {
                        value: x509.to_string(),
                    });
                }
                DeviceCredential::X509
            }
            (None, None, None) => {
                return Err(ConnectionStringError::MissingKey {
                    key: "SharedAccessKey, SharedAccessSignature or x509",
                })
            }
            (Some(_), Some(_), _) => {
                return Err(conflict(
                    Field::SharedAccessKey,
                    Field::SharedAccessSignature,
                ))
            }
            (Some(_), None, Some(_)) => return Err(conflict(Field::SharedAccessKey, Field::X509)),
            (None, Some(_), Some(_)) => {
                return Err(conflict(Field::SharedAccessSignature, Field::X509))
            }
        };
        if key_name.is_some() && key.is_none() {
            return Err(ConnectionStringError::MissingKey {
                key: "SharedAccessKey",
            });
        }
        Ok(DeviceConnectionString {
            host_name,
            device_id,
            module_id,
            gateway_host_name: parts.get(Field::GatewayHostName).map(str::to_string),
            credential,
        })
    }

    /// The hub host name.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// The module id, for module connection strings.
    pub fn module_id(&self) -> Option<&ModuleId> {
        self.module_id.as_ref()
    }

    /// The gateway (IoT Edge) to connect through, if any.
    pub fn gateway_host_name(&self) -> Option<&str> {
        self.gateway_host_name.as_deref()
    }

    /// The host to open the connection to: the gateway if there is one, else the hub.
    pub fn connect_host(&self) -> &str {
        self.gateway_host_name.as_deref().unwrap_or(&self.host_name)
    }

    /// How the device authenticates.
    pub fn credential(&self) -> &DeviceCredential {
        &self.credential
    }

    /// The resource URI a token for this identity signs (`{host}/devices/{id}[/modules/{m}]`).
    pub fn resource_uri(&self) -> String {
        match &self.module_id {
            Some(m) => module_resource_uri(&self.host_name, &self.device_id, m),
            None => device_resource_uri(&self.host_name, &self.device_id),
        }
    }

    /// A SAS token for this identity that expires at `expiry`, signed with the shared access
    /// key (and naming its policy, if the string has `SharedAccessKeyName`).
    pub fn sas_token(&self, expiry: Timestamp) -> Result<SasToken, ConnectionStringError> {
        match &self.credential {
            DeviceCredential::SharedAccessKey { key, key_name } => Ok(SasToken::generate(
                &self.resource_uri(),
                key,
                expiry,
                key_name.as_deref(),
            )),
            DeviceCredential::SharedAccessSignature(_) => {
                Err(ConnectionStringError::NoSharedAccessKey {
                    scheme: "SharedAccessSignature",
                })
            }
            DeviceCredential::X509 => {
                Err(ConnectionStringError::NoSharedAccessKey { scheme: "x509" })
            }
        }
    }
}

fn conflict(first: Field, second: Field) -> ConnectionStringError {
    ConnectionStringError::Conflict {
        first: first.name(),
        second: second.name(),
    }
}

impl fmt::Display for DeviceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={};DeviceId={}", self.host_name, self.device_id)?;
        if let Some(m) = &self.module_id {
            write!(f, ";ModuleId={m}")?;
        }
        match &self.credential {
            DeviceCredential::SharedAccessKey { key, key_name } => {
                if let Some(name) = key_name {
                    write!(f, ";SharedAccessKeyName={name}")?;
                }
                write!(f, ";SharedAccessKey={}", key.expose_base64())?;
            }
            DeviceCredential::SharedAccessSignature(token) => {
                write!(f, ";SharedAccessSignature={token}")?;
            }
            DeviceCredential::X509 => f.write_str(";x509=true")?,
        }
        if let Some(g) = &self.gateway_host_name {
            write!(f, ";GatewayHostName={g}")?;
        }
        Ok(())
    }
}

impl FromStr for DeviceConnectionString {
    type Err = ConnectionStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceConnectionString::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{KeyError, SasError, ServiceConnectionString};

    const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";

    #[test]
    fn device_forms_round_trip() {
        for s in [
            format!("HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey={KEY}"),
            format!("HostName=myhub.azure-devices.net;DeviceId=dev-01;ModuleId=mod-a;SharedAccessKey={KEY}"),
            format!("HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey={KEY};GatewayHostName=edge.local"),
            "HostName=myhub.azure-devices.net;DeviceId=dev-01;x509=true".to_string(),
            format!("HostName=h;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey={KEY}"),
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h%2Fdevices%2Fd&sig=YQ%3D%3D&se=1".to_string(),
        ] {
            let cs = DeviceConnectionString::parse(&s).unwrap();
            assert_eq!(cs.to_string(), s);
        }
    }

    #[test]
    fn device_accessors() {
        let cs = DeviceConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=dev-01;ModuleId=mod-a;SharedAccessKey={KEY};GatewayHostName=edge.local"
        ))
        .unwrap();
        assert_eq!(cs.host_name(), "myhub.azure-devices.net");
        assert_eq!(cs.device_id().as_str(), "dev-01");
        assert_eq!(cs.module_id().map(ModuleId::as_str), Some("mod-a"));
        assert_eq!(cs.gateway_host_name(), Some("edge.local"));
        assert_eq!(cs.connect_host(), "edge.local");
        assert_eq!(
            cs.resource_uri(),
            "myhub.azure-devices.net/devices/dev-01/modules/mod-a"
        );
        assert!(matches!(
            cs.credential(),
            DeviceCredential::SharedAccessKey { key_name: None, .. }
        ));
    }

    #[test]
    fn sas_tokens_match_the_python_sdk() {
        // same key, URIs and expiry as the known-answer tokens in the sas module, which were
        // made by azure-iot-device 2.14.0's own signing code
        let expiry = Timestamp::from_unix_secs(1_700_003_600);
        let device = DeviceConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(
            device.sas_token(expiry).unwrap().as_str(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-01&sig=0iGabkV1sBjyXS9lI%2Bu2bEWSiuBRGfp7Sdwom%2Fl9FsM%3D&se=1700003600"
        );
        let module = DeviceConnectionString::parse(&format!(
            "HostName=myhub.azure-devices.net;DeviceId=dev-01;ModuleId=mod-a;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(
            module.sas_token(expiry).unwrap().as_str(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-01%2Fmodules%2Fmod-a&sig=qPLNuP5fdyvZclABxucaAJuatWkEh3SE5v%2FKQuhZpHI%3D&se=1700003600"
        );
        // a policy key with DeviceConnect names its policy
        let policy = DeviceConnectionString::parse(&format!(
            "HostName=h;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(policy.sas_token(expiry).unwrap().key_name(), Some("device"));
    }

    #[test]
    fn no_key_no_token() {
        let x509 = DeviceConnectionString::parse("HostName=h;DeviceId=d;x509=TRUE").unwrap();
        assert_eq!(x509.credential(), &DeviceCredential::X509);
        assert_eq!(
            x509.sas_token(Timestamp::EPOCH),
            Err(ConnectionStringError::NoSharedAccessKey { scheme: "x509" })
        );
        let sas = DeviceConnectionString::parse(
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h&sig=YQ==&se=1",
        )
        .unwrap();
        assert!(matches!(
            sas.sas_token(Timestamp::EPOCH),
            Err(ConnectionStringError::NoSharedAccessKey {
                scheme: "SharedAccessSignature"
            })
        ));
    }

    #[test]
    fn splits_on_the_first_equals_and_ignores_key_case() {
        let cs =
            DeviceConnectionString::parse("hostname=h;deviceid=d;sharedaccesskey=YWI=;").unwrap();
        assert_eq!(cs.to_string(), "HostName=h;DeviceId=d;SharedAccessKey=YWI=");
        let DeviceCredential::SharedAccessKey { key, .. } = cs.credential() else {
            panic!()
        };
        assert_eq!(key.expose_base64(), "YWI=");
    }

    #[test]
    fn debug_never_shows_keys() {
        let cs =
            DeviceConnectionString::parse(&format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}"))
                .unwrap();
        let s = ServiceConnectionString::parse(&format!(
            "HostName=h;SharedAccessKeyName=p;SharedAccessKey={KEY}"
        ))
        .unwrap();
        let sas = DeviceConnectionString::parse(
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h&sig=c2VjcmV0c2ln&se=1",
        )
        .unwrap();
        for debug in [format!("{cs:?}"), format!("{s:#?}"), format!("{sas:?}")] {
            assert!(!debug.contains("aW90"), "{debug}");
            assert!(!debug.contains("c2VjcmV0c2ln"), "{debug}");
        }
    }

    #[test]
    fn device_errors() {
        let cases: Vec<(String, ConnectionStringError)> = vec![
            (
                "HostName=h;DeviceId".to_string(),
                ConnectionStringError::MalformedPart { index: 1, len: 8 },
            ),
            (
                "HostName=h;=d".to_string(),
                ConnectionStringError::EmptyKey { index: 1 },
            ),
            (
                "HostName=h;DeviceId=d;Foo=1;x509=true".to_string(),
                ConnectionStringError::UnexpectedKey {
                    key: "Foo".to_string(),
                    kind: "device",
                    allowed: DEVICE_KEYS,
                },
            ),
            (
                "HostName=h;DeviceId=d;DeviceId=e;x509=true".to_string(),
                ConnectionStringError::DuplicateKey { key: "DeviceId" },
            ),
            (
                "HostName=;DeviceId=d;x509=true".to_string(),
                ConnectionStringError::EmptyValue { key: "HostName" },
            ),
            (
                "DeviceId=d;x509=true".to_string(),
                ConnectionStringError::MissingKey { key: "HostName" },
            ),
            (
                "HostName=h;x509=true".to_string(),
                ConnectionStringError::MissingKey { key: "DeviceId" },
            ),
            (
                "HostName=h;DeviceId=d".to_string(),
                ConnectionStringError::MissingKey {
                    key: "SharedAccessKey, SharedAccessSignature or x509",
                },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};x509=true"),
                ConnectionStringError::Conflict {
                    first: "SharedAccessKey",
                    second: "x509",
                },
            ),
            (
                "HostName=h;DeviceId=d;x509=false".to_string(),
                ConnectionStringError::InvalidX509 {
                    value: "false".to_string(),
                },
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKeyName=p;x509=true".to_string(),
                ConnectionStringError::MissingKey {
                    key: "SharedAccessKey",
                },
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=not base64".to_string(),
                ConnectionStringError::InvalidKey {
                    source: KeyError::InvalidBase64 { len: 10 },
                },
            ),
        ];
        for (s, expected) in cases {
            assert_eq!(DeviceConnectionString::parse(&s), Err(expected), "{s}");
        }
        assert!(matches!(
            DeviceConnectionString::parse("HostName=h;DeviceId=a b;x509=true"),
            Err(ConnectionStringError::InvalidDeviceId { .. })
        ));
        assert!(matches!(
            DeviceConnectionString::parse("HostName=h;DeviceId=d;ModuleId=a/b;x509=true"),
            Err(ConnectionStringError::InvalidModuleId { .. })
        ));
        assert!(matches!(
            DeviceConnectionString::parse("HostName=h;DeviceId=d;SharedAccessSignature=nope"),
            Err(ConnectionStringError::InvalidSas {
                source: SasError::NotASasToken
            })
        ));
    }
}
