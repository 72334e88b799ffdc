//! Compiling a syntax tree into the evaluation form: paths resolved to their roots, constants
//! converted once, `AND`/`OR` chains flattened, `IN` lists turned into sorted sets.

use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{BinaryOp, Expr, Function, Literal};
use super::paths::{canonical, resolve, Resolved, Root};
use super::value::{compare, Prim, Val};
use crate::doc::StrConst;

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) enum CExpr {
    Const(Const),
    Path(Resolved),
    Not(Box<CExpr>),
    Neg(Box<CExpr>),
    And(Vec<CExpr>),
    Or(Vec<CExpr>),
    Cmp(CmpOp, Box<CExpr>, Box<CExpr>),
    Arith(ArithOp, Box<CExpr>, Box<CExpr>),
    In {
        expr: Box<CExpr>,
        set: InSet,
        negated: bool,
    },
    Call(Function, Vec<CExpr>),
    /// `path op constant` where the path reads a document and the constant is a primitive:
    /// compared on the stored bytes, without building a value (see [`fast`]).
    CmpConst {
        op: CmpOp,
        path: Resolved,
        c: Const,
        /// `c` prepared for equality tests, when it is a string.
        text: Option<StrConst>,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The comparison a binary operator is, if it is one.
    pub(crate) fn of(op: BinaryOp) -> Option<CmpOp> {
        Some(match op {
            BinaryOp::Eq => CmpOp::Eq,
            BinaryOp::Ne => CmpOp::Ne,
            BinaryOp::Lt => CmpOp::Lt,
            BinaryOp::Le => CmpOp::Le,
            BinaryOp::Gt => CmpOp::Gt,
            BinaryOp::Ge => CmpOp::Ge,
            _ => return None,
        })
    }

    /// The operator with its operands swapped: `a op b` is `b op.flip() a`.
    pub(crate) fn flip(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }

    pub(crate) fn test(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A constant, converted once.
#[derive(Debug, Clone)]
pub(crate) enum Const {
    Undefined,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Json(Value),
}

impl Const {
    fn new(l: &Literal) -> Const {
        match l {
            Literal::Undefined => Const::Undefined,
            Literal::Null => Const::Null,
            Literal::Bool(b) => Const::Bool(*b),
            Literal::Int(i) => Const::Int(*i),
            Literal::Float(f) => Const::Float(*f),
            Literal::Str(s) => Const::Str(s.as_str().into()),
            Literal::Array(_) => Const::Json(literal_json(l)),
        }
    }

    /// The constant as a primitive (`None` for `undefined` and arrays).
    pub(crate) fn prim(&self) -> Option<Prim<'_>> {
        Some(match self {
            Const::Null => Prim::Null,
            Const::Bool(b) => Prim::Bool(*b),
            Const::Int(i) => Prim::Int(*i),
            Const::Float(f) => Prim::Float(*f),
            Const::Str(s) => Prim::Str(s),
            Const::Undefined | Const::Json(_) => return None,
        })
    }

    pub(crate) fn val(&self) -> Val<'_> {
        match self {
            Const::Undefined => Val::Undefined,
            Const::Null => Val::Null,
            Const::Bool(b) => Val::Bool(*b),
            Const::Int(i) => Val::Int(*i),
            Const::Float(f) => Val::Float(*f),
            Const::Str(s) => Val::Str(s),
            Const::Json(v) => Val::from_json(v),
        }
    }
}

/// A literal as JSON (`undefined` never occurs inside arrays; alone it maps to `null`).
pub(crate) fn literal_json(l: &Literal) -> Value {
    match l {
        Literal::Undefined | Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => Value::from(*i),
        Literal::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Literal::Str(s) => Value::String(s.clone()),
        Literal::Array(items) => Value::Array(items.iter().map(literal_json).collect()),
    }
}

/// The primitive members of an `IN` list, sorted for binary search. Objects and arrays in the
/// list never equal anything and are dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct InSet {
    strs: Vec<Box<str>>,
    ints: Vec<i64>,
    floats: Vec<f64>,
    has_true: bool,
    has_false: bool,
    has_null: bool,
}

/// Folds `-0.0` into `0.0` so `total_cmp` agrees with `==`.
fn norm(f: f64) -> f64 {
    if f == 0.0 {
        0.0
    } else {
        f
    }
}

impl InSet {
    fn new(list: &[Literal]) -> InSet {
        let mut s = InSet::default();
        for l in list {
            match l {
                Literal::Null => s.has_null = true,
                Literal::Bool(true) => s.has_true = true,
                Literal::Bool(false) => s.has_false = true,
                Literal::Int(i) => s.ints.push(*i),
                Literal::Float(f) => s.floats.push(norm(*f)),
                Literal::Str(x) => s.strs.push(x.as_str().into()),
                Literal::Undefined | Literal::Array(_) => {}
            }
        }
        s.strs.sort();
        s.strs.dedup();
        s.ints.sort_unstable();
        s.ints.dedup();
        s.floats.sort_by(f64::total_cmp);
        s.floats.dedup();
        s
    }

    /// Whether `p` equals a member (numbers by value).
    pub(crate) fn contains(&self, p: Prim<'_>) -> bool {
        let has_float = |f: f64| {
            self.floats
                .binary_search_by(|x| x.total_cmp(&norm(f)))
                .is_ok()
        };
        match p {
            Prim::Null => self.has_null,
            Prim::Bool(true) => self.has_true,
            Prim::Bool(false) => self.has_false,
            Prim::Str(x) => self.strs.binary_search_by(|s| (**s).cmp(x)).is_ok(),
            Prim::Int(i) => {
                self.ints.binary_search(&i).is_ok()
                    || (has_float(i as f64)
                        && compare(Prim::Int(i), Prim::Float(i as f64)) == Some(Ordering::Equal))
            }
            Prim::Float(f) => {
                has_float(f)
                    || (f.fract() == 0.0
                        && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
                        && self.ints.binary_search(&(f as i64)).is_ok())
            }
        }
    }
}

/// Compiles an expression.
pub(crate) fn compile(e: &Expr) -> CExpr {
    fast(compile_plain(e))
}

/// Compiles an expression into the reference form the fast one is tested against: no
/// [`CExpr::CmpConst`] and no prepared lookups.
#[cfg(test)]
pub(crate) fn compile_reference(e: &Expr) -> CExpr {
    fn plain(e: CExpr) -> CExpr {
        let b = |x: Box<CExpr>| Box::new(plain(*x));
        match e {
            CExpr::Path(p) => CExpr::Path(p.plain()),
            CExpr::Not(x) => CExpr::Not(b(x)),
            CExpr::Neg(x) => CExpr::Neg(b(x)),
            CExpr::And(v) => CExpr::And(v.into_iter().map(plain).collect()),
            CExpr::Or(v) => CExpr::Or(v.into_iter().map(plain).collect()),
            CExpr::Cmp(op, l, r) => CExpr::Cmp(op, b(l), b(r)),
            CExpr::Arith(op, l, r) => CExpr::Arith(op, b(l), b(r)),
            CExpr::In { expr, set, negated } => CExpr::In {
                expr: b(expr),
                set,
                negated,
            },
            CExpr::Call(f, args) => CExpr::Call(f, args.into_iter().map(plain).collect()),
            CExpr::CmpConst { op, path, c, .. } => CExpr::Cmp(
                op,
                Box::new(CExpr::Path(path.plain())),
                Box::new(CExpr::Const(c)),
            ),
            e @ CExpr::Const(_) => e,
        }
    }
    plain(compile_plain(e))
}

fn cmp_const(op: CmpOp, path: Resolved, c: Const) -> CExpr {
    let text = match &c {
        Const::Str(s) => Some(StrConst::new(s)),
        _ => None,
    };
    CExpr::CmpConst { op, path, c, text }
}

/// Rewrites comparisons of a document path with a primitive constant (either way round)
/// into [`CExpr::CmpConst`].
fn fast(e: CExpr) -> CExpr {
    let b = |x: Box<CExpr>| Box::new(fast(*x));
    let in_doc =
        |p: &Resolved| matches!(p.root, Root::Tags | Root::Props(_) | Root::Configurations);
    match e {
        CExpr::Cmp(op, l, r) => match (*l, *r) {
            (CExpr::Path(path), CExpr::Const(c)) if in_doc(&path) && c.prim().is_some() => {
                cmp_const(op, path, c)
            }
            (CExpr::Const(c), CExpr::Path(path)) if in_doc(&path) && c.prim().is_some() => {
                cmp_const(op.flip(), path, c)
            }
            (l, r) => CExpr::Cmp(op, b(Box::new(l)), b(Box::new(r))),
        },
        CExpr::Not(x) => CExpr::Not(b(x)),
        CExpr::Neg(x) => CExpr::Neg(b(x)),
        CExpr::And(v) => CExpr::And(v.into_iter().map(fast).collect()),
        CExpr::Or(v) => CExpr::Or(v.into_iter().map(fast).collect()),
        CExpr::Arith(op, l, r) => CExpr::Arith(op, b(l), b(r)),
        CExpr::In { expr, set, negated } => CExpr::In {
            expr: b(expr),
            set,
            negated,
        },
        CExpr::Call(f, args) => CExpr::Call(f, args.into_iter().map(fast).collect()),
        e @ (CExpr::Const(_) | CExpr::Path(_) | CExpr::CmpConst { .. }) => e,
    }
}

/// Compiles an expression the plain way: every operation a node of its own.
fn compile_plain(e: &Expr) -> CExpr {
    match e {
        Expr::Literal(l) => CExpr::Const(Const::new(l)),
        Expr::Path(p) => CExpr::Path(resolve(&canonical(p))),
        Expr::Not(x) => CExpr::Not(Box::new(compile_plain(x))),
        Expr::Neg(x) => CExpr::Neg(Box::new(compile_plain(x))),
        Expr::Binary { op, left, right } => {
            let (mut l, mut r) = (
                Box::new(compile_plain(left)),
                Box::new(compile_plain(right)),
            );
            if matches!(op, BinaryOp::Eq | BinaryOp::Ne) {
                fold_status(&mut l, &mut r);
                fold_status(&mut r, &mut l);
            }
            match op {
                BinaryOp::And => flatten(*l, *r, true),
                BinaryOp::Or => flatten(*l, *r, false),
                BinaryOp::Eq => CExpr::Cmp(CmpOp::Eq, l, r),
                BinaryOp::Ne => CExpr::Cmp(CmpOp::Ne, l, r),
                BinaryOp::Lt => CExpr::Cmp(CmpOp::Lt, l, r),
                BinaryOp::Le => CExpr::Cmp(CmpOp::Le, l, r),
                BinaryOp::Gt => CExpr::Cmp(CmpOp::Gt, l, r),
                BinaryOp::Ge => CExpr::Cmp(CmpOp::Ge, l, r),
                BinaryOp::Add => CExpr::Arith(ArithOp::Add, l, r),
                BinaryOp::Sub => CExpr::Arith(ArithOp::Sub, l, r),
                BinaryOp::Mul => CExpr::Arith(ArithOp::Mul, l, r),
                BinaryOp::Div => CExpr::Arith(ArithOp::Div, l, r),
                BinaryOp::Rem => CExpr::Arith(ArithOp::Rem, l, r),
            }
        }
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let mut expr = Box::new(compile_plain(expr));
            let set = if is_status(&expr) {
                expr = Box::new(lowered(*expr));
                let folded: Vec<Literal> = list.iter().map(lowercase).collect();
                InSet::new(&folded)
            } else {
                InSet::new(list)
            };
            CExpr::In {
                expr,
                set,
                negated: *negated,
            }
        }
        Expr::Call { function, args } => {
            CExpr::Call(*function, args.iter().map(compile_plain).collect())
        }
    }
}

/// Whether `e` reads a configuration's status on the twin (`configurations.[[id]].status`),
/// which the hub writes in lowercase and IoT Hub's documented queries compare with
/// `'Applied'`: such a comparison with a string constant compares `LOWER(status)` with the
/// lowercased constant, so it ignores case on both sides.
fn is_status(e: &CExpr) -> bool {
    matches!(e, CExpr::Path(p) if p.root == Root::Configurations
        && p.rest.len() == 2
        && p.rest[1] == "status")
}

fn lowercase(l: &Literal) -> Literal {
    match l {
        Literal::Str(s) => Literal::Str(s.to_lowercase()),
        other => other.clone(),
    }
}

/// `LOWER(e)`.
fn lowered(e: CExpr) -> CExpr {
    CExpr::Call(Function::Lower, vec![e])
}

/// When `path` is a configuration status (see [`is_status`]) and `constant` a string:
/// `LOWER(path)` and the lowercased constant.
fn fold_status(path: &mut Box<CExpr>, constant: &mut Box<CExpr>) {
    if !is_status(path) {
        return;
    }
    if let CExpr::Const(Const::Str(s)) = constant.as_mut() {
        *s = s.to_lowercase().into();
        let p = std::mem::replace(path.as_mut(), CExpr::Const(Const::Undefined));
        **path = lowered(p);
    }
}

/// Joins two operands of `AND` (or `OR`) into one n-ary node.
fn flatten(l: CExpr, r: CExpr, and: bool) -> CExpr {
    let mut items = Vec::new();
    for x in [l, r] {
        match (x, and) {
            (CExpr::And(v), true) | (CExpr::Or(v), false) => items.extend(v),
            (x, _) => items.push(x),
        }
    }
    if and {
        CExpr::And(items)
    } else {
        CExpr::Or(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_sets_compare_numbers_by_value() {
        let s = InSet::new(&[
            Literal::Int(1),
            Literal::Float(2.5),
            Literal::Float(-0.0),
            Literal::Str("b".into()),
            Literal::Str("a".into()),
            Literal::Bool(true),
            Literal::Array(vec![Literal::Int(7)]),
        ]);
        assert!(s.contains(Prim::Float(1.0)));
        assert!(s.contains(Prim::Int(1)));
        assert!(s.contains(Prim::Float(2.5)));
        assert!(s.contains(Prim::Int(0)));
        assert!(s.contains(Prim::Float(0.0)));
        assert!(!s.contains(Prim::Int(2)));
        assert!(!s.contains(Prim::Int(7)));
        assert!(s.contains(Prim::Str("a")));
        assert!(!s.contains(Prim::Str("c")));
        assert!(s.contains(Prim::Bool(true)));
        assert!(!s.contains(Prim::Bool(false)));
        assert!(!s.contains(Prim::Null));
    }

    #[test]
    fn and_or_chains_flatten() {
        let e =
            super::super::parser::parse_condition("a = 1 AND b = 2 AND (c = 3 OR d = 4 OR e = 5)")
                .unwrap_or_else(|e| panic!("{e}"));
        let CExpr::And(items) = compile(&e) else {
            panic!("and expected");
        };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[2], CExpr::Or(v) if v.len() == 3));
    }
}
