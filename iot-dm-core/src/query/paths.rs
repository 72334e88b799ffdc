//! Path resolution: each attribute path is resolved once, at parse time, to a root (a system
//! field, the tags, a property section, its `$version` or `$metadata`, the configurations) and
//! the remaining segments, so evaluation never looks at the root names again.
//!
//! Names the twin defines (`deviceId`, `tags`, `properties`, `desired`, `$version`, ...) match
//! case-insensitively, as IoT Hub's `SELECT DeviceId` shows; names inside tags and properties
//! are case-sensitive.

use super::ast::Path;
use crate::doc::Probe;

/// A scalar system field of the twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    DeviceId,
    ModuleId,
    Etag,
    DeviceEtag,
    Version,
    Status,
    StatusReason,
    StatusUpdateTime,
    ConnectionState,
    LastActivityTime,
    CloudToDeviceMessageCount,
    AuthenticationType,
    DeviceScope,
    ModelId,
}

const FIELDS: [(&str, Field); 14] = [
    ("deviceId", Field::DeviceId),
    ("moduleId", Field::ModuleId),
    ("etag", Field::Etag),
    ("deviceEtag", Field::DeviceEtag),
    ("version", Field::Version),
    ("status", Field::Status),
    ("statusReason", Field::StatusReason),
    ("statusUpdateTime", Field::StatusUpdateTime),
    ("connectionState", Field::ConnectionState),
    ("lastActivityTime", Field::LastActivityTime),
    (
        "cloudToDeviceMessageCount",
        Field::CloudToDeviceMessageCount,
    ),
    ("authenticationType", Field::AuthenticationType),
    ("deviceScope", Field::DeviceScope),
    ("modelId", Field::ModelId),
];

/// Root names whose values are read from the twin's JSON form (rarely queried structures).
const JSON_ROOTS: [&str; 4] = [
    "x509Thumbprint",
    "capabilities",
    "parentScopes",
    "properties",
];

/// Which property section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Section {
    Desired,
    Reported,
}

/// Where a path starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Root {
    /// A scalar system field; the path has no further segments.
    Field(Field),
    /// `tags` + rest.
    Tags,
    /// `properties.<section>` + rest (rest not empty).
    Props(Section),
    /// `properties.<section>.$version`.
    SectionVersion(Section),
    /// `properties.<section>.$metadata` + rest + `.$lastUpdated`.
    LastUpdated(Section),
    /// `properties.<section>.$metadata` + rest + `.$lastUpdatedVersion`.
    LastUpdatedVersion(Section),
    /// `configurations` + rest.
    Configurations,
    /// Read from the twin's JSON form; rest is the whole canonical path.
    Json,
    /// A path that no twin defines: always `undefined`.
    Missing,
}

/// A resolved path: root plus the segments below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Resolved {
    pub root: Root,
    pub rest: Box<[String]>,
    /// For roots that are documents (tags, a property section, the configurations): `rest`
    /// prepared for repeated lookups. Empty when the path is evaluated the plain way (the
    /// reference evaluation that tests compare the fast one with).
    pub probes: Box<[Probe]>,
}

impl Resolved {
    /// The same path without prepared lookups (see [`Resolved::probes`]).
    #[cfg(test)]
    pub(crate) fn plain(mut self) -> Resolved {
        self.probes = Box::default();
        self
    }
}

fn canon<'a>(name: &str, options: &[&'a str]) -> Option<&'a str> {
    options
        .iter()
        .copied()
        .find(|o| o.eq_ignore_ascii_case(name))
}

/// The path with every name the twin defines spelled canonically.
pub(crate) fn canonical(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = path.segments.clone();
    let Some(first) = out.first_mut() else {
        return out;
    };
    let roots = FIELDS
        .iter()
        .map(|(n, _)| *n)
        .chain(JSON_ROOTS)
        .chain(["tags", "configurations"]);
    let Some(root) = roots.clone().find(|o| o.eq_ignore_ascii_case(first)) else {
        return out;
    };
    *first = root.to_string();
    match root {
        "properties" => {
            if let Some(s) = out.get_mut(1) {
                if let Some(c) = canon(s, &["desired", "reported"]) {
                    *s = c.to_string();
                    if let Some(s) = out.get_mut(2) {
                        if let Some(c) = canon(s, &["$version", "$metadata"]) {
                            *s = c.to_string();
                            if c == "$metadata" {
                                for s in out.iter_mut().skip(3) {
                                    if let Some(c) =
                                        canon(s, &["$lastUpdated", "$lastUpdatedVersion"])
                                    {
                                        *s = c.to_string();
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        "x509Thumbprint" => {
            if let Some(s) = out.get_mut(1) {
                if let Some(c) = canon(s, &["primaryThumbprint", "secondaryThumbprint"]) {
                    *s = c.to_string();
                }
            }
        }
        "capabilities" => {
            if let Some(s) = out.get_mut(1) {
                if let Some(c) = canon(s, &["iotEdge"]) {
                    *s = c.to_string();
                }
            }
        }
        _ => {}
    }
    out
}

/// Resolves a canonical path (see [`canonical`]).
pub(crate) fn resolve(canonical: &[String]) -> Resolved {
    let missing = || Resolved {
        root: Root::Missing,
        rest: Box::default(),
        probes: Box::default(),
    };
    let Some((first, rest)) = canonical.split_first() else {
        return missing();
    };
    let tail = |root: Root, rest: &[String]| Resolved {
        probes: match root {
            Root::Tags | Root::Props(_) | Root::Configurations => {
                rest.iter().map(|k| Probe::new(k)).collect()
            }
            _ => Box::default(),
        },
        root,
        rest: rest.to_vec().into_boxed_slice(),
    };
    if let Some((_, field)) = FIELDS.iter().find(|(n, _)| n == first) {
        return if rest.is_empty() {
            tail(Root::Field(*field), rest)
        } else {
            missing()
        };
    }
    match first.as_str() {
        "tags" => tail(Root::Tags, rest),
        "configurations" => tail(Root::Configurations, rest),
        "properties" => {
            let section = match rest.first().map(String::as_str) {
                Some("desired") => Section::Desired,
                Some("reported") => Section::Reported,
                // `properties` alone, or an unknown section (always undefined, but cheap to
                // let the JSON form answer).
                _ => return tail(Root::Json, canonical),
            };
            let below = rest.get(1..).unwrap_or_default();
            match below.split_first() {
                // The whole section, with its `$metadata` and `$version`, as `SELECT *` shows it.
                None => tail(Root::Json, canonical),
                Some((v, more)) if v == "$version" => {
                    if more.is_empty() {
                        tail(Root::SectionVersion(section), more)
                    } else {
                        missing()
                    }
                }
                Some((m, more)) if m == "$metadata" => match more.split_last() {
                    Some((last, inner)) if last == "$lastUpdated" => {
                        tail(Root::LastUpdated(section), inner)
                    }
                    Some((last, inner)) if last == "$lastUpdatedVersion" => {
                        tail(Root::LastUpdatedVersion(section), inner)
                    }
                    _ => tail(Root::Json, canonical),
                },
                Some(_) => tail(Root::Props(section), below),
            }
        }
        r if JSON_ROOTS.contains(&r) => tail(Root::Json, canonical),
        _ => missing(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Resolved {
        resolve(&canonical(&Path::new(text.split('.'))))
    }

    fn strs(v: &[&str]) -> Box<[String]> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn system_names_are_case_insensitive() {
        assert_eq!(res("DeviceId").root, Root::Field(Field::DeviceId));
        assert_eq!(
            canonical(&Path::new(["LastActivityTime"])),
            vec!["lastActivityTime".to_string()]
        );
        assert_eq!(
            canonical(&Path::new(["Properties", "Reported", "Fw"])),
            vec!["properties", "reported", "Fw"]
        );
        assert_eq!(res("deviceId.x").root, Root::Missing);
        assert_eq!(res("nothing.here").root, Root::Missing);
    }

    #[test]
    fn sections_versions_and_metadata() {
        let r = res("properties.reported.fw.version");
        assert_eq!(r.root, Root::Props(Section::Reported));
        assert_eq!(r.rest, strs(&["fw", "version"]));
        assert_eq!(
            res("properties.desired.$version").root,
            Root::SectionVersion(Section::Desired)
        );
        assert_eq!(res("properties.desired.$version.x").root, Root::Missing);
        let r = res("properties.desired.$metadata.a.b.$lastUpdated");
        assert_eq!(r.root, Root::LastUpdated(Section::Desired));
        assert_eq!(r.rest, strs(&["a", "b"]));
        let r = res("properties.desired.$metadata.$lastUpdatedVersion");
        assert_eq!(r.root, Root::LastUpdatedVersion(Section::Desired));
        assert!(r.rest.is_empty());
        assert_eq!(res("properties.desired.$metadata.a").root, Root::Json);
        assert_eq!(res("properties.desired").root, Root::Json);
        assert_eq!(res("properties").root, Root::Json);
        assert_eq!(res("x509Thumbprint.primaryThumbprint").root, Root::Json);
        let r = res("configurations.cfg.status");
        assert_eq!(r.root, Root::Configurations);
        assert_eq!(r.rest, strs(&["cfg", "status"]));
        assert_eq!(res("tags").root, Root::Tags);
    }
}
