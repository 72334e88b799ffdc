//! IoT Hub's jobs v2 over the fleet: scheduled twin updates and direct methods, rolled out by
//! core's planner ([`iot_dm_core::rollout`]).
//!
//! | file | what it holds |
//! |---|---|
//! | `records.rs` | the stored job and device-job records, the in-memory bookkeeping |
//! | `scheduler.rs` | the hub's scheduler task, the only writer of job records |
//! | `progress.rs` | moving one job on in a round: start, hand out devices, record the plan |
//! | `commands.rs` | create, cancel, pause and resume, as the scheduler carries them out |
//! | `run.rs` | one attempt on one device, through the twins and sessions wings |
//! | `notify.rs` | the `job.progress` events of the hub's event stream, rate-limited per job |
//!
//! Limits: at most [`HubBuilder::max_active_jobs`](crate::hub::HubBuilder::max_active_jobs)
//! jobs queued, scheduled or running at once (default [`DEFAULT_MAX_ACTIVE_JOBS`]; past it
//! `429004 ThrottlingMaxActiveJobCountExceeded`); a job that ended is kept for
//! [`HubBuilder::job_retention`](crate::hub::HubBuilder::job_retention) (default
//! [`DEFAULT_JOB_RETENTION`], IoT Hub's 30 days), then deleted with its device records. A job
//! without `maxExecutionTimeInSeconds` runs for at most
//! [`DEFAULT_MAX_EXECUTION_SECONDS`](iot_dm_core::job::DEFAULT_MAX_EXECUTION_SECONDS) (one
//! hour). At most [`MAX_IN_FLIGHT`] method calls of one job run
//! at once; a twin job applies at most [`MAX_TWIN_BATCH`] twin updates a round.

mod commands;
mod notify;
mod progress;
mod records;
mod run;
mod scheduler;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use iot_dm_core::job::{DeviceJobFilter, JobRequest, JobResponse};
use iot_dm_core::query::{Page, PageRequest, Query, MAX_PAGE_SIZE};

use crate::api::{DeviceJobPage, JobApi, JobFilter, JobPage};
use crate::hub::engine::locked;
use crate::hub::error::HubError;
use crate::hub::{Hub, Inner};
use crate::store::{Store, Table};

pub use scheduler::{MAX_IN_FLIGHT, MAX_TWIN_BATCH};

/// The default cap on active jobs (IoT Hub's S3 tier allows 10).
pub const DEFAULT_MAX_ACTIVE_JOBS: usize = 10;

/// How long an ended job is kept by default: 30 days, as IoT Hub does.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The jobs settings of a hub.
#[derive(Debug, Clone)]
pub(crate) struct JobsConfig {
    pub(crate) max_active: usize,
    pub(crate) retention: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            max_active: DEFAULT_MAX_ACTIVE_JOBS,
            retention: DEFAULT_JOB_RETENTION,
        }
    }
}

type Answer = oneshot::Sender<Result<JobResponse, HubError>>;

/// What the API asks the scheduler.
#[derive(Debug)]
pub(crate) enum Command {
    Create(Box<JobRequest>, Answer),
    Cancel(String, Answer),
    Pause(String, Answer),
    Resume(String, Answer),
}

/// The hub's jobs: the records the scheduler keeps, and the way to reach it.
pub(crate) struct Jobs {
    pub(crate) config: JobsConfig,
    pub(crate) book: Mutex<BTreeMap<String, records::Job>>,
    /// Held for writing by a scheduler round from its first change to the book until its
    /// commit is durable, and for reading by the API's reads: nothing a reader is shown is
    /// rolled back by a crash.
    pub(crate) gate: tokio::sync::RwLock<()>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("jobs", &locked(&self.book).len())
            .finish()
    }
}

impl Jobs {
    /// Loads every stored job (a running job's in-flight devices are settled: see
    /// `scheduler::recover`) and returns the scheduler's end of the command channel.
    pub(crate) async fn open(
        store: &dyn Store,
        config: JobsConfig,
        now: iot_dm_core::clock::Timestamp,
    ) -> Result<(Jobs, mpsc::UnboundedReceiver<Command>), HubError> {
        let mut book = records::load(store).await?;
        for job in book.values_mut() {
            scheduler::recover(job, now);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let jobs = Jobs {
            config,
            book: Mutex::new(book),
            gate: tokio::sync::RwLock::new(()),
            commands: tx,
        };
        Ok((jobs, rx))
    }
}

/// Starts the scheduler of the hub behind `inner`.
pub(crate) fn spawn_scheduler(inner: &Arc<Inner>, commands: mpsc::UnboundedReceiver<Command>) {
    scheduler::spawn(Arc::downgrade(inner), commands);
}

impl Hub {
    async fn ask(&self, make: impl FnOnce(Answer) -> Command) -> Result<JobResponse, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .jobs
            .commands
            .send(make(tx))
            .map_err(|_| HubError::Closed)?;
        rx.await.map_err(|_| HubError::Closed)?
    }
}

fn page_size(request: &PageRequest) -> Result<usize, HubError> {
    let n = request.page_size();
    if (1..=MAX_PAGE_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(HubError::invalid(
            "x-ms-max-item-count",
            format!("{n} is not in 1..={MAX_PAGE_SIZE}"),
        ))
    }
}

/// Store rows read per scan of a `devices.jobs` query.
const SCAN: usize = 256;

impl Hub {
    /// One page of `SELECT * FROM devices.jobs [WHERE ...]` over the durable device-job
    /// records, in job-id then device-id order (see [`DeviceJobFilter`] for the conditions
    /// taken). A condition requiring `devices.jobs.jobId = '...'` reads that job's records
    /// only. `TOP n` caps each page. The continuation is the last record's key.
    pub(crate) async fn query_device_jobs(
        &self,
        query: &Query,
        request: &PageRequest,
    ) -> Result<Page, HubError> {
        let filter = DeviceJobFilter::new(query)?;
        let mut size = page_size(request)?;
        if let Some(top) = query.statement().top {
            size = size.min(usize::try_from(top).unwrap_or(usize::MAX));
        }
        let prefix = filter.job_id().map(|j| format!("{j}/").into_bytes());
        let mut after: Option<Vec<u8>> = match (request.continuation_token(), filter.job_id()) {
            (Some(c), _) => Some(c.as_bytes().to_vec()),
            (None, Some(j)) => Some(format!("{j}.").into_bytes()),
            (None, None) => None,
        };
        let store = self.inner.committer.store().ok_or(HubError::Closed)?;
        let mut items = Vec::new();
        let mut last_key = None;
        'scan: while items.len() <= size {
            let rows = store.scan(Table::Jobs, after.as_deref(), SCAN).await?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(last.clone());
            let done = rows.len() < SCAN;
            for (key, value) in rows {
                if prefix.as_ref().is_some_and(|p| !key.starts_with(p)) {
                    break 'scan;
                }
                let record =
                    serde_json::to_value(records::decode_record(&key, &value)?).map_err(|e| {
                        HubError::Internal {
                            message: format!("a stored device job is unreadable: {e}"),
                        }
                    })?;
                if filter.matches_json(&record) {
                    if items.len() == size {
                        items.push(record);
                        break 'scan;
                    }
                    items.push(record);
                    last_key = Some(key);
                }
            }
            if done {
                break;
            }
        }
        let more = items.len() > size;
        items.truncate(size);
        let continuation = more
            .then(|| last_key.map(|k| String::from_utf8_lossy(&k).into_owned()))
            .flatten();
        Ok(Page {
            items,
            continuation,
        })
    }
}

/// Keeps the first `size` of `items` (read one past the page) and returns the continuation:
/// the key of the last item kept, when there were more.
fn cut<T>(items: &mut Vec<T>, size: usize, key: impl Fn(&T) -> String) -> Option<String> {
    let more = items.len() > size;
    items.truncate(size);
    more.then(|| items.last().map(key)).flatten()
}

/// Jobs of the embedded hub.
#[async_trait]
impl JobApi for Hub {
    async fn create_job(&self, request: &JobRequest) -> Result<JobResponse, HubError> {
        request.validate()?;
        let request = Box::new(request.clone());
        self.ask(|tx| Command::Create(request, tx)).await
    }

    async fn get_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        let _durable = self.inner.jobs.gate.read().await;
        locked(&self.inner.jobs.book)
            .get(job_id)
            .map(|j| j.job.clone())
            .ok_or_else(|| HubError::JobNotFound {
                job_id: job_id.to_string(),
            })
    }

    async fn cancel_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        self.ask(|tx| Command::Cancel(job_id.to_string(), tx)).await
    }

    async fn pause_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        self.ask(|tx| Command::Pause(job_id.to_string(), tx)).await
    }

    async fn resume_job(&self, job_id: &str) -> Result<JobResponse, HubError> {
        self.ask(|tx| Command::Resume(job_id.to_string(), tx)).await
    }

    /// The continuation is the last job id of the page.
    async fn query_jobs(
        &self,
        filter: &JobFilter,
        request: &PageRequest,
    ) -> Result<JobPage, HubError> {
        let size = page_size(request)?;
        let _durable = self.inner.jobs.gate.read().await;
        let book = locked(&self.inner.jobs.book);
        let after = request.continuation_token().map(str::to_string);
        let mut items: Vec<JobResponse> = book
            .iter()
            .filter(|(id, _)| after.as_ref().is_none_or(|a| id.as_str() > a.as_str()))
            .map(|(_, j)| &j.job)
            .filter(|j| filter.matches(j))
            .take(size + 1)
            .cloned()
            .collect();
        let continuation = cut(&mut items, size, |j| j.job_id.clone());
        Ok(JobPage::new(items, continuation))
    }

    /// Read from the store: what is durable. The continuation is the last device id of the
    /// page.
    async fn device_jobs(
        &self,
        job_id: &str,
        request: &PageRequest,
    ) -> Result<DeviceJobPage, HubError> {
        let size = page_size(request)?;
        if !locked(&self.inner.jobs.book).contains_key(job_id) {
            return Err(HubError::JobNotFound {
                job_id: job_id.to_string(),
            });
        }
        let prefix = format!("{job_id}/");
        let after = match request.continuation_token() {
            Some(c) => records::device_key(job_id, c),
            // just below every `{job_id}/` key ('.' sorts right before '/', and job ids have
            // no '.')
            None => format!("{job_id}.").into_bytes(),
        };
        let store = self.inner.committer.store().ok_or(HubError::Closed)?;
        let rows = store.scan(Table::Jobs, Some(&after), size + 1).await?;
        let mut items = Vec::new();
        for (key, value) in rows {
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            items.push(records::decode_record(&key, &value)?);
        }
        let continuation = cut(&mut items, size, |r| r.device_id.clone());
        Ok(DeviceJobPage::new(items, continuation))
    }
}
