//! Shared access signature (SAS) tokens.
//!
//! `SharedAccessSignature sr={resource}&sig={signature}&se={expiry}[&skn={policy}]`, with the
//! fields in any order (Python writes `sr, sig, se, skn`; the MQTT docs show `sig, se, sr`).
//!
//! * `sr`: the URL-encoded resource URI: `{host}/devices/{id}` for a device key,
//!   `{host}/devices/{id}/modules/{m}` for a module key, `{host}` (with `skn`) for a hub
//!   policy; a gateway may scope a policy token to `{host}/devices`.
//! * `sig`: `base64(HMAC-SHA256(base64decode(key), sr + "\n" + se))`, URL-encoded, where `sr`
//!   is the encoded resource string exactly as it appears in the token.
//! * `se`: expiry, seconds since the Unix epoch.
//! * `skn`: the shared access policy name, absent for device and module keys.
//!
//! The SDKs encode `sr` differently (Python `%2F`, the docs' examples `%2f`, Node leaves
//! `( ) ! * '` alone), so [`SasToken::verify_signature`] signs the literal `sr` received and
//! never re-encodes it; [`SasToken::check_resource`] compares the decoded URI separately.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::encoding::{decode, encode, shown_name, COMPONENT};
use super::key::{SymmetricKey, LENIENT_BASE64};
use crate::clock::Timestamp;

/// The prefix of every SAS token.
pub const SAS_PREFIX: &str = "SharedAccessSignature ";

/// A SAS token that is malformed, or that does not grant what is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SasError {
    /// The text does not start with `SharedAccessSignature `.
    #[error("SAS token does not start with {SAS_PREFIX:?}")]
    NotASasToken,
    /// A field has no `=`.
    #[error("SAS token field {field} has no `=`; fields are name=value")]
    MalformedField {
        /// The field as written, or `<N characters>` when it may be a secret.
        field: String,
    },
    /// A field other than `sr`, `sig`, `se`, `skn`.
    #[error("SAS token field {name} is unknown; allowed are sr, sig, se and skn")]
    UnknownField {
        /// The field name, or `<N characters>` when it may be a secret.
        name: String,
    },
    /// A field appears twice.
    #[error("SAS token field {name} appears more than once; it may appear once")]
    DuplicateField {
        /// The field name.
        name: &'static str,
    },
    /// A required field is missing.
    #[error("SAS token lacks the required field {name}; sr, sig and se are required")]
    MissingField {
        /// The field name.
        name: &'static str,
    },
    /// A field is empty.
    #[error("SAS token field {name} is empty")]
    EmptyField {
        /// The field name.
        name: &'static str,
    },
    /// `se` is not a number of seconds.
    #[error("SAS token se {se:?} is not a whole number of seconds since the Unix epoch (0..=9223372036854775807)")]
    InvalidExpiry {
        /// The `se` value as written.
        se: String,
    },
    /// `sig` is not base64 once percent-decoded.
    #[error("SAS token sig is not base64 once percent-decoded")]
    InvalidSignatureEncoding,
    /// `sr` or `skn` is not UTF-8 once percent-decoded.
    #[error("SAS token field {name} ({value:?}) is not UTF-8 once percent-decoded")]
    NotUtf8 {
        /// The field name.
        name: &'static str,
        /// The value as written.
        value: String,
    },
    /// The signature was not made with the key tried.
    #[error("SAS token signature for {resource:?} does not match the key")]
    SignatureMismatch {
        /// The decoded resource URI of the token.
        resource: String,
    },
    /// The token has expired.
    #[error("SAS token expired at {expiry} (now {now})")]
    Expired {
        /// When the token expired.
        expiry: Timestamp,
        /// The time it was checked at.
        now: Timestamp,
    },
    /// The token's resource does not cover the expected one.
    #[error("SAS token resource {resource:?} does not grant access to {expected:?}")]
    ResourceMismatch {
        /// The decoded resource URI of the token.
        resource: String,
        /// The resource access was asked for.
        expected: String,
    },
    /// The token's policy name (`skn`) is not the expected one.
    #[error("SAS token policy name (skn) is {found:?}, expected {expected:?}")]
    KeyNameMismatch {
        /// The policy name expected (`None`: a device or module key, no `skn`).
        expected: Option<String>,
        /// The policy name in the token.
        found: Option<String>,
    },
}

/// A parsed SAS token.
///
/// `Display` writes the token text (it is a credential: that is what goes into the MQTT
/// password); `Debug` leaves the signature out.
///
/// ```
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::wire::{SasToken, SymmetricKey};
/// let key = SymmetricKey::new("aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=")?;
/// let expiry = Timestamp::from_unix_secs(1_700_003_600);
/// let token = SasToken::generate("myhub.azure-devices.net/devices/dev-01", &key, expiry, None);
///
/// // the hub's side
/// let received: SasToken = token.to_string().parse()?;
/// received.verify(&key, Timestamp::from_unix_secs(1_700_000_000))?;
/// received.check_resource("MyHub.azure-devices.net/devices/dev-01")?;
/// received.check_key_name(None)?;
/// assert!(received.verify(&key, expiry).is_err()); // expired
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    pub(super) token: String,
    pub(super) sr: String,
    pub(super) resource: String,
    pub(super) signature: Vec<u8>,
    pub(super) se: String,
    pub(super) expiry: i64,
    pub(super) key_name: Option<String>,
}

impl SasToken {
    /// Parses a token; the fields may come in any order.
    pub fn parse(token: &str) -> Result<SasToken, SasError> {
        let fields = token
            .strip_prefix(SAS_PREFIX)
            .ok_or(SasError::NotASasToken)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in fields.split('&') {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| SasError::MalformedField {
                    field: shown_name(field),
                })?;
            let (slot, name) = match name {
                "sr" => (&mut sr, "sr"),
                "sig" => (&mut sig, "sig"),
                "se" => (&mut se, "se"),
                "skn" => (&mut skn, "skn"),
                other => {
                    return Err(SasError::UnknownField {
                        name: shown_name(other),
                    })
                }
            };
            if slot.is_some() {
                return Err(SasError::DuplicateField { name });
            }
            if value.is_empty() {
                return Err(SasError::EmptyField { name });
            }
            *slot = Some(value);
        }
        let sr = sr.ok_or(SasError::MissingField { name: "sr" })?;
        let sig = sig.ok_or(SasError::MissingField { name: "sig" })?;
        let se = se.ok_or(SasError::MissingField { name: "se" })?;

        let not_utf8 = |name, value: &str| SasError::NotUtf8 {
            name,
            value: value.to_string(),
        };
        let resource = decode(sr).map_err(|_| not_utf8("sr", sr))?.into_owned();
        let key_name = match skn {
            Some(skn) => Some(decode(skn).map_err(|_| not_utf8("skn", skn))?.into_owned()),
            None => None,
        };
        // `+` in an unencoded signature is base64's `+`, so no form-decoding here
        let signature = percent_encoding::percent_decode_str(sig).collect::<Vec<u8>>();
        let signature = LENIENT_BASE64
            .decode(signature)
            .map_err(|_| SasError::InvalidSignatureEncoding)?;
        let expiry = parse_expiry(se)?;
        Ok(SasToken {
            token: token.to_string(),
            sr: sr.to_string(),
            resource,
            signature,
            se: se.to_string(),
            expiry,
            key_name,
        })
    }

    /// Signs a token for `resource_uri` (not encoded, e.g. `myhub.azure-devices.net/devices/d1`)
    /// that expires at `expiry` (whole seconds; a time before 1970 is written as 0).
    ///
    /// The output is byte-for-byte what the Python SDK produces: `sr` is
    /// `quote(resource_uri, safe="")`, the fields come in the order `sr, sig, se[, skn]`.
    pub fn generate(
        resource_uri: &str,
        key: &SymmetricKey,
        expiry: Timestamp,
        key_name: Option<&str>,
    ) -> SasToken {
        let sr = encode(resource_uri, COMPONENT).into_owned();
        let expiry = expiry.unix_secs().max(0);
        let se = expiry.to_string();
        let signature = key.sign(string_to_sign(&sr, &se).as_bytes());
        let sig = encode(&STANDARD.encode(&signature), COMPONENT).into_owned();
        let mut token = format!("{SAS_PREFIX}sr={sr}&sig={sig}&se={se}");
        if let Some(name) = key_name {
            token.push_str("&skn=");
            token.push_str(&encode(name, COMPONENT));
        }
        SasToken {
            token,
            sr,
            resource: resource_uri.to_string(),
            signature,
            se,
            expiry,
            key_name: key_name.map(str::to_string),
        }
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The decoded resource URI.
    pub fn resource_uri(&self) -> &str {
        &self.resource
    }

    /// The `sr` value exactly as written in the token (the string that was signed).
    pub fn encoded_resource_uri(&self) -> &str {
        &self.sr
    }

    /// When the token expires.
    pub fn expiry(&self) -> Timestamp {
        Timestamp::from_unix_secs(self.expiry)
    }

    /// The expiry in seconds since the Unix epoch.
    pub fn expiry_unix_secs(&self) -> i64 {
        self.expiry
    }

    /// The shared access policy name (`skn`), decoded.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }
}

pub(super) fn string_to_sign(sr: &str, se: &str) -> String {
    format!("{sr}\n{se}")
}

fn parse_expiry(se: &str) -> Result<i64, SasError> {
    let invalid = || SasError::InvalidExpiry { se: se.to_string() };
    if !se.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    se.parse().map_err(|_| invalid())
}

impl fmt::Display for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token)
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("expiry", &self.expiry)
            .field("key_name", &self.key_name)
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl FromStr for SasToken {
    type Err = SasError;
    fn from_str(s: &str) -> Result<Self, SasError> {
        SasToken::parse(s)
    }
}

/// Known-answer SAS tokens, shared by the tests of this module and its neighbours.
#[cfg(test)]
pub(super) mod test_vectors {
    use super::SymmetricKey;

    /// The known-answer key: base64 of the 32 ASCII bytes `iot-dm known-answer test key 32b`.
    pub(crate) const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
    pub(crate) const EXPIRY: i64 = 1_700_003_600;

    pub(crate) fn key() -> SymmetricKey {
        SymmetricKey::new(KEY).unwrap()
    }

    // The three tokens below were produced by the official Python SDK's own signing code,
    // azure-iot-device 2.14.0 installed from PyPI, as `str(token)` of
    //
    //     mechanism = azure.iot.device.common.auth.signing_mechanism.SymmetricKeySigningMechanism(KEY)
    //     token = azure.iot.device.common.auth.sastoken.RenewableSasToken(uri, mechanism, key_name=skn, ttl=3600)
    //
    // with `azure.iot.device.common.auth.sastoken.time.time` patched (unittest.mock) to
    // return 1700000000, so se = 1700003600, for
    //   uri "myhub.azure-devices.net/devices/dev-01", skn None (device token);
    //   uri "myhub.azure-devices.net/devices/dev-01/modules/mod-a", skn None (module token);
    //   uri "myhub.azure-devices.net", skn "iothubowner" (policy token).
    pub(crate) const PYTHON_DEVICE_TOKEN: &str = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-01&sig=0iGabkV1sBjyXS9lI%2Bu2bEWSiuBRGfp7Sdwom%2Fl9FsM%3D&se=1700003600";
    pub(crate) const PYTHON_MODULE_TOKEN: &str = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-01%2Fmodules%2Fmod-a&sig=qPLNuP5fdyvZclABxucaAJuatWkEh3SE5v%2FKQuhZpHI%3D&se=1700003600";
    pub(crate) const PYTHON_POLICY_TOKEN: &str = "SharedAccessSignature sr=myhub.azure-devices.net&sig=nKsCZYCUq%2FLS3GhvH1GwrXYMCqfCyLGHlBLBKh%2BOgO0%3D&se=1700003600&skn=iothubowner";
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use test_vectors::*;

    #[test]
    fn generate_matches_the_python_sdk() {
        let expiry = Timestamp::from_unix_secs(EXPIRY);
        let cases = [
            (
                "myhub.azure-devices.net/devices/dev-01",
                None,
                PYTHON_DEVICE_TOKEN,
            ),
            (
                "myhub.azure-devices.net/devices/dev-01/modules/mod-a",
                None,
                PYTHON_MODULE_TOKEN,
            ),
            (
                "myhub.azure-devices.net",
                Some("iothubowner"),
                PYTHON_POLICY_TOKEN,
            ),
        ];
        for (uri, skn, expected) in cases {
            let token = SasToken::generate(uri, &key(), expiry, skn);
            assert_eq!(token.as_str(), expected);
            assert_eq!(token.to_string(), expected);
            assert_eq!(SasToken::parse(expected).unwrap(), token);
        }
    }

    #[test]
    fn expiry_before_1970_is_written_as_zero() {
        // generating before 1970 writes 0
        let old = SasToken::generate("h", &key(), Timestamp::from_unix_secs(-5), None);
        assert_eq!(old.expiry_unix_secs(), 0);
        assert!(old.as_str().ends_with("&se=0"));
    }

    #[test]
    fn parse_errors() {
        let cases: [(&str, SasError); 11] = [
            ("sr=a&sig=YQ==&se=1", SasError::NotASasToken),
            ("SharedAccessSignature", SasError::NotASasToken),
            (
                "SharedAccessSignature sr=a&sig&se=1",
                SasError::MalformedField {
                    field: "sig".to_string(),
                },
            ),
            (
                "SharedAccessSignature sr=a&sig=YQ==&se=1&foo=1",
                SasError::UnknownField {
                    name: "foo".to_string(),
                },
            ),
            (
                "SharedAccessSignature sr=a&sr=b&sig=YQ==&se=1",
                SasError::DuplicateField { name: "sr" },
            ),
            (
                "SharedAccessSignature sig=YQ==&se=1",
                SasError::MissingField { name: "sr" },
            ),
            (
                "SharedAccessSignature sr=a&se=1",
                SasError::MissingField { name: "sig" },
            ),
            (
                "SharedAccessSignature sr=a&sig=YQ==",
                SasError::MissingField { name: "se" },
            ),
            (
                "SharedAccessSignature sr=a&sig=YQ==&se=",
                SasError::EmptyField { name: "se" },
            ),
            (
                "SharedAccessSignature sr=a&sig=YQ==&se=-1",
                SasError::InvalidExpiry {
                    se: "-1".to_string(),
                },
            ),
            (
                "SharedAccessSignature sr=a&sig=%%%&se=1",
                SasError::InvalidSignatureEncoding,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(SasToken::parse(token), Err(expected), "{token}");
        }
        assert!(matches!(
            SasToken::parse("SharedAccessSignature sr=a&sig=YQ==&se=99999999999999999999"),
            Err(SasError::InvalidExpiry { .. })
        ));
        // a signature pasted without its `sig=` is not echoed
        for token in [
            "SharedAccessSignature sr=a&0iGabkV1sBjyXS9lI%2Bu2bEWSiuBRGfp7Sdwom%2Fl9FsM%3D&se=1",
            "SharedAccessSignature sr=a&0iGabkV1sBjyXS9lI+u2bEWSiuBRGfp7Sdwom/l9FsM=&se=1",
        ] {
            let err = SasToken::parse(token).unwrap_err();
            assert!(!err.to_string().contains("0iGab"), "{err}");
        }
        assert!(matches!(
            SasToken::parse("SharedAccessSignature sr=%FF&sig=YQ==&se=1"),
            Err(SasError::NotUtf8 { name: "sr", .. })
        ));
    }

    #[test]
    fn debug_hides_the_signature() {
        let t = SasToken::parse(PYTHON_DEVICE_TOKEN).unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains("0iGabkV1"), "{debug}");
        assert!(debug.contains("dev-01"));
    }

    proptest! {
        #[test]
        fn generated_tokens_verify(
            uri in "[a-z]{1,8}\\.net(/[a-zA-Z0-9:%$#+ ()!*'.=@;,-]{1,10}){0,4}",
            se in 0i64..4_000_000_000,
            skn in prop::option::of("[a-zA-Z]{1,10}"),
            key_bytes in prop::collection::vec(any::<u8>(), 1..64),
        ) {
            let key = SymmetricKey::from_bytes(&key_bytes).unwrap();
            let token = SasToken::generate(&uri, &key, Timestamp::from_unix_secs(se), skn.as_deref());
            let parsed = SasToken::parse(token.as_str()).unwrap();
            prop_assert_eq!(parsed.resource_uri(), uri.as_str());
            prop_assert_eq!(parsed.key_name(), skn.as_deref());
            prop_assert!(parsed.verify_signature(&key).is_ok());
            prop_assert!(parsed.check_resource(&uri).is_ok());
            prop_assert!(parsed.check_expiry(Timestamp::from_unix_secs(se - 1)).is_ok());
            prop_assert!(parsed.check_expiry(Timestamp::from_unix_secs(se)).is_err());
        }
    }
}
