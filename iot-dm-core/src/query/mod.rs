//! The IoT Hub query language over twins (work in progress: parser).

mod ast;
mod error;
mod lexer;
mod parser;
#[allow(dead_code)] // resolution is used by the evaluator, which lands next
mod paths;

#[cfg(test)]
mod roundtrip;

use std::fmt;
use std::str::FromStr;

pub use ast::{
    is_keyword, Aggregate, BinaryOp, Collection, Expr, Function, Literal, Path, Select, SelectExpr,
    SelectItem, Statement, KEYWORDS,
};
pub use error::{ParseErrorKind, Position, QueryError, MAX_QUERY_CHARS};
pub use parser::{MAX_EXPR_DEPTH, MAX_NESTING};

/// A parsed and compiled query.
#[derive(Debug, Clone)]
pub struct Query {
    statement: Statement,
}

impl Query {
    /// Parses and checks a query.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let statement = parser::parse_statement(text)?;
        Ok(Query { statement })
    }

    /// The syntax tree.
    pub fn statement(&self) -> &Statement {
        &self.statement
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
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    expr: Expr,
}

impl Condition {
    /// Parses a condition such as `tags.environment = 'prod'`.
    pub fn parse(text: &str) -> Result<Condition, QueryError> {
        let expr = parser::parse_condition(text)?;
        Ok(Condition { expr })
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}
