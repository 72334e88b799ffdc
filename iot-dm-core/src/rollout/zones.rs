//! Time zones of the devices of a rollout: interned, with each zone's window answer cached.

use std::collections::HashMap;

use jiff::tz::TimeZone;

use super::window::{self, Position, Window};
use crate::clock::Timestamp;

/// The index of UTC, the fallback zone.
pub(crate) const UTC: u16 = 0;

#[derive(Debug, Clone)]
struct Cached {
    from: Timestamp,
    pos: Position,
}

impl Cached {
    fn holds_at(&self, t: Timestamp) -> bool {
        self.from <= t
            && match self.pos {
                Position::Open { until } => t < until,
                Position::Closed { opens: Some(o) } => t < o,
                Position::Closed { opens: None } => true,
            }
    }
}

/// The interned zones (index 0 is UTC).
#[derive(Debug, Clone)]
pub(crate) struct Zones {
    names: Vec<String>,
    tzs: Vec<TimeZone>,
    index: HashMap<String, u16>,
    cache: Vec<Option<Cached>>,
}

impl Default for Zones {
    fn default() -> Zones {
        Zones {
            names: vec!["UTC".to_string()],
            tzs: vec![TimeZone::UTC],
            index: HashMap::from([("UTC".to_string(), UTC)]),
            cache: vec![None],
        }
    }
}

impl Zones {
    /// The zone named `name`, or `None` when the name is unknown (or there are too many).
    pub(crate) fn resolve(&mut self, name: &str) -> Option<u16> {
        if let Some(i) = self.index.get(name) {
            return Some(*i);
        }
        let tz = TimeZone::get(name).ok()?;
        let i = u16::try_from(self.names.len())
            .ok()
            .filter(|i| *i < u16::MAX)?;
        self.names.push(name.to_string());
        self.tzs.push(tz);
        self.cache.push(None);
        self.index.insert(name.to_string(), i);
        Some(i)
    }

    /// Zones restored by name, in index order; a name no longer known reads as UTC.
    pub(crate) fn from_names(names: Vec<String>) -> Zones {
        let mut z = Zones {
            names: Vec::new(),
            tzs: Vec::new(),
            index: HashMap::new(),
            cache: Vec::new(),
        };
        for (i, name) in names.into_iter().enumerate() {
            z.tzs.push(TimeZone::get(&name).unwrap_or(TimeZone::UTC));
            if let Ok(i) = u16::try_from(i) {
                z.index.entry(name.clone()).or_insert(i);
            }
            z.names.push(name);
            z.cache.push(None);
        }
        if z.names.is_empty() {
            return Zones::default();
        }
        z
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Where `t` stands against `windows` in zone `zone` (always open without windows).
    pub(crate) fn position(&mut self, windows: &[Window], zone: u16, t: Timestamp) -> Position {
        if windows.is_empty() {
            return Position::Open {
                until: Timestamp::from_ticks(i64::MAX),
            };
        }
        let z = usize::from(zone);
        if let Some(Some(c)) = self.cache.get(z) {
            if c.holds_at(t) {
                return c.pos;
            }
        }
        let pos = match self.tzs.get(z) {
            Some(tz) => window::position(windows, tz, t),
            None => window::position(windows, &TimeZone::UTC, t),
        };
        if let Some(slot) = self.cache.get_mut(z) {
            *slot = Some(Cached { from: t, pos });
        }
        pos
    }
}
