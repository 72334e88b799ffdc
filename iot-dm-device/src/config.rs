//! The client builder and its options.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use iot_dm_core::clock::{Clock, SystemClock};

use crate::client::DeviceClient;
use crate::credentials::DeviceCredentials;
use crate::driver::Driver;
use crate::error::Error;
use crate::methods::MethodRegistry;
use crate::transport::Transport;

/// Default shortest reconnect delay.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Default longest reconnect delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default time the hub has to answer a twin request once it is sent.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a connection attempt may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of operations that may wait for a connection or an answer.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Default SAS token time to live (the official SDKs use one hour too).
pub const DEFAULT_SAS_TTL: Duration = Duration::from_secs(3600);
/// Shortest SAS time to live accepted.
pub const MIN_SAS_TTL: Duration = Duration::from_secs(10);

/// The knobs, with their defaults.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) sas_ttl: Duration,
    pub(crate) clean_session: bool,
    pub(crate) clock: Arc<dyn Clock>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("queue_capacity", &self.queue_capacity)
            .field("sas_ttl", &self.sas_ttl)
            .field("clean_session", &self.clean_session)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            sas_ttl: DEFAULT_SAS_TTL,
            clean_session: false,
            clock: Arc::new(SystemClock),
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason: String| Err(Error::Config { field, reason });
        if self.backoff_min < Duration::from_millis(1) {
            return bad(
                "reconnect backoff",
                format!("minimum is {:?}; it must be at least 1ms", self.backoff_min),
            );
        }
        if self.backoff_max < self.backoff_min {
            return bad(
                "reconnect backoff",
                format!(
                    "maximum {:?} is below the minimum {:?}",
                    self.backoff_max, self.backoff_min
                ),
            );
        }
        if self.operation_timeout.is_zero() {
            return bad("operation timeout", "is zero; it must be positive".into());
        }
        if self.connect_timeout.is_zero() {
            return bad("connect timeout", "is zero; it must be positive".into());
        }
        if self.queue_capacity == 0 {
            return bad("queue capacity", "is 0; it must be at least 1".into());
        }
        if self.sas_ttl < MIN_SAS_TTL {
            return bad(
                "sas ttl",
                format!("is {:?}; it must be at least {MIN_SAS_TTL:?}", self.sas_ttl),
            );
        }
        Ok(())
    }
}

/// Builds a [`DeviceClient`]: credentials, a transport, and options.
///
/// | option | default |
/// |---|---|
/// | [`reconnect_backoff`](Self::reconnect_backoff) | 1 s to 60 s, doubling, with jitter |
/// | [`operation_timeout`](Self::operation_timeout) | 30 s |
/// | [`connect_timeout`](Self::connect_timeout) | 30 s |
/// | [`queue_capacity`](Self::queue_capacity) | 256 operations |
/// | [`sas_ttl`](Self::sas_ttl) | 3600 s, renewed at 80 % |
/// | [`clean_session`](Self::clean_session) | `false`, as the official SDKs |
/// | [`clock`](Self::clock) | the system clock |
///
/// See [`DeviceClient`] for a complete example.
pub struct DeviceClientBuilder {
    credentials: DeviceCredentials,
    transport: Arc<dyn Transport>,
    opts: Options,
}

impl fmt::Debug for DeviceClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceClientBuilder")
            .field("credentials", &self.credentials)
            .field("transport", &self.transport)
            .field("options", &self.opts)
            .finish()
    }
}

impl DeviceClientBuilder {
    /// A builder for a device with `credentials`, reaching its hub through `transport`.
    pub fn new(
        credentials: DeviceCredentials,
        transport: impl Transport + 'static,
    ) -> DeviceClientBuilder {
        DeviceClientBuilder {
            credentials,
            transport: Arc::new(transport),
            opts: Options::default(),
        }
    }

    /// A builder from a device connection string (see
    /// [`DeviceCredentials::from_connection_string`]).
    pub fn from_connection_string(
        connection_string: &str,
        transport: impl Transport + 'static,
    ) -> Result<DeviceClientBuilder, Error> {
        Ok(DeviceClientBuilder::new(
            DeviceCredentials::from_connection_string(connection_string)?,
            transport,
        ))
    }

    /// The reconnect delays: `min`, doubling on each failed attempt up to `max`, each with
    /// up to 50 % random jitter taken off.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.opts.backoff_min = min;
        self.opts.backoff_max = max;
        self
    }

    /// How long the hub has to answer a twin request once it is sent. Time spent queued while
    /// offline does not count; wrap the call in `tokio::time::timeout` for an overall limit.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.opts.operation_timeout = timeout;
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.opts.connect_timeout = timeout;
        self
    }

    /// How many operations (twin requests and telemetry) may wait for a connection or an
    /// answer; past that, operations fail with [`Error::QueueFull`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.opts.queue_capacity = capacity;
        self
    }

    /// The lifetime of the SAS tokens the client signs (at least [`MIN_SAS_TTL`]). The client
    /// reconnects with a fresh token after 80 % of it.
    pub fn sas_ttl(mut self, ttl: Duration) -> Self {
        self.opts.sas_ttl = ttl;
        self
    }

    /// Whether to ask the hub to drop the previous session's state on connect.
    pub fn clean_session(mut self, clean: bool) -> Self {
        self.opts.clean_session = clean;
        self
    }

    /// The clock SAS expiry and renewal are computed with (a
    /// [`ManualClock`](iot_dm_core::clock::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.opts.clock = clock;
        self
    }

    /// Opens the first session and returns the client once it is up (subscriptions sent,
    /// twin resync under way). A refused or failed first attempt is returned, not retried;
    /// later losses are retried in the background.
    ///
    /// Must be called within a tokio runtime: the client's driver runs as a spawned task.
    pub async fn connect(self) -> Result<DeviceClient, Error> {
        self.opts.validate()?;
        let methods = Arc::new(MethodRegistry::default());
        let (credentials, opts) = (self.credentials.clone(), self.opts.clone());
        let (mut driver, handles) =
            Driver::new(self.transport, self.credentials, self.opts, methods.clone());
        let link = driver.connect_once().await?;
        tracing::info!(device = %credentials.device_id(), "connected");
        tokio::spawn(driver.run(link));
        Ok(DeviceClient::new(handles, methods, credentials, opts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let cases: [(Options, &str); 5] = [
            (
                Options {
                    backoff_min: Duration::ZERO,
                    ..Options::default()
                },
                "reconnect backoff",
            ),
            (
                Options {
                    backoff_max: Duration::from_millis(10),
                    ..Options::default()
                },
                "reconnect backoff",
            ),
            (
                Options {
                    queue_capacity: 0,
                    ..Options::default()
                },
                "queue capacity",
            ),
            (
                Options {
                    sas_ttl: Duration::from_secs(1),
                    ..Options::default()
                },
                "sas ttl",
            ),
            (
                Options {
                    operation_timeout: Duration::ZERO,
                    ..Options::default()
                },
                "operation timeout",
            ),
        ];
        for (opts, field) in cases {
            match opts.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(Options::default().validate().is_ok());
    }
}
