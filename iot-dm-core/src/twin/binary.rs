//! The compact binary form of a [`Twin`] (see [`crate::binary`]): for storage, where the
//! JSON form with `$metadata` is several times larger and slow to parse.
//!
//! Fields in order: device id, module id, the identity ([`DeviceIdentity::write_binary`]),
//! device scope, parent scopes, model id, ETag, version, tags, desired (`$version`, document
//! with metadata), reported (likewise), configurations. Documents are stored in their own
//! compact form.
//!
//! The layout of the identity changed once (see [`IdentityLayout`]); twins stored in the
//! first layout are read with [`Twin::read_binary_deferred_in`].

use super::section::{Kind, Section};
use std::sync::Arc;

use super::{DeviceIdentity, ETag, IdentityLayout, Twin};
use crate::binary::{put_doc, put_opt_str, put_str, put_varint, BinaryError, Reader};
use crate::doc::Doc;
use crate::identity::{DeviceId, ModuleId};

/// Most parent scopes a stored twin may list.
const MAX_SCOPES: usize = 1024;

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
        self.identity.write_binary(out);
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
        Twin::read_binary_deferred_in(r, IdentityLayout::default())
    }

    /// Like [`Twin::read_binary_deferred`], for a twin whose identity is stored in `layout`:
    /// [`IdentityLayout::V1`] for twins stored by earlier versions.
    pub fn read_binary_deferred_in<'a>(
        r: &mut Reader<'a>,
        layout: IdentityLayout,
    ) -> Result<(Twin, DeferredDocs<'a>), BinaryError> {
        let device_id = DeviceId::new(r.str("twin.deviceId")?)
            .map_err(|e| BinaryError::invalid("twin.deviceId", e.to_string()))?;
        let module_id = r
            .opt_str("twin.moduleId")?
            .map(ModuleId::new)
            .transpose()
            .map_err(|e| BinaryError::invalid("twin.moduleId", e.to_string()))?;
        let identity = DeviceIdentity::read_binary(r, layout)?;
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
            identity: Arc::new(identity),
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
    use crate::twin::{AuthenticationType, ConnectionState, DeviceStatus};
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
        let id = t.identity_mut();
        id.etag = Some(ETag::new("MQ=="));
        id.status = DeviceStatus::Disabled;
        id.status_reason = Some("maintenance".into());
        id.connection_state = ConnectionState::Connected;
        id.connection_state_updated_time = Some(now);
        id.last_activity_time = Some(now);
        id.cloud_to_device_message_count = 3;
        id.authentication_type = AuthenticationType::SelfSigned;
        id.x509_thumbprint.primary_thumbprint = Some("ab".repeat(20));
        id.capabilities.iot_edge = true;
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

    /// The twin encoder of the first layout, as earlier versions wrote twins: the identity
    /// without the connection state update time. The rest of the layout is the current one.
    fn write_v1(t: &Twin, out: &mut Vec<u8>) {
        let mut current = Vec::new();
        t.write_binary(&mut current);
        let mut head = Vec::new();
        put_str(&mut head, t.device_id.as_str());
        put_opt_str(&mut head, t.module_id.as_ref().map(|m| m.as_str()));
        let mut identity = Vec::new();
        t.identity.write_binary(&mut identity);
        out.extend_from_slice(&head);
        t.identity.write_binary_in(out, IdentityLayout::V1);
        out.extend_from_slice(&current[head.len() + identity.len()..]);
    }

    #[test]
    fn twins_of_the_first_layout_read_back() {
        let twin = sample();
        let mut v1 = Vec::new();
        write_v1(&twin, &mut v1);
        let mut current = Vec::new();
        twin.write_binary(&mut current);
        assert_ne!(v1, current);
        let mut r = Reader::new(&v1);
        let (mut back, docs) = Twin::read_binary_deferred_in(&mut r, IdentityLayout::V1).unwrap();
        r.finish("twin").unwrap();
        super::super::install_deferred(&mut [(&mut back, docs)]).unwrap();
        // the first layout had no connection state update time; everything else is there
        assert_eq!(back.identity.connection_state_updated_time, None);
        back.identity_mut().connection_state_updated_time =
            twin.identity.connection_state_updated_time;
        assert_eq!(back, twin);
        assert_eq!(back.to_json(), twin.to_json());
        // and the current reader does not take it for the current layout
        assert!(Twin::read_binary(&mut Reader::new(&v1))
            .map(|t| t != twin)
            .unwrap_or(true));
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
