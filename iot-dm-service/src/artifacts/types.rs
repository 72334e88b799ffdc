//! An artifact's name (its SHA-256), what is listed of it, what an upload says of itself, and
//! the store's error.

use std::fmt;
use std::str::FromStr;

use iot_dm_core::clock::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The longest `name` or `version` of an artifact, in bytes.
pub const MAX_META_LEN: usize = 128;

/// A SHA-256 digest: an artifact's name. Parsed from 64 hexadecimal digits (either case),
/// shown in lower case.
///
/// ```
/// use iot_dm_service::artifacts::Sha256Digest;
/// let d = Sha256Digest::of(b"abc");
/// assert_eq!(d.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// assert_eq!(d.to_string().to_uppercase().parse::<Sha256Digest>().unwrap(), d);
/// assert!("abc".parse::<Sha256Digest>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// A digest from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Digest {
        Sha256Digest(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Sha256Digest, ArtifactError> {
        let invalid = || ArtifactError::InvalidDigest {
            value: s.chars().take(80).collect(),
        };
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(invalid());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(invalid());
            };
            out[i] = hi << 4 | lo;
        }
        Ok(Sha256Digest(out))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A stored artifact, as listed (`GET /artifacts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ArtifactInfo {
    /// The SHA-256 of its bytes: its name.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When its upload finished.
    pub uploaded_time: Timestamp,
    /// The name given at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The version given at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What an upload says of itself: an optional name and version, each at most
/// [`MAX_META_LEN`] bytes of printable text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArtifactMeta {
    /// A name (`gateway-fw`).
    pub name: Option<String>,
    /// A version (`1.4.2`).
    pub version: Option<String>,
}

impl ArtifactMeta {
    /// With a name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// With a version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Refuses a field longer than [`MAX_META_LEN`], empty, or with control characters.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        for (field, value) in [("name", &self.name), ("version", &self.version)] {
            let Some(v) = value else { continue };
            let message = if v.is_empty() {
                "is empty".to_string()
            } else if v.len() > MAX_META_LEN {
                format!("is {} bytes, over the limit of {MAX_META_LEN}", v.len())
            } else if v.chars().any(char::is_control) {
                "has control characters".to_string()
            } else {
                continue;
            };
            return Err(ArtifactError::InvalidMetadata { field, message });
        }
        Ok(())
    }
}

/// Why an artifact operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// Nothing is stored under this digest.
    #[error("artifact {sha256} not found")]
    NotFound {
        /// The digest asked for.
        sha256: String,
    },
    /// The uploaded bytes do not have the digest the upload named.
    #[error("the uploaded bytes have sha256 {actual}, not the expected {expected}")]
    DigestMismatch {
        /// The digest the upload named.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// The artifact is larger than the store accepts.
    #[error("artifact size {size} bytes exceeds the limit of {limit} bytes (max_artifact_size)")]
    TooLarge {
        /// The size declared, or received before the upload was refused.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A digest that is not 64 hexadecimal digits.
    #[error("invalid sha256: {value:?} is not 64 hexadecimal digits")]
    InvalidDigest {
        /// The text given.
        value: String,
    },
    /// A name or version that is not acceptable.
    #[error("invalid {field}: {message}")]
    InvalidMetadata {
        /// `name` or `version`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A stored artifact's bytes do not match its name: it is not served.
    #[error("artifact {sha256} is corrupt on disk (its bytes hash to {actual}); it is not served")]
    Corrupt {
        /// The artifact's name.
        sha256: String,
        /// What its bytes hash to now.
        actual: String,
    },
    /// The upload's body stopped before its end (the client went away).
    #[error("the upload was interrupted: {message}")]
    Interrupted {
        /// What happened.
        message: String,
    },
    /// A file system operation failed.
    #[error("artifact store: {operation}: {message}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The operating system's error.
        message: String,
        /// Whether the disk is full.
        disk_full: bool,
    },
}

impl ArtifactError {
    /// An I/O error while doing `operation`.
    pub(crate) fn io(operation: &'static str, e: &std::io::Error) -> ArtifactError {
        ArtifactError::Io {
            operation,
            message: e.to_string(),
            disk_full: e.kind() == std::io::ErrorKind::StorageFull,
        }
    }

    /// Nothing is stored under the digest.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ArtifactError::NotFound { .. })
    }

    /// IoT Hub-style six-digit error code, as the REST API answers it.
    pub fn code(&self) -> u32 {
        match self {
            ArtifactError::NotFound { .. } => 404_601,
            ArtifactError::DigestMismatch { .. } => 400_601,
            ArtifactError::TooLarge { .. } => 413_601,
            ArtifactError::InvalidDigest { .. } | ArtifactError::InvalidMetadata { .. } => 400_004,
            ArtifactError::Corrupt { .. } => 500_601,
            ArtifactError::Interrupted { .. } => 400_000,
            ArtifactError::Io {
                disk_full: true, ..
            } => 507_001,
            ArtifactError::Io { .. } => 500_001,
        }
    }

    /// The name of [`code`](Self::code), for the codes of this store.
    pub fn code_name(&self) -> Option<&'static str> {
        match self.code() {
            404_601 => Some("ArtifactNotFound"),
            400_601 => Some("ArtifactDigestMismatch"),
            413_601 => Some("ArtifactTooLarge"),
            500_601 => Some("ArtifactCorrupt"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_only_from_64_hex_digits() {
        let d = Sha256Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for bad in [
            "",
            "zz",
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            "é",
        ] {
            assert!(
                matches!(
                    bad.parse::<Sha256Digest>(),
                    Err(ArtifactError::InvalidDigest { .. })
                ),
                "{bad}"
            );
        }
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
    }

    #[test]
    fn metadata_is_bounded_and_printable() {
        assert!(ArtifactMeta::default()
            .name("fw")
            .version("1.0")
            .validate()
            .is_ok());
        for (meta, field) in [
            (ArtifactMeta::default().name(""), "name"),
            (ArtifactMeta::default().version("a\nb"), "version"),
            (
                ArtifactMeta::default().version("v".repeat(MAX_META_LEN + 1)),
                "version",
            ),
        ] {
            match meta.validate() {
                Err(ArtifactError::InvalidMetadata { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_limit_and_have_codes() {
        let e = ArtifactError::TooLarge {
            size: 11,
            limit: 10,
        };
        assert!(e.to_string().contains("10") && e.to_string().contains("11"));
        assert_eq!(e.code(), 413_601);
        assert_eq!(e.code_name(), Some("ArtifactTooLarge"));
    }
}
