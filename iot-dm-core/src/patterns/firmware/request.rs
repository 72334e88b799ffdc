//! The desired side of a firmware update: what to install and how to check it.

use serde_json::{Map, Value};

use super::super::{pattern_member, wrap, Obj, PatternError};
use crate::patterns::FIRMWARE_UPDATE_METHOD;

/// Longest version string, in characters.
pub const MAX_VERSION_LEN: usize = 128;

/// Longest package URI, in characters.
pub const MAX_URI_LEN: usize = 2048;

/// Largest package size, in bytes: the largest integer a twin stores (2^52 - 1).
pub const MAX_PACKAGE_SIZE: u64 = 4_503_599_627_370_495;

const KEY: &str = "firmware";

/// Checks a version string: 1 to [`MAX_VERSION_LEN`] characters, no control characters.
pub(crate) fn validate_version(field: &'static str, version: &str) -> Result<String, PatternError> {
    if version.is_empty() {
        return Err(PatternError::EmptyText { field });
    }
    for (position, ch) in version.chars().enumerate() {
        if position >= MAX_VERSION_LEN {
            return Err(PatternError::TextTooLong {
                field,
                len: version.chars().count(),
                limit: MAX_VERSION_LEN,
                unit: "characters",
            });
        }
        if ch.is_control() {
            return Err(PatternError::InvalidChar {
                field,
                ch,
                position,
                rule: "control characters are not allowed",
            });
        }
    }
    Ok(version.to_string())
}

fn invalid_uri(uri: &str, reason: &'static str) -> PatternError {
    PatternError::InvalidUri {
        uri: uri.to_string(),
        reason,
    }
}

/// Checks an absolute `scheme://authority[/path][?query][#fragment]` URI of printable ASCII.
fn validate_uri(uri: &str) -> Result<(), PatternError> {
    const FIELD: &str = "packageUri";
    if uri.is_empty() {
        return Err(PatternError::EmptyText { field: FIELD });
    }
    for (position, ch) in uri.chars().enumerate() {
        if position >= MAX_URI_LEN {
            return Err(PatternError::TextTooLong {
                field: FIELD,
                len: uri.chars().count(),
                limit: MAX_URI_LEN,
                unit: "characters",
            });
        }
        if !ch.is_ascii_graphic() {
            return Err(PatternError::InvalidChar {
                field: FIELD,
                ch,
                position,
                rule: "a URI holds printable ASCII without spaces; percent-encode the rest",
            });
        }
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(invalid_uri(uri, "no scheme"));
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(invalid_uri(
            uri,
            "the scheme must start with a letter and hold only letters, digits, +, - and .",
        ));
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Err(invalid_uri(uri, "expected scheme://host/..."));
    };
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(invalid_uri(uri, "the host is empty"));
    }
    Ok(())
}

/// Checks and lower-cases a hex SHA-256 digest.
fn validate_sha256(digest: &str) -> Result<String, PatternError> {
    let len = digest.chars().count();
    if len != 64 {
        return Err(PatternError::Sha256Length { len });
    }
    if let Some((position, ch)) = digest
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        return Err(PatternError::Sha256Char { ch, position });
    }
    Ok(digest.to_ascii_lowercase())
}

fn validate_size(size: u64) -> Result<u64, PatternError> {
    if size == 0 || size > MAX_PACKAGE_SIZE {
        return Err(PatternError::OutOfRange {
            field: "size",
            value: size,
            min: 1,
            max: MAX_PACKAGE_SIZE,
        });
    }
    Ok(size)
}

/// Longest `signature` a request may carry, in base64 characters (a DER ECDSA P-256 signature
/// is at most 72 bytes, an Ed25519 one 64).
pub const MAX_SIGNATURE_LEN: usize = 512;

/// Checks a base64 (standard alphabet, padded) signature and decodes it.
fn validate_signature(signature: &str) -> Result<Vec<u8>, PatternError> {
    use base64::Engine as _;
    let invalid = || PatternError::InvalidField {
        path: "signature".to_string(),
        expected: "a non-empty base64 signature of at most 512 characters",
    };
    if signature.is_empty() || signature.len() > MAX_SIGNATURE_LEN {
        return Err(invalid());
    }
    base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| invalid())
        .and_then(|bytes| {
            if bytes.is_empty() {
                Err(invalid())
            } else {
                Ok(bytes)
            }
        })
}

/// What a service asks a device to install: target version, package URI, SHA-256 digest
/// (64 hex digits, stored lower-case), size in bytes and, optionally, a signature.
///
/// It travels as `{"targetVersion":..,"packageUri":..,"sha256":..,"size":..}` (plus
/// `"signature"` when signed) either in the desired properties under
/// `deviceManagement.firmware` or as the `firmwareUpdate` method payload. Every constructor
/// and parser validates every field.
///
/// The signature is the base64 of an Ed25519 or ECDSA P-256 (ECDSA-SHA256, DER or fixed
/// `r || s`) signature whose message is the package's 32-byte SHA-256 digest; the device
/// checks it with a public key it is configured with.
///
/// ```
/// use iot_dm_core::patterns::{FirmwareUpdateRequest, PatternError};
/// use serde_json::json;
///
/// let req = FirmwareUpdateRequest::new(
///     "2.0.1",
///     "https://updates.example.com/fw/2.0.1.bin",
///     "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
///     1_048_576,
/// )?;
/// assert_eq!(req.sha256(), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
///
/// // the service writes the desired patch; the device reads it back
/// let desired = req.to_desired_patch();
/// assert_eq!(FirmwareUpdateRequest::from_desired(&desired)?, Some(req.clone()));
///
/// let bad = FirmwareUpdateRequest::from_payload(&json!({
///     "targetVersion": "2.0.1", "packageUri": "updates.example.com/fw.bin",
///     "sha256": "00", "size": 1}));
/// assert!(matches!(bad, Err(PatternError::InvalidUri { .. })));
///
/// let signed = req.clone().with_signature("c2lnbmF0dXJl")?;
/// assert_eq!(signed.signature(), Some(&b"signature"[..]));
/// assert_eq!(signed.to_json()["signature"], "c2lnbmF0dXJl");
/// # Ok::<(), PatternError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareUpdateRequest {
    target_version: String,
    package_uri: String,
    sha256: String,
    size: u64,
    signature: Option<Vec<u8>>,
}

impl FirmwareUpdateRequest {
    /// Validates and builds a request.
    pub fn new(
        target_version: impl Into<String>,
        package_uri: impl Into<String>,
        sha256: &str,
        size: u64,
    ) -> Result<FirmwareUpdateRequest, PatternError> {
        let target_version = validate_version("targetVersion", &target_version.into())?;
        let package_uri = package_uri.into();
        validate_uri(&package_uri)?;
        Ok(FirmwareUpdateRequest {
            target_version,
            package_uri,
            sha256: validate_sha256(sha256)?,
            size: validate_size(size)?,
            signature: None,
        })
    }

    /// The same request carrying `signature` (base64, see the type's docs).
    pub fn with_signature(
        mut self,
        signature: &str,
    ) -> Result<FirmwareUpdateRequest, PatternError> {
        self.signature = Some(validate_signature(signature)?);
        Ok(self)
    }

    /// The decoded signature, when the request is signed.
    pub fn signature(&self) -> Option<&[u8]> {
        self.signature.as_deref()
    }

    /// The version to install.
    pub fn target_version(&self) -> &str {
        &self.target_version
    }

    /// Where to fetch the package.
    pub fn package_uri(&self) -> &str {
        &self.package_uri
    }

    /// The URI's scheme (`https`, `coaps`, ...), for the device's protocol check.
    pub fn scheme(&self) -> &str {
        self.package_uri
            .split_once(':')
            .map_or("", |(scheme, _)| scheme)
    }

    /// The package's SHA-256 digest, 64 lower-case hex digits.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The package size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The request object `{"targetVersion":..,"packageUri":..,"sha256":..,"size":..}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("targetVersion".into(), self.target_version.clone().into());
        m.insert("packageUri".into(), self.package_uri.clone().into());
        m.insert("sha256".into(), self.sha256.clone().into());
        m.insert("size".into(), self.size.into());
        if let Some(signature) = &self.signature {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(signature);
            m.insert("signature".into(), text.into());
        }
        Value::Object(m)
    }

    fn parse(value: &Value, path: String) -> Result<FirmwareUpdateRequest, PatternError> {
        let o = Obj::new(value, path)?;
        let request = FirmwareUpdateRequest::new(
            o.str("targetVersion")?,
            o.str("packageUri")?,
            o.str("sha256")?,
            o.u64("size")?,
        )?;
        match o.opt_str("signature")? {
            None => Ok(request),
            Some(signature) => request.with_signature(signature),
        }
    }

    /// Parses the `firmwareUpdate` method payload.
    pub fn from_payload(payload: &Value) -> Result<FirmwareUpdateRequest, PatternError> {
        FirmwareUpdateRequest::parse(payload, FIRMWARE_UPDATE_METHOD.to_string())
    }

    /// The desired-properties patch `{"deviceManagement":{"firmware":{...}}}`.
    pub fn to_desired_patch(&self) -> Value {
        wrap(KEY, self.to_json())
    }

    /// Reads the request from a twin's desired section; `None` when there is none (absent
    /// or set to `null`, which withdraws it).
    pub fn from_desired(desired: &Value) -> Result<Option<FirmwareUpdateRequest>, PatternError> {
        match pattern_member(desired, "desired", KEY)? {
            Some(v) => FirmwareUpdateRequest::parse(v, format!("deviceManagement.{KEY}")).map(Some),
            None => Ok(None),
        }
    }
}

impl serde::Serialize for FirmwareUpdateRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for FirmwareUpdateRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        FirmwareUpdateRequest::parse(&v, "request".to_string()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn req(
        version: &str,
        uri: &str,
        sha: &str,
        size: u64,
    ) -> Result<FirmwareUpdateRequest, PatternError> {
        FirmwareUpdateRequest::new(version, uri, sha, size)
    }

    #[test]
    fn accepts_valid_requests() {
        for uri in [
            "https://updates.example.com/fw.bin",
            "http://10.0.0.1:8080/a?b=c#d",
            "coaps://[::1]/fw",
            "s3+x.y-z://bucket",
            "https://h",
        ] {
            let r = req("1.0.0-rc.1+build.5", uri, SHA, 1).unwrap();
            assert_eq!(r.package_uri(), uri);
        }
        let r = req("v 2", "https://h/x", &SHA.to_uppercase(), MAX_PACKAGE_SIZE).unwrap();
        assert_eq!(r.sha256(), SHA);
        assert_eq!(r.scheme(), "https");
        assert_eq!(r.size(), MAX_PACKAGE_SIZE);
        assert!(req(&"v".repeat(MAX_VERSION_LEN), "https://h", SHA, 1).is_ok());
    }

    #[test]
    fn version_errors() {
        assert_eq!(
            req("", "https://h", SHA, 1),
            Err(PatternError::EmptyText {
                field: "targetVersion"
            })
        );
        assert_eq!(
            req(&"v".repeat(129), "https://h", SHA, 1),
            Err(PatternError::TextTooLong {
                field: "targetVersion",
                len: 129,
                limit: 128,
                unit: "characters"
            })
        );
        assert!(matches!(
            req("1.0\n", "https://h", SHA, 1),
            Err(PatternError::InvalidChar {
                field: "targetVersion",
                ch: '\n',
                position: 3,
                ..
            })
        ));
    }

    #[test]
    fn uri_errors() {
        let reason = |uri: &str| match req("1", uri, SHA, 1) {
            Err(PatternError::InvalidUri { reason, .. }) => reason,
            other => panic!("{uri}: {other:?}"),
        };
        assert!(reason("updates.example.com/fw").contains("scheme"));
        assert!(reason("1http://h").contains("scheme"));
        assert!(reason("ht_tp://h").contains("scheme"));
        assert!(reason("urn:isbn:123").contains("scheme://"));
        assert!(reason("https:///path").contains("host"));
        assert!(reason("https://?q").contains("host"));
        assert!(matches!(
            req("1", "https://h/a b", SHA, 1),
            Err(PatternError::InvalidChar {
                field: "packageUri",
                ch: ' ',
                position: 11,
                ..
            })
        ));
        assert!(matches!(
            req("1", "https://h/é", SHA, 1),
            Err(PatternError::InvalidChar { ch: 'é', .. })
        ));
        assert_eq!(
            req("1", "", SHA, 1),
            Err(PatternError::EmptyText {
                field: "packageUri"
            })
        );
        let long = format!("https://h/{}", "a".repeat(MAX_URI_LEN));
        assert!(matches!(
            req("1", &long, SHA, 1),
            Err(PatternError::TextTooLong {
                field: "packageUri",
                limit: MAX_URI_LEN,
                ..
            })
        ));
    }

    #[test]
    fn digest_and_size_errors() {
        assert_eq!(
            req("1", "https://h", &SHA[..63], 1),
            Err(PatternError::Sha256Length { len: 63 })
        );
        let mut bad = SHA.to_string();
        bad.replace_range(10..11, "g");
        assert_eq!(
            req("1", "https://h", &bad, 1),
            Err(PatternError::Sha256Char {
                ch: 'g',
                position: 10
            })
        );
        for size in [0, MAX_PACKAGE_SIZE + 1] {
            assert_eq!(
                req("1", "https://h", SHA, size),
                Err(PatternError::OutOfRange {
                    field: "size",
                    value: size,
                    min: 1,
                    max: MAX_PACKAGE_SIZE
                })
            );
        }
    }

    #[test]
    fn json_forms() {
        let r = req("2.0.1", "https://h/fw", SHA, 10).unwrap();
        let j = json!({"targetVersion": "2.0.1", "packageUri": "https://h/fw", "sha256": SHA, "size": 10});
        assert_eq!(r.to_json(), j);
        assert_eq!(FirmwareUpdateRequest::from_payload(&j).unwrap(), r);
        assert_eq!(serde_json::to_value(&r).unwrap(), j);
        assert_eq!(
            serde_json::from_value::<FirmwareUpdateRequest>(j.clone()).unwrap(),
            r
        );
        assert_eq!(
            r.to_desired_patch(),
            json!({"deviceManagement": {"firmware": j}})
        );

        let desired = json!({"deviceManagement": {"firmware": j, "other": 1}, "$version": 4});
        assert_eq!(
            FirmwareUpdateRequest::from_desired(&desired).unwrap(),
            Some(r)
        );
        for none in [
            json!({"$version": 4}),
            json!({"deviceManagement": null}),
            json!({"deviceManagement": {"firmware": null}}),
        ] {
            assert_eq!(FirmwareUpdateRequest::from_desired(&none).unwrap(), None);
        }
        assert!(FirmwareUpdateRequest::from_desired(&json!([])).is_err());
        assert!(FirmwareUpdateRequest::from_desired(&json!({"deviceManagement": 3})).is_err());
    }

    #[test]
    fn parse_errors_name_the_path() {
        let missing = json!({"packageUri": "https://h", "sha256": SHA, "size": 1});
        assert_eq!(
            FirmwareUpdateRequest::from_payload(&missing),
            Err(PatternError::MissingField {
                path: "firmwareUpdate.targetVersion".into()
            })
        );
        let neg =
            json!({"targetVersion": "1", "packageUri": "https://h", "sha256": SHA, "size": -1});
        assert_eq!(
            FirmwareUpdateRequest::from_payload(&neg),
            Err(PatternError::InvalidField {
                path: "firmwareUpdate.size".into(),
                expected: "a non-negative integer"
            })
        );
        let desired = json!({"deviceManagement": {"firmware": {"targetVersion": 2}}});
        assert_eq!(
            FirmwareUpdateRequest::from_desired(&desired),
            Err(PatternError::InvalidField {
                path: "deviceManagement.firmware.targetVersion".into(),
                expected: "a string"
            })
        );
        let err = serde_json::from_value::<FirmwareUpdateRequest>(json!({"size": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("request.targetVersion is missing"), "{err}");
    }

    #[test]
    fn signatures_are_base64_and_round_trip() {
        let r = req("2", "https://h/fw", SHA, 10).unwrap();
        assert_eq!(r.signature(), None);
        assert!(r.to_json().get("signature").is_none());
        let signed = r.clone().with_signature("AAEC").unwrap();
        assert_eq!(signed.signature(), Some(&[0u8, 1, 2][..]));
        let j = signed.to_json();
        assert_eq!(j["signature"], "AAEC");
        assert_eq!(FirmwareUpdateRequest::from_payload(&j).unwrap(), signed);
        assert_ne!(signed, r);
        for bad in ["", "not base64!", "AAE", &"A".repeat(MAX_SIGNATURE_LEN + 4)] {
            assert!(
                matches!(
                    r.clone().with_signature(bad),
                    Err(PatternError::InvalidField { ref path, .. }) if path == "signature"
                ),
                "{bad:?}"
            );
        }
        let mut j = r.to_json();
        j["signature"] = json!(5);
        assert!(FirmwareUpdateRequest::from_payload(&j).is_err());
    }
}
