//! The hub's checks of a [`SasToken`]: signature, expiry, resource and policy name.
//!
//! The signature is checked over the literal `sr` and `se` received (never re-encoded, so
//! `%2f` and `%2F` tokens both verify when signed that way); the resource is checked on the
//! decoded `sr`, level by level.

use super::key::SymmetricKey;
use super::sas::{string_to_sign, SasError, SasToken};
use crate::clock::Timestamp;
use crate::identity::{DeviceId, ModuleId};

impl SasToken {
    /// Checks that the signature was made with `key` over the literal `sr` and `se` of the
    /// token (constant-time comparison).
    pub fn verify_signature(&self, key: &SymmetricKey) -> Result<(), SasError> {
        if key.verify(
            string_to_sign(&self.sr, &self.se).as_bytes(),
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(SasError::SignatureMismatch {
                resource: self.resource.clone(),
            })
        }
    }

    /// Checks that the token has not expired at `now` (it is valid strictly before `se`).
    pub fn check_expiry(&self, now: Timestamp) -> Result<(), SasError> {
        let expiry = self.expiry();
        if now < expiry {
            Ok(())
        } else {
            Err(SasError::Expired { expiry, now })
        }
    }

    /// [`SasToken::verify_signature`], then [`SasToken::check_expiry`].
    pub fn verify(&self, key: &SymmetricKey, now: Timestamp) -> Result<(), SasError> {
        self.verify_signature(key)?;
        self.check_expiry(now)
    }

    /// Checks that the token's resource covers `expected` (a decoded URI such as
    /// [`device_resource_uri`] builds).
    ///
    /// The host (first level) is compared case-insensitively; the rest of the token's path
    /// must be a prefix of `expected`'s, level by level: `h/a/b` covers `h/a/b/c` but not
    /// `h/a/bc`. A trailing `/` is ignored.
    pub fn check_resource(&self, expected: &str) -> Result<(), SasError> {
        if resource_covers(&self.resource, expected) {
            Ok(())
        } else {
            Err(SasError::ResourceMismatch {
                resource: self.resource.clone(),
                expected: expected.to_string(),
            })
        }
    }

    /// Checks the policy name: `None` expects no `skn` (a device or module key), `Some(p)`
    /// expects `skn=p`.
    pub fn check_key_name(&self, expected: Option<&str>) -> Result<(), SasError> {
        if self.key_name.as_deref() == expected {
            Ok(())
        } else {
            Err(SasError::KeyNameMismatch {
                expected: expected.map(str::to_string),
                found: self.key_name.clone(),
            })
        }
    }
}

/// `{host}/devices/{device}`: the resource a device key signs.
///
/// ```
/// use iot_dm_core::identity::DeviceId;
/// use iot_dm_core::wire::device_resource_uri;
/// let d = DeviceId::new("dev-01")?;
/// assert_eq!(device_resource_uri("myhub.azure-devices.net", &d), "myhub.azure-devices.net/devices/dev-01");
/// # Ok::<(), iot_dm_core::identity::IdError>(())
/// ```
pub fn device_resource_uri(host: &str, device: &DeviceId) -> String {
    format!("{host}/devices/{device}")
}

/// `{host}/devices/{device}/modules/{module}`: the resource a module key signs.
pub fn module_resource_uri(host: &str, device: &DeviceId, module: &ModuleId) -> String {
    format!("{host}/devices/{device}/modules/{module}")
}

/// Whether a token for the decoded resource `granted` covers `expected`.
///
/// The host (first level) is compared case-insensitively; the rest of `granted` must be a
/// prefix of `expected`, level by level: `h/a/b` covers `h/a/b/c` but not `h/a/bc`. One
/// trailing `/` on either side is ignored.
fn resource_covers(granted: &str, expected: &str) -> bool {
    fn levels(uri: &str) -> Vec<&str> {
        uri.strip_suffix('/').unwrap_or(uri).split('/').collect()
    }
    let granted = levels(granted);
    let expected = levels(expected);
    match (granted.split_first(), expected.split_first()) {
        (Some((gh, gpath)), Some((eh, epath))) => {
            gh.eq_ignore_ascii_case(eh) && epath.starts_with(gpath)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::encoding::{encode, COMPONENT};
    use super::super::sas::test_vectors::*;
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use proptest::prelude::*;

    #[test]
    fn python_tokens_verify() {
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let t = SasToken::parse(PYTHON_DEVICE_TOKEN).unwrap();
        assert_eq!(t.resource_uri(), "myhub.azure-devices.net/devices/dev-01");
        assert_eq!(
            t.encoded_resource_uri(),
            "myhub.azure-devices.net%2Fdevices%2Fdev-01"
        );
        assert_eq!(t.expiry_unix_secs(), EXPIRY);
        assert_eq!(t.expiry().to_string(), "2023-11-14T23:13:20.000Z");
        assert_eq!(t.key_name(), None);
        t.verify(&key(), now).unwrap();
        let d = DeviceId::new("dev-01").unwrap();
        t.check_resource(&device_resource_uri("myhub.azure-devices.net", &d))
            .unwrap();

        let m = SasToken::parse(PYTHON_MODULE_TOKEN).unwrap();
        m.verify(&key(), now).unwrap();
        let module = ModuleId::new("mod-a").unwrap();
        m.check_resource(&module_resource_uri("myhub.azure-devices.net", &d, &module))
            .unwrap();
        assert!(m
            .check_resource(&device_resource_uri("myhub.azure-devices.net", &d))
            .is_err());

        let p = SasToken::parse(PYTHON_POLICY_TOKEN).unwrap();
        p.verify(&key(), now).unwrap();
        assert_eq!(p.key_name(), Some("iothubowner"));
        p.check_key_name(Some("iothubowner")).unwrap();
        assert_eq!(
            p.check_key_name(None),
            Err(SasError::KeyNameMismatch {
                expected: None,
                found: Some("iothubowner".to_string())
            })
        );
        // a hub-wide policy token covers every device
        p.check_resource("myhub.azure-devices.net/devices/dev-01")
            .unwrap();
    }

    #[test]
    fn lower_case_escapes_verify_when_signed_over_that_literal() {
        // the docs' examples use `%2f`; a token signed over that exact text must verify,
        // which only works when the hub does not re-encode `sr`
        let sr = "myhub.azure-devices.net%2fdevices%2fdev-01";
        let sig = STANDARD.encode(key().sign(format!("{sr}\n{EXPIRY}").as_bytes()));
        let token = format!(
            "SharedAccessSignature sig={}&se={EXPIRY}&sr={sr}",
            encode(&sig, COMPONENT)
        );
        let t = SasToken::parse(&token).unwrap();
        assert_eq!(t.resource_uri(), "myhub.azure-devices.net/devices/dev-01");
        t.verify_signature(&key()).unwrap();
        // the same token with upper-case escapes is a different signed string
        let upper = token.replace("%2f", "%2F");
        assert!(matches!(
            SasToken::parse(&upper).unwrap().verify_signature(&key()),
            Err(SasError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn unencoded_signature_with_plus_verifies() {
        let sr = "myhub.azure-devices.net%2Fdevices%2Fdev-01";
        let sig = STANDARD.encode(key().sign(format!("{sr}\n{EXPIRY}").as_bytes()));
        let token = format!("SharedAccessSignature sr={sr}&sig={sig}&se={EXPIRY}");
        SasToken::parse(&token)
            .unwrap()
            .verify_signature(&key())
            .unwrap();
    }

    #[test]
    fn wrong_key_or_tampering_fails() {
        let other = SymmetricKey::new("b3RoZXIga2V5").unwrap();
        let t = SasToken::parse(PYTHON_DEVICE_TOKEN).unwrap();
        assert_eq!(
            t.verify_signature(&other),
            Err(SasError::SignatureMismatch {
                resource: "myhub.azure-devices.net/devices/dev-01".to_string()
            })
        );
        for tampered in [
            PYTHON_DEVICE_TOKEN.replace("se=1700003600", "se=1700003601"),
            PYTHON_DEVICE_TOKEN.replace("dev-01", "dev-02"),
        ] {
            assert!(SasToken::parse(&tampered)
                .unwrap()
                .verify_signature(&key())
                .is_err());
        }
    }

    #[test]
    fn resource_mismatch_names_both() {
        assert_eq!(
            SasToken::parse(PYTHON_DEVICE_TOKEN)
                .unwrap()
                .check_resource("myhub.azure-devices.net/devices/dev-010"),
            Err(SasError::ResourceMismatch {
                resource: "myhub.azure-devices.net/devices/dev-01".to_string(),
                expected: "myhub.azure-devices.net/devices/dev-010".to_string(),
            })
        );
    }

    #[test]
    fn expiry() {
        let t = SasToken::parse(PYTHON_DEVICE_TOKEN).unwrap();
        let at = Timestamp::from_unix_secs(EXPIRY);
        assert!(t
            .check_expiry(Timestamp::from_unix_millis(EXPIRY * 1000 - 1))
            .is_ok());
        assert_eq!(
            t.check_expiry(at),
            Err(SasError::Expired {
                expiry: at,
                now: at
            })
        );
        assert_eq!(
            t.verify(&key(), Timestamp::from_unix_secs(EXPIRY + 10)),
            Err(SasError::Expired {
                expiry: at,
                now: Timestamp::from_unix_secs(EXPIRY + 10)
            })
        );
    }

    #[test]
    fn prefix_by_level() {
        assert!(resource_covers("h.net/a/b", "h.net/a/b/c"));
        assert!(resource_covers("h.net/a/b", "h.net/a/b"));
        assert!(resource_covers("h.net/a/b/", "h.net/a/b"));
        assert!(!resource_covers("h.net/a/b", "h.net/a/bc"));
        assert!(!resource_covers("h.net/a/b/c", "h.net/a/b"));
        assert!(resource_covers("H.NET/devices", "h.net/devices/d1"));
        assert!(!resource_covers("h.net/Devices/d1", "h.net/devices/d1"));
        assert!(!resource_covers("h.net/devices/D1", "h.net/devices/d1"));
        assert!(!resource_covers("other.net", "h.net/devices/d1"));
        assert!(resource_covers("h.net", "h.net/devices/d1"));
    }

    #[test]
    fn builders() {
        let d = DeviceId::new("d1").unwrap();
        let m = ModuleId::new("m1").unwrap();
        assert_eq!(device_resource_uri("h", &d), "h/devices/d1");
        assert_eq!(module_resource_uri("h", &d, &m), "h/devices/d1/modules/m1");
        assert!(resource_covers(
            &device_resource_uri("h", &d),
            &module_resource_uri("h", &d, &m)
        ));
    }

    fn path() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[a-z0-9]{1,4}", 0..4)
    }

    proptest! {
        #[test]
        fn a_path_covers_its_extensions(base in path(), ext in path()) {
            let granted = std::iter::once("h.net".to_string()).chain(base.clone()).collect::<Vec<_>>().join("/");
            let expected = std::iter::once("H.net".to_string()).chain(base).chain(ext).collect::<Vec<_>>().join("/");
            prop_assert!(resource_covers(&granted, &expected));
        }

        #[test]
        fn a_longer_path_never_covers_a_shorter_one(base in path(), extra in "[a-z0-9]{1,4}") {
            let expected = std::iter::once("h.net".to_string()).chain(base).collect::<Vec<_>>().join("/");
            let granted = format!("{expected}/{extra}");
            prop_assert!(!resource_covers(&granted, &expected));
            // nor does a level that merely starts like the expected one
            let sibling = format!("{expected}{extra}");
            prop_assert!(!resource_covers(&expected, &sibling));
        }
    }
}
