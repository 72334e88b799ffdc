//! A small, versionable binary encoding for storing twins and identities compactly.
//!
//! The encoding has no schema of its own: a writer appends fields in a fixed order with the
//! `put_*` functions, and a [`Reader`] takes them back in the same order. Unsigned integers
//! are LEB128 varints, timestamps and signed integers 8 little-endian bytes, strings and byte
//! strings a varint length and the bytes, optional values a presence byte first. A reader
//! never panics: truncated or malformed input gives a [`BinaryError`] naming the field.
//!
//! Types that store themselves this way ([`Twin`](crate::twin::Twin),
//! [`Doc`](crate::doc::Doc), [`DeviceLifecycle`](crate::lifecycle::DeviceLifecycle)) document
//! their field order; containers (such as a hub's device record) put a format version first.
//!
//! ```
//! use iot_dm_core::binary::{put_str, put_varint, Reader};
//! let mut out = Vec::new();
//! put_varint(&mut out, 300);
//! put_str(&mut out, "pump-1");
//! let mut r = Reader::new(&out);
//! assert_eq!(r.varint("count")?, 300);
//! assert_eq!(r.str("deviceId")?, "pump-1");
//! assert!(r.is_empty());
//! assert!(r.u8("next").is_err());
//! # Ok::<(), iot_dm_core::binary::BinaryError>(())
//! ```

use crate::clock::Timestamp;
use crate::doc::Doc;

/// Why binary input could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryError {
    /// The input ended inside a field.
    #[error("{field}: the input ends before the field does")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A field holds a value it may not hold.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field being read.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl BinaryError {
    /// An [`BinaryError::Invalid`] error.
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> BinaryError {
        BinaryError::Invalid {
            field,
            problem: problem.into(),
        }
    }
}

/// Appends one byte.
pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

/// Appends an unsigned LEB128 varint (1 byte below 128, at most 10).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends 8 little-endian bytes.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a length-prefixed UTF-8 string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends an optional string: a presence byte, then the string.
pub fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// Appends a timestamp (its ticks).
pub fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    put_i64(out, t.ticks());
}

/// Appends an optional timestamp: a presence byte, then the timestamp.
pub fn put_opt_time(out: &mut Vec<u8>, t: Option<Timestamp>) {
    match t {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put_time(out, t);
        }
    }
}

/// Appends a document's compact form ([`Doc::as_bytes`]); the shared empty document is
/// written as nothing, so it reads back shared.
pub fn put_doc(out: &mut Vec<u8>, doc: &Doc) {
    if doc.as_bytes() == Doc::empty().as_bytes() {
        put_varint(out, 0);
    } else {
        put_bytes(out, doc.as_bytes());
    }
}

/// Reads fields back in the order they were written. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Fails unless everything was read (`what` names the whole value).
    pub fn finish(&self, what: &'static str) -> Result<(), BinaryError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(BinaryError::invalid(
                what,
                format!("{} unexpected bytes after the end", self.buf.len()),
            ))
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], BinaryError> {
        if n > self.buf.len() {
            return Err(BinaryError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, BinaryError> {
        let (&b, tail) = self
            .buf
            .split_first()
            .ok_or(BinaryError::Truncated { field })?;
        self.buf = tail;
        Ok(b)
    }

    /// A presence byte or a boolean: 0 or 1.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, BinaryError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(BinaryError::invalid(
                field,
                format!("expected 0 or 1, found {b}"),
            )),
        }
    }

    /// An unsigned LEB128 varint.
    pub fn varint(&mut self, field: &'static str) -> Result<u64, BinaryError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(field)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(BinaryError::invalid(field, "varint exceeds 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BinaryError::invalid(field, "varint longer than 10 bytes"))
    }

    /// A varint that must fit a `usize` and be at most `limit`.
    pub fn len(&mut self, field: &'static str, limit: usize) -> Result<usize, BinaryError> {
        let n = self.varint(field)?;
        match usize::try_from(n) {
            Ok(n) if n <= limit => Ok(n),
            _ => Err(BinaryError::invalid(
                field,
                format!("length {n} exceeds the limit of {limit}"),
            )),
        }
    }

    /// 8 little-endian bytes.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, BinaryError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], BinaryError> {
        let n = self.varint(field)?;
        // a length past the end is a cut-off field (`take` says so)
        self.take(usize::try_from(n).unwrap_or(usize::MAX), field)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, field: &'static str) -> Result<&'a str, BinaryError> {
        let b = self.bytes(field)?;
        std::str::from_utf8(b).map_err(|_| BinaryError::invalid(field, "not valid UTF-8"))
    }

    /// An optional string.
    pub fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, BinaryError> {
        if self.bool(field)? {
            self.str(field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional string, owned.
    pub fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, BinaryError> {
        Ok(self.opt_str(field)?.map(str::to_string))
    }

    /// A document written by [`put_doc`], checked (see [`Doc::from_bytes`]).
    pub fn doc(&mut self, field: &'static str) -> Result<Doc, BinaryError> {
        let b = self.bytes(field)?;
        if b.is_empty() {
            return Ok(Doc::empty());
        }
        Doc::from_bytes(b).map_err(|e| BinaryError::invalid(field, e.to_string()))
    }

    /// A timestamp.
    pub fn time(&mut self, field: &'static str) -> Result<Timestamp, BinaryError> {
        self.i64(field).map(Timestamp::from_ticks)
    }

    /// An optional timestamp.
    pub fn opt_time(&mut self, field: &'static str) -> Result<Option<Timestamp>, BinaryError> {
        if self.bool(field)? {
            self.time(field).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_field_kind_round_trips() {
        let mut out = Vec::new();
        put_u8(&mut out, 7);
        put_varint(&mut out, u64::MAX);
        put_i64(&mut out, -5);
        put_bytes(&mut out, b"\x00\xff");
        put_opt_str(&mut out, None);
        put_opt_str(&mut out, Some("ü"));
        put_opt_time(&mut out, Some(Timestamp::from_ticks(42)));
        put_opt_time(&mut out, None);
        let mut r = Reader::new(&out);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.varint("b").unwrap(), u64::MAX);
        assert_eq!(r.i64("c").unwrap(), -5);
        assert_eq!(r.bytes("d").unwrap(), b"\x00\xff");
        assert_eq!(r.opt_str("e").unwrap(), None);
        assert_eq!(r.opt_str("f").unwrap(), Some("ü"));
        assert_eq!(r.opt_time("g").unwrap(), Some(Timestamp::from_ticks(42)));
        assert_eq!(r.opt_time("h").unwrap(), None);
        r.finish("all").unwrap();
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut r = Reader::new(&[0x80, 0x80]);
        assert_eq!(
            r.varint("count"),
            Err(BinaryError::Truncated { field: "count" })
        );
        let mut r = Reader::new(&[5, b'a']);
        assert_eq!(r.str("id"), Err(BinaryError::Truncated { field: "id" }));
        let mut r = Reader::new(&[2, 0xff, 0xfe]);
        assert!(matches!(
            r.str("id"),
            Err(BinaryError::Invalid { field: "id", .. })
        ));
        let mut r = Reader::new(&[2]);
        assert!(matches!(r.bool("flag"), Err(BinaryError::Invalid { .. })));
        let mut r = Reader::new(&[0xff; 11]);
        assert!(matches!(r.varint("v"), Err(BinaryError::Invalid { .. })));
        let mut r = Reader::new(&[10]);
        assert!(matches!(r.len("n", 5), Err(BinaryError::Invalid { .. })));
        assert!(Reader::new(&[1]).finish("x").is_err());
    }

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint("v").unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut r = Reader::new(&bytes);
            let _ = r.varint("a");
            let _ = r.opt_str("b");
            let _ = r.opt_time("c");
            let _ = r.bytes("d");
        }
    }
}
