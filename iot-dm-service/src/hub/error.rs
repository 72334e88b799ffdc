//! The hub's error type, with IoT Hub's error codes.

use iot_dm_core::alert::AlertRuleError;
use iot_dm_core::configuration::ConfigurationError;
use iot_dm_core::job::JobError;
use iot_dm_core::lifecycle::LifecycleError;
use iot_dm_core::method::MethodError;
use iot_dm_core::query::QueryError;
use iot_dm_core::twin::TwinError;

use crate::artifacts::ArtifactError;
use crate::store::StoreError;

/// Why a hub operation failed.
///
/// Match on the variant or use the predicates (`is_not_found()`, ...); [`HubError::code`] gives
/// IoT Hub's six-digit error code and [`HubError::http_status`] the HTTP status the REST API
/// answers with. Message text is for people and may change.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No device with this id (or it is retired, for operations on live devices).
    #[error("device {device_id:?} not found")]
    DeviceNotFound {
        /// The device id.
        device_id: String,
    },
    /// A device with this id already exists.
    #[error("device {device_id:?} already exists")]
    DeviceAlreadyExists {
        /// The device id.
        device_id: String,
    },
    /// An `If-Match` ETag does not match.
    #[error("precondition failed: If-Match {expected:?} does not match etag {actual:?}")]
    PreconditionFailed {
        /// The ETag the caller sent.
        expected: String,
        /// The current ETag.
        actual: String,
    },
    /// The device is not connected, or not listening for direct methods.
    #[error("device {device_id:?} is not online or not listening for direct methods")]
    DeviceNotOnline {
        /// The device id.
        device_id: String,
    },
    /// The device did not answer a direct method in time.
    #[error("device {device_id:?} did not answer within {timeout_secs} s")]
    GatewayTimeout {
        /// The device id.
        device_id: String,
        /// The response timeout that passed.
        timeout_secs: u64,
    },
    /// A field of the request is invalid.
    #[error("invalid {field}: {message}")]
    InvalidInput {
        /// Which field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A twin change was refused (limits, keys, ETag).
    #[error(transparent)]
    Twin(#[from] TwinError),
    /// A lifecycle transition is not allowed from the device's state.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// A query is invalid (the error has the position and a caret snippet).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A direct-method request or response is invalid.
    #[error(transparent)]
    Method(#[from] MethodError),
    /// The device's cloud-to-device queue is full.
    #[error("device {device_id:?} already has {limit} cloud-to-device messages waiting")]
    QueueFull {
        /// The device id.
        device_id: String,
        /// The limit.
        limit: usize,
    },
    /// Too many devices for one call or for the hub.
    #[error("too many devices: {count}, the limit is {limit}")]
    TooManyDevices {
        /// How many were asked for.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// No job with this id (IoT Hub's 404002).
    #[error("job {job_id:?} not found")]
    JobNotFound {
        /// The job id.
        job_id: String,
    },
    /// A job with this id exists (IoT Hub's 409104).
    #[error("job {job_id:?} already exists")]
    JobAlreadyExists {
        /// The job id.
        job_id: String,
    },
    /// As many jobs as the hub allows are queued, scheduled or running (IoT Hub's 429004).
    #[error("too many active jobs: the limit is {limit}")]
    TooManyActiveJobs {
        /// The limit.
        limit: usize,
    },
    /// A job request is invalid (the error names the field).
    #[error(transparent)]
    Job(#[from] JobError),
    /// No configuration with this id (IoT Hub's 404301).
    #[error("configuration {id:?} not found")]
    ConfigurationNotFound {
        /// The configuration id.
        id: String,
    },
    /// A configuration with this id exists, and the request had no `If-Match` (IoT Hub's
    /// 409401): an update names the ETag it replaces, or `*`.
    #[error(
        "configuration {id:?} already exists; send If-Match with its etag (or *) to update it"
    )]
    ConfigurationAlreadyExists {
        /// The configuration id.
        id: String,
    },
    /// The hub holds as many configurations as it allows (IoT Hub's 413101).
    #[error("too many configurations: the limit is {limit}; delete one first")]
    TooManyConfigurations {
        /// The limit.
        limit: usize,
    },
    /// A configuration is invalid (the error names the field).
    #[error(transparent)]
    Configuration(#[from] ConfigurationError),
    /// No alert rule with this id (`404501`; IoT Hub has no alerts).
    #[error("alert rule {id:?} not found")]
    AlertRuleNotFound {
        /// The rule id.
        id: String,
    },
    /// No alert with this id (`404502`).
    #[error("alert {id:?} not found")]
    AlertNotFound {
        /// The alert id.
        id: String,
    },
    /// The hub holds as many alert rules as it allows (`413501`).
    #[error("too many alert rules: the limit is {limit}; delete one first")]
    TooManyAlertRules {
        /// The limit.
        limit: usize,
    },
    /// An alert rule is invalid (the error names the field).
    #[error(transparent)]
    AlertRule(#[from] AlertRuleError),
    /// The disk holding the store has less free space than a write needs (IoT Hub has no such
    /// error; HTTP 507 Insufficient Storage, `507001`). Nothing was written, and writes succeed
    /// again once space is freed on that disk; reads go on.
    #[error("the disk holding the store ({path}) is full: {free} bytes free, a write needs {needed}; nothing was written, free space on that disk and retry")]
    InsufficientStorage {
        /// The directory of the store file.
        path: String,
        /// The bytes free.
        free: u64,
        /// The bytes a write needs free.
        needed: u64,
    },
    /// The store failed to make a write durable. The write was not acknowledged.
    #[error("storage failed: {0}")]
    Store(StoreError),
    /// The hub is shut down.
    #[error("the hub is shut down")]
    Closed,
    /// A remote call carried no valid credentials (IoT Hub's 401003).
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// Why the credentials were refused.
        message: String,
    },
    /// The caller's access policy lacks a right the operation needs.
    #[error("forbidden: {message}")]
    Forbidden {
        /// Which right was missing.
        message: String,
    },
    /// The caller's access policy is over its rate limit (IoT Hub's 429001).
    #[error("throttled: retry after {retry_after_secs} s")]
    Throttled {
        /// Seconds to wait before retrying (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// A request body is larger than the hub accepts.
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The body's size (or the size read before giving up).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A remote hub could not be reached, or answered something that is not IoT Hub's
    /// protocol. The request may or may not have been applied.
    #[error("transport error: {message}")]
    Transport {
        /// What failed.
        message: String,
    },
    /// A remote hub answered with an error this client has no variant for.
    #[error("hub error {code} (HTTP {status}): {message}")]
    Remote {
        /// The HTTP status.
        status: u16,
        /// IoT Hub's six-digit error code (0 when the body had none).
        code: u32,
        /// The hub's message.
        message: String,
    },
    /// The firmware artifact store refused or failed an operation.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// An unexpected internal failure.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

impl From<StoreError> for HubError {
    fn from(e: StoreError) -> HubError {
        if e.is_closed() {
            HubError::Closed
        } else {
            HubError::Store(e)
        }
    }
}

/// IoT Hub's code for a refused configuration.
fn configuration_code(e: &ConfigurationError) -> u32 {
    match e {
        ConfigurationError::TargetCondition { .. } => 400_401,
        ConfigurationError::Content { .. } => 400_402,
        ConfigurationError::ImmutableContent { .. } => 400_403,
        ConfigurationError::MetricQuery { .. } | ConfigurationError::TooManyMetrics { .. } => {
            400_404
        }
        _ => 400_004,
    }
}

impl HubError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> HubError {
        HubError::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(device_id: impl Into<String>) -> HubError {
        HubError::DeviceNotFound {
            device_id: device_id.into(),
        }
    }

    /// IoT Hub's error code (`404001 DeviceNotFound`, `412001 PreconditionFailed`, ...).
    pub fn code(&self) -> u32 {
        match self {
            HubError::DeviceNotFound { .. } => 404_001,
            HubError::DeviceAlreadyExists { .. } => 409_001,
            HubError::PreconditionFailed { .. } => 412_001,
            HubError::DeviceNotOnline { .. } => 404_103,
            HubError::GatewayTimeout { .. } => 504_101,
            HubError::Twin(e) if e.is_precondition_failed() => 412_001,
            HubError::Method(MethodError::PayloadTooLarge { .. }) => 413_001,
            HubError::JobNotFound { .. } => 404_002,
            HubError::JobAlreadyExists { .. } => 409_104,
            HubError::TooManyActiveJobs { .. } => 429_004,
            HubError::ConfigurationNotFound { .. } => 404_301,
            HubError::ConfigurationAlreadyExists { .. } => 409_401,
            HubError::TooManyConfigurations { .. } => 413_101,
            HubError::Configuration(e) => configuration_code(e),
            HubError::AlertRuleNotFound { .. } => 404_501,
            HubError::AlertNotFound { .. } => 404_502,
            HubError::TooManyAlertRules { .. } => 413_501,
            HubError::InvalidInput { .. }
            | HubError::AlertRule(_)
            | HubError::Job(_)
            | HubError::Twin(_)
            | HubError::Method(_)
            | HubError::Query(_)
            | HubError::Lifecycle(_) => 400_004,
            HubError::TooManyDevices { .. } => 413_002,
            HubError::QueueFull { .. } => 403_004,
            HubError::InsufficientStorage { .. } => 507_001,
            HubError::Store(e) if e.is_disk_full() => 507_001,
            HubError::Store(_) | HubError::Internal { .. } => 500_001,
            HubError::Closed => 503_001,
            HubError::Unauthorized { .. } => 401_003,
            HubError::Forbidden { .. } => 403_000,
            HubError::Throttled { .. } => 429_001,
            HubError::RequestTooLarge { .. } => 413_001,
            HubError::Transport { .. } => 503_000,
            HubError::Artifact(e) => e.code(),
            HubError::Remote { status, code, .. } => {
                if *code >= 100_000 {
                    *code
                } else {
                    u32::from(*status) * 1000
                }
            }
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        u16::try_from(self.code() / 1000).unwrap_or(500)
    }

    /// IoT Hub's name for the error code.
    pub fn code_name(&self) -> &'static str {
        if let HubError::Artifact(e) = self {
            if let Some(name) = e.code_name() {
                return name;
            }
        }
        match self.code() {
            404_001 => "DeviceNotFound",
            409_001 => "DeviceAlreadyExists",
            412_001 => "PreconditionFailed",
            404_103 => "DeviceNotOnline",
            404_002 => "JobNotFound",
            409_104 => "JobAlreadyExists",
            429_004 => "ThrottlingMaxActiveJobCountExceeded",
            404_301 => "ConfigurationNotFound",
            409_401 => "ConfigurationAlreadyExists",
            413_101 => "ConfigurationCountLimitExceeded",
            404_501 => "AlertRuleNotFound",
            404_502 => "AlertNotFound",
            413_501 => "AlertRuleCountLimitExceeded",
            400_401 => "InvalidConfigurationTargetCondition",
            400_402 => "InvalidConfigurationContent",
            400_403 => "CannotModifyImmutableConfigurationContent",
            400_404 => "InvalidConfigurationCustomMetricsQuery",
            504_101 => "GatewayTimeout",
            413_001 => "MessageTooLarge",
            413_002 => "TooManyDevices",
            403_004 => "DeviceMaximumQueueDepthExceeded",
            500_001 => "ServerError",
            507_001 => "InsufficientStorage",
            503_001 => "ServiceUnavailable",
            401_003 => "IotHubUnauthorizedAccess",
            403_000 => "Forbidden",
            429_001 => "ThrottlingException",
            503_000 => "TransportError",
            400_000 => "GenericBadRequest",
            400_012 => "DeserializationError",
            _ => "ArgumentInvalid",
        }
    }

    /// The device does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HubError::DeviceNotFound { .. })
    }

    /// The device already exists.
    pub fn is_conflict(&self) -> bool {
        matches!(self, HubError::DeviceAlreadyExists { .. })
    }

    /// An ETag precondition failed.
    pub fn is_precondition_failed(&self) -> bool {
        self.code() == 412_001
    }

    /// The device is not connected or not listening.
    pub fn is_not_online(&self) -> bool {
        matches!(self, HubError::DeviceNotOnline { .. })
    }

    /// A direct method timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, HubError::GatewayTimeout { .. })
    }

    /// The credentials were missing, invalid or expired (HTTP 401).
    pub fn is_unauthorized(&self) -> bool {
        self.http_status() == 401
    }

    /// The credentials lack a right the operation needs (HTTP 403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, HubError::Forbidden { .. })
    }

    /// The caller is over its rate limit (HTTP 429); retry later.
    pub fn is_throttled(&self) -> bool {
        self.http_status() == 429
    }

    /// A remote hub could not be reached.
    pub fn is_transport(&self) -> bool {
        matches!(self, HubError::Transport { .. })
    }

    /// The request was invalid (HTTP 400 or 413).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self.http_status(), 400 | 413)
    }
}
