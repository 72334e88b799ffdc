//! What the tool prints: aligned tables and key/value lists for people, JSON for scripts.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use crate::error::{CliError, CliResult};

/// Widest cell a table shows; longer values are cut with `…` (use `--json` for all of it).
pub const MAX_CELL: usize = 48;

/// Where a command writes, and in which form.
pub struct Out<'a> {
    w: &'a mut dyn Write,
    /// `--json`: machine-readable output.
    pub json: bool,
}

impl<'a> Out<'a> {
    /// Output to `w`.
    pub fn new(w: &'a mut dyn Write, json: bool) -> Out<'a> {
        Out { w, json }
    }

    /// Writes one line.
    pub fn line(&mut self, text: impl AsRef<str>) -> CliResult {
        writeln!(self.w, "{}", text.as_ref()).map_err(|e| CliError::io("writing output", e))
    }

    /// Flushes what was written (so a reader of a pipe sees it now).
    pub fn flush(&mut self) -> CliResult {
        self.w
            .flush()
            .map_err(|e| CliError::io("writing output", e))
    }

    /// Writes a value as pretty JSON.
    pub fn json_value<T: Serialize + ?Sized>(&mut self, value: &T) -> CliResult {
        let text = serde_json::to_string_pretty(value).map_err(|e| {
            CliError::io("encoding JSON output", std::io::Error::other(e.to_string()))
        })?;
        self.line(text)
    }

    /// Writes a table: a header row, then the rows, columns aligned.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> CliResult {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|c| clip(c)).collect())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (i, c) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let render = |row: &[String]| {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    let pad = widths.get(i).copied().unwrap_or(0);
                    line.push_str(&format!("{c:<pad$}  "));
                } else {
                    line.push_str(c);
                }
            }
            line
        };
        let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        self.line(render(&header))?;
        for row in &cells {
            self.line(render(row))?;
        }
        Ok(())
    }

    /// Writes `name  value` pairs, names aligned.
    pub fn fields(&mut self, fields: &[(&str, String)]) -> CliResult {
        let width = fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, value) in fields {
            self.line(format!("{name:<width$}  {value}"))?;
        }
        Ok(())
    }
}

/// A JSON value as a table cell: strings bare, `null` empty, the rest compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One line of at most [`MAX_CELL`] characters (cut with `…`).
pub fn clip(s: &str) -> String {
    let one_line = s.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= MAX_CELL {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    }
}

/// The columns a table shows for whole twins (`SELECT *`); `--json` has everything.
const TWIN_COLUMNS: [&str; 6] = [
    "deviceId",
    "status",
    "connectionState",
    "lastActivityTime",
    "version",
    "tags",
];

fn is_twin(row: &Value) -> bool {
    row.get("deviceId").is_some() && row.get("etag").is_some() && row.get("properties").is_some()
}

/// The rows of a query result as a table: the columns are the top-level fields in the order
/// they first appear (a row that is not an object is one `value` column). Whole twins show a
/// summary: device id, status, connection, last activity, version and tags.
pub fn query_table(rows: &[Value]) -> (Vec<String>, Vec<Vec<String>>) {
    let twins = !rows.is_empty() && rows.iter().all(is_twin);
    let mut columns: Vec<String> = if twins {
        TWIN_COLUMNS.iter().map(|c| c.to_string()).collect()
    } else {
        Vec::new()
    };
    for row in rows.iter().filter(|_| !twins) {
        match row {
            Value::Object(map) => {
                for k in map.keys() {
                    if !columns.iter().any(|c| c == k) {
                        columns.push(k.clone());
                    }
                }
            }
            _ => {
                if !columns.iter().any(|c| c == "value") {
                    columns.push("value".into());
                }
            }
        }
    }
    let table = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| match row {
                    Value::Object(map) => map.get(c).map(cell).unwrap_or_default(),
                    other if c == "value" => cell(other),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    (columns, table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_clip() {
        let mut buf = Vec::new();
        let mut out = Out::new(&mut buf, false);
        out.table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "enabled".into()],
                vec!["long-device".into(), "x".repeat(100)],
            ],
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID           STATUS");
        assert_eq!(lines[1], "a            enabled");
        assert!(lines[2].starts_with("long-device  xxx"));
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[2].chars().count(), 13 + MAX_CELL);
    }

    #[test]
    fn query_rows_become_columns_in_first_seen_order() {
        let rows = [
            json!({"deviceId": "d1", "n": 1}),
            json!({"deviceId": "d2", "site": "north", "n": null}),
        ];
        let (cols, cells) = query_table(&rows);
        assert_eq!(cols, ["deviceId", "n", "site"]);
        assert_eq!(cells[0], ["d1", "1", ""]);
        assert_eq!(cells[1], ["d2", "", "north"]);
        let twin = json!({"deviceId": "d1", "etag": "AAAAAAAAAAE=", "version": 1,
            "status": "enabled", "tags": {"site": "north"}, "properties": {"desired": {}}});
        let (cols, cells) = query_table(&[twin]);
        assert_eq!(cols, TWIN_COLUMNS);
        assert_eq!(
            cells[0],
            ["d1", "enabled", "", "", "1", r#"{"site":"north"}"#]
        );
        let (cols, cells) = query_table(&[json!(3)]);
        assert_eq!(cols, ["value"]);
        assert_eq!(cells[0], ["3"]);
    }
}
