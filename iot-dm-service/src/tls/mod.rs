//! TLS shared by the hub's endpoints (MQTT and the service REST API) and the remote service
//! client: rustls configurations (ring provider) from PEM, the client certificate verifier that
//! leaves the decision to the registry, certificate thumbprints, and [development
//! certificates](dev_certs).
//!
//! ```
//! use iot_dm_service::tls::{self, dev_certs::DevCerts};
//! let certs = DevCerts::generate()?;
//! let config = tls::server_config(certs.server_cert_pem().as_bytes(), certs.server_key_pem().as_bytes())?;
//! assert!(config.alpn_protocols.is_empty());
//! let (sha1, sha256) = tls::thumbprints(&tls::certificates(certs.ca_pem().as_bytes())?[0]);
//! assert_eq!((sha1.len(), sha256.len()), (40, 64));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write as _;
use std::path::Path;
#[cfg(any(feature = "mqtt", feature = "rest"))]
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use sha1::Digest as _;

#[cfg(feature = "dev-certs")]
pub mod dev_certs;
mod error;

pub use error::TlsError;

/// The crypto provider every configuration here uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in PEM input (a chain: leaf first).
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate chain",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "certificate chain",
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) in PEM input.
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

/// Reads a PEM (or any) file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The server configuration the endpoint uses: TLS 1.2 and 1.3, the given certificate chain
/// and key, client certificates optional and accepted without chain validation (see
/// [`RegistryClientVerifier`]), and one stateless session ticket per handshake so that
/// reconnecting devices (a fleet coming back after a restart) can resume cheaply.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert_pem)?;
    let key = private_key(key_pem)?;
    let provider = provider();
    let verifier = Arc::new(RegistryClientVerifier::new(&provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// The server configuration of the HTTPS (service REST API) endpoint: TLS 1.2 and 1.3, the given
/// certificate chain and key, no client certificates, ALPN `http/1.1`, one stateless session
/// ticket per handshake.
pub fn https_server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificates(cert_pem)?, private_key(key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// [`server_config`] from PEM files.
pub fn server_config_from_files(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert = read_file(cert_path.as_ref())?;
    let key = read_file(key_path.as_ref())?;
    server_config(&cert, &key)
}

/// Builds a server configuration from a PEM certificate chain and key.
#[cfg(any(feature = "mqtt", feature = "rest"))]
pub(crate) type BuildConfig = fn(&[u8], &[u8]) -> Result<Arc<ServerConfig>, TlsError>;

/// Where a server's TLS identity comes from, as its builder was told.
#[cfg(any(feature = "mqtt", feature = "rest"))]
#[derive(Debug)]
pub(crate) enum TlsSource {
    /// No TLS (plain TCP).
    None,
    /// A certificate chain and key, as PEM.
    Pem { cert: Vec<u8>, key: Vec<u8> },
    /// PEM files, read when the server starts.
    Files { cert: PathBuf, key: PathBuf },
    /// A configuration of the caller's own.
    Config(Arc<ServerConfig>),
}

#[cfg(any(feature = "mqtt", feature = "rest"))]
impl TlsSource {
    /// The server configuration, built by `build` from PEM (read from the files first).
    pub(crate) fn resolve(self, build: BuildConfig) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        Ok(match self {
            TlsSource::None => None,
            TlsSource::Pem { cert, key } => Some(build(&cert, &key)?),
            TlsSource::Files { cert, key } => Some(build(&read_file(&cert)?, &read_file(&key)?)?),
            TlsSource::Config(c) => Some(c),
        })
    }
}

/// A client configuration (ring provider) trusting the CA certificates in `ca_pem`, optionally
/// presenting a client certificate (`(cert_pem, key_pem)`).
pub fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The SHA-1 and SHA-256 thumbprints of a DER certificate, as upper-case hex (the form IoT Hub
/// shows and the registry stores; the registry compares case-insensitively).
pub fn thumbprints(cert: &CertificateDer<'_>) -> (String, String) {
    (
        hex_upper(&sha1::Sha1::digest(cert.as_ref())),
        hex_upper(&sha2::Sha256::digest(cert.as_ref())),
    )
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Asks every client for a certificate, accepts any (or none) without validating a chain, and
/// checks only that the client holds the certificate's key (the handshake signature).
///
/// The registry then decides: a device registered with self-signed thumbprints connects when
/// its certificate's thumbprint matches. Validity dates are not checked, as with IoT Hub's
/// self-signed thumbprint authentication.
#[derive(Debug)]
pub struct RegistryClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl RegistryClientVerifier {
    /// A verifier using the provider's signature algorithms.
    pub fn new(provider: &CryptoProvider) -> RegistryClientVerifier {
        RegistryClientVerifier {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for RegistryClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_upper_case_and_padded() {
        assert_eq!(hex_upper(&[0x00, 0x0a, 0xff]), "000AFF");
    }

    #[test]
    fn thumbprints_of_known_bytes() {
        // sha1("abc") and sha256("abc")
        let (s1, s256) = thumbprints(&CertificateDer::from(b"abc".to_vec()));
        assert_eq!(s1, "A9993E364706816ABA3E25717850C26C9CD0D89D");
        assert_eq!(
            s256,
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
    }

    #[test]
    fn pem_errors_name_what_was_read() {
        let e = certificates(b"not pem").unwrap_err();
        assert!(e.to_string().starts_with("certificate chain:"), "{e}");
        let e = private_key(b"").unwrap_err();
        assert!(e.to_string().starts_with("private key:"), "{e}");
    }

    #[tokio::test]
    async fn reconnecting_clients_resume_and_client_certificates_reach_the_server() {
        use rustls::HandshakeKind;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let certs = super::dev_certs::DevCerts::generate().unwrap();
        let device = super::dev_certs::DeviceCertificate::self_signed("d1").unwrap();
        let server = certs.server_config().unwrap();
        let client = certs.client_config_with_identity(&device).unwrap();
        for expected in [HandshakeKind::Full, HandshakeKind::Resumed] {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
            let connector = tokio_rustls::TlsConnector::from(client.clone());
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let (s, c) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
            let (mut s, mut c) = (s.unwrap(), c.unwrap());
            assert_eq!(c.get_ref().1.handshake_kind(), Some(expected));
            let der = s.get_ref().1.peer_certificates().unwrap()[0].clone();
            assert_eq!(thumbprints(&der).1, device.sha256_thumbprint());
            // the session ticket travels after the handshake: read past it
            s.write_all(b"x").await.unwrap();
            s.flush().await.unwrap();
            let mut byte = [0u8; 1];
            c.read_exact(&mut byte).await.unwrap();
        }
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = super::dev_certs::DevCerts::generate().unwrap();
        let b = super::dev_certs::DevCerts::generate().unwrap();
        let e = server_config(
            a.server_cert_pem().as_bytes(),
            b.server_key_pem().as_bytes(),
        );
        assert!(matches!(e, Err(TlsError::Config { .. })), "{e:?}");
    }
}
