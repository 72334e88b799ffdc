//! The recursive-descent parser (precedence climbing for binary operators) and the static
//! checks of a statement.

use std::collections::HashSet;

use super::ast::{
    is_keyword, Aggregate, BinaryOp, Collection, Expr, Function, Literal, Path, Select, SelectExpr,
    SelectItem, Statement,
};
use super::error::{check_length, ParseErrorKind, QueryError};
use super::lexer::{tokenize, Number, Tok, Token};
use super::paths::canonical;

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
        self.validate(&st, select_offset, &item_offsets, group_offset)?;
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

    /// The static rules: grouping, output names, and what `devices.jobs` allows.
    fn validate(
        &self,
        st: &Statement,
        select_offset: usize,
        item_offsets: &[usize],
        group_offset: usize,
    ) -> Result<(), QueryError> {
        let items = match &st.select {
            Select::All => {
                if !st.group_by.is_empty() {
                    return Err(self.err(group_offset, ParseErrorKind::StarWithGroupBy));
                }
                return Ok(());
            }
            Select::Items(items) => items,
        };
        if st.from == Collection::Jobs {
            return Err(self.err(select_offset, ParseErrorKind::JobsSelectStarOnly));
        }
        let grouped = !st.group_by.is_empty()
            || items
                .iter()
                .any(|i| matches!(i.expr, SelectExpr::Aggregate(_)));
        let keys: Vec<Vec<String>> = st.group_by.iter().map(canonical).collect();
        let mut names = HashSet::new();
        for (item, &offset) in items.iter().zip(item_offsets) {
            if grouped {
                if let SelectExpr::Expr(e) = &item.expr {
                    let ok = matches!(e, Expr::Path(p) if keys.contains(&canonical(p)));
                    if !ok {
                        return Err(self.err(
                            offset,
                            ParseErrorKind::NotGrouped {
                                item: e.to_string(),
                            },
                        ));
                    }
                }
            }
        }
        for (name, &offset) in output_names(items).iter().zip(item_offsets) {
            if !names.insert(name.clone()) {
                return Err(self.err(offset, ParseErrorKind::DuplicateName { name: name.clone() }));
            }
        }
        Ok(())
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

/// The output name of each select item: its alias; else the last segment of a path (system
/// names spelled canonically); else `$1`, `$2`, ... in order among the unnamed items.
pub(crate) fn output_names(items: &[SelectItem]) -> Vec<String> {
    let mut unnamed = 0;
    items
        .iter()
        .map(|item| {
            if let Some(a) = &item.alias {
                return a.clone();
            }
            if let SelectExpr::Expr(Expr::Path(p)) = &item.expr {
                if let Some(last) = canonical(p).pop() {
                    return last;
                }
            }
            unnamed += 1;
            format!("${unnamed}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Statement {
        match parse_statement(text) {
            Ok(s) => s,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn fail(text: &str) -> (ParseErrorKind, usize, usize) {
        match parse_statement(text) {
            Ok(s) => panic!("{text} parsed as {s}"),
            Err(QueryError::Parse { kind, position, .. }) => (kind, position.line, position.column),
            Err(e) => panic!("{text}: unexpected {e}"),
        }
    }

    fn canon(text: &str) -> String {
        parse(text).to_string()
    }

    #[test]
    fn reference_examples_parse() {
        for (text, printed) in [
            (
                "SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
                "SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
            ),
            (
                "SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired','wifi']",
                "SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']",
            ),
            (
                "SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)",
                "SELECT * FROM devices WHERE IS_DEFINED(properties.reported.connectivity)",
            ),
            (
                "SELECT COUNT() AS totalNumberOfDevices FROM devices",
                "SELECT COUNT() AS totalNumberOfDevices FROM devices",
            ),
            (
                "SELECT properties.reported.telemetryConfig.status AS status,\n    COUNT() AS numberOfDevices\n  FROM devices\n  GROUP BY properties.reported.telemetryConfig.status",
                "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
            ),
            (
                "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId='d' AND devices.jobs.jobType='scheduleUpdateTwin' AND devices.jobs.status='completed' AND devices.jobs.createdTimeUtc > '2016-09-01'",
                "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'd' AND devices.jobs.jobType = 'scheduleUpdateTwin' AND devices.jobs.status = 'completed' AND devices.jobs.createdTimeUtc > '2016-09-01'",
            ),
            (
                "SELECT deviceId FROM devices WHERE configurations.[[cfgId]].status = 'Applied'",
                "SELECT deviceId FROM devices WHERE configurations.cfgId.status = 'Applied'",
            ),
            (
                "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'",
                "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'",
            ),
            (
                "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['device1', 'device2']",
                "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['device1', 'device2']",
            ),
        ] {
            assert_eq!(canon(text), printed);
        }
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            canon("select top 5 * from DEVICES.Modules where not a = 1 or b <> 2 and c nin [1]"),
            "SELECT TOP 5 * FROM devices.modules WHERE NOT a = 1 OR b != 2 AND c NIN [1]"
        );
        assert_eq!(
            canon("Select x As y, Count() aS n From devices Group By x"),
            "SELECT x AS y, COUNT() AS n FROM devices GROUP BY x"
        );
    }

    #[test]
    fn precedence() {
        let st = parse("SELECT * FROM devices WHERE a OR b AND NOT c = 1 + 2 * -3");
        let Some(Expr::Binary { op, right, .. }) = st.condition else {
            panic!("binary expected");
        };
        assert_eq!(op, BinaryOp::Or);
        assert_eq!(right.to_string(), "b AND NOT c = 1 + 2 * -3");
        let Expr::Binary { op, right, .. } = *right else {
            panic!("binary expected");
        };
        assert_eq!(op, BinaryOp::And);
        let Expr::Not(inner) = *right else {
            panic!("not expected");
        };
        let Expr::Binary { op, right, .. } = *inner else {
            panic!("binary expected");
        };
        assert_eq!(op, BinaryOp::Eq);
        assert_eq!(
            *right,
            Expr::Binary {
                op: BinaryOp::Add,
                left: Box::new(Expr::Literal(Literal::Int(1))),
                right: Box::new(Expr::Binary {
                    op: BinaryOp::Mul,
                    left: Box::new(Expr::Literal(Literal::Int(2))),
                    right: Box::new(Expr::Literal(Literal::Int(-3))),
                }),
            }
        );
        assert_eq!(
            canon("SELECT * FROM devices WHERE (a - b) - (c - d) = ((x))"),
            "SELECT * FROM devices WHERE a - b - (c - d) = x"
        );
    }

    #[test]
    fn constants() {
        assert_eq!(
            canon("SELECT * FROM devices WHERE x IN [0x10, -0x10, 1.50, -2e3, \"a\\\"b\", 'c\\'d', true, FALSE, Null, [1, [2]]]"),
            "SELECT * FROM devices WHERE x IN [16, -16, 1.5, -2000.0, 'a\"b', 'c\\'d', true, false, null, [1, [2]]]"
        );
        assert_eq!(
            canon("SELECT * FROM devices WHERE x = 9223372036854775807 OR x = -9223372036854775808 OR x = 9223372036854775808"),
            "SELECT * FROM devices WHERE x = 9223372036854775807 OR x = -9223372036854775808 OR x = 9.223372036854776e18"
        );
        assert_eq!(
            canon("SELECT * FROM devices WHERE x = undefined"),
            "SELECT * FROM devices WHERE x = undefined"
        );
    }

    #[test]
    fn error_positions_and_kinds() {
        let (k, l, c) = fail("SELECT * FRM devices");
        assert_eq!(
            k,
            ParseErrorKind::Unexpected {
                expected: "',' or FROM",
                found: "\"FRM\"".into()
            }
        );
        assert_eq!((l, c), (1, 10));
        let (k, l, c) = fail("SELECT *\nFROM devices\nWHERE foo(x) = 1");
        assert_eq!(k, ParseErrorKind::UnknownFunction { name: "foo".into() });
        assert_eq!((l, c), (3, 7));
        let (k, _, c) = fail("SELECT * FROM devices WHERE STARTSWITH(deviceId)");
        assert_eq!(
            k,
            ParseErrorKind::WrongArgumentCount {
                function: "STARTSWITH",
                expected: 2,
                found: 1
            }
        );
        assert_eq!(c, 29);
        let (k, ..) = fail("SELECT COUNT(x) FROM devices");
        assert_eq!(
            k,
            ParseErrorKind::WrongArgumentCount {
                function: "COUNT",
                expected: 0,
                found: 1
            }
        );
        let (k, ..) = fail("SELECT SUM() FROM devices");
        assert!(matches!(
            k,
            ParseErrorKind::WrongArgumentCount {
                function: "SUM",
                expected: 1,
                found: 0
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices WHERE COUNT() > 1");
        assert_eq!(k, ParseErrorKind::AggregateNotAllowed { function: "COUNT" });
        let (k, ..) = fail("SELECT * FROM devices WHERE x IN 'a'");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "an array constant after IN/NIN",
                ..
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices WHERE x IN [undefined]");
        assert_eq!(k, ParseErrorKind::UndefinedInArray);
        let (k, ..) = fail("SELECT * FROM devices WHERE x IN [y]");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "a constant",
                ..
            }
        ));
        let (k, ..) = fail("SELECT TOP -1 * FROM devices");
        assert!(matches!(k, ParseErrorKind::InvalidTop { .. }));
        let (k, ..) = fail("SELECT TOP 1.5 * FROM devices");
        assert!(matches!(k, ParseErrorKind::InvalidTop { .. }));
        let (k, ..) = fail("SELECT * FROM twins");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "devices, devices.modules or devices.jobs",
                ..
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices.things");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "modules or jobs",
                ..
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices WHERE");
        assert!(
            matches!(k, ParseErrorKind::Unexpected { expected: "an expression", ref found } if found == "end of query")
        );
        let (k, ..) = fail("SELECT * FROM devices WHERE (a = 1");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "')'",
                ..
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices WHERE a = 1 b");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "end of query",
                ..
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices WHERE tags. = 1");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "a name or [[quoted name]] after '.'",
                ..
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices WHERE select = 1");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "an expression",
                ..
            }
        ));
        let (k, ..) = fail("SELECT x AS from FROM devices");
        assert!(matches!(
            k,
            ParseErrorKind::Unexpected {
                expected: "an alias name",
                ..
            }
        ));
        let (k, ..) = fail("SELECT * FROM devices WHERE a ! b");
        assert_eq!(k, ParseErrorKind::UnexpectedChar { ch: '!' });
    }

    #[test]
    fn static_rules() {
        let (k, _, c) = fail("SELECT deviceId, COUNT() AS n FROM devices");
        assert_eq!(
            k,
            ParseErrorKind::NotGrouped {
                item: "deviceId".into()
            }
        );
        assert_eq!(c, 8);
        let (k, ..) = fail("SELECT tags.a, COUNT() FROM devices GROUP BY tags.b");
        assert!(matches!(k, ParseErrorKind::NotGrouped { .. }));
        let (k, ..) = fail("SELECT * FROM devices GROUP BY tags.b");
        assert_eq!(k, ParseErrorKind::StarWithGroupBy);
        let (k, _, c) = fail("SELECT tags.x, properties.reported.x FROM devices");
        assert_eq!(k, ParseErrorKind::DuplicateName { name: "x".into() });
        assert_eq!(c, 16);
        let (k, ..) = fail("SELECT deviceId AS a, status AS a FROM devices");
        assert_eq!(k, ParseErrorKind::DuplicateName { name: "a".into() });
        let (k, ..) = fail("SELECT deviceId FROM devices.jobs");
        assert_eq!(k, ParseErrorKind::JobsSelectStarOnly);
        // Grouped paths match with system names in any case.
        parse("SELECT Properties.Reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw");
        // Unnamed items are numbered.
        parse("SELECT COUNT(), SUM(tags.n), tags.k FROM devices GROUP BY tags.k");
    }

    #[test]
    fn limits() {
        let long = format!(
            "SELECT * FROM devices WHERE deviceId = '{}'",
            "a".repeat(super::super::MAX_QUERY_CHARS)
        );
        assert!(matches!(
            parse_statement(&long),
            Err(QueryError::TooLong { limit: 8192, .. })
        ));
        let deep = format!(
            "SELECT * FROM devices WHERE {}a{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        let (k, ..) = fail(&deep);
        assert_eq!(k, ParseErrorKind::TooDeep { limit: MAX_NESTING });
        let chain = format!(
            "SELECT * FROM devices WHERE a{}",
            " + a".repeat(MAX_EXPR_DEPTH + 1)
        );
        let (k, ..) = fail(&chain);
        assert_eq!(
            k,
            ParseErrorKind::TooDeep {
                limit: MAX_EXPR_DEPTH
            }
        );
        // A long OR chain within the limits parses.
        let ors = (0..300)
            .map(|i| format!("deviceId = 'd{i}'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        parse(&format!("SELECT * FROM devices WHERE {ors}"));
    }

    #[test]
    fn conditions() {
        let e = parse_condition("tags.environment = 'prod' AND properties.reported.x > 3");
        assert!(e.is_ok());
        assert!(parse_condition("tags.environment = ").is_err());
        assert!(parse_condition("SELECT * FROM devices").is_err());
    }
}
