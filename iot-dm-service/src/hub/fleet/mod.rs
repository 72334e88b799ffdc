//! The fleet wing: operations over many devices at once, acting through the other wings
//! (twins, sessions) like any back end does: jobs, automatic device configurations, and alerts.

pub(crate) mod alerts;
pub(crate) mod configurations;
pub(crate) mod jobs;

pub use alerts::MAX_ACKNOWLEDGED_BY_LEN;
pub use jobs::{DEFAULT_JOB_RETENTION, DEFAULT_MAX_ACTIVE_JOBS, MAX_IN_FLIGHT, MAX_TWIN_BATCH};

/// How the configuration and alert tasks pace their rounds over changed twins.
pub(crate) mod pace {
    use std::time::Duration;

    /// The shortest time from the start of a round over changed twins to the start of the
    /// next one: a twin changed again and again meanwhile is looked at once.
    pub(crate) const ROUND_GAP: Duration = Duration::from_millis(20);

    /// Twins a round looks at between two looks at the hub's events (which would otherwise
    /// overflow under a flood of changes and force a count over every twin).
    pub(crate) const DRAIN_EVERY: usize = 256;

    /// The pause after a round over changed twins that took `took`: at least [`ROUND_GAP`],
    /// and three times the round, so that under a flood of changes a task takes at most a
    /// quarter of a core and a change waits at most about four rounds.
    pub(crate) fn gap_after(took: Duration) -> Duration {
        ROUND_GAP.max(took * 3)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_gap_is_three_rounds_and_never_under_the_minimum() {
            assert_eq!(gap_after(Duration::ZERO), ROUND_GAP);
            assert_eq!(gap_after(Duration::from_millis(5)), ROUND_GAP);
            assert_eq!(
                gap_after(Duration::from_millis(30)),
                Duration::from_millis(90)
            );
        }
    }
}
