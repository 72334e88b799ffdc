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
    /// What the jobs of `book` (those loaded at start) stand at: they have no news until
    /// they move.
    pub(super) fn loaded(book: &BTreeMap<String, Job>) -> Progress {
        let now = Instant::now();
        let sent = book
            .iter()
            .map(|(id, job)| {
                let stats = job.job.device_job_statistics.unwrap_or(job.counts);
                (id.clone(), (job.job.status, stats, now))
            })
            .collect();
        Progress { sent }
    }

    /// Publishes the jobs of `book` that moved (call once the round's writes are durable).
    pub(super) fn publish(&mut self, hub: &Hub, book: &BTreeMap<String, Job>) {
        let now = Instant::now();
        self.sent.retain(|id, _| book.contains_key(id));
        for (id, job) in book {
            let status = job.job.status;
            let stats = job.job.device_job_statistics.unwrap_or(job.counts);
            let due = match self.sent.get(id) {
                // a job created since (it may have run to its end in the round that made it)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use iot_dm_core::clock::Timestamp;
    use iot_dm_core::job::{JobRequest, JobResponse};

    use super::*;
    use crate::hub::StreamItem;

    fn book(status: JobStatus, succeeded: u64) -> BTreeMap<String, Job> {
        let body = json!({"jobId": "j", "type": "scheduleUpdateTwin", "queryCondition": "*",
                          "updateTwin": {"tags": {"a": 1}}});
        let request = JobRequest::from_json(&body).unwrap();
        let mut job = Job::new(JobResponse::queued(
            &request,
            Timestamp::from_unix_secs(1_700_000_000),
        ));
        job.job.status = status;
        job.counts.device_count = 10;
        job.counts.succeeded_count = succeeded;
        BTreeMap::from([("j".to_string(), job)])
    }

    fn published(cursor: &mut crate::hub::EventCursor) -> Vec<(JobStatus, u64)> {
        let mut out = Vec::new();
        while let Some(StreamItem::Event(e)) = cursor.try_next() {
            if let HubEvent::JobProgress {
                status, statistics, ..
            } = &e.event
            {
                out.push((*status, statistics.succeeded_count));
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn counts_are_rate_limited_and_status_changes_are_not() {
        let hub = Hub::builder().open().await.unwrap();
        let mut cursor = hub.event_stream(None);
        let mut p = Progress::default();
        p.publish(&hub, &book(JobStatus::Running, 0));
        // the counts move quickly: held back, but nothing is published twice
        p.publish(&hub, &book(JobStatus::Running, 1));
        p.publish(&hub, &book(JobStatus::Running, 2));
        p.publish(&hub, &book(JobStatus::Running, 2));
        assert_eq!(published(&mut cursor), vec![(JobStatus::Running, 0)]);
        // once the interval has passed, the latest counts go out
        tokio::time::advance(JOB_PROGRESS_EVERY).await;
        p.publish(&hub, &book(JobStatus::Running, 3));
        p.publish(&hub, &book(JobStatus::Running, 3));
        assert_eq!(published(&mut cursor), vec![(JobStatus::Running, 3)]);
        // the end goes out at once
        p.publish(&hub, &book(JobStatus::Completed, 10));
        assert_eq!(published(&mut cursor), vec![(JobStatus::Completed, 10)]);
        // a job loaded at start has no news until it moves
        let mut loaded = Progress::loaded(&book(JobStatus::Completed, 10));
        loaded.publish(&hub, &book(JobStatus::Completed, 10));
        assert_eq!(published(&mut cursor), vec![]);
        // a job that ran to its end in the round that created it is still told
        let mut fresh = Progress::default();
        fresh.publish(&hub, &book(JobStatus::Completed, 10));
        assert_eq!(published(&mut cursor), vec![(JobStatus::Completed, 10)]);
    }
}
