//! Development certificates, so nobody needs openssl to try the hub over TLS.
//!
//! [`DevCerts::load_or_create`] keeps a development CA and a server certificate for
//! `localhost`, `127.0.0.1` and `::1` (signed by that CA) as PEM files in a directory, reusing
//! what is already there:
//!
//! | file | content |
//! |---|---|
//! | `ca.pem` | the CA certificate: give it to devices (`server_verification_cert`, `ca`, TrustedCerts) |
//! | `ca-key.pem` | the CA key (only used to sign a new server certificate) |
//! | `server.pem` | the server certificate followed by the CA certificate |
//! | `server-key.pem` | the server key |
//!
//! [`DeviceCertificate::self_signed`] makes a device client certificate whose thumbprint you
//! register with the device (self-signed X.509 authentication).
//!
//! These are for development and tests only: the keys are written unencrypted.
//!
//! ```
//! use iot_dm_service::tls::dev_certs::{DevCerts, DeviceCertificate};
//! let dir = std::env::temp_dir().join(format!("iot-dm-dev-certs-doc-{}", std::process::id()));
//! let certs = DevCerts::load_or_create(&dir)?;
//! let again = DevCerts::load_or_create(&dir)?; // reuses the files
//! assert_eq!(certs.ca_pem(), again.ca_pem());
//! let _client = certs.client_config()?; // trusts the development CA
//!
//! let device = DeviceCertificate::self_signed("pump-1")?;
//! assert_eq!(device.sha256_thumbprint().len(), 64);
//! let _x509_client = certs.client_config_with_identity(&device)?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::{ClientConfig, ServerConfig};

use super::{self as tls, TlsError};

/// File name of the CA certificate.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA key.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of the server certificate chain.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the server key.
pub const SERVER_KEY_FILE: &str = "server-key.pem";

/// The names the development server certificate is valid for.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

const CA_NAME: &str = "iot-dm development CA";

fn gen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |e| TlsError::Certificate {
        what,
        reason: e.to_string(),
    }
}

/// The CA's parameters. Signing a new server certificate with a CA read back from disk relies
/// on these being the same as when the CA was made (its name and key usages).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "iot-dm");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2049, 12, 31);
    params
}

fn server_params() -> Result<CertificateParams, TlsError> {
    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).map_err(gen_err("server certificate"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2049, 12, 31);
    Ok(params)
}

/// A development CA and a server certificate signed by it, as PEM.
#[derive(Clone)]
pub struct DevCerts {
    dir: Option<PathBuf>,
    ca_pem: String,
    ca_key_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl std::fmt::Debug for DevCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCerts")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DevCerts {
    /// Generates a fresh CA and server certificate in memory (nothing is written).
    pub fn generate() -> Result<DevCerts, TlsError> {
        let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
        let ca_cert = ca_params()
            .self_signed(&ca_key)
            .map_err(gen_err("CA certificate"))?;
        let ca_pem = ca_cert.pem();
        let ca_key_pem = ca_key.serialize_pem();
        let (server_cert_pem, server_key_pem) = issue_server(&ca_pem, ca_key)?;
        Ok(DevCerts {
            dir: None,
            ca_pem,
            ca_key_pem,
            server_cert_pem,
            server_key_pem,
        })
    }

    /// Reads the certificates from `dir`, creating what is missing: a new CA (and then a new
    /// server certificate) when either CA file is missing, a new server certificate signed by
    /// the existing CA when either server file is missing. Creates `dir` if needed; key files
    /// are written readable by their owner only (on Unix).
    pub fn load_or_create(dir: impl AsRef<Path>) -> Result<DevCerts, TlsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| TlsError::WriteFile {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = |f: &str| dir.join(f);
        let have = |f: &str| path(f).is_file();
        let (ca_pem, ca_key_pem, fresh_ca) = if have(CA_CERT_FILE) && have(CA_KEY_FILE) {
            (
                read_string(&path(CA_CERT_FILE))?,
                read_string(&path(CA_KEY_FILE))?,
                false,
            )
        } else {
            let ca_key = KeyPair::generate().map_err(gen_err("CA key"))?;
            let cert = ca_params()
                .self_signed(&ca_key)
                .map_err(gen_err("CA certificate"))?;
            let (pem, key) = (cert.pem(), ca_key.serialize_pem());
            write_file(&path(CA_KEY_FILE), &key, true)?;
            write_file(&path(CA_CERT_FILE), &pem, false)?;
            tracing::info!(dir = %dir.display(), "created a development CA");
            (pem, key, true)
        };
        let (server_cert_pem, server_key_pem) =
            if !fresh_ca && have(SERVER_CERT_FILE) && have(SERVER_KEY_FILE) {
                (
                    read_string(&path(SERVER_CERT_FILE))?,
                    read_string(&path(SERVER_KEY_FILE))?,
                )
            } else {
                let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| TlsError::Pem {
                    what: "development CA key",
                    reason: e.to_string(),
                })?;
                let (cert, key) = issue_server(&ca_pem, ca_key)?;
                write_file(&path(SERVER_KEY_FILE), &key, true)?;
                write_file(&path(SERVER_CERT_FILE), &cert, false)?;
                tracing::info!(dir = %dir.display(), "created a development server certificate");
                (cert, key)
            };
        Ok(DevCerts {
            dir: Some(dir.to_path_buf()),
            ca_pem,
            ca_key_pem,
            server_cert_pem,
            server_key_pem,
        })
    }

    /// The directory the files live in (`None` for [`DevCerts::generate`]).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate followed by the CA certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// The server key, PEM.
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// The CA key, PEM (to sign further certificates in tests).
    pub fn ca_key_pem(&self) -> &str {
        &self.ca_key_pem
    }

    /// A client certificate with common name `device_id` issued by this development CA, for
    /// CA-signed X.509 authentication: register [`Self::ca_pem`] with the hub
    /// (`Hub::add_ca_certificate`) and the device with authentication type
    /// `certificateAuthority`.
    pub fn issue_device_certificate(&self, device_id: &str) -> Result<DeviceCertificate, TlsError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(gen_err("CA key"))?;
        let issuer = Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate().map_err(gen_err("device key"))?;
        let cert = device_params(device_id)
            .signed_by(&key, &issuer)
            .map_err(gen_err("device certificate"))?;
        Ok(DeviceCertificate::from_parts(cert.pem(), cert.der(), &key))
    }

    /// The server's rustls configuration (see [`tls::server_config`]).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        tls::server_config(
            self.server_cert_pem.as_bytes(),
            self.server_key_pem.as_bytes(),
        )
    }

    /// A client configuration (ring provider) that trusts the development CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        tls::client_config(self.ca_pem.as_bytes(), None)
    }

    /// A client configuration that trusts the development CA and presents a device
    /// certificate.
    pub fn client_config_with_identity(
        &self,
        device: &DeviceCertificate,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        tls::client_config(
            self.ca_pem.as_bytes(),
            Some((device.cert_pem.as_bytes(), device.key_pem.as_bytes())),
        )
    }
}

fn issue_server(ca_pem: &str, ca_key: KeyPair) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate().map_err(gen_err("server key"))?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let cert = server_params()?
        .signed_by(&key, &issuer)
        .map_err(gen_err("server certificate"))?;
    Ok((format!("{}{ca_pem}", cert.pem()), key.serialize_pem()))
}

fn read_string(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, content: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    options
        .open(path)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .map_err(|source| TlsError::WriteFile {
            path: path.to_path_buf(),
            source,
        })
}

fn device_params(device_id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, device_id);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2049, 12, 31);
    params
}

/// A device client certificate (self-signed, or issued by a development CA) and its thumbprints.
#[derive(Clone)]
pub struct DeviceCertificate {
    cert_pem: String,
    key_pem: String,
    sha1: String,
    sha256: String,
}

impl std::fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCertificate")
            .field("sha1", &self.sha1)
            .finish_non_exhaustive()
    }
}

impl DeviceCertificate {
    /// A self-signed client certificate with common name `device_id`, for self-signed X.509
    /// authentication: register [`Self::sha1_thumbprint`] or [`Self::sha256_thumbprint`] with
    /// the device.
    pub fn self_signed(device_id: &str) -> Result<DeviceCertificate, TlsError> {
        let key = KeyPair::generate().map_err(gen_err("device key"))?;
        let cert = device_params(device_id)
            .self_signed(&key)
            .map_err(gen_err("device certificate"))?;
        Ok(DeviceCertificate::from_parts(cert.pem(), cert.der(), &key))
    }

    fn from_parts(cert_pem: String, der: &[u8], key: &KeyPair) -> DeviceCertificate {
        let (sha1, sha256) = tls::thumbprints(&rustls_pki_types::CertificateDer::from(der));
        DeviceCertificate {
            cert_pem,
            key_pem: key.serialize_pem(),
            sha1,
            sha256,
        }
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// SHA-1 thumbprint, upper-case hex.
    pub fn sha1_thumbprint(&self) -> &str {
        &self.sha1
    }

    /// SHA-256 thumbprint, upper-case hex.
    pub fn sha256_thumbprint(&self) -> &str {
        &self.sha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "iot-dm-dev-certs-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn files_are_reused_and_missing_server_files_are_reissued_by_the_same_ca() {
        let dir = temp_dir("reuse");
        let first = DevCerts::load_or_create(&dir).unwrap();
        let second = DevCerts::load_or_create(&dir).unwrap();
        assert_eq!(first.server_cert_pem(), second.server_cert_pem());
        assert_eq!(first.ca_pem(), second.ca_pem());

        std::fs::remove_file(dir.join(SERVER_KEY_FILE)).unwrap();
        let third = DevCerts::load_or_create(&dir).unwrap();
        assert_eq!(third.ca_pem(), first.ca_pem());
        assert_ne!(third.server_key_pem(), first.server_key_pem());
        // a client trusting the old CA file still verifies the new server certificate
        verify_server_cert(&first, &third);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn verify_server_cert(trusting: &DevCerts, server: &DevCerts) {
        use rustls::client::danger::ServerCertVerifier as _;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(tls::certificates(trusting.ca_pem().as_bytes()).unwrap()[0].clone())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            tls::provider(),
        )
        .build()
        .unwrap();
        let chain = tls::certificates(server.server_cert_pem().as_bytes()).unwrap();
        for name in SERVER_NAMES {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(
                    &chain[0],
                    &chain[1..],
                    &name,
                    &[],
                    rustls::pki_types::UnixTime::now(),
                )
                .unwrap();
        }
        let other = rustls::pki_types::ServerName::try_from("example.com").unwrap();
        assert!(verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &other,
                &[],
                rustls::pki_types::UnixTime::now()
            )
            .is_err());
    }

    #[test]
    fn generated_server_cert_verifies_against_its_ca_only() {
        let a = DevCerts::generate().unwrap();
        verify_server_cert(&a, &a);
        let b = DevCerts::generate().unwrap();
        let chain = tls::certificates(b.server_cert_pem().as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(tls::certificates(a.ca_pem().as_bytes()).unwrap()[0].clone())
            .unwrap();
        use rustls::client::danger::ServerCertVerifier as _;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            tls::provider(),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        assert!(verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now()
            )
            .is_err());
    }

    #[test]
    fn device_certificates_differ_and_thumbprints_match_the_pem() {
        let a = DeviceCertificate::self_signed("dev-a").unwrap();
        let b = DeviceCertificate::self_signed("dev-a").unwrap();
        assert_ne!(a.sha1_thumbprint(), b.sha1_thumbprint());
        let der = &tls::certificates(a.cert_pem().as_bytes()).unwrap()[0];
        let (sha1, sha256) = tls::thumbprints(der);
        assert_eq!(sha1, a.sha1_thumbprint());
        assert_eq!(sha256, a.sha256_thumbprint());
        assert!(tls::private_key(a.key_pem().as_bytes()).is_ok());
    }
}
