//! A compact, immutable JSON document: the storage form of twin sections.
//!
//! A [`Doc`] keeps a whole JSON object in one contiguous node array plus one string buffer, with
//! the members of every object sorted by key. A lookup is a few binary searches over adjacent
//! memory, cloning is a reference-count increment, and a million 1 KB twins need far less memory
//! than the same documents as `serde_json::Value` trees (which allocate per key and per map node).
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

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::clock::Timestamp;

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
}

/// When a node was last written, and by which section version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Time of the last write that touched the node.
    pub last_updated: Timestamp,
    /// Section version of that write.
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(u32, u32),
    Array(u32, u32),
    Object(u32, u32),
}

#[derive(Debug, Clone, Copy)]
struct Node {
    key: (u32, u32),
    val: Val,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: Box<[Node]>,
    text: Box<str>,
    /// Parallel to `nodes`, or empty when the document carries no metadata.
    meta: Box<[Meta]>,
}

/// A compact, immutable JSON object. See the [module docs](self).
#[derive(Clone)]
pub struct Doc(Arc<Inner>);

/// A borrowed node of a [`Doc`].
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    inner: &'a Inner,
    idx: u32,
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

fn json_type(v: &Value) -> &'static str {
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

impl Doc {
    /// The empty object `{}`.
    pub fn empty() -> Doc {
        Doc(Arc::new(Inner {
            nodes: vec![Node {
                key: (0, 0),
                val: Val::Object(1, 0),
            }]
            .into_boxed_slice(),
            text: "".into(),
            meta: Box::new([]),
        }))
    }

    /// Builds a document from a JSON object.
    pub fn from_value(v: &Value) -> Result<Doc, DocError> {
        let map = match v {
            Value::Object(m) => m,
            other => {
                return Err(DocError::NotAnObject {
                    found: json_type(other),
                })
            }
        };
        let mut b = Builder::default();
        b.build_root(Src::Json(map), None)?;
        Ok(b.finish(false))
    }

    /// Builds a document from a JSON object, stamping every node with `meta`.
    pub fn from_value_with_meta(v: &Value, meta: Meta) -> Result<Doc, DocError> {
        let map = match v {
            Value::Object(m) => m,
            other => {
                return Err(DocError::NotAnObject {
                    found: json_type(other),
                })
            }
        };
        let mut b = Builder::default();
        b.build_root(Src::Json(map), Some(meta))?;
        Ok(b.finish(true))
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
        let map = match patch {
            Value::Object(m) => m,
            other => {
                return Err(DocError::NotAnObject {
                    found: json_type(other),
                })
            }
        };
        let mut b = Builder::default();
        let has_meta = meta.is_some() || self.has_meta();
        b.build_root(Src::Merge(self.root(), map), meta)?;
        Ok(b.finish(has_meta))
    }

    /// A copy of this document whose node metadata comes from `lookup(path)`; a node for which
    /// it returns `None` inherits its parent's metadata (the root inherits `fallback`). Array
    /// elements always inherit the array's.
    pub fn with_meta(
        &self,
        fallback: Meta,
        mut lookup: impl FnMut(&[&str]) -> Option<Meta>,
    ) -> Doc {
        let inner = &self.0;
        let mut meta = vec![fallback; inner.nodes.len()];
        let mut path: Vec<&str> = Vec::new();
        fn visit<'a>(
            n: NodeRef<'a>,
            parent: Meta,
            path: &mut Vec<&'a str>,
            meta: &mut [Meta],
            lookup: &mut dyn FnMut(&[&str]) -> Option<Meta>,
        ) {
            let m = lookup(path).unwrap_or(parent);
            if let Some(slot) = meta.get_mut(n.idx as usize) {
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
        Doc(Arc::new(Inner {
            nodes: inner.nodes.clone(),
            text: inner.text.clone(),
            meta: meta.into_boxed_slice(),
        }))
    }

    /// Whether this document carries per-node metadata.
    pub fn has_meta(&self) -> bool {
        !self.0.meta.is_empty()
    }

    /// The root object.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            inner: &self.0,
            idx: 0,
        }
    }

    /// The node at `path` (a member key per step), if any.
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<NodeRef<'_>> {
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

    /// Bytes of heap memory this document holds (nodes, text and metadata).
    pub fn heap_size(&self) -> usize {
        std::mem::size_of::<Node>() * self.0.nodes.len()
            + self.0.text.len()
            + std::mem::size_of::<Meta>() * self.0.meta.len()
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
    fn node(&self) -> &'a Node {
        // `idx` always comes from the document's own node ranges
        &self.inner.nodes[self.idx as usize]
    }

    fn text(&self, span: (u32, u32)) -> &'a str {
        let (off, len) = (span.0 as usize, span.1 as usize);
        self.inner.text.get(off..off + len).unwrap_or("")
    }

    fn at(&self, idx: u32) -> NodeRef<'a> {
        NodeRef {
            inner: self.inner,
            idx,
        }
    }

    /// The node's value.
    pub fn value(&self) -> ValueRef<'a> {
        match self.node().val {
            Val::Null => ValueRef::Null,
            Val::Bool(b) => ValueRef::Bool(b),
            Val::Int(i) => ValueRef::Int(i),
            Val::Float(f) => ValueRef::Float(f),
            Val::Str(o, l) => ValueRef::Str(self.text((o, l))),
            Val::Array(..) => ValueRef::Array(*self),
            Val::Object(..) => ValueRef::Object(*self),
        }
    }

    /// This node's key within its parent object (empty for the root and array elements).
    pub fn key(&self) -> &'a str {
        self.text(self.node().key)
    }

    /// The node's metadata, when its document carries metadata.
    pub fn meta(&self) -> Option<Meta> {
        self.inner.meta.get(self.idx as usize).copied()
    }

    fn children(&self) -> std::ops::Range<u32> {
        match self.node().val {
            Val::Array(first, len) | Val::Object(first, len) => first..first + len,
            _ => 0..0,
        }
    }

    /// The member `key` of this object (`None` when absent or when this is not an object).
    pub fn get(&self, key: &str) -> Option<NodeRef<'a>> {
        let (first, len) = match self.node().val {
            Val::Object(first, len) => (first as usize, len as usize),
            _ => return None,
        };
        let members = self.inner.nodes.get(first..first + len)?;
        let key = key.as_bytes();
        members
            .binary_search_by(|n| self.text(n.key).as_bytes().cmp(key))
            .ok()
            .map(|i| self.at((first + i) as u32))
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
        let range = match self.node().val {
            Val::Object(..) => self.children(),
            _ => 0..0,
        };
        range.map(move |i| {
            let n = this.at(i);
            (n.key(), n)
        })
    }

    /// The elements of this array (none for other values).
    pub fn elements(&self) -> impl Iterator<Item = NodeRef<'a>> + 'a {
        let this = *self;
        let range = match self.node().val {
            Val::Array(..) => self.children(),
            _ => 0..0,
        };
        range.map(move |i| this.at(i))
    }

    /// Number of members or elements (0 for scalars).
    pub fn len(&self) -> usize {
        self.children().len()
    }

    /// Whether this is a scalar or an empty container.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this node is an object.
    pub fn is_object(&self) -> bool {
        matches!(self.node().val, Val::Object(..))
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

/// Where the builder takes a node's content from.
#[derive(Clone, Copy)]
enum Src<'a> {
    /// An existing node, copied with its metadata.
    Node(NodeRef<'a>),
    /// New content from JSON (every node stamped when stamping; `null` members of objects are
    /// dropped only when `drop_nulls`).
    Json(&'a Map<String, Value>),
    /// A JSON value that is not an object.
    JsonScalar(&'a Value),
    /// New content from a merge patch (nulls in objects removed, per RFC 7386).
    PatchNew(&'a Value),
    /// An existing object merged with a patch object.
    Merge(NodeRef<'a>, &'a Map<String, Value>),
}

#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    text: String,
    meta: Vec<Meta>,
}

fn to_u32(n: usize) -> Result<u32, DocError> {
    u32::try_from(n).map_err(|_| DocError::TooLarge)
}

impl Builder {
    fn push_text(&mut self, s: &str) -> Result<(u32, u32), DocError> {
        let off = to_u32(self.text.len())?;
        self.text.push_str(s);
        Ok((off, to_u32(s.len())?))
    }

    fn build_root(&mut self, src: Src<'_>, stamp: Option<Meta>) -> Result<(), DocError> {
        self.nodes.push(Node {
            key: (0, 0),
            val: Val::Null,
        });
        self.meta.push(Meta::default());
        self.fill(0, src, stamp)
    }

    fn finish(self, keep_meta: bool) -> Doc {
        Doc(Arc::new(Inner {
            nodes: self.nodes.into_boxed_slice(),
            text: self.text.into_boxed_str(),
            meta: if keep_meta {
                self.meta.into_boxed_slice()
            } else {
                Box::new([])
            },
        }))
    }

    /// Reserves `n` child slots and returns the index of the first.
    fn reserve(&mut self, n: usize) -> Result<u32, DocError> {
        let first = to_u32(self.nodes.len())?;
        self.nodes.resize(
            self.nodes.len() + n,
            Node {
                key: (0, 0),
                val: Val::Null,
            },
        );
        self.meta.resize(self.meta.len() + n, Meta::default());
        Ok(first)
    }

    fn set(&mut self, idx: u32, val: Val, meta: Meta) {
        let i = idx as usize;
        if let Some(n) = self.nodes.get_mut(i) {
            n.val = val;
        }
        if let Some(m) = self.meta.get_mut(i) {
            *m = meta;
        }
    }

    fn set_key(&mut self, idx: u32, key: &str) -> Result<(), DocError> {
        let span = self.push_text(key)?;
        if let Some(n) = self.nodes.get_mut(idx as usize) {
            n.key = span;
        }
        Ok(())
    }

    /// Fills slot `idx` from `src`. `stamp` is the metadata for new or touched nodes (`None`:
    /// no stamping, copied nodes keep theirs and new nodes get the default).
    fn fill(&mut self, idx: u32, src: Src<'_>, stamp: Option<Meta>) -> Result<(), DocError> {
        let new_meta = stamp.unwrap_or_default();
        match src {
            Src::Node(n) => {
                let meta = n.meta().unwrap_or(new_meta);
                match n.value() {
                    ValueRef::Object(_) => {
                        let first = self.reserve(n.len())?;
                        self.set(idx, Val::Object(first, to_u32(n.len())?), meta);
                        for (i, (k, child)) in n.members().enumerate() {
                            let slot = first + to_u32(i)?;
                            self.set_key(slot, k)?;
                            self.fill(slot, Src::Node(child), None)?;
                        }
                    }
                    ValueRef::Array(_) => {
                        let first = self.reserve(n.len())?;
                        self.set(idx, Val::Array(first, to_u32(n.len())?), meta);
                        for (i, child) in n.elements().enumerate() {
                            self.fill(first + to_u32(i)?, Src::Node(child), None)?;
                        }
                    }
                    ValueRef::Str(s) => {
                        let (o, l) = self.push_text(s)?;
                        self.set(idx, Val::Str(o, l), meta);
                    }
                    ValueRef::Null => self.set(idx, Val::Null, meta),
                    ValueRef::Bool(b) => self.set(idx, Val::Bool(b), meta),
                    ValueRef::Int(i) => self.set(idx, Val::Int(i), meta),
                    ValueRef::Float(f) => self.set(idx, Val::Float(f), meta),
                }
            }
            Src::Json(map) => self.fill_object(idx, map, false, new_meta, stamp)?,
            Src::PatchNew(v) => match v {
                Value::Object(map) => self.fill_object(idx, map, true, new_meta, stamp)?,
                other => self.fill(idx, Src::JsonScalar(other), stamp)?,
            },
            Src::JsonScalar(v) => match v {
                Value::Object(map) => self.fill_object(idx, map, false, new_meta, stamp)?,
                Value::Array(items) => {
                    let first = self.reserve(items.len())?;
                    self.set(idx, Val::Array(first, to_u32(items.len())?), new_meta);
                    for (i, item) in items.iter().enumerate() {
                        // array elements are values, not merge patches: nulls stay
                        self.fill(first + to_u32(i)?, Src::JsonScalar(item), stamp)?;
                    }
                }
                Value::String(s) => {
                    let (o, l) = self.push_text(s)?;
                    self.set(idx, Val::Str(o, l), new_meta);
                }
                Value::Null => self.set(idx, Val::Null, new_meta),
                Value::Bool(b) => self.set(idx, Val::Bool(*b), new_meta),
                Value::Number(num) => {
                    let val = match num.as_i64() {
                        Some(i) => Val::Int(i),
                        None => Val::Float(num.as_f64().unwrap_or(f64::NAN)),
                    };
                    self.set(idx, val, new_meta);
                }
            },
            Src::Merge(old, patch) => self.fill_merge(idx, old, patch, stamp)?,
        }
        Ok(())
    }

    fn fill_object(
        &mut self,
        idx: u32,
        map: &Map<String, Value>,
        drop_nulls: bool,
        meta: Meta,
        stamp: Option<Meta>,
    ) -> Result<(), DocError> {
        let mut entries: Vec<(&String, &Value)> = map
            .iter()
            .filter(|(_, v)| !(drop_nulls && v.is_null()))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let first = self.reserve(entries.len())?;
        self.set(idx, Val::Object(first, to_u32(entries.len())?), meta);
        for (i, (k, v)) in entries.into_iter().enumerate() {
            let slot = first + to_u32(i)?;
            self.set_key(slot, k)?;
            let src = if drop_nulls {
                Src::PatchNew(v)
            } else {
                Src::JsonScalar(v)
            };
            self.fill(slot, src, stamp)?;
        }
        Ok(())
    }

    fn fill_merge(
        &mut self,
        idx: u32,
        old: NodeRef<'_>,
        patch: &Map<String, Value>,
        stamp: Option<Meta>,
    ) -> Result<(), DocError> {
        let mut patch_entries: Vec<(&String, &Value)> = patch.iter().collect();
        patch_entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        // merge-join the old members and the patch members, both sorted by key
        let mut out: Vec<(&str, Src<'_>)> = Vec::with_capacity(old.len() + patch_entries.len());
        let mut olds = old.members().peekable();
        let mut news = patch_entries.into_iter().peekable();
        loop {
            let order = match (olds.peek(), news.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((ok, _)), Some((nk, _))) => ok.as_bytes().cmp(nk.as_bytes()),
            };
            match order {
                Ordering::Less => {
                    if let Some((k, n)) = olds.next() {
                        out.push((k, Src::Node(n)));
                    }
                }
                Ordering::Greater => {
                    if let Some((k, v)) = news.next() {
                        if !v.is_null() {
                            out.push((k.as_str(), Src::PatchNew(v)));
                        }
                    }
                }
                Ordering::Equal => {
                    let (Some((k, n)), Some((_, v))) = (olds.next(), news.next()) else {
                        break;
                    };
                    match v {
                        Value::Null => {}
                        Value::Object(pm) if n.is_object() => out.push((k, Src::Merge(n, pm))),
                        other => out.push((k, Src::PatchNew(other))),
                    }
                }
            }
        }
        let meta = stamp.or(old.meta()).unwrap_or_default();
        let first = self.reserve(out.len())?;
        self.set(idx, Val::Object(first, to_u32(out.len())?), meta);
        for (i, (k, src)) in out.into_iter().enumerate() {
            let slot = first + to_u32(i)?;
            self.set_key(slot, k)?;
            self.fill(slot, src, stamp)?;
        }
        Ok(())
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_looks_up() {
        let v = json!({"b": [1, 2.5, "x", null, {"k": true}], "a": {"z": 1, "y": {"x": "deep"}}, "n": null, "e": {}});
        let d = Doc::from_value(&v).unwrap();
        assert_eq!(d.to_value(), v);
        assert_eq!(
            d.get_path(&["a", "y", "x"]).unwrap().value(),
            ValueRef::Str("deep")
        );
        assert_eq!(d.get_path(&["n"]).unwrap().value(), ValueRef::Null);
        assert!(d.get_path(&["a", "missing"]).is_none());
        assert!(d.get_path(&["b", "k"]).is_none());
        let keys: Vec<_> = d.root().members().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "e", "n"]);
        assert_eq!(d.get_path(&["b"]).unwrap().elements().count(), 5);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            v,
            "Serialize matches to_value"
        );
    }

    #[test]
    fn rejects_non_objects() {
        assert_eq!(
            Doc::from_value(&json!([1])),
            Err(DocError::NotAnObject { found: "array" })
        );
        assert_eq!(
            Doc::empty().merge(&json!("x")),
            Err(DocError::NotAnObject { found: "string" })
        );
    }

    #[test]
    fn merge_follows_rfc7386_examples() {
        // the examples of RFC 7386 appendix A whose target and patch are objects
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            let d = Doc::from_value(&target).unwrap().merge(&patch).unwrap();
            assert_eq!(d.to_value(), expected, "{target} + {patch}");
        }
    }

    #[test]
    fn metadata_stamps_touched_nodes_only() {
        let t0 = Meta {
            last_updated: Timestamp::from_unix_secs(100),
            version: 1,
        };
        let t1 = Meta {
            last_updated: Timestamp::from_unix_secs(200),
            version: 2,
        };
        let d = Doc::from_value_with_meta(&json!({"a": {"x": 1, "y": 2}, "b": 3}), t0).unwrap();
        let d2 = d.merge_with_meta(&json!({"a": {"x": 5}}), t1).unwrap();
        assert_eq!(d2.root_meta(), Some(t1));
        assert_eq!(d2.get_path(&["a"]).unwrap().meta(), Some(t1));
        assert_eq!(d2.get_path(&["a", "x"]).unwrap().meta(), Some(t1));
        assert_eq!(d2.get_path(&["a", "y"]).unwrap().meta(), Some(t0));
        assert_eq!(d2.get_path(&["b"]).unwrap().meta(), Some(t0));
        // a delete touches the parent
        let d3 = d2.merge_with_meta(&json!({"a": {"y": null}}), t0).unwrap();
        assert_eq!(d3.get_path(&["a"]).unwrap().meta(), Some(t0));
        assert_eq!(d3.get_path(&["a", "x"]).unwrap().meta(), Some(t1));
    }

    fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(Value::from),
            "[a-c]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(depth, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-d]{1,2}", arb_json(3), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #[test]
        fn from_value_round_trips(v in arb_object()) {
            prop_assert_eq!(Doc::from_value(&v).unwrap().to_value(), v);
        }

        #[test]
        fn merge_agrees_with_reference_model(target in arb_object(), patch in arb_object()) {
            let mut expected = target.clone();
            merge_value(&mut expected, &patch);
            let got = Doc::from_value(&target).unwrap().merge(&patch).unwrap();
            prop_assert_eq!(got.to_value(), expected);
        }
    }
}
