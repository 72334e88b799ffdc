//! Property tests: the fast evaluation (prepared lookups with remembered positions, stored
//! comparisons, raw GROUP BY keys, reading ahead) gives the same results as the plain one.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::aggregate::key_parts_agree;
use super::ast::{BinaryOp, Expr, Function, Literal, Path};
use super::compile::{compile, compile_reference};
use super::eval::{eval, test};
use super::paths::{canonical, resolve};
use super::Query;
use crate::twin::Twin;

/// Keys shared by documents and paths, so paths often exist: short, exactly 8 bytes (one
/// word), long, and one that sorts between the others.
const KEYS: [&str; 6] = ["a", "b", "region", "location", "longer-than-8", "m"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS.to_vec()).prop_map(str::to_string)
}

fn string() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "x",
        "us-west",
        "us-east",
        "12345678",
        "longer string",
        "é",
    ])
    .prop_map(str::to_string)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        prop::sample::select(vec![i64::MIN, i64::MAX]).prop_map(Value::from),
        prop::sample::select(vec![0.5, -0.0, 1.0, 2.5, 1e300]).prop_map(|f| json!(f)),
        string().prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

fn twin() -> impl Strategy<Value = Twin> {
    (object(), object(), object(), any::<bool>()).prop_map(|(tags, desired, reported, module)| {
        let mut v = json!({
            "deviceId": "d1",
            "tags": tags,
            "properties": {"desired": desired, "reported": reported},
        });
        if module {
            v["moduleId"] = json!("m1");
        }
        serde_json::from_value(v).unwrap_or_else(|e| panic!("generated twin: {e}"))
    })
}

fn path() -> impl Strategy<Value = Path> {
    let root = prop::sample::select(vec![
        vec!["tags"],
        vec!["properties", "reported"],
        vec!["properties", "desired"],
        vec!["configurations"],
    ]);
    (root, prop::collection::vec(key(), 0..3))
        .prop_map(|(root, rest)| Path::new(root.into_iter().map(str::to_string).chain(rest)))
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        Just(Literal::Undefined),
        any::<bool>().prop_map(Literal::Bool),
        (-3i64..3).prop_map(Literal::Int),
        prop::sample::select(vec![i64::MIN, i64::MAX]).prop_map(Literal::Int),
        prop::sample::select(vec![0.5, -0.0, 1.0, 2.5, 1e300]).prop_map(Literal::Float),
        string().prop_map(Literal::Str),
        Just(Literal::Array(vec![Literal::Int(1)])),
    ]
}

fn comparison() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ])
}

fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
    }
}

fn condition() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        4 => (path(), comparison(), literal()).prop_map(|(p, op, l)| binary(op, Expr::Path(p), Expr::Literal(l))),
        2 => (literal(), comparison(), path()).prop_map(|(l, op, p)| binary(op, Expr::Literal(l), Expr::Path(p))),
        1 => (path(), comparison(), path()).prop_map(|(a, op, b)| binary(op, Expr::Path(a), Expr::Path(b))),
        1 => path().prop_map(|p| Expr::Call { function: Function::IsDefined, args: vec![Expr::Path(p)] }),
        1 => (path(), prop::collection::vec(literal(), 0..3), any::<bool>()).prop_map(|(p, list, negated)| {
            let list = list.into_iter().filter(|l| *l != Literal::Undefined).collect();
            Expr::In { expr: Box::new(Expr::Path(p)), list, negated }
        }),
        1 => Just(Expr::Literal(Literal::Bool(true))),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| binary(BinaryOp::And, l, r)),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| binary(BinaryOp::Or, l, r)),
            inner.prop_map(|x| Expr::Not(Box::new(x))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Conditions compiled the fast way and the plain way agree on every twin, with the
    /// remembered positions carried from twin to twin as in a scan.
    #[test]
    fn fast_conditions_agree_with_plain_ones(
        cond in condition(),
        twins in prop::collection::vec(twin(), 1..8),
    ) {
        let fast = compile(&cond);
        let plain = compile_reference(&cond);
        for twin in twins.iter().chain(twins.iter().rev()) {
            prop_assert_eq!(eval(&fast, twin), eval(&plain, twin), "{}", cond);
            prop_assert_eq!(test(&fast, twin), test(&plain, twin), "{}", cond);
        }
    }

    /// GROUP BY keys read from stored values agree with the plain evaluation of the path.
    #[test]
    fn raw_group_keys_agree_with_plain_ones(
        p in path(),
        twins in prop::collection::vec(twin(), 1..8),
    ) {
        let k = resolve(&canonical(&p));
        for twin in twins.iter().chain(twins.iter().rev()) {
            prop_assert!(key_parts_agree(&k, twin), "{}", p);
        }
    }

    /// Reading ahead changes nothing: a scan gives the twins that `matches` accepts, in order,
    /// over fleets longer than a read-ahead batch.
    #[test]
    fn scans_select_what_matches_accepts(
        cond in condition(),
        shapes in prop::collection::vec(twin(), 1..5),
        n in 0usize..70,
    ) {
        let q = Query::parse(&format!("SELECT * FROM devices WHERE {cond}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let fleet: Vec<Twin> = (0..n).map(|i| shapes[i % shapes.len()].clone()).collect();
        let scanned: Vec<*const Twin> = q
            .filter(&fleet)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|t| t as *const Twin)
            .collect();
        let expected: Vec<*const Twin> = fleet
            .iter()
            .filter(|t| t.module_id.is_none() && q.matches(t))
            .map(|t| t as *const Twin)
            .collect();
        prop_assert_eq!(scanned, expected);
    }

    /// Aggregates over a scan see exactly the twins that `matches` accepts.
    #[test]
    fn grouped_scans_see_what_matches_accepts(
        cond in condition(),
        key in path(),
        shapes in prop::collection::vec(twin(), 1..5),
        n in 0usize..70,
    ) {
        let q = Query::parse(&format!(
            "SELECT {key} AS k, COUNT() AS n FROM devices WHERE {cond} GROUP BY {key}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let fleet: Vec<Twin> = (0..n).map(|i| shapes[i % shapes.len()].clone()).collect();
        let matching: Vec<&Twin> = fleet
            .iter()
            .filter(|t| t.module_id.is_none() && q.matches(t))
            .collect();
        prop_assert_eq!(
            q.execute(&fleet).unwrap_or_else(|e| panic!("{e}")),
            q.execute(matching).unwrap_or_else(|e| panic!("{e}"))
        );
    }
}

/// The remembered lookup positions live in atomics, so compiled queries stay shareable
/// between threads and unwind-safe, as before.
#[test]
fn queries_stay_send_sync_and_unwind_safe() {
    fn check<T: Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    check::<Query>();
    check::<super::Condition>();
}
