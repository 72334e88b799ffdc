//! Evaluating compiled expressions over a twin.
//!
//! Paths were resolved at compile time, so a lookup is a match on the root and a few binary
//! searches in the twin's document; strings and numbers are borrowed, nothing is allocated
//! unless a function builds a new string or the path reads a rarely queried structure (a
//! timestamp, `$metadata` subtree, `x509Thumbprint`, ...).

use serde_json::Value;

use super::ast::Function;
use super::compile::{ArithOp, CExpr, CmpOp, Const};
use super::paths::{Field, Resolved, Root, Section};
use super::value::{compare, Prim, Val};
use crate::doc::{Doc, NodeRef, Raw, StrConst};
use crate::twin::Twin;

/// Evaluates `e` over `twin`.
pub(crate) fn eval<'a>(e: &'a CExpr, twin: &'a Twin) -> Val<'a> {
    match e {
        CExpr::Const(c) => c.val(),
        CExpr::Path(p) => path(p, twin),
        CExpr::And(_) | CExpr::Or(_) | CExpr::Not(_) | CExpr::CmpConst { .. } => {
            truth(e, twin).map_or(Val::Undefined, Val::Bool)
        }
        CExpr::Cmp(op, l, r) => {
            let (l, r) = (eval(l, twin), eval(r, twin));
            match (l.prim(), r.prim()) {
                (Some(a), Some(b)) => {
                    compare(a, b).map_or(Val::Undefined, |o| Val::Bool(op.test(o)))
                }
                _ => Val::Undefined,
            }
        }
        CExpr::In { expr, set, negated } => match eval(expr, twin).prim() {
            Some(p) => Val::Bool(set.contains(p) != *negated),
            None => Val::Undefined,
        },
        CExpr::Neg(x) => match eval(x, twin) {
            Val::Int(i) => i.checked_neg().map_or(Val::Float(-(i as f64)), Val::Int),
            Val::Float(f) => Val::Float(-f),
            _ => Val::Undefined,
        },
        CExpr::Arith(op, l, r) => arith(*op, eval(l, twin), eval(r, twin)),
        CExpr::Call(f, args) => call(*f, args, twin),
    }
}

/// Evaluates a condition: `true` only for the Boolean `true`.
pub(crate) fn test(e: &CExpr, twin: &Twin) -> bool {
    truth(e, twin) == Some(true)
}

/// Evaluates `e` as a truth value: `Some` for a Boolean, `None` for anything else (mostly
/// `undefined`). The logic operators and [`CExpr::CmpConst`] are evaluated here without
/// building values.
pub(crate) fn truth(e: &CExpr, twin: &Twin) -> Option<bool> {
    match e {
        CExpr::And(items) => {
            let mut all_true = true;
            for x in items {
                match truth(x, twin) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => all_true = false,
                }
            }
            all_true.then_some(true)
        }
        CExpr::Or(items) => {
            let mut all_false = true;
            for x in items {
                match truth(x, twin) {
                    Some(true) => return Some(true),
                    Some(false) => {}
                    None => all_false = false,
                }
            }
            all_false.then_some(false)
        }
        CExpr::Not(x) => truth(x, twin).map(|b| !b),
        CExpr::CmpConst { op, path, c, text } => cmp_const(*op, path, c, text.as_ref(), twin),
        e => general_truth(e, twin),
    }
}

/// [`truth`] of the expressions without a shortcut, through the general evaluator (kept out
/// of line so the shortcuts stay small).
#[inline(never)]
fn general_truth(e: &CExpr, twin: &Twin) -> Option<bool> {
    match eval(e, twin) {
        Val::Bool(b) => Some(b),
        _ => None,
    }
}

/// `path op c` on the stored value: `None` (undefined) when the path is missing or the types
/// differ, as [`compare`] decides.
#[inline]
fn cmp_const(
    op: CmpOp,
    p: &Resolved,
    c: &Const,
    text: Option<&StrConst>,
    twin: &Twin,
) -> Option<bool> {
    let doc = doc_of(&p.root, twin)?;
    let raw = if p.probes.len() == p.rest.len() {
        if let (Some(text), CmpOp::Eq | CmpOp::Ne) = (text, op) {
            return doc
                .probe_str_eq(&p.probes, text)
                .map(|eq| eq == (op == CmpOp::Eq));
        }
        doc.probe_raw(&p.probes)?
    } else {
        doc.get_path(&p.rest)?.raw()
    };
    let o = match (raw, c) {
        (Raw::Str(b), Const::Str(s)) => b.cmp(s.as_bytes()),
        (Raw::Str(_) | Raw::Array | Raw::Object, _) => return None,
        (Raw::Null, c) => compare(Prim::Null, c.prim()?)?,
        (Raw::Bool(b), c) => compare(Prim::Bool(b), c.prim()?)?,
        (Raw::Int(i), c) => compare(Prim::Int(i), c.prim()?)?,
        (Raw::Float(f), c) => compare(Prim::Float(f), c.prim()?)?,
    };
    Some(op.test(o))
}

/// The document a document-rooted path reads.
#[inline]
pub(crate) fn doc_of<'a>(root: &Root, twin: &'a Twin) -> Option<&'a Doc> {
    match root {
        Root::Tags => Some(twin.tags()),
        Root::Props(s) => Some(section(twin, *s).doc()),
        Root::Configurations => Some(twin.configurations()),
        _ => None,
    }
}

/// The node a document-rooted path names, through its prepared lookups when it has them.
#[inline]
pub(crate) fn doc_node<'a>(doc: &'a Doc, p: &'a Resolved) -> Option<NodeRef<'a>> {
    if p.probes.len() == p.rest.len() {
        doc.probe_path(&p.probes)
    } else {
        doc.get_path(&p.rest)
    }
}

fn finite<'a>(f: f64) -> Val<'a> {
    if f.is_finite() {
        Val::Float(f)
    } else {
        Val::Undefined
    }
}

fn arith<'a>(op: ArithOp, l: Val<'a>, r: Val<'a>) -> Val<'a> {
    match (l, r) {
        (Val::Int(a), Val::Int(b)) => {
            let exact = match op {
                ArithOp::Add => a.checked_add(b),
                ArithOp::Sub => a.checked_sub(b),
                ArithOp::Mul => a.checked_mul(b),
                ArithOp::Div => {
                    if b == 0 {
                        return Val::Undefined;
                    }
                    match a.checked_rem(b) {
                        Some(0) => a.checked_div(b),
                        _ => return finite(a as f64 / b as f64),
                    }
                }
                ArithOp::Rem => {
                    if b == 0 {
                        return Val::Undefined;
                    }
                    // i64::MIN % -1 overflows; its value is 0.
                    Some(a.checked_rem(b).unwrap_or(0))
                }
            };
            match exact {
                Some(v) => Val::Int(v),
                None => float_arith(op, a as f64, b as f64),
            }
        }
        (Val::Int(a), Val::Float(b)) => float_arith(op, a as f64, b),
        (Val::Float(a), Val::Int(b)) => float_arith(op, a, b as f64),
        (Val::Float(a), Val::Float(b)) => float_arith(op, a, b),
        _ => Val::Undefined,
    }
}

fn float_arith<'a>(op: ArithOp, a: f64, b: f64) -> Val<'a> {
    match op {
        ArithOp::Add => finite(a + b),
        ArithOp::Sub => finite(a - b),
        ArithOp::Mul => finite(a * b),
        ArithOp::Div | ArithOp::Rem if b == 0.0 => Val::Undefined,
        ArithOp::Div => finite(a / b),
        ArithOp::Rem => finite(a % b),
    }
}

fn call<'a>(f: Function, args: &'a [CExpr], twin: &'a Twin) -> Val<'a> {
    let arg = |i: usize| args.get(i).map_or(Val::Undefined, |a| eval(a, twin));
    let x = arg(0);
    match f {
        Function::IsDefined => Val::Bool(!matches!(x, Val::Undefined)),
        Function::IsNull => Val::Bool(matches!(x, Val::Null)),
        Function::IsBool => Val::Bool(matches!(x, Val::Bool(_))),
        Function::IsNumber => Val::Bool(matches!(x, Val::Int(_) | Val::Float(_))),
        Function::IsString => Val::Bool(x.as_str().is_some()),
        Function::IsObject => Val::Bool(x.is_object()),
        Function::IsArray => Val::Bool(x.is_array()),
        Function::IsPrimitive => Val::Bool(x.prim().is_some()),
        Function::Lower => x
            .as_str()
            .map_or(Val::Undefined, |s| Val::Owned(s.to_lowercase())),
        Function::Upper => x
            .as_str()
            .map_or(Val::Undefined, |s| Val::Owned(s.to_uppercase())),
        Function::Length => x
            .as_str()
            .map_or(Val::Undefined, |s| Val::from_u64(s.chars().count() as u64)),
        Function::StartsWith | Function::EndsWith | Function::Contains => {
            let y = arg(1);
            match (x.as_str(), y.as_str()) {
                (Some(s), Some(t)) => Val::Bool(match f {
                    Function::StartsWith => s.starts_with(t),
                    Function::EndsWith => s.ends_with(t),
                    _ => s.contains(t),
                }),
                _ => Val::Undefined,
            }
        }
    }
}

fn section(twin: &Twin, s: Section) -> &crate::twin::Section {
    match s {
        Section::Desired => twin.desired(),
        Section::Reported => twin.reported(),
    }
}

fn opt_str(s: &Option<String>) -> Val<'_> {
    s.as_deref().map_or(Val::Undefined, Val::Str)
}

fn opt_time<'a>(t: Option<crate::clock::Timestamp>) -> Val<'a> {
    t.map_or(Val::Undefined, |t| Val::Owned(t.to_string()))
}

/// Reads a resolved path from the twin.
pub(crate) fn path<'a>(p: &'a Resolved, twin: &'a Twin) -> Val<'a> {
    match &p.root {
        Root::Tags => Val::from_opt_node(doc_node(twin.tags(), p)),
        Root::Props(s) => Val::from_opt_node(doc_node(section(twin, *s).doc(), p)),
        Root::Field(f) => field(*f, twin),
        Root::SectionVersion(s) => Val::from_u64(section(twin, *s).version()),
        Root::LastUpdated(s) => opt_time(section(twin, *s).last_updated(&p.rest)),
        Root::LastUpdatedVersion(s) => section(twin, *s)
            .last_updated_version(&p.rest)
            .map_or(Val::Undefined, Val::from_u64),
        Root::Configurations => Val::from_opt_node(doc_node(twin.configurations(), p)),
        Root::Json => json_path(twin.to_json(), &p.rest),
        Root::Missing => Val::Undefined,
    }
}

fn json_path<'a>(mut v: Value, path: &[String]) -> Val<'a> {
    for seg in path {
        v = match v {
            Value::Object(mut m) => match m.remove(seg) {
                Some(x) => x,
                None => return Val::Undefined,
            },
            _ => return Val::Undefined,
        };
    }
    Val::from_owned_json(v)
}

fn field(f: Field, t: &Twin) -> Val<'_> {
    match f {
        Field::DeviceId => Val::Str(t.device_id.as_str()),
        Field::ModuleId => t
            .module_id
            .as_ref()
            .map_or(Val::Undefined, |m| Val::Str(m.as_str())),
        Field::Etag => Val::Str(t.etag().as_str()),
        Field::DeviceEtag => t
            .identity
            .etag
            .as_ref()
            .map_or(Val::Undefined, |e| Val::Str(e.as_str())),
        Field::Version => Val::from_u64(t.version()),
        Field::Status => Val::Str(t.identity.status.as_str()),
        Field::StatusReason => opt_str(&t.identity.status_reason),
        Field::StatusUpdateTime => opt_time(t.identity.status_update_time),
        Field::ConnectionState => Val::Str(t.identity.connection_state.as_str()),
        Field::LastActivityTime => opt_time(t.identity.last_activity_time),
        Field::CloudToDeviceMessageCount => Val::from_u64(t.identity.cloud_to_device_message_count),
        Field::AuthenticationType => Val::Str(t.identity.authentication_type.as_str()),
        Field::DeviceScope => opt_str(&t.device_scope),
        Field::ModelId => opt_str(&t.model_id),
    }
}
