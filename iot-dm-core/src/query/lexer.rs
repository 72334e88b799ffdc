//! The tokenizer: turns query text into tokens that carry their byte offset.

use super::error::{ParseErrorKind, QueryError};

/// A number as written (sign is handled by the parser).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// An integer (decimal or `0x` hex) that fits in `u64`.
    Int(u64),
    /// A decimal with a fraction or exponent, or an integer too large for `u64`.
    Float(f64),
}

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'s> {
    /// An identifier or keyword, as written.
    Ident(&'s str),
    /// A `[[...]]` quoted name (only lexed right after a `.`).
    Quoted(String),
    /// A string constant, unescaped.
    Str(String),
    /// A number constant.
    Num(Number),
    Star,
    Comma,
    Dot,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Slash,
    Percent,
    Eof,
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Quoted(s) => format!("[[{s}]]"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(Number::Int(n)) => format!("number {n}"),
            Tok::Num(Number::Float(n)) => format!("number {n:?}"),
            Tok::Star => "'*'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Percent => "'%'".into(),
            Tok::Eof => "end of query".into(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'s> {
    pub tok: Tok<'s>,
    pub start: usize,
}

/// Whether `c` may start an identifier.
pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

/// Whether `c` may continue an identifier.
pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// Splits `text` into tokens, ending with [`Tok::Eof`].
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, QueryError> {
    Lexer {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    }
    .run()
}

struct Lexer<'s> {
    text: &'s str,
    bytes: &'s [u8],
    pos: usize,
}

impl<'s> Lexer<'s> {
    fn err(&self, offset: usize, kind: ParseErrorKind) -> QueryError {
        QueryError::parse(self.text, offset, kind)
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn run(mut self) -> Result<Vec<Token<'s>>, QueryError> {
        let mut out: Vec<Token<'s>> = Vec::with_capacity(self.text.len() / 4 + 2);
        loop {
            while self.peek(0).is_some_and(|b| b.is_ascii_whitespace()) {
                self.pos += 1;
            }
            let start = self.pos;
            let Some(b) = self.peek(0) else {
                out.push(Token {
                    tok: Tok::Eof,
                    start,
                });
                return Ok(out);
            };
            let after_dot = matches!(out.last(), Some(Token { tok: Tok::Dot, .. }));
            let tok = match b {
                b'[' if after_dot && self.peek(1) == Some(b'[') => self.quoted_name()?,
                b'\'' | b'"' => self.string(b)?,
                b'0'..=b'9' => self.number()?,
                b if is_ident_start(b as char) => {
                    let end = self.bytes[start..]
                        .iter()
                        .position(|&c| !is_ident_char(c as char))
                        .map_or(self.bytes.len(), |n| start + n);
                    self.pos = end;
                    Tok::Ident(&self.text[start..end])
                }
                _ => self.punct()?,
            };
            out.push(Token { tok, start });
        }
    }

    fn punct(&mut self) -> Result<Tok<'s>, QueryError> {
        let start = self.pos;
        let two = |s: &Self, second: u8| s.peek(1) == Some(second);
        let (tok, len) = match self.peek(0).unwrap_or(0) {
            b'*' => (Tok::Star, 1),
            b',' => (Tok::Comma, 1),
            b'.' => (Tok::Dot, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b'=' => (Tok::Eq, 1),
            b'!' if two(self, b'=') => (Tok::Ne, 2),
            b'<' if two(self, b'>') => (Tok::Ne, 2),
            b'<' if two(self, b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if two(self, b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'/' => (Tok::Slash, 1),
            b'%' => (Tok::Percent, 1),
            _ => {
                let ch = self.text[start..].chars().next().unwrap_or('\0');
                return Err(self.err(start, ParseErrorKind::UnexpectedChar { ch }));
            }
        };
        self.pos += len;
        Ok(tok)
    }

    fn quoted_name(&mut self) -> Result<Tok<'s>, QueryError> {
        let start = self.pos;
        let body = start + 2;
        let Some(len) = self.text[body..].find("]]") else {
            return Err(self.err(start, ParseErrorKind::UnterminatedQuotedName));
        };
        if len == 0 {
            return Err(self.err(start, ParseErrorKind::EmptyQuotedName));
        }
        self.pos = body + len + 2;
        Ok(Tok::Quoted(self.text[body..body + len].to_string()))
    }

    fn string(&mut self, quote: u8) -> Result<Tok<'s>, QueryError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run of plain characters in one go.
            let run_end = self.bytes[self.pos..]
                .iter()
                .position(|&c| c == quote || c == b'\\')
                .map(|n| self.pos + n);
            let Some(run_end) = run_end else {
                return Err(self.err(
                    start,
                    ParseErrorKind::UnterminatedString {
                        quote: quote as char,
                    },
                ));
            };
            out.push_str(&self.text[self.pos..run_end]);
            self.pos = run_end;
            if self.bytes[run_end] == quote {
                self.pos += 1;
                return Ok(Tok::Str(out));
            }
            let esc_start = self.pos;
            let Some(e) = self.peek(1) else {
                return Err(self.err(
                    start,
                    ParseErrorKind::UnterminatedString {
                        quote: quote as char,
                    },
                ));
            };
            self.pos += 2;
            let c = match e {
                b'\'' => '\'',
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape(esc_start)?,
                _ => {
                    let end = self.text[esc_start + 1..]
                        .chars()
                        .next()
                        .map_or(esc_start + 1, |c| esc_start + 1 + c.len_utf8());
                    return Err(self.err(
                        esc_start,
                        ParseErrorKind::InvalidEscape {
                            escape: self.text[esc_start..end].to_string(),
                        },
                    ));
                }
            };
            out.push(c);
        }
    }

    /// Reads the 4 hex digits after `\u` (and a low surrogate escape after a high one).
    fn unicode_escape(&mut self, esc_start: usize) -> Result<char, QueryError> {
        let bad = |s: &Self, end: usize| {
            let end = end.min(s.text.len());
            let end = (end..=s.text.len())
                .find(|&i| s.text.is_char_boundary(i))
                .unwrap_or(s.text.len());
            s.err(
                esc_start,
                ParseErrorKind::InvalidEscape {
                    escape: s.text[esc_start..end].to_string(),
                },
            )
        };
        let hex4 = |s: &mut Self| -> Option<u32> {
            let digits = s.text.get(s.pos..s.pos + 4)?;
            if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            s.pos += 4;
            u32::from_str_radix(digits, 16).ok()
        };
        let Some(hi) = hex4(self) else {
            return Err(bad(self, self.pos + 4));
        };
        if (0xD800..0xDC00).contains(&hi) {
            if self.text[self.pos..].starts_with("\\u") {
                self.pos += 2;
                if let Some(lo) = hex4(self) {
                    if (0xDC00..0xE000).contains(&lo) {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        return char::from_u32(c).ok_or_else(|| bad(self, self.pos));
                    }
                }
            }
            return Err(bad(self, self.pos));
        }
        char::from_u32(hi).ok_or_else(|| bad(self, self.pos))
    }

    fn number(&mut self) -> Result<Tok<'s>, QueryError> {
        let start = self.pos;
        let digits = |s: &mut Self| {
            while s.peek(0).is_some_and(|b| b.is_ascii_digit()) {
                s.pos += 1;
            }
        };
        let invalid = |s: &Self, end: usize| {
            s.err(
                start,
                ParseErrorKind::InvalidNumber {
                    text: s.text[start..end].to_string(),
                },
            )
        };
        if self.peek(0) == Some(b'0') && matches!(self.peek(1), Some(b'x' | b'X')) {
            self.pos += 2;
            let hex_start = self.pos;
            while self.peek(0).is_some_and(|b| b.is_ascii_hexdigit()) {
                self.pos += 1;
            }
            let end = self.ident_tail_end();
            if end != self.pos || hex_start == self.pos {
                return Err(invalid(self, end));
            }
            return u64::from_str_radix(&self.text[hex_start..self.pos], 16)
                .ok()
                .filter(|&n| n <= i64::MAX as u64)
                .map(|n| Tok::Num(Number::Int(n)))
                .ok_or_else(|| invalid(self, self.pos));
        }
        digits(self);
        let mut float = false;
        if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(|b| b.is_ascii_digit()) {
            float = true;
            self.pos += 1;
            digits(self);
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(0), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
                float = true;
                digits(self);
            } else {
                self.pos = save;
            }
        }
        let end = self.ident_tail_end();
        if end != self.pos {
            return Err(invalid(self, end));
        }
        let text = &self.text[start..self.pos];
        if !float {
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Tok::Num(Number::Int(n)));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Tok::Num(Number::Float(f))),
            _ => Err(invalid(self, self.pos)),
        }
    }

    /// The end of identifier characters glued to a number (`12abc`), to reject them whole.
    fn ident_tail_end(&self) -> usize {
        self.bytes[self.pos..]
            .iter()
            .position(|&c| !is_ident_char(c as char))
            .map_or(self.bytes.len(), |n| self.pos + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok<'_>> {
        tokenize(text)
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn kind(text: &str) -> Option<ParseErrorKind> {
        tokenize(text).err().and_then(|e| e.parse_kind().cloned())
    }

    #[test]
    fn operators_and_punctuation() {
        assert_eq!(
            toks("= != <> < <= > >= + - * / % ( ) [ ] , ."),
            vec![
                Tok::Eq,
                Tok::Ne,
                Tok::Ne,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Plus,
                Tok::Minus,
                Tok::Star,
                Tok::Slash,
                Tok::Percent,
                Tok::LParen,
                Tok::RParen,
                Tok::LBracket,
                Tok::RBracket,
                Tok::Comma,
                Tok::Dot,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("0 42 0x1F 0XfF 1.5 2e3 1E-2 18446744073709551616"),
            vec![
                Tok::Num(Number::Int(0)),
                Tok::Num(Number::Int(42)),
                Tok::Num(Number::Int(31)),
                Tok::Num(Number::Int(255)),
                Tok::Num(Number::Float(1.5)),
                Tok::Num(Number::Float(2000.0)),
                Tok::Num(Number::Float(0.01)),
                Tok::Num(Number::Float(18446744073709551616.0)),
                Tok::Eof
            ]
        );
        assert!(matches!(
            kind("12abc"),
            Some(ParseErrorKind::InvalidNumber { text }) if text == "12abc"
        ));
        assert!(matches!(
            kind("0x"),
            Some(ParseErrorKind::InvalidNumber { .. })
        ));
        assert!(matches!(
            kind("0xFFFFFFFFFFFFFFFF"),
            Some(ParseErrorKind::InvalidNumber { .. })
        ));
        assert!(matches!(
            kind("1e999"),
            Some(ParseErrorKind::InvalidNumber { .. })
        ));
        // `1.` is a number followed by a dot.
        assert_eq!(
            toks("1.x"),
            vec![
                Tok::Num(Number::Int(1)),
                Tok::Dot,
                Tok::Ident("x"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            toks(r#"'a\'b' "c\"d" 'e\\f' '\u00e9' "it's" '\uD83D\uDE00' '\n\t'"#),
            vec![
                Tok::Str("a'b".into()),
                Tok::Str("c\"d".into()),
                Tok::Str("e\\f".into()),
                Tok::Str("é".into()),
                Tok::Str("it's".into()),
                Tok::Str("😀".into()),
                Tok::Str("\n\t".into()),
                Tok::Eof
            ]
        );
        assert!(matches!(
            kind("'abc"),
            Some(ParseErrorKind::UnterminatedString { quote: '\'' })
        ));
        assert!(matches!(
            kind(r"'a\q'"),
            Some(ParseErrorKind::InvalidEscape { escape }) if escape == r"\q"
        ));
        assert!(matches!(
            kind(r"'\u12'"),
            Some(ParseErrorKind::InvalidEscape { .. })
        ));
        assert!(matches!(
            kind(r"'\uD800x'"),
            Some(ParseErrorKind::InvalidEscape { .. })
        ));
        assert!(matches!(
            kind(r"'abc\"),
            Some(ParseErrorKind::UnterminatedString { .. })
        ));
    }

    #[test]
    fn quoted_names_only_after_a_dot() {
        assert_eq!(
            toks("configurations.[[my-cfg]].status"),
            vec![
                Tok::Ident("configurations"),
                Tok::Dot,
                Tok::Quoted("my-cfg".into()),
                Tok::Dot,
                Tok::Ident("status"),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("[[1]]"),
            vec![
                Tok::LBracket,
                Tok::LBracket,
                Tok::Num(Number::Int(1)),
                Tok::RBracket,
                Tok::RBracket,
                Tok::Eof
            ]
        );
        assert_eq!(kind("a.[[x"), Some(ParseErrorKind::UnterminatedQuotedName));
        assert_eq!(kind("a.[[]]"), Some(ParseErrorKind::EmptyQuotedName));
    }

    #[test]
    fn identifiers_and_offsets() {
        let t = tokenize("  $version\n_a1 é").err();
        let Some(QueryError::Parse { kind, position, .. }) = t else {
            panic!("expected a parse error");
        };
        assert_eq!(kind, ParseErrorKind::UnexpectedChar { ch: 'é' });
        assert_eq!((position.line, position.column), (2, 5));
        let t = tokenize("  $version _a1").unwrap_or_default();
        assert_eq!(t[0].start, 2);
        assert_eq!(t[1].tok, Tok::Ident("_a1"));
        assert_eq!(t[1].start, 11);
    }
}
