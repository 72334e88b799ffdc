//! The evaluator: from (matching count, scope size, now) updates to raise and clear
//! decisions, with the time it must next be woken for `forSeconds`.

use std::time::Duration;

use super::{AlertRule, Threshold};
use crate::clock::Timestamp;

/// What a rule counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// The scope's devices that match the condition.
    pub matching: u64,
    /// The scope's devices.
    pub scope: u64,
}

/// Where a rule stands.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Phase {
    /// The rule does not hold and no alert is active.
    Normal,
    /// The rule holds since `since`, not yet for `forSeconds`.
    Pending {
        /// When it started to hold.
        since: Timestamp,
    },
    /// The alert is raised and the rule holds.
    Raised {
        /// When the alert was raised.
        at: Timestamp,
    },
    /// The alert is raised but the rule stopped holding at `since`, not yet for `forSeconds`.
    Clearing {
        /// When the alert was raised.
        raised_at: Timestamp,
        /// When the rule stopped holding.
        since: Timestamp,
    },
}

/// A decision the evaluator reports.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Transition {
    /// The rule held for `forSeconds`: raise an alert.
    Raised {
        /// When.
        at: Timestamp,
        /// The counts at that moment.
        counts: Counts,
    },
    /// The rule failed for `forSeconds`: clear the alert.
    Cleared {
        /// When.
        at: Timestamp,
        /// The counts at that moment.
        counts: Counts,
        /// When the alert being cleared was raised.
        raised_at: Timestamp,
    },
}

/// The pure state machine of one rule: Normal → Pending → Raised → Clearing → Normal.
///
/// Feed it every change of the counts with [`Evaluator::update`], and call
/// [`Evaluator::tick`] at [`Evaluator::wake_at`]; a raise or clear comes back as a
/// [`Transition`]. It reads no clock.
///
/// ```
/// use iot_dm_core::alert::{Counts, Evaluator, Threshold, Transition};
/// use iot_dm_core::clock::Timestamp;
///
/// let mut ev = Evaluator::with(Threshold::Count(2), 0);
/// let t = Timestamp::from_unix_secs(10);
/// let up = ev.update(Counts { matching: 3, scope: 10 }, t);
/// assert_eq!(up, Some(Transition::Raised { at: t, counts: Counts { matching: 3, scope: 10 } }));
/// let down = ev.update(Counts { matching: 1, scope: 10 }, t);
/// assert!(matches!(down, Some(Transition::Cleared { .. })));
/// ```
#[derive(Debug, Clone)]
pub struct Evaluator {
    threshold: Threshold,
    hold: Duration,
    phase: Phase,
    counts: Counts,
}

impl Evaluator {
    /// An evaluator for a rule, in [`Phase::Normal`].
    pub fn new(rule: &AlertRule) -> Evaluator {
        Evaluator::with(rule.threshold, rule.for_seconds)
    }

    /// An evaluator for a threshold and a `forSeconds`, in [`Phase::Normal`].
    pub fn with(threshold: Threshold, for_seconds: u64) -> Evaluator {
        Evaluator {
            threshold,
            hold: Duration::from_secs(for_seconds),
            phase: Phase::Normal,
            counts: Counts::default(),
        }
    }

    /// Resumes an evaluator whose alert, raised at `raised_at`, is still active (after a
    /// restart). The next update decides whether it starts to clear.
    pub fn resume_raised(mut self, raised_at: Timestamp) -> Evaluator {
        self.phase = Phase::Raised { at: raised_at };
        self
    }

    /// Where the rule stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The latest counts.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether an alert is active (raised or clearing).
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Raised { .. } | Phase::Clearing { .. })
    }

    /// Takes new counts at `now` and reports a raise or clear that is due.
    pub fn update(&mut self, counts: Counts, now: Timestamp) -> Option<Transition> {
        self.counts = counts;
        let holds = self.threshold.exceeded(counts);
        self.phase = match self.phase {
            Phase::Normal if holds => Phase::Pending { since: now },
            Phase::Pending { .. } if !holds => Phase::Normal,
            Phase::Raised { at } if !holds => Phase::Clearing {
                raised_at: at,
                since: now,
            },
            Phase::Clearing { raised_at, .. } if holds => Phase::Raised { at: raised_at },
            same => same,
        };
        self.tick(now)
    }

    /// Reports a raise or clear that is due at `now`, the counts unchanged.
    pub fn tick(&mut self, now: Timestamp) -> Option<Transition> {
        match self.phase {
            Phase::Pending { since } if now.since(since) >= self.hold => {
                self.phase = Phase::Raised { at: now };
                Some(Transition::Raised {
                    at: now,
                    counts: self.counts,
                })
            }
            Phase::Clearing { raised_at, since } if now.since(since) >= self.hold => {
                self.phase = Phase::Normal;
                Some(Transition::Cleared {
                    at: now,
                    counts: self.counts,
                    raised_at,
                })
            }
            _ => None,
        }
    }

    /// When [`Evaluator::tick`] must next be called, if a raise or clear is waiting for
    /// `forSeconds`.
    pub fn wake_at(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Pending { since } | Phase::Clearing { since, .. } => {
                Some(since.saturating_add(self.hold))
            }
            Phase::Normal | Phase::Raised { .. } => None,
        }
    }
}
