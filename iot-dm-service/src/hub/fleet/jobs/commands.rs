//! The commands of the API, as the scheduler carries them out: create (the active-job cap and
//! duplicate ids are checked here, against every job), cancel, pause, resume.

use std::collections::BTreeMap;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::{JobResponse, JobStatus};

use super::progress::drain;
use super::records::Job;
use super::scheduler::Reply;
use super::Command;
use crate::hub::error::HubError;
use crate::hub::Hub;

fn respond(job: &Job) -> Result<JobResponse, HubError> {
    Ok(job.job.clone())
}

pub(super) fn command(
    hub: &Hub,
    book: &mut BTreeMap<String, Job>,
    cmd: Command,
    now: Timestamp,
    replies: &mut Vec<Reply>,
    created: &mut Vec<String>,
) {
    let config = &hub.inner.jobs.config;
    match cmd {
        Command::Create(request, tx) => {
            let r = if book.contains_key(&request.job_id) {
                Err(HubError::JobAlreadyExists {
                    job_id: request.job_id.clone(),
                })
            } else if book.values().filter(|j| j.job.status.is_active()).count()
                >= config.max_active
            {
                Err(HubError::TooManyActiveJobs {
                    limit: config.max_active,
                })
            } else {
                let job = Job::new(JobResponse::queued(&request, now));
                let reply = job.job.clone();
                tracing::info!(job = %request.job_id, kind = request.job_type.as_str(), "job created");
                created.push(request.job_id.clone());
                book.insert(request.job_id.clone(), job);
                Ok(reply)
            };
            replies.push((tx, r));
        }
        Command::Cancel(id, tx) => {
            let r = with_job(book, &id, |job| {
                cancel(job, now);
                respond(job)
            });
            replies.push((tx, r));
        }
        Command::Pause(id, tx) | Command::Resume(id, tx) if !book.contains_key(&id) => {
            replies.push((tx, Err(HubError::JobNotFound { job_id: id })));
        }
        Command::Pause(id, tx) => {
            let r = with_job(book, &id, |job| {
                if job.job.status.is_active() {
                    if let Some(plan) = &mut job.plan {
                        plan.pause();
                    }
                    job.paused(true);
                }
                respond(job)
            });
            replies.push((tx, r));
        }
        Command::Resume(id, tx) => {
            let r = with_job(book, &id, |job| {
                if let Some(plan) = &mut job.plan {
                    plan.resume();
                }
                job.paused(false);
                respond(job)
            });
            replies.push((tx, r));
        }
    }
}

fn with_job(
    book: &mut BTreeMap<String, Job>,
    id: &str,
    f: impl FnOnce(&mut Job) -> Result<JobResponse, HubError>,
) -> Result<JobResponse, HubError> {
    match book.get_mut(id) {
        Some(job) => f(job),
        None => Err(HubError::JobNotFound {
            job_id: id.to_string(),
        }),
    }
}

fn cancel(job: &mut Job, now: Timestamp) {
    if !job.job.status.is_active() {
        return;
    }
    if let Some(plan) = &mut job.plan {
        plan.cancel(now);
    }
    drain(None, job, now);
    job.job.status = JobStatus::Cancelled;
    job.job.end_time = Some(now);
    job.job.status_message = Some("cancelled; devices already started finish".into());
    job.dirty = true;
    tracing::info!(job = %job.job.job_id, "job cancelled");
}
