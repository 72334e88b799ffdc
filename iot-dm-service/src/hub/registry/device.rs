//! Device identities: what the identity registry stores for each device.
//!
//! [`Device`] serializes in IoT Hub's device JSON shape (`deviceId`, `generationId`, `etag`,
//! `status`, `authentication`, ...) plus one field of ours, `lifecycle`, the device's place in the
//! plan / provision / configure / monitor / retire lifecycle.

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::{DeviceLifecycle, LifecycleState};
use iot_dm_core::twin::{
    AuthenticationType, Capabilities, ConnectionState, DeviceIdentity, DeviceStatus, ETag,
    X509Thumbprint,
};

use crate::hub::error::HubError;

/// A device's symmetric keys (base64).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeys {
    /// Primary key.
    pub primary_key: Option<String>,
    /// Secondary key.
    pub secondary_key: Option<String>,
}

impl std::fmt::Debug for SymmetricKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKeys(..)")
    }
}

/// How a device authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// Symmetric keys (type `sas`).
    #[serde(default)]
    pub symmetric_key: SymmetricKeys,
    /// Thumbprints (type `selfSigned`).
    #[serde(default)]
    pub x509_thumbprint: X509Thumbprint,
    /// The authentication type.
    #[serde(rename = "type", default)]
    pub kind: AuthenticationType,
}

impl Authentication {
    /// Symmetric-key authentication with the given keys.
    pub fn sas(primary: impl Into<String>, secondary: impl Into<String>) -> Authentication {
        Authentication {
            symmetric_key: SymmetricKeys {
                primary_key: Some(primary.into()),
                secondary_key: Some(secondary.into()),
            },
            x509_thumbprint: X509Thumbprint::default(),
            kind: AuthenticationType::Sas,
        }
    }

    /// Symmetric-key authentication with two fresh random 256-bit keys.
    pub fn generated_sas() -> Result<Authentication, HubError> {
        Ok(Authentication::sas(generate_key()?, generate_key()?))
    }

    /// Self-signed X.509 authentication by thumbprint.
    pub fn self_signed(primary: impl Into<String>, secondary: Option<String>) -> Authentication {
        Authentication {
            symmetric_key: SymmetricKeys::default(),
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: Some(primary.into()),
                secondary_thumbprint: secondary,
            },
            kind: AuthenticationType::SelfSigned,
        }
    }

    /// X.509 authentication by a certificate chained to a registered CA.
    pub fn certificate_authority() -> Authentication {
        Authentication {
            kind: AuthenticationType::CertificateAuthority,
            ..Authentication::default()
        }
    }

    /// No credentials: the device cannot connect.
    pub fn none() -> Authentication {
        Authentication {
            kind: AuthenticationType::None,
            ..Authentication::default()
        }
    }

    /// Fills in missing symmetric keys with fresh random ones (for type `sas`), and checks
    /// that what is given fits the type.
    pub(crate) fn complete(mut self) -> Result<Authentication, HubError> {
        match self.kind {
            AuthenticationType::Sas => {
                for (field, slot) in [
                    ("primaryKey", &mut self.symmetric_key.primary_key),
                    ("secondaryKey", &mut self.symmetric_key.secondary_key),
                ] {
                    match slot {
                        None => *slot = Some(generate_key()?),
                        Some(k) => check_key(field, k)?,
                    }
                }
            }
            AuthenticationType::SelfSigned => {
                match &self.x509_thumbprint.primary_thumbprint {
                    Some(t) => check_thumbprint("primaryThumbprint", t)?,
                    None => {
                        return Err(HubError::invalid(
                            "authentication.x509Thumbprint.primaryThumbprint",
                            "a self-signed device needs a primary thumbprint",
                        ))
                    }
                }
                if let Some(t) = &self.x509_thumbprint.secondary_thumbprint {
                    check_thumbprint("secondaryThumbprint", t)?;
                }
            }
            AuthenticationType::CertificateAuthority | AuthenticationType::None => {}
        }
        Ok(self)
    }
}

fn check_key(field: &str, key: &str) -> Result<(), HubError> {
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if (16..=64).contains(&bytes.len()) => Ok(()),
        Ok(bytes) => Err(HubError::invalid(
            format!("authentication.symmetricKey.{field}"),
            format!("key decodes to {} bytes, expected 16 to 64", bytes.len()),
        )),
        Err(_) => Err(HubError::invalid(
            format!("authentication.symmetricKey.{field}"),
            "key is not valid base64",
        )),
    }
}

fn check_thumbprint(field: &str, t: &str) -> Result<(), HubError> {
    if (t.len() == 40 || t.len() == 64) && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(HubError::invalid(
            format!("authentication.x509Thumbprint.{field}"),
            "a thumbprint is 40 (SHA-1) or 64 (SHA-256) hex digits",
        ))
    }
}

/// A fresh random 256-bit key, base64, from the operating system's CSPRNG.
pub fn generate_key() -> Result<String, HubError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| HubError::Internal {
        message: format!("no random numbers from the operating system: {e}"),
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A device identity in the registry.
///
/// The fields IoT Hub also prints in the twin (status, connection state, authentication type
/// and thumbprints, ...) are in [`Device::identity`], which the hub shares with the device's
/// twin; the symmetric keys, which no twin shows, are the device's alone. It serializes in
/// IoT Hub's device JSON shape, `authentication` object included.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// The device id.
    pub device_id: DeviceId,
    /// Distinguishes devices re-created with the same id.
    pub generation_id: String,
    /// The identity fields shared with the twin; its `etag` is the identity's ETag (base64 of
    /// a decimal counter, like IoT Hub's `MQ==`). Change it with [`Device::identity_mut`].
    pub identity: Arc<DeviceIdentity>,
    /// The symmetric keys (authentication type `sas`).
    pub symmetric_key: SymmetricKeys,
    /// The device's lifecycle state.
    pub lifecycle: DeviceLifecycle,
}

impl Device {
    pub(crate) fn new(
        device_id: DeviceId,
        authentication: Authentication,
        lifecycle: DeviceLifecycle,
        now: Timestamp,
    ) -> Result<Device, HubError> {
        let status = match lifecycle.state() {
            LifecycleState::Enabled => DeviceStatus::Enabled,
            _ => DeviceStatus::Disabled,
        };
        let Authentication {
            symmetric_key,
            x509_thumbprint,
            kind,
        } = authentication;
        Ok(Device {
            device_id,
            generation_id: generation_id(now)?,
            identity: Arc::new(DeviceIdentity {
                etag: Some(etag_of(1)),
                status,
                status_reason: lifecycle.status_reason().map(str::to_string),
                status_update_time: Some(now),
                connection_state: ConnectionState::Disconnected,
                connection_state_updated_time: None,
                last_activity_time: None,
                cloud_to_device_message_count: 0,
                authentication_type: kind,
                x509_thumbprint,
                capabilities: Capabilities::default(),
            }),
            symmetric_key,
            lifecycle,
        })
    }

    /// The identity, to change: copied first if the twin (or a reader) shares it.
    pub fn identity_mut(&mut self) -> &mut DeviceIdentity {
        Arc::make_mut(&mut self.identity)
    }

    /// The identity's ETag.
    pub fn etag(&self) -> &ETag {
        static NONE: LazyLock<ETag> = LazyLock::new(|| ETag::new(""));
        self.identity.etag.as_ref().unwrap_or(&NONE)
    }

    /// The credentials: the symmetric keys with the identity's authentication type and
    /// thumbprints.
    pub fn authentication(&self) -> Authentication {
        Authentication {
            symmetric_key: self.symmetric_key.clone(),
            x509_thumbprint: self.identity.x509_thumbprint.clone(),
            kind: self.identity.authentication_type,
        }
    }

    /// Replaces the credentials (keys, type and thumbprints).
    pub fn set_authentication(&mut self, authentication: Authentication) {
        let Authentication {
            symmetric_key,
            x509_thumbprint,
            kind,
        } = authentication;
        self.symmetric_key = symmetric_key;
        let identity = self.identity_mut();
        identity.authentication_type = kind;
        identity.x509_thumbprint = x509_thumbprint;
    }

    /// The lifecycle state.
    pub fn state(&self) -> LifecycleState {
        self.lifecycle.state()
    }

    /// The ETag counter, decoded.
    pub(crate) fn etag_counter(&self) -> u64 {
        base64::engine::general_purpose::STANDARD
            .decode(self.etag().as_str())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn bump_etag(&mut self) {
        let etag = etag_of(self.etag_counter() + 1);
        self.identity_mut().etag = Some(etag);
    }

    /// Whether an `If-Match` value accepts this identity's ETag.
    pub fn etag_matches(&self, if_match: &str) -> bool {
        self.etag().matches(if_match)
    }
}

fn etag_of(n: u64) -> ETag {
    ETag::new(base64::engine::general_purpose::STANDARD.encode(n.to_string()))
}

fn generation_id(now: Timestamp) -> Result<String, HubError> {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).map_err(|e| HubError::Internal {
        message: format!("no random numbers from the operating system: {e}"),
    })?;
    Ok(format!(
        "{}{:010}",
        now.ticks().max(0) / 10,
        u32::from_be_bytes(r)
    ))
}

/// The device JSON, as IoT Hub prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceOut<'a> {
    device_id: &'a DeviceId,
    generation_id: &'a str,
    etag: &'a ETag,
    status: DeviceStatus,
    status_reason: Option<&'a str>,
    status_updated_time: Option<Timestamp>,
    connection_state: ConnectionState,
    connection_state_updated_time: Option<Timestamp>,
    last_activity_time: Option<Timestamp>,
    cloud_to_device_message_count: u64,
    authentication: AuthenticationOut<'a>,
    capabilities: &'a Capabilities,
    lifecycle: &'a DeviceLifecycle,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationOut<'a> {
    symmetric_key: &'a SymmetricKeys,
    x509_thumbprint: &'a X509Thumbprint,
    #[serde(rename = "type")]
    kind: AuthenticationType,
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let id = &*self.identity;
        DeviceOut {
            device_id: &self.device_id,
            generation_id: &self.generation_id,
            etag: self.etag(),
            status: id.status,
            status_reason: id.status_reason.as_deref(),
            status_updated_time: id.status_update_time,
            connection_state: id.connection_state,
            connection_state_updated_time: id.connection_state_updated_time,
            last_activity_time: id.last_activity_time,
            cloud_to_device_message_count: id.cloud_to_device_message_count,
            authentication: AuthenticationOut {
                symmetric_key: &self.symmetric_key,
                x509_thumbprint: &id.x509_thumbprint,
                kind: id.authentication_type,
            },
            capabilities: &id.capabilities,
            lifecycle: &self.lifecycle,
        }
        .serialize(s)
    }
}

/// The device JSON, read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceIn {
    device_id: DeviceId,
    generation_id: String,
    etag: ETag,
    status: DeviceStatus,
    status_reason: Option<String>,
    status_updated_time: Option<Timestamp>,
    connection_state: ConnectionState,
    connection_state_updated_time: Option<Timestamp>,
    last_activity_time: Option<Timestamp>,
    cloud_to_device_message_count: u64,
    authentication: Authentication,
    #[serde(default)]
    capabilities: Capabilities,
    lifecycle: DeviceLifecycle,
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let d = DeviceIn::deserialize(d)?;
        let Authentication {
            symmetric_key,
            x509_thumbprint,
            kind,
        } = d.authentication;
        Ok(Device {
            device_id: d.device_id,
            generation_id: d.generation_id,
            identity: Arc::new(DeviceIdentity {
                etag: Some(d.etag),
                status: d.status,
                status_reason: d.status_reason,
                status_update_time: d.status_updated_time,
                connection_state: d.connection_state,
                connection_state_updated_time: d.connection_state_updated_time,
                last_activity_time: d.last_activity_time,
                cloud_to_device_message_count: d.cloud_to_device_message_count,
                authentication_type: kind,
                x509_thumbprint,
                capabilities: d.capabilities,
            }),
            symmetric_key,
            lifecycle: d.lifecycle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_decode() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&a)
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn complete_fills_and_checks() {
        let auth = Authentication {
            kind: AuthenticationType::Sas,
            ..Default::default()
        }
        .complete()
        .unwrap();
        assert!(auth.symmetric_key.primary_key.is_some());
        assert!(auth.symmetric_key.secondary_key.is_some());
        let bad = Authentication::sas("not base64!", "AAAAAAAAAAAAAAAAAAAAAA==").complete();
        assert!(matches!(bad, Err(HubError::InvalidInput { .. })));
        let bad = Authentication::self_signed("xyz", None).complete();
        assert!(matches!(bad, Err(HubError::InvalidInput { .. })));
        assert!(Authentication::self_signed("ab".repeat(20), None)
            .complete()
            .is_ok());
    }

    #[test]
    fn etag_counts_like_iot_hub() {
        assert_eq!(etag_of(1), "MQ==");
    }
}
