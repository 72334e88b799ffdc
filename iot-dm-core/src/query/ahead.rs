//! Reading twins ahead of evaluation, so their documents come from memory in parallel.
//!
//! Over a large store, evaluating a condition is dominated by waiting for each twin's document
//! to arrive from main memory: the lookup reads a record, which gives the offset of the next
//! one, so the reads of one twin wait for each other. [`Ahead`] pulls twins from the source a
//! batch at a time and touches the documents the query reads (one read per cache line, all
//! independent), a batch before they are evaluated. The memory system then fetches the lines
//! of a whole batch at once instead of one dependent line at a time. It yields the same twins
//! in the same order; only the timing of memory reads changes.

use std::collections::VecDeque;

use super::compile::CExpr;
use super::paths::{Resolved, Root, Section};
use crate::twin::Twin;

/// Twins touched per batch.
const BATCH: usize = 16;

/// Bytes of each document touched: all of a typical twin section.
const TOUCH_BYTES: usize = 1024;

/// Which of a twin's documents a query reads first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Touch {
    tags: bool,
    desired: bool,
    reported: bool,
    configurations: bool,
}

impl Touch {
    /// The documents the paths of `e` read. Of an `AND`, only the first operand counts: it
    /// decides for most twins, and touching documents that are then not read costs
    /// bandwidth.
    pub(crate) fn add_expr(&mut self, e: &CExpr) {
        match e {
            CExpr::Const(_) => {}
            CExpr::Path(p) | CExpr::CmpConst { path: p, .. } => self.add_path(p),
            CExpr::And(items) => {
                if let Some(first) = items.first() {
                    self.add_expr(first);
                }
            }
            CExpr::Or(items) | CExpr::Call(_, items) => items.iter().for_each(|x| self.add_expr(x)),
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

    #[inline]
    fn apply(&self, twin: &Twin) {
        if self.tags {
            twin.tags().touch(TOUCH_BYTES);
        }
        if self.desired {
            twin.desired().doc().touch(TOUCH_BYTES);
        }
        if self.reported {
            twin.reported().doc().touch(TOUCH_BYTES);
        }
        if self.configurations {
            twin.configurations().touch(TOUCH_BYTES);
        }
    }
}

/// Yields the twins of `inner` in order, touching each one's documents a batch ahead.
pub(crate) struct Ahead<'a, I> {
    inner: I,
    queue: VecDeque<&'a Twin>,
    touch: Touch,
    done: bool,
}

impl<'a, I: Iterator<Item = &'a Twin>> Ahead<'a, I> {
    pub(crate) fn new(inner: I, touch: Touch) -> Ahead<'a, I> {
        Ahead {
            inner,
            queue: VecDeque::with_capacity(if touch.any() { 2 * BATCH } else { 0 }),
            touch,
            done: !touch.any(),
        }
    }

    /// Pulls up to one batch from the source, touching each twin.
    #[inline(never)]
    fn refill(&mut self) {
        for _ in 0..BATCH {
            match self.inner.next() {
                Some(t) => {
                    self.touch.apply(t);
                    self.queue.push_back(t);
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
    }
}

impl<'a, I: Iterator<Item = &'a Twin>> Iterator for Ahead<'a, I> {
    type Item = &'a Twin;

    #[inline]
    fn next(&mut self) -> Option<&'a Twin> {
        if !self.touch.any() {
            return self.inner.next();
        }
        if self.queue.len() <= BATCH && !self.done {
            self.refill();
            if self.queue.len() <= BATCH && !self.done {
                self.refill();
            }
        }
        self.queue.pop_front()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.inner.size_hint();
        let q = self.queue.len();
        (lo.saturating_add(q), hi.and_then(|h| h.checked_add(q)))
    }
}
