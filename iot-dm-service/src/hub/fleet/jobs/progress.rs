//! `job.progress` events: after a durable round, each job whose status or device counts moved
//! since its last event gets one, at most [`JOB_PROGRESS_EVERY`] apart (a change held back is
//! published by a later round, which comes within the scheduler's tick); a change of status
//! is published at once.

use std::collections::{BTreeMap, HashMap};

use tokio::time::Instant;

use iot_dm_core::job::{DeviceJobStatistics, JobStatus};

use super::records::Job;
use crate::hub::{Hub, HubEvent, JOB_PROGRESS_EVERY};

/// What was last published per job.
#[derive(Debug, Default)]
pub(super) struct Progress {
    sent: HashMap<String, (JobStatus, DeviceJobStatistics, Instant)>,
}

impl Progress {
    /// Publishes the jobs of `book` that moved (call once the round's writes are durable).
    pub(super) fn publish(&mut self, hub: &Hub, book: &BTreeMap<String, Job>) {
        let now = Instant::now();
        self.sent.retain(|id, _| book.contains_key(id));
        for (id, job) in book {
            let status = job.job.status;
            let stats = job.job.device_job_statistics.unwrap_or(job.counts);
            let due = match self.sent.get(id) {
                // a job that ended before it was seen (one loaded at start) has no news
                None if !status.is_active() => {
                    self.sent.insert(id.clone(), (status, stats, now));
                    false
                }
                None => true,
                Some((s, c, at)) => {
                    *s != status || (*c != stats && now.duration_since(*at) >= JOB_PROGRESS_EVERY)
                }
            };
            if !due {
                continue;
            }
            self.sent.insert(id.clone(), (status, stats, now));
            hub.emit(HubEvent::JobProgress {
                job_id: id.clone(),
                status,
                statistics: stats,
            });
        }
    }
}
