//! The jobs wing's unit tests: records, their statistics, and recovery after a restart.

use serde_json::json;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::{DeviceJobStatus, JobRequest, JobResponse, JobStatus};
use iot_dm_core::rollout::{DeviceIndex, DeviceState, Rollout, RolloutPolicy};
use iot_dm_core::twin::Twin;

use super::records::{load, Job, Slot};
use super::scheduler::recover;
use crate::store::{MemoryStore, Store};

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

fn running_job(kind: &str, ids: &[&str]) -> Job {
    let body = match kind {
        "method" => json!({"jobId": "j", "type": "scheduleDeviceMethod", "queryCondition": "*",
                           "cloudToDeviceMethod": {"methodName": "m"}}),
        _ => json!({"jobId": "j", "type": "scheduleUpdateTwin", "queryCondition": "*",
                    "updateTwin": {"tags": {"a": 1}}}),
    };
    let request = JobRequest::from_json(&body).unwrap();
    let mut job = Job::new(JobResponse::queued(&request, T0));
    job.job.status = JobStatus::Running;
    let twins: Vec<Twin> = ids
        .iter()
        .map(|id| serde_json::from_value(json!({"deviceId": id})).unwrap())
        .collect();
    let mut plan = Rollout::new(RolloutPolicy::default(), None, T0).unwrap();
    plan.add_devices(&twins, T0).unwrap();
    job.plan = Some(plan);
    job.set_slots(ids.iter().map(|id| Slot::new(id, T0)).collect());
    job.counts.device_count = ids.len() as u64;
    job.counts.pending_count = ids.len() as u64;
    job
}

#[test]
fn per_device_bookkeeping_is_small() {
    // the slot, the planner's 8 bytes, and a short id on the heap
    let per_device = std::mem::size_of::<Slot>() + 8 + 16;
    assert!(per_device <= 200, "{per_device} bytes");
    assert!(
        std::mem::size_of::<Slot>() <= 56,
        "{}",
        std::mem::size_of::<Slot>()
    );
}

#[test]
fn a_record_is_written_as_devices_jobs_shows_it() {
    let mut job = running_job("method", &["a", "b"]);
    job.set_status(0, DeviceJobStatus::Running, T0);
    job.slots[0].start = Some(T0);
    job.slots[0].end = Some(T0 + std::time::Duration::from_millis(1500));
    job.slots[0].detail = Some(Box::new(super::records::Detail {
        response: Some(iot_dm_core::job::DeviceMethodResponse {
            status: 200,
            payload: json!({"ok": true}),
        }),
        error: Some(iot_dm_core::job::DeviceJobError {
            code: "X".into(),
            description: "why".into(),
        }),
    }));
    for i in 0..2 {
        let owned = job.record(i).unwrap();
        let mut bytes = Vec::new();
        job.record_ref(i).unwrap().encode(&mut bytes);
        let key = super::records::device_key("j", &job.slots[i].id);
        assert_eq!(super::records::decode_record(&key, &bytes).unwrap(), owned);
    }
}

#[test]
fn statuses_keep_the_statistics() {
    let mut job = running_job("twin", &["a", "b", "c"]);
    job.set_status(0, DeviceJobStatus::Running, T0);
    job.set_status(1, DeviceJobStatus::Running, T0);
    job.set_status(0, DeviceJobStatus::Completed, T0);
    job.set_status(2, DeviceJobStatus::Canceled, T0);
    let s = job.job.device_job_statistics.unwrap();
    assert_eq!(
        (
            s.device_count,
            s.pending_count,
            s.running_count,
            s.succeeded_count,
            s.canceled_count
        ),
        (3, 0, 1, 1, 1)
    );
}

#[tokio::test]
async fn records_survive_a_reload_with_their_counts() {
    let store = MemoryStore::new();
    let mut job = running_job("twin", &["a", "b"]);
    job.set_status(0, DeviceJobStatus::Completed, T0);
    let mut ops = Vec::new();
    job.take_ops(&mut ops).unwrap();
    assert_eq!(ops.len(), 3, "two device records and the job record");
    assert!(!job.dirty && job.slots.iter().all(|s| !s.dirty));
    let mut again = Vec::new();
    job.take_ops(&mut again).unwrap();
    assert!(again.is_empty(), "nothing changed, nothing written");
    store.commit(ops).await.unwrap();
    let book = load(&store).await.unwrap();
    let loaded = &book["j"];
    assert_eq!(loaded.job.status, JobStatus::Running);
    assert_eq!(loaded.slots.len(), 2);
    assert_eq!(&*loaded.slots[1].id, "b");
    assert_eq!(
        loaded.job.device_job_statistics,
        job.job.device_job_statistics
    );
    assert!(loaded.plan.is_some());
}

#[tokio::test]
async fn a_device_record_without_its_job_is_refused() {
    let store = MemoryStore::new();
    let job = running_job("twin", &["a"]);
    let record = serde_json::to_vec(&job.record(0).unwrap()).unwrap();
    store
        .commit(vec![crate::store::Op::put(
            crate::store::Table::Jobs,
            "j/a",
            record,
        )])
        .await
        .unwrap();
    let err = load(&store).await.unwrap_err();
    assert!(err.to_string().contains("not stored"), "{err}");
}

/// Starts device 0 in the plan and the records, as a round does.
fn start_first(job: &mut Job) {
    let plan = job.plan.as_mut().unwrap();
    let started = plan.poll_start(T0, 1);
    assert_eq!(started[0].device, DeviceIndex(0));
    job.set_status(0, DeviceJobStatus::Running, T0);
}

#[test]
fn an_interrupted_method_call_fails_and_a_twin_update_runs_again() {
    let mut method = running_job("method", &["a", "b"]);
    start_first(&mut method);
    recover(&mut method, T0);
    let plan = method.plan.as_ref().unwrap();
    assert_eq!(
        plan.device(DeviceIndex(0)).unwrap().state,
        DeviceState::Failed
    );
    let error = method.slots[0]
        .detail
        .as_ref()
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert_eq!(error.code, "Interrupted");
    assert!(method.rerun.is_empty());

    let mut twin = running_job("twin", &["a", "b"]);
    start_first(&mut twin);
    recover(&mut twin, T0);
    assert_eq!(twin.rerun, vec![0]);
    let plan = twin.plan.as_ref().unwrap();
    assert_eq!(
        plan.device(DeviceIndex(0)).unwrap().state,
        DeviceState::Running
    );
}

#[tokio::test]
async fn stored_jobs_read_back_through_the_store_trait() {
    // the loader pages through the jobs table
    let store = MemoryStore::new();
    let ids: Vec<String> = (0..2500).map(|i| format!("d{i:05}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut job = running_job("twin", &refs);
    let mut ops = Vec::new();
    job.take_ops(&mut ops).unwrap();
    store.commit(ops).await.unwrap();
    let book = load(&store as &dyn Store).await.unwrap();
    assert_eq!(book["j"].slots.len(), 2500);
    assert_eq!(book["j"].counts.pending_count, 2500);
}

#[test]
fn a_job_yields_to_devices_writing_their_twins() {
    use super::scheduler::pace_after;
    use std::time::Duration;
    let ms = Duration::from_millis;
    // a cheap round never waits
    assert_eq!(pace_after(ms(1), true, true), Duration::ZERO);
    // alone, a twin job runs flat out; method calls in flight are batched
    assert_eq!(pace_after(ms(30), false, false), Duration::ZERO);
    assert_eq!(pace_after(ms(10), false, true), ms(10));
    assert_eq!(pace_after(ms(30), false, true), ms(20));
    // beside devices' own traffic it pauses six times as long as it worked, up to a bound
    assert_eq!(pace_after(ms(10), true, false), ms(60));
    assert_eq!(pace_after(ms(100), true, true), ms(250));
}
