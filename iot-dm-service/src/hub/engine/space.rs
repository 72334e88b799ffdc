//! The free space on the disk holding a durable store.
//!
//! A commit that fails for want of space poisons the committer (nothing is acknowledged on top
//! of a failed commit), and only a restart clears that. So the hub refuses a write *before* it
//! changes anything while the disk holding the store has less than a reserve free:
//! [`HubError::InsufficientStorage`] (HTTP 507, `507001`), nothing applied, nothing poisoned,
//! and writes succeed again as soon as space returns. Reads are never refused. The reserve
//! must cover one group commit and the store file's growth; when it does not, the commit
//! fails, the committer is poisoned, and the error still says the disk is full.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::hub::HubError;

/// The free space a write needs by default on the disk holding the store (16 MiB).
pub const DEFAULT_MIN_FREE_SPACE: u64 = 16 * 1024 * 1024;

/// How long a reading of the free space is trusted while there is plenty of it.
const FRESH: Duration = Duration::from_millis(100);

/// Refuses writes while the disk holding a store is nearly full.
#[derive(Debug)]
pub(crate) struct SpaceGuard {
    dir: PathBuf,
    min_free: u64,
    /// What the readings' times count from.
    origin: Instant,
    /// When the last reading was taken (nanoseconds after `origin`; 0: never), and how many
    /// bytes were free then. Atomics rather than a lock: every write of the hub passes here.
    read_at: AtomicU64,
    free: AtomicU64,
}

impl SpaceGuard {
    /// A guard for the store file at `path`, refusing writes under `min_free` free bytes.
    #[cfg_attr(not(feature = "store-redb"), allow(dead_code))]
    pub(crate) fn new(path: &Path, min_free: u64) -> SpaceGuard {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        SpaceGuard {
            dir,
            min_free,
            origin: Instant::now(),
            read_at: AtomicU64::new(0),
            free: AtomicU64::new(0),
        }
    }

    /// `Ok` when a write may go ahead. The disk is asked at most every [`FRESH`] while it has
    /// four times the reserve free, and before every write when it has less. When the free
    /// space cannot be read, writes go ahead (the commit will tell).
    pub(crate) fn check(&self) -> Result<(), HubError> {
        if self.min_free == 0 {
            return Ok(());
        }
        // at least 1, so that 0 can mean "never read"
        let now = u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let at = self.read_at.load(Ordering::Relaxed);
        let fresh = u64::try_from(FRESH.as_nanos()).unwrap_or(u64::MAX);
        if at != 0
            && now.saturating_sub(at) < fresh
            && self.free.load(Ordering::Relaxed) >= self.min_free.saturating_mul(4)
        {
            return Ok(());
        }
        let Some(free) = free_bytes(&self.dir) else {
            return Ok(());
        };
        // two writers reading at once store about the same figures: either one will do
        self.free.store(free, Ordering::Relaxed);
        self.read_at.store(now, Ordering::Relaxed);
        if free < self.min_free {
            return Err(HubError::InsufficientStorage {
                path: self.dir.display().to_string(),
                free,
                needed: self.min_free,
            });
        }
        Ok(())
    }
}

#[cfg(all(unix, feature = "store-redb"))]
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Only the embedded file store is guarded (see [`SpaceGuard`]).
#[cfg(not(all(unix, feature = "store-redb")))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_any_disk_refuses_and_names_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let guard = SpaceGuard::new(&dir.path().join("hub.redb"), u64::MAX);
        let e = guard.check().unwrap_err();
        assert_eq!((e.http_status(), e.code()), (507, 507_001));
        assert_eq!(e.code_name(), "InsufficientStorage");
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
        assert!(SpaceGuard::new(&dir.path().join("hub.redb"), 1)
            .check()
            .is_ok());
        assert!(SpaceGuard::new(&dir.path().join("hub.redb"), 0)
            .check()
            .is_ok());
    }
}
