//! Admission of connections that have not authenticated yet, and logs of refusals that do
//! not grow with a flood. Shared by the MQTT endpoint and the REST API.
//!
//! A socket that has not finished its handshakes and CONNECT costs the hub a slot, memory and
//! a timer, and proves nothing. So that a flood of such sockets (a scan, a misbehaving
//! gateway, an attack) cannot use every slot and starve real devices, at most
//! `max_opening` connections may be opening at once, and at most `max_opening_per_source`
//! from one IP address. A connection gives its opening permit back as soon as it is
//! authenticated (or fails), so authenticated devices are never limited by it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why an opening permit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crowded {
    /// `max_opening` connections are opening.
    Server,
    /// `max_opening_per_source` connections from this address are opening.
    Source,
}

/// The opening connections, in all and by source address.
#[derive(Debug)]
pub(crate) struct Admission {
    max_opening: usize,
    max_per_source: usize,
    state: Mutex<Opening>,
}

#[derive(Debug, Default)]
struct Opening {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

impl Admission {
    pub(crate) fn new(max_opening: usize, max_per_source: usize) -> Admission {
        Admission {
            max_opening,
            max_per_source,
            state: Mutex::default(),
        }
    }

    /// Counts one more opening connection from `source`, if there is room; the connection
    /// takes its place over with [`OpeningPermit::adopt`], which gives it back when dropped.
    /// (The accept loop admits before it spawns the connection's task, which then adopts its
    /// place: so the task does not carry the permit for its whole life.)
    pub(crate) fn try_admit(&self, source: IpAddr) -> Result<(), Crowded> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.total >= self.max_opening {
            return Err(Crowded::Server);
        }
        let n = s.by_source.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(Crowded::Source);
        }
        *n += 1;
        s.total += 1;
        Ok(())
    }

    /// The most connections opening at once.
    pub(crate) fn max_opening(&self) -> usize {
        self.max_opening
    }

    /// The most connections from one address opening at once.
    pub(crate) fn max_per_source(&self) -> usize {
        self.max_per_source
    }

    /// Connections opening now.
    #[cfg(test)]
    pub(crate) fn opening(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One opening connection's place; dropped once it is authenticated or has failed.
#[derive(Debug)]
pub(crate) struct OpeningPermit {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl OpeningPermit {
    /// Takes over the place [`Admission::try_admit`] counted for `source`.
    pub(crate) fn adopt(admission: Arc<Admission>, source: IpAddr) -> OpeningPermit {
        OpeningPermit { admission, source }
    }
}

impl Drop for OpeningPermit {
    fn drop(&mut self) {
        let mut s = self
            .admission
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.by_source.remove(&self.source);
            }
        }
    }
}

/// Rate-limits a warning by source address: the first event from a source in each window is
/// let through, carrying how many events from that source were held back since the last one;
/// the rest are only counted. At most `max_sources` sources are tracked at once: past that
/// (a flood from many addresses), events from new sources are held back and counted together.
#[derive(Debug)]
pub(crate) struct PerSourceLog {
    window: Duration,
    max_sources: usize,
    state: std::sync::Mutex<PerSourceState>,
}

#[derive(Debug, Default)]
struct PerSourceState {
    /// When each source's window started, and the events held back in it.
    sources: std::collections::HashMap<std::net::IpAddr, (tokio::time::Instant, u64)>,
    /// Events held back because too many sources were tracked.
    untracked: u64,
}

impl PerSourceLog {
    pub(crate) fn new(window: Duration, max_sources: usize) -> PerSourceLog {
        PerSourceLog {
            window,
            max_sources: max_sources.max(1),
            state: std::sync::Mutex::default(),
        }
    }

    /// `Some(held back)` when this event from `source` is to be logged, `None` when it is
    /// only counted.
    pub(crate) fn admit(&self, source: std::net::IpAddr, now: tokio::time::Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window;
        if !s.sources.contains_key(&source) && s.sources.len() >= self.max_sources {
            s.sources
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            if s.sources.len() >= self.max_sources {
                s.untracked += 1;
                return None;
            }
        }
        let untracked = std::mem::take(&mut s.untracked);
        match s.sources.get_mut(&source) {
            Some((start, held)) if now.duration_since(*start) < window => {
                *held += 1;
                s.untracked = untracked;
                None
            }
            Some((start, held)) => {
                *start = now;
                Some(std::mem::take(held) + untracked)
            }
            None => {
                s.sources.insert(source, (now, 0));
                Some(untracked)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn permits_are_bounded_in_all_and_per_source_and_come_back() {
        let a = Arc::new(Admission::new(3, 2));
        let admit = |n| {
            a.try_admit(ip(n))
                .map(|()| OpeningPermit::adopt(a.clone(), ip(n)))
        };
        let p1 = admit(1).unwrap();
        let p2 = admit(1).unwrap();
        assert_eq!(admit(1).unwrap_err(), Crowded::Source);
        let p3 = admit(2).unwrap();
        assert_eq!(admit(3).unwrap_err(), Crowded::Server);
        assert_eq!(a.opening(), 3);
        drop(p1);
        let p4 = admit(3).unwrap();
        drop((p2, p3, p4));
        assert_eq!(a.opening(), 0);
        assert!(a.state.lock().unwrap().by_source.is_empty());
    }

    #[test]
    fn one_line_per_source_and_window_with_what_was_held_back() {
        let log = PerSourceLog::new(Duration::from_secs(60), 2);
        let t0 = tokio::time::Instant::now();
        assert_eq!(log.admit(ip(1), t0), Some(0));
        for _ in 0..5 {
            assert_eq!(log.admit(ip(1), t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(log.admit(ip(2), t0), Some(0));
        // a third source while two are tracked and still in their window: counted together
        assert_eq!(log.admit(ip(3), t0 + Duration::from_secs(2)), None);
        assert_eq!(log.admit(ip(3), t0 + Duration::from_secs(3)), None);
        // the next window of source 1 reports its five and the two untracked
        assert_eq!(log.admit(ip(1), t0 + Duration::from_secs(61)), Some(7));
        // once the windows ran out, a new source is tracked again
        assert_eq!(log.admit(ip(3), t0 + Duration::from_secs(200)), Some(0));
    }
}
