//! Errors of the MQTT endpoint's set-up (binding, TLS material, development certificates).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the MQTT endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The server was started without any listener.
    #[error("listeners: none configured; add at least one with MqttServerBuilder::listen")]
    NoListeners,
    /// A TLS listener was configured without a certificate and key.
    #[error("listener {listener} at {addr} needs TLS, but no certificate and key were given (tls_pem, tls_pem_files or tls_config)")]
    TlsIdentityMissing {
        /// The listener kind.
        listener: &'static str,
        /// Its address.
        addr: SocketAddr,
    },
    /// Binding or listening on an address failed.
    #[error("listener {listener} at {addr}: {source}")]
    Bind {
        /// The listener kind.
        listener: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
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
    Tls {
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

impl From<rustls::Error> for MqttError {
    fn from(e: rustls::Error) -> Self {
        MqttError::Tls {
            reason: e.to_string(),
        }
    }
}

impl From<crate::tls::TlsError> for MqttError {
    fn from(e: crate::tls::TlsError) -> Self {
        use crate::tls::TlsError;
        match e {
            TlsError::ReadFile { path, source } => MqttError::ReadFile { path, source },
            TlsError::WriteFile { path, source } => MqttError::WriteFile { path, source },
            TlsError::Pem { what, reason } => MqttError::Pem { what, reason },
            TlsError::Certificate { what, reason } => MqttError::Certificate { what, reason },
            TlsError::Config { reason } => MqttError::Tls { reason },
        }
    }
}
