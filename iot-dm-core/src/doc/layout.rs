//! The byte layout of a [`Doc`](super::Doc): one buffer holding every node, key, string and
//! (optionally) the per-node metadata.
//!
//! All integers are little-endian. The layout is also a storage format ([`Doc::as_bytes`],
//! checked on the way back in by `check`): a change to it needs a new version of every record
//! format that embeds documents.
//!
//! [`Doc::as_bytes`]: super::Doc::as_bytes
//!
//! ```text
//! [0, 16)          the root's node record (an object)
//! [16, 20)         offset of the metadata region, 0 when the document has none
//! [20, 24)         number of nodes, root included
//! [24, ..)         blocks, the root's first, then depth-first
//! [meta_off, ..)   the metadata region
//! ```
//!
//! A *block* holds the children of one non-empty container, so a lookup reads the records it
//! compares and the keys it compares them with from a few adjacent cache lines:
//!
//! ```text
//! [n records of 16 bytes][ordinal of the first child: u32][the children's keys][their strings]
//! ```
//!
//! A record is `[tag: u8][key length: u24][key offset: u32][payload: 8 bytes]`. The payload is
//! the `i64` or the `f64` bits of a number, `(offset: u32, length: u32)` of a string, `(block
//! offset: u32, children: u32)` of a container, or the bytes of a string of at most 8 bytes,
//! stored inline (its length is in the tag). Array elements have no key (length 0).
//!
//! Every node has an *ordinal*: the root is 0 and the children of a block are numbered
//! consecutively from the block's first ordinal. The metadata region maps ordinals to [`Meta`]
//! through a table of the distinct values (a document usually has a handful, since a patch
//! stamps every node it touches with the same one):
//!
//! ```text
//! [distinct values: u32][index width in bytes (0, 1, 2 or 4): u32][values: 16 bytes each]
//! [one index per ordinal]
//! ```
//!
//! Width 0 (no index) means every node has the one value.
//!
//! A value is `[last updated, 100-ns ticks: i64][version: u64]`.

use crate::clock::Timestamp;

use super::Meta;

/// Size of a node record.
pub(super) const REC: usize = 16;
/// Size of the header, which starts with the root record.
pub(super) const HEADER: usize = 24;
/// Offset of the metadata region's offset in the header.
pub(super) const META_OFF: usize = 16;
/// Offset of the node count in the header.
pub(super) const NODE_COUNT: usize = 20;
/// Longest key a record can describe (24-bit length).
pub(super) const MAX_KEY: usize = (1 << 24) - 1;
/// Longest string stored inside its record.
pub(super) const MAX_INLINE: usize = 8;
/// Objects with at most this many members are searched linearly, comparing key lengths first;
/// larger ones by binary search.
pub(super) const LINEAR_MAX: usize = 12;

pub(super) const T_NULL: u8 = 0;
pub(super) const T_FALSE: u8 = 1;
pub(super) const T_TRUE: u8 = 2;
pub(super) const T_INT: u8 = 3;
pub(super) const T_FLOAT: u8 = 4;
pub(super) const T_STR: u8 = 5;
pub(super) const T_ARRAY: u8 = 6;
pub(super) const T_OBJECT: u8 = 7;
/// Tags `T_INLINE ..= T_INLINE + 8`: a string of `tag - T_INLINE` bytes inside the payload.
pub(super) const T_INLINE: u8 = 8;

/// Size of one metadata value.
const META_SIZE: usize = 16;

#[inline(always)]
pub(super) fn u32_at(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

#[inline(always)]
pub(super) fn u64_at(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// The first 8 bytes of `key` as a little-endian word, zero-padded.
#[inline(always)]
pub(super) fn first_word(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        // a byte loop: a variable-length copy would call memcpy
        None => key.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b)),
    }
}

/// Whether the `key.len()` bytes at `off` are `key`; `head` is [`first_word`] of `key`.
#[inline(always)]
pub(super) fn key_eq(buf: &[u8], off: usize, key: &[u8], head: u64) -> bool {
    let len = key.len();
    let Some(w) = buf.get(off..).and_then(<[u8]>::first_chunk::<8>) else {
        return buf.get(off..off + len) == Some(key);
    };
    let mask = if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    };
    if (u64::from_le_bytes(*w) ^ head) & mask != 0 {
        return false;
    }
    len <= 8 || buf.get(off + 8..off + len) == key.get(8..)
}

/// A decoded node record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rec {
    pub tag: u8,
    pub key_len: u32,
    pub key_off: u32,
    pub payload: u64,
}

impl Rec {
    /// The low half of the payload: an offset.
    #[inline(always)]
    pub fn lo(&self) -> u32 {
        self.payload as u32
    }

    /// The high half of the payload: a length.
    #[inline(always)]
    pub fn hi(&self) -> u32 {
        (self.payload >> 32) as u32
    }

    pub fn encode(&self) -> [u8; REC] {
        let mut out = [0u8; REC];
        let head = u32::from(self.tag) | (self.key_len << 8);
        out[0..4].copy_from_slice(&head.to_le_bytes());
        out[4..8].copy_from_slice(&self.key_off.to_le_bytes());
        out[8..16].copy_from_slice(&self.payload.to_le_bytes());
        out
    }
}

/// The payload of an `(offset, length)` pair.
pub(super) fn pair(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

/// The record at byte offset `off` (a null record when out of bounds, which a document built
/// by this module never asks for).
#[inline(always)]
pub(super) fn rec_at(buf: &[u8], off: usize) -> Rec {
    let Some(b) = buf
        .get(off..off + REC)
        .and_then(|b| <[u8; REC]>::try_from(b).ok())
    else {
        return Rec {
            tag: T_NULL,
            key_len: 0,
            key_off: 0,
            payload: 0,
        };
    };
    let head = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Rec {
        tag: head as u8,
        key_len: head >> 8,
        key_off: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        payload: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    }
}

/// Metadata of node `ord`, when the document carries metadata.
pub(super) fn meta_at(buf: &[u8], ord: u32) -> Option<Meta> {
    let region = u32_at(buf, META_OFF) as usize;
    if region == 0 {
        return None;
    }
    let count = u32_at(buf, region) as usize;
    let width = u32_at(buf, region + 4) as usize;
    let values = region + 8;
    let at = values + count * META_SIZE + ord as usize * width;
    let idx = match width {
        0 => 0,
        1 => usize::from(*buf.get(at)?),
        2 => usize::from(u16::from_le_bytes(buf.get(at..at + 2)?.try_into().ok()?)),
        _ => u32_at(buf, at) as usize,
    };
    let e = values + idx * META_SIZE;
    Some(Meta {
        last_updated: Timestamp::from_ticks(u64_at(buf, e) as i64),
        version: u64_at(buf, e + 8),
    })
}

/// Appends the metadata region for `metas` (one per ordinal) to `buf`.
pub(super) fn push_meta_region(buf: &mut Vec<u8>, metas: &[Meta]) {
    // Deduplicate: nodes touched by the same patch share one value.
    let mut table: Vec<Meta> = Vec::new();
    let mut index: std::collections::HashMap<(i64, u64), u32> = Default::default();
    let mut last: Option<(Meta, u32)> = None;
    let mut idx: Vec<u32> = Vec::with_capacity(metas.len());
    for m in metas {
        let i = match last {
            Some((lm, li)) if lm == *m => li,
            _ => {
                let key = (m.last_updated.ticks(), m.version);
                let i = if table.len() <= 16 {
                    match table.iter().position(|t| t == m) {
                        Some(i) => i as u32,
                        None => {
                            table.push(*m);
                            index.insert(key, (table.len() - 1) as u32);
                            (table.len() - 1) as u32
                        }
                    }
                } else {
                    *index.entry(key).or_insert_with(|| {
                        table.push(*m);
                        (table.len() - 1) as u32
                    })
                };
                last = Some((*m, i));
                i
            }
        };
        idx.push(i);
    }
    let width: usize = match table.len() {
        // one value for every node (a document written by one patch): no index at all
        0..=1 => 0,
        2..=256 => 1,
        257..=65_536 => 2,
        _ => 4,
    };
    buf.reserve(8 + table.len() * META_SIZE + idx.len() * width);
    buf.extend_from_slice(&(table.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(width as u32).to_le_bytes());
    for m in &table {
        buf.extend_from_slice(&m.last_updated.ticks().to_le_bytes());
        buf.extend_from_slice(&m.version.to_le_bytes());
    }
    for i in idx {
        match width {
            0 => {}
            1 => buf.push(i as u8),
            2 => buf.extend_from_slice(&(i as u16).to_le_bytes()),
            _ => buf.extend_from_slice(&i.to_le_bytes()),
        }
    }
}

/// Writes `value` as a little-endian `u32` at `at` (no-op when out of bounds).
pub(super) fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    if let Some(b) = buf.get_mut(at..at + 4) {
        b.copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes a record at `at` (no-op when out of bounds).
pub(super) fn put_rec(buf: &mut [u8], at: usize, rec: &Rec) {
    if let Some(b) = buf.get_mut(at..at + REC) {
        b.copy_from_slice(&rec.encode());
    }
}
