//! Runtime values: borrowed from the twin's documents or the compiled query wherever possible,
//! so evaluating a condition allocates nothing.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::doc::{NodeRef, ValueRef};

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    /// A missing path or an operation without a result.
    Undefined,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string borrowed from the twin or the query.
    Str(&'a str),
    /// A computed string (timestamps, `LOWER`, ...).
    Owned(String),
    /// An object or array inside a twin document.
    Node(NodeRef<'a>),
    /// An object or array outside a document (constants, the JSON form of system structures).
    Json(Cow<'a, Value>),
}

/// A primitive value, the only kind comparisons accept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Prim<'x> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'x str),
}

impl<'a> Val<'a> {
    /// Converts a document node.
    pub(crate) fn from_node(n: NodeRef<'a>) -> Val<'a> {
        match n.value() {
            ValueRef::Null => Val::Null,
            ValueRef::Bool(b) => Val::Bool(b),
            ValueRef::Int(i) => Val::Int(i),
            ValueRef::Float(f) => Val::Float(f),
            ValueRef::Str(s) => Val::Str(s),
            ValueRef::Array(_) | ValueRef::Object(_) => Val::Node(n),
        }
    }

    /// Converts an optional document node (`None` is `undefined`).
    pub(crate) fn from_opt_node(n: Option<NodeRef<'a>>) -> Val<'a> {
        n.map_or(Val::Undefined, Val::from_node)
    }

    /// Converts a borrowed JSON value.
    pub(crate) fn from_json(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => number(n),
            Value::String(s) => Val::Str(s),
            Value::Array(_) | Value::Object(_) => Val::Json(Cow::Borrowed(v)),
        }
    }

    /// Converts an owned JSON value.
    pub(crate) fn from_owned_json(v: Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(b),
            Value::Number(n) => number(&n),
            Value::String(s) => Val::Owned(s),
            v @ (Value::Array(_) | Value::Object(_)) => Val::Json(Cow::Owned(v)),
        }
    }

    /// An unsigned count as a number.
    pub(crate) fn from_u64(n: u64) -> Val<'a> {
        i64::try_from(n).map_or(Val::Float(n as f64), Val::Int)
    }

    /// The primitive behind this value, `None` for `undefined`, objects and arrays.
    pub(crate) fn prim(&self) -> Option<Prim<'_>> {
        Some(match self {
            Val::Null => Prim::Null,
            Val::Bool(b) => Prim::Bool(*b),
            Val::Int(i) => Prim::Int(*i),
            Val::Float(f) => Prim::Float(*f),
            Val::Str(s) => Prim::Str(s),
            Val::Owned(s) => Prim::Str(s),
            Val::Undefined | Val::Node(_) | Val::Json(_) => return None,
        })
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Owned(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_object(&self) -> bool {
        match self {
            Val::Node(n) => n.is_object(),
            Val::Json(v) => v.is_object(),
            _ => false,
        }
    }

    pub(crate) fn is_array(&self) -> bool {
        match self {
            Val::Node(n) => !n.is_object(),
            Val::Json(v) => v.is_array(),
            _ => false,
        }
    }

    /// The value as JSON; `None` for `undefined`.
    pub(crate) fn into_json(self) -> Option<Value> {
        Some(match self {
            Val::Undefined => return None,
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Int(i) => Value::from(i),
            Val::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Owned(s) => Value::String(s),
            Val::Node(n) => n.to_value(),
            Val::Json(v) => v.into_owned(),
        })
    }
}

fn number<'a>(n: &serde_json::Number) -> Val<'a> {
    if let Some(i) = n.as_i64() {
        Val::Int(i)
    } else {
        n.as_f64().map_or(Val::Undefined, Val::Float)
    }
}

/// Compares two primitives of the same type; `None` when the types differ.
///
/// Numbers compare by value whether integer or not; strings by code point (byte order);
/// `false < true`; `null` equals `null`.
pub(crate) fn compare(a: Prim<'_>, b: Prim<'_>) -> Option<Ordering> {
    match (a, b) {
        (Prim::Null, Prim::Null) => Some(Ordering::Equal),
        (Prim::Bool(x), Prim::Bool(y)) => Some(x.cmp(&y)),
        (Prim::Int(x), Prim::Int(y)) => Some(x.cmp(&y)),
        (Prim::Int(x), Prim::Float(y)) => cmp_int_float(x, y),
        (Prim::Float(x), Prim::Int(y)) => cmp_int_float(y, x).map(Ordering::reverse),
        (Prim::Float(x), Prim::Float(y)) => x.partial_cmp(&y),
        (Prim::Str(x), Prim::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Exact comparison of an integer with a float (no rounding of large integers).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // i64 range as floats: [-2^63, 2^63).
    if f >= 9_223_372_036_854_775_808.0 {
        return Some(Ordering::Less);
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // `t` is integral and in range, so the cast is exact.
    match i.cmp(&(t as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)),
        o => Some(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparisons_need_the_same_type() {
        assert_eq!(
            compare(Prim::Int(1), Prim::Float(1.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(Prim::Int(1), Prim::Float(1.5)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(Prim::Float(-0.5), Prim::Int(0)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(Prim::Int(-1), Prim::Float(-0.5)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(Prim::Int(i64::MAX), Prim::Float(9.3e18)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(
                Prim::Int(9_007_199_254_740_993),
                Prim::Float(9_007_199_254_740_992.0)
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare(Prim::Str("a"), Prim::Str("b")),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(Prim::Bool(false), Prim::Bool(true)),
            Some(Ordering::Less)
        );
        assert_eq!(compare(Prim::Null, Prim::Null), Some(Ordering::Equal));
        assert_eq!(compare(Prim::Str("1"), Prim::Int(1)), None);
        assert_eq!(compare(Prim::Null, Prim::Bool(false)), None);
    }

    #[test]
    fn json_conversions() {
        let v = json!({"a": [1, 2.5, "x", null, true]});
        assert!(Val::from_json(&v).is_object());
        assert_eq!(Val::from_json(&json!(2.5)), Val::Float(2.5));
        assert_eq!(Val::from_json(&json!(3)), Val::Int(3));
        assert_eq!(Val::from_owned_json(json!("s")), Val::Owned("s".into()));
        assert_eq!(Val::Undefined.into_json(), None);
        assert_eq!(Val::Owned("s".into()).into_json(), Some(json!("s")));
        assert!(Val::from_json(&json!([1])).is_array());
        assert_eq!(Val::from_u64(u64::MAX), Val::Float(u64::MAX as f64));
    }
}
