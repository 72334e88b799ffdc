//! Reading twins ahead of evaluation, so their documents come from memory in parallel.
//!
//! Over a large store, evaluating a condition is dominated by waiting for each twin's document
//! to arrive from main memory: the lookup reads a record, which gives the offset of the next
//! one, so the reads of one twin wait for each other. [`Scan`] pulls twins from the source a
//! batch at a time and touches the documents the query reads (one read per cache line, all
//! independent), a batch or two before they are evaluated. The memory system then fetches the
//! lines of a whole batch at once instead of one dependent line at a time. It yields the same
//! twins in the same order; only the timing of memory reads changes.

use std::collections::VecDeque;

use super::compile::CExpr;
use super::paths::{Resolved, Root, Section};
use super::Query;
use crate::twin::Twin;

/// Twins touched per batch.
const BATCH: usize = 16;

/// Cache lines of each document touched: the nodes, keys and short strings of a typical twin
/// section (the metadata that follows them is not read by lookups).
const TOUCH_LINES: usize = 8;

/// Which of a twin's documents a query reads first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Touch {
    tags: bool,
    desired: bool,
    reported: bool,
    configurations: bool,
}

impl Touch {
    /// The documents the paths of `e` read.
    pub(crate) fn add_expr(&mut self, e: &CExpr) {
        match e {
            CExpr::Const(_) => {}
            CExpr::Path(p) | CExpr::CmpConst { path: p, .. } => self.add_path(p),
            CExpr::And(items) | CExpr::Or(items) | CExpr::Call(_, items) => {
                items.iter().for_each(|x| self.add_expr(x))
            }
            CExpr::Not(x) | CExpr::Neg(x) | CExpr::In { expr: x, .. } => self.add_expr(x),
            CExpr::Cmp(_, l, r) | CExpr::Arith(_, l, r) => {
                self.add_expr(l);
                self.add_expr(r);
            }
        }
    }

    /// The document `p` reads, if any.
    pub(crate) fn add_path(&mut self, p: &Resolved) {
        match p.root {
            Root::Tags => self.tags = true,
            Root::Props(Section::Desired) => self.desired = true,
            Root::Props(Section::Reported) => self.reported = true,
            Root::Configurations => self.configurations = true,
            _ => {}
        }
    }

    fn any(&self) -> bool {
        self.tags || self.desired || self.reported || self.configurations
    }

    /// The documents of `self` that `other` does not touch.
    pub(crate) fn minus(self, other: Touch) -> Touch {
        Touch {
            tags: self.tags && !other.tags,
            desired: self.desired && !other.desired,
            reported: self.reported && !other.reported,
            configurations: self.configurations && !other.configurations,
        }
    }

    #[inline]
    fn apply(&self, twin: &Twin) {
        if self.tags {
            twin.tags().touch::<TOUCH_LINES>();
        }
        if self.desired {
            twin.desired().doc().touch::<TOUCH_LINES>();
        }
        if self.reported {
            twin.reported().doc().touch::<TOUCH_LINES>();
        }
        if self.configurations {
            twin.configurations().touch::<TOUCH_LINES>();
        }
    }
}

/// What a scan touches ahead: the documents the first test reads (for every twin), and the
/// ones only twins passing that test need (touched once they pass it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub first: Touch,
    pub second: Touch,
}

/// A scan of `inner` in three steps, a batch apart: touch the documents of the first test;
/// run that test (see [`Query::pre_select`]), and touch the remaining documents of the twins
/// that may still be selected; then decide and yield. Twins come out in source order.
pub(crate) struct Scan<'q, 'a, I> {
    query: &'q Query,
    inner: I,
    /// Twins whose first documents were touched.
    touched: VecDeque<&'a Twin>,
    /// Twins past the first test, with its verdict where it already decides.
    ready: VecDeque<(&'a Twin, Option<bool>)>,
    /// Whether `inner` is exhausted.
    done: bool,
    /// Whether there is nothing to touch (then the scan just filters).
    plain: bool,
}

impl<'q, 'a, I: Iterator<Item = &'a Twin>> Scan<'q, 'a, I> {
    pub(crate) fn new(query: &'q Query, inner: I) -> Scan<'q, 'a, I> {
        let plain = !query.plan.first.any() && !query.plan.second.any();
        let cap = if plain { 0 } else { 2 * BATCH + 1 };
        Scan {
            query,
            inner,
            touched: VecDeque::with_capacity(cap),
            ready: VecDeque::with_capacity(cap),
            done: false,
            plain,
        }
    }

    /// Moves a batch through the first test, then refills the touched queue.
    #[inline(never)]
    fn advance(&mut self) {
        let (first, second) = (self.query.plan.first, self.query.plan.second);
        for _ in 0..BATCH {
            let Some(t) = self.touched.pop_front() else {
                break;
            };
            let verdict = self.query.pre_select(t);
            if verdict.is_none() {
                second.apply(t);
            }
            self.ready.push_back((t, verdict));
        }
        while self.touched.len() < 2 * BATCH && !self.done {
            match self.inner.next() {
                Some(t) => {
                    first.apply(t);
                    self.touched.push_back(t);
                }
                None => self.done = true,
            }
        }
    }
}

impl<'q, 'a, I: Iterator<Item = &'a Twin>> Iterator for Scan<'q, 'a, I> {
    type Item = &'a Twin;

    #[inline]
    fn next(&mut self) -> Option<&'a Twin> {
        if self.plain {
            let q = self.query;
            return self.inner.find(|t| q.selects(t));
        }
        loop {
            while self.ready.len() <= BATCH && !(self.done && self.touched.is_empty()) {
                self.advance();
            }
            let (t, verdict) = self.ready.pop_front()?;
            if verdict.unwrap_or_else(|| self.query.selects(t)) {
                return Some(t);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let queued = self.touched.len() + self.ready.len();
        let (_, hi) = self.inner.size_hint();
        (0, hi.and_then(|h| h.checked_add(queued)))
    }
}
