//! The device twin: identity fields ([`DeviceIdentity`]), tags, desired and reported properties.
//!
//! A [`Twin`] serializes to, and reads from, the service-side JSON shape IoT Hub prints
//! (`deviceId`, `etag`, `version`, `status`, ..., `tags`, `properties.desired` and
//! `properties.reported` with `$metadata` and `$version`).
//!
//! Patches follow JSON merge patch (`null` deletes). Every accepted patch bumps its section's
//! `$version` by exactly one and the twin `version` by one, refreshes `$metadata` on every node
//! it touched (and on every object on the way to it, so deletes are recorded), and changes the
//! ETag. A patch that breaks a [limit](TwinLimits) or a precondition is refused with a
//! [`TwinError`] and changes nothing.
//!
//! ```
//! use iot_dm_core::twin::{Twin, TwinLimits};
//! use iot_dm_core::clock::Timestamp;
//! use serde_json::json;
//!
//! let limits = TwinLimits::default();
//! let now = Timestamp::from_unix_secs(1_700_000_000);
//! let mut twin = Twin::new("thermostat-1".parse()?);
//! let etag = twin.etag().clone();
//! twin.patch_tags(&json!({"location": {"region": "us-west"}}), Some(etag.as_str()), &limits)?;
//! let v = twin.patch_reported(&json!({"firmware": {"version": "1.0.0"}}), now, &limits)?;
//! assert_eq!(v, 2);
//! // a stale ETag is refused and changes nothing
//! let before = twin.clone();
//! assert!(twin.patch_tags(&json!({"x": 1}), Some(etag.as_str()), &limits).is_err());
//! assert_eq!(twin, before);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod binary;
mod identity;
mod limits;
mod metadata;
mod pack;
mod patch;
mod section;
mod serde_impl;

pub use binary::DeferredDocs;
pub use identity::{
    AuthenticationType, Capabilities, ConnectionState, DeviceIdentity, DeviceStatus,
    IdentityLayout, X509Thumbprint,
};
pub use limits::{KeyProblem, SectionName, TwinError, TwinLimits, MAX_SAFE_INT};
pub use pack::{install_deferred, pack_sections};
pub use patch::{desired_notification, inverse_patch, TwinPatch};
pub use section::Section;

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::doc::Doc;
use crate::identity::{DeviceId, ModuleId};

/// A twin's ETag: opaque to clients, here the base64 of the big-endian twin version, as IoT Hub's
/// look (`AAAAAAAAAAc=` is version 7). ETags of up to 24 bytes (all the hub makes) are stored
/// inline, without a heap allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ETag(compact_str::CompactString);

impl ETag {
    /// The ETag of a twin version.
    pub fn from_version(version: u64) -> ETag {
        ETag(
            base64::engine::general_purpose::STANDARD
                .encode(version.to_be_bytes())
                .into(),
        )
    }

    /// Wraps an ETag string as received.
    pub fn new(s: impl Into<String>) -> ETag {
        ETag(s.into().into())
    }

    /// The ETag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an `If-Match` value accepts this ETag. The value is `*` or a comma-separated
    /// list of ETags; it matches when it is the wildcard, quoted (`"*"`, as the official SDKs
    /// send it) or not, or when one of its ETags equals this one, quoted or not, with or
    /// without a weak `W/` prefix. An empty value matches nothing (a caller that means "no
    /// precondition" sends no `If-Match` at all).
    ///
    /// ```
    /// use iot_dm_core::twin::ETag;
    /// let etag = ETag::new("AAAAAAAAAAE=");
    /// for ok in ["*", "\"*\"", "AAAAAAAAAAE=", "\"AAAAAAAAAAE=\"", "W/\"AAAAAAAAAAE=\"", "\"x\", \"AAAAAAAAAAE=\""] {
    ///     assert!(etag.matches(ok), "{ok}");
    /// }
    /// for no in ["", " ", "\"\"", "\"AAAAAAAAAAI=\"", "W/*", "AAAAAAAAAAE"] {
    ///     assert!(!etag.matches(no), "{no}");
    /// }
    /// ```
    pub fn matches(&self, if_match: &str) -> bool {
        let v = if_match.trim();
        if v == "*" || v == "\"*\"" {
            return true;
        }
        v.split(',').any(|tag| {
            let tag = tag.trim();
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            let tag = tag
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(tag);
            !tag.is_empty() && tag == self.0.as_str()
        })
    }
}

impl PartialEq<str> for ETag {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ETag {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl AsRef<str> for ETag {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device (or module) twin. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Twin {
    /// The device id.
    pub device_id: DeviceId,
    /// The module id, for module twins.
    pub module_id: Option<ModuleId>,
    /// The identity fields (status, connection state, authentication type, ...), shared with
    /// the registry's device in a hub; change them with [`Twin::identity_mut`].
    pub identity: Arc<DeviceIdentity>,
    /// Edge device scope.
    pub device_scope: Option<String>,
    /// Edge parent scopes.
    pub parent_scopes: Vec<String>,
    /// Plug and Play model id.
    pub model_id: Option<String>,
    pub(crate) etag: ETag,
    pub(crate) version: u64,
    pub(crate) tags: Doc,
    pub(crate) desired: Section,
    pub(crate) reported: Section,
    pub(crate) configurations: Doc,
}

impl Twin {
    /// A new twin with empty sections, metadata stamped at the Unix epoch (see
    /// [`Twin::created_at`]).
    pub fn new(device_id: DeviceId) -> Twin {
        Twin::created_at(device_id, Timestamp::EPOCH)
    }

    /// A new twin with empty sections whose metadata records `now` as creation time.
    pub fn created_at(device_id: DeviceId, now: Timestamp) -> Twin {
        Twin {
            device_id,
            module_id: None,
            identity: DeviceIdentity::shared_default(),
            device_scope: None,
            parent_scopes: Vec::new(),
            model_id: None,
            etag: ETag::from_version(1),
            version: 1,
            tags: Doc::empty(),
            desired: Section::new(section::Kind::Desired, now),
            reported: Section::new(section::Kind::Reported, now),
            configurations: Doc::empty(),
        }
    }

    /// The identity, to change: copied first if another twin or device shares it.
    pub fn identity_mut(&mut self) -> &mut DeviceIdentity {
        Arc::make_mut(&mut self.identity)
    }

    /// The twin version: it grows by one with every change to tags, desired or reported.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The twin's ETag.
    pub fn etag(&self) -> &ETag {
        &self.etag
    }

    /// The tags (service-only; devices never see them).
    pub fn tags(&self) -> &Doc {
        &self.tags
    }

    /// The desired properties.
    pub fn desired(&self) -> &Section {
        &self.desired
    }

    /// The reported properties.
    pub fn reported(&self) -> &Section {
        &self.reported
    }

    /// Per-configuration status (`configurations.[[id]].status`), empty unless automatic
    /// configurations target this twin.
    pub fn configurations(&self) -> &Doc {
        &self.configurations
    }

    /// Replaces the per-configuration status document (maintained by the hub's configuration
    /// engine; not counted against section limits, and no version bump).
    pub fn set_configurations(&mut self, configurations: Doc) {
        self.configurations = configurations;
    }

    /// The service-side JSON (what `GET /twins/{id}` and `SELECT *` return).
    pub fn to_json(&self) -> serde_json::Value {
        self.json_value()
    }

    /// What a device gets for a twin GET: `{"desired":{..,"$version":n},"reported":{..,"$version":m}}`,
    /// with no tags and no metadata.
    pub fn device_view(&self) -> serde_json::Value {
        serde_json::json!({
            "desired": self.desired.to_device_value(),
            "reported": self.reported.to_device_value(),
        })
    }

    /// The twin's documents in their stored order: tags, desired properties, reported
    /// properties, configurations.
    pub(crate) fn docs(&self) -> [&Doc; 4] {
        [
            &self.tags,
            &self.desired.doc,
            &self.reported.doc,
            &self.configurations,
        ]
    }

    /// [`Twin::docs`], to replace.
    pub(crate) fn docs_mut(&mut self) -> [&mut Doc; 4] {
        [
            &mut self.tags,
            &mut self.desired.doc,
            &mut self.reported.doc,
            &mut self.configurations,
        ]
    }

    /// Bytes of heap memory the twin's documents hold (for capacity planning).
    pub fn heap_size(&self) -> usize {
        self.docs().iter().map(|d| d.heap_size()).sum()
    }

    pub(crate) fn bump_version(&mut self) {
        self.version += 1;
        self.etag = ETag::from_version(self.version);
    }

    pub(crate) fn check_if_match(&self, if_match: Option<&str>) -> Result<(), TwinError> {
        match if_match {
            Some(m) if !self.etag.matches(m) => Err(TwinError::PreconditionFailed {
                expected: m.to_string(),
                actual: self.etag.0.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
