//! A property section of a twin (`properties.desired` or `properties.reported`): its document,
//! its `$version`, and its `$metadata`.

use serde_json::{Map, Value};

use super::metadata::{metadata_value, section_value, TimestampCache};
use crate::clock::Timestamp;
use crate::doc::{Doc, Meta};

/// Which property section this is; desired metadata also records `$lastUpdatedVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Desired,
    Reported,
}

/// A property section: the document, its `$version`, and per-node `$metadata`.
///
/// ```
/// use iot_dm_core::twin::Twin;
/// use iot_dm_core::clock::Timestamp;
/// use serde_json::json;
/// let mut twin = Twin::new("dev-1".parse()?);
/// let now = Timestamp::from_unix_secs(1_700_000_000);
/// twin.patch_desired(&json!({"fan": {"speed": 3}}), now, &Default::default())?;
/// let desired = twin.desired();
/// assert_eq!(desired.version(), 2);
/// assert_eq!(desired.last_updated(&["fan", "speed"]), Some(now));
/// assert_eq!(desired.last_updated_version(&["fan"]), Some(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub(crate) doc: Doc,
    pub(crate) version: u64,
    pub(crate) kind: Kind,
}

impl Section {
    pub(crate) fn new(kind: Kind, created: Timestamp) -> Section {
        // IoT Hub starts both sections at $version 1
        let meta = Meta {
            last_updated: created,
            version: 1,
        };
        Section {
            doc: Doc::empty().with_meta(meta, |_| None),
            version: 1,
            kind,
        }
    }

    /// The section's properties (without `$version` and `$metadata`).
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The section's `$version`: it grows by one with every patch.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `$metadata...$lastUpdated` of the node at `path` (the section itself for an empty path).
    pub fn last_updated<S: AsRef<str>>(&self, path: &[S]) -> Option<Timestamp> {
        self.node_meta(path).map(|m| m.last_updated)
    }

    /// `$metadata...$lastUpdatedVersion` of the node at `path`; desired properties only.
    pub fn last_updated_version<S: AsRef<str>>(&self, path: &[S]) -> Option<u64> {
        match self.kind {
            Kind::Desired => self.node_meta(path).map(|m| m.version),
            Kind::Reported => None,
        }
    }

    fn node_meta<S: AsRef<str>>(&self, path: &[S]) -> Option<Meta> {
        self.doc.get_path(path)?.meta()
    }

    /// The section's `$metadata` object.
    pub fn metadata_value(&self) -> Value {
        metadata_value(self.doc.root(), self.kind, &TimestampCache::default())
    }

    /// The section as IoT Hub prints it: properties, `$metadata` and `$version`.
    pub fn to_value(&self) -> Value {
        section_value(self)
    }

    /// The section as a device sees it: properties and `$version`, no metadata.
    pub fn to_device_value(&self) -> Value {
        let mut v = self.doc.to_value();
        if let Value::Object(m) = &mut v {
            m.insert("$version".into(), Value::from(self.version));
        }
        v
    }

    /// Reads a section from IoT Hub's JSON; `$metadata` is optional.
    pub(crate) fn from_value(kind: Kind, v: &Value) -> Result<Section, String> {
        let Value::Object(map) = v else {
            return Err(format!("expected an object, found {v}"));
        };
        let mut props = Map::new();
        let mut version = 1;
        let mut metadata = None;
        for (k, val) in map {
            match k.as_str() {
                "$version" => {
                    version = val.as_u64().ok_or_else(|| {
                        format!("$version must be a non-negative integer, found {val}")
                    })?
                }
                "$metadata" => metadata = Some(val),
                _ => {
                    props.insert(k.clone(), val.clone());
                }
            }
        }
        let doc = Doc::from_value(&Value::Object(props)).map_err(|e| e.to_string())?;
        let read = |m: &Value| -> Option<Meta> {
            let last_updated = m.get("$lastUpdated")?.as_str()?.parse().ok()?;
            let version = m
                .get("$lastUpdatedVersion")
                .and_then(Value::as_u64)
                .unwrap_or(version);
            Some(Meta {
                last_updated,
                version,
            })
        };
        let fallback = metadata.and_then(read).unwrap_or(Meta {
            last_updated: Timestamp::EPOCH,
            version,
        });
        let doc = doc.with_meta(fallback, |path| {
            let mut m = metadata?;
            for seg in path {
                m = m.get(*seg)?;
            }
            read(m)
        });
        Ok(Section { doc, version, kind })
    }
}
