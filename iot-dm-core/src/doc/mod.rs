//! A compact, immutable JSON document: the storage form of twin sections.
//!
//! A [`Doc`] keeps a whole JSON object in one reference-counted byte buffer: fixed-size node
//! records, with the members of every object sorted by key and stored next to their keys and
//! short strings, then (optionally) the per-node metadata. A lookup reads a few adjacent cache
//! lines of that one allocation, cloning is a reference-count increment, and a million 1 KB
//! twins need far less memory than the same documents as `serde_json::Value` trees (which
//! allocate per key and per map node).
//!
//! Documents never change in place: a merge patch ([`Doc::merge`]) builds a new document in one
//! pass over the old one and the patch, and each node can carry [`Meta`] (when it was last
//! updated, and at which version), which is how twins keep their `$metadata`.
//!
//! ```
//! use iot_dm_core::doc::{Doc, ValueRef};
//! use serde_json::json;
//! let doc = Doc::from_value(&json!({"location": {"region": "us-west"}, "floor": 3}))?;
//! assert_eq!(doc.get_path(&["location", "region"]).map(|n| n.value()), Some(ValueRef::Str("us-west")));
//! let patched = doc.merge(&json!({"floor": null, "owner": "ops"}))?;
//! assert_eq!(patched.to_value(), json!({"location": {"region": "us-west"}, "owner": "ops"}));
//! # Ok::<(), iot_dm_core::doc::DocError>(())
//! ```

mod build;
mod check;
mod layout;
mod probe;

pub(crate) use probe::{Probe, Raw, StrConst};

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::clock::Timestamp;
use build::{Builder, Src};
use layout::{
    first_word, meta_at, push_meta_region, put_rec, put_u32, rec_at, u32_at, Rec, HEADER, META_OFF,
    NODE_COUNT, REC, T_ARRAY, T_FALSE, T_FLOAT, T_INLINE, T_INT, T_NULL, T_OBJECT, T_STR, T_TRUE,
};

/// Why a value could not become a [`Doc`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// A document's root (or a merge patch) must be a JSON object.
    #[error("expected a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type that was found instead.
        found: &'static str,
    },
    /// The document is too large for the compact form (over 4 GiB of text or nodes).
    #[error("document exceeds the compact form's 4 GiB limit")]
    TooLarge,
    /// A key is longer than the compact form can store.
    #[error("a key of {len} bytes exceeds the compact form's key limit of {limit} bytes")]
    KeyTooLong {
        /// The key's length in UTF-8 bytes.
        len: usize,
        /// The longest key the compact form stores.
        limit: usize,
    },
    /// Bytes given to [`Doc::from_bytes`] are not a document's compact form.
    #[error("not a compact document: {problem}")]
    Malformed {
        /// What is wrong with the bytes.
        problem: &'static str,
    },
}

/// When a node was last written, and by which section version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Time of the last write that touched the node.
    pub last_updated: Timestamp,
    /// Section version of that write.
    pub version: u64,
}

/// How many cache lines of a document [`Doc::get_path`] loads ahead: all of a typical twin
/// section. A path lookup reads blocks that depend on each other (a member's record gives its
/// block's offset), so on a document that is not in cache each step would wait for the
/// previous one; loading the lines at once lets the memory system fetch them in parallel.
const WARM_LINES: usize = 16;

/// A compact, immutable JSON object. See the [module docs](self).
#[derive(Clone)]
pub struct Doc(Arc<[u8]>);

/// A borrowed node of a [`Doc`].
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    /// The whole document buffer.
    buf: &'a [u8],
    /// Byte offset of the node's record.
    off: u32,
    /// The node's ordinal (its index in the metadata).
    ord: u32,
}

/// A borrowed JSON value of a [`Doc`] node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or out of the `i64` range.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// An array node.
    Array(NodeRef<'a>),
    /// An object node.
    Object(NodeRef<'a>),
}

/// The JSON type name of a value, for error messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Default for Doc {
    fn default() -> Doc {
        Doc::empty()
    }
}

/// The empty object's buffer: a root record with no members and no metadata.
fn empty_buffer() -> Vec<u8> {
    let mut buf = vec![0u8; HEADER];
    put_rec(
        &mut buf,
        0,
        &Rec {
            tag: T_OBJECT,
            key_len: 0,
            key_off: 0,
            payload: 0,
        },
    );
    put_u32(&mut buf, NODE_COUNT, 1);
    buf
}

fn as_object(v: &Value) -> Result<&Map<String, Value>, DocError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(DocError::NotAnObject {
            found: json_type(other),
        }),
    }
}

impl Doc {
    /// The empty object `{}` (shared: creating one does not allocate).
    pub fn empty() -> Doc {
        static EMPTY: OnceLock<Doc> = OnceLock::new();
        EMPTY.get_or_init(|| Doc(Arc::from(empty_buffer()))).clone()
    }

    /// Builds a document from a JSON object.
    pub fn from_value(v: &Value) -> Result<Doc, DocError> {
        let map = as_object(v)?;
        Builder::build(Src::Json(map), None, false, 0)
    }

    /// Builds a document from a JSON object, stamping every node with `meta`.
    pub fn from_value_with_meta(v: &Value, meta: Meta) -> Result<Doc, DocError> {
        let map = as_object(v)?;
        Builder::build(Src::Json(map), Some(meta), true, 0)
    }

    /// Applies a JSON merge patch (RFC 7386: members add or replace, `null` deletes, objects
    /// merge recursively, arrays replace) and returns the new document. This document is not
    /// changed.
    pub fn merge(&self, patch: &Value) -> Result<Doc, DocError> {
        self.merge_inner(patch, None)
    }

    /// Like [`Doc::merge`], and stamps every node the patch touched (and every object on the
    /// way to it) with `meta`; untouched nodes keep their metadata.
    pub fn merge_with_meta(&self, patch: &Value, meta: Meta) -> Result<Doc, DocError> {
        self.merge_inner(patch, Some(meta))
    }

    fn merge_inner(&self, patch: &Value, meta: Option<Meta>) -> Result<Doc, DocError> {
        let map = as_object(patch)?;
        let has_meta = meta.is_some() || self.has_meta();
        Builder::build(
            Src::Merge(self.root(), map),
            meta,
            has_meta,
            self.0.len() + 64,
        )
    }

    /// A copy of this document whose node metadata comes from `lookup(path)`; a node for which
    /// it returns `None` inherits its parent's metadata (the root inherits `fallback`). Array
    /// elements always inherit the array's.
    pub fn with_meta(
        &self,
        fallback: Meta,
        mut lookup: impl FnMut(&[&str]) -> Option<Meta>,
    ) -> Doc {
        let nodes = u32_at(&self.0, NODE_COUNT) as usize;
        let mut meta = vec![fallback; nodes];
        let mut path: Vec<&str> = Vec::new();
        fn visit<'a>(
            n: NodeRef<'a>,
            parent: Meta,
            path: &mut Vec<&'a str>,
            meta: &mut [Meta],
            lookup: &mut dyn FnMut(&[&str]) -> Option<Meta>,
        ) {
            let m = lookup(path).unwrap_or(parent);
            if let Some(slot) = meta.get_mut(n.ord as usize) {
                *slot = m;
            }
            for (k, child) in n.members() {
                path.push(k);
                visit(child, m, path, meta, lookup);
                path.pop();
            }
            for child in n.elements() {
                // elements carry no metadata of their own
                let mut none = |_: &[&str]| None;
                let mut inner_path = Vec::new();
                visit(child, m, &mut inner_path, meta, &mut none);
            }
        }
        visit(self.root(), fallback, &mut path, &mut meta, &mut lookup);
        let body = match u32_at(&self.0, META_OFF) as usize {
            0 => self.0.len(),
            off => off,
        };
        let mut buf = Vec::with_capacity(body + 16 + 2 * nodes);
        buf.extend_from_slice(self.0.get(..body).unwrap_or_default());
        let off = buf.len() as u32;
        push_meta_region(&mut buf, &meta);
        put_u32(&mut buf, META_OFF, off);
        Doc(Arc::from(buf))
    }

    /// A copy of the document in an allocation of its own.
    pub(crate) fn copied(&self) -> Doc {
        Doc(Arc::from(&self.0[..]))
    }

    /// Whether `self` and `other` share one buffer.
    pub(crate) fn same_buffer(&self, other: &Doc) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether no other handle shares the buffer.
    pub(crate) fn is_unique(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    /// The document's compact form: the one buffer holding its nodes, keys, strings and
    /// metadata, which [`Doc::from_bytes`] reads back. Storing it skips re-parsing JSON on
    /// load; the layout is versioned with whatever stores it.
    ///
    /// ```
    /// use iot_dm_core::doc::{Doc, Meta};
    /// use serde_json::json;
    /// let doc = Doc::from_value_with_meta(&json!({"fan": {"speed": 3}}), Meta::default())?;
    /// let copy = Doc::from_bytes(doc.as_bytes())?;
    /// assert_eq!(copy, doc);
    /// assert_eq!(copy.get_path(&["fan"]).and_then(|n| n.meta()), Some(Meta::default()));
    /// assert!(Doc::from_bytes(&doc.as_bytes()[..10]).is_err());
    /// # Ok::<(), iot_dm_core::doc::DocError>(())
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads a document from its compact form ([`Doc::as_bytes`]), in one allocation. The
    /// whole layout is checked first, so damaged bytes give [`DocError::Malformed`], never a
    /// document that misbehaves.
    pub fn from_bytes(bytes: &[u8]) -> Result<Doc, DocError> {
        check::check(bytes).map_err(|problem| DocError::Malformed { problem })?;
        Ok(Doc(Arc::from(bytes)))
    }

    /// Whether this document carries per-node metadata.
    pub fn has_meta(&self) -> bool {
        u32_at(&self.0, META_OFF) != 0
    }

    /// The root object.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            buf: &self.0,
            off: 0,
            ord: 0,
        }
    }

    /// The node at `path` (a member key per step), if any.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<NodeRef<'_>> {
        if !path.is_empty() {
            self.touch::<WARM_LINES>();
        }
        self.root().get_path(path)
    }

    /// Whether the root object has no members.
    pub fn is_empty(&self) -> bool {
        self.root().len() == 0
    }

    /// The document as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        self.root().to_value()
    }

    /// Metadata of the root object, when the document carries metadata.
    pub fn root_meta(&self) -> Option<Meta> {
        self.root().meta()
    }

    /// Bytes of heap memory this document holds: its one buffer (nodes, keys, strings and
    /// metadata) and the reference counts allocated with it. The shared empty document counts
    /// in full for every holder.
    pub fn heap_size(&self) -> usize {
        self.0.len() + 2 * std::mem::size_of::<usize>()
    }
}

impl PartialEq for Doc {
    fn eq(&self, other: &Doc) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.root() == other.root()
    }
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Doc({})", self.to_value())
    }
}

impl<'a> NodeRef<'a> {
    #[inline(always)]
    fn rec(&self) -> Rec {
        rec_at(self.buf, self.off as usize)
    }

    /// The UTF-8 text at `off..off + len` (empty when out of bounds or not UTF-8, which a
    /// document built by this module never has).
    #[inline(always)]
    fn str_at(&self, off: usize, len: usize) -> &'a str {
        self.buf
            .get(off..off + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The node's value.
    #[inline]
    pub fn value(&self) -> ValueRef<'a> {
        let r = self.rec();
        match r.tag {
            T_NULL => ValueRef::Null,
            T_FALSE => ValueRef::Bool(false),
            T_TRUE => ValueRef::Bool(true),
            T_INT => ValueRef::Int(r.payload as i64),
            T_FLOAT => ValueRef::Float(f64::from_bits(r.payload)),
            T_STR => ValueRef::Str(self.str_at(r.lo() as usize, r.hi() as usize)),
            T_ARRAY => ValueRef::Array(*self),
            T_OBJECT => ValueRef::Object(*self),
            t => ValueRef::Str(self.str_at(self.off as usize + 8, usize::from(t - T_INLINE))),
        }
    }

    /// This node's key within its parent object (empty for the root and array elements).
    pub fn key(&self) -> &'a str {
        let r = self.rec();
        self.str_at(r.key_off as usize, r.key_len as usize)
    }

    /// The node's metadata, when its document carries metadata.
    pub fn meta(&self) -> Option<Meta> {
        meta_at(self.buf, self.ord)
    }

    /// The children's block offset, count and first ordinal (count 0 for scalars).
    #[inline(always)]
    fn block(&self) -> (usize, usize, u32) {
        let r = self.rec();
        match r.tag {
            T_ARRAY | T_OBJECT => {
                let (block, n) = (r.lo() as usize, r.hi() as usize);
                if n == 0 {
                    return (0, 0, 0);
                }
                (block, n, u32_at(self.buf, block + n * REC))
            }
            _ => (0, 0, 0),
        }
    }

    #[inline(always)]
    fn child(&self, block: usize, first_ord: u32, i: usize) -> NodeRef<'a> {
        NodeRef {
            buf: self.buf,
            off: (block + i * REC) as u32,
            ord: first_ord.wrapping_add(i as u32),
        }
    }

    /// The member `key` of this object (`None` when absent or when this is not an object).
    #[inline]
    pub fn get(&self, key: &str) -> Option<NodeRef<'a>> {
        let r = self.rec();
        if r.tag != T_OBJECT {
            return None;
        }
        let (block, n) = (r.lo() as usize, r.hi() as usize);
        let key = key.as_bytes();
        let found = probe::find_member(self.buf, block, n, key, first_word(key))?;
        let first_ord = u32_at(self.buf, block + n * REC);
        Some(self.child(block, first_ord, found))
    }

    /// The node at `path` below this one.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<NodeRef<'a>> {
        let mut n = *self;
        for seg in path {
            n = n.get(seg.as_ref())?;
        }
        Some(n)
    }

    /// The members of this object, sorted by key (none for other values).
    pub fn members(&self) -> impl Iterator<Item = (&'a str, NodeRef<'a>)> + 'a {
        let this = *self;
        let (block, n, first_ord) = if self.rec().tag == T_OBJECT {
            self.block()
        } else {
            (0, 0, 0)
        };
        (0..n).map(move |i| {
            let c = this.child(block, first_ord, i);
            (c.key(), c)
        })
    }

    /// The elements of this array (none for other values).
    pub fn elements(&self) -> impl Iterator<Item = NodeRef<'a>> + 'a {
        let this = *self;
        let (block, n, first_ord) = if self.rec().tag == T_ARRAY {
            self.block()
        } else {
            (0, 0, 0)
        };
        (0..n).map(move |i| this.child(block, first_ord, i))
    }

    /// Number of members or elements (0 for scalars).
    pub fn len(&self) -> usize {
        let r = self.rec();
        match r.tag {
            T_ARRAY | T_OBJECT => r.hi() as usize,
            _ => 0,
        }
    }

    /// Whether this is a scalar or an empty container.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this node is an object.
    pub fn is_object(&self) -> bool {
        self.rec().tag == T_OBJECT
    }

    /// The node as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self.value() {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(i) => Value::from(i),
            ValueRef::Float(f) => {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            ValueRef::Str(s) => Value::String(s.to_string()),
            ValueRef::Array(_) => Value::Array(self.elements().map(|e| e.to_value()).collect()),
            ValueRef::Object(_) => Value::Object(
                self.members()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

impl PartialEq for NodeRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self.value(), other.value()) {
            (ValueRef::Array(a), ValueRef::Array(b)) => {
                a.len() == b.len() && a.elements().zip(b.elements()).all(|(x, y)| x == y)
            }
            (ValueRef::Object(a), ValueRef::Object(b)) => {
                a.len() == b.len()
                    && a.members()
                        .zip(b.members())
                        .all(|((ka, va), (kb, vb))| ka == kb && va == vb)
            }
            (x, y) => x == y,
        }
    }
}

impl fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeRef({})", self.to_value())
    }
}

impl serde::Serialize for NodeRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.value() {
            ValueRef::Null => s.serialize_unit(),
            ValueRef::Bool(b) => s.serialize_bool(b),
            ValueRef::Int(i) => s.serialize_i64(i),
            ValueRef::Float(f) => s.serialize_f64(f),
            ValueRef::Str(v) => s.serialize_str(v),
            ValueRef::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for e in a.elements() {
                    seq.serialize_element(&e)?;
                }
                seq.end()
            }
            ValueRef::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o.members() {
                    map.serialize_entry(k, &v)?;
                }
                map.end()
            }
        }
    }
}

impl serde::Serialize for Doc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.root().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Doc::from_value(&v).map_err(serde::de::Error::custom)
    }
}

/// Applies an RFC 7386 merge patch to a `serde_json::Value` in place (the reference model that
/// [`Doc::merge`] is tested against, and a convenience for callers holding plain JSON).
pub fn merge_value(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(pm) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(tm) = target {
                for (k, pv) in pm {
                    if pv.is_null() {
                        tm.remove(k);
                    } else {
                        merge_value(tm.entry(k.clone()).or_insert(Value::Null), pv);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests;
