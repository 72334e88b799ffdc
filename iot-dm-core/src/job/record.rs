//! The stored form of a device-job record (`devices.jobs`): a small binary record, since a
//! job writes one for each of its devices when it starts and again as each one finishes.
//!
//! The store key holds the job and the device (`{jobId}/{deviceId}`), so the value holds the
//! rest: a tag byte ([`RECORD_TAG`]), the job type, the status, the four times, then the
//! method response (its status and its payload as JSON) and the error, each behind a
//! presence byte. A plain record is 37 bytes where its JSON took about 300. A value that
//! starts with `{` is the JSON record earlier versions wrote, and is read as such.
//!
//! ```
//! use iot_dm_core::clock::Timestamp;
//! use iot_dm_core::job::{decode_device_job, DeviceJobRecord, DeviceJobStatus, JobType};
//!
//! let t = Timestamp::from_unix_secs(1_700_000_000);
//! let mut bytes = Vec::new();
//! DeviceJobRecord {
//!     job_type: JobType::ScheduleUpdateTwin,
//!     status: DeviceJobStatus::Completed,
//!     start_time_utc: Some(t),
//!     end_time_utc: Some(t),
//!     created_date_time_utc: t,
//!     last_updated_date_time_utc: t,
//!     device_method_response: None,
//!     error: None,
//! }
//! .encode(&mut bytes);
//! let record = decode_device_job("j-1", "pump-7", &bytes)?;
//! assert_eq!(record.device_id, "pump-7");
//! assert_eq!(record.status, DeviceJobStatus::Completed);
//! # Ok::<(), iot_dm_core::binary::BinaryError>(())
//! ```

use super::{DeviceJob, DeviceJobError, DeviceJobOutcome, DeviceMethodResponse, JobType};
use crate::binary::{
    put_bytes, put_opt_time, put_str, put_time, put_u8, put_varint, BinaryError, Reader,
};
use crate::clock::Timestamp;
use crate::rollout::DeviceJobStatus;

/// The first byte of a binary device-job record.
pub const RECORD_TAG: u8 = 1;

/// A device-job record borrowed from where it is kept, for writing.
#[derive(Debug, Clone, Copy)]
pub struct DeviceJobRecord<'a> {
    /// The job's kind.
    pub job_type: JobType,
    /// Where the device stands.
    pub status: DeviceJobStatus,
    /// When the device was started (its latest attempt).
    pub start_time_utc: Option<Timestamp>,
    /// When the device finished.
    pub end_time_utc: Option<Timestamp>,
    /// When the record was made.
    pub created_date_time_utc: Timestamp,
    /// When the record last changed.
    pub last_updated_date_time_utc: Timestamp,
    /// The method's answer.
    pub device_method_response: Option<&'a DeviceMethodResponse>,
    /// Why it failed.
    pub error: Option<&'a DeviceJobError>,
}

fn status_code(s: DeviceJobStatus) -> u8 {
    match s {
        DeviceJobStatus::Pending => 0,
        DeviceJobStatus::Scheduled => 1,
        DeviceJobStatus::Running => 2,
        DeviceJobStatus::Completed => 3,
        DeviceJobStatus::Failed => 4,
        DeviceJobStatus::Canceled => 5,
    }
}

fn status_of(b: u8) -> Result<DeviceJobStatus, BinaryError> {
    Ok(match b {
        0 => DeviceJobStatus::Pending,
        1 => DeviceJobStatus::Scheduled,
        2 => DeviceJobStatus::Running,
        3 => DeviceJobStatus::Completed,
        4 => DeviceJobStatus::Failed,
        5 => DeviceJobStatus::Canceled,
        _ => {
            return Err(BinaryError::invalid(
                "status",
                format!("{b} is not a status"),
            ))
        }
    })
}

impl DeviceJobRecord<'_> {
    /// Appends the binary record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, RECORD_TAG);
        put_u8(
            out,
            match self.job_type {
                JobType::ScheduleUpdateTwin => 0,
                JobType::ScheduleDeviceMethod => 1,
            },
        );
        put_u8(out, status_code(self.status));
        put_opt_time(out, self.start_time_utc);
        put_opt_time(out, self.end_time_utc);
        put_time(out, self.created_date_time_utc);
        put_time(out, self.last_updated_date_time_utc);
        match self.device_method_response {
            Some(r) => {
                put_u8(out, 1);
                // a status is an i32: zigzag keeps negative ones short
                put_varint(out, ((r.status << 1) ^ (r.status >> 31)) as u32 as u64);
                put_bytes(out, r.payload.to_string().as_bytes());
            }
            None => put_u8(out, 0),
        }
        match self.error {
            Some(e) => {
                put_u8(out, 1);
                put_str(out, &e.code);
                put_str(out, &e.description);
            }
            None => put_u8(out, 0),
        }
    }
}

/// The record of `device_id` in `job_id` from its stored bytes: the binary record, or the JSON
/// one earlier versions wrote.
pub fn decode_device_job(
    job_id: &str,
    device_id: &str,
    bytes: &[u8],
) -> Result<DeviceJob, BinaryError> {
    if bytes.first() == Some(&b'{') {
        return serde_json::from_slice(bytes)
            .map_err(|e| BinaryError::invalid("device job", e.to_string()));
    }
    let mut r = Reader::new(bytes);
    let tag = r.u8("tag")?;
    if tag != RECORD_TAG {
        return Err(BinaryError::invalid(
            "tag",
            format!("{tag} is not {RECORD_TAG}"),
        ));
    }
    let job_type = match r.u8("jobType")? {
        0 => JobType::ScheduleUpdateTwin,
        1 => JobType::ScheduleDeviceMethod,
        b => {
            return Err(BinaryError::invalid(
                "jobType",
                format!("{b} is not a job type"),
            ))
        }
    };
    let status = status_of(r.u8("status")?)?;
    let start_time_utc = r.opt_time("startTimeUtc")?;
    let end_time_utc = r.opt_time("endTimeUtc")?;
    let created_date_time_utc = r.time("createdDateTimeUtc")?;
    let last_updated_date_time_utc = r.time("lastUpdatedDateTimeUtc")?;
    let device_method_response = if r.bool("deviceMethodResponse")? {
        let z = r.varint("deviceMethodResponse.status")?;
        let z = u32::try_from(z)
            .map_err(|_| BinaryError::invalid("deviceMethodResponse.status", "out of range"))?;
        let status = ((z >> 1) as i32) ^ -((z & 1) as i32);
        let payload = serde_json::from_slice(r.bytes("deviceMethodResponse.payload")?)
            .map_err(|e| BinaryError::invalid("deviceMethodResponse.payload", e.to_string()))?;
        Some(DeviceMethodResponse { status, payload })
    } else {
        None
    };
    let error = if r.bool("error")? {
        Some(DeviceJobError {
            code: r.str("error.code")?.to_string(),
            description: r.str("error.description")?.to_string(),
        })
    } else {
        None
    };
    r.finish("device job")?;
    Ok(DeviceJob {
        device_id: device_id.to_string(),
        job_id: job_id.to_string(),
        job_type,
        status,
        start_time_utc,
        end_time_utc,
        created_date_time_utc,
        last_updated_date_time_utc,
        outcome: DeviceJobOutcome {
            device_method_response,
        },
        error,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn record(
        status: DeviceJobStatus,
        response: Option<&DeviceMethodResponse>,
        error: Option<&DeviceJobError>,
    ) -> Vec<u8> {
        let t = Timestamp::from_unix_secs(1_700_000_000);
        let mut out = Vec::new();
        DeviceJobRecord {
            job_type: JobType::ScheduleDeviceMethod,
            status,
            start_time_utc: Some(t),
            end_time_utc: None,
            created_date_time_utc: t,
            last_updated_date_time_utc: t,
            device_method_response: response,
            error,
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn a_plain_record_is_small() {
        assert!(record(DeviceJobStatus::Pending, None, None).len() <= 40);
    }

    #[test]
    fn damage_is_refused_with_the_field() {
        let good = record(DeviceJobStatus::Running, None, None);
        for cut in 0..good.len() {
            assert!(decode_device_job("j", "d", &good[..cut]).is_err(), "{cut}");
        }
        let mut bad = good.clone();
        bad[2] = 9;
        let e = decode_device_job("j", "d", &bad).unwrap_err();
        assert!(e.to_string().contains("status"), "{e}");
        let mut long = good;
        long.push(0);
        assert!(decode_device_job("j", "d", &long).is_err());
    }

    #[test]
    fn the_json_of_earlier_versions_is_read() {
        let json = json!({"deviceId": "d", "jobId": "j", "jobType": "scheduleUpdateTwin",
            "status": "completed", "createdDateTimeUtc": "2024-01-01T00:00:00Z",
            "lastUpdatedDateTimeUtc": "2024-01-01T00:00:01Z",
            "outcome": {"deviceMethodResponse": null}});
        let r = decode_device_job("j", "d", json.to_string().as_bytes()).unwrap();
        assert_eq!(r.status, DeviceJobStatus::Completed);
        assert_eq!(r.job_type, JobType::ScheduleUpdateTwin);
    }

    proptest! {
        #[test]
        fn records_round_trip(
            status in 0u8..6,
            code in any::<i32>(),
            payload in "[a-z]{0,12}",
            err in proptest::option::of(("[A-Za-z]{0,10}", ".{0,20}")),
            with_response in any::<bool>(),
        ) {
            let status = status_of(status).unwrap();
            let response = DeviceMethodResponse { status: code, payload: json!({"p": payload}) };
            let error = err.map(|(code, description)| DeviceJobError { code, description });
            let bytes = record(status, with_response.then_some(&response), error.as_ref());
            let back = decode_device_job("j-1", "dev", &bytes).unwrap();
            prop_assert_eq!(back.status, status);
            prop_assert_eq!(back.outcome.device_method_response, with_response.then_some(response));
            prop_assert_eq!(back.error, error);
            prop_assert_eq!(back.job_id, "j-1");
        }
    }
}
