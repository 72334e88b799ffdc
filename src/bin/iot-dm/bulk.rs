//! `iot-dm device create --from FILE`: many devices, 100 per request, with a progress bar.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use iot_dm::service::api::ServiceApi;
use iot_dm::service::hub::{ImportDevice, ImportMode, MAX_BULK};

use crate::error::{CliError, CliResult};
use crate::input::device_id;
use crate::output::Out;

/// One device to create, with the line it came from.
#[derive(Debug)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// What to send.
    pub device: ImportDevice,
}

/// Reads a device file: JSON lines when the first data line starts with `{` or `"`, CSV
/// otherwise. Blank lines and `#` comments are skipped. Every line is checked before anything
/// is sent; the first bad line fails the whole file, naming its number.
pub fn parse_file(path: &Path) -> CliResult<Vec<Line>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    parse(&text).map_err(|e| match e {
        CliError::Usage(m) => CliError::usage(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Parses the text of a device file (see [`parse_file`]).
pub fn parse(text: &str) -> CliResult<Vec<Line>> {
    let data = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let mut json = None;
    let mut lines = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (number, line) in data {
        let is_json = *json.get_or_insert(line.starts_with('{') || line.starts_with('"'));
        let device = if is_json {
            json_line(line).map_err(|m| CliError::usage(format!("line {number}: {m}")))?
        } else {
            let first = csv_first_cell(line);
            if lines.is_empty() && (first.eq_ignore_ascii_case("deviceid") || first == "id") {
                continue; // header
            }
            let id =
                device_id(&first).map_err(|e| CliError::usage(format!("line {number}: {e}")))?;
            ImportDevice::new(id)
        };
        if !seen.insert(device.id.clone()) {
            return Err(CliError::usage(format!(
                "line {number}: device {} appears twice in the file",
                device.id
            )));
        }
        lines.push(Line { number, device });
    }
    if lines.is_empty() {
        return Err(CliError::usage("no device ids found"));
    }
    for l in &mut lines {
        l.device.import_mode = ImportMode::Create;
    }
    Ok(lines)
}

fn json_line(line: &str) -> Result<ImportDevice, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut obj = match value {
        Value::String(id) => {
            let id = device_id(&id).map_err(|e| e.to_string())?;
            return Ok(ImportDevice::new(id));
        }
        Value::Object(obj) => obj,
        other => {
            return Err(format!(
                "expected a device id string or an object, got {other}"
            ))
        }
    };
    if !obj.contains_key("id") {
        match obj.remove("deviceId") {
            Some(id) => {
                obj.insert("id".into(), id);
            }
            None => return Err("the object has no \"deviceId\" (or \"id\")".into()),
        }
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| format!("not a device: {e}"))
}

/// The first cell of a CSV line (a quoted cell may contain commas and `""`).
fn csv_first_cell(line: &str) -> String {
    if let Some(rest) = line.strip_prefix('"') {
        let mut cell = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    break;
                }
            } else {
                cell.push(c);
            }
        }
        cell
    } else {
        line.split(',').next().unwrap_or("").trim().to_string()
    }
}

/// Creates the devices, [`MAX_BULK`] per request. Prints a summary and the failures; fails
/// (exit 1) when any device failed.
pub async fn create_all(
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    lines: Vec<Line>,
    progress: bool,
) -> CliResult {
    let total = lines.len();
    let bar = if progress {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} devices ({per_sec}, eta {eta})")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut failures: Vec<(usize, String, String)> = Vec::new();
    let mut chunk_start = 0;
    let mut lines = lines.into_iter().peekable();
    while lines.peek().is_some() {
        let chunk: Vec<Line> = lines.by_ref().take(MAX_BULK).collect();
        let numbers: Vec<(usize, String)> = chunk
            .iter()
            .map(|l| (l.number, l.device.id.to_string()))
            .collect();
        let result = api
            .bulk(chunk.into_iter().map(|l| l.device).collect())
            .await;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                bar.abandon();
                if chunk_start > 0 {
                    out.line(format!(
                        "created {} of {total} before the failure",
                        chunk_start - failures.len()
                    ))?;
                }
                return Err(e.into());
            }
        };
        for err in result.errors {
            let line = numbers
                .iter()
                .find(|(_, id)| *id == err.device_id)
                .map(|(n, _)| *n)
                .unwrap_or(0);
            failures.push((
                line,
                err.device_id,
                format!("{}: {}", err.error_code, err.error_status),
            ));
        }
        chunk_start += numbers.len();
        bar.set_position(chunk_start as u64);
    }
    bar.finish_and_clear();
    let created = total - failures.len();
    if out.json {
        let failed: Vec<Value> = failures
            .iter()
            .map(|(line, id, why)| serde_json::json!({"line": line, "deviceId": id, "error": why}))
            .collect();
        out.json_value(&serde_json::json!({"created": created, "failed": failed}))?;
    } else {
        out.line(format!("created {created} of {total} device(s)"))?;
        if !failures.is_empty() {
            let rows: Vec<Vec<String>> = failures
                .iter()
                .map(|(line, id, why)| vec![line.to_string(), id.clone(), why.clone()])
                .collect();
            out.table(&["LINE", "DEVICE ID", "ERROR"], &rows)?;
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Partial(format!(
            "{} of {total} device(s) were not created",
            failures.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{hub, run};

    #[test]
    fn csv_and_json_lines() {
        let csv = parse("deviceId,site\n# comment\n\nd1,north\n\"d,2\",south\nd3\n").unwrap();
        let ids = |lines: &[Line]| {
            lines
                .iter()
                .map(|l| (l.number, l.device.id.as_str().to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&csv),
            [
                (4, "d1".to_string()),
                (5, "d,2".to_string()),
                (6, "d3".to_string())
            ]
        );
        let err = parse("d1\nnot/valid\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let jl = parse("\"a\"\n{\"deviceId\":\"b\",\"tags\":{\"x\":1}}\n{\"id\":\"c\"}\n").unwrap();
        assert_eq!(jl.len(), 3);
        assert_eq!(jl[1].device.tags, Some(serde_json::json!({"x": 1})));
        assert!(jl
            .iter()
            .all(|l| l.device.import_mode == ImportMode::Create));
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, needle) in [
            ("{\"deviceId\":\"a\"}\n{bad\n", "line 2: not valid JSON"),
            (
                "{\"name\":\"a\"}\n",
                "line 1: the object has no \"deviceId\"",
            ),
            ("a\nb\na\n", "line 3: device a appears twice"),
            ("# only a comment\n", "no device ids"),
            ("[1]\n", "line 1"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[tokio::test]
    async fn creates_in_chunks_and_reports_failures() {
        let hub = hub().await;
        let text: String = (0..250).map(|i| format!("dev-{i:03}\n")).collect();
        let lines = parse(&text).unwrap();
        let printed = run(false, async |o| create_all(&hub, o, lines, false).await)
            .await
            .unwrap();
        assert_eq!(printed, "created 250 of 250 device(s)\n");
        assert_eq!(hub.device_count(), 250);

        // again, with two new ones: 250 conflicts
        let text = format!("{text}dev-new-1\ndev-new-2\n");
        let lines = parse(&text).unwrap();
        let err = run(true, async |o| create_all(&hub, o, lines, false).await)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("250 of 252"), "{err}");
        assert_eq!(hub.device_count(), 252);
    }
}
