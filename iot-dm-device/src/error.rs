//! The client's error types.
//!
//! Match on the predicates ([`Error::is_timeout`], [`Error::is_refused`], ...) rather than on
//! the message text: the text is for people and may change.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use iot_dm_core::link::ConnectRefused;

use crate::types::CloseReason;

/// The operation an [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Opening a session.
    Connect,
    /// [`DeviceClient::get_twin`](crate::DeviceClient::get_twin).
    GetTwin,
    /// [`DeviceClient::update_reported`](crate::DeviceClient::update_reported).
    UpdateReported,
    /// [`DeviceClient::send_telemetry`](crate::DeviceClient::send_telemetry).
    SendTelemetry,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Connect => "connect",
            Operation::GetTwin => "twin get",
            Operation::UpdateReported => "reported properties update",
            Operation::SendTelemetry => "telemetry send",
        })
    }
}

/// A transport failed to open a session.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The hub refused the session.
    #[error("the hub refused the session: {0}")]
    Refused(#[from] ConnectRefused),
    /// The hub could not be reached, or the connection failed underneath.
    #[error("i/o error talking to {endpoint}: {source}")]
    Io {
        /// The address or name of what the transport tried to reach.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The other side broke the protocol while the session was being opened.
    #[error("protocol error while connecting: {detail}")]
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// The TLS handshake failed (an untrusted or mismatched server certificate, a rejected
    /// client certificate, no common protocol version).
    #[error("tls handshake with {endpoint} failed: {detail}")]
    Tls {
        /// The address or name of what the transport tried to reach.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// The connect request cannot be served by this transport as configured (for example
    /// X.509 credentials without a client certificate).
    #[error("transport cannot send this request: {field}: {reason}")]
    Config {
        /// The setting or request field at fault, e.g. `client certificate`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl TransportError {
    /// Whether the hub refused the credentials (retrying with the same ones cannot help).
    pub fn is_not_authorized(&self) -> bool {
        matches!(
            self,
            TransportError::Refused(ConnectRefused::NotAuthorized { .. })
        )
    }
}

/// An error from the device client.
///
/// ```
/// use iot_dm_device::{Error, Operation};
/// use std::time::Duration;
/// let e = Error::Timeout { operation: Operation::GetTwin, after: Duration::from_secs(30) };
/// assert!(e.is_timeout() && e.is_retryable());
/// assert_eq!(e.to_string(), "twin get timed out after 30s (the operation timeout)");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client's configuration cannot be used.
    #[error("invalid client configuration: {field}: {reason}")]
    Config {
        /// The setting at fault, e.g. `connection string` or `reconnect backoff`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument cannot be sent to the hub.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// The argument, e.g. `reported patch`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The hub refused the session when the client first connected.
    #[error("the hub refused the connection: {0}")]
    Refused(ConnectRefused),
    /// The transport could not open the first session.
    #[error("cannot connect: {0}")]
    Transport(TransportError),
    /// The hub did not answer within the operation timeout.
    #[error("{operation} timed out after {after:?} (the operation timeout)")]
    Timeout {
        /// The operation.
        operation: Operation,
        /// The timeout that expired.
        after: Duration,
    },
    /// The hub answered with an error status (`>= 300`).
    #[error("hub rejected the {operation} with status {status}{code}: {message}", code = error_code.map(|c| format!(" (error code {c})")).unwrap_or_default())]
    Hub {
        /// The operation.
        operation: Operation,
        /// The status in the response topic (e.g. 400, 429, 500).
        status: u16,
        /// The `errorCode` of the response body, when there is one (e.g. 400004).
        error_code: Option<u64>,
        /// The `message` of the response body (or the body as text).
        message: String,
    },
    /// The hub's answer does not follow the protocol.
    #[error("malformed hub response to the {operation}: {detail}")]
    Protocol {
        /// The operation.
        operation: Operation,
        /// What was wrong.
        detail: String,
    },
    /// The queue of operations waiting for a connection or an answer is full.
    #[error("operation queue is full: queue capacity is {capacity} waiting operations")]
    QueueFull {
        /// The configured queue capacity.
        capacity: usize,
    },
    /// The client stopped; no operation can complete any more.
    #[error("the client is closed: {reason}")]
    Closed {
        /// Why it stopped.
        reason: CloseReason,
    },
}

impl Error {
    /// Whether the hub did not answer in time. The operation may or may not have taken effect.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Whether the hub refused the session (when connecting, or on a reconnect, which closes
    /// the client).
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            Error::Refused(_)
                | Error::Transport(TransportError::Refused(_))
                | Error::Closed {
                    reason: CloseReason::Refused { .. }
                }
        )
    }

    /// Whether the client is closed (for any reason, including a refused reconnect).
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed { .. })
    }

    /// Whether the hub answered with an error status.
    pub fn is_hub_error(&self) -> bool {
        matches!(self, Error::Hub { .. })
    }

    /// Whether the operation queue was full.
    pub fn is_queue_full(&self) -> bool {
        matches!(self, Error::QueueFull { .. })
    }

    /// Whether the arguments or the configuration were rejected before anything was sent.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput { .. } | Error::Config { .. })
    }

    /// The hub's status for [`Error::Hub`] errors.
    pub fn hub_status(&self) -> Option<u16> {
        match self {
            Error::Hub { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: timeouts, a full queue, throttling (429) and
    /// server errors (5xx), and transport failures other than refused credentials.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::QueueFull { .. } => true,
            Error::Hub { status, .. } => *status == 429 || *status >= 500,
            Error::Refused(r) => matches!(r, ConnectRefused::ServerUnavailable { .. }),
            Error::Transport(t) => !t.is_not_authorized(),
            _ => false,
        }
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Error {
        match e {
            TransportError::Refused(r) => Error::Refused(r),
            other => Error::Transport(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        let refused = Error::from(TransportError::Refused(ConnectRefused::NotAuthorized {
            reason: "bad key".into(),
        }));
        assert!(refused.is_refused() && !refused.is_retryable());
        let busy = Error::from(TransportError::Refused(ConnectRefused::ServerUnavailable {
            reason: "busy".into(),
        }));
        assert!(busy.is_refused() && busy.is_retryable());
        let hub = Error::Hub {
            operation: Operation::UpdateReported,
            status: 400,
            error_code: Some(400004),
            message: "too deep".into(),
        };
        assert!(hub.is_hub_error() && !hub.is_retryable());
        assert_eq!(hub.hub_status(), Some(400));
        assert_eq!(
            hub.to_string(),
            "hub rejected the reported properties update with status 400 (error code 400004): too deep"
        );
        let throttled = Error::Hub {
            operation: Operation::GetTwin,
            status: 429,
            error_code: None,
            message: "slow down".into(),
        };
        assert!(throttled.is_retryable());
        let closed = Error::Closed {
            reason: CloseReason::Refused {
                reason: "disabled".into(),
            },
        };
        assert!(closed.is_closed() && closed.is_refused());
        assert!(!Error::Closed {
            reason: CloseReason::Requested
        }
        .is_refused());
        assert!(Error::QueueFull { capacity: 3 }.is_queue_full());
    }
}
