//! The serialized form of a [`Rollout`], so a job can persist its plan and go on after a
//! restart with the rate, the windows, the timers and every device where they were.
//!
//! Device records (8 bytes each) and queues (4 bytes per entry) are packed little-endian and
//! base64-encoded: a million devices take about 11 MB of JSON. The policy is kept in its JSON
//! form and compiled again; zones are kept by name and looked up again.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::device::{Slot, STATE_COUNT};
use super::{rate, Change, Progress, Rollout, RolloutPolicy, Timer};
use crate::clock::Timestamp;
use std::cmp::Reverse;

/// The format version written; restores refuse any other.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Snapshot {
    format: u32,
    policy: RolloutPolicy,
    deadline: Option<Timestamp>,
    now: Timestamp,
    devices: String,
    zones: Vec<String>,
    ready: String,
    retry: String,
    buckets: Vec<(Timestamp, String)>,
    timers: Vec<Timer>,
    rate_spent: Vec<(Timestamp, u32)>,
    progress: Progress,
    changes: Vec<Change>,
}

fn pack_u32<'a>(v: impl ExactSizeIterator<Item = &'a u32>) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for i in v {
        bytes.extend_from_slice(&i.to_le_bytes());
    }
    STANDARD.encode(bytes)
}

fn unpack_u32(s: &str, len: usize) -> Result<Vec<u32>, String> {
    let bytes = STANDARD.decode(s).map_err(|e| e.to_string())?;
    if bytes.len() % 4 != 0 {
        return Err("a packed queue is not a whole number of entries".into());
    }
    let v: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if v.iter().any(|i| *i as usize >= len) {
        return Err("a queue names a device that does not exist".into());
    }
    Ok(v)
}

impl Serialize for Rollout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // a job writes its plan often: packed in one pass into a buffer of the right size
        let mut devices = Vec::with_capacity(self.slots.len() * 8);
        for d in &self.slots {
            devices.extend_from_slice(&d.to_bytes());
        }
        Snapshot {
            format: FORMAT,
            policy: self.policy.clone(),
            deadline: self.deadline,
            now: self.now,
            devices: STANDARD.encode(devices),
            zones: self.zones.names().to_vec(),
            ready: pack_u32(self.ready.iter()),
            retry: pack_u32(self.retry.iter()),
            buckets: self
                .buckets
                .iter()
                .map(|(t, v)| (*t, pack_u32(v.iter())))
                .collect(),
            timers: self.timers.iter().map(|Reverse(t)| *t).collect(),
            rate_spent: self.limiter.entries().collect(),
            progress: self.progress.clone(),
            changes: self.changes.iter().copied().collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rollout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let snap = Snapshot::deserialize(d)?;
        restore(snap).map_err(serde::de::Error::custom)
    }
}

fn restore(s: Snapshot) -> Result<Rollout, String> {
    if s.format != FORMAT {
        return Err(format!("rollout state format {} is not {FORMAT}", s.format));
    }
    let mut r = Rollout::new(s.policy, s.deadline, s.now).map_err(|e| e.to_string())?;
    let bytes = STANDARD.decode(&s.devices).map_err(|e| e.to_string())?;
    if bytes.len() % 8 != 0 {
        return Err("the device records are not a whole number of records".into());
    }
    if s.zones.is_empty() || s.zones.len() > usize::from(u16::MAX) {
        return Err("the zone table is empty or too long".into());
    }
    let slots: Vec<Slot> = bytes
        .chunks_exact(8)
        .map(|c| Slot::from_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect::<Option<_>>()
        .ok_or("a device record is invalid")?;
    if slots.iter().any(|d| usize::from(d.zone) >= s.zones.len()) {
        return Err("a device names a zone that does not exist".into());
    }
    let n = slots.len();
    if u32::try_from(n).is_err() {
        return Err("too many devices".into());
    }
    let mut counts = [0u64; STATE_COUNT];
    for d in &slots {
        counts[d.state as usize] += 1;
    }
    r.retrying = slots
        .iter()
        .filter(|d| super::retry_wait(d.state, d.attempt))
        .count() as u64;
    r.utc_fallback = slots
        .iter()
        .filter(|d| d.flags & super::device::F_UTC_FALLBACK != 0)
        .count() as u64;
    r.counts = counts;
    r.slots = slots;
    r.zones = super::zones::Zones::from_names(s.zones);
    r.ready = VecDeque::from(unpack_u32(&s.ready, n)?);
    r.retry = VecDeque::from(unpack_u32(&s.retry, n)?);
    let mut buckets = BTreeMap::new();
    for (t, packed) in s.buckets {
        buckets.insert(t, unpack_u32(&packed, n)?);
    }
    r.buckets = buckets;
    if s.timers.iter().any(|t| t.device as usize >= n)
        || s.changes.iter().any(|c| c.device.slot() >= n)
    {
        return Err("a timer or change names a device that does not exist".into());
    }
    r.timers = s.timers.into_iter().map(Reverse).collect::<BinaryHeap<_>>();
    r.limiter = rate::Limiter::from_entries(s.rate_spent);
    r.progress = s.progress;
    r.changes = s.changes.into();
    Ok(r)
}
