//! What the configuration task counts: per configuration, each twin's mark (targeted,
//! applied, each custom metric) and the counts they add up to.

use std::collections::HashMap;

use iot_dm_core::configuration::{Configuration, ConfigurationStatus};
use iot_dm_core::doc::ValueRef;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::twin::Twin;

/// Mark bits: targeted, applied, then one per custom metric.
const TARGETED: u8 = 1;
const APPLIED: u8 = 2;
const METRIC0: u32 = 2;

/// The counts of one configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) targeted: u64,
    pub(crate) applied: u64,
    pub(crate) metrics: [u64; 5],
}

/// What the task counted for one configuration: the mark of every twin it has one on.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// What the marks mean: the configuration's creation and its custom metric queries. A
    /// change of either means counting afresh; any other update (priority, target, labels) is
    /// counted as the pass after it moves each twin's mark, so its counts never drop to zero
    /// meanwhile.
    pub(super) basis: String,
    marks: HashMap<DeviceId, u8>,
    counts: Counts,
}

impl Tally {
    /// An empty tally for marks that mean `basis`.
    pub(super) fn fresh(basis: String) -> Tally {
        Tally {
            basis,
            ..Tally::default()
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    fn bump(&mut self, mark: u8, up: bool) {
        let each = |bit: u8, n: &mut u64| {
            if mark & bit != 0 {
                *n = if up { *n + 1 } else { n.saturating_sub(1) };
            }
        };
        each(TARGETED, &mut self.counts.targeted);
        each(APPLIED, &mut self.counts.applied);
        for (i, n) in self.counts.metrics.iter_mut().enumerate() {
            each(1 << (METRIC0 + i as u32), n);
        }
    }

    /// Replaces the metric bits of `device`'s mark with `bits` (targeted and applied stay).
    pub(super) fn set_metrics(&mut self, device: &DeviceId, bits: u8) {
        let old = self.marks.get(device).copied().unwrap_or(0);
        self.set(device, (old & (TARGETED | APPLIED)) | bits);
    }

    /// Records `mark` for `device` and moves the counts by the difference.
    pub(super) fn set(&mut self, device: &DeviceId, mark: u8) {
        let old = self.marks.get(device).copied().unwrap_or(0);
        if old == mark {
            return;
        }
        self.bump(old, false);
        self.bump(mark, true);
        if mark == 0 {
            self.marks.remove(device);
        } else {
            self.marks.insert(device.clone(), mark);
        }
    }
}

/// The status `id` has on `twin`, read without building a value.
pub(super) fn status_of(twin: &Twin, id: &str) -> Option<ConfigurationStatus> {
    let node = twin.configurations().get_path(&[id, "status"])?;
    match node.value() {
        ValueRef::Str(s) => ConfigurationStatus::parse(s),
        _ => None,
    }
}

/// What a tally's marks mean for `cfg` (see [`Tally::basis`]).
pub(super) fn basis(cfg: &Configuration) -> String {
    let queries: Vec<&str> = cfg.metrics.queries.values().map(String::as_str).collect();
    format!("{}\n{}", cfg.created_time_utc.ticks(), queries.join("\n"))
}

/// The mark of `cfg` on `twin`.
pub(super) fn mark(cfg: &Configuration, twin: &Twin) -> u8 {
    let mut m = 0;
    if cfg.targets(twin) {
        m |= TARGETED;
    }
    if status_of(twin, &cfg.id) == Some(ConfigurationStatus::Applied) {
        m |= APPLIED;
    }
    m | metric_bits(cfg, twin)
}

/// The custom-metric bits of `cfg`'s mark on `twin`.
pub(super) fn metric_bits(cfg: &Configuration, twin: &Twin) -> u8 {
    let mut m = 0;
    for (i, (_, q)) in cfg.metric_queries.iter().enumerate().take(5) {
        if q.matches(twin) {
            m |= 1 << (METRIC0 + i as u32);
        }
    }
    m
}
