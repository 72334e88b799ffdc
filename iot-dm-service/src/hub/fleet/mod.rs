//! The fleet wing: operations over many devices at once, acting through the other wings
//! (twins, sessions) like any back end does: jobs, automatic device configurations, and alerts.

pub(crate) mod alerts;
pub(crate) mod configurations;
pub(crate) mod jobs;

pub use alerts::MAX_ACKNOWLEDGED_BY_LEN;
pub use jobs::{DEFAULT_JOB_RETENTION, DEFAULT_MAX_ACTIVE_JOBS, MAX_IN_FLIGHT, MAX_TWIN_BATCH};
