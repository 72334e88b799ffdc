//! One attempt on one device: a twin update through the twins wing, or a direct method through
//! the sessions wing. Neither locks an entry or writes the store itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use iot_dm_core::job::{DeviceJobError, DeviceMethodResponse};
use iot_dm_core::method::{MethodRequest, MAX_CONNECT_TIMEOUT_SECS};
use iot_dm_core::rollout::Outcome;
use iot_dm_core::twin::TwinPatch;

use super::records::Detail;
use super::scheduler::Start;
use crate::api::MethodApi;
use crate::hub::error::HubError;
use crate::hub::events::Actor;
use crate::hub::Hub;

/// What a job does to each device.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// Merge this patch, if the etag (`None`: any) matches.
    Twin(Arc<(TwinPatch, Option<String>)>),
    /// Invoke this method (its connect timeout is the job's remaining time).
    Method(Arc<MethodRequest>),
}

/// How an attempt ended.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) job_id: String,
    pub(crate) device: u32,
    pub(crate) attempt: u8,
    pub(crate) outcome: Outcome,
    pub(crate) detail: Detail,
}

/// IoT Hub's sentence for a method-job device that never came online.
pub(crate) const NOT_ONLINE: &str = "Timed out waiting for device to connect";

/// An error record from a hub error.
pub(crate) fn error_of(e: &HubError) -> DeviceJobError {
    DeviceJobError {
        code: e.code_name().to_string(),
        description: e.to_string(),
    }
}

fn not_online() -> DeviceJobError {
    DeviceJobError {
        code: "DeviceNotOnline".into(),
        description: NOT_ONLINE.into(),
    }
}

/// Runs one attempt and says how it ended.
pub(crate) async fn attempt(hub: Hub, s: Start) -> Done {
    let (outcome, detail) = run(hub, &s.job_id, &s.device_id, s.work, s.until).await;
    Done {
        job_id: s.job_id,
        device: s.device,
        attempt: s.attempt,
        outcome,
        detail,
    }
}

/// Runs `work` on `device_id` for job `job_id`, waiting at most until `until` for a device
/// that is offline.
async fn run(
    hub: Hub,
    job_id: &str,
    device_id: &str,
    work: Work,
    until: Instant,
) -> (Outcome, Detail) {
    match work {
        Work::Twin(patch) => apply_twin(&hub, job_id, device_id, &patch),
        Work::Method(request) => invoke(&hub, device_id, &request, until).await,
    }
}

/// Applies a twin job's patch to `device_id` now: the write is applied and queued, and is
/// durable once a later commit is (the store commits in order).
pub(crate) fn apply_twin(
    hub: &Hub,
    job_id: &str,
    device_id: &str,
    patch: &(TwinPatch, Option<String>),
) -> (Outcome, Detail) {
    let (patch, if_match) = patch;
    match hub.update_twin_queued(
        device_id,
        patch,
        if_match.as_deref(),
        Actor::Job(job_id.to_string()),
    ) {
        // the ack is not awaited: the round's commit comes after this write
        Ok(_queued) => (Outcome::Succeeded, Detail::default()),
        Err(e) => (
            Outcome::Failed,
            Detail {
                response: None,
                error: Some(error_of(&e)),
            },
        ),
    }
}

/// Twin updates a batch task applies, at least (smaller batches are not split).
const MIN_SPLIT: usize = 512;

/// Applies a round's twin updates, split over the cores, and returns how each went.
pub(crate) async fn apply_batch(hub: &Hub, twins: Vec<Start>) -> Vec<Done> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let parts = cores.min(twins.len().div_ceil(MIN_SPLIT)).max(1);
    let per = twins.len().div_ceil(parts);
    let mut chunks: Vec<Vec<Start>> = Vec::with_capacity(parts);
    let mut rest = twins.into_iter();
    for _ in 0..parts {
        chunks.push(rest.by_ref().take(per).collect());
    }
    let mut tasks = Vec::with_capacity(parts);
    for chunk in chunks {
        let hub = hub.clone();
        // what each device was, should its task fail
        let keys: Vec<(String, u32, u8)> = chunk
            .iter()
            .map(|s| (s.job_id.clone(), s.device, s.attempt))
            .collect();
        let task = tokio::spawn(async move {
            let mut done = Vec::with_capacity(chunk.len());
            for s in chunk {
                // a twin update: applied at once, nothing awaited
                done.push(attempt(hub.clone(), s).await);
            }
            done
        });
        tasks.push((task, keys));
    }
    let mut done = Vec::new();
    for (task, keys) in tasks {
        match task.await {
            Ok(d) => done.extend(d),
            Err(e) => {
                tracing::error!(error = %e, "a twin batch task failed; its devices fail");
                done.extend(keys.into_iter().map(|(job_id, device, attempt)| Done {
                    job_id,
                    device,
                    attempt,
                    outcome: Outcome::Failed,
                    detail: Detail {
                        response: None,
                        error: Some(DeviceJobError {
                            code: "Internal".into(),
                            description: format!("the twin update was not applied: {e}"),
                        }),
                    },
                }));
            }
        }
    }
    done
}

/// Invokes the method, waiting (on the sessions' change notification, inside the method
/// call) for the device to listen, until `until`.
async fn invoke(
    hub: &Hub,
    device_id: &str,
    request: &MethodRequest,
    until: Instant,
) -> (Outcome, Detail) {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        // whole seconds, rounded up, so the last wait reaches `until`
        let secs = left
            .as_secs()
            .saturating_add(u64::from(left.subsec_nanos() > 0))
            .min(u64::from(MAX_CONNECT_TIMEOUT_SECS));
        let attempt = MethodRequest::builder(request.name().as_str())
            .payload(request.payload().clone())
            .response_timeout(request.response_timeout())
            .connect_timeout(Duration::from_secs(secs))
            .build();
        let attempt = match attempt {
            Ok(a) => a,
            Err(e) => return failed(Outcome::Failed, error_of(&HubError::from(e))),
        };
        match hub.invoke_method(device_id, &attempt).await {
            Ok(r) => {
                let response = DeviceMethodResponse {
                    status: r.status,
                    payload: r.payload.clone(),
                };
                if r.status < 400 {
                    return (
                        Outcome::Succeeded,
                        Detail {
                            response: Some(response),
                            error: None,
                        },
                    );
                }
                return (
                    Outcome::Failed,
                    Detail {
                        response: Some(response),
                        error: Some(DeviceJobError {
                            code: "DeviceMethodFailed".into(),
                            description: format!("the device answered with status {}", r.status),
                        }),
                    },
                );
            }
            Err(HubError::DeviceNotOnline { .. }) if Instant::now() < until => continue,
            Err(HubError::DeviceNotOnline { .. }) => {
                return failed(Outcome::TimedOut, not_online());
            }
            Err(e @ HubError::GatewayTimeout { .. }) => {
                return failed(Outcome::TimedOut, error_of(&e))
            }
            Err(e) => return failed(Outcome::Failed, error_of(&e)),
        }
    }
}

fn failed(outcome: Outcome, error: DeviceJobError) -> (Outcome, Detail) {
    (
        outcome,
        Detail {
            response: None,
            error: Some(error),
        },
    )
}

/// The error of a device the planner ended without an outcome of ours (the deadline, an
/// in-progress timeout, a window or gate that never opened).
pub(crate) fn planner_error(
    hub: &Hub,
    device_id: &str,
    is_method: bool,
    reason: Option<iot_dm_core::rollout::FailureReason>,
    message: Option<String>,
) -> DeviceJobError {
    use iot_dm_core::rollout::FailureReason as R;
    match reason {
        Some(R::Deadline) if is_method && !hub.listening_for_methods(device_id) => not_online(),
        Some(R::Deadline) if is_method => DeviceJobError {
            code: "GatewayTimeout".into(),
            description: "the device did not answer before the job's time ran out".into(),
        },
        Some(r) => DeviceJobError {
            code: format!("{r:?}"),
            description: message.unwrap_or_else(|| format!("{r:?}")),
        },
        None => DeviceJobError {
            code: "JobTimedOut".into(),
            description: message.unwrap_or_else(|| "the job's time ran out".into()),
        },
    }
}
