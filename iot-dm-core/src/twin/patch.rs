//! Twin patch operations: merge patches of tags, desired and reported properties, the
//! service-side update and replace, and the inverse of a patch.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::limits::{validate_section, SectionName, TwinError, TwinLimits};
use super::section::Section;
use super::Twin;
use crate::clock::Timestamp;
use crate::doc::{json_type, Doc, DocError, Meta};

/// A service-side twin change: the body of `PATCH /twins/{id}` (merge) or `PUT /twins/{id}`
/// (replace), `{"tags": {..}, "properties": {"desired": {..}}}`. Other fields of a full twin
/// (identity fields, reported properties, `$metadata`, `$version`) are ignored, so a client may
/// send back a twin it read.
///
/// ```
/// use iot_dm_core::twin::TwinPatch;
/// let p: TwinPatch = serde_json::from_str(r#"{"tags":{"a":1},"properties":{"desired":{"b":2}}}"#)?;
/// assert!(p.tags.is_some() && p.desired.is_some());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinPatch {
    /// Tags to merge (update) or the new tags (replace).
    pub tags: Option<Value>,
    /// Desired properties to merge (update) or the new desired properties (replace).
    pub desired: Option<Value>,
}

impl<'de> Deserialize<'de> for TwinPatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Props {
            desired: Option<Value>,
        }
        #[derive(Deserialize)]
        struct Body {
            tags: Option<Value>,
            properties: Option<Props>,
        }
        let b = Body::deserialize(d)?;
        Ok(TwinPatch {
            tags: b.tags,
            desired: b.properties.and_then(|p| p.desired),
        })
    }
}

fn as_object(v: &Value, section: SectionName) -> Result<&Map<String, Value>, TwinError> {
    v.as_object().ok_or(TwinError::NotAnObject {
        section,
        found: json_type(v),
    })
}

/// Drops the read-only `$version` and `$metadata` members a client may send back at a section's
/// root; any other `$` key is left in place and refused by the key rules.
fn strip_read_only(v: &Value, section: SectionName) -> Result<Value, TwinError> {
    let map = as_object(v, section)?;
    if !map.contains_key("$version") && !map.contains_key("$metadata") {
        return Ok(v.clone());
    }
    let mut m = map.clone();
    m.remove("$version");
    m.remove("$metadata");
    Ok(Value::Object(m))
}

fn doc_err(section: SectionName) -> impl Fn(DocError) -> TwinError {
    move |source| TwinError::Document { section, source }
}

fn merged(
    doc: &Doc,
    patch: &Value,
    section: SectionName,
    meta: Option<Meta>,
    limits: &TwinLimits,
) -> Result<Doc, TwinError> {
    as_object(patch, section)?;
    let new = match meta {
        Some(m) => doc.merge_with_meta(patch, m),
        None => doc.merge(patch),
    }
    .map_err(doc_err(section))?;
    validate_section(new.root(), section, limits)?;
    Ok(new)
}

impl Twin {
    /// Merges `patch` into the tags, if `if_match` (an ETag or `*`; `None` for no precondition)
    /// accepts the current ETag. Bumps the twin version.
    pub fn patch_tags(
        &mut self,
        patch: &Value,
        if_match: Option<&str>,
        limits: &TwinLimits,
    ) -> Result<(), TwinError> {
        self.check_if_match(if_match)?;
        let tags = merged(&self.tags, patch, SectionName::Tags, None, limits)?;
        self.tags = tags;
        self.bump_version();
        Ok(())
    }

    /// Merges `patch` into the desired properties and returns the new desired `$version`.
    pub fn patch_desired(
        &mut self,
        patch: &Value,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<u64, TwinError> {
        self.update(
            &TwinPatch {
                tags: None,
                desired: Some(patch.clone()),
            },
            None,
            now,
            limits,
        )?;
        Ok(self.desired.version)
    }

    /// Merges a device's `patch` into the reported properties and returns the new reported
    /// `$version`.
    pub fn patch_reported(
        &mut self,
        patch: &Value,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<u64, TwinError> {
        let version = self.reported.version + 1;
        let meta = Meta {
            last_updated: now,
            version,
        };
        let doc = merged(
            &self.reported.doc,
            patch,
            SectionName::Reported,
            Some(meta),
            limits,
        )?;
        self.reported.doc = doc;
        self.reported.version = version;
        self.bump_version();
        Ok(version)
    }

    /// The service-side merge (`PATCH /twins/{id}`): merges tags and desired properties in one
    /// change, all or nothing. The twin version grows by one; the desired `$version` by one when
    /// the patch has desired properties.
    pub fn update(
        &mut self,
        patch: &TwinPatch,
        if_match: Option<&str>,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<(), TwinError> {
        self.service_change(patch, if_match, now, limits, false)
    }

    /// The service-side replace (`PUT /twins/{id}`): the tags and the desired properties given
    /// replace the current ones entirely (a section left out is left as it is), all or nothing.
    pub fn replace(
        &mut self,
        replacement: &TwinPatch,
        if_match: Option<&str>,
        now: Timestamp,
        limits: &TwinLimits,
    ) -> Result<(), TwinError> {
        self.service_change(replacement, if_match, now, limits, true)
    }

    /// An update, or with `replace` a replacement: the given sections are merged onto the
    /// current ones, or onto empty ones (a replacement is a merge patch onto `{}`, so nulls are
    /// not stored).
    fn service_change(
        &mut self,
        patch: &TwinPatch,
        if_match: Option<&str>,
        now: Timestamp,
        limits: &TwinLimits,
        replace: bool,
    ) -> Result<(), TwinError> {
        self.check_if_match(if_match)?;
        let empty = Doc::empty();
        let (tags_base, desired_base) = if replace {
            (&empty, &empty)
        } else {
            (&self.tags, &self.desired.doc)
        };
        let tags = match &patch.tags {
            Some(t) => Some(merged(tags_base, t, SectionName::Tags, None, limits)?),
            None => None,
        };
        let desired = match &patch.desired {
            Some(d) => {
                let d = strip_read_only(d, SectionName::Desired)?;
                let version = self.desired.version + 1;
                let meta = Meta {
                    last_updated: now,
                    version,
                };
                let doc = merged(desired_base, &d, SectionName::Desired, Some(meta), limits)?;
                Some((doc, version))
            }
            None => None,
        };
        self.commit(tags, desired);
        Ok(())
    }

    fn commit(&mut self, tags: Option<Doc>, desired: Option<(Doc, u64)>) {
        if let Some(t) = tags {
            self.tags = t;
        }
        if let Some((doc, version)) = desired {
            self.desired = Section {
                doc,
                version,
                kind: self.desired.kind,
            };
        }
        self.bump_version();
    }
}

/// The merge patch that undoes `patch` on a document that was `before`: applying `patch` and
/// then the inverse restores the content (not the versions or metadata).
///
/// ```
/// use iot_dm_core::doc::Doc;
/// use iot_dm_core::twin::inverse_patch;
/// use serde_json::json;
/// let before = Doc::from_value(&json!({"a": 1, "b": {"c": 2}}))?;
/// let patch = json!({"a": null, "b": {"c": 3, "d": 4}});
/// let inverse = inverse_patch(&before, &patch);
/// assert_eq!(inverse, json!({"a": 1, "b": {"c": 2, "d": null}}));
/// assert_eq!(before.merge(&patch)?.merge(&inverse)?, before);
/// # Ok::<(), iot_dm_core::doc::DocError>(())
/// ```
pub fn inverse_patch(before: &Doc, patch: &Value) -> Value {
    fn inv(before: crate::doc::NodeRef<'_>, patch: &Map<String, Value>) -> Value {
        let mut out = Map::new();
        for (k, pv) in patch {
            match (before.get(k), pv) {
                (None, Value::Null) => {}
                (None, _) => {
                    out.insert(k.clone(), Value::Null);
                }
                (Some(old), Value::Object(pm)) if old.is_object() => {
                    out.insert(k.clone(), inv(old, pm));
                }
                (Some(old), _) => {
                    out.insert(k.clone(), old.to_value());
                }
            }
        }
        Value::Object(out)
    }
    match patch {
        Value::Object(pm) => inv(before.root(), pm),
        _ => Value::Object(Map::new()),
    }
}

/// The body of a desired-property notification to a device: the patch with `"$version"` added.
///
/// ```
/// use serde_json::json;
/// let body = iot_dm_core::twin::desired_notification(&json!({"fan": 2}), 7);
/// assert_eq!(body, json!({"fan": 2, "$version": 7}));
/// ```
pub fn desired_notification(patch: &Value, version: u64) -> Value {
    let mut m = patch.as_object().cloned().unwrap_or_default();
    m.insert("$version".into(), Value::from(version));
    Value::Object(m)
}
