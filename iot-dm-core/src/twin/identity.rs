//! The device identity a twin shows: one record the registry's device and the device's twin
//! share.
//!
//! IoT Hub prints the same identity fields in two shapes: the device JSON of the identity
//! registry (`etag`, `statusUpdatedTime`, `connectionStateUpdatedTime`, an `authentication`
//! object) and the twin JSON (`deviceEtag`, `statusUpdateTime`, `authenticationType`,
//! `x509Thumbprint`). [`DeviceIdentity`] holds those fields once; a [`Twin`](super::Twin) and
//! a registry device each hold it behind an [`Arc`], so a hub keeps one copy per device and a
//! change to the identity is seen by both views. The symmetric keys are not part of it: they
//! never appear in a twin.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

use super::ETag;
use crate::binary::{put_opt_str, put_opt_time, put_u8, put_varint, BinaryError, Reader};
use crate::clock::Timestamp;

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// The device may connect.
    #[default]
    Enabled,
    /// The device is refused.
    Disabled,
}

impl DeviceStatus {
    /// `enabled` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Enabled => "enabled",
            DeviceStatus::Disabled => "disabled",
        }
    }

    /// Reads the status [`DeviceStatus::write_binary`] stores.
    pub fn read_binary(r: &mut Reader<'_>, field: &'static str) -> Result<Self, BinaryError> {
        match r.u8(field)? {
            0 => Ok(DeviceStatus::Enabled),
            1 => Ok(DeviceStatus::Disabled),
            b => Err(BinaryError::invalid(field, format!("unknown status {b}"))),
        }
    }

    /// Appends the status as one byte.
    pub fn write_binary(self, out: &mut Vec<u8>) {
        put_u8(
            out,
            match self {
                DeviceStatus::Enabled => 0,
                DeviceStatus::Disabled => 1,
            },
        );
    }
}

/// Whether the device has a live session with the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum ConnectionState {
    /// No live session.
    #[default]
    Disconnected,
    /// A live session.
    Connected,
}

impl ConnectionState {
    /// `Connected` or `Disconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connected => "Connected",
            ConnectionState::Disconnected => "Disconnected",
        }
    }
}

impl<'de> Deserialize<'de> for ConnectionState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // IoT Hub prints `Connected`; some documentation samples use lower case
        let s = String::deserialize(d)?;
        if s.eq_ignore_ascii_case("connected") {
            Ok(ConnectionState::Connected)
        } else if s.eq_ignore_ascii_case("disconnected") {
            Ok(ConnectionState::Disconnected)
        } else {
            Err(serde::de::Error::custom(format!(
                "connectionState must be Connected or Disconnected, found {s:?}"
            )))
        }
    }
}

/// How a device authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthenticationType {
    /// Shared access signature from a symmetric key.
    #[default]
    Sas,
    /// A self-signed X.509 certificate, matched by thumbprint.
    SelfSigned,
    /// An X.509 certificate chained to a registered CA.
    CertificateAuthority,
    /// No credentials (a planned device).
    None,
}

impl AuthenticationType {
    /// `sas`, `selfSigned`, `certificateAuthority` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticationType::Sas => "sas",
            AuthenticationType::SelfSigned => "selfSigned",
            AuthenticationType::CertificateAuthority => "certificateAuthority",
            AuthenticationType::None => "none",
        }
    }

    /// Reads the type [`AuthenticationType::write_binary`] stores.
    pub fn read_binary(r: &mut Reader<'_>, field: &'static str) -> Result<Self, BinaryError> {
        match r.u8(field)? {
            0 => Ok(AuthenticationType::Sas),
            1 => Ok(AuthenticationType::SelfSigned),
            2 => Ok(AuthenticationType::CertificateAuthority),
            3 => Ok(AuthenticationType::None),
            b => Err(BinaryError::invalid(
                field,
                format!("unknown authentication type {b}"),
            )),
        }
    }

    /// Appends the type as one byte.
    pub fn write_binary(self, out: &mut Vec<u8>) {
        put_u8(
            out,
            match self {
                AuthenticationType::Sas => 0,
                AuthenticationType::SelfSigned => 1,
                AuthenticationType::CertificateAuthority => 2,
                AuthenticationType::None => 3,
            },
        );
    }
}

/// X.509 thumbprints of a self-signed device (hex SHA-1 or SHA-256 of the DER certificate).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    /// Primary certificate thumbprint.
    pub primary_thumbprint: Option<String>,
    /// Secondary certificate thumbprint.
    pub secondary_thumbprint: Option<String>,
}

/// Device capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Whether the device is an edge gateway.
    #[serde(default)]
    pub iot_edge: bool,
}

/// A layout of the binary form of a [`DeviceIdentity`] (and so of a twin's, which embeds
/// it), for reading what earlier versions stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdentityLayout {
    /// The layout of twins stored before the identity was shared with the registry's device:
    /// no `connectionStateUpdatedTime`, which then lived with the device alone.
    V1,
    /// The current layout, which [`DeviceIdentity::write_binary`] writes.
    #[default]
    V2,
}

/// The identity fields a registry device and its twin share (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceIdentity {
    /// The identity's ETag: the device JSON's `etag`, the twin JSON's `deviceEtag`. `None`
    /// for a twin of no registered device.
    pub etag: Option<ETag>,
    /// Whether the device may connect.
    pub status: DeviceStatus,
    /// Why the status was set.
    pub status_reason: Option<String>,
    /// When the status last changed (`statusUpdatedTime` of the device JSON,
    /// `statusUpdateTime` of the twin JSON).
    pub status_update_time: Option<Timestamp>,
    /// Whether the device has a live session.
    pub connection_state: ConnectionState,
    /// When the connection state last changed (device JSON only).
    pub connection_state_updated_time: Option<Timestamp>,
    /// When the device was last active. A hub moves it at most once a second while a device
    /// is busy (a burst of reported patches), since every change copies the shared record.
    pub last_activity_time: Option<Timestamp>,
    /// Cloud-to-device messages queued for the device.
    pub cloud_to_device_message_count: u64,
    /// How the device authenticates.
    pub authentication_type: AuthenticationType,
    /// X.509 thumbprints (type `selfSigned`).
    pub x509_thumbprint: X509Thumbprint,
    /// Device capabilities.
    pub capabilities: Capabilities,
}

static DEFAULT: LazyLock<Arc<DeviceIdentity>> =
    LazyLock::new(|| Arc::new(DeviceIdentity::default()));

impl DeviceIdentity {
    /// The default identity, shared: every twin made without an identity of its own points
    /// at this one allocation until its identity is first changed.
    pub fn shared_default() -> Arc<DeviceIdentity> {
        Arc::clone(&DEFAULT)
    }

    /// Appends the identity's compact binary form (see [`crate::binary`]):
    /// [`DeviceIdentity::read_binary`] reads it back equal.
    ///
    /// Fields in order: ETag, status, status reason, status update time, connection state,
    /// connection state update time, last activity time, cloud-to-device message count,
    /// authentication type, the two thumbprints, capabilities.
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        self.write_binary_in(out, IdentityLayout::default());
    }

    /// [`DeviceIdentity::write_binary`] in `layout` (the first layout only for tests of the
    /// readers of what earlier versions stored).
    pub(crate) fn write_binary_in(&self, out: &mut Vec<u8>, layout: IdentityLayout) {
        put_opt_str(out, self.etag.as_ref().map(ETag::as_str));
        self.status.write_binary(out);
        put_opt_str(out, self.status_reason.as_deref());
        put_opt_time(out, self.status_update_time);
        put_u8(
            out,
            u8::from(self.connection_state == ConnectionState::Connected),
        );
        if layout == IdentityLayout::V2 {
            put_opt_time(out, self.connection_state_updated_time);
        }
        put_opt_time(out, self.last_activity_time);
        put_varint(out, self.cloud_to_device_message_count);
        self.authentication_type.write_binary(out);
        put_opt_str(out, self.x509_thumbprint.primary_thumbprint.as_deref());
        put_opt_str(out, self.x509_thumbprint.secondary_thumbprint.as_deref());
        put_u8(out, u8::from(self.capabilities.iot_edge));
    }

    /// Reads an identity stored in `layout`, leaving the reader after it. The
    /// [`IdentityLayout::V1`] layout has no connection state update time; it reads as `None`.
    ///
    /// ```
    /// use iot_dm_core::binary::Reader;
    /// use iot_dm_core::twin::{DeviceIdentity, IdentityLayout};
    ///
    /// let mut identity = DeviceIdentity::default();
    /// identity.status_reason = Some("maintenance".into());
    /// let mut out = Vec::new();
    /// identity.write_binary(&mut out);
    /// let back = DeviceIdentity::read_binary(&mut Reader::new(&out), IdentityLayout::V2)?;
    /// assert_eq!(back, identity);
    /// # Ok::<(), iot_dm_core::binary::BinaryError>(())
    /// ```
    pub fn read_binary(
        r: &mut Reader<'_>,
        layout: IdentityLayout,
    ) -> Result<DeviceIdentity, BinaryError> {
        let etag = r.opt_str("identity.etag")?.map(ETag::new);
        let status = DeviceStatus::read_binary(r, "identity.status")?;
        let status_reason = r.opt_string("identity.statusReason")?;
        let status_update_time = r.opt_time("identity.statusUpdateTime")?;
        let connection_state = if r.bool("identity.connectionState")? {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        };
        let connection_state_updated_time = match layout {
            IdentityLayout::V1 => None,
            IdentityLayout::V2 => r.opt_time("identity.connectionStateUpdatedTime")?,
        };
        Ok(DeviceIdentity {
            etag,
            status,
            status_reason,
            status_update_time,
            connection_state,
            connection_state_updated_time,
            last_activity_time: r.opt_time("identity.lastActivityTime")?,
            cloud_to_device_message_count: r.varint("identity.cloudToDeviceMessageCount")?,
            authentication_type: AuthenticationType::read_binary(r, "identity.authenticationType")?,
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: r.opt_string("identity.x509Thumbprint.primaryThumbprint")?,
                secondary_thumbprint: r
                    .opt_string("identity.x509Thumbprint.secondaryThumbprint")?,
            },
            capabilities: Capabilities {
                iot_edge: r.bool("identity.capabilities.iotEdge")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeviceIdentity {
        DeviceIdentity {
            etag: Some(ETag::new("Mg==")),
            status: DeviceStatus::Disabled,
            status_reason: Some("stolen".into()),
            status_update_time: Some(Timestamp::from_unix_secs(1)),
            connection_state: ConnectionState::Connected,
            connection_state_updated_time: Some(Timestamp::from_unix_secs(2)),
            last_activity_time: Some(Timestamp::from_unix_secs(3)),
            cloud_to_device_message_count: 4,
            authentication_type: AuthenticationType::SelfSigned,
            x509_thumbprint: X509Thumbprint {
                primary_thumbprint: Some("ab".repeat(20)),
                secondary_thumbprint: None,
            },
            capabilities: Capabilities { iot_edge: true },
        }
    }

    #[test]
    fn both_layouts_read_and_damage_is_an_error() {
        let id = sample();
        let mut out = Vec::new();
        id.write_binary(&mut out);
        let mut r = Reader::new(&out);
        assert_eq!(
            DeviceIdentity::read_binary(&mut r, IdentityLayout::V2).unwrap(),
            id
        );
        r.finish("identity").unwrap();
        for cut in 0..out.len() {
            let mut r = Reader::new(&out[..cut]);
            assert!(
                DeviceIdentity::read_binary(&mut r, IdentityLayout::V2).is_err(),
                "cut at {cut}"
            );
        }
        // the first layout: the same fields without the connection state update time
        let mut v1 = Vec::new();
        id.write_binary_in(&mut v1, IdentityLayout::V1);
        assert_eq!(v1.len() + 9, out.len());
        let mut r = Reader::new(&v1);
        let back = DeviceIdentity::read_binary(&mut r, IdentityLayout::V1).unwrap();
        r.finish("identity").unwrap();
        assert_eq!(
            back,
            DeviceIdentity {
                connection_state_updated_time: None,
                ..sample()
            }
        );
    }

    #[test]
    fn the_shared_default_is_one_allocation() {
        let a = DeviceIdentity::shared_default();
        let b = DeviceIdentity::shared_default();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*a, DeviceIdentity::default());
    }
}
