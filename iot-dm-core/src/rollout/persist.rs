//! The serialized form of a [`Rollout`], so a job can persist its plan and go on after a
//! restart with the rate, the windows, the timers and every device where they were.
//!
//! Device records (8 bytes each) are packed as runs of equal records (a varint count, then the
//! record), and queues as runs of consecutive device indices (a varint first index and a varint
//! length), then base64-encoded. A job writes its plan with every round, so the common plans
//! must be small: a million devices without windows (all in one zone) take a few hundred bytes
//! whatever their progress, because the devices are handed out in order. The worst case (every
//! device unlike its neighbour) is 9 bytes a device. Format 1 (every record and queue entry
//! written out) is still read. The policy is kept in its JSON form and compiled again; zones
//! are kept by name and looked up again.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::device::{Slot, STATE_COUNT};
use super::{rate, Change, Progress, Rollout, RolloutPolicy, Timer};
use crate::binary::{put_varint, Reader};
use crate::clock::Timestamp;
use std::cmp::Reverse;

/// The format version written: run-length packed. Restores read it and format 1 (plain
/// packed), and refuse any other.
const FORMAT: u32 = 2;

/// The first format: every record and queue entry written out.
const FORMAT_PLAIN: u32 = 1;

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

/// Runs of consecutive indices: (first, length) as varints.
fn pack_u32<'a>(v: impl ExactSizeIterator<Item = &'a u32>) -> String {
    let mut bytes = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &i in v {
        run = match run {
            Some((first, len)) if u64::from(first) + u64::from(len) == u64::from(i) => {
                Some((first, len + 1))
            }
            Some((first, len)) => {
                put_varint(&mut bytes, u64::from(first));
                put_varint(&mut bytes, u64::from(len));
                Some((i, 1))
            }
            None => Some((i, 1)),
        };
    }
    if let Some((first, len)) = run {
        put_varint(&mut bytes, u64::from(first));
        put_varint(&mut bytes, u64::from(len));
    }
    STANDARD.encode(bytes)
}

/// The indices of a packed queue of `format`, each below `len`.
fn unpack_u32(s: &str, len: usize, format: u32) -> Result<Vec<u32>, String> {
    let bytes = STANDARD.decode(s).map_err(|e| e.to_string())?;
    let v: Vec<u32> = if format == FORMAT_PLAIN {
        if bytes.len() % 4 != 0 {
            return Err("a packed queue is not a whole number of entries".into());
        }
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        let mut v = Vec::new();
        let mut r = Reader::new(&bytes);
        while !r.is_empty() {
            let first = r.varint("queue run").map_err(|e| e.to_string())?;
            let n = r.varint("queue run").map_err(|e| e.to_string())?;
            if first.saturating_add(n) > len as u64 {
                return Err("a queue names a device that does not exist".into());
            }
            // bounded by `len` above: at most every device once per run
            v.extend((first..first + n).map(|i| i as u32));
            if v.len() > len {
                return Err("a queue is longer than the devices allow".into());
            }
        }
        v
    };
    if v.iter().any(|i| *i as usize >= len) {
        return Err("a queue names a device that does not exist".into());
    }
    Ok(v)
}

/// Runs of equal device records: a varint count, then the 8-byte record.
fn pack_slots(slots: &[Slot]) -> String {
    let mut bytes = Vec::new();
    let mut i = 0;
    while i < slots.len() {
        let record = slots[i];
        let n = slots[i..].iter().take_while(|d| **d == record).count();
        put_varint(&mut bytes, n as u64);
        bytes.extend_from_slice(&record.to_bytes());
        i += n;
    }
    STANDARD.encode(bytes)
}

/// The device records packed in `format`, at most `u32::MAX` of them.
fn unpack_slots(s: &str, format: u32) -> Result<Vec<Slot>, String> {
    let bytes = STANDARD.decode(s).map_err(|e| e.to_string())?;
    let record = |c: &[u8]| -> Result<Slot, String> {
        let b: [u8; 8] = c.try_into().map_err(|_| "a device record is cut short")?;
        Slot::from_bytes(b).ok_or_else(|| "a device record is invalid".to_string())
    };
    if format == FORMAT_PLAIN {
        if bytes.len() % 8 != 0 {
            return Err("the device records are not a whole number of records".into());
        }
        return bytes.chunks_exact(8).map(record).collect();
    }
    let mut slots = Vec::new();
    let mut r = Reader::new(&bytes);
    while !r.is_empty() {
        let n = r.varint("device run").map_err(|e| e.to_string())?;
        let d = record(r.take(8, "device record").map_err(|e| e.to_string())?)?;
        if n == 0 || slots.len() as u64 + n > u64::from(u32::MAX) {
            return Err("a run of device records is empty or too long".into());
        }
        slots.resize(slots.len() + n as usize, d);
    }
    Ok(slots)
}

impl Serialize for Rollout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Snapshot {
            format: FORMAT,
            policy: self.policy.clone(),
            deadline: self.deadline,
            now: self.now,
            devices: pack_slots(&self.slots),
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
    if s.format != FORMAT && s.format != FORMAT_PLAIN {
        return Err(format!(
            "rollout state format {} is not {FORMAT_PLAIN} or {FORMAT}",
            s.format
        ));
    }
    let mut r = Rollout::new(s.policy, s.deadline, s.now).map_err(|e| e.to_string())?;
    if s.zones.is_empty() || s.zones.len() > usize::from(u16::MAX) {
        return Err("the zone table is empty or too long".into());
    }
    let slots = unpack_slots(&s.devices, s.format)?;
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
    r.ready = VecDeque::from(unpack_u32(&s.ready, n, s.format)?);
    r.retry = VecDeque::from(unpack_u32(&s.retry, n, s.format)?);
    let mut buckets = BTreeMap::new();
    for (t, packed) in s.buckets {
        buckets.insert(t, unpack_u32(&packed, n, s.format)?);
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_util::plan;
    use super::*;

    /// The plan as format 1 wrote it.
    fn plain(r: &Rollout) -> serde_json::Value {
        let mut v = serde_json::to_value(r).unwrap();
        let mut devices = Vec::new();
        for d in &r.slots {
            devices.extend_from_slice(&d.to_bytes());
        }
        let queue = |q: &VecDeque<u32>| {
            STANDARD.encode(q.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>())
        };
        v["format"] = json!(FORMAT_PLAIN);
        v["devices"] = json!(STANDARD.encode(devices));
        v["ready"] = json!(queue(&r.ready));
        v["retry"] = json!(queue(&r.retry));
        v
    }

    #[test]
    fn a_plan_of_the_first_format_is_still_read() {
        let mut r = plan(json!({"rate": {"maxPerMinute": 2}}), 5);
        let t = r.now;
        let started = r.poll_start(t, 10);
        assert_eq!(started.len(), 2);
        let back: Rollout = serde_json::from_value(plain(&r)).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&r).unwrap()
        );
    }

    #[test]
    fn an_orderly_plan_stays_small_whatever_its_size() {
        let mut r = plan(json!({}), 100_000);
        let t = r.now;
        for s in r.poll_start(t, 30_000) {
            r.on_outcome(s.device, s.attempt, super::super::Outcome::Succeeded, t)
                .unwrap();
        }
        r.poll_start(t, 1_000);
        // the caller records the changes each round
        while r.poll_change().is_some() {}
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.len() < 2_000, "{} bytes: {text:.300}", text.len());
        let back: Rollout = serde_json::from_str(&text).unwrap();
        assert_eq!(back.stats(), r.stats());
    }

    #[test]
    fn runs_round_trip_and_damage_is_refused() {
        let slots: Vec<Slot> = (0..20u16)
            .map(|i| Slot {
                zone: i / 3,
                ..Slot::from_bytes([0; 8]).unwrap()
            })
            .collect();
        assert_eq!(unpack_slots(&pack_slots(&slots), FORMAT).unwrap(), slots);
        let q: Vec<u32> = vec![1, 2, 3, 7, 9, 10, 4];
        assert_eq!(unpack_u32(&pack_u32(q.iter()), 11, FORMAT).unwrap(), q);
        assert!(unpack_u32(&pack_u32(q.iter()), 10, FORMAT).is_err());
        let mut run = Vec::new();
        put_varint(&mut run, 0);
        run.extend_from_slice(&[0; 8]);
        assert!(unpack_slots(&STANDARD.encode(run), FORMAT).is_err());
        assert!(unpack_slots(&STANDARD.encode([1, 0, 0]), FORMAT).is_err());
    }
}
