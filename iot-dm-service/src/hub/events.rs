//! What happens in the hub, as a stream back ends subscribe to.

use bytes::Bytes;

use iot_dm_core::alert::Alert;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::job::{DeviceJobStatistics, JobStatus};
use iot_dm_core::lifecycle::{EventKind, LifecycleState};
use iot_dm_core::wire::PropertyBag;

/// Who changed a twin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor {
    /// The device itself (reported properties).
    Device,
    /// A back-end call.
    Service,
    /// A job, by id.
    Job(String),
    /// An automatic configuration, by id.
    Configuration(String),
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertChange {
    /// A rule held for its `forSeconds`: the alert was raised.
    Raised,
    /// The rule stopped holding for its `forSeconds` (or was deleted): the alert cleared.
    Cleared,
    /// Someone acknowledged the alert.
    Acknowledged,
}

impl AlertChange {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertChange::Raised => "raised",
            AlertChange::Cleared => "cleared",
            AlertChange::Acknowledged => "acknowledged",
        }
    }
}

/// Something that happened in the hub. Events are published after the change is durable.
///
/// [`Hub::events`](crate::Hub::events) carries every variant but
/// [`HubEvent::Telemetry`]; the hub's event stream
/// ([`Hub::event_stream`](crate::Hub::event_stream), `GET /events`) carries them all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubEvent {
    /// A device opened a session.
    Connected {
        /// The device.
        device_id: DeviceId,
    },
    /// A device's session ended.
    Disconnected {
        /// The device.
        device_id: DeviceId,
        /// Why it ended.
        reason: String,
    },
    /// A twin changed.
    TwinChanged {
        /// The device.
        device_id: DeviceId,
        /// Who changed it.
        actor: Actor,
        /// The new twin version.
        version: u64,
        /// The desired `$version` after the change.
        desired_version: u64,
        /// The reported `$version` after the change.
        reported_version: u64,
    },
    /// A device identity was created (planned or provisioned).
    IdentityCreated {
        /// The device.
        device_id: DeviceId,
    },
    /// A device identity was updated (status, credentials, capabilities).
    IdentityUpdated {
        /// The device.
        device_id: DeviceId,
    },
    /// A device identity was deleted.
    IdentityDeleted {
        /// The device.
        device_id: DeviceId,
    },
    /// A device moved through its lifecycle.
    Lifecycle {
        /// The device.
        device_id: DeviceId,
        /// The event.
        event: EventKind,
        /// The state before.
        from: LifecycleState,
        /// The state after (`None` when deleted).
        to: Option<LifecycleState>,
    },
    /// A device-to-cloud message, as the event stream keeps it: the body is cut to
    /// [`MAX_EVENT_BODY`](crate::hub::MAX_EVENT_BODY) bytes (`size` is the whole length).
    /// Only on the event stream: [`Hub::telemetry`](crate::Hub::telemetry) has every message
    /// whole.
    Telemetry {
        /// The sending device.
        device_id: DeviceId,
        /// System and application properties.
        properties: PropertyBag,
        /// The body, at most `MAX_EVENT_BODY` bytes of it (cut at a character boundary when
        /// the body is UTF-8 text).
        body: Bytes,
        /// The length of the whole body.
        size: usize,
    },
    /// A job's status or device counts changed (published after the scheduler's round that
    /// changed it is durable, at most [`JOB_PROGRESS_EVERY`](crate::hub::JOB_PROGRESS_EVERY)
    /// apart per job, and always when the job ends).
    JobProgress {
        /// The job.
        job_id: String,
        /// Where it stands.
        status: JobStatus,
        /// Device counts by status (zero until it starts).
        statistics: DeviceJobStatistics,
    },
    /// An automatic configuration's counts moved (published after the configuration task's
    /// round that moved them, at most [`JOB_PROGRESS_EVERY`](crate::hub::JOB_PROGRESS_EVERY)
    /// apart per configuration; the last change always goes out).
    ConfigurationMetrics {
        /// The configuration.
        configuration_id: String,
        /// `systemMetrics.results.targetedCount`.
        targeted: u64,
        /// `systemMetrics.results.appliedCount`.
        applied: u64,
        /// `metrics.results`: each custom metric's count, by name.
        metrics: Vec<(String, u64)>,
    },
    /// An alert was raised, cleared or acknowledged (published once that is durable).
    Alert {
        /// What happened.
        change: AlertChange,
        /// The alert as it is after the change.
        alert: Box<Alert>,
    },
}

/// Hands every event waiting on a subscription to `take` (a lag as `Lagged`), without
/// waiting.
pub(crate) fn drain_events(
    events: &mut tokio::sync::broadcast::Receiver<HubEvent>,
    mut take: impl FnMut(Result<HubEvent, tokio::sync::broadcast::error::RecvError>),
) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    loop {
        match events.try_recv() {
            Ok(e) => take(Ok(e)),
            Err(TryRecvError::Lagged(n)) => take(Err(RecvError::Lagged(n))),
            Err(_) => break,
        }
    }
}
