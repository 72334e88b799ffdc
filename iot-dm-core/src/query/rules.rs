//! The static rules of a statement, checked after parsing: aggregate queries select only
//! aggregates and GROUP BY paths, output names are unique, and `devices.jobs` allows only
//! `SELECT *`.

use std::collections::HashSet;

use super::ast::{Collection, Expr, Select, SelectExpr, SelectItem, Statement};
use super::error::{ParseErrorKind, QueryError};
use super::paths::canonical;

/// Where the parts of a statement start (byte offsets), for error positions.
pub(crate) struct Offsets<'o> {
    /// The select list.
    pub select: usize,
    /// Each select item.
    pub items: &'o [usize],
    /// The GROUP BY clause (or where it would be).
    pub group: usize,
}

/// Checks the static rules of a parsed statement: grouping, output names, and what
/// `devices.jobs` allows.
pub(crate) fn check(text: &str, st: &Statement, at: &Offsets<'_>) -> Result<(), QueryError> {
    let err = |offset: usize, kind: ParseErrorKind| QueryError::parse(text, offset, kind);
    let items = match &st.select {
        Select::All => {
            if !st.group_by.is_empty() {
                return Err(err(at.group, ParseErrorKind::StarWithGroupBy));
            }
            return Ok(());
        }
        Select::Items(items) => items,
    };
    if st.from == Collection::Jobs {
        return Err(err(at.select, ParseErrorKind::JobsSelectStarOnly));
    }
    let grouped = !st.group_by.is_empty()
        || items
            .iter()
            .any(|i| matches!(i.expr, SelectExpr::Aggregate(_)));
    let keys: Vec<Vec<String>> = st.group_by.iter().map(canonical).collect();
    let mut names = HashSet::new();
    for (item, &offset) in items.iter().zip(at.items) {
        if grouped {
            if let SelectExpr::Expr(e) = &item.expr {
                let ok = matches!(e, Expr::Path(p) if keys.contains(&canonical(p)));
                if !ok {
                    return Err(err(
                        offset,
                        ParseErrorKind::NotGrouped {
                            item: e.to_string(),
                        },
                    ));
                }
            }
        }
    }
    for (name, &offset) in output_names(items).iter().zip(at.items) {
        if !names.insert(name.clone()) {
            return Err(err(
                offset,
                ParseErrorKind::DuplicateName { name: name.clone() },
            ));
        }
    }
    Ok(())
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
