//! Query errors: typed, with the line:column of the offending token and a caret snippet.

use std::fmt;

use super::ast::Collection;

/// Longest accepted query text, in characters (IoT Hub's limit).
pub const MAX_QUERY_CHARS: usize = 8192;

/// A position in the query text.
///
/// `line` and `column` are 1-based; the column counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number in characters, starting at 1.
    pub column: usize,
    /// Byte offset into the query text.
    pub offset: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text's length and to a character
    /// boundary).
    pub fn at(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
        Position {
            line,
            column,
            offset,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// How many characters of context the snippet shows on each side of the caret.
const SNIPPET_CONTEXT: usize = 40;

/// The line holding `pos`, cut to a window around it, and a caret line under the offending
/// character.
pub(crate) fn snippet(text: &str, pos: Position) -> String {
    let line = text.lines().nth(pos.line - 1).unwrap_or_default();
    let chars: Vec<char> = line.chars().collect();
    let col = pos.column - 1;
    let start = col.saturating_sub(SNIPPET_CONTEXT);
    let end = (col + SNIPPET_CONTEXT).min(chars.len());
    let mut out = String::new();
    let mut caret = String::new();
    if start > 0 {
        out.push_str("...");
        caret.push_str("   ");
    }
    for (i, &c) in chars.iter().enumerate().take(end).skip(start) {
        out.push(c);
        if i < col {
            caret.push(if c == '\t' { '\t' } else { ' ' });
        }
    }
    if end < chars.len() {
        out.push_str("...");
    }
    caret.push('^');
    out.push('\n');
    out.push_str(&caret);
    out
}

/// Why a query text was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A token other than the one the grammar needs here.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// What the grammar accepts here.
        expected: &'static str,
        /// The token found instead (`end of query` at the end).
        found: String,
    },
    /// A character that starts no token.
    #[error("unexpected character {ch:?}")]
    UnexpectedChar {
        /// The character.
        ch: char,
    },
    /// A string constant without its closing quote.
    #[error("string constant is not terminated, expected closing {quote}")]
    UnterminatedString {
        /// The quote that opened the string.
        quote: char,
    },
    /// A backslash escape the language does not define, or a bad `\uXXXX`.
    #[error("invalid escape {escape:?} in string constant, allowed are \\' \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX")]
    InvalidEscape {
        /// The escape as written.
        escape: String,
    },
    /// A `[[` quoted name without its closing `]]`.
    #[error("quoted name is not terminated, expected ]]")]
    UnterminatedQuotedName,
    /// A `[[]]` quoted name with nothing inside.
    #[error("quoted name is empty")]
    EmptyQuotedName,
    /// A malformed number, or one outside the range of a 64-bit integer or float.
    #[error("number {text} is invalid or out of range")]
    InvalidNumber {
        /// The number as written.
        text: String,
    },
    /// `TOP` followed by something other than a non-negative integer.
    #[error("TOP needs a non-negative integer, found {found}")]
    InvalidTop {
        /// The token found.
        found: String,
    },
    /// A call to a function the language does not define.
    #[error("unknown function {name}")]
    UnknownFunction {
        /// The name as written.
        name: String,
    },
    /// A function or aggregate called with the wrong number of arguments.
    #[error("function {function} takes {expected} argument(s), found {found}")]
    WrongArgumentCount {
        /// The function's canonical name.
        function: &'static str,
        /// How many arguments it takes.
        expected: usize,
        /// How many were given.
        found: usize,
    },
    /// An aggregate (`COUNT`, `SUM`, ...) outside the select list.
    #[error("aggregate {function} is allowed only in the select list")]
    AggregateNotAllowed {
        /// The aggregate's canonical name.
        function: &'static str,
    },
    /// Parentheses, calls or operator chains nested deeper than the parser allows.
    #[error("expression is nested too deeply, the limit is {limit} levels")]
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// `undefined` inside an array constant.
    #[error("undefined is not allowed inside an array constant")]
    UndefinedInArray,
    /// In an aggregate query, a select item that is neither an aggregate nor a GROUP BY path.
    #[error("select item {item} is neither an aggregate nor a GROUP BY path")]
    NotGrouped {
        /// The select item, printed.
        item: String,
    },
    /// `SELECT *` together with `GROUP BY`.
    #[error("SELECT * cannot be combined with GROUP BY")]
    StarWithGroupBy,
    /// Two select items with the same output name.
    #[error("output name {name:?} is used by two select items")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// `FROM devices.jobs` with a projection, an aggregate or GROUP BY.
    #[error("FROM devices.jobs supports only SELECT * without GROUP BY")]
    JobsSelectStarOnly,
}

/// A query that cannot be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query text is longer than [`MAX_QUERY_CHARS`].
    #[error("query text is {len} characters long, the limit is {limit}")]
    TooLong {
        /// The text's length in characters.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The query text breaks the grammar or a static rule of the language.
    #[error("{kind} at {position}\n{snippet}")]
    Parse {
        /// What is wrong.
        kind: ParseErrorKind,
        /// Where: the start of the offending token.
        position: Position,
        /// The offending line with a caret under `position`.
        snippet: String,
    },
    /// The query reads a collection that cannot be evaluated over twins.
    #[error("collection {collection} cannot be evaluated over twins, only devices and devices.modules can")]
    UnsupportedCollection {
        /// The collection named in FROM.
        collection: Collection,
    },
    /// A page size of zero or above [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE).
    #[error("page size {requested} is out of range, allowed are 1 to {limit}")]
    PageSize {
        /// The requested size.
        requested: usize,
        /// The largest allowed size.
        limit: usize,
    },
    /// A continuation token that is malformed or was issued for another query.
    #[error("continuation token is invalid: {reason}")]
    InvalidContinuation {
        /// Why it was rejected.
        reason: String,
    },
    /// Twins handed to a paged query out of ascending (deviceId, moduleId) order.
    #[error(
        "twins must come in ascending (deviceId, moduleId) order, {key} came after {previous}"
    )]
    UnorderedTwins {
        /// The key of the previous twin.
        previous: String,
        /// The key of the twin that broke the order.
        key: String,
    },
}

impl QueryError {
    /// Builds a [`QueryError::Parse`] for byte `offset` of `text`.
    pub(crate) fn parse(text: &str, offset: usize, kind: ParseErrorKind) -> QueryError {
        let position = Position::at(text, offset);
        QueryError::Parse {
            kind,
            position,
            snippet: snippet(text, position),
        }
    }

    /// The position of a parse error, `None` for other errors.
    pub fn position(&self) -> Option<Position> {
        match self {
            QueryError::Parse { position, .. } => Some(*position),
            _ => None,
        }
    }

    /// The kind of a parse error, `None` for other errors.
    pub fn parse_kind(&self) -> Option<&ParseErrorKind> {
        match self {
            QueryError::Parse { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Checks the text against [`MAX_QUERY_CHARS`].
pub(crate) fn check_length(text: &str) -> Result<(), QueryError> {
    if text.len() > MAX_QUERY_CHARS {
        let len = text.chars().count();
        if len > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong {
                len,
                limit: MAX_QUERY_CHARS,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_characters() {
        let text = "SELECT *\nFROM dévices\nWHERE x";
        let p = Position::at(text, text.find("vices").unwrap_or(0));
        assert_eq!((p.line, p.column), (2, 8));
        let p = Position::at(text, 0);
        assert_eq!((p.line, p.column), (1, 1));
        let p = Position::at(text, text.len());
        assert_eq!((p.line, p.column), (3, 8));
    }

    #[test]
    fn snippet_puts_caret_under_the_column() {
        let text = "SELECT * FRM devices";
        let s = snippet(text, Position::at(text, 9));
        assert_eq!(s, "SELECT * FRM devices\n         ^");
    }

    #[test]
    fn snippet_windows_long_lines() {
        let text = format!("{}X{}", "a".repeat(100), "b".repeat(100));
        let s = snippet(&text, Position::at(&text, 100));
        let mut lines = s.lines();
        let first = lines.next().unwrap_or_default();
        let caret = lines.next().unwrap_or_default();
        assert!(first.starts_with("...") && first.ends_with("..."));
        assert_eq!(first.chars().nth(caret.len() - 1), Some('X'));
    }

    #[test]
    fn length_limit_counts_characters() {
        assert!(check_length(&"é".repeat(MAX_QUERY_CHARS)).is_ok());
        assert_eq!(
            check_length(&"a".repeat(MAX_QUERY_CHARS + 1)),
            Err(QueryError::TooLong {
                len: MAX_QUERY_CHARS + 1,
                limit: MAX_QUERY_CHARS
            })
        );
    }
}
