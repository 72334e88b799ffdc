//! `job create`: the job request from the flags and `--file`, checked by core's validation so
//! that a bad value is refused before anything is sent, naming the flag and the field.

use serde_json::{json, Map, Value};

use iot_dm::core::clock::Timestamp;
use iot_dm::core::job::{JobError, JobRequest};

use super::args::{JobCreateArgs, RolloutArgs};
use crate::error::{CliError, CliResult};
use crate::input::{json_arg, json_object_arg};

/// Which flag sets which request field (the longest matching field prefix wins).
const FLAGS: &[(&str, &str)] = &[
    ("jobId", "the job id"),
    ("queryCondition", "--query"),
    ("startTime", "--start-time"),
    ("maxExecutionTimeInSeconds", "--max-execution-time"),
    ("updateTwin.tags", "--tags"),
    ("updateTwin.properties", "--desired"),
    ("updateTwin.etag", "--etag"),
    ("updateTwin", "--tags"),
    ("cloudToDeviceMethod.methodName", "--method"),
    ("cloudToDeviceMethod.payload", "--payload"),
    (
        "cloudToDeviceMethod.responseTimeoutInSeconds",
        "--response-timeout",
    ),
    (
        "cloudToDeviceMethod.connectTimeoutInSeconds",
        "--connect-timeout",
    ),
    ("cloudToDeviceMethod", "--method"),
    ("rolloutPolicy.rate.maxPerMinute", "--max-per-minute"),
    ("rolloutPolicy.rate.baseRatePerMinute", "--ramp-base"),
    ("rolloutPolicy.rate.incrementFactor", "--ramp-factor"),
    (
        "rolloutPolicy.rate.rateIncreaseCriteria.numberOfSucceededDevices",
        "--ramp-every-succeeded",
    ),
    (
        "rolloutPolicy.rate.rateIncreaseCriteria.numberOfNotifiedDevices",
        "--ramp-every-notified",
    ),
    (
        "rolloutPolicy.rate.rateIncreaseCriteria",
        "--ramp-every-succeeded",
    ),
    ("rolloutPolicy.rate", "--max-per-minute"),
    ("rolloutPolicy.abort", "--abort-failure-percent"),
    (
        "rolloutPolicy.abort.criteria[0].thresholdPercentage",
        "--abort-failure-percent",
    ),
    (
        "rolloutPolicy.abort.criteria[0].minFinishedDevices",
        "--abort-min-devices",
    ),
    ("rolloutPolicy.timeout", "--timeout"),
    ("rolloutPolicy.retries.failed", "--retries"),
    ("rolloutPolicy.retries.timedOut", "--retries-timed-out"),
    ("rolloutPolicy.maintenanceWindows", "--window"),
    ("rolloutPolicy.timeZonePath", "--timezone-path"),
    ("rolloutPolicy.gate", "--gate"),
    ("rolloutPolicy.successCondition", "--success"),
    ("rolloutPolicy.successTimeoutSeconds", "--success-timeout"),
    ("rolloutPolicy.pauseAfterDevices", "--canary"),
];

/// The flag that sets `field`, if one does.
pub fn flag_of(field: &str) -> Option<&'static str> {
    FLAGS
        .iter()
        .filter(|(prefix, _)| {
            field == *prefix
                || field
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, flag)| *flag)
}

/// A refused request as a usage error: the flag when the user gave it, else the file, else
/// the flag that sets the field; then core's message (which names the field).
fn refused(e: &JobError, given: &[&'static str], file: Option<&str>) -> CliError {
    let flag = flag_of(e.field());
    let given_flag = flag.filter(|f| given.contains(f) || *f == "the job id");
    let prefix = match (given_flag, file, flag) {
        (Some(flag), _, _) => flag.to_string(),
        (None, Some(file), _) => file.to_string(),
        // a field another flag needs: name the flag to add
        (None, None, Some(flag)) => flag.to_string(),
        (None, None, None) => "the job request".to_string(),
    };
    CliError::usage(format!("{prefix}: {e}"))
}

/// Takes the object member `name` out of `obj` (empty when absent or not an object); the
/// caller puts it back.
fn take_object(obj: &mut Map<String, Value>, name: &str) -> Map<String, Value> {
    match obj.remove(name) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Puts `member` back into `obj` unless it is empty.
fn put_object(obj: &mut Map<String, Value>, name: &str, member: Map<String, Value>) {
    if !member.is_empty() {
        obj.insert(name.to_string(), Value::Object(member));
    }
}

/// The request as JSON, before validation, and the flags that went into it.
struct Draft {
    body: Map<String, Value>,
    given: Vec<&'static str>,
}

impl Draft {
    fn set(&mut self, flag: &'static str, name: &str, value: Value) {
        self.given.push(flag);
        self.body.insert(name.to_string(), value);
    }
}

fn read_file(path: &std::path::Path) -> CliResult<Map<String, Value>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("--file: cannot read {shown}: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(CliError::usage(format!(
            "{shown}: a job request is a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(CliError::usage(format!("{shown} is not valid JSON: {e}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Builds and checks the request of `job create`.
pub fn request(args: &JobCreateArgs) -> CliResult<JobRequest> {
    let file = args.file.as_ref().map(|p| p.display().to_string());
    let mut d = Draft {
        body: match &args.file {
            Some(path) => read_file(path)?,
            None => Map::new(),
        },
        given: Vec::new(),
    };
    d.body.insert("jobId".into(), json!(args.job_id));
    if let Some(q) = &args.query {
        d.set("--query", "queryCondition", json!(q));
    }
    if let Some(t) = &args.start_time {
        d.set("--start-time", "startTime", json!(utc(t)));
    }
    if let Some(s) = args.max_execution_time {
        d.set(
            "--max-execution-time",
            "maxExecutionTimeInSeconds",
            json!(s),
        );
    }
    work(args, &mut d)?;
    rollout(&args.rollout, &mut d)?;
    if !d.body.contains_key("queryCondition") {
        return Err(CliError::usage(
            "--query is required: a WHERE clause without WHERE (e.g. \"tags.site = 'north'\"), or * for every device",
        ));
    }
    JobRequest::from_json(&Value::Object(d.body))
        .map_err(|e| refused(&e, &d.given, file.as_deref()))
}

/// The job's work: a twin update or a method, from the flags over the file's.
fn work(args: &JobCreateArgs, d: &mut Draft) -> CliResult {
    let twin_flags = args.tags.is_some() || args.desired.is_some() || args.etag.is_some();
    let method_flags =
        args.payload.is_some() || args.response_timeout.is_some() || args.connect_timeout.is_some();
    let file_type = d
        .body
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string);
    if twin_flags {
        if method_flags {
            return Err(CliError::usage(
                "--payload, --response-timeout and --connect-timeout are for a method job (--method), not with --tags, --desired or --etag",
            ));
        }
        d.body.insert("type".into(), json!("scheduleUpdateTwin"));
        d.body.remove("cloudToDeviceMethod");
        let mut update = take_object(&mut d.body, "updateTwin");
        if let Some(t) = &args.tags {
            update.insert("tags".into(), json_object_arg("--tags", t)?);
            d.given.push("--tags");
        }
        if let Some(t) = &args.desired {
            let mut properties = take_object(&mut update, "properties");
            properties.insert("desired".into(), json_object_arg("--desired", t)?);
            put_object(&mut update, "properties", properties);
            d.given.push("--desired");
        }
        if let Some(e) = &args.etag {
            update.insert("etag".into(), json!(e));
            d.given.push("--etag");
        }
        d.body.insert("updateTwin".into(), Value::Object(update));
        return Ok(());
    }
    let method_job = args.method.is_some()
        || file_type.as_deref() == Some("scheduleDeviceMethod")
        || (file_type.is_none() && d.body.contains_key("cloudToDeviceMethod"));
    if args.method.is_none() && method_flags && !method_job {
        return Err(CliError::usage(
            "--payload, --response-timeout and --connect-timeout need --method NAME",
        ));
    }
    if method_job {
        d.body.insert("type".into(), json!("scheduleDeviceMethod"));
        if args.method.is_some() {
            d.body.remove("updateTwin");
        }
        let mut method = take_object(&mut d.body, "cloudToDeviceMethod");
        if let Some(name) = &args.method {
            method.insert("methodName".into(), json!(name));
            d.given.push("--method");
        }
        if let Some(p) = &args.payload {
            method.insert("payload".into(), json_arg("--payload", p)?);
            d.given.push("--payload");
        }
        if let Some(s) = args.response_timeout {
            method.insert("responseTimeoutInSeconds".into(), json!(s));
            d.given.push("--response-timeout");
        }
        if let Some(s) = args.connect_timeout {
            method.insert("connectTimeoutInSeconds".into(), json!(s));
            d.given.push("--connect-timeout");
        }
        d.body
            .insert("cloudToDeviceMethod".into(), Value::Object(method));
        return Ok(());
    }
    if !d.body.contains_key("type") && !d.body.contains_key("updateTwin") {
        return Err(CliError::usage(
            "what should the job do? Give --tags and/or --desired for a twin update, --method NAME for a direct method, or --file with the request",
        ));
    }
    if !d.body.contains_key("type") {
        d.body.insert("type".into(), json!("scheduleUpdateTwin"));
    }
    Ok(())
}

/// An RFC 3339 time with a numeric offset (`2026-06-01T04:00:00+02:00`) in UTC, as the hub
/// takes it (`2026-06-01T02:00:00.000Z`); any other text is left for the validation to judge.
pub fn utc(text: &str) -> String {
    let t = text.trim();
    let Some(split) = t.len().checked_sub(6).filter(|i| t.is_char_boundary(*i)) else {
        return t.to_string();
    };
    let (base, offset) = t.split_at(split);
    let b = offset.as_bytes();
    let sign = match b.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return t.to_string(),
    };
    let two = |s: &str| {
        (s.len() == 2 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let (Some(h), Some(m), Some(b':')) = (
        offset.get(1..3).and_then(two),
        offset.get(4..6).and_then(two),
        b.get(3),
    ) else {
        return t.to_string();
    };
    match base.parse::<Timestamp>() {
        Ok(local) if h <= 23 && m <= 59 => {
            let ticks = sign * (h * 60 + m) * 60 * 10_000_000;
            Timestamp::from_ticks(local.ticks() - ticks).to_string()
        }
        _ => t.to_string(),
    }
}

/// Parses a `--window`: `DAYS HH:MM MINUTES` or five cron fields and `MINUTES`.
pub fn window(spec: &str) -> CliResult<Value> {
    let bad = |why: &str| {
        CliError::usage(format!(
            "--window {spec:?}: {why}; expected 'DAYS HH:MM MINUTES' (e.g. 'sat,sun 02:00 180') or five cron fields and the minutes (e.g. '30 1 * * 1-5 60')"
        ))
    };
    let tokens: Vec<&str> = spec.split_whitespace().collect();
    let Some((last, head)) = tokens.split_last() else {
        return Err(bad("it is empty"));
    };
    let minutes = duration_minutes(last).ok_or_else(|| bad("the last part is not a duration"))?;
    match head {
        [days, start] => {
            let days: Vec<String> = match days.to_ascii_lowercase().as_str() {
                "daily" | "*" | "every" => ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .map(String::from)
                    .to_vec(),
                "weekdays" => ["mon", "tue", "wed", "thu", "fri"]
                    .map(String::from)
                    .to_vec(),
                "weekends" => ["sat", "sun"].map(String::from).to_vec(),
                list => list.split(',').map(str::to_string).collect(),
            };
            Ok(json!({"daysOfWeek": days, "startTime": start, "durationMinutes": minutes}))
        }
        cron if cron.len() == 5 => Ok(json!({"cron": cron.join(" "), "durationMinutes": minutes})),
        _ => Err(bad("wrong number of parts")),
    }
}

/// `180`, `180m` or `3h`, in minutes.
fn duration_minutes(text: &str) -> Option<u64> {
    if let Some(h) = text.strip_suffix('h') {
        return h.parse::<u64>().ok().and_then(|h| h.checked_mul(60));
    }
    text.strip_suffix('m').unwrap_or(text).parse().ok()
}

/// The rollout-policy flags over the file's `rolloutPolicy`.
fn rollout(r: &RolloutArgs, d: &mut Draft) -> CliResult {
    let mut given = Vec::new();
    let mut policy = match d.body.remove("rolloutPolicy") {
        Some(Value::Object(m)) => m,
        Some(Value::Null) | None => Map::new(),
        Some(other) => {
            return Err(CliError::usage(format!(
                "rolloutPolicy must be a JSON object, got {}",
                kind(&other)
            )))
        }
    };
    let had = !policy.is_empty();
    for (flag, v) in [
        ("--ramp-factor", r.ramp_factor),
        ("--abort-failure-percent", r.abort_failure_percent),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(CliError::usage(format!("{flag} must be a finite number")));
        }
    }
    let mut rate = take_object(&mut policy, "rate");
    let mut set_rate = |name: &str, flag: &'static str, v: Option<Value>| {
        if let Some(v) = v {
            rate.insert(name.into(), v);
            given.push(flag);
        }
    };
    set_rate(
        "maxPerMinute",
        "--max-per-minute",
        r.max_per_minute.map(|v| json!(v)),
    );
    set_rate(
        "baseRatePerMinute",
        "--ramp-base",
        r.ramp_base.map(|v| json!(v)),
    );
    set_rate(
        "incrementFactor",
        "--ramp-factor",
        r.ramp_factor.map(|v| json!(v)),
    );
    let criteria = match (r.ramp_every_succeeded, r.ramp_every_notified) {
        (Some(n), _) => Some((
            json!({ "numberOfSucceededDevices": n }),
            "--ramp-every-succeeded",
        )),
        (None, Some(n)) => Some((
            json!({ "numberOfNotifiedDevices": n }),
            "--ramp-every-notified",
        )),
        (None, None) => None,
    };
    if let Some((c, flag)) = criteria {
        rate.insert("rateIncreaseCriteria".into(), c);
        given.push(flag);
    }
    put_object(&mut policy, "rate", rate);
    if let Some(s) = r.timeout {
        let mut timeout = take_object(&mut policy, "timeout");
        timeout.insert("inProgressTimeoutSeconds".into(), json!(s));
        put_object(&mut policy, "timeout", timeout);
        given.push("--timeout");
    }
    let mut retries = take_object(&mut policy, "retries");
    if let Some(n) = r.retries {
        retries.insert("failed".into(), json!(n));
        given.push("--retries");
    }
    if let Some(n) = r.retries_timed_out {
        retries.insert("timedOut".into(), json!(n));
        given.push("--retries-timed-out");
    }
    put_object(&mut policy, "retries", retries);
    abort(r, &mut policy, &mut given)?;
    if !r.window.is_empty() {
        let windows = r
            .window
            .iter()
            .map(|w| window(w))
            .collect::<CliResult<Vec<_>>>()?;
        policy.insert("maintenanceWindows".into(), Value::Array(windows));
        given.push("--window");
    }
    let mut text = |name: &str, flag: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            policy.insert(name.into(), json!(v));
            given.push(flag);
        }
    };
    text("timeZonePath", "--timezone-path", &r.timezone_path);
    text("gate", "--gate", &r.gate);
    text("successCondition", "--success", &r.success);
    if let Some(s) = r.success_timeout {
        policy.insert("successTimeoutSeconds".into(), json!(s));
        given.push("--success-timeout");
    }
    if let Some(n) = r.canary {
        policy.insert("pauseAfterDevices".into(), json!(n));
        given.push("--canary");
    }
    if had || !given.is_empty() {
        d.body.insert("rolloutPolicy".into(), Value::Object(policy));
    }
    d.given.extend(given);
    Ok(())
}

/// `--abort-failure-percent`, `--abort-min-devices`, `--abort-failure-type`: one criterion,
/// replacing the file's (or changing the file's only one).
fn abort(
    r: &RolloutArgs,
    policy: &mut Map<String, Value>,
    given: &mut Vec<&'static str>,
) -> CliResult {
    if r.abort_failure_percent.is_none()
        && r.abort_min_devices.is_none()
        && r.abort_failure_type.is_none()
    {
        return Ok(());
    }
    let mut abort = take_object(policy, "abort");
    let existing = match abort.get_mut("criteria") {
        Some(Value::Array(list)) if list.len() == 1 => list.pop(),
        _ => None,
    };
    let mut criterion = match (existing, r.abort_failure_percent) {
        (Some(Value::Object(c)), _) => c,
        (_, Some(_)) => {
            let mut c = Map::new();
            c.insert("failureType".into(), json!("any"));
            c.insert("minFinishedDevices".into(), json!(1));
            c
        }
        _ => {
            return Err(CliError::usage(
                "--abort-min-devices and --abort-failure-type need --abort-failure-percent",
            ))
        }
    };
    if let Some(p) = r.abort_failure_percent {
        criterion.insert("thresholdPercentage".into(), json!(p));
        given.push("--abort-failure-percent");
    }
    if let Some(n) = r.abort_min_devices {
        criterion.insert("minFinishedDevices".into(), json!(n));
        given.push("--abort-min-devices");
    }
    if let Some(t) = r.abort_failure_type {
        criterion.insert("failureType".into(), json!(t.as_str()));
    }
    abort.insert("criteria".into(), json!([criterion]));
    put_object(policy, "abort", abort);
    Ok(())
}
