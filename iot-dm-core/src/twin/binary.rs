//! The compact binary form of a [`Twin`] (see [`crate::binary`]): for storage, where the
//! JSON form with `$metadata` is several times larger and slow to parse.
//!
//! Fields in order: device id, module id, device ETag, status, status reason, status update
//! time, connection state, last activity time, cloud-to-device message count, authentication
//! type, the two thumbprints, capabilities, device scope, parent scopes, model id, ETag,
//! version, tags, desired (`$version`, document with metadata), reported (likewise),
//! configurations. Documents are stored in their own compact form.

use super::section::{Kind, Section};
use super::{
    AuthenticationType, Capabilities, ConnectionState, DeviceStatus, ETag, Twin, X509Thumbprint,
};
use crate::binary::{
    put_doc, put_opt_str, put_opt_time, put_str, put_u8, put_varint, BinaryError, Reader,
};
use crate::doc::Doc;
use crate::identity::{DeviceId, ModuleId};

/// Most parent scopes a stored twin may list.
const MAX_SCOPES: usize = 1024;

fn status_code(s: DeviceStatus) -> u8 {
    match s {
        DeviceStatus::Enabled => 0,
        DeviceStatus::Disabled => 1,
    }
}

fn auth_code(a: AuthenticationType) -> u8 {
    match a {
        AuthenticationType::Sas => 0,
        AuthenticationType::SelfSigned => 1,
        AuthenticationType::CertificateAuthority => 2,
        AuthenticationType::None => 3,
    }
}

impl DeviceStatus {
    /// Reads the status [`Twin::write_binary`] stores.
    pub fn read_binary(r: &mut Reader<'_>, field: &'static str) -> Result<Self, BinaryError> {
        match r.u8(field)? {
            0 => Ok(DeviceStatus::Enabled),
            1 => Ok(DeviceStatus::Disabled),
            b => Err(BinaryError::invalid(field, format!("unknown status {b}"))),
        }
    }

    /// Appends the status as one byte.
    pub fn write_binary(self, out: &mut Vec<u8>) {
        put_u8(out, status_code(self));
    }
}

impl AuthenticationType {
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
        put_u8(out, auth_code(self));
    }
}

impl Twin {
    /// Appends the twin's compact binary form to `out` (see the module docs of
    /// [`crate::binary`]); [`Twin::read_binary`] reads it back equal.
    ///
    /// ```
    /// use iot_dm_core::binary::Reader;
    /// use iot_dm_core::clock::Timestamp;
    /// use iot_dm_core::twin::Twin;
    /// use serde_json::json;
    ///
    /// let mut twin = Twin::new("pump-1".parse()?);
    /// twin.patch_reported(&json!({"fw": "1.0"}), Timestamp::from_unix_secs(1), &Default::default())?;
    /// let mut out = Vec::new();
    /// twin.write_binary(&mut out);
    /// let back = Twin::read_binary(&mut Reader::new(&out))?;
    /// assert_eq!(back, twin);
    /// assert!(Twin::read_binary(&mut Reader::new(&out[..out.len() - 1])).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        put_str(out, self.device_id.as_str());
        put_opt_str(out, self.module_id.as_ref().map(|m| m.as_str()));
        put_opt_str(out, self.device_etag.as_ref().map(ETag::as_str));
        put_u8(out, status_code(self.status));
        put_opt_str(out, self.status_reason.as_deref());
        put_opt_time(out, self.status_update_time);
        put_u8(
            out,
            u8::from(self.connection_state == ConnectionState::Connected),
        );
        put_opt_time(out, self.last_activity_time);
        put_varint(out, self.cloud_to_device_message_count);
        put_u8(out, auth_code(self.authentication_type));
        put_opt_str(out, self.x509_thumbprint.primary_thumbprint.as_deref());
        put_opt_str(out, self.x509_thumbprint.secondary_thumbprint.as_deref());
        put_u8(out, u8::from(self.capabilities.iot_edge));
        put_opt_str(out, self.device_scope.as_deref());
        put_varint(out, self.parent_scopes.len() as u64);
        for s in &self.parent_scopes {
            put_str(out, s);
        }
        put_opt_str(out, self.model_id.as_deref());
        put_str(out, self.etag.as_str());
        put_varint(out, self.version);
        put_doc(out, &self.tags);
        for section in [&self.desired, &self.reported] {
            put_varint(out, section.version);
            put_doc(out, &section.doc);
        }
        put_doc(out, &self.configurations);
    }

    /// Reads a twin written by [`Twin::write_binary`], leaving the reader after it.
    pub fn read_binary(r: &mut Reader<'_>) -> Result<Twin, BinaryError> {
        let (mut twin, docs) = Twin::read_binary_deferred(r)?;
        for section in 0..DOC_FIELDS.len() {
            docs.install(&mut twin, section)?;
        }
        Ok(twin)
    }

    /// Like [`Twin::read_binary`], but leaves the four documents (tags, desired and reported
    /// properties, configurations) as their stored bytes, empty in the twin until
    /// [`install_deferred`](super::install_deferred) makes them, a batch of twins section by
    /// section. Malformed document bytes are reported then.
    pub fn read_binary_deferred<'a>(
        r: &mut Reader<'a>,
    ) -> Result<(Twin, DeferredDocs<'a>), BinaryError> {
        let device_id = DeviceId::new(r.str("twin.deviceId")?)
            .map_err(|e| BinaryError::invalid("twin.deviceId", e.to_string()))?;
        let module_id = r
            .opt_str("twin.moduleId")?
            .map(ModuleId::new)
            .transpose()
            .map_err(|e| BinaryError::invalid("twin.moduleId", e.to_string()))?;
        let device_etag = r.opt_str("twin.deviceEtag")?.map(ETag::new);
        let status = DeviceStatus::read_binary(r, "twin.status")?;
        let status_reason = r.opt_string("twin.statusReason")?;
        let status_update_time = r.opt_time("twin.statusUpdateTime")?;
        let connection_state = if r.bool("twin.connectionState")? {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        };
        let last_activity_time = r.opt_time("twin.lastActivityTime")?;
        let cloud_to_device_message_count = r.varint("twin.cloudToDeviceMessageCount")?;
        let authentication_type = AuthenticationType::read_binary(r, "twin.authenticationType")?;
        let x509_thumbprint = X509Thumbprint {
            primary_thumbprint: r.opt_string("twin.x509Thumbprint.primaryThumbprint")?,
            secondary_thumbprint: r.opt_string("twin.x509Thumbprint.secondaryThumbprint")?,
        };
        let capabilities = Capabilities {
            iot_edge: r.bool("twin.capabilities.iotEdge")?,
        };
        let device_scope = r.opt_string("twin.deviceScope")?;
        let n = r.len("twin.parentScopes", MAX_SCOPES)?;
        let mut parent_scopes = Vec::with_capacity(n);
        for _ in 0..n {
            parent_scopes.push(r.str("twin.parentScopes")?.to_string());
        }
        let model_id = r.opt_string("twin.modelId")?;
        let etag = ETag::new(r.str("twin.etag")?);
        let version = r.varint("twin.version")?;
        let tags = r.bytes(DOC_FIELDS[0])?;
        let desired_version = r.varint("twin.properties.desired.$version")?;
        let desired = r.bytes(DOC_FIELDS[1])?;
        let reported_version = r.varint("twin.properties.reported.$version")?;
        let reported = r.bytes(DOC_FIELDS[2])?;
        let configurations = r.bytes(DOC_FIELDS[3])?;
        let docs = DeferredDocs {
            bytes: [tags, desired, reported, configurations],
        };
        let twin = Twin {
            device_id,
            module_id,
            device_etag,
            status,
            status_reason,
            status_update_time,
            connection_state,
            last_activity_time,
            cloud_to_device_message_count,
            authentication_type,
            x509_thumbprint,
            capabilities,
            device_scope,
            parent_scopes,
            model_id,
            etag,
            version,
            tags: Doc::empty(),
            desired: Section {
                version: desired_version,
                doc: Doc::empty(),
                kind: Kind::Desired,
            },
            reported: Section {
                version: reported_version,
                doc: Doc::empty(),
                kind: Kind::Reported,
            },
            configurations: Doc::empty(),
        };
        Ok((twin, docs))
    }
}

/// The stored fields of a twin's documents, in [`Twin::docs`] order.
pub(super) const DOC_FIELDS: [&str; 4] = [
    "twin.tags",
    "twin.properties.desired",
    "twin.properties.reported",
    "twin.configurations",
];

/// The stored bytes of a twin's four documents, read by [`Twin::read_binary_deferred`] and
/// not yet made into documents: tags, desired properties, reported properties,
/// configurations.
#[derive(Debug, Clone, Copy)]
pub struct DeferredDocs<'a> {
    bytes: [&'a [u8]; 4],
}

impl DeferredDocs<'_> {
    /// Makes document `section` (an index into [`DOC_FIELDS`]) of `twin` from its bytes.
    pub(super) fn install(&self, twin: &mut Twin, section: usize) -> Result<(), BinaryError> {
        let (Some(bytes), Some(field)) = (self.bytes.get(section), DOC_FIELDS.get(section)) else {
            return Ok(());
        };
        let doc = if bytes.is_empty() {
            Doc::empty()
        } else {
            Doc::from_bytes(bytes).map_err(|e| BinaryError::invalid(field, e.to_string()))?
        };
        if let Some(slot) = twin.docs_mut().into_iter().nth(section) {
            *slot = doc;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use serde_json::json;

    fn sample() -> Twin {
        let limits = Default::default();
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let mut t = Twin::created_at("dev-1".parse().unwrap(), now);
        t.patch_tags(
            &json!({"site": {"region": "us-west", "floor": 3}}),
            None,
            &limits,
        )
        .unwrap();
        t.patch_desired(&json!({"fan": {"speed": 3}}), now, &limits)
            .unwrap();
        t.patch_reported(&json!({"fw": "1.2.3", "battery": 0.5}), now, &limits)
            .unwrap();
        t.module_id = Some("m1".parse().unwrap());
        t.device_etag = Some(ETag::new("MQ=="));
        t.status = DeviceStatus::Disabled;
        t.status_reason = Some("maintenance".into());
        t.connection_state = ConnectionState::Connected;
        t.last_activity_time = Some(now);
        t.cloud_to_device_message_count = 3;
        t.authentication_type = AuthenticationType::SelfSigned;
        t.x509_thumbprint.primary_thumbprint = Some("ab".repeat(20));
        t.capabilities.iot_edge = true;
        t.device_scope = Some("scope".into());
        t.parent_scopes = vec!["p1".into(), "p2".into()];
        t.model_id = Some("dtmi:x;1".into());
        t
    }

    #[test]
    fn every_field_round_trips() {
        for twin in [Twin::new("plain".parse().unwrap()), sample()] {
            let mut out = Vec::new();
            twin.write_binary(&mut out);
            let mut r = Reader::new(&out);
            let back = Twin::read_binary(&mut r).unwrap();
            r.finish("twin").unwrap();
            assert_eq!(back, twin);
            assert_eq!(back.to_json(), twin.to_json());
        }
    }

    #[test]
    fn truncated_or_damaged_input_is_an_error() {
        let mut out = Vec::new();
        sample().write_binary(&mut out);
        for cut in 0..out.len() {
            assert!(
                Twin::read_binary(&mut Reader::new(&out[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = out.clone();
        bad[0] = 200; // a device id length past the end
        assert!(Twin::read_binary(&mut Reader::new(&bad)).is_err());
    }
}
