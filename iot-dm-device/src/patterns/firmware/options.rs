//! [`FirmwareOptions`] and [`SigningKey`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iot_dm_core::patterns::FirmwareResultCode;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

use super::Failure;
use crate::patterns::PatternsError;

/// The public key firmware signatures are checked with. The signed message is the
/// package's 32-byte SHA-256 digest: Ed25519 signs those bytes; ECDSA P-256 signs them with
/// SHA-256 as its hash (ECDSA-SHA256 over the digest, as `ring`'s `ECDSA_P256_SHA256_*`
/// algorithms sign and verify), so a signer passes the digest as the message.
///
/// ```
/// use iot_dm_device::patterns::SigningKey;
/// let key = SigningKey::ed25519(&[7u8; 32])?;
/// assert!(SigningKey::ed25519(&[7u8; 31]).is_err());
/// assert!(SigningKey::ecdsa_p256(&[4u8; 10]).is_err());
/// # let _ = key;
/// # Ok::<(), iot_dm_device::patterns::PatternsError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningKey {
    /// An Ed25519 public key (32 bytes).
    Ed25519(Vec<u8>),
    /// An ECDSA P-256 public key, an uncompressed SEC1 point (65 bytes, `0x04 || x || y`);
    /// signatures may be DER or fixed-size `r || s`.
    EcdsaP256(Vec<u8>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKey::Ed25519(_) => f.write_str("SigningKey::Ed25519"),
            SigningKey::EcdsaP256(_) => f.write_str("SigningKey::EcdsaP256"),
        }
    }
}

impl SigningKey {
    /// An Ed25519 key from its 32 bytes.
    pub fn ed25519(public: &[u8]) -> Result<SigningKey, PatternsError> {
        if public.len() != 32 {
            return Err(PatternsError::Config {
                field: "signing key",
                reason: format!("an Ed25519 public key has 32 bytes, not {}", public.len()),
            });
        }
        Ok(SigningKey::Ed25519(public.to_vec()))
    }

    /// A P-256 key from its uncompressed SEC1 encoding (65 bytes starting with 0x04).
    pub fn ecdsa_p256(public: &[u8]) -> Result<SigningKey, PatternsError> {
        if public.len() != 65 || public.first() != Some(&4) {
            return Err(PatternsError::Config {
                field: "signing key",
                reason: "a P-256 public key is an uncompressed point: 65 bytes starting with 0x04"
                    .to_string(),
            });
        }
        Ok(SigningKey::EcdsaP256(public.to_vec()))
    }
}

/// How the device fetches and checks firmware, for
/// [`DeviceClient::enable_firmware`](crate::DeviceClient::enable_firmware).
///
/// | option | default |
/// |---|---|
/// | download directory | required: where `<sha256>.part` images are kept (keep it across restarts, so downloads resume) |
/// | [`trusted_ca_pem`](Self::trusted_ca_pem) | the platform trust store |
/// | [`signing_key`](Self::signing_key) | none: only the SHA-256 digest is checked |
/// | [`progress_interval`](Self::progress_interval) | 1 s between progress reports at least |
/// | [`download_attempts`](Self::download_attempts) | 5 attempts, 2 s apart |
///
/// ```
/// use std::time::Duration;
/// use iot_dm_device::patterns::FirmwareOptions;
///
/// let opts = FirmwareOptions::new(std::env::temp_dir().join("fw"))
///     .progress_interval(Duration::from_secs(5))
///     .download_attempts(3, Duration::from_secs(10));
/// assert!(FirmwareOptions::new("fw").trusted_ca_pem(b"not pem").is_err());
/// # let _ = opts;
/// ```
#[derive(Clone, Debug)]
pub struct FirmwareOptions {
    download_dir: PathBuf,
    roots: Option<RootCertStore>,
    signing_key: Option<SigningKey>,
    progress_interval: Duration,
    attempts: u32,
    retry_delay: Duration,
}

impl FirmwareOptions {
    /// Options keeping downloads in `download_dir`.
    pub fn new(download_dir: impl Into<PathBuf>) -> FirmwareOptions {
        FirmwareOptions {
            download_dir: download_dir.into(),
            roots: None,
            signing_key: None,
            progress_interval: Duration::from_secs(1),
            attempts: 5,
            retry_delay: Duration::from_secs(2),
        }
    }

    /// Trusts only the CA certificates of this PEM bundle for downloads (e.g. the hub's
    /// development CA) instead of the platform's trust store.
    pub fn trusted_ca_pem(mut self, pem: &[u8]) -> Result<FirmwareOptions, PatternsError> {
        let config = |reason: String| PatternsError::Config {
            field: "trusted CA",
            reason,
        };
        let mut roots = RootCertStore::empty();
        for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = cert.map_err(|e| config(format!("certificate {}: {e}", i + 1)))?;
            roots
                .add(cert)
                .map_err(|e| config(format!("certificate {}: {e}", i + 1)))?;
        }
        if roots.is_empty() {
            return Err(config("holds no `BEGIN CERTIFICATE` block".to_string()));
        }
        self.roots = Some(roots);
        Ok(self)
    }

    /// Requires every request to be signed with the private half of `key`.
    pub fn signing_key(mut self, key: SigningKey) -> FirmwareOptions {
        self.signing_key = Some(key);
        self
    }

    /// The least time between two progress reports.
    pub fn progress_interval(mut self, interval: Duration) -> FirmwareOptions {
        self.progress_interval = interval;
        self
    }

    /// How many times a download is tried (at least once), and the pause between tries.
    /// Each try resumes from the bytes already on disk.
    pub fn download_attempts(mut self, attempts: u32, delay: Duration) -> FirmwareOptions {
        self.attempts = attempts.max(1);
        self.retry_delay = delay;
        self
    }

    pub(super) fn download_dir(&self) -> &Path {
        &self.download_dir
    }

    pub(super) fn signing_key_ref(&self) -> Option<&SigningKey> {
        self.signing_key.as_ref()
    }

    pub(super) fn interval(&self) -> Duration {
        self.progress_interval
    }

    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    pub(super) fn retry_delay(&self) -> Duration {
        self.retry_delay
    }

    /// The TLS client configuration for downloads (ring provider, never the process
    /// default).
    pub(super) fn tls_config(&self) -> Result<Arc<ClientConfig>, Failure> {
        let roots = match &self.roots {
            Some(r) => r.clone(),
            None => {
                let mut roots = RootCertStore::empty();
                let loaded = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(loaded.certs);
                roots
            }
        };
        if roots.is_empty() {
            return Err(Failure::new(
                FirmwareResultCode::InvalidUri,
                "no trusted CA: the platform trust store is empty and none is configured",
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::new(FirmwareResultCode::UpdateFailed, format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}
