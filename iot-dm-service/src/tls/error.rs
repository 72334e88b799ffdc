//! Errors of TLS set-up: reading PEM material, building rustls configurations, generating
//! development certificates.

use std::path::PathBuf;

/// Why TLS material could not be read, generated or turned into a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("writing {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// PEM input holds no usable item of the expected kind.
    #[error("{what}: {reason}")]
    Pem {
        /// What was being read (`certificate chain`, `private key`, ...).
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("tls configuration: {reason}")]
    Config {
        /// rustls's explanation.
        reason: String,
    },
    /// A certificate could not be generated.
    #[error("generating {what}: {reason}")]
    Certificate {
        /// The certificate being generated.
        what: &'static str,
        /// rcgen's explanation.
        reason: String,
    },
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Config {
            reason: e.to_string(),
        }
    }
}
