//! Property test: printing a query and parsing the text gives back the same tree.

use proptest::prelude::*;

use super::ast::*;
use super::rules::output_names;
use super::{Condition, Query};

fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z_$][a-zA-Z0-9_$]{0,7}".prop_filter("not a keyword", |s| !is_keyword(s))
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z_$][a-zA-Z0-9_$]{0,7}",
        1 => "[a-z0-9 @#\\-é]{0,5}[a-z0-9 @#\\-é\\[]".prop_map(|s| s),
        1 => Just("select".to_string()),
    ]
}

fn path() -> impl Strategy<Value = Path> {
    (ident(), prop::collection::vec(segment(), 0..4)).prop_map(|(first, rest)| {
        let mut segments = vec![first];
        segments.extend(rest);
        Path { segments }
    })
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,8}",
        "\\PC{0,8}",
        ".{0,4}['\"\\\\\u{1}\n\t]{1,3}",
    ]
}

fn constant() -> impl Strategy<Value = Literal> {
    let leaf = prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<i64>().prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Literal::Float),
        (-1000i32..1000).prop_map(|n| Literal::Float(f64::from(n) / 8.0)),
        string().prop_map(Literal::Str),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Literal::Array)
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![1 => Just(Literal::Undefined), 8 => constant()]
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
    ])
}

pub(crate) fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        literal().prop_map(Expr::Literal),
        path().prop_map(Expr::Path),
    ];
    leaf.prop_recursive(5, 40, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            inner.clone().prop_map(|e| Expr::Neg(Box::new(e))),
            (binary_op(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| Expr::Binary {
                op,
                left: Box::new(l),
                right: Box::new(r),
            }),
            (
                inner.clone(),
                prop::collection::vec(constant(), 0..4),
                any::<bool>()
            )
                .prop_map(|(e, list, negated)| Expr::In {
                    expr: Box::new(e),
                    list,
                    negated,
                }),
            (
                prop::sample::select(Function::ALL.to_vec()),
                prop::collection::vec(inner, 2)
            )
                .prop_map(|(function, mut args)| {
                    args.truncate(function.arity());
                    Expr::Call { function, args }
                }),
        ]
    })
}

fn aggregate() -> impl Strategy<Value = Aggregate> {
    prop_oneof![
        Just(Aggregate::Count),
        expr().prop_map(Aggregate::Sum),
        expr().prop_map(Aggregate::Avg),
        path().prop_map(|p| Aggregate::Min(Expr::Path(p))),
        expr().prop_map(Aggregate::Max),
    ]
}

fn alias() -> impl Strategy<Value = Option<String>> {
    prop::option::of(ident())
}

fn plain_statement() -> impl Strategy<Value = Statement> {
    let items = prop::collection::vec(
        (expr(), alias()).prop_map(|(e, alias)| SelectItem {
            expr: SelectExpr::Expr(e),
            alias,
        }),
        1..4,
    );
    (
        prop::option::of(any::<u64>()),
        prop::option::of(items),
        prop::sample::select(vec![Collection::Devices, Collection::Modules]),
        prop::option::of(expr()),
    )
        .prop_map(|(top, items, from, condition)| Statement {
            top,
            select: items.map_or(Select::All, Select::Items),
            from,
            condition,
            group_by: Vec::new(),
        })
}

fn grouped_statement() -> impl Strategy<Value = Statement> {
    (
        prop::collection::vec(path(), 0..3),
        prop::collection::vec((prop::option::of(0usize..3), aggregate(), alias()), 1..4),
        prop::option::of(expr()),
        prop::option::of(0u64..1000),
    )
        .prop_map(|(group_by, picks, condition, top)| {
            let items = picks
                .into_iter()
                .map(|(pick, agg, alias)| {
                    let expr = match pick.and_then(|i| group_by.get(i)) {
                        Some(p) => SelectExpr::Expr(Expr::Path(p.clone())),
                        None => SelectExpr::Aggregate(agg),
                    };
                    SelectItem { expr, alias }
                })
                .collect();
            Statement {
                top,
                select: Select::Items(items),
                from: Collection::Devices,
                condition,
                group_by,
            }
        })
}

fn statement() -> impl Strategy<Value = Statement> {
    prop_oneof![
        3 => plain_statement(),
        2 => grouped_statement(),
        1 => prop::option::of(expr()).prop_map(|condition| Statement {
            top: None,
            select: Select::All,
            from: Collection::Jobs,
            condition,
            group_by: Vec::new(),
        }),
    ]
    .prop_filter("output names are unique", |st| match &st.select {
        Select::All => true,
        Select::Items(items) => {
            let mut names = output_names(items);
            let n = names.len();
            names.sort();
            names.dedup();
            names.len() == n
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn statement_round_trips(st in statement()) {
        let text = st.to_string();
        let parsed = Query::parse(&text);
        prop_assert!(parsed.is_ok(), "{text}\n{parsed:?}");
        let q = parsed.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(q.statement(), &st, "{}", text);
        // Printing is a fixed point.
        prop_assert_eq!(q.to_string(), text);
    }

    #[test]
    fn condition_round_trips(e in expr()) {
        let text = e.to_string();
        let parsed = Condition::parse(&text);
        prop_assert!(parsed.is_ok(), "{text}\n{parsed:?}");
        let c = parsed.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(c.expr(), &e, "{}", text);
    }
}
