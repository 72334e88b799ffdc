//! What the quick start shows a person: progress bars, tables, and the final report.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// A progress bar over `len` items.
pub fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {elapsed:>4}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn cell(r: &Value, c: &str) -> String {
    match r.get(c) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// Prints rows (query results) as a table with the given columns.
pub fn table(title: &str, rows: &[Value], columns: &[&str]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    let head: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    print_table(title, &head, &cells);
}

/// Prints a table of strings.
pub fn print_table(title: &str, head: &[String], rows: &[Vec<String>]) {
    println!("\n{title}");
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(head);
    line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
}

/// The steps of the tour with what each found and how long it took, for the final table.
pub struct Steps {
    started: Instant,
    last: Instant,
    rows: Vec<Vec<String>>,
}

impl Steps {
    pub fn new() -> Steps {
        let now = Instant::now();
        Steps {
            started: now,
            last: now,
            rows: Vec::new(),
        }
    }

    /// Records a finished step.
    pub fn done(&mut self, step: &str, result: impl Into<String>) {
        let now = Instant::now();
        self.rows
            .push(vec![step.to_string(), result.into(), secs(now - self.last)]);
        self.last = now;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints the final report.
    pub fn print(&self) {
        let head = ["step", "result", "took"].map(String::from);
        print_table("the tour", &head, &self.rows);
        println!("\n  total {}", secs(self.elapsed()));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The `n` of a `SELECT COUNT() AS n` query.
pub fn count(rows: &[Value]) -> u64 {
    rows.first()
        .and_then(|r| r.get("n"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}
