//! Transports: how the client opens a session with a hub.
//!
//! A [`Transport`] turns a [`ConnectRequest`] into a core [`Link`], the same seam the hub
//! serves. [`InMemoryTransport`] calls an in-process hub's [`Endpoint`] directly; a network
//! transport (MQTT over TLS) implements the same trait by speaking MQTT and adapting the
//! connection to a [`Link`], so the client above it does not change.

use std::fmt;
use std::sync::Arc;

use iot_dm_core::link::{ConnectRequest, Endpoint, Link};

use crate::error::TransportError;

/// Something that opens device sessions with a hub.
///
/// Each call opens a fresh session; the client calls it again to reconnect, with fresh
/// credentials when it renews a SAS token. Implementations must not retry on their own: the
/// client owns back-off and reconnection.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Opens a session, or says why not. A refusal by the hub is
    /// [`TransportError::Refused`]; everything else is a transient failure the client retries.
    async fn connect(&self, request: ConnectRequest) -> Result<Link, TransportError>;
}

#[async_trait::async_trait]
impl<T: Transport + ?Sized> Transport for Arc<T> {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, TransportError> {
        (**self).connect(request).await
    }
}

/// A transport to a hub running in the same process: it calls the hub's [`Endpoint`].
///
/// ```
/// use std::sync::Arc;
/// use iot_dm_core::link::{ConnectRefused, ConnectRequest, Endpoint, Link};
/// use iot_dm_device::InMemoryTransport;
///
/// struct ClosedHub;
/// #[async_trait::async_trait]
/// impl Endpoint for ClosedHub {
///     async fn connect(&self, _: ConnectRequest) -> Result<Link, ConnectRefused> {
///         Err(ConnectRefused::ServerUnavailable { reason: "maintenance".into() })
///     }
/// }
/// let transport = InMemoryTransport::new(Arc::new(ClosedHub));
/// # let _ = transport;
/// ```
#[derive(Clone)]
pub struct InMemoryTransport {
    endpoint: Arc<dyn Endpoint>,
}

impl InMemoryTransport {
    /// A transport to `endpoint`.
    pub fn new(endpoint: Arc<dyn Endpoint>) -> InMemoryTransport {
        InMemoryTransport { endpoint }
    }
}

impl fmt::Debug for InMemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryTransport").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Transport for InMemoryTransport {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, TransportError> {
        self.endpoint
            .connect(request)
            .await
            .map_err(TransportError::Refused)
    }
}
