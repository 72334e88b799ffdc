//! Bulk registry operations and whole-registry export and import as JSON Lines.
//!
//! One line, or one element of a bulk call, is IoT Hub's `ExportImportDevice`: `id`,
//! `importMode`, `eTag`, `status`, `statusReason`, `authentication`, `capabilities`,
//! `twinETag`, `tags`, `properties.desired` (and, on export, `properties.reported`), plus our
//! `lifecycle` state so planned and retired devices survive the round trip.
//!
//! Export walks the registry one device at a time and import reads one line at a time, in
//! chunks of [`MAX_BULK`], so a million devices never need a million in memory.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use iot_dm_core::identity::DeviceId;
use iot_dm_core::lifecycle::LifecycleState;
use iot_dm_core::twin::{Capabilities, DeviceStatus, TwinPatch};

use super::device::Authentication;
use super::spec::DeviceSpec;
use crate::api::{RegistryApi, TwinApi};
use crate::hub::engine::lock;
use crate::hub::error::HubError;
use crate::hub::Hub;

/// Most devices in one bulk call, as in IoT Hub.
pub const MAX_BULK: usize = 100;

/// What to do with one device of a bulk call or import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ImportMode {
    /// Create; fails if the device exists.
    Create,
    /// Update; fails if it does not exist.
    Update,
    /// Update if `eTag` (and `twinETag`, when given) match.
    UpdateIfMatchETag,
    /// Create, or update an existing device.
    #[default]
    CreateOrUpdate,
    /// Create, or update if the ETags match.
    CreateOrUpdateIfMatchETag,
    /// Delete.
    Delete,
    /// Delete if `eTag` matches.
    DeleteIfMatchETag,
}

/// Desired and reported properties of an [`ImportDevice`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImportProperties {
    /// Desired properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
    /// Reported properties (written by export; on import they are restored as a patch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Value>,
}

/// One device of a bulk call, or one line of an export or import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportDevice {
    /// The device id.
    pub id: DeviceId,
    /// What to do.
    #[serde(default)]
    pub import_mode: ImportMode,
    /// The identity's ETag (for the `...IfMatchETag` modes).
    #[serde(rename = "eTag", default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceStatus>,
    /// Status reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Credentials (generated symmetric keys when a new device has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// The twin's ETag (for the `...IfMatchETag` modes).
    #[serde(rename = "twinETag", default, skip_serializing_if = "Option::is_none")]
    pub twin_etag: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
    /// Properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<ImportProperties>,
    /// Lifecycle state (`planned`, `enabled`, `disabled`, `retired`); ours, not IoT Hub's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleState>,
}

impl ImportDevice {
    /// A `createOrUpdate` of `id` with nothing else set.
    pub fn new(id: DeviceId) -> ImportDevice {
        ImportDevice {
            id,
            import_mode: ImportMode::CreateOrUpdate,
            etag: None,
            status: None,
            status_reason: None,
            authentication: None,
            capabilities: None,
            twin_etag: None,
            tags: None,
            properties: None,
            lifecycle: None,
        }
    }

    fn desired(&self) -> Option<&Value> {
        self.properties.as_ref().and_then(|p| p.desired.as_ref())
    }
}

/// One failed device of a bulk call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkError {
    /// The device.
    pub device_id: String,
    /// IoT Hub's error code.
    pub error_code: String,
    /// The error message.
    pub error_status: String,
    /// The import mode that failed.
    pub operation: ImportMode,
}

/// The result of a bulk call: IoT Hub's `BulkRegistryOperationResult`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    /// Whether every device succeeded.
    pub is_successful: bool,
    /// The devices that failed.
    pub errors: Vec<BulkError>,
    /// Warnings (none today; kept for IoT Hub's shape).
    pub warnings: Vec<BulkError>,
}

/// Totals of an import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// Lines read.
    pub lines: u64,
    /// Devices that succeeded.
    pub succeeded: u64,
    /// Failures: line number (1-based) and why.
    pub failed: Vec<(u64, String)>,
}

impl Hub {
    /// Applies up to [`MAX_BULK`] creates, updates and deletes, each on its own (one failing
    /// does not stop the others), concurrently. A device may appear once per call.
    pub(crate) async fn apply_bulk(
        &self,
        devices: Vec<ImportDevice>,
    ) -> Result<BulkResult, HubError> {
        if devices.len() > MAX_BULK {
            return Err(HubError::TooManyDevices {
                count: devices.len(),
                limit: MAX_BULK,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for d in &devices {
            if !seen.insert(d.id.clone()) {
                return Err(HubError::invalid(
                    "id",
                    format!("{} appears more than once in one bulk call", d.id),
                ));
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for (i, d) in devices.into_iter().enumerate() {
            let hub = self.clone();
            set.spawn(async move {
                let r = hub.import_one(&d).await;
                (i, d, r)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (i, d, r) = joined.map_err(|e| HubError::Internal {
                message: format!("bulk task failed: {e}"),
            })?;
            if let Err(e) = r {
                results.push((
                    i,
                    BulkError {
                        device_id: d.id.to_string(),
                        error_code: format!("{}", e.code()),
                        error_status: e.to_string(),
                        operation: d.import_mode,
                    },
                ));
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let errors: Vec<BulkError> = results.into_iter().map(|(_, e)| e).collect();
        Ok(BulkResult {
            is_successful: errors.is_empty(),
            errors,
            warnings: Vec::new(),
        })
    }

    async fn import_one(&self, d: &ImportDevice) -> Result<(), HubError> {
        let id = d.id.as_str();
        let exists = self.get_device(id).is_ok();
        let check_etags = matches!(
            d.import_mode,
            ImportMode::UpdateIfMatchETag
                | ImportMode::CreateOrUpdateIfMatchETag
                | ImportMode::DeleteIfMatchETag
        );
        match d.import_mode {
            ImportMode::Delete | ImportMode::DeleteIfMatchETag => {
                let etag = if check_etags {
                    Some(d.etag.as_deref().ok_or_else(|| {
                        HubError::invalid("eTag", "deleteIfMatchETag needs an eTag")
                    })?)
                } else {
                    None
                };
                return self.delete_device(id, etag).await;
            }
            ImportMode::Create if exists => {
                return Err(HubError::DeviceAlreadyExists {
                    device_id: id.to_string(),
                })
            }
            ImportMode::Update | ImportMode::UpdateIfMatchETag if !exists => {
                return Err(HubError::not_found(id))
            }
            _ => {}
        }
        if exists {
            self.update_from_import(d, check_etags).await
        } else {
            self.create_from_import(d).await
        }
    }

    async fn create_from_import(&self, d: &ImportDevice) -> Result<(), HubError> {
        let mut spec = DeviceSpec::new(d.id.clone());
        spec.tags = d.tags.clone();
        spec.desired = d.desired().cloned();
        if let Some(c) = &d.capabilities {
            spec.capabilities = c.clone();
        }
        let state = d.lifecycle.unwrap_or(match d.status {
            Some(DeviceStatus::Disabled) => LifecycleState::Disabled,
            _ => LifecycleState::Enabled,
        });
        if state == LifecycleState::Planned {
            self.plan_device(spec).await?;
        } else {
            // a retired device's credentials are revoked: it is recreated with fresh ones and
            // retired again below
            if let Some(a) = d
                .authentication
                .as_ref()
                .filter(|_| state != LifecycleState::Retired)
            {
                spec.authentication = Some(a.clone());
            }
            if state == LifecycleState::Disabled {
                spec.disabled_reason =
                    Some(d.status_reason.clone().unwrap_or_else(|| "disabled".into()));
            }
            self.create_device(spec).await?;
        }
        if let Some(reported) = d.properties.as_ref().and_then(|p| p.reported.as_ref()) {
            if state != LifecycleState::Planned {
                self.patch_reported(d.id.as_str(), reported).await?;
            }
        }
        if state == LifecycleState::Retired {
            self.retire_device(d.id.as_str()).await?;
        }
        Ok(())
    }

    async fn update_from_import(
        &self,
        d: &ImportDevice,
        check_etags: bool,
    ) -> Result<(), HubError> {
        let id = d.id.as_str();
        let current = self.get_device(id)?;
        if check_etags {
            let etag = d
                .etag
                .as_deref()
                .ok_or_else(|| HubError::invalid("eTag", "an ...IfMatchETag mode needs an eTag"))?;
            if !current.etag_matches(etag) {
                return Err(HubError::PreconditionFailed {
                    expected: etag.to_string(),
                    actual: current.etag().to_string(),
                });
            }
        }
        if current.state().is_provisioned() {
            let mut update = current.clone();
            if let Some(s) = d.status {
                let identity = update.identity_mut();
                identity.status = s;
                identity.status_reason.clone_from(&d.status_reason);
            }
            if let Some(a) = &d.authentication {
                update.set_authentication(a.clone());
            }
            if let Some(c) = &d.capabilities {
                update.identity_mut().capabilities = c.clone();
            }
            if update != current {
                self.update_device(update, None).await?;
            }
        }
        if d.tags.is_some() || d.desired().is_some() {
            let patch = TwinPatch {
                tags: d.tags.clone(),
                desired: d.desired().cloned(),
            };
            let twin_etag = if check_etags {
                d.twin_etag.as_deref()
            } else {
                None
            };
            self.update_twin(id, &patch, twin_etag).await?;
        }
        Ok(())
    }

    fn export_line(
        &self,
        slot: &crate::hub::engine::Slot,
        include_keys: bool,
    ) -> Option<ImportDevice> {
        let g = lock(slot);
        if g.deleted {
            return None;
        }
        let dev = &g.device;
        let twin = &g.twin;
        let mut auth = dev.authentication();
        if !include_keys {
            auth.symmetric_key = Default::default();
        }
        let reported = twin.reported().doc();
        Some(ImportDevice {
            id: dev.device_id.clone(),
            import_mode: ImportMode::CreateOrUpdate,
            etag: Some(dev.etag().to_string()),
            status: Some(dev.identity.status),
            status_reason: dev.identity.status_reason.clone(),
            authentication: Some(auth),
            capabilities: Some(dev.identity.capabilities.clone()),
            twin_etag: Some(twin.etag().as_str().to_string()),
            tags: Some(twin.tags().to_value()),
            properties: Some(ImportProperties {
                desired: Some(twin.desired().doc().to_value()),
                reported: (!reported.is_empty()).then(|| reported.to_value()),
            }),
            lifecycle: Some(dev.state()),
        })
    }

    /// Writes every device as one JSON line, in device-id order, without holding more than one
    /// in memory. Symmetric keys are written only when `include_keys` is true. Returns the
    /// number of devices written.
    pub async fn export_devices<W: AsyncWrite + Unpin>(
        &self,
        mut out: W,
        include_keys: bool,
    ) -> Result<u64, HubError> {
        let io = |e: std::io::Error| HubError::Internal {
            message: format!("writing the export: {e}"),
        };
        let mut n = 0;
        let mut next = self.inner.state.devices.front();
        while let Some(entry) = next {
            if let Some(line) = self.export_line(entry.value(), include_keys) {
                let mut bytes = serde_json::to_vec(&line).map_err(|e| HubError::Internal {
                    message: e.to_string(),
                })?;
                bytes.push(b'\n');
                out.write_all(&bytes).await.map_err(io)?;
                n += 1;
            }
            next = entry.next();
        }
        out.flush().await.map_err(io)?;
        Ok(n)
    }

    /// Reads JSON lines (as written by [`Hub::export_devices`], or IoT Hub's import format) and
    /// applies them in chunks of [`MAX_BULK`]. Bad lines are reported, not fatal; `progress` is
    /// called after every chunk with the lines read so far.
    pub async fn import_devices<R: AsyncBufRead + Unpin>(
        &self,
        input: R,
        mut progress: impl FnMut(u64),
    ) -> Result<ImportReport, HubError> {
        let mut report = ImportReport::default();
        let mut lines = input.lines();
        let mut chunk: Vec<(u64, ImportDevice)> = Vec::with_capacity(MAX_BULK);
        loop {
            let line = lines.next_line().await.map_err(|e| HubError::Internal {
                message: format!("reading the import: {e}"),
            })?;
            let done = line.is_none();
            if let Some(line) = line {
                report.lines += 1;
                if !line.trim().is_empty() {
                    match serde_json::from_str::<ImportDevice>(&line) {
                        Ok(d) if chunk.iter().any(|(_, c)| c.id == d.id) => {
                            // a device twice in one chunk: flush first to keep the order
                            self.apply_chunk(&mut chunk, &mut report).await?;
                            chunk.push((report.lines, d));
                        }
                        Ok(d) => chunk.push((report.lines, d)),
                        Err(e) => report
                            .failed
                            .push((report.lines, format!("invalid line: {e}"))),
                    }
                }
            }
            if chunk.len() >= MAX_BULK || (done && !chunk.is_empty()) {
                self.apply_chunk(&mut chunk, &mut report).await?;
                progress(report.lines);
            }
            if done {
                return Ok(report);
            }
        }
    }

    async fn apply_chunk(
        &self,
        chunk: &mut Vec<(u64, ImportDevice)>,
        report: &mut ImportReport,
    ) -> Result<(), HubError> {
        let lines: Vec<u64> = chunk.iter().map(|(l, _)| *l).collect();
        let devices: Vec<ImportDevice> = chunk.drain(..).map(|(_, d)| d).collect();
        let ids: Vec<String> = devices.iter().map(|d| d.id.to_string()).collect();
        let result = self.apply_bulk(devices).await?;
        report.succeeded += (ids.len() - result.errors.len()) as u64;
        for e in result.errors {
            let line = ids
                .iter()
                .position(|id| *id == e.device_id)
                .and_then(|i| lines.get(i).copied())
                .unwrap_or(0);
            report
                .failed
                .push((line, format!("{}: {}", e.device_id, e.error_status)));
        }
        Ok(())
    }
}
