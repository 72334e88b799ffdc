//! Symmetric keys (device keys and shared access policy keys).

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Base64 as IoT Hub keys and signatures use it (standard alphabet), decoded leniently like
/// Python's `b64decode`: padding optional, non-zero trailing bits tolerated.
pub(crate) const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A symmetric key that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("symmetric key is empty; it must decode to at least 1 byte")]
    Empty,
    /// The key is not base64.
    #[error(
        "symmetric key ({len} characters) is not base64 (standard alphabet, optional `=` padding)"
    )]
    InvalidBase64 {
        /// Length of the rejected text (the text itself is secret).
        len: usize,
    },
}

/// A base64 symmetric key, ready to sign with HMAC-SHA256.
///
/// The key never appears in `Debug` output; [`SymmetricKey::expose_base64`] is the only way
/// to get it back.
///
/// ```
/// use iot_dm_core::wire::SymmetricKey;
/// let key = SymmetricKey::new("aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=")?;
/// assert_eq!(format!("{key:?}"), "SymmetricKey(<redacted>)");
/// assert!(SymmetricKey::new("not base64!").is_err());
/// # Ok::<(), iot_dm_core::wire::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SymmetricKey {
    encoded: String,
    mac: Hmac<Sha256>,
}

impl SymmetricKey {
    /// Validates a base64 key.
    pub fn new(base64: impl Into<String>) -> Result<SymmetricKey, KeyError> {
        let encoded = base64.into();
        let bytes = LENIENT_BASE64
            .decode(&encoded)
            .map_err(|_| KeyError::InvalidBase64 { len: encoded.len() })?;
        let mac = Self::mac_for(&bytes)?;
        Ok(SymmetricKey { encoded, mac })
    }

    /// A key from raw bytes (encoded as padded base64).
    pub fn from_bytes(bytes: &[u8]) -> Result<SymmetricKey, KeyError> {
        let mac = Self::mac_for(bytes)?;
        Ok(SymmetricKey {
            encoded: STANDARD.encode(bytes),
            mac,
        })
    }

    fn mac_for(bytes: &[u8]) -> Result<Hmac<Sha256>, KeyError> {
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        // HMAC takes keys of any length; the error path is unreachable but typed anyway.
        Hmac::<Sha256>::new_from_slice(bytes).map_err(|_| KeyError::Empty)
    }

    /// The key as the base64 text it was made from. Handle with care: this is the secret.
    pub fn expose_base64(&self) -> &str {
        &self.encoded
    }

    /// HMAC-SHA256 of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `tag` is the HMAC-SHA256 of `message`, compared in constant time.
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(<redacted>)")
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for SymmetricKey {}

impl FromStr for SymmetricKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        SymmetricKey::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_base64() {
        assert_eq!(SymmetricKey::new(""), Err(KeyError::Empty));
        assert_eq!(
            SymmetricKey::new("abc$"),
            Err(KeyError::InvalidBase64 { len: 4 })
        );
        assert!(SymmetricKey::new("YWJj").is_ok());
        assert!(SymmetricKey::new("YWI=").is_ok());
        assert!(SymmetricKey::new("YWI").is_ok(), "padding is optional");
        assert!(
            SymmetricKey::new("YW-_").is_err(),
            "url-safe alphabet is not base64"
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SymmetricKey::new("c2VjcmV0c2VjcmV0").unwrap();
        let debug = format!("{key:?} {:#?}", Some(&key));
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
        assert_eq!(key.expose_base64(), "c2VjcmV0c2VjcmV0");
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        let key = SymmetricKey::from_bytes(b"Jefe").unwrap();
        assert_eq!(key.expose_base64(), "SmVmZQ==");
        let tag = key.sign(b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(key.verify(b"what do ya want for nothing?", &tag));
        assert!(!key.verify(b"what do ya want for nothing!", &tag));
        assert!(!key.verify(b"what do ya want for nothing?", &tag[..31]));
    }
}
