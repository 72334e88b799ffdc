//! Evaluating compiled expressions over a twin.
//!
//! Paths were resolved at compile time, so a lookup is a match on the root and a few binary
//! searches in the twin's document; strings and numbers are borrowed, nothing is allocated
//! unless a function builds a new string or the path reads a rarely queried structure (a
//! timestamp, `$metadata` subtree, `x509Thumbprint`, ...).

use serde_json::Value;

use super::ast::Function;
use super::compile::{ArithOp, CExpr};
use super::paths::{Field, Resolved, Root, Section};
use super::value::{compare, Val};
use crate::twin::Twin;

/// Evaluates `e` over `twin`.
pub(crate) fn eval<'a>(e: &'a CExpr, twin: &'a Twin) -> Val<'a> {
    match e {
        CExpr::Const(c) => c.val(),
        CExpr::Path(p) => path(p, twin),
        CExpr::And(items) => {
            let mut all_true = true;
            for x in items {
                match eval(x, twin) {
                    Val::Bool(false) => return Val::Bool(false),
                    Val::Bool(true) => {}
                    _ => all_true = false,
                }
            }
            if all_true {
                Val::Bool(true)
            } else {
                Val::Undefined
            }
        }
        CExpr::Or(items) => {
            let mut all_false = true;
            for x in items {
                match eval(x, twin) {
                    Val::Bool(true) => return Val::Bool(true),
                    Val::Bool(false) => {}
                    _ => all_false = false,
                }
            }
            if all_false {
                Val::Bool(false)
            } else {
                Val::Undefined
            }
        }
        CExpr::Not(x) => match eval(x, twin) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Undefined,
        },
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
    eval(e, twin).is_true()
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
        Root::Tags => Val::from_opt_node(twin.tags().get_path(&p.rest)),
        Root::Props(s) => Val::from_opt_node(section(twin, *s).doc().get_path(&p.rest)),
        Root::Field(f) => field(*f, twin),
        Root::SectionVersion(s) => Val::from_u64(section(twin, *s).version()),
        Root::LastUpdated(s) => opt_time(section(twin, *s).last_updated(&p.rest)),
        Root::LastUpdatedVersion(s) => section(twin, *s)
            .last_updated_version(&p.rest)
            .map_or(Val::Undefined, Val::from_u64),
        Root::Configurations => Val::from_opt_node(twin.configurations().get_path(&p.rest)),
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
        Field::DeviceEtag => opt_str(&t.device_etag),
        Field::Version => Val::from_u64(t.version()),
        Field::Status => Val::Str(t.status.as_str()),
        Field::StatusReason => opt_str(&t.status_reason),
        Field::StatusUpdateTime => opt_time(t.status_update_time),
        Field::ConnectionState => Val::Str(t.connection_state.as_str()),
        Field::LastActivityTime => opt_time(t.last_activity_time),
        Field::CloudToDeviceMessageCount => Val::from_u64(t.cloud_to_device_message_count),
        Field::AuthenticationType => Val::Str(t.authentication_type.as_str()),
        Field::DeviceScope => opt_str(&t.device_scope),
        Field::ModelId => opt_str(&t.model_id),
    }
}
