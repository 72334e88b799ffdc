//! Checking a downloaded image: its SHA-256 digest and, with a key configured, its signature.

use std::path::Path;

use iot_dm_core::patterns::{FirmwareResultCode, FirmwareUpdateRequest};
use ring::signature::{self, UnparsedPublicKey};
use tokio::io::AsyncReadExt as _;

use super::{Failure, SigningKey};

/// The SHA-256 digest of the file at `path`.
pub(super) async fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the image at `path` against the request's digest and, when `key` is set, the
/// request's signature over that digest.
pub(super) async fn check(
    path: &Path,
    request: &FirmwareUpdateRequest,
    key: Option<&SigningKey>,
) -> Result<(), Failure> {
    let digest = sha256_file(path).await.map_err(|e| {
        Failure::new(
            FirmwareResultCode::UpdateFailed,
            format!("cannot read the image: {e}"),
        )
    })?;
    let got = hex(&digest);
    if got != request.sha256() {
        return Err(Failure::new(
            FirmwareResultCode::IntegrityFailure,
            format!(
                "sha256 mismatch: expected {}, the image has {got}",
                request.sha256()
            ),
        ));
    }
    let Some(key) = key else {
        if request.signature().is_some() {
            tracing::warn!(
                "the request is signed but no signing key is configured; signature not checked"
            );
        }
        return Ok(());
    };
    let Some(sig) = request.signature() else {
        return Err(Failure::new(
            FirmwareResultCode::IntegrityFailure,
            "the request carries no signature and this device requires one",
        ));
    };
    verify_signature(key, &digest, sig)
}

/// Verifies `sig` over the 32-byte `digest` with `key`.
pub(super) fn verify_signature(key: &SigningKey, digest: &[u8], sig: &[u8]) -> Result<(), Failure> {
    let result = match key {
        SigningKey::Ed25519(public) => {
            UnparsedPublicKey::new(&signature::ED25519, public).verify(digest, sig)
        }
        SigningKey::EcdsaP256(public) => {
            // a fixed-size r||s signature is 64 bytes; anything else is taken as DER
            let alg: &dyn signature::VerificationAlgorithm = if sig.len() == 64 {
                &signature::ECDSA_P256_SHA256_FIXED
            } else {
                &signature::ECDSA_P256_SHA256_ASN1
            };
            UnparsedPublicKey::new(alg, public).verify(digest, sig)
        }
    };
    result.map_err(|_| {
        Failure::new(
            FirmwareResultCode::IntegrityFailure,
            "the signature does not verify with the configured key",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

    #[test]
    fn ed25519_and_ecdsa_signatures_over_the_digest() {
        let rng = SystemRandom::new();
        let digest = ring::digest::digest(&ring::digest::SHA256, b"image");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = SigningKey::Ed25519(ed.public_key().as_ref().to_vec());
        let sig = ed.sign(digest.as_ref());
        assert!(verify_signature(&key, digest.as_ref(), sig.as_ref()).is_ok());
        let other = ring::digest::digest(&ring::digest::SHA256, b"other");
        let e = verify_signature(&key, other.as_ref(), sig.as_ref()).unwrap_err();
        assert_eq!(e.code, FirmwareResultCode::IntegrityFailure);

        for alg in [
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            let key = SigningKey::EcdsaP256(pair.public_key().as_ref().to_vec());
            let sig = pair.sign(&rng, digest.as_ref()).unwrap();
            assert!(verify_signature(&key, digest.as_ref(), sig.as_ref()).is_ok());
            assert!(verify_signature(&key, other.as_ref(), sig.as_ref()).is_err());
        }
    }
}
