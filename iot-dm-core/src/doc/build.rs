//! Building a [`Doc`] buffer from JSON, from another document, or from a document and a merge
//! patch, in one pass. See [`layout`](super::layout) for the format.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::layout::{
    pair, push_meta_region, put_rec, put_u32, Rec, HEADER, MAX_INLINE, MAX_KEY, META_OFF,
    NODE_COUNT, REC, T_ARRAY, T_FALSE, T_FLOAT, T_INLINE, T_INT, T_NULL, T_OBJECT, T_STR, T_TRUE,
};
use super::{Doc, DocError, Meta, NodeRef, ValueRef};

/// Where the builder takes a node's content from.
#[derive(Clone, Copy)]
pub(super) enum Src<'a> {
    /// An existing node, copied with its metadata.
    Node(NodeRef<'a>),
    /// New content from a JSON object (`null` members kept).
    Json(&'a Map<String, Value>),
    /// New content from any JSON value (`null` members of objects kept).
    JsonScalar(&'a Value),
    /// New content from a merge patch (nulls in objects removed, per RFC 7386).
    PatchNew(&'a Value),
    /// An existing object merged with a patch object.
    Merge(NodeRef<'a>, &'a Map<String, Value>),
}

/// A child to place in a block: its key (empty for array elements), its content, and the
/// metadata to stamp new or touched nodes with (`None`: copied nodes keep theirs and new nodes
/// get the default).
type Child<'a> = (&'a str, Src<'a>, Option<Meta>);

/// What a node is, once its source is looked at.
enum Shape<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Container { object: bool },
}

fn to_u32(n: usize) -> Result<u32, DocError> {
    u32::try_from(n).map_err(|_| DocError::TooLarge)
}

/// The node's shape and metadata.
fn shape<'a>(src: Src<'a>, stamp: Option<Meta>) -> (Shape<'a>, Meta) {
    let new_meta = stamp.unwrap_or_default();
    match src {
        Src::Node(n) => {
            let meta = n.meta().unwrap_or(new_meta);
            let s = match n.value() {
                ValueRef::Null => Shape::Null,
                ValueRef::Bool(b) => Shape::Bool(b),
                ValueRef::Int(i) => Shape::Int(i),
                ValueRef::Float(f) => Shape::Float(f),
                ValueRef::Str(s) => Shape::Str(s),
                ValueRef::Array(_) => Shape::Container { object: false },
                ValueRef::Object(_) => Shape::Container { object: true },
            };
            (s, meta)
        }
        Src::Json(_) => (Shape::Container { object: true }, new_meta),
        Src::PatchNew(v) | Src::JsonScalar(v) => {
            let s = match v {
                Value::Null => Shape::Null,
                Value::Bool(b) => Shape::Bool(*b),
                Value::Number(num) => match num.as_i64() {
                    Some(i) => Shape::Int(i),
                    None => Shape::Float(num.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => Shape::Str(s),
                Value::Array(_) => Shape::Container { object: false },
                Value::Object(_) => Shape::Container { object: true },
            };
            (s, new_meta)
        }
        Src::Merge(old, _) => (
            Shape::Container { object: true },
            stamp.or(old.meta()).unwrap_or_default(),
        ),
    }
}

/// The members of a JSON object, sorted by key, without the `null` ones when `drop_nulls`.
fn json_members<'a>(
    map: &'a Map<String, Value>,
    drop_nulls: bool,
    stamp: Option<Meta>,
) -> Vec<Child<'a>> {
    let mut out: Vec<Child<'a>> = map
        .iter()
        .filter(|(_, v)| !(drop_nulls && v.is_null()))
        .map(|(k, v)| {
            let src = if drop_nulls {
                Src::PatchNew(v)
            } else {
                Src::JsonScalar(v)
            };
            (k.as_str(), src, stamp)
        })
        .collect();
    // `Map` iterates in key order unless serde_json's `preserve_order` is on somewhere
    if !out.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
        out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    out
}

/// The children of a container source.
fn children<'a>(src: Src<'a>, stamp: Option<Meta>) -> Vec<Child<'a>> {
    match src {
        Src::Node(n) => match n.value() {
            ValueRef::Object(_) => n.members().map(|(k, c)| (k, Src::Node(c), None)).collect(),
            ValueRef::Array(_) => n.elements().map(|c| ("", Src::Node(c), None)).collect(),
            _ => Vec::new(),
        },
        Src::Json(map) => json_members(map, false, stamp),
        Src::PatchNew(Value::Object(map)) => json_members(map, true, stamp),
        Src::JsonScalar(Value::Object(map)) => json_members(map, false, stamp),
        // array elements are values, not merge patches: nulls stay
        Src::PatchNew(Value::Array(items)) | Src::JsonScalar(Value::Array(items)) => items
            .iter()
            .map(|v| ("", Src::JsonScalar(v), stamp))
            .collect(),
        Src::PatchNew(_) | Src::JsonScalar(_) => Vec::new(),
        Src::Merge(old, patch) => merge_members(old, patch, stamp),
    }
}

/// Merge-joins an object's members with a patch's, both sorted by key.
fn merge_members<'a>(
    old: NodeRef<'a>,
    patch: &'a Map<String, Value>,
    stamp: Option<Meta>,
) -> Vec<Child<'a>> {
    let mut patch_entries: Vec<(&String, &Value)> = patch.iter().collect();
    if !patch_entries.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
        patch_entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    let mut out: Vec<Child<'a>> = Vec::with_capacity(old.len() + patch_entries.len());
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
                    out.push((k, Src::Node(n), stamp));
                }
            }
            Ordering::Greater => {
                if let Some((k, v)) = news.next() {
                    if !v.is_null() {
                        out.push((k.as_str(), Src::PatchNew(v), stamp));
                    }
                }
            }
            Ordering::Equal => {
                let (Some((k, n)), Some((_, v))) = (olds.next(), news.next()) else {
                    break;
                };
                match v {
                    Value::Null => {}
                    Value::Object(pm) if n.is_object() => out.push((k, Src::Merge(n, pm), stamp)),
                    other => out.push((k, Src::PatchNew(other), stamp)),
                }
            }
        }
    }
    out
}

/// Writes a document buffer.
pub(super) struct Builder {
    buf: Vec<u8>,
    /// Metadata per ordinal.
    metas: Vec<Meta>,
}

impl Builder {
    /// Builds a document whose root object comes from `src`.
    pub(super) fn build(
        src: Src<'_>,
        stamp: Option<Meta>,
        keep_meta: bool,
        size_hint: usize,
    ) -> Result<Doc, DocError> {
        let mut b = Builder {
            buf: Vec::with_capacity(size_hint.max(HEADER)),
            metas: Vec::new(),
        };
        b.buf.resize(HEADER, 0);
        let (_, root_meta) = shape(src, stamp);
        b.metas.push(root_meta);
        let (block, len) = b.block(children(src, stamp), true)?;
        put_rec(
            &mut b.buf,
            0,
            &Rec {
                tag: T_OBJECT,
                key_len: 0,
                key_off: 0,
                payload: pair(block, len),
            },
        );
        b.finish(keep_meta)
    }

    fn finish(mut self, keep_meta: bool) -> Result<Doc, DocError> {
        let nodes = to_u32(self.metas.len())?;
        put_u32(&mut self.buf, NODE_COUNT, nodes);
        if keep_meta {
            let off = to_u32(self.buf.len())?;
            push_meta_region(&mut self.buf, &self.metas);
            put_u32(&mut self.buf, META_OFF, off);
        }
        to_u32(self.buf.len())?;
        Ok(Doc(Arc::from(self.buf)))
    }

    /// Writes the block of a container's children (and, after it, the blocks of the
    /// containers among them) and returns its offset and the number of children.
    fn block(&mut self, items: Vec<Child<'_>>, object: bool) -> Result<(u32, u32), DocError> {
        let n = items.len();
        if n == 0 {
            return Ok((0, 0));
        }
        let start = self.buf.len();
        let first_ord = to_u32(self.metas.len())?;
        self.metas.resize(self.metas.len() + n, Meta::default());
        self.buf.resize(start + n * REC, 0);
        self.buf.extend_from_slice(&first_ord.to_le_bytes());
        let mut recs: Vec<Rec> = Vec::with_capacity(n);
        for (k, _, _) in &items {
            if !object || k.is_empty() {
                recs.push(Rec {
                    tag: T_NULL,
                    key_len: 0,
                    key_off: 0,
                    payload: 0,
                });
                continue;
            }
            if k.len() > MAX_KEY {
                return Err(DocError::KeyTooLong {
                    len: k.len(),
                    limit: MAX_KEY,
                });
            }
            let key_off = to_u32(self.buf.len())?;
            self.buf.extend_from_slice(k.as_bytes());
            recs.push(Rec {
                tag: T_NULL,
                key_len: to_u32(k.len())?,
                key_off,
                payload: 0,
            });
        }
        let mut pending: Vec<(usize, Src<'_>, Option<Meta>, bool)> = Vec::new();
        for (i, ((_, src, stamp), rec)) in items.into_iter().zip(recs.iter_mut()).enumerate() {
            let (s, meta) = shape(src, stamp);
            if let Some(m) = self.metas.get_mut(first_ord as usize + i) {
                *m = meta;
            }
            match s {
                Shape::Null => rec.tag = T_NULL,
                Shape::Bool(b) => rec.tag = if b { T_TRUE } else { T_FALSE },
                Shape::Int(v) => {
                    rec.tag = T_INT;
                    rec.payload = v as u64;
                }
                Shape::Float(f) => {
                    rec.tag = T_FLOAT;
                    rec.payload = f.to_bits();
                }
                Shape::Str(s) if s.len() <= MAX_INLINE => {
                    let mut bytes = [0u8; 8];
                    if let Some(dst) = bytes.get_mut(..s.len()) {
                        dst.copy_from_slice(s.as_bytes());
                    }
                    rec.tag = T_INLINE + s.len() as u8;
                    rec.payload = u64::from_le_bytes(bytes);
                }
                Shape::Str(s) => {
                    let off = to_u32(self.buf.len())?;
                    self.buf.extend_from_slice(s.as_bytes());
                    rec.tag = T_STR;
                    rec.payload = pair(off, to_u32(s.len())?);
                }
                Shape::Container { object } => {
                    rec.tag = if object { T_OBJECT } else { T_ARRAY };
                    pending.push((i, src, stamp, object));
                }
            }
        }
        for (i, src, stamp, object) in pending {
            let (block, len) = self.block(children(src, stamp), object)?;
            if let Some(rec) = recs.get_mut(i) {
                rec.payload = pair(block, len);
            }
        }
        for (i, rec) in recs.iter().enumerate() {
            put_rec(&mut self.buf, start + i * REC, rec);
        }
        Ok((to_u32(start)?, to_u32(n)?))
    }
}
