//! Errors of the MQTT endpoint's set-up (binding, TLS material, development certificates).

use std::net::SocketAddr;

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
    /// TLS material (certificates, keys, PEM files, development certificates) is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl From<rustls::Error> for MqttError {
    fn from(e: rustls::Error) -> Self {
        MqttError::Tls(e.into())
    }
}
