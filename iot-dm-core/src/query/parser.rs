//! The recursive-descent parser (precedence climbing for binary operators) and the static
//! checks of a statement.

use super::ast::{
    is_keyword, Aggregate, BinaryOp, Collection, Expr, Function, Literal, Path, Select, SelectExpr,
    SelectItem, Statement,
};
use super::error::{check_length, ParseErrorKind, QueryError};
use super::lexer::{tokenize, Number, Tok, Token};
use super::rules;

/// Deepest nesting of parentheses, `NOT`, unary minus, arrays and calls the parser accepts.
pub const MAX_NESTING: usize = 128;

/// Deepest expression tree accepted (long `AND`/`OR`/arithmetic chains nest one level per
/// operator).
pub const MAX_EXPR_DEPTH: usize = 1024;

/// Parses a whole statement and checks its static rules.
pub(crate) fn parse_statement(text: &str) -> Result<Statement, QueryError> {
    check_length(text)?;
    let mut p = Parser::new(text)?;
    let st = p.statement()?;
    Ok(st)
}

/// Parses a bare condition (the `WHERE` part alone, as in job and configuration targets).
pub(crate) fn parse_condition(text: &str) -> Result<Expr, QueryError> {
    check_length(text)?;
    let mut p = Parser::new(text)?;
    let start = p.offset();
    let e = p.expr()?;
    p.expect_end()?;
    p.check_depth(&e, start)?;
    Ok(e)
}

struct Parser<'s> {
    text: &'s str,
    toks: Vec<Token<'s>>,
    i: usize,
    nesting: usize,
}

/// What the grammar accepts where an expression starts.
const EXPECT_EXPR: &str = "an expression";

impl<'s> Parser<'s> {
    fn new(text: &'s str) -> Result<Parser<'s>, QueryError> {
        Ok(Parser {
            text,
            toks: tokenize(text)?,
            i: 0,
            nesting: 0,
        })
    }

    fn tok(&self) -> &Tok<'s> {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn tok_at(&self, ahead: usize) -> &Tok<'s> {
        self.toks.get(self.i + ahead).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn offset(&self) -> usize {
        self.toks
            .get(self.i)
            .or(self.toks.last())
            .map_or(0, |t| t.start)
    }

    fn bump(&mut self) -> Tok<'s> {
        let t = self.tok().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn err(&self, offset: usize, kind: ParseErrorKind) -> QueryError {
        QueryError::parse(self.text, offset, kind)
    }

    fn unexpected(&self, expected: &'static str) -> QueryError {
        self.err(
            self.offset(),
            ParseErrorKind::Unexpected {
                expected,
                found: self.tok().describe(),
            },
        )
    }

    fn at_kw(&self, kw: &str) -> bool {
        matches!(self.tok(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.at_kw(kw);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn expect_kw(&mut self, kw: &str, expected: &'static str) -> Result<(), QueryError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn eat(&mut self, t: &Tok<'_>) -> bool {
        let yes = self.tok() == t;
        if yes {
            self.i += 1;
        }
        yes
    }

    fn expect(&mut self, t: &Tok<'_>, expected: &'static str) -> Result<(), QueryError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expect_end(&self) -> Result<(), QueryError> {
        if matches!(self.tok(), Tok::Eof) {
            Ok(())
        } else {
            Err(self.unexpected("end of query"))
        }
    }

    fn enter(&mut self) -> Result<(), QueryError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.err(
                self.offset(),
                ParseErrorKind::TooDeep { limit: MAX_NESTING },
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    /// Rejects trees deeper than [`MAX_EXPR_DEPTH`] (measured without recursion).
    fn check_depth(&self, e: &Expr, offset: usize) -> Result<(), QueryError> {
        let mut stack = vec![(e, 1usize)];
        while let Some((e, d)) = stack.pop() {
            if d > MAX_EXPR_DEPTH {
                return Err(self.err(
                    offset,
                    ParseErrorKind::TooDeep {
                        limit: MAX_EXPR_DEPTH,
                    },
                ));
            }
            match e {
                Expr::Literal(_) | Expr::Path(_) => {}
                Expr::Not(x) | Expr::Neg(x) => stack.push((x, d + 1)),
                Expr::In { expr, .. } => stack.push((expr, d + 1)),
                Expr::Binary { left, right, .. } => {
                    stack.push((left, d + 1));
                    stack.push((right, d + 1));
                }
                Expr::Call { args, .. } => stack.extend(args.iter().map(|a| (a, d + 1))),
            }
        }
        Ok(())
    }

    // ---- statement ----

    fn statement(&mut self) -> Result<Statement, QueryError> {
        self.expect_kw("SELECT", "SELECT")?;
        let mut top = None;
        if self.eat_kw("TOP") {
            match self.tok() {
                Tok::Num(Number::Int(n)) => {
                    top = Some(*n);
                    self.i += 1;
                }
                other => {
                    return Err(self.err(
                        self.offset(),
                        ParseErrorKind::InvalidTop {
                            found: other.describe(),
                        },
                    ))
                }
            }
        }
        let select_offset = self.offset();
        let mut item_offsets = Vec::new();
        let select = if self.eat(&Tok::Star) {
            Select::All
        } else {
            let mut items = Vec::new();
            loop {
                item_offsets.push(self.offset());
                items.push(self.select_item()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            Select::Items(items)
        };
        self.expect_kw("FROM", "',' or FROM")?;
        let from = self.collection()?;
        let mut condition = None;
        if self.eat_kw("WHERE") {
            let start = self.offset();
            let e = self.expr()?;
            self.check_depth(&e, start)?;
            condition = Some(e);
        }
        let mut group_by = Vec::new();
        let group_offset = self.offset();
        if self.eat_kw("GROUP") {
            self.expect_kw("BY", "BY")?;
            loop {
                group_by.push(self.path_start()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        self.expect_end()?;
        let st = Statement {
            top,
            select,
            from,
            condition,
            group_by,
        };
        rules::check(
            self.text,
            &st,
            &rules::Offsets {
                select: select_offset,
                items: &item_offsets,
                group: group_offset,
            },
        )?;
        Ok(st)
    }

    fn collection(&mut self) -> Result<Collection, QueryError> {
        if !self.eat_kw("devices") {
            return Err(self.unexpected("devices, devices.modules or devices.jobs"));
        }
        if !self.eat(&Tok::Dot) {
            return Ok(Collection::Devices);
        }
        if self.eat_kw("modules") {
            Ok(Collection::Modules)
        } else if self.eat_kw("jobs") {
            Ok(Collection::Jobs)
        } else {
            Err(self.unexpected("modules or jobs"))
        }
    }

    fn select_item(&mut self) -> Result<SelectItem, QueryError> {
        let start = self.offset();
        let expr = match (self.tok(), self.tok_at(1)) {
            (Tok::Ident(name), Tok::LParen) if aggregate_name(name).is_some() => {
                let name = aggregate_name(name).unwrap_or("COUNT");
                self.i += 1;
                let mut args = self.call_args()?;
                let expected = usize::from(name != "COUNT");
                if args.len() != expected {
                    return Err(self.err(
                        start,
                        ParseErrorKind::WrongArgumentCount {
                            function: name,
                            expected,
                            found: args.len(),
                        },
                    ));
                }
                let agg = match (name, args.pop()) {
                    ("SUM", Some(a)) => Aggregate::Sum(a),
                    ("AVG", Some(a)) => Aggregate::Avg(a),
                    ("MIN", Some(a)) => Aggregate::Min(a),
                    ("MAX", Some(a)) => Aggregate::Max(a),
                    _ => Aggregate::Count,
                };
                if let Some(a) = agg.arg() {
                    self.check_depth(a, start)?;
                }
                SelectExpr::Aggregate(agg)
            }
            _ => {
                let e = self.expr()?;
                self.check_depth(&e, start)?;
                SelectExpr::Expr(e)
            }
        };
        let alias = if self.eat_kw("AS") {
            match self.tok() {
                Tok::Ident(name) if !is_keyword(name) => {
                    let name = name.to_string();
                    self.i += 1;
                    Some(name)
                }
                _ => return Err(self.unexpected("an alias name")),
            }
        } else {
            None
        };
        Ok(SelectItem { expr, alias })
    }

    // ---- expressions ----

    fn expr(&mut self) -> Result<Expr, QueryError> {
        self.or()
    }

    /// Builds `left op right`.
    fn join(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    /// `or := and {OR and}`
    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and()?;
        while self.eat_kw("OR") {
            let right = self.and()?;
            left = Self::join(BinaryOp::Or, left, right);
        }
        Ok(left)
    }

    /// `and := not {AND not}`
    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.not()?;
        while self.eat_kw("AND") {
            let right = self.not()?;
            left = Self::join(BinaryOp::And, left, right);
        }
        Ok(left)
    }

    /// `not := NOT not | cmp`
    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.eat_kw("NOT") {
            self.enter()?;
            let e = self.not()?;
            self.leave();
            return Ok(Expr::Not(Box::new(e)));
        }
        self.cmp()
    }

    /// `cmp := add {cmp_op add | (IN | NIN) array}`
    fn cmp(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.add()?;
        loop {
            let negated = if self.at_kw("IN") {
                false
            } else if self.at_kw("NIN") {
                true
            } else {
                let op = match self.tok() {
                    Tok::Eq => BinaryOp::Eq,
                    Tok::Ne => BinaryOp::Ne,
                    Tok::Lt => BinaryOp::Lt,
                    Tok::Le => BinaryOp::Le,
                    Tok::Gt => BinaryOp::Gt,
                    Tok::Ge => BinaryOp::Ge,
                    _ => return Ok(left),
                };
                self.i += 1;
                let right = self.add()?;
                left = Self::join(op, left, right);
                continue;
            };
            self.i += 1;
            if !matches!(self.tok(), Tok::LBracket) {
                return Err(self.unexpected("an array constant after IN/NIN"));
            }
            let list = self.array()?;
            left = Expr::In {
                expr: Box::new(left),
                list,
                negated,
            };
        }
    }

    /// `add := mul {(+ | -) mul}`
    fn add(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.mul()?;
        loop {
            let op = match self.tok() {
                Tok::Plus => BinaryOp::Add,
                Tok::Minus => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.mul()?;
            left = Self::join(op, left, right);
        }
    }

    /// `mul := unary {(* | / | %) unary}`
    fn mul(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.tok() {
                Tok::Star => BinaryOp::Mul,
                Tok::Slash => BinaryOp::Div,
                Tok::Percent => BinaryOp::Rem,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.unary()?;
            left = Self::join(op, left, right);
        }
    }

    /// Unary minus, folded into numeric constants.
    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.eat(&Tok::Minus) {
            if let Tok::Num(n) = *self.tok() {
                self.i += 1;
                return Ok(Expr::Literal(negative(n)));
            }
            self.enter()?;
            let e = self.unary()?;
            self.leave();
            return Ok(Expr::Neg(Box::new(e)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let start = self.offset();
        match self.tok().clone() {
            Tok::Num(n) => {
                self.i += 1;
                Ok(Expr::Literal(positive(n)))
            }
            Tok::Str(s) => {
                self.i += 1;
                Ok(Expr::Literal(Literal::Str(s)))
            }
            Tok::LBracket => Ok(Expr::Literal(Literal::Array(self.array()?))),
            Tok::LParen => {
                self.i += 1;
                self.enter()?;
                let e = self.expr()?;
                self.leave();
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                if let Some(l) = keyword_constant(name) {
                    self.i += 1;
                    return Ok(Expr::Literal(l));
                }
                if matches!(self.tok_at(1), Tok::LParen) {
                    return self.call(name, start);
                }
                if is_keyword(name) {
                    return Err(self.unexpected(EXPECT_EXPR));
                }
                Ok(Expr::Path(self.path_start()?))
            }
            _ => Err(self.unexpected(EXPECT_EXPR)),
        }
    }

    fn call(&mut self, name: &str, start: usize) -> Result<Expr, QueryError> {
        if let Some(agg) = aggregate_name(name) {
            return Err(self.err(start, ParseErrorKind::AggregateNotAllowed { function: agg }));
        }
        let Some(function) = Function::from_name(name) else {
            return Err(self.err(
                start,
                ParseErrorKind::UnknownFunction {
                    name: name.to_string(),
                },
            ));
        };
        self.i += 1;
        let args = self.call_args()?;
        if args.len() != function.arity() {
            return Err(self.err(
                start,
                ParseErrorKind::WrongArgumentCount {
                    function: function.name(),
                    expected: function.arity(),
                    found: args.len(),
                },
            ));
        }
        Ok(Expr::Call { function, args })
    }

    /// `( [expr {, expr}] )`, the opening parenthesis being the current token.
    fn call_args(&mut self) -> Result<Vec<Expr>, QueryError> {
        self.expect(&Tok::LParen, "'('")?;
        self.enter()?;
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                args.push(self.expr()?);
                if self.eat(&Tok::Comma) {
                    continue;
                }
                self.expect(&Tok::RParen, "',' or ')'")?;
                break;
            }
        }
        self.leave();
        Ok(args)
    }

    /// A path whose first segment is the current token.
    fn path_start(&mut self) -> Result<Path, QueryError> {
        let first = match self.tok() {
            Tok::Ident(name) if !is_keyword(name) => name.to_string(),
            _ => return Err(self.unexpected("an attribute path")),
        };
        self.i += 1;
        let mut segments = vec![first];
        while self.eat(&Tok::Dot) {
            match self.bump() {
                Tok::Ident(name) => segments.push(name.to_string()),
                Tok::Quoted(name) => segments.push(name),
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected("a name or [[quoted name]] after '.'"));
                }
            }
        }
        Ok(Path { segments })
    }

    /// An array constant, the `[` being the current token.
    fn array(&mut self) -> Result<Vec<Literal>, QueryError> {
        self.expect(&Tok::LBracket, "'['")?;
        self.enter()?;
        let mut items = Vec::new();
        if !self.eat(&Tok::RBracket) {
            loop {
                items.push(self.constant()?);
                if self.eat(&Tok::Comma) {
                    continue;
                }
                self.expect(&Tok::RBracket, "',' or ']'")?;
                break;
            }
        }
        self.leave();
        Ok(items)
    }

    /// A constant inside an array constant.
    fn constant(&mut self) -> Result<Literal, QueryError> {
        let start = self.offset();
        match self.tok().clone() {
            Tok::Num(n) => {
                self.i += 1;
                Ok(positive(n))
            }
            Tok::Minus => match *self.tok_at(1) {
                Tok::Num(n) => {
                    self.i += 2;
                    Ok(negative(n))
                }
                _ => {
                    self.i += 1;
                    Err(self.unexpected("a number after '-'"))
                }
            },
            Tok::Str(s) => {
                self.i += 1;
                Ok(Literal::Str(s))
            }
            Tok::LBracket => Ok(Literal::Array(self.array()?)),
            Tok::Ident(name) => match keyword_constant(name) {
                Some(Literal::Undefined) => Err(self.err(start, ParseErrorKind::UndefinedInArray)),
                Some(l) => {
                    self.i += 1;
                    Ok(l)
                }
                None => Err(self.unexpected("a constant")),
            },
            _ => Err(self.unexpected("a constant")),
        }
    }
}

fn keyword_constant(name: &str) -> Option<Literal> {
    if name.eq_ignore_ascii_case("true") {
        Some(Literal::Bool(true))
    } else if name.eq_ignore_ascii_case("false") {
        Some(Literal::Bool(false))
    } else if name.eq_ignore_ascii_case("null") {
        Some(Literal::Null)
    } else if name.eq_ignore_ascii_case("undefined") {
        Some(Literal::Undefined)
    } else {
        None
    }
}

/// The canonical name of the aggregate called `name`, if it is one.
fn aggregate_name(name: &str) -> Option<&'static str> {
    ["COUNT", "SUM", "AVG", "MIN", "MAX"]
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(name))
}

fn positive(n: Number) -> Literal {
    match n {
        Number::Int(u) => i64::try_from(u).map_or(Literal::Float(u as f64), Literal::Int),
        Number::Float(f) => Literal::Float(f),
    }
}

fn negative(n: Number) -> Literal {
    match n {
        Number::Int(u) => {
            i64::try_from(-i128::from(u)).map_or(Literal::Float(-(u as f64)), Literal::Int)
        }
        Number::Float(f) => Literal::Float(-f),
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
