//! The firmware-update pattern on the device: the request (desired properties or method),
//! a resumable HTTPS download, verification, install and reboot through the hooks, each
//! step reported with core's states and result codes.

mod download;
mod options;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iot_dm_core::doc::merge_value;
use iot_dm_core::method::MethodResponse;
use iot_dm_core::patterns::{
    FirmwareEvent, FirmwareFailure, FirmwareResultCode, FirmwareState, FirmwareStatus,
    FirmwareUpdateRequest, PatternStatus, FIRMWARE_UPDATE_METHOD, REPORTED_ROOT,
};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{
    clip, closed, now, refuse, report, wait_connected, HookError, PatternState, PatternsError,
};
use crate::client::{DeviceClient, WeakClient};
use crate::types::MethodCall;

pub use options::{FirmwareOptions, SigningKey};

const KEY: &str = "firmware";

/// What the device does to install firmware, for [`DeviceClient::enable_firmware`].
///
/// ```
/// use std::path::Path;
/// use iot_dm_core::patterns::FirmwareUpdateRequest;
/// use iot_dm_device::patterns::{FirmwareHooks, HookError};
/// use iot_dm_device::DeviceClient;
///
/// #[derive(Debug)]
/// struct Board;
///
/// #[async_trait::async_trait]
/// impl FirmwareHooks for Board {
///     fn current_version(&self) -> String {
///         env!("CARGO_PKG_VERSION").to_string()
///     }
///     async fn apply(&self, image: &Path, _: &FirmwareUpdateRequest) -> Result<(), HookError> {
///         // write `image` to the inactive slot and mark it for the next boot
///         Err(HookError::new(format!("no second slot for {}", image.display())))
///     }
///     async fn reboot(&self, _client: &DeviceClient) -> Result<(), HookError> {
///         Err(HookError::new("rebooting is not wired up on this board yet"))
///     }
/// }
/// # let _ = Board;
/// ```
#[async_trait::async_trait]
pub trait FirmwareHooks: Send + Sync + std::fmt::Debug + 'static {
    /// The firmware version the device runs now.
    fn current_version(&self) -> String;

    /// Called with the downloaded image before it is verified (e.g. to move it); by default
    /// nothing. An error fails the update (`updateFailed`).
    async fn downloaded(&self, image: &Path) -> Result<(), HookError> {
        let _ = image;
        Ok(())
    }

    /// Installs the verified image so that it runs after the next reboot. An error fails the
    /// update (`updateFailed`) with the message.
    async fn apply(&self, image: &Path, request: &FirmwareUpdateRequest) -> Result<(), HookError>;

    /// Reboots into the new firmware; as [`RebootHooks::reboot`](super::RebootHooks::reboot)
    /// (on real hardware it does not return). Once the device is back the update succeeds if
    /// [`current_version`](Self::current_version) is the target, else it is rolled back.
    async fn reboot(&self, client: &DeviceClient) -> Result<(), HookError>;
}

/// A failure with its result code, before it becomes core's [`FirmwareFailure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: FirmwareResultCode,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: FirmwareResultCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    fn core(&self) -> FirmwareFailure {
        FirmwareFailure::new(self.code, clip(&self.message)).unwrap_or(FirmwareFailure {
            code: self.code,
            message: String::new(),
        })
    }
}

/// How a request was taken.
#[derive(Debug, PartialEq, Eq)]
enum Started {
    Running,
    AlreadyRunning,
    AlreadyInstalled,
    Unchanged,
    Busy(String),
}

struct Job {
    status: FirmwareStatus,
    request: Option<FirmwareUpdateRequest>,
    task: Option<AbortHandle>,
    last_progress: Option<Instant>,
}

struct Firmware {
    client: WeakClient,
    hooks: Arc<dyn FirmwareHooks>,
    state: Arc<dyn PatternState>,
    opts: FirmwareOptions,
    job: Mutex<Job>,
}

fn record(job: &Job) -> Value {
    json!({"status": job.status.to_json(), "request": job.request.as_ref().map(FirmwareUpdateRequest::to_json)})
}

impl DeviceClient {
    /// Installs firmware on request, through `hooks`, keeping the update's state in `state`.
    ///
    /// An update starts from the desired property `deviceManagement.firmware` (a
    /// [`FirmwareUpdateRequest`]) or the `firmwareUpdate` method with the same payload
    /// (answered 202 with the status, 200 when the device already runs the target version,
    /// 400 for a bad request, 409 while another update is past its download). Then:
    /// `downloading` (HTTPS, with the device's SAS token as `Authorization`, resumed with
    /// `Range` from the bytes on disk after an interruption, progress reported at most once
    /// per [`FirmwareOptions::progress_interval`]), `downloaded`, `verifying` (SHA-256, and
    /// the signature when a [`SigningKey`] is configured), `applying` (the hook), `rebooting`
    /// (the hook), then `succeeded` with the new `currentVersion`, or `failed` / `rolledBack`
    /// with a result code. A device on the target version succeeds without a download.
    ///
    /// Enabling reads the saved state: an update cut by a restart resumes (download or
    /// verification) or ends (`succeeded` if the target version runs, else `failed` or
    /// `rolledBack`), so none stays in progress forever.
    pub async fn enable_firmware(
        &self,
        hooks: impl FirmwareHooks,
        state: Arc<dyn PatternState>,
        opts: FirmwareOptions,
    ) -> Result<(), PatternsError> {
        std::fs::create_dir_all(opts.download_dir()).map_err(|e| PatternsError::Config {
            field: "download_dir",
            reason: format!("cannot create {}: {e}", opts.download_dir().display()),
        })?;
        let hooks: Arc<dyn FirmwareHooks> = Arc::new(hooks);
        let t = now(self);
        let current = hooks.current_version();
        let saved = state.load(KEY)?;
        let status = saved
            .as_ref()
            .and_then(|r| FirmwareStatus::from_json(&r["status"]).ok());
        let request = saved
            .as_ref()
            .and_then(|r| FirmwareUpdateRequest::from_payload(&r["request"]).ok());
        // A finished update stays reported while the version it left runs; a device that
        // runs something else now (flashed by other means) reports that, idle.
        let status = match status {
            Some(s) if s.state().is_active() => s,
            Some(s)
                if !matches!(s.state(), FirmwareState::Idle)
                    && s.current_version() == Some(current.as_str()) =>
            {
                s
            }
            _ => FirmwareStatus::new(Some(&current), t)?,
        };
        let pattern = Arc::new(Firmware {
            client: self.downgrade(),
            hooks,
            state,
            opts,
            job: Mutex::new(Job {
                status,
                request,
                task: None,
                last_progress: None,
            }),
        });
        pattern.resume(self).await;
        let handler = pattern.clone();
        self.on_method(FIRMWARE_UPDATE_METHOD, move |call| {
            let pattern = handler.clone();
            async move { pattern.on_call(call).await }
        });
        let mut updates = self.desired_updates();
        let weak = self.downgrade();
        tokio::spawn(async move {
            let mut desired = json!({});
            while let Some(patch) = updates.recv().await {
                if patch.full {
                    desired = patch.patch.clone();
                } else {
                    merge_value(&mut desired, &patch.patch);
                }
                let touched = patch.full || patch.patch.get(REPORTED_ROOT).is_some();
                let Some(client) = weak.upgrade() else { break };
                match FirmwareUpdateRequest::from_desired(&desired) {
                    Ok(Some(request)) if touched => {
                        pattern.start(&client, request, false).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring an invalid desired firmware request")
                    }
                }
            }
        });
        Ok(())
    }
}

impl Firmware {
    /// After a restart: finishes or resumes what the saved state says was under way, and
    /// reports the status.
    async fn resume(self: &Arc<Self>, client: &DeviceClient) {
        let state = self.job.lock().await.status.state().clone();
        let has_request = self.job.lock().await.request.is_some();
        let current = self.hooks.current_version();
        match state {
            FirmwareState::Downloading { .. }
            | FirmwareState::Downloaded
            | FirmwareState::Verifying
                if has_request =>
            {
                tracing::info!("resuming a firmware update cut by a restart");
                self.report_now(client).await;
                self.spawn(client).await;
            }
            FirmwareState::Applying | FirmwareState::Rebooting => {
                let target = self
                    .job
                    .lock()
                    .await
                    .status
                    .target_version()
                    .map(str::to_string);
                let event = if target.as_deref() == Some(current.as_str()) {
                    FirmwareEvent::Succeed
                } else if matches!(state, FirmwareState::Applying) {
                    FirmwareEvent::Fail(
                        Failure::new(
                            FirmwareResultCode::UpdateFailed,
                            format!("the device restarted while installing; it runs {current}"),
                        )
                        .core(),
                    )
                } else {
                    FirmwareEvent::RollBack(
                        Failure::new(
                            FirmwareResultCode::UpdateFailed,
                            format!("the device came back on {current}"),
                        )
                        .core(),
                    )
                };
                self.step(client, event).await;
            }
            s if s.is_active() => {
                let failure = Failure::new(
                    FirmwareResultCode::UpdateFailed,
                    "the device restarted and lost the update request",
                );
                self.step(client, FirmwareEvent::Fail(failure.core())).await;
            }
            _ => self.report_now(client).await,
        }
    }

    async fn report_now(&self, client: &DeviceClient) {
        let patch = self.job.lock().await.status.to_patch();
        report(client, KEY, patch).await;
    }

    async fn on_call(self: Arc<Self>, call: MethodCall) -> MethodResponse {
        let request = match FirmwareUpdateRequest::from_payload(&call.payload) {
            Ok(r) => r,
            Err(e) => return refuse(400, e.to_string()),
        };
        let Some(client) = self.client.upgrade() else {
            return refuse(503, "the client is closing");
        };
        let outcome = self.start(&client, request, true).await;
        let status = self.job.lock().await.status.to_json();
        match outcome {
            Started::Running | Started::Unchanged => super::accepted(status),
            Started::AlreadyInstalled => MethodResponse {
                status: 200,
                payload: status,
            },
            Started::AlreadyRunning => refuse(409, "this update is already under way"),
            Started::Busy(why) => refuse(409, why),
        }
    }

    /// Takes `request`: starts it, or says why not. From the desired properties
    /// (`explicit == false`) a request already finished is not run again.
    async fn start(
        self: &Arc<Self>,
        client: &DeviceClient,
        request: FirmwareUpdateRequest,
        explicit: bool,
    ) -> Started {
        let mut job = self.job.lock().await;
        let same = job.request.as_ref() == Some(&request);
        let state = job.status.state().clone();
        if state.is_active() {
            if same {
                return Started::AlreadyRunning;
            }
            let cancellable = matches!(
                state,
                FirmwareState::Downloading { .. }
                    | FirmwareState::Downloaded
                    | FirmwareState::Verifying
            );
            if !cancellable {
                return Started::Busy(format!(
                    "an update to {} is {}",
                    job.status.target_version().unwrap_or("?"),
                    state.as_str()
                ));
            }
            if let Some(task) = job.task.take() {
                task.abort();
            }
            tracing::info!("a new firmware request replaces the download under way");
            let _ = job.status.apply(FirmwareEvent::Cancel, now(client));
        } else if same && !explicit && !matches!(state, FirmwareState::Idle) {
            return Started::Unchanged;
        }
        let t = now(client);
        job.request = Some(request.clone());
        job.last_progress = None;
        let outcome = if self.hooks.current_version() == request.target_version() {
            job.status
                .apply(FirmwareEvent::AlreadyInstalled { request }, t)
                .map(|()| Started::AlreadyInstalled)
        } else {
            job.status
                .apply(FirmwareEvent::Start { request }, t)
                .map(|()| Started::Running)
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return Started::Busy(e.to_string()),
        };
        self.save(&job);
        let patch = job.status.to_patch();
        drop(job);
        report(client, KEY, patch).await;
        if outcome == Started::Running {
            self.spawn(client).await;
        }
        outcome
    }

    fn save(&self, job: &Job) {
        if let Err(e) = self.state.save(KEY, &record(job)) {
            tracing::error!(error = %e, "cannot save the firmware update state");
        }
    }

    async fn spawn(self: &Arc<Self>, client: &DeviceClient) {
        let pattern = self.clone();
        let client = client.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = pattern.run(&client) => {}
                () = closed(&client) => tracing::debug!("client closed; the update stops with it"),
            }
        });
        self.job.lock().await.task = Some(task.abort_handle());
    }

    /// Applies, saves and reports one transition; `false` if it does not apply.
    async fn step(&self, client: &DeviceClient, event: FirmwareEvent) -> bool {
        let mut job = self.job.lock().await;
        let name = event.as_str();
        if let Err(e) = job.status.apply(event, now(client)) {
            tracing::warn!(error = %e, event = name, "firmware transition refused");
            return false;
        }
        self.save(&job);
        let patch = job.status.to_patch();
        drop(job);
        report(client, KEY, patch).await;
        true
    }

    async fn fail(&self, client: &DeviceClient, failure: Failure) {
        tracing::warn!(code = %failure.code, message = %failure.message, "firmware update failed");
        self.step(client, FirmwareEvent::Fail(failure.core())).await;
    }

    fn image_path(&self, request: &FirmwareUpdateRequest) -> PathBuf {
        self.opts
            .download_dir()
            .join(format!("{}.part", request.sha256()))
    }

    /// Drives the update from its current state to the end.
    async fn run(&self, client: &DeviceClient) {
        loop {
            let (state, request) = {
                let job = self.job.lock().await;
                (job.status.state().clone(), job.request.clone())
            };
            let Some(request) = request else { return };
            let image = self.image_path(&request);
            let outcome = match state {
                FirmwareState::Downloading { .. } => self
                    .download(client, &request, &image)
                    .await
                    .map(|()| FirmwareEvent::DownloadComplete),
                FirmwareState::Downloaded => Ok(FirmwareEvent::Verify),
                FirmwareState::Verifying => self
                    .verify(&request, &image)
                    .await
                    .map(|()| FirmwareEvent::Apply),
                FirmwareState::Applying => self
                    .hooks
                    .apply(&image, &request)
                    .await
                    .map(|()| FirmwareEvent::Reboot)
                    .map_err(|e| Failure::new(FirmwareResultCode::UpdateFailed, e.message())),
                FirmwareState::Rebooting => {
                    let _ = tokio::fs::remove_file(&image).await;
                    match self.hooks.reboot(client).await {
                        Ok(()) if wait_connected(client).await => Ok(self.after_reboot(&request)),
                        Ok(()) => return,
                        Err(e) => Err(Failure::new(FirmwareResultCode::UpdateFailed, e.message())),
                    }
                }
                _ => return,
            };
            match outcome {
                Ok(event) => {
                    if !self.step(client, event).await {
                        return;
                    }
                }
                Err(failure) => {
                    // Only an interrupted download is worth keeping: a retry resumes it.
                    if failure.code != FirmwareResultCode::ConnectionLost {
                        let _ = tokio::fs::remove_file(&image).await;
                    }
                    return self.fail(client, failure).await;
                }
            }
        }
    }

    fn after_reboot(&self, request: &FirmwareUpdateRequest) -> FirmwareEvent {
        let running = self.hooks.current_version();
        if running == request.target_version() {
            tracing::info!(version = %running, "firmware updated");
            FirmwareEvent::Succeed
        } else {
            FirmwareEvent::RollBack(
                Failure::new(
                    FirmwareResultCode::UpdateFailed,
                    format!("the device came back on {running}"),
                )
                .core(),
            )
        }
    }

    async fn verify(&self, request: &FirmwareUpdateRequest, image: &Path) -> Result<(), Failure> {
        self.hooks
            .downloaded(image)
            .await
            .map_err(|e| Failure::new(FirmwareResultCode::UpdateFailed, e.message()))?;
        verify::check(image, request, self.opts.signing_key_ref()).await
    }
}
