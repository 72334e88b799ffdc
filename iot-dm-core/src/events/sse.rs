//! Server-Sent Events framing (the `text/event-stream` format of the HTML standard): print a
//! frame, and parse a byte stream back into frames, incrementally.
//!
//! ```
//! use iot_dm_core::events::sse::{SseFrame, SseItem, SseParser};
//!
//! let frame = SseFrame::new("twin.changed", "{\"a\":1}\n{\"b\":2}").with_id("7");
//! let mut wire = Vec::new();
//! frame.write_to(&mut wire)?;
//! assert_eq!(wire, b"id: 7\nevent: twin.changed\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n");
//!
//! let mut parser = SseParser::new();
//! // bytes arrive in any chunks
//! let (a, b) = wire.split_at(9);
//! assert!(parser.feed(a)?.is_empty());
//! assert_eq!(parser.feed(b)?, vec![SseItem::Frame(frame)]);
//! assert_eq!(parser.last_event_id(), "7");
//! # Ok::<(), iot_dm_core::events::sse::SseError>(())
//! ```

/// The longest line [`SseParser`] accepts by default (1 MiB).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// What went wrong printing or parsing a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A field that must fit on one line (`id`, `event`, a comment) holds a line break (or,
    /// for `id`, a NUL, which the standard ignores the whole id for).
    #[error("the SSE {field} field may not contain a line break or NUL")]
    LineBreak {
        /// `id`, `event` or `comment`.
        field: &'static str,
    },
    /// A line longer than the parser's limit.
    #[error("an SSE line is longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
}

/// One event of a stream: `id:`, `event:`, `data:` (several lines joined by `\n`) and
/// `retry:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseFrame {
    /// The event id, which becomes the stream's last event id.
    pub id: Option<String>,
    /// The event type (`message` when absent, as browsers read it).
    pub event: Option<String>,
    /// The data, lines joined by `\n`.
    pub data: String,
    /// The reconnection time the server asks for, in milliseconds.
    pub retry: Option<u64>,
}

impl SseFrame {
    /// A frame of type `event` with `data`.
    pub fn new(event: impl Into<String>, data: impl Into<String>) -> SseFrame {
        SseFrame {
            id: None,
            event: Some(event.into()),
            data: data.into(),
            retry: None,
        }
    }

    /// The same frame with an id.
    pub fn with_id(mut self, id: impl Into<String>) -> SseFrame {
        self.id = Some(id.into());
        self
    }

    /// Appends the frame to `out`, ending with the blank line that dispatches it. Line breaks
    /// in `data` (`\n`, `\r\n` or `\r`) become one `data:` line each, so the data reads back
    /// with `\n` between lines.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), SseError> {
        if let Some(id) = &self.id {
            if id.contains(['\n', '\r', '\0']) {
                return Err(SseError::LineBreak { field: "id" });
            }
            field(out, "id", id);
        }
        if let Some(event) = &self.event {
            if event.contains(['\n', '\r']) {
                return Err(SseError::LineBreak { field: "event" });
            }
            field(out, "event", event);
        }
        if let Some(retry) = self.retry {
            field(out, "retry", &retry.to_string());
        }
        let mut rest = self.data.as_str();
        loop {
            match rest.find(['\n', '\r']) {
                Some(i) => {
                    field(out, "data", &rest[..i]);
                    let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                    rest = &rest[i + skip..];
                }
                None => {
                    field(out, "data", rest);
                    break;
                }
            }
        }
        out.push(b'\n');
        Ok(())
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    if !value.is_empty() {
        out.push(b' ');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

/// Appends a comment line (`: text`), which readers ignore: the keep-alive of idle streams.
pub fn write_comment(out: &mut Vec<u8>, text: &str) -> Result<(), SseError> {
    if text.contains(['\n', '\r']) {
        return Err(SseError::LineBreak { field: "comment" });
    }
    field(out, "", text);
    Ok(())
}

/// What [`SseParser::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete frame.
    Frame(SseFrame),
    /// A comment line (without the colon and one leading space).
    Comment(String),
}

/// An incremental `text/event-stream` parser: feed it bytes as they arrive, in any chunks.
///
/// It follows the standard's rules: lines end with `\n`, `\r\n` or `\r`; a line starting with
/// `:` is a comment; `field: value` loses one space after the colon; unknown fields are
/// ignored; a blank line dispatches the frame if it had a `data` line; an `id` with a NUL is
/// ignored; a `retry` that is not digits is ignored. Invalid UTF-8 is replaced, as browsers do.
/// A line longer than the limit is an error.
#[derive(Debug, Clone)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte fed was a `\r` (a `\n` right after it belongs to the same line break).
    after_cr: bool,
    /// Nothing read yet (a leading byte-order mark is skipped).
    at_start: bool,
    frame: SseFrame,
    has_data: bool,
    last_id: String,
    max_line: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with lines of at most [`DEFAULT_MAX_LINE`] bytes.
    pub fn new() -> SseParser {
        SseParser::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A parser with lines of at most `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            frame: SseFrame::default(),
            has_data: false,
            last_id: String::new(),
            max_line,
        }
    }

    /// The stream's last event id so far (the standard's "last event ID": the latest `id`
    /// field seen, kept across frames).
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// Parses `bytes`, returning every frame and comment they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseItem>, SseError> {
        let mut items = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, &mut items);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.max_line {
                        return Err(SseError::LineTooLong {
                            limit: self.max_line,
                        });
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(items)
    }

    fn line_done(&mut self, mut line: &[u8], items: &mut Vec<SseItem>) {
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            let frame = std::mem::take(&mut self.frame);
            if std::mem::take(&mut self.has_data) {
                items.push(SseItem::Frame(frame));
            }
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match name {
            "" => items.push(SseItem::Comment(value.to_string())),
            "event" => self.frame.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.frame.data.push('\n');
                }
                self.frame.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.frame.id = Some(value.to_string());
                self.last_id = value.to_string();
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.frame.retry = value.parse().ok();
            }
            _ => {}
        }
    }
}
