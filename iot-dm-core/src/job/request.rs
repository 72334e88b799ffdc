//! Reading and checking a job request: every refusal names the field.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    CloudToDeviceMethod, JobRequest, JobType, DEFAULT_MAX_EXECUTION_SECONDS, MAX_EXECUTION_SECONDS,
};
use crate::clock::Timestamp;
use crate::method::{MethodError, MethodRequest};
use crate::query::{Condition, QueryError};
use crate::rollout::{PolicyError, RolloutPolicy};
use crate::twin::TwinPatch;

/// The longest job id.
pub const MAX_JOB_ID_LEN: usize = 64;

/// A job request the hub refuses. Each variant names the field (`jobId`,
/// `cloudToDeviceMethod.methodName`, `rolloutPolicy.rate.maxPerMinute`, ...); the message text
/// is not API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A required field is absent or `null`.
    #[error("{field} is required{context}")]
    Missing {
        /// The field.
        field: String,
        /// When it is required (e.g. ` for scheduleDeviceMethod`), or empty.
        context: &'static str,
    },
    /// A field has a value the hub does not take.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `queryCondition` (or another condition) does not parse.
    #[error("{field} is not a valid condition: {source}")]
    Condition {
        /// The field.
        field: String,
        /// The parse error, with its position.
        source: QueryError,
    },
    /// The rollout policy breaks a rule.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl JobError {
    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            JobError::Missing { field, .. }
            | JobError::Invalid { field, .. }
            | JobError::Condition { field, .. } => field,
            JobError::Policy(p) => p.field(),
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> JobError {
    JobError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Checks a job id: 1 to [`MAX_JOB_ID_LEN`] US-ASCII letters, digits and `-`.
pub fn validate_job_id(id: &str) -> Result<(), JobError> {
    if id.is_empty() {
        return Err(invalid("jobId", "it is empty"));
    }
    if id.len() > MAX_JOB_ID_LEN {
        return Err(invalid(
            "jobId",
            format!(
                "it is {} characters long, the limit is {MAX_JOB_ID_LEN}",
                id.chars().count()
            ),
        ));
    }
    if let Some((i, c)) = id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(invalid(
            "jobId",
            format!("{c:?} at position {i}; only ASCII letters, digits and '-' are allowed"),
        ));
    }
    Ok(())
}

/// A member that is absent or `null` is `None`.
fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn string(obj: &Map<String, Value>, field: &str, name: &str) -> Result<Option<String>, JobError> {
    match member(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(invalid(field, format!("expected a string, got {v}"))),
    }
}

fn seconds(
    obj: &Map<String, Value>,
    field: &str,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, JobError> {
    match member(obj, name) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(invalid(
                field,
                format!(
                    "expected a whole number of seconds in {}..={}, got {v}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, JobError> {
    v.as_object()
        .ok_or_else(|| invalid(field, format!("expected a JSON object, got {v}")))
}

/// Checks a `queryCondition`: `*`, or a condition that parses.
fn check_condition(text: &str) -> Result<(), JobError> {
    let field = "queryCondition";
    let trimmed = text.trim();
    if trimmed == "*" {
        return Ok(());
    }
    if trimmed.is_empty() {
        return Err(invalid(field, "it is empty; use * for every device"));
    }
    let first = trimmed
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    if matches!(first.as_str(), "SELECT" | "FROM" | "WHERE") {
        return Err(invalid(
            field,
            "it takes a WHERE clause only (such as deviceId IN ['a', 'b']), without SELECT, FROM or WHERE, or * for every device",
        ));
    }
    Condition::parse(trimmed).map_err(|source| JobError::Condition {
        field: field.to_string(),
        source,
    })?;
    Ok(())
}

fn method_field(e: &MethodError) -> &'static str {
    match e {
        MethodError::TimeoutOutOfRange { field, .. }
        | MethodError::TimeoutNotWholeSeconds { field, .. } => match *field {
            "connectTimeoutInSeconds" => "cloudToDeviceMethod.connectTimeoutInSeconds",
            _ => "cloudToDeviceMethod.responseTimeoutInSeconds",
        },
        MethodError::EmptyName | MethodError::NameTooLong { .. } => {
            "cloudToDeviceMethod.methodName"
        }
        MethodError::InvalidNameChar { .. } => "cloudToDeviceMethod.methodName",
        _ => "cloudToDeviceMethod.payload",
    }
}

fn read_method(v: &Value) -> Result<CloudToDeviceMethod, JobError> {
    let obj = object(v, "cloudToDeviceMethod")?;
    let method_name =
        string(obj, "cloudToDeviceMethod.methodName", "methodName")?.ok_or(JobError::Missing {
            field: "cloudToDeviceMethod.methodName".into(),
            context: "",
        })?;
    // the range is the method builder's to check, so its message names the limits
    let timeout = |name: &str| {
        seconds(
            obj,
            &format!("cloudToDeviceMethod.{name}"),
            name,
            0..=u64::from(u32::MAX),
        )
    };
    let response_timeout_in_seconds = timeout("responseTimeoutInSeconds")?;
    let connect_timeout_in_seconds = timeout("connectTimeoutInSeconds")?;
    let method = CloudToDeviceMethod {
        method_name,
        payload: obj.get("payload").cloned().unwrap_or(Value::Null),
        response_timeout_in_seconds,
        connect_timeout_in_seconds,
    };
    build_method(&method)?;
    Ok(method)
}

fn build_method(m: &CloudToDeviceMethod) -> Result<MethodRequest, JobError> {
    let mut b = MethodRequest::builder(m.method_name.clone()).payload(m.payload.clone());
    if let Some(s) = m.response_timeout_in_seconds {
        b = b.response_timeout(Duration::from_secs(s));
    }
    if let Some(s) = m.connect_timeout_in_seconds {
        b = b.connect_timeout(Duration::from_secs(s));
    }
    b.build()
        .map_err(|e| invalid(method_field(&e), e.to_string()))
}

impl CloudToDeviceMethod {
    /// The method request (checked: name, timeouts, payload size).
    pub fn request(&self) -> Result<MethodRequest, JobError> {
        build_method(self)
    }
}

fn read_update_twin(v: &Value) -> Result<(), JobError> {
    let obj = object(v, "updateTwin")?;
    let tags = member(obj, "tags");
    if let Some(t) = tags {
        object(t, "updateTwin.tags")?;
    }
    let mut desired = None;
    if let Some(p) = member(obj, "properties") {
        let props = object(p, "updateTwin.properties")?;
        if member(props, "reported").is_some_and(|r| r.as_object().is_none_or(|m| !m.is_empty())) {
            return Err(invalid(
                "updateTwin.properties.reported",
                "a job cannot change reported properties",
            ));
        }
        desired = member(props, "desired");
        if let Some(d) = desired {
            object(d, "updateTwin.properties.desired")?;
        }
    }
    if tags.is_none() && desired.is_none() {
        return Err(JobError::Missing {
            field: "updateTwin.tags or updateTwin.properties.desired".into(),
            context: " for scheduleUpdateTwin",
        });
    }
    string(obj, "updateTwin.etag", "etag")?;
    Ok(())
}

impl JobRequest {
    /// Reads and checks a request body (`PUT /jobs/v2/{id}`). Unknown top-level members are
    /// ignored, as are the members SDK serializers put into `updateTwin` (`deviceId`, `etag`,
    /// `$metadata`, `version`, ...).
    pub fn from_json(body: &Value) -> Result<JobRequest, JobError> {
        let obj = object(body, "job")?;
        let job_id = string(obj, "jobId", "jobId")?.ok_or(JobError::Missing {
            field: "jobId".into(),
            context: "",
        })?;
        validate_job_id(&job_id)?;
        let ty = string(obj, "type", "type")?.ok_or(JobError::Missing {
            field: "type".into(),
            context: "",
        })?;
        let job_type = JobType::parse(&ty).ok_or_else(|| {
            invalid(
                "type",
                format!("{ty:?} is not one of scheduleUpdateTwin, scheduleDeviceMethod"),
            )
        })?;
        let query_condition =
            string(obj, "queryCondition", "queryCondition")?.ok_or(JobError::Missing {
                field: "queryCondition".into(),
                context: "; use * for every device",
            })?;
        let start_time = match string(obj, "startTime", "startTime")? {
            None => None,
            Some(s) => Some(
                s.parse::<Timestamp>()
                    .map_err(|e| invalid("startTime", format!("{s:?}: {e}")))?,
            ),
        };
        let max_execution_time_in_seconds = seconds(
            obj,
            "maxExecutionTimeInSeconds",
            "maxExecutionTimeInSeconds",
            1..=MAX_EXECUTION_SECONDS,
        )?;
        let update_twin = member(obj, "updateTwin").cloned();
        let cloud_to_device_method = match member(obj, "cloudToDeviceMethod") {
            None => None,
            Some(v) => Some(read_method(v)?),
        };
        let rollout_policy = match member(obj, "rolloutPolicy") {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<RolloutPolicy>(v.clone())
                    .map_err(|e| invalid("rolloutPolicy", e.to_string()))?,
            ),
        };
        let request = JobRequest {
            job_id,
            job_type,
            query_condition,
            start_time,
            max_execution_time_in_seconds,
            update_twin,
            cloud_to_device_method,
            rollout_policy,
        };
        request.validate()?;
        Ok(request)
    }

    /// Checks a request built in code (what [`from_json`](Self::from_json) also checks).
    pub fn validate(&self) -> Result<(), JobError> {
        validate_job_id(&self.job_id)?;
        check_condition(&self.query_condition)?;
        if let Some(s) = self.max_execution_time_in_seconds {
            if !(1..=MAX_EXECUTION_SECONDS).contains(&s) {
                return Err(invalid(
                    "maxExecutionTimeInSeconds",
                    format!("expected 1..={MAX_EXECUTION_SECONDS}, got {s}"),
                ));
            }
        }
        match self.job_type {
            JobType::ScheduleUpdateTwin => {
                if self.cloud_to_device_method.is_some() {
                    return Err(invalid(
                        "cloudToDeviceMethod",
                        "only a scheduleDeviceMethod job takes it",
                    ));
                }
                let patch = self.update_twin.as_ref().ok_or(JobError::Missing {
                    field: "updateTwin".into(),
                    context: " for scheduleUpdateTwin",
                })?;
                read_update_twin(patch)?;
            }
            JobType::ScheduleDeviceMethod => {
                if self.update_twin.is_some() {
                    return Err(invalid(
                        "updateTwin",
                        "only a scheduleUpdateTwin job takes it",
                    ));
                }
                let m = self
                    .cloud_to_device_method
                    .as_ref()
                    .ok_or(JobError::Missing {
                        field: "cloudToDeviceMethod".into(),
                        context: " for scheduleDeviceMethod",
                    })?;
                build_method(m)?;
            }
        }
        if let Some(p) = &self.rollout_policy {
            p.validate()?;
        }
        Ok(())
    }

    /// The target condition; `None` for `*` (every device).
    pub fn condition(&self) -> Result<Option<Condition>, JobError> {
        condition_of(&self.query_condition)
    }

    /// The method request of a method job (its connect timeout as given; a job sets its own).
    pub fn method(&self) -> Result<Option<MethodRequest>, JobError> {
        self.cloud_to_device_method
            .as_ref()
            .map(build_method)
            .transpose()
    }

    /// The twin patch of a twin job and the `If-Match` it applies with (`None` for `*` or no
    /// etag).
    pub fn twin_patch(&self) -> Option<(TwinPatch, Option<String>)> {
        self.update_twin.as_ref().map(twin_patch_of)
    }

    /// The time bound in effect: the request's or [`DEFAULT_MAX_EXECUTION_SECONDS`].
    pub fn max_execution(&self) -> Duration {
        Duration::from_secs(
            self.max_execution_time_in_seconds
                .unwrap_or(DEFAULT_MAX_EXECUTION_SECONDS),
        )
    }
}

/// The condition of a stored `queryCondition`; `None` for `*`.
pub fn condition_of(text: &str) -> Result<Option<Condition>, JobError> {
    check_condition(text)?;
    let t = text.trim();
    if t == "*" {
        return Ok(None);
    }
    Condition::parse(t)
        .map(Some)
        .map_err(|source| JobError::Condition {
            field: "queryCondition".into(),
            source,
        })
}

/// The twin patch and `If-Match` of an `updateTwin` value (members other than `tags`,
/// `properties.desired` and `etag` are left out).
pub fn twin_patch_of(update: &Value) -> (TwinPatch, Option<String>) {
    let tags = update.get("tags").filter(|v| !v.is_null()).cloned();
    let desired = update
        .get("properties")
        .and_then(|p| p.get("desired"))
        .filter(|v| !v.is_null())
        .cloned();
    let etag = update
        .get("etag")
        .and_then(Value::as_str)
        .map(|e| e.trim_matches('"'))
        .filter(|e| !e.is_empty() && *e != "*")
        .map(str::to_string);
    (TwinPatch { tags, desired }, etag)
}
