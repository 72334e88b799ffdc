//! The syntax tree of a query and its canonical printing.
//!
//! Printing is canonical: keywords and function names upper-case, constants lower-case,
//! strings in single quotes, `!=` for both inequality spellings, the fewest parentheses that
//! keep the meaning, and `[[...]]` only around names that need it. Parsing the printed text
//! gives back an equal tree.

use std::fmt::{self, Write as _};

use super::lexer::{is_ident_char, is_ident_start};

pub use super::functions::Function;

/// A whole `SELECT` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `TOP n`: the most rows the query returns.
    pub top: Option<u64>,
    /// What each row holds.
    pub select: Select,
    /// The collection read.
    pub from: Collection,
    /// The `WHERE` condition.
    pub condition: Option<Expr>,
    /// The `GROUP BY` paths.
    pub group_by: Vec<Path>,
}

/// The select list.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `SELECT *`: the whole document.
    All,
    /// A list of projections and aggregates.
    Items(Vec<SelectItem>),
}

/// One element of the select list.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    /// The value.
    pub expr: SelectExpr,
    /// The `AS` name.
    pub alias: Option<String>,
}

/// The value of a select item.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectExpr {
    /// A scalar expression evaluated per twin (or a GROUP BY path in an aggregate query).
    Expr(Expr),
    /// An aggregate over the twins of a group.
    Aggregate(Aggregate),
}

/// An aggregate function.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    /// `COUNT()`: the number of twins.
    Count,
    /// `SUM(e)`: the sum of the numeric values of `e`.
    Sum(Expr),
    /// `AVG(e)`: the mean of the numeric values of `e`.
    Avg(Expr),
    /// `MIN(e)`: the least primitive value of `e`.
    Min(Expr),
    /// `MAX(e)`: the greatest primitive value of `e`.
    Max(Expr),
}

impl Aggregate {
    /// The canonical (upper-case) name.
    pub fn name(&self) -> &'static str {
        match self {
            Aggregate::Count => "COUNT",
            Aggregate::Sum(_) => "SUM",
            Aggregate::Avg(_) => "AVG",
            Aggregate::Min(_) => "MIN",
            Aggregate::Max(_) => "MAX",
        }
    }

    /// The argument, `None` for `COUNT()`.
    pub fn arg(&self) -> Option<&Expr> {
        match self {
            Aggregate::Count => None,
            Aggregate::Sum(e) | Aggregate::Avg(e) | Aggregate::Min(e) | Aggregate::Max(e) => {
                Some(e)
            }
        }
    }
}

/// The collection named in `FROM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Collection {
    /// `devices`: device twins (twins without a module id).
    Devices,
    /// `devices.modules`: module twins.
    Modules,
    /// `devices.jobs`: per-device job records.
    Jobs,
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Collection::Devices => "devices",
            Collection::Modules => "devices.modules",
            Collection::Jobs => "devices.jobs",
        })
    }
}

/// An attribute path such as `tags.location.region` or `configurations.[[cfg-1]].status`.
///
/// The segments are stored as names; whether they were written bare or in `[[...]]` is not
/// kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// The names, outermost first; never empty.
    pub segments: Vec<String>,
}

impl Path {
    /// A path from its segments.
    pub fn new<S: Into<String>>(segments: impl IntoIterator<Item = S>) -> Path {
        Path {
            segments: segments.into_iter().map(Into::into).collect(),
        }
    }
}

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `undefined`.
    Undefined,
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent (always finite).
    Float(f64),
    /// A string.
    Str(String),
    /// An array constant `[...]` (never holds `undefined`).
    Array(Vec<Literal>),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `OR`
    Or,
    /// `AND`
    And,
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinaryOp {
    /// The operator as printed.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }

    /// Binding strength: higher binds tighter.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => PREC_OR,
            BinaryOp::And => PREC_AND,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => PREC_CMP,
            BinaryOp::Add | BinaryOp::Sub => PREC_ADD,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => PREC_MUL,
        }
    }
}

const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_NOT: u8 = 3;
const PREC_CMP: u8 = 4;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;
const PREC_NEG: u8 = 7;
const PREC_PRIMARY: u8 = 8;

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Literal(Literal),
    /// An attribute path.
    Path(Path),
    /// `NOT e`.
    Not(Box<Expr>),
    /// `-e`.
    Neg(Box<Expr>),
    /// `left op right`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `e IN [...]` or `e NIN [...]`.
    In {
        /// The tested value.
        expr: Box<Expr>,
        /// The array constant's elements.
        list: Vec<Literal>,
        /// `NIN` rather than `IN`.
        negated: bool,
    },
    /// A function call.
    Call {
        /// The function.
        function: Function,
        /// The arguments (as many as [`Function::arity`]).
        args: Vec<Expr>,
    },
}

impl Expr {
    /// Binding strength of the expression's outermost operator.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Literal(_) | Expr::Path(_) | Expr::Call { .. } => PREC_PRIMARY,
            Expr::Not(_) => PREC_NOT,
            Expr::Neg(_) => PREC_NEG,
            Expr::Binary { op, .. } => op.precedence(),
            Expr::In { .. } => PREC_CMP,
        }
    }

    fn fmt_prec(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        let paren = self.precedence() < min;
        if paren {
            f.write_char('(')?;
        }
        match self {
            Expr::Literal(l) => write!(f, "{l}")?,
            Expr::Path(p) => write!(f, "{p}")?,
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                e.fmt_prec(f, PREC_NOT)?;
            }
            Expr::Neg(e) => {
                f.write_char('-')?;
                match &**e {
                    Expr::Literal(l @ (Literal::Int(_) | Literal::Float(_))) => {
                        let text = l.to_string();
                        let zero = matches!(l, Literal::Int(0))
                            || matches!(l, Literal::Float(x) if *x == 0.0);
                        if text.starts_with('-') {
                            // `- -5` reads back as a minus of the constant -5, with no
                            // parentheses (which count as nesting)
                            write!(f, " {text}")?;
                        } else if zero {
                            // `- -0` likewise: minus zero is the constant zero
                            write!(f, " -{text}")?;
                        } else {
                            // `-5` would read back as the constant -5
                            write!(f, "({text})")?;
                        }
                    }
                    // `- -x`, not `-(-x)`: parentheses count as nesting, so a chain of minuses
                    // that parses would print past the nesting limit
                    Expr::Neg(_) => {
                        f.write_char(' ')?;
                        e.fmt_prec(f, PREC_NEG)?;
                    }
                    _ => e.fmt_prec(f, PREC_PRIMARY)?,
                }
            }
            Expr::Binary { op, left, right } => {
                let p = op.precedence();
                left.fmt_prec(f, p)?;
                write!(f, " {} ", op.symbol())?;
                right.fmt_prec(f, p + 1)?;
            }
            Expr::In {
                expr,
                list,
                negated,
            } => {
                expr.fmt_prec(f, PREC_CMP)?;
                f.write_str(if *negated { " NIN " } else { " IN " })?;
                fmt_array(f, list)?;
            }
            Expr::Call { function, args } => {
                write!(f, "{}(", function.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    a.fmt_prec(f, 0)?;
                }
                f.write_char(')')?;
            }
        }
        if paren {
            f.write_char(')')?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_prec(f, 0)
    }
}

fn fmt_array(f: &mut fmt::Formatter<'_>, list: &[Literal]) -> fmt::Result {
    f.write_char('[')?;
    for (i, l) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{l}")?;
    }
    f.write_char(']')
}

/// Writes `s` as a single-quoted string constant.
pub(crate) fn write_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('\'')?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    write!(f, "\\u{unit:04x}")?;
                }
            }
            c => f.write_char(c)?,
        }
    }
    f.write_char('\'')
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Undefined => f.write_str("undefined"),
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(n) => write!(f, "{n}"),
            // Debug keeps a `.0` or an exponent, so the number reads back as a float.
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Str(s) => write_string(f, s),
            Literal::Array(items) => fmt_array(f, items),
        }
    }
}

/// The reserved words (matched case-insensitively). They cannot start a path or be an alias,
/// but may follow a `.` inside a path.
pub const KEYWORDS: [&str; 16] = [
    "SELECT",
    "TOP",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "NIN",
    "TRUE",
    "FALSE",
    "NULL",
    "UNDEFINED",
];

/// Whether `word` is a reserved word.
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Whether `name` lexes as one identifier.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            if i == 0 || is_identifier(s) {
                // The first segment is always an identifier (the parser guarantees it).
                f.write_str(s)?;
            } else {
                write!(f, "[[{s}]]")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arg() {
            None => write!(f, "{}()", self.name()),
            Some(e) => write!(f, "{}({e})", self.name()),
        }
    }
}

impl fmt::Display for SelectExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectExpr::Expr(e) => write!(f, "{e}"),
            SelectExpr::Aggregate(a) => write!(f, "{a}"),
        }
    }
}

impl fmt::Display for SelectItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if let Some(a) = &self.alias {
            write!(f, " AS {a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if let Some(n) = self.top {
            write!(f, "TOP {n} ")?;
        }
        match &self.select {
            Select::All => f.write_char('*')?,
            Select::Items(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
            }
        }
        write!(f, " FROM {}", self.from)?;
        if let Some(c) = &self.condition {
            write!(f, " WHERE {c}")?;
        }
        for (i, p) in self.group_by.iter().enumerate() {
            f.write_str(if i == 0 { " GROUP BY " } else { ", " })?;
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Expr {
        Expr::Path(Path::new(s.split('.')))
    }

    fn bin(op: BinaryOp, l: Expr, r: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        }
    }

    #[test]
    fn prints_minimal_parentheses() {
        let e = bin(
            BinaryOp::And,
            bin(BinaryOp::Or, path("a"), path("b")),
            bin(BinaryOp::Eq, path("c"), Expr::Literal(Literal::Int(1))),
        );
        assert_eq!(e.to_string(), "(a OR b) AND c = 1");
        let e = bin(
            BinaryOp::Sub,
            path("a"),
            bin(BinaryOp::Sub, path("b"), path("c")),
        );
        assert_eq!(e.to_string(), "a - (b - c)");
        let e = bin(
            BinaryOp::Sub,
            bin(BinaryOp::Sub, path("a"), path("b")),
            path("c"),
        );
        assert_eq!(e.to_string(), "a - b - c");
        let e = Expr::Not(Box::new(bin(BinaryOp::And, path("a"), path("b"))));
        assert_eq!(e.to_string(), "NOT (a AND b)");
        let e = Expr::Neg(Box::new(Expr::Literal(Literal::Int(5))));
        assert_eq!(e.to_string(), "-(5)");
        let e = Expr::Neg(Box::new(bin(BinaryOp::Add, path("a"), path("b"))));
        assert_eq!(e.to_string(), "-(a + b)");
        let e = Expr::Neg(Box::new(Expr::Neg(Box::new(path("a")))));
        assert_eq!(e.to_string(), "- -a");
        let e = Expr::Neg(Box::new(Expr::Literal(Literal::Int(-6))));
        assert_eq!(e.to_string(), "- -6");
        let e = Expr::Neg(Box::new(Expr::Literal(Literal::Int(0))));
        assert_eq!(e.to_string(), "- -0");
    }

    #[test]
    fn prints_literals_canonically() {
        assert_eq!(Literal::Float(1.0).to_string(), "1.0");
        assert_eq!(Literal::Float(1e300).to_string(), "1e300");
        assert_eq!(Literal::Int(-3).to_string(), "-3");
        assert_eq!(
            Literal::Str("it's \\ \u{1}".into()).to_string(),
            r"'it\'s \\ \u0001'"
        );
        assert_eq!(
            Literal::Array(vec![
                Literal::Null,
                Literal::Bool(true),
                Literal::Str("x".into())
            ])
            .to_string(),
            "[null, true, 'x']"
        );
    }

    #[test]
    fn prints_quoted_segments() {
        let p = Path::new(["configurations", "cfg-1", "status"]);
        assert_eq!(p.to_string(), "configurations.[[cfg-1]].status");
        let p = Path::new(["properties", "reported", "$version", "select"]);
        assert_eq!(p.to_string(), "properties.reported.$version.select");
    }
}
