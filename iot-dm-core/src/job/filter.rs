//! `SELECT * FROM devices.jobs WHERE ...`: the condition, tested on device-job records.
//!
//! Paths name record fields, with or without the `devices.jobs.` prefix (`devices.jobs.jobId`,
//! `status`, `outcome.deviceMethodResponse.status`); field names match case-insensitively.
//! The condition may combine comparisons of a path with a constant (`= != <> < <= > >=`), `IN`
//! and `NIN` lists, `IS_DEFINED(path)`, `AND`, `OR` and `NOT`. Strings compare with strings
//! (times are ISO 8601 text, so `createdDateTimeUtc > '2016-09-01'` works), numbers with
//! numbers; anything else is not true. IoT Hub's own example query names `createdTimeUtc`,
//! which is read as `createdDateTimeUtc`.

use std::cmp::Ordering;

use serde_json::Value;

use super::{DeviceJob, JobError};
use crate::query::{BinaryOp, CmpOp, Collection, Condition, Expr, Function, Literal, Path, Query};

/// A `devices.jobs` query's condition.
///
/// ```
/// use iot_dm_core::job::DeviceJobFilter;
/// use iot_dm_core::query::Query;
/// use serde_json::json;
/// let q = Query::parse("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND devices.jobs.status = 'failed'")?;
/// let f = DeviceJobFilter::new(&q)?;
/// assert_eq!(f.job_id(), Some("j1"));
/// assert!(f.matches_json(&json!({"jobId": "j1", "deviceId": "d", "status": "failed"})));
/// assert!(!f.matches_json(&json!({"jobId": "j1", "deviceId": "d", "status": "completed"})));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DeviceJobFilter {
    condition: Option<Expr>,
    job_id: Option<String>,
}

fn unsupported(what: impl std::fmt::Display) -> JobError {
    JobError::Invalid {
        field: "query".into(),
        reason: format!(
            "FROM devices.jobs takes comparisons of record fields with constants, IN, IS_DEFINED, AND, OR and NOT; not {what}"
        ),
    }
}

fn check(e: &Expr) -> Result<(), JobError> {
    match e {
        Expr::Binary { op, left, right } => match op {
            BinaryOp::And | BinaryOp::Or => {
                check(left)?;
                check(right)
            }
            op if CmpOp::of(*op).is_some() => match (&**left, &**right) {
                (Expr::Path(_), Expr::Literal(_)) | (Expr::Literal(_), Expr::Path(_)) => Ok(()),
                _ => Err(unsupported(e)),
            },
            _ => Err(unsupported(e)),
        },
        Expr::Not(x) => check(x),
        Expr::In { expr, .. } if matches!(**expr, Expr::Path(_)) => Ok(()),
        Expr::Call {
            function: Function::IsDefined,
            args,
        } if matches!(args.as_slice(), [Expr::Path(_)]) => Ok(()),
        _ => Err(unsupported(e)),
    }
}

/// The record field a path names, without the `devices.jobs.` prefix.
fn segments(p: &Path) -> &[String] {
    let s = p.segments.as_slice();
    match s {
        [a, b, rest @ ..]
            if a.eq_ignore_ascii_case("devices") && b.eq_ignore_ascii_case("jobs") =>
        {
            rest
        }
        _ => s,
    }
}

fn lookup<'a>(record: &'a Value, p: &Path) -> Option<&'a Value> {
    let mut cur = record;
    for seg in segments(p) {
        let obj = cur.as_object()?;
        let seg = if seg.eq_ignore_ascii_case("createdTimeUtc") {
            "createdDateTimeUtc"
        } else {
            seg
        };
        cur = obj.get(seg).or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(seg))
                .map(|(_, v)| v)
        })?;
    }
    Some(cur)
}

fn literal(l: &Literal) -> Option<Value> {
    Some(match l {
        Literal::Undefined => return None,
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => Value::from(*i),
        Literal::Float(f) => Value::from(*f),
        Literal::Str(s) => Value::String(s.clone()),
        _ => return None,
    })
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn test(e: &Expr, r: &Value) -> bool {
    match e {
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => test(left, r) && test(right, r),
        Expr::Binary {
            op: BinaryOp::Or,
            left,
            right,
        } => test(left, r) || test(right, r),
        Expr::Binary { op, left, right } => {
            let Some(cmp) = CmpOp::of(*op) else {
                return false;
            };
            let (path, lit, cmp) = match (&**left, &**right) {
                (Expr::Path(p), Expr::Literal(l)) => (p, l, cmp),
                (Expr::Literal(l), Expr::Path(p)) => (p, l, cmp.flip()),
                _ => return false,
            };
            let (Some(v), Some(c)) = (lookup(r, path), literal(lit)) else {
                return false;
            };
            order(v, &c).is_some_and(|o| cmp.test(o))
        }
        Expr::Not(x) => !test(x, r),
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let Expr::Path(p) = &**expr else { return false };
            let Some(v) = lookup(r, p) else { return false };
            let found = list
                .iter()
                .filter_map(literal)
                .any(|c| order(v, &c) == Some(Ordering::Equal));
            found != *negated
        }
        Expr::Call { args, .. } => match args.as_slice() {
            [Expr::Path(p)] => lookup(r, p).is_some(),
            _ => false,
        },
        _ => false,
    }
}

/// Every record path a checked condition names, dotted, without the `devices.jobs.` prefix.
fn collect_paths(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Binary { left, right, .. } => {
            collect_paths(left, out);
            collect_paths(right, out);
        }
        Expr::Not(x) => collect_paths(x, out),
        Expr::In { expr, .. } => collect_paths(expr, out),
        Expr::Call { args, .. } => args.iter().for_each(|a| collect_paths(a, out)),
        Expr::Path(p) => out.push(segments(p).join(".")),
        _ => {}
    }
}

/// The job id a top-level `AND` requires (`jobId = '...'`), if any.
fn required_job_id(e: &Expr) -> Option<String> {
    match e {
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => required_job_id(left).or_else(|| required_job_id(right)),
        Expr::Binary {
            op: BinaryOp::Eq,
            left,
            right,
        } => match (&**left, &**right) {
            (Expr::Path(p), Expr::Literal(Literal::Str(s)))
            | (Expr::Literal(Literal::Str(s)), Expr::Path(p)) => {
                matches!(segments(p), [f] if f.eq_ignore_ascii_case("jobId")).then(|| s.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

impl DeviceJobFilter {
    /// The filter of a `SELECT * FROM devices.jobs` query; refuses other collections and
    /// conditions outside the subset (see the [module docs](self)).
    pub fn new(query: &Query) -> Result<DeviceJobFilter, JobError> {
        if query.collection() != Collection::Jobs {
            return Err(unsupported(format!("FROM {}", query.collection())));
        }
        let condition = query.statement().condition.clone();
        if let Some(c) = &condition {
            check(c)?;
        }
        let job_id = condition.as_ref().and_then(required_job_id);
        Ok(DeviceJobFilter { condition, job_id })
    }

    /// The filter of a bare condition over device-job records (a `WHERE` clause alone, as
    /// a job-scoped alert rule has), refusing conditions outside the subset.
    ///
    /// ```
    /// use iot_dm_core::job::DeviceJobFilter;
    /// use iot_dm_core::query::Condition;
    /// use serde_json::json;
    /// let f = DeviceJobFilter::from_condition(&Condition::parse("status IN ['failed', 'canceled']")?)?;
    /// assert_eq!(f.fields(), ["status"]);
    /// assert!(f.matches_json(&json!({"jobId": "j", "status": "canceled"})));
    /// assert!(DeviceJobFilter::from_condition(&Condition::parse("status = jobId")?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_condition(condition: &Condition) -> Result<DeviceJobFilter, JobError> {
        let e = condition.expr().clone();
        check(&e)?;
        let job_id = required_job_id(&e);
        Ok(DeviceJobFilter {
            condition: Some(e),
            job_id,
        })
    }

    /// The record fields the condition names, dotted, without the `devices.jobs.` prefix,
    /// in the order written (`outcome.deviceMethodResponse.status`, `status`, ...).
    pub fn fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = &self.condition {
            collect_paths(c, &mut out);
        }
        out
    }

    /// The one job whose records can match, when the condition requires a job id.
    pub fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }

    /// Whether a record (in its `devices.jobs` JSON form) matches.
    pub fn matches_json(&self, record: &Value) -> bool {
        self.condition.as_ref().is_none_or(|c| test(c, record))
    }

    /// Whether a record matches.
    pub fn matches(&self, record: &DeviceJob) -> bool {
        serde_json::to_value(record).is_ok_and(|v| self.matches_json(&v))
    }
}
