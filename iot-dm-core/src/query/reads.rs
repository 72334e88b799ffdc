//! Which parts of a twin a condition reads ([`Reads`]), so that a caller keeping a condition's
//! outcome per twin can tell which changes cannot alter it.

use super::ast::{Expr, Path};
use super::paths::canonical;

/// The parts of a twin an expression reads.
///
/// ```
/// use iot_dm_core::query::Condition;
/// let tags = Condition::parse("tags.site = 'north' AND deviceId <> 'x'")?;
/// assert!(tags.reads().tags && !tags.reads().reported);
/// let hot = Condition::parse("Properties.Reported.temperature > 80")?;
/// assert!(hot.reads().reported && !hot.reads().tags);
/// // a reported patch can change the second, never the first's tags part; deviceId is
/// // "other", so the first is re-evaluated too
/// assert!(hot.reads().reported_change_matters() && tags.reads().reported_change_matters());
/// let only_tags = Condition::parse("tags.site = 'north'")?;
/// assert!(!only_tags.reads().reported_change_matters());
/// // a device's patch does not touch the configurations a twin records
/// let applied = Condition::parse("configurations.[[fw]].status = 'Applied'")?;
/// assert!(applied.reads().configurations && !applied.reads().reported_change_matters());
/// # Ok::<(), iot_dm_core::query::QueryError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Reads {
    /// `tags...`
    pub tags: bool,
    /// `properties.reported...` (or `properties` as a whole)
    pub reported: bool,
    /// `properties.desired...` (or `properties` as a whole)
    pub desired: bool,
    /// `configurations...` (the hub's record of the configurations applied)
    pub configurations: bool,
    /// Anything else: identity fields, versions, activity times.
    pub other: bool,
}

impl Reads {
    /// Whether a change of the reported properties alone (a device's reported patch, which
    /// also moves the twin's versions and activity time) can change the outcome.
    pub fn reported_change_matters(&self) -> bool {
        self.reported || self.other
    }

    pub(crate) fn of(expr: &Expr) -> Reads {
        let mut r = Reads::default();
        walk(expr, &mut r);
        r
    }

    fn path(&mut self, p: &Path) {
        let c = canonical(p);
        match c.first().map(String::as_str) {
            Some("tags") => self.tags = true,
            Some("configurations") => self.configurations = true,
            Some("properties") => match c.get(1).map(String::as_str) {
                Some("reported") => self.reported = true,
                Some("desired") => self.desired = true,
                _ => {
                    self.reported = true;
                    self.desired = true;
                }
            },
            _ => self.other = true,
        }
    }
}

fn walk(e: &Expr, r: &mut Reads) {
    match e {
        Expr::Literal(_) => {}
        Expr::Path(p) => r.path(p),
        Expr::Not(e) | Expr::Neg(e) => walk(e, r),
        Expr::Binary { left, right, .. } => {
            walk(left, r);
            walk(right, r);
        }
        Expr::In { expr, .. } => walk(expr, r),
        Expr::Call { args, .. } => args.iter().for_each(|a| walk(a, r)),
    }
}

impl super::Condition {
    /// Splits the condition at its top-level `AND`s into the conjuncts a device's own reported
    /// patch cannot change (they read only tags, desired properties and `configurations`) and
    /// the others: the condition holds exactly when both parts hold (an absent part holds).
    ///
    /// ```
    /// use iot_dm_core::query::Condition;
    /// let c = Condition::parse(
    ///     "configurations.[[fw]].status = 'Applied' AND properties.reported.ok = true AND tags.a = 1")?;
    /// let (stable, volatile) = c.split_for_reported();
    /// assert_eq!(stable.unwrap().to_string(), "configurations.fw.status = 'Applied' AND tags.a = 1");
    /// assert_eq!(volatile.unwrap().to_string(), "properties.reported.ok = true");
    /// # Ok::<(), iot_dm_core::query::QueryError>(())
    /// ```
    pub fn split_for_reported(&self) -> (Option<super::Condition>, Option<super::Condition>) {
        let mut parts = Vec::new();
        conjuncts(self.expr(), &mut parts);
        let (stable, volatile): (Vec<&Expr>, Vec<&Expr>) = parts
            .into_iter()
            .partition(|e| !Reads::of(e).reported_change_matters());
        (join(stable), join(volatile))
    }
}

fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Binary {
            op: super::ast::BinaryOp::And,
            left,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other),
    }
}

fn join(parts: Vec<&Expr>) -> Option<super::Condition> {
    let expr = parts.into_iter().cloned().reduce(|l, r| Expr::Binary {
        op: super::ast::BinaryOp::And,
        left: Box::new(l),
        right: Box::new(r),
    })?;
    Some(super::Condition::from_expr(expr))
}

#[cfg(test)]
mod tests {
    use super::super::Condition;
    use crate::twin::Twin;
    use serde_json::json;

    #[test]
    fn a_condition_holds_exactly_when_both_of_its_parts_hold() {
        let c = Condition::parse(
            "tags.a = 1 AND (properties.reported.x > 2 OR tags.b = 1) AND NOT (tags.c = 1) \
             AND properties.desired.d = 'y'",
        )
        .unwrap();
        let (stable, volatile) = c.split_for_reported();
        for a in [0, 1] {
            for b in [0, 1] {
                for x in [0, 5] {
                    let twin: Twin = serde_json::from_value(json!({
                        "deviceId": "t", "tags": {"a": a, "b": b},
                        "properties": {"desired": {"d": "y"}, "reported": {"x": x}},
                    }))
                    .unwrap();
                    let holds = |p: &Option<Condition>| p.as_ref().is_none_or(|p| p.matches(&twin));
                    assert_eq!(c.matches(&twin), holds(&stable) && holds(&volatile));
                }
            }
        }
        assert!(stable.unwrap().reads().tags);
        assert!(volatile.unwrap().reads().reported);
    }
}
