//! Lookups prepared for scans: member keys compiled once and tried first where the previous
//! document had them, raw (unvalidated) scalar access, and touching a document ahead of use.
//!
//! A query reads the same paths in a million documents that mostly share one shape. A
//! [`Probe`] keeps its key's length and first word ready and remembers at which member index
//! the key was last found; the next lookup checks that one record first and falls back to the
//! normal search when the guess is wrong. The guess is only ever a starting point, verified
//! against the key, so results never depend on it.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::layout::{
    first_word, key_eq, rec_at, u32_at, Rec, LINEAR_MAX, REC, T_ARRAY, T_FALSE, T_FLOAT, T_INLINE,
    T_INT, T_NULL, T_OBJECT, T_STR, T_TRUE,
};
use super::{Doc, NodeRef};

/// A member key prepared for lookups in many documents of a similar shape.
pub(crate) struct Probe {
    key: Box<str>,
    /// The key's first 8 bytes as a little-endian word.
    head: u64,
    /// The member index where the key was last found.
    hint: AtomicU32,
}

impl Probe {
    /// Prepares `key`.
    pub(crate) fn new(key: &str) -> Probe {
        Probe {
            key: key.into(),
            head: first_word(key.as_bytes()),
            hint: AtomicU32::new(0),
        }
    }
}

impl Probe {
    /// Whether the key is stored at `at`.
    #[inline(always)]
    fn key_at(&self, buf: &[u8], at: usize) -> bool {
        let key = self.key.as_bytes();
        let len = key.len();
        // A short key is often the last thing in its document, so read the word that ends
        // where the key ends: its top `len` bytes are the key.
        let word = |from: usize| {
            buf.get(from..)
                .and_then(<[u8]>::first_chunk::<8>)
                .map(|w| u64::from_le_bytes(*w))
        };
        if len <= 8 {
            match (at + len).checked_sub(8).and_then(word) {
                Some(w) => w.checked_shr(64 - 8 * len as u32).unwrap_or(0) == self.head,
                None => buf.get(at..at + len) == Some(key),
            }
        } else {
            word(at) == Some(self.head) && buf.get(at + 8..at + len) == key.get(8..)
        }
    }
}

impl Clone for Probe {
    fn clone(&self) -> Probe {
        Probe {
            key: self.key.clone(),
            head: self.head,
            hint: AtomicU32::new(self.hint.load(Relaxed)),
        }
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Probe({:?})", self.key)
    }
}

impl PartialEq for Probe {
    fn eq(&self, other: &Probe) -> bool {
        self.key == other.key
    }
}

impl Eq for Probe {}

impl std::hash::Hash for Probe {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.key.hash(h)
    }
}

/// A scalar as stored, strings as bytes without UTF-8 validation (every document is built
/// from `&str`, so the bytes are valid UTF-8 and compare like the strings they hold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Raw<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a [u8]),
    Array,
    Object,
}

/// The bits of a little-endian word that hold the first `len` bytes.
#[inline(always)]
fn word_mask(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    }
}

/// A string constant prepared for equality tests against stored strings.
#[derive(Debug, Clone)]
pub(crate) struct StrConst {
    bytes: Box<[u8]>,
    /// The first 8 bytes as a little-endian word (all of a string stored inline).
    word: u64,
}

impl StrConst {
    pub(crate) fn new(s: &str) -> StrConst {
        StrConst {
            bytes: s.as_bytes().into(),
            word: first_word(s.as_bytes()),
        }
    }
}

/// The 16 bytes of the record at `at`.
#[inline(always)]
fn rec_bytes(buf: &[u8], at: usize) -> Option<&[u8; REC]> {
    buf.get(at..)?.first_chunk::<REC>()
}

#[inline(always)]
fn le32(b: &[u8; REC], at: usize) -> u32 {
    match b.get(at..).and_then(<[u8]>::first_chunk::<4>) {
        Some(w) => u32::from_le_bytes(*w),
        None => 0,
    }
}

/// The index of member `key` among the `n` records of the object block at `block`.
#[inline(always)]
pub(super) fn find_member(
    buf: &[u8],
    block: usize,
    n: usize,
    key: &[u8],
    head: u64,
) -> Option<usize> {
    if n <= LINEAR_MAX {
        // Small objects: compare lengths first, so most members are rejected without
        // reading their keys, then the first 8 bytes as one word.
        let recs = buf.get(block..block + n * REC)?;
        let want = key.len() as u32;
        for (i, c) in recs.chunks_exact(REC).enumerate() {
            let Some(c) = c.first_chunk::<8>() else {
                break;
            };
            if u32::from_le_bytes([c[0], c[1], c[2], c[3]]) >> 8 != want {
                continue;
            }
            let off = u32::from_le_bytes([c[4], c[5], c[6], c[7]]) as usize;
            if key_eq(buf, off, key, head) {
                return Some(i);
            }
        }
        None
    } else {
        let key_bytes = |c: &Rec| {
            buf.get(c.key_off as usize..c.key_off as usize + c.key_len as usize)
                .unwrap_or_default()
        };
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let c = rec_at(buf, block + mid * REC);
            match key_bytes(&c).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

/// Whether the record at `at` has key `key` (whose first word is `head`).
#[inline(always)]
fn rec_has_key(buf: &[u8], at: usize, key: &[u8], head: u64) -> bool {
    let Some(c) = buf.get(at..).and_then(<[u8]>::first_chunk::<8>) else {
        return false;
    };
    u32::from_le_bytes([c[0], c[1], c[2], c[3]]) >> 8 == key.len() as u32
        && key_eq(
            buf,
            u32::from_le_bytes([c[4], c[5], c[6], c[7]]) as usize,
            key,
            head,
        )
}

impl<'a> NodeRef<'a> {
    /// The member `probe` of this object, trying the probe's remembered index first.
    #[inline]
    pub(crate) fn get_probe(&self, probe: &Probe) -> Option<NodeRef<'a>> {
        let r = self.rec();
        if r.tag != T_OBJECT {
            return None;
        }
        let (block, n) = (r.lo() as usize, r.hi() as usize);
        let key = probe.key.as_bytes();
        let guess = probe.hint.load(Relaxed) as usize;
        let i = if guess < n && rec_has_key(self.buf, block + guess * REC, key, probe.head) {
            guess
        } else {
            let i = find_member(self.buf, block, n, key, probe.head)?;
            probe.hint.store(i as u32, Relaxed);
            i
        };
        let first_ord = u32_at(self.buf, block + n * REC);
        Some(self.child(block, first_ord, i))
    }

    /// The node's value as stored; strings as unvalidated bytes.
    #[inline]
    pub(crate) fn raw(&self) -> Raw<'a> {
        let r = self.rec();
        let bytes = |off: usize, len: usize| self.buf.get(off..off + len).unwrap_or_default();
        match r.tag {
            T_NULL => Raw::Null,
            T_FALSE => Raw::Bool(false),
            T_TRUE => Raw::Bool(true),
            T_INT => Raw::Int(r.payload as i64),
            T_FLOAT => Raw::Float(f64::from_bits(r.payload)),
            T_STR => Raw::Str(bytes(r.lo() as usize, r.hi() as usize)),
            T_ARRAY => Raw::Array,
            T_OBJECT => Raw::Object,
            t => Raw::Str(bytes(self.off as usize + 8, usize::from(t - T_INLINE))),
        }
    }
}

/// The record offset of the node at the path `probes` below the record at `off`.
#[inline(always)]
fn walk(buf: &[u8], mut off: usize, probes: &[Probe]) -> Option<usize> {
    for p in probes {
        let r = rec_bytes(buf, off)?;
        if r[0] != T_OBJECT {
            return None;
        }
        let (block, n) = (le32(r, 8) as usize, le32(r, 12) as usize);
        let guess = p.hint.load(Relaxed) as usize;
        off = block + guess * REC;
        let hit = guess < n
            && match rec_bytes(buf, off) {
                Some(c) if le32(c, 0) >> 8 == p.key.len() as u32 => {
                    p.key_at(buf, le32(c, 4) as usize)
                }
                _ => false,
            };
        if !hit {
            let i = find_member(buf, block, n, p.key.as_bytes(), p.head)?;
            p.hint.store(i as u32, Relaxed);
            off = block + i * REC;
        }
    }
    Some(off)
}

impl Doc {
    /// The stored value at the path `probes`, strings as unvalidated bytes.
    #[inline]
    pub(crate) fn probe_raw(&self, probes: &[Probe]) -> Option<Raw<'_>> {
        let buf: &[u8] = &self.0;
        let off = walk(buf, 0, probes)?;
        let r = rec_bytes(buf, off)?;
        let bytes = |at: usize, len: usize| buf.get(at..at + len).unwrap_or_default();
        let payload = |r: &[u8; REC]| u64::from(le32(r, 8)) | (u64::from(le32(r, 12)) << 32);
        Some(match r[0] {
            T_NULL => Raw::Null,
            T_FALSE => Raw::Bool(false),
            T_TRUE => Raw::Bool(true),
            T_INT => Raw::Int(payload(r) as i64),
            T_FLOAT => Raw::Float(f64::from_bits(payload(r))),
            T_STR => Raw::Str(bytes(le32(r, 8) as usize, le32(r, 12) as usize)),
            T_ARRAY => Raw::Array,
            T_OBJECT => Raw::Object,
            t => Raw::Str(bytes(off + 8, usize::from(t - T_INLINE))),
        })
    }

    /// Whether the value at the path `probes` is the string `s`: `None` when the path is
    /// missing or the value is not a string.
    #[inline]
    pub(crate) fn probe_str_eq(&self, probes: &[Probe], s: &StrConst) -> Option<bool> {
        let buf: &[u8] = &self.0;
        let off = walk(buf, 0, probes)?;
        let r = rec_bytes(buf, off)?;
        let tag = r[0];
        if tag >= T_INLINE {
            // the string's bytes are the payload's first `tag - T_INLINE` bytes
            let len = usize::from(tag - T_INLINE);
            let payload = u64::from(le32(r, 8)) | (u64::from(le32(r, 12)) << 32);
            return Some(len == s.bytes.len() && (payload ^ s.word) & word_mask(len) == 0);
        }
        if tag != T_STR {
            return None;
        }
        let (at, len) = (le32(r, 8) as usize, le32(r, 12) as usize);
        Some(len == s.bytes.len() && buf.get(at..at + len) == Some(&s.bytes[..]))
    }

    /// The node at the path `probes` (one member per step).
    #[inline]
    pub(crate) fn probe_path(&self, probes: &[Probe]) -> Option<NodeRef<'_>> {
        let mut n = self.root();
        for p in probes {
            n = n.get_probe(p)?;
        }
        Some(n)
    }

    /// Loads the first `LINES` cache lines of the document (fewer when it is shorter) into
    /// cache, so a later lookup finds them there.
    ///
    /// The loads are independent of each other and of the document's contents, and their
    /// number is fixed, so the loop unrolls into straight-line code without a branch whose
    /// outcome depends on the document: the memory system fetches every line at once, and a
    /// document of an unusual length costs no misprediction. A short document has its last
    /// byte loaded again in place of the lines it lacks.
    #[inline]
    pub(crate) fn touch<const LINES: usize>(&self) {
        let buf: &[u8] = &self.0;
        let Some(last) = buf.len().checked_sub(1) else {
            return;
        };
        // A chain of rotations is not a reduction the compiler turns into vector code, so each
        // line costs a load and two arithmetic instructions.
        let mut acc = 0u8;
        for line in 0..LINES {
            acc = acc.rotate_left(1) ^ buf.get((line * 64).min(last)).copied().unwrap_or(0);
        }
        std::hint::black_box(acc);
    }
}
