//! The IoT Hub query language over twins: parse once, then match, execute or page.
//!
//! Operators find and target devices with this language, and the same conditions select the
//! twins of jobs and automatic configurations. The module is pure: it reads twins it is given
//! and does no I/O.
//!
//! ```
//! use iot_dm_core::query::Query;
//! use iot_dm_core::twin::Twin;
//! use serde_json::json;
//!
//! let twins: Vec<Twin> = [
//!     json!({"deviceId": "d1", "tags": {"location": {"region": "US"}},
//!            "properties": {"reported": {"telemetryConfig": {"sendFrequencyInSecs": 300, "status": "Success"}}}}),
//!     json!({"deviceId": "d2", "tags": {"location": {"region": "EU"}},
//!            "properties": {"reported": {"telemetryConfig": {"sendFrequencyInSecs": 30, "status": "Pending"}}}}),
//!     json!({"deviceId": "d3", "tags": {"location": {"region": "US"}},
//!            "properties": {"reported": {"telemetryConfig": {"sendFrequencyInSecs": 60, "status": "Success"}}}}),
//! ]
//! .into_iter()
//! .map(serde_json::from_value)
//! .collect::<Result<_, _>>()?;
//!
//! let q = Query::parse(
//!     "SELECT deviceId FROM devices WHERE tags.location.region = 'US' \
//!      AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
//! )?;
//! assert_eq!(q.execute(&twins)?, vec![json!({"deviceId": "d1"}), json!({"deviceId": "d3"})]);
//! assert!(q.matches(&twins[0]));
//!
//! let q = Query::parse(
//!     "select properties.reported.telemetryConfig.status as status, count() as numberOfDevices \
//!      from devices group by properties.reported.telemetryConfig.status",
//! )?;
//! assert_eq!(
//!     q.execute(&twins)?,
//!     vec![
//!         json!({"numberOfDevices": 1, "status": "Pending"}),
//!         json!({"numberOfDevices": 2, "status": "Success"}),
//!     ]
//! );
//! // Display prints the canonical form.
//! assert_eq!(
//!     q.to_string(),
//!     "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices \
//!      FROM devices GROUP BY properties.reported.telemetryConfig.status"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Grammar
//!
//! Keywords and function names are case-insensitive. Whitespace separates tokens anywhere.
//!
//! ```text
//! query      := SELECT [TOP int] select FROM collection [WHERE expr] [GROUP BY path {, path}]
//! select     := '*' | item {, item}
//! item       := (expr | aggregate) [AS identifier]
//! aggregate  := COUNT() | SUM(expr) | AVG(expr) | MIN(expr) | MAX(expr)
//! collection := devices | devices.modules | devices.jobs
//! expr       := and {OR and}
//! and        := not {AND not}
//! not        := NOT not | cmp
//! cmp        := sum {('=' | '!=' | '<>' | '<' | '>' | '<=' | '>=') sum | (IN | NIN) array}
//! sum        := product {('+' | '-') product}
//! product    := unary {('*' | '/' | '%') unary}
//! unary      := '-' unary | primary
//! primary    := constant | array | path | function '(' [expr {, expr}] ')' | '(' expr ')'
//! path       := identifier {'.' (identifier | '[[' any text but ']]' ']]')}
//! constant   := string | number | true | false | null | undefined
//! array      := '[' [element {, element}] ']'      element := constant but undefined | array
//! string     := '...' | "..."   escapes \' \" \\ \/ \b \f \n \r \t \uXXXX
//! number     := digits ['.' digits] [(e|E) [+|-] digits] | 0x hexdigits
//! identifier := (letter | '_' | '$') {letter | digit | '_' | '$'}
//! ```
//!
//! The reserved words (`SELECT TOP FROM WHERE GROUP BY AS AND OR NOT IN NIN TRUE FALSE NULL
//! UNDEFINED`) cannot start a path or be an alias, but may follow a `.` (`tags.group`); any
//! other name, such as one with a `-`, is written `[[...]]`: `configurations.[[cfg-1]].status`.
//! A query is at most [`MAX_QUERY_CHARS`] characters.
//!
//! Functions: [`IS_DEFINED`](Function::IsDefined) (true for `null`), `IS_NULL`, `IS_BOOL`,
//! `IS_NUMBER`, `IS_STRING`, `IS_OBJECT`, `IS_ARRAY`, `IS_PRIMITIVE`, `STARTSWITH`
//! (or `STARTS_WITH`), `ENDSWITH` (or `ENDS_WITH`), `CONTAINS`, `LOWER`, `UPPER`, `LENGTH`.
//! A call of an unknown function, or with the wrong number of arguments, is a parse error.
//!
//! # Paths
//!
//! A path reads the twin as IoT Hub prints it (`SELECT *`): `deviceId`, `moduleId`, `etag`,
//! `version`, `status`, `statusReason`, `statusUpdateTime`, `connectionState`,
//! `lastActivityTime`, `cloudToDeviceMessageCount`, `authenticationType`, `x509Thumbprint`,
//! `capabilities`, `deviceScope`, `parentScopes`, `modelId`, `tags...`, `properties.desired...`,
//! `properties.reported...` (each with `$version` and `$metadata...`), and
//! `configurations.[[id]]...` (a string compared with `=`, `!=` or `IN` to
//! `configurations.[[id]].status`, which the hub writes in lowercase, is lowercased first, so
//! `= 'Applied'` matches `applied`). Names the twin defines match case-insensitively (`DeviceId`);
//! names inside tags and properties are case-sensitive. Timestamps read as their IoT Hub
//! strings (`2016-03-30T16:24:48.789Z`) and compare as strings.
//!
//! # Semantics
//!
//! 1. **Undefined.** A path that does not exist is `undefined`, as is every operation without a
//!    result (see below). `undefined` never equals anything, not even `undefined`.
//! 2. **Comparisons** (`= != <> < > <= >=`) are defined only between primitives of the same
//!    type: two numbers (integer or not, compared by value), two strings (compared by code
//!    point), two Booleans (`false < true`) or two `null`s (equal). Anything else, including a
//!    comparison with an object, an array or `undefined`, is `undefined`. So
//!    `x != 'a'` is *not* true for a twin without `x`, and `x = null` is true only when `x`
//!    is `null`.
//! 3. **Logic** is three-valued: `AND` is false if either side is `false`, true if both are
//!    `true`, otherwise undefined; `OR` is true if either side is `true`, false if both are
//!    `false`, otherwise undefined; `NOT` flips a Boolean and leaves anything else undefined.
//! 4. **WHERE** keeps a twin only when the condition is exactly `true`. `null`, `undefined`,
//!    numbers, strings, objects and arrays all count as false.
//! 5. **IN / NIN** test membership of a primitive in an array constant (numbers by value,
//!    other types by type and value; objects and arrays in the list never match): `IN` is
//!    true or false, `NIN` its negation. If the tested value is `undefined`, an object or an
//!    array, both are undefined.
//! 6. **Arithmetic** (`+ - * / %`, unary `-`) is defined on numbers only. Integer results stay
//!    integers; on overflow, or when a division is inexact, the result is a float. Division
//!    or remainder by zero, and non-finite results, are undefined. `+` does not join strings.
//! 7. **Functions:** the `IS_*` type tests are always `true` or `false` (`IS_DEFINED(null)` is
//!    true, `IS_NULL(undefined)` is false). The string functions are undefined unless their
//!    arguments are strings; `LENGTH` counts characters.
//! 8. **Projection.** `SELECT *` yields the twin's JSON. Otherwise each row is an object with
//!    one member per select item, named by its alias, or else by the path's last segment
//!    (system names spelled canonically: `SELECT DeviceId` gives `deviceId`), or else `$1`,
//!    `$2`, ... for other unnamed items. The output is flat: `SELECT properties.reported.x`
//!    gives `{"x": ..}`. Two items with the same name are a parse error. An item whose value
//!    is `undefined` is left out of the row.
//! 9. **Aggregates** (`COUNT()`, `SUM`, `AVG`, `MIN`, `MAX`) turn the query into an aggregate
//!    query: every other select item must be one of the `GROUP BY` paths. `COUNT()` counts
//!    twins; `SUM` adds the numeric values (0 when there are none); `AVG` is their mean
//!    (left out when there are none); `MIN` and `MAX` take the least and greatest primitive
//!    value in the order `null < false < true < numbers < strings` (left out when there are
//!    none). Other values are ignored. Without `GROUP BY` there is exactly one row, even over
//!    no twins.
//! 10. **GROUP BY** makes one row per distinct key (`1` and `1.0` are the same key; objects
//!     and arrays group by their JSON text). Twins whose key is undefined form one group, and
//!     that group's row leaves the key out. Rows are sorted by key: undefined first, then
//!     `null`, Booleans, numbers, strings, objects and arrays.
//! 11. **TOP n** returns at most `n` rows (for aggregate queries, the first `n` groups).
//! 12. **Collections.** `FROM devices` reads device twins (no module id), `FROM
//!     devices.modules` module twins. `FROM devices.jobs` parses (`SELECT *` only, no GROUP BY)
//!     but cannot be evaluated over twins:
//!     [`QueryError::UnsupportedCollection`].
//! 13. **Matching** ([`Query::matches`], [`Condition::matches`]) applies the condition alone,
//!     whatever the collection: it is how jobs and configurations target twins.
//!
//! # Paging
//!
//! [`Query::page`] serves large stores page by page with an opaque continuation token; see
//! [`PageRequest`] and [`Query::resume_key`]. Page sizes default to [`DEFAULT_PAGE_SIZE`] and
//! may be at most [`MAX_PAGE_SIZE`].
//!
//! # Speed
//!
//! Parsing compiles the query: each path's root (system field, tags, a property section, its
//! `$version` or `$metadata`, the configurations) is resolved once, constants are converted
//! once, `IN` lists become sorted sets. Evaluating a condition is then a few lookups in the
//! twin's [`Doc`](crate::doc::Doc)s with borrowed values and no allocation: each path step
//! first tries the member position where the previous twin had the key, and a comparison of a
//! path with a constant reads the stored bytes directly. `GROUP BY` keys are read the same way
//! and hashed with a keyed hash.
//!
//! [`Query::filter`] and [`Query::execute`] read a batch of twins ahead: they load the
//! documents of the first operand of the condition's `AND` for the next batches, test that
//! operand a batch early, and load the other documents only for twins that pass it, so over a
//! large in-memory store the memory reads of many twins overlap. The results and their order
//! are the same as testing each twin with [`Query::matches`].

mod aggregate;
mod ahead;
mod ast;
mod compile;
mod error;
mod eval;
mod functions;
mod lexer;
mod paging;
mod parser;
mod paths;
mod reads;
mod rules;
mod value;

#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod roundtrip;

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

pub use ast::{
    is_keyword, Aggregate, BinaryOp, Collection, Expr, Function, Literal, Path, Select, SelectExpr,
    SelectItem, Statement, KEYWORDS,
};
pub(crate) use compile::CmpOp;
pub use error::{ParseErrorKind, Position, QueryError, MAX_QUERY_CHARS};
pub use paging::{Page, PageRequest, TwinKey, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use parser::{MAX_EXPR_DEPTH, MAX_NESTING};
pub use reads::Reads;

use crate::twin::Twin;
use aggregate::{GroupItem, GroupPlan};
use ahead::{Plan, Scan, Touch};
use compile::{compile, CExpr};

/// A parsed, checked and compiled query.
///
/// Equality compares the syntax trees, so two texts that print the same canonical form are
/// equal queries.
///
/// ```
/// use iot_dm_core::query::{Query, QueryError};
///
/// let q: Query = "select top 10 * from devices where tags.env <> 'dev'".parse()?;
/// assert_eq!(q.to_string(), "SELECT TOP 10 * FROM devices WHERE tags.env != 'dev'");
/// assert_eq!(Query::parse(&q.to_string())?, q);
///
/// let err = Query::parse("SELECT * FROM devices WHERE foo(x)").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "unknown function foo at 1:29\nSELECT * FROM devices WHERE foo(x)\n                            ^"
/// );
/// # Ok::<(), QueryError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Query {
    statement: Statement,
    filter: Option<CExpr>,
    shape: Shape,
    /// The documents to load ahead when scanning many twins.
    plan: Plan,
}

/// What a row is made of.
#[derive(Debug, Clone)]
enum Shape {
    /// `SELECT *`.
    Star,
    /// Named expressions.
    Project(Vec<(String, CExpr)>),
    /// Aggregates, grouped or not.
    Group(GroupPlan),
}

impl Query {
    /// Parses, checks and compiles a query.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let statement = parser::parse_statement(text)?;
        Ok(Query::compile(statement))
    }

    fn compile(statement: Statement) -> Query {
        let filter = statement.condition.as_ref().map(compile);
        let shape = match &statement.select {
            Select::All => Shape::Star,
            Select::Items(items) => {
                let names = rules::output_names(items);
                let grouped = !statement.group_by.is_empty()
                    || items
                        .iter()
                        .any(|i| matches!(i.expr, SelectExpr::Aggregate(_)));
                if grouped {
                    let keys: Vec<Vec<String>> =
                        statement.group_by.iter().map(paths::canonical).collect();
                    let items = items
                        .iter()
                        .zip(names)
                        .map(|(item, name)| {
                            let g = match &item.expr {
                                SelectExpr::Aggregate(Aggregate::Count) => GroupItem::Count,
                                SelectExpr::Aggregate(Aggregate::Sum(e)) => {
                                    GroupItem::Sum(compile(e))
                                }
                                SelectExpr::Aggregate(Aggregate::Avg(e)) => {
                                    GroupItem::Avg(compile(e))
                                }
                                SelectExpr::Aggregate(Aggregate::Min(e)) => {
                                    GroupItem::Min(compile(e))
                                }
                                SelectExpr::Aggregate(Aggregate::Max(e)) => {
                                    GroupItem::Max(compile(e))
                                }
                                SelectExpr::Expr(e) => {
                                    // The parser checked that this is one of the GROUP BY paths.
                                    let i = match e {
                                        Expr::Path(p) => {
                                            let c = paths::canonical(p);
                                            keys.iter().position(|k| *k == c).unwrap_or(0)
                                        }
                                        _ => 0,
                                    };
                                    GroupItem::Key(i)
                                }
                            };
                            (name, g)
                        })
                        .collect();
                    Shape::Group(GroupPlan {
                        keys: keys.iter().map(|k| paths::resolve(k)).collect(),
                        items,
                    })
                } else {
                    Shape::Project(
                        items
                            .iter()
                            .zip(names)
                            .map(|(item, name)| {
                                let e = match &item.expr {
                                    SelectExpr::Expr(e) => compile(e),
                                    // Unreachable: aggregates make the query grouped.
                                    SelectExpr::Aggregate(_) => {
                                        CExpr::Const(compile::Const::Undefined)
                                    }
                                };
                                (name, e)
                            })
                            .collect(),
                    )
                }
            }
        };
        let plan = scan_plan(filter.as_ref(), &shape);
        Query {
            statement,
            filter,
            shape,
            plan,
        }
    }

    /// The syntax tree.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The collection named in `FROM`.
    pub fn collection(&self) -> Collection {
        self.statement.from
    }

    /// Whether the query aggregates (has aggregates or `GROUP BY`).
    pub fn is_aggregate(&self) -> bool {
        matches!(self.shape, Shape::Group(_))
    }

    /// Whether `twin` satisfies the `WHERE` clause (true when there is none).
    ///
    /// This is the targeting test of jobs and configurations: it ignores the collection and
    /// the projection.
    pub fn matches(&self, twin: &Twin) -> bool {
        self.filter.as_ref().is_none_or(|f| eval::test(f, twin))
    }

    /// The `WHERE` clause as a condition (`None` without one).
    pub fn where_condition(&self) -> Option<Condition> {
        self.statement.condition.clone().map(Condition::from_expr)
    }

    /// Which parts of a twin the `WHERE` clause reads (nothing without one).
    pub fn reads(&self) -> Reads {
        self.statement
            .condition
            .as_ref()
            .map(Reads::of)
            .unwrap_or_default()
    }

    /// Whether `twin` belongs to the collection.
    fn in_collection(&self, twin: &Twin) -> bool {
        match self.statement.from {
            Collection::Devices => twin.module_id.is_none(),
            Collection::Modules => twin.module_id.is_some(),
            _ => false,
        }
    }

    /// Whether `twin` belongs to the collection and satisfies the `WHERE` clause.
    fn selects(&self, twin: &Twin) -> bool {
        self.in_collection(twin) && self.matches(twin)
    }

    /// [`Query::selects`] from the collection and the first operand of a top-level `AND`
    /// alone: `Some` when that decides (the operand is not exactly true, or it is the whole
    /// condition), `None` when the other operands must be evaluated too.
    fn pre_select(&self, twin: &Twin) -> Option<bool> {
        if !self.in_collection(twin) {
            return Some(false);
        }
        match &self.filter {
            None => Some(true),
            Some(CExpr::And(items)) if items.len() > 1 => match items.first() {
                Some(first) if eval::truth(first, twin) == Some(true) => None,
                _ => Some(false),
            },
            Some(f) => Some(eval::test(f, twin)),
        }
    }

    fn check_collection(&self) -> Result<(), QueryError> {
        match self.statement.from {
            Collection::Devices | Collection::Modules => Ok(()),
            collection => Err(QueryError::UnsupportedCollection { collection }),
        }
    }

    /// The twins of `twins` the query selects (collection and `WHERE`), lazily and in order.
    ///
    /// ```
    /// use iot_dm_core::query::Query;
    /// use iot_dm_core::twin::Twin;
    /// use serde_json::json;
    /// let twins: Vec<Twin> = vec![
    ///     serde_json::from_value(json!({"deviceId": "a", "tags": {"env": "prod"}}))?,
    ///     serde_json::from_value(json!({"deviceId": "b", "tags": {"env": "dev"}}))?,
    /// ];
    /// let q = Query::parse("SELECT * FROM devices WHERE tags.env = 'prod'")?;
    /// let ids: Vec<&str> = q.filter(&twins)?.map(|t| t.device_id.as_str()).collect();
    /// assert_eq!(ids, ["a"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn filter<'a, I>(
        &'a self,
        twins: I,
    ) -> Result<impl Iterator<Item = &'a Twin> + 'a, QueryError>
    where
        I: IntoIterator<Item = &'a Twin>,
        I::IntoIter: 'a,
    {
        self.check_collection()?;
        Ok(Scan::new(self, twins.into_iter()))
    }

    /// The row of a selected twin in a non-aggregate query.
    fn row(&self, twin: &Twin) -> Value {
        match &self.shape {
            Shape::Project(items) => {
                let mut row = Map::new();
                for (name, e) in items {
                    if let Some(v) = eval::eval(e, twin).into_json() {
                        row.insert(name.clone(), v);
                    }
                }
                Value::Object(row)
            }
            _ => twin.to_json(),
        }
    }

    /// Runs the query over `twins`: filter, project or aggregate, and apply `TOP`.
    ///
    /// Fails only for a collection that cannot be evaluated over twins (`devices.jobs`).
    pub fn execute<'a, I>(&self, twins: I) -> Result<Vec<Value>, QueryError>
    where
        I: IntoIterator<Item = &'a Twin>,
    {
        self.check_collection()?;
        let top = self
            .statement
            .top
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let selected = Scan::new(self, twins.into_iter());
        Ok(match &self.shape {
            Shape::Group(plan) => {
                let mut rows = aggregate::run(plan, selected);
                rows.truncate(top);
                rows
            }
            _ => selected.take(top).map(|t| self.row(t)).collect(),
        })
    }
}

/// What a scan touches ahead (see [`ahead`]): the documents of the first operand of a
/// top-level `AND` (of the whole condition otherwise) for every twin, and the documents of
/// the rest of the condition and of the GROUP BY keys and aggregates for the twins that pass
/// it.
fn scan_plan(filter: Option<&CExpr>, shape: &Shape) -> Plan {
    let mut first = Touch::default();
    let mut rest = Touch::default();
    match filter {
        Some(CExpr::And(items)) => {
            if let Some((head, tail)) = items.split_first() {
                first.add_expr(head);
                tail.iter().for_each(|x| rest.add_expr(x));
            }
        }
        Some(f) => first.add_expr(f),
        None => {}
    }
    if let Shape::Group(plan) = shape {
        let reads = if filter.is_some() {
            &mut rest
        } else {
            &mut first
        };
        plan.keys.iter().for_each(|k| reads.add_path(k));
        for (_, item) in &plan.items {
            if let GroupItem::Sum(e) | GroupItem::Avg(e) | GroupItem::Min(e) | GroupItem::Max(e) =
                item
            {
                reads.add_expr(e);
            }
        }
    }
    Plan {
        first,
        second: rest.minus(first),
    }
}

impl PartialEq for Query {
    fn eq(&self, other: &Query) -> bool {
        self.statement == other.statement
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.statement.fmt(f)
    }
}

impl FromStr for Query {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Query, QueryError> {
        Query::parse(s)
    }
}

/// A bare condition (a `WHERE` clause without the rest), as jobs and configurations use to
/// target twins.
///
/// ```
/// use iot_dm_core::query::Condition;
/// use iot_dm_core::twin::Twin;
/// use serde_json::json;
/// let twin: Twin = serde_json::from_value(json!({"deviceId": "d1", "tags": {"environment": "prod"}}))?;
/// let c = Condition::parse("tags.environment = 'prod' AND NOT IS_DEFINED(tags.retired)")?;
/// assert!(c.matches(&twin));
/// assert_eq!(c.to_string(), "tags.environment = 'prod' AND NOT IS_DEFINED(tags.retired)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Condition {
    expr: Expr,
    compiled: CExpr,
}

impl Condition {
    /// Parses and compiles a condition such as `tags.environment = 'prod'`.
    pub fn parse(text: &str) -> Result<Condition, QueryError> {
        let expr = parser::parse_condition(text)?;
        Ok(Condition::from_expr(expr))
    }

    /// Compiles a condition from its syntax tree.
    pub(crate) fn from_expr(expr: Expr) -> Condition {
        let compiled = compile(&expr);
        Condition { expr, compiled }
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the condition is exactly `true` for `twin`.
    pub fn matches(&self, twin: &Twin) -> bool {
        eval::test(&self.compiled, twin)
    }

    /// Which parts of a twin the condition reads.
    pub fn reads(&self) -> Reads {
        Reads::of(&self.expr)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Condition) -> bool {
        self.expr == other.expr
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl FromStr for Condition {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Condition, QueryError> {
        Condition::parse(s)
    }
}
