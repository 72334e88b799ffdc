//! Twin limits and the typed errors of twin operations.
//!
//! The defaults are IoT Hub's: tags 8 KB, desired and reported 32 KB each, 10 levels of nesting,
//! keys of at most 1 KB without `.`, `$`, spaces or control characters, strings of at most 4 KB,
//! integers within ±2^52. Sizes are counted as IoT Hub counts them: the UTF-8 length of every
//! key plus the size of its value, where a string counts its UTF-8 bytes without control
//! characters, a number 8 bytes, a boolean or `null` 4 bytes, and a container the sum of its
//! contents. `$version` and `$metadata` do not count.

use crate::doc::{DocError, NodeRef, ValueRef};

/// Largest integer magnitude a twin accepts: values lie in `-2^52 ..= 2^52 - 1`.
pub const MAX_SAFE_INT: i64 = 4_503_599_627_370_495;

/// The limits a twin patch is checked against.
///
/// ```
/// use iot_dm_core::twin::TwinLimits;
/// let limits = TwinLimits::default();
/// assert_eq!(limits.desired_bytes, 32 * 1024);
/// let strict = TwinLimits { max_depth: 5, ..TwinLimits::default() };
/// assert_eq!(strict.max_depth, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinLimits {
    /// Size limit of `tags`.
    pub tags_bytes: usize,
    /// Size limit of `properties.desired`.
    pub desired_bytes: usize,
    /// Size limit of `properties.reported`.
    pub reported_bytes: usize,
    /// Levels of nested objects or arrays allowed below a section's root (leaves inside the
    /// deepest allowed container are fine).
    pub max_depth: usize,
    /// Longest key, in UTF-8 bytes.
    pub key_bytes: usize,
    /// Longest string value, in UTF-8 bytes.
    pub string_bytes: usize,
}

impl Default for TwinLimits {
    fn default() -> Self {
        TwinLimits {
            tags_bytes: 8 * 1024,
            desired_bytes: 32 * 1024,
            reported_bytes: 32 * 1024,
            max_depth: 10,
            key_bytes: 1024,
            string_bytes: 4 * 1024,
        }
    }
}

/// The twin section an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionName {
    /// `tags`.
    Tags,
    /// `properties.desired`.
    Desired,
    /// `properties.reported`.
    Reported,
}

impl SectionName {
    /// The section's path in the twin JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SectionName::Tags => "tags",
            SectionName::Desired => "properties.desired",
            SectionName::Reported => "properties.reported",
        }
    }

    pub(crate) fn limit(self, limits: &TwinLimits) -> usize {
        match self {
            SectionName::Tags => limits.tags_bytes,
            SectionName::Desired => limits.desired_bytes,
            SectionName::Reported => limits.reported_bytes,
        }
    }
}

impl std::fmt::Display for SectionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The key is the empty string.
    Empty,
    /// The key is longer than the limit.
    TooLong {
        /// The key's length in UTF-8 bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The key contains a forbidden character (`.`, `$`, space or a control character).
    ForbiddenChar(char),
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Empty => f.write_str("keys must not be empty"),
            KeyProblem::TooLong { len, limit } => {
                write!(f, "key is {len} bytes long, the limit is {limit}")
            }
            KeyProblem::ForbiddenChar(c) => write!(
                f,
                "keys must not contain {c:?} ('.', '$', spaces and control characters are forbidden)"
            ),
        }
    }
}

/// Why a twin operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwinError {
    /// The `If-Match` ETag does not match the twin's current ETag.
    #[error(
        "precondition failed: If-Match {expected:?} does not match the twin's etag {actual:?}"
    )]
    PreconditionFailed {
        /// The ETag the caller sent.
        expected: String,
        /// The twin's ETag.
        actual: String,
    },
    /// A patch or replacement for a section is not a JSON object.
    #[error("{section} must be a JSON object, found {found}")]
    NotAnObject {
        /// The section.
        section: SectionName,
        /// The JSON type that was found.
        found: &'static str,
    },
    /// A key breaks the key rules.
    #[error("invalid key at {path}: {problem}")]
    InvalidKey {
        /// Path of the key, e.g. `properties.desired.a.b`.
        path: String,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// Objects or arrays are nested deeper than allowed.
    #[error("{path} is nested {depth} levels deep, the limit is {limit}")]
    TooDeep {
        /// Path of the first container past the limit.
        path: String,
        /// Its nesting level below the section root (the section's own members are level 1).
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// A string value is longer than allowed.
    #[error("string at {path} is {len} bytes long, the limit is {limit}")]
    StringTooLong {
        /// Path of the value.
        path: String,
        /// Its length in UTF-8 bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An integer is outside `-2^52 ..= 2^52 - 1`.
    #[error("number {value} at {path} is outside the range -4503599627370496..=4503599627370495")]
    NumberOutOfRange {
        /// Path of the value.
        path: String,
        /// The value as written.
        value: String,
    },
    /// The section would grow past its size limit.
    #[error("{section} would be {size} bytes, the limit is {limit}")]
    SectionTooLarge {
        /// The section.
        section: SectionName,
        /// The size it would have.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The document could not be stored.
    #[error("{section}: {source}")]
    Document {
        /// The section.
        section: SectionName,
        /// The underlying error.
        source: DocError,
    },
}

impl TwinError {
    /// Whether this is an ETag mismatch (HTTP 412).
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, TwinError::PreconditionFailed { .. })
    }

    /// Whether the input broke a limit or rule (HTTP 400).
    pub fn is_invalid_input(&self) -> bool {
        !self.is_precondition_failed()
    }
}

fn render_path(section: SectionName, path: &[PathSeg<'_>]) -> String {
    let mut s = section.as_str().to_string();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

#[derive(Clone, Copy)]
enum PathSeg<'a> {
    Key(&'a str),
    Index(usize),
}

fn check_key(key: &str, limits: &TwinLimits) -> Result<(), KeyProblem> {
    if key.is_empty() {
        return Err(KeyProblem::Empty);
    }
    if key.len() > limits.key_bytes {
        return Err(KeyProblem::TooLong {
            len: key.len(),
            limit: limits.key_bytes,
        });
    }
    match key
        .chars()
        .find(|&c| c == '.' || c == '$' || c == ' ' || c.is_control())
    {
        Some(c) => Err(KeyProblem::ForbiddenChar(c)),
        None => Ok(()),
    }
}

/// Checks a section's document against the limits and returns its counted size.
pub(crate) fn validate_section(
    root: NodeRef<'_>,
    section: SectionName,
    limits: &TwinLimits,
) -> Result<usize, TwinError> {
    let mut path = Vec::new();
    let size = walk(root, 0, section, limits, &mut path)?;
    let limit = section.limit(limits);
    if size > limit {
        return Err(TwinError::SectionTooLarge {
            section,
            size,
            limit,
        });
    }
    Ok(size)
}

fn walk<'a>(
    node: NodeRef<'a>,
    depth: usize,
    section: SectionName,
    limits: &TwinLimits,
    path: &mut Vec<PathSeg<'a>>,
) -> Result<usize, TwinError> {
    let container = matches!(node.value(), ValueRef::Array(_) | ValueRef::Object(_));
    if container && depth > limits.max_depth {
        return Err(TwinError::TooDeep {
            path: render_path(section, path),
            depth,
            limit: limits.max_depth,
        });
    }
    let size = match node.value() {
        ValueRef::Null | ValueRef::Bool(_) => 4,
        ValueRef::Int(i) => {
            if !(-MAX_SAFE_INT - 1..=MAX_SAFE_INT).contains(&i) {
                return Err(TwinError::NumberOutOfRange {
                    path: render_path(section, path),
                    value: i.to_string(),
                });
            }
            8
        }
        ValueRef::Float(f) => {
            if !f.is_finite() {
                return Err(TwinError::NumberOutOfRange {
                    path: render_path(section, path),
                    value: f.to_string(),
                });
            }
            8
        }
        ValueRef::Str(s) => {
            if s.len() > limits.string_bytes {
                return Err(TwinError::StringTooLong {
                    path: render_path(section, path),
                    len: s.len(),
                    limit: limits.string_bytes,
                });
            }
            s.chars()
                .filter(|c| !c.is_control())
                .map(char::len_utf8)
                .sum()
        }
        ValueRef::Array(a) => {
            let mut total = 0;
            for (i, e) in a.elements().enumerate() {
                path.push(PathSeg::Index(i));
                total += walk(e, depth + 1, section, limits, path)?;
                path.pop();
            }
            total
        }
        ValueRef::Object(o) => {
            let mut total = 0;
            for (k, v) in o.members() {
                path.push(PathSeg::Key(k));
                if let Err(problem) = check_key(k, limits) {
                    return Err(TwinError::InvalidKey {
                        path: render_path(section, path),
                        problem,
                    });
                }
                total += k.len() + walk(v, depth + 1, section, limits, path)?;
                path.pop();
            }
            total
        }
    };
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::Doc;
    use serde_json::json;

    fn check(v: serde_json::Value) -> Result<usize, TwinError> {
        let d = Doc::from_value(&v).unwrap();
        validate_section(d.root(), SectionName::Desired, &TwinLimits::default())
    }

    #[test]
    fn counts_size_like_iot_hub() {
        // "ab": 2 + string 3; "n": 1 + 8; "b": 1 + 4; "o": 1 + ("x": 1 + 4)
        assert_eq!(
            check(json!({"ab": "xyz", "n": 1, "b": true, "o": {"x": null}})),
            Ok(5 + 9 + 5 + 6)
        );
        // control characters are not counted
        assert_eq!(check(json!({"a": "x\u{1}y"})), Ok(3));
    }

    #[test]
    fn the_documented_ten_levels_fit_and_eleven_do_not() {
        let mut v = json!({"property": 1});
        for k in [
            "ten", "nine", "eight", "seven", "six", "five", "four", "three", "two", "one",
        ] {
            v = json!({ k: v });
        }
        assert!(check(v.clone()).is_ok());
        let deeper = json!({ "zero": v });
        match check(deeper) {
            Err(TwinError::TooDeep { depth, limit, path }) => {
                assert_eq!((depth, limit), (11, 10));
                assert!(path.starts_with("properties.desired.zero.one"), "{path}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_rules() {
        for (key, ch) in [
            ("a.b", '.'),
            ("$x", '$'),
            ("a b", ' '),
            ("a\u{7}", '\u{7}'),
            ("a\u{85}", '\u{85}'),
        ] {
            match check(json!({ key: 1 })) {
                Err(TwinError::InvalidKey { problem, .. }) => {
                    assert_eq!(problem, KeyProblem::ForbiddenChar(ch))
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
        let long = "k".repeat(1025);
        assert!(matches!(
            check(json!({ long: 1 })),
            Err(TwinError::InvalidKey {
                problem: KeyProblem::TooLong {
                    len: 1025,
                    limit: 1024
                },
                ..
            })
        ));
        assert!(matches!(
            check(json!({ "": 1 })),
            Err(TwinError::InvalidKey {
                problem: KeyProblem::Empty,
                ..
            })
        ));
        // keys inside arrays of objects are checked too, and the path shows the index
        match check(json!({"list": [1, {"bad key": 2}]})) {
            Err(TwinError::InvalidKey { path, .. }) => {
                assert_eq!(path, "properties.desired.list[1].bad key")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn value_rules() {
        assert!(check(json!({"n": MAX_SAFE_INT, "m": -MAX_SAFE_INT - 1, "f": 1.5e300})).is_ok());
        assert!(matches!(
            check(json!({"n": MAX_SAFE_INT + 1})),
            Err(TwinError::NumberOutOfRange { .. })
        ));
        assert!(matches!(
            check(json!({"s": "x".repeat(4097)})),
            Err(TwinError::StringTooLong {
                len: 4097,
                limit: 4096,
                ..
            })
        ));
        let mut big = serde_json::Map::new();
        for i in 0..10 {
            big.insert(format!("k{i}"), json!("y".repeat(4000)));
        }
        assert!(matches!(
            check(serde_json::Value::Object(big)),
            Err(TwinError::SectionTooLarge {
                size: 40020,
                limit: 32768,
                ..
            })
        ));
    }
}
