//! Job-scoped rules: the condition is tested on each device's job record as `devices.jobs`
//! shows it, reduced to the two fields a job's statistics keep apart, `jobId` and `status`.
//!
//! A job counts its devices by status (`deviceJobStatistics`), so a rule scoped by a job
//! never looks at a device: the condition is tested once per status against the small record
//! `{"jobId": <the job>, "status": <status>}`, and the counts of the statuses that match are
//! summed. The scope is the job's `deviceCount`. That is exact because the condition can name
//! nothing else: a job-scoped condition naming another field is refused when the rule is
//! read, as is one that tells `pending` from `scheduled` (the statistics count both as
//! `pendingCount`).

use serde_json::json;

use super::{AlertRuleError, Counts};
use crate::job::{DeviceJobFilter, DeviceJobStatistics, DeviceJobStatus, JobError};
use crate::query::Condition;

/// The fields a job-scoped condition may name.
pub const JOB_RECORD_FIELDS: [&str; 2] = ["jobId", "status"];

/// One bucket of the statistics: the statuses it counts, and its count.
type Bucket = (&'static [DeviceJobStatus], fn(&DeviceJobStatistics) -> u64);

/// The statistics' buckets.
const BUCKETS: [Bucket; 5] = [
    (
        &[DeviceJobStatus::Pending, DeviceJobStatus::Scheduled],
        |s| s.pending_count,
    ),
    (&[DeviceJobStatus::Running], |s| s.running_count),
    (&[DeviceJobStatus::Completed], |s| s.succeeded_count),
    (&[DeviceJobStatus::Failed], |s| s.failed_count),
    (&[DeviceJobStatus::Canceled], |s| s.canceled_count),
];

fn refused(reason: String) -> AlertRuleError {
    AlertRuleError::Invalid {
        field: "condition".into(),
        reason,
    }
}

/// A job-scoped rule's condition, decided once per status bucket.
///
/// ```
/// use iot_dm_core::alert::{Counts, JobCounter};
/// use iot_dm_core::job::DeviceJobStatistics;
/// use iot_dm_core::query::Condition;
///
/// let c = Condition::parse("status = 'failed'")?;
/// let counter = JobCounter::new(&c, "j-42")?;
/// let stats = DeviceJobStatistics { device_count: 100, failed_count: 3, succeeded_count: 90,
///                                   ..DeviceJobStatistics::default() };
/// assert_eq!(counter.counts(Some(&stats)), Counts { matching: 3, scope: 100 });
/// // the job does not exist (yet): an empty scope
/// assert_eq!(counter.counts(None), Counts::default());
/// // a field the statistics do not keep is refused
/// assert!(JobCounter::new(&Condition::parse("deviceId = 'd1'")?, "j-42").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct JobCounter {
    job_id: String,
    /// Per bucket, whether its devices match.
    matches: [bool; BUCKETS.len()],
}

impl JobCounter {
    /// Checks a condition for a rule scoped by job `job_id`: refused (naming `condition`)
    /// unless it is a `devices.jobs` condition naming only [`JOB_RECORD_FIELDS`] and treating
    /// `pending` and `scheduled` alike.
    pub fn new(condition: &Condition, job_id: &str) -> Result<JobCounter, AlertRuleError> {
        let filter = DeviceJobFilter::from_condition(condition).map_err(|e| {
            let why = match e {
                JobError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            refused(format!(
                "a job-scoped condition is tested on device job records: {why}"
            ))
        })?;
        if let Some(f) = filter
            .fields()
            .into_iter()
            .find(|f| !JOB_RECORD_FIELDS.iter().any(|k| k.eq_ignore_ascii_case(f)))
        {
            return Err(refused(format!(
                "a job-scoped condition may name only {} (what the job's device statistics \
                 keep); it names {f:?}",
                JOB_RECORD_FIELDS.join(" and ")
            )));
        }
        let test = |s: DeviceJobStatus| {
            filter.matches_json(&json!({"jobId": job_id, "status": s.as_str()}))
        };
        let mut matches = [false; BUCKETS.len()];
        for (m, (statuses, _)) in matches.iter_mut().zip(BUCKETS.iter()) {
            let first = statuses.first().is_some_and(|s| test(*s));
            if statuses.iter().any(|s| test(*s) != first) {
                return Err(refused(
                    "a job-scoped condition cannot tell pending from scheduled: the job's \
                     statistics count both as pendingCount"
                        .into(),
                ));
            }
            *m = first;
        }
        Ok(JobCounter {
            job_id: job_id.to_string(),
            matches,
        })
    }

    /// The job whose devices count.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The counts for the job's statistics (`None`: no such job, an empty scope).
    pub fn counts(&self, stats: Option<&DeviceJobStatistics>) -> Counts {
        let Some(s) = stats else {
            return Counts::default();
        };
        let matching = BUCKETS
            .iter()
            .zip(self.matches)
            .filter(|(_, m)| *m)
            .map(|((_, count), _)| count(s))
            .sum();
        Counts {
            matching,
            scope: s.device_count,
        }
    }
}
