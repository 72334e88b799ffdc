//! What a job keeps: the job record (its IoT Hub reply and its rollout plan, in
//! [`Table::Meta`] under `job/{jobId}`) and one record per targeted device (in [`Table::Jobs`]
//! under `{jobId}/{deviceId}`, the `devices.jobs` JSON), and the small in-memory bookkeeping of
//! each device.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::{
    decode_device_job, DeviceJob, DeviceJobError, DeviceJobRecord, DeviceJobStatistics,
    DeviceJobStatus, DeviceMethodResponse, JobResponse,
};
use iot_dm_core::rollout::Rollout;

use super::run::Work;
use crate::hub::engine::{MetaCollection, MetaRecord};
use crate::hub::error::HubError;
use crate::store::{Op, Store, Table};

/// The buffer a device record is written into (a plain one takes 37 bytes; see
/// [`DeviceJobRecord`]).
const RECORD_CAPACITY: usize = 48;

/// Device records read per page while loading.
const LOAD_PAGE: usize = 1024;

/// A job as stored: what the hub reports, and the plan of a started job (the plan and the
/// device records it moved are written in one commit, so they always agree).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredJob {
    pub(crate) job: JobResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plan: Option<Rollout>,
}

/// A [`StoredJob`] borrowed from the job in memory, for writing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredJobRef<'a> {
    job: &'a JobResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a Rollout>,
}

impl MetaRecord for StoredJob {
    const PREFIX: &'static str = "job/";
    const WHAT: &'static str = "job";
    fn name(&self) -> &str {
        &self.job.job_id
    }
    fn encode(&self) -> Result<Vec<u8>, HubError> {
        serde_json::to_vec(self).map_err(|e| HubError::Internal {
            message: format!("encoding job {}: {e}", self.job.job_id),
        })
    }
    fn decode(_name: &str, bytes: &[u8]) -> Result<Self, HubError> {
        serde_json::from_slice(bytes).map_err(|e| HubError::Internal {
            message: e.to_string(),
        })
    }
}

/// The op that deletes a job record.
pub(crate) fn delete_job_ops(job_id: &str) -> Vec<Op> {
    vec![
        Op::delete(Table::Meta, format!("{}{job_id}", StoredJob::PREFIX)),
        Op::delete_range(Table::Jobs, format!("{job_id}/"), format!("{job_id}0")),
    ]
}

/// The store key of a device record.
pub(crate) fn device_key(job_id: &str, device_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(job_id.len() + 1 + device_id.len());
    key.extend_from_slice(job_id.as_bytes());
    key.push(b'/');
    key.extend_from_slice(device_id.as_bytes());
    key
}

/// The job id and device id of a device record's store key (job ids have no `/`).
pub(crate) fn split_key(key: &[u8]) -> Option<(&str, &str)> {
    let key = std::str::from_utf8(key).ok()?;
    key.split_once('/')
}

/// The device record stored under `key`, as `devices.jobs` shows it.
pub(crate) fn decode_record(key: &[u8], value: &[u8]) -> Result<DeviceJob, HubError> {
    let unreadable = |why: String| HubError::Internal {
        message: format!(
            "stored device job {:?} is unreadable: {why}",
            String::from_utf8_lossy(key)
        ),
    };
    let (job_id, device_id) = split_key(key).ok_or_else(|| unreadable("a bad key".into()))?;
    decode_device_job(job_id, device_id, value).map_err(|e| unreadable(e.to_string()))
}

/// What a device's latest attempt ended with, kept until its record is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Detail {
    pub(crate) response: Option<DeviceMethodResponse>,
    pub(crate) error: Option<DeviceJobError>,
}

/// One device of a job in memory: its id, status and times (about 60 bytes plus the id). The
/// method payload and the error travel in `detail` only until the record is written.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) id: Box<str>,
    pub(crate) status: DeviceJobStatus,
    pub(crate) dirty: bool,
    pub(crate) start: Option<Timestamp>,
    pub(crate) end: Option<Timestamp>,
    pub(crate) updated: Timestamp,
    pub(crate) detail: Option<Box<Detail>>,
}

impl Slot {
    pub(crate) fn new(id: &str, now: Timestamp) -> Slot {
        Slot {
            id: id.into(),
            status: DeviceJobStatus::Pending,
            dirty: true,
            start: None,
            end: None,
            updated: now,
            detail: None,
        }
    }

    fn from_record(r: DeviceJob) -> Slot {
        Slot {
            id: r.device_id.into_boxed_str(),
            status: r.status,
            dirty: false,
            start: r.start_time_utc,
            end: r.end_time_utc,
            updated: r.last_updated_date_time_utc,
            detail: None,
        }
    }
}

/// A job in memory: its record, plan and devices (in device-id order, the plan's order).
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) job: JobResponse,
    pub(crate) plan: Option<Rollout>,
    pub(crate) slots: Vec<Slot>,
    /// Device counts by status, kept with every status change.
    pub(crate) counts: DeviceJobStatistics,
    /// Devices whose attempt runs now, with the task running it (none for work to hand out
    /// after a restart).
    pub(crate) in_flight: HashMap<u32, Option<AbortHandle>>,
    /// Twin-job devices that were running when the hub stopped, to run again (a twin update
    /// is idempotent).
    pub(crate) rerun: Vec<u32>,
    /// The job record must be written.
    pub(crate) dirty: bool,
    /// Devices the plan held back (window, gate) when last looked at.
    pub(crate) waiting: u64,
    /// What the job does to each device (made when first needed).
    pub(crate) work: Option<Work>,
    /// The slots whose record must be written, so that a round's writes cost what changed,
    /// not the size of the job.
    pub(crate) dirty_slots: Vec<u32>,
    /// The size of the job record last written, to size the next one's buffer.
    pub(crate) plan_len: usize,
}

impl Job {
    pub(crate) fn new(job: JobResponse) -> Job {
        Job {
            job,
            plan: None,
            slots: Vec::new(),
            counts: DeviceJobStatistics::default(),
            in_flight: HashMap::new(),
            rerun: Vec::new(),
            dirty: true,
            waiting: 0,
            work: None,
            dirty_slots: Vec::new(),
            plan_len: 0,
        }
    }

    /// Sets the job's devices (in device-id order); every new slot's record is to be written.
    pub(crate) fn set_slots(&mut self, slots: Vec<Slot>) {
        self.slots = slots;
        self.dirty_slots = (0..self.slots.len() as u32)
            .filter(|i| self.slots[*i as usize].dirty)
            .collect();
    }

    /// Records an operator pause (or its end) in the status message.
    pub(crate) fn paused(&mut self, paused: bool) {
        self.job.status_message = paused.then(|| "paused".to_string());
        self.dirty = true;
    }

    /// Moves a device to `status`, keeping the counts and the statistics.
    pub(crate) fn set_status(&mut self, i: usize, status: DeviceJobStatus, now: Timestamp) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        uncount(&mut self.counts, slot.status);
        self.counts.count(status);
        slot.status = status;
        slot.updated = now;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty_slots.push(i as u32);
        }
        self.job.device_job_statistics = Some(self.counts);
        self.dirty = true;
    }

    /// The record of device `i` as `devices.jobs` shows it (what [`Job::record_ref`] writes).
    #[cfg(test)]
    pub(crate) fn record(&self, i: usize) -> Option<DeviceJob> {
        let slot = self.slots.get(i)?;
        let detail = slot.detail.as_deref().cloned().unwrap_or_default();
        Some(DeviceJob {
            device_id: slot.id.to_string(),
            job_id: self.job.job_id.clone(),
            job_type: self.job.job_type,
            status: slot.status,
            start_time_utc: slot.start,
            end_time_utc: slot.end,
            created_date_time_utc: self.job.start_time.unwrap_or(slot.updated),
            last_updated_date_time_utc: slot.updated,
            outcome: iot_dm_core::job::DeviceJobOutcome {
                device_method_response: detail.response,
            },
            error: detail.error,
        })
    }

    /// The record of device `i`, borrowed from the slot and the job: what [`Job::record`]
    /// gives, written without copying it first.
    pub(crate) fn record_ref(&self, i: usize) -> Option<DeviceJobRecord<'_>> {
        let slot = self.slots.get(i)?;
        let detail = slot.detail.as_deref();
        Some(DeviceJobRecord {
            job_type: self.job.job_type,
            status: slot.status,
            start_time_utc: slot.start,
            end_time_utc: slot.end,
            created_date_time_utc: self.job.start_time.unwrap_or(slot.updated),
            last_updated_date_time_utc: slot.updated,
            device_method_response: detail.and_then(|d| d.response.as_ref()),
            error: detail.and_then(|d| d.error.as_ref()),
        })
    }

    /// The ops that store what changed (device records, then the job record), and forgets the
    /// details written.
    pub(crate) fn take_ops(&mut self, ops: &mut Vec<Op>) -> Result<(), HubError> {
        let mut dirty = std::mem::take(&mut self.dirty_slots);
        dirty.sort_unstable();
        for i in dirty.into_iter().map(|i| i as usize) {
            if !self.slots.get(i).is_some_and(|s| s.dirty) {
                continue;
            }
            if let Some(r) = self.record_ref(i) {
                let mut value = Vec::with_capacity(RECORD_CAPACITY);
                r.encode(&mut value);
                ops.push(Op::put(
                    Table::Jobs,
                    device_key(&self.job.job_id, &self.slots[i].id),
                    value,
                ));
            }
            let slot = &mut self.slots[i];
            slot.dirty = false;
            slot.detail = None;
        }
        if self.dirty {
            // the plan is written from where it is, not cloned first (a million devices
            // take about 11 MB)
            let stored = StoredJobRef {
                job: &self.job,
                plan: self.plan.as_ref(),
            };
            let mut value = Vec::with_capacity(self.plan_len + 1024);
            serde_json::to_writer(&mut value, &stored).map_err(|e| HubError::Internal {
                message: format!("encoding job {}: {e}", self.job.job_id),
            })?;
            self.plan_len = value.len();
            ops.push(Op::put(
                Table::Meta,
                format!("{}{}", StoredJob::PREFIX, self.job.job_id),
                value,
            ));
            self.dirty = false;
        }
        Ok(())
    }
}

fn uncount(c: &mut DeviceJobStatistics, status: DeviceJobStatus) {
    let n = match status {
        DeviceJobStatus::Pending | DeviceJobStatus::Scheduled => &mut c.pending_count,
        DeviceJobStatus::Running => &mut c.running_count,
        DeviceJobStatus::Completed => &mut c.succeeded_count,
        DeviceJobStatus::Failed => &mut c.failed_count,
        DeviceJobStatus::Canceled => &mut c.canceled_count,
    };
    *n = n.saturating_sub(1);
}

/// Every stored job with its device records.
pub(crate) async fn load(store: &dyn Store) -> Result<BTreeMap<String, Job>, HubError> {
    let stored = MetaCollection::<StoredJob>::load(store).await?;
    let mut jobs: BTreeMap<String, Job> = stored
        .read()
        .values()
        .map(|s| {
            let mut job = Job::new(s.job.clone());
            job.plan = s.plan.clone();
            job.dirty = false;
            (s.job.job_id.clone(), job)
        })
        .collect();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(Table::Jobs, after.as_deref(), LOAD_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, value) in page {
            let record = decode_record(&key, &value)?;
            let Some(job) = jobs.get_mut(&record.job_id) else {
                return Err(HubError::Internal {
                    message: format!(
                        "stored device job {:?} is unreadable: its job is not stored",
                        String::from_utf8_lossy(&key)
                    ),
                });
            };
            job.counts.count(record.status);
            job.slots.push(Slot::from_record(record));
        }
    }
    for job in jobs.values_mut() {
        if job.plan.is_some() {
            job.counts.device_count = job.slots.len() as u64;
            job.job.device_job_statistics = Some(job.counts);
        }
    }
    Ok(jobs)
}
