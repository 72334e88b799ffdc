//! [`RuleWatch`]: one rule kept current twin by twin, the piece a hub drives from its events.

use std::collections::HashSet;

use super::{AlertRule, Counts, Evaluator, JobCounter, Scope, Transition};
use crate::clock::Timestamp;
use crate::identity::DeviceId;
use crate::job::DeviceJobStatistics;
use crate::twin::Twin;

/// One rule over a fleet, kept incrementally: the devices in its scope, those of them whose
/// twin matches its condition, and its [`Evaluator`].
///
/// The caller tells it about one device at a time, whenever that device's twin, identity,
/// connection or scope membership changes ([`RuleWatch::observe`]); only that twin is matched
/// again. It calls [`RuleWatch::tick`] at [`RuleWatch::wake_at`] for `forSeconds`.
///
/// A rule scoped by a job ([`Scope::Job`]) looks at no twin: the caller hands it the job's
/// statistics whenever they move ([`RuleWatch::observe_job`]), and [`RuleWatch::observe`]
/// counts nothing for it.
///
/// ```
/// use iot_dm_core::alert::{AlertRule, RuleWatch, Transition};
/// use iot_dm_core::clock::Timestamp;
/// use iot_dm_core::twin::Twin;
/// use serde_json::json;
///
/// let rule = AlertRule::from_json(&json!({
///     "id": "failed", "condition": "properties.reported.update.state = 'failed'",
///     "threshold": {"count": 0}, "severity": "warning",
/// }))?;
/// let mut watch = RuleWatch::new(rule);
/// let twin: Twin = serde_json::from_value(json!({
///     "deviceId": "d1", "properties": {"reported": {"update": {"state": "failed"}}},
/// })).unwrap();
/// let t = Timestamp::from_unix_secs(1);
/// let up = watch.observe(&twin.device_id, Some(&twin), true, t);
/// assert!(matches!(up, Some(Transition::Raised { .. })));
/// // the device is deleted: the alert clears
/// let down = watch.observe(&twin.device_id, None, false, t);
/// assert!(matches!(down, Some(Transition::Cleared { .. })));
/// # Ok::<(), iot_dm_core::alert::AlertRuleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RuleWatch {
    rule: AlertRule,
    evaluator: Evaluator,
    scope: HashSet<DeviceId>,
    matching: HashSet<DeviceId>,
    /// For a job scope: the condition per status bucket, and the counts last observed.
    job: Option<(JobCounter, Counts)>,
}

impl RuleWatch {
    /// A watch over no device yet.
    ///
    /// A job-scoped rule whose condition the job's statistics cannot decide (refused by
    /// [`AlertRule::from_json`]) counts an empty scope.
    pub fn new(rule: AlertRule) -> RuleWatch {
        let job = match &rule.scope {
            Scope::Job(id) => JobCounter::new(&rule.condition, id)
                .ok()
                .map(|c| (c, Counts::default())),
            _ => None,
        };
        RuleWatch {
            evaluator: Evaluator::new(&rule),
            rule,
            scope: HashSet::new(),
            matching: HashSet::new(),
            job,
        }
    }

    /// The job whose statistics the rule counts, for a job scope.
    pub fn job_id(&self) -> Option<&str> {
        match &self.rule.scope {
            Scope::Job(id) => Some(id),
            _ => None,
        }
    }

    /// Takes the statistics of the rule's job as they are now (`None`: no such job) and
    /// reports a raise or clear that is due at `now`. Does nothing for a rule not scoped by
    /// a job.
    ///
    /// ```
    /// use iot_dm_core::alert::{AlertRule, Counts, RuleWatch, Transition};
    /// use iot_dm_core::clock::Timestamp;
    /// use iot_dm_core::job::DeviceJobStatistics;
    /// use serde_json::json;
    ///
    /// let rule = AlertRule::from_json(&json!({
    ///     "id": "j-42-failures", "condition": "status = 'failed'", "scope": {"job": "j-42"},
    ///     "threshold": {"percent": 2}, "severity": "critical",
    /// }))?;
    /// let mut watch = RuleWatch::new(rule);
    /// let t = Timestamp::from_unix_secs(1);
    /// assert_eq!(watch.observe_job(None, t), None);
    /// let stats = DeviceJobStatistics { device_count: 50, failed_count: 2,
    ///                                   ..DeviceJobStatistics::default() };
    /// let up = watch.observe_job(Some(&stats), t);
    /// assert!(matches!(up, Some(Transition::Raised { counts: Counts { matching: 2, scope: 50 }, .. })));
    /// # Ok::<(), iot_dm_core::alert::AlertRuleError>(())
    /// ```
    pub fn observe_job(
        &mut self,
        stats: Option<&DeviceJobStatistics>,
        now: Timestamp,
    ) -> Option<Transition> {
        let (counter, counts) = self.job.as_mut()?;
        *counts = counter.counts(stats);
        self.evaluate(now)
    }

    /// Resumes an alert raised at `raised_at` that is still active (after a restart).
    pub fn resume_raised(mut self, raised_at: Timestamp) -> RuleWatch {
        self.evaluator = self.evaluator.resume_raised(raised_at);
        self
    }

    /// The rule.
    pub fn rule(&self) -> &AlertRule {
        &self.rule
    }

    /// The evaluator (its phase and counts).
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// The counts as they stand.
    pub fn counts(&self) -> Counts {
        if let Some((_, counts)) = &self.job {
            return *counts;
        }
        Counts {
            matching: self.matching.len() as u64,
            scope: self.scope.len() as u64,
        }
    }

    /// Whether the device is counted in the rule's scope.
    pub fn is_in_scope(&self, device_id: &DeviceId) -> bool {
        self.scope.contains(device_id)
    }

    /// Whether the device is counted as matching.
    pub fn is_matching(&self, device_id: &DeviceId) -> bool {
        self.matching.contains(device_id)
    }

    /// Takes the device's twin as it is now (`None` once deleted) and whether it is in the
    /// rule's scope (for [`Scope::All`](super::Scope::All): whether it exists), matches that
    /// twin alone, and reports a raise or clear that is due at `now`.
    pub fn observe(
        &mut self,
        device_id: &DeviceId,
        twin: Option<&Twin>,
        in_scope: bool,
        now: Timestamp,
    ) -> Option<Transition> {
        self.count(device_id, twin, in_scope);
        self.evaluate(now)
    }

    /// Like [`RuleWatch::observe`], but only counts: call [`RuleWatch::evaluate`] once a
    /// batch (a count afresh over every twin) is in, so that it decides on the whole.
    pub fn count(&mut self, device_id: &DeviceId, twin: Option<&Twin>, in_scope: bool) {
        if matches!(self.rule.scope, Scope::Job(_)) {
            return;
        }
        let counted = in_scope && twin.is_some();
        let matches = counted && twin.is_some_and(|t| self.rule.condition.matches(t));
        if counted {
            self.scope.insert(device_id.clone());
        } else {
            self.scope.remove(device_id);
        }
        if matches {
            self.matching.insert(device_id.clone());
        } else {
            self.matching.remove(device_id);
        }
    }

    /// Hands the counts as they stand to the evaluator, and reports a raise or clear that is
    /// due at `now`.
    pub fn evaluate(&mut self, now: Timestamp) -> Option<Transition> {
        self.evaluator.update(self.counts(), now)
    }

    /// Reports a raise or clear that is due at `now`, nothing observed.
    pub fn tick(&mut self, now: Timestamp) -> Option<Transition> {
        self.evaluator.tick(now)
    }

    /// When [`RuleWatch::tick`] must next be called.
    pub fn wake_at(&self) -> Option<Timestamp> {
        self.evaluator.wake_at()
    }
}
