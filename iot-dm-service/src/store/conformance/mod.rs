//! The conformance suite every [`Store`] backend must pass, with its test doubles.
//!
//! Available in this crate's tests and, for other crates, behind the `testkit` feature. A
//! backend provides a [`Fixture`] (how to open, and reopen, one store) and expands
//! [`store_conformance!`](crate::store_conformance) inside a test module; the macro writes one
//! `#[tokio::test]` per check, each on a fresh fixture:
//!
//! ```
//! #[cfg(test)]
//! mod tests {
//!     use iot_dm_service::store::conformance::MemoryFixture;
//!
//!     // A real backend passes its own fixture, e.g. one over a temporary directory.
//!     iot_dm_service::store_conformance!(MemoryFixture::new());
//! }
//! # fn main() {}
//! ```
//!
//! [`run_all`] runs the same checks in sequence, for a backend whose tests want one entry point.
//! Each check panics, like `assert!`, when the backend breaks the contract.
#![allow(clippy::unwrap_used)] // A failed check panics with the error: that is the report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{MemoryStore, Op, Store, StoreError, Table};

mod committer_checks;
mod store_checks;

pub use self::committer_checks::{committer_orders_and_acks, committer_poisoning};
pub use self::store_checks::{
    batches_are_atomic_and_ordered, concurrent_commits, delete_range_bounds, empty_keys_and_values,
    large_values_and_limits, put_get_delete, readers_see_whole_batches, reopen_persists,
    scan_orders_bytes_lexicographically, scan_pages_in_key_order, tables_are_independent,
};

/// How a check opens the store under test.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    /// The backend under test.
    type Store: Store;

    /// Opens the fixture's store. Every call opens the same data: a check drops the previous
    /// store (and waits for its operations) before opening it again, and expects to find every
    /// committed batch.
    async fn open(&self) -> Self::Store;
}

/// A [`Fixture`] for [`MemoryStore`]: reopening returns a clone sharing the data.
///
/// ```
/// use iot_dm_service::store::conformance::{self, MemoryFixture};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// conformance::put_get_delete(&MemoryFixture::new()).await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryFixture {
    store: MemoryStore,
}

impl MemoryFixture {
    /// A fixture over an empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Fixture for MemoryFixture {
    type Store = MemoryStore;

    async fn open(&self) -> MemoryStore {
        self.store.clone()
    }
}

/// A store wrapper whose commits fail on demand, with an I/O error, without touching the
/// wrapped store. Clones share the switch.
///
/// ```
/// use iot_dm_service::store::conformance::FailingStore;
/// use iot_dm_service::store::{MemoryStore, Op, Store, Table};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = FailingStore::new(MemoryStore::new());
/// store.fail_commits(true);
/// let err = store.commit(vec![Op::put(Table::Log, "k", "v")]).await.unwrap_err();
/// assert!(err.is_io());
/// assert_eq!(store.len(Table::Log).await.unwrap(), 0);
/// # }
/// ```
#[derive(Debug)]
pub struct FailingStore<S> {
    inner: Arc<S>,
    failing: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
}

impl<S> Clone for FailingStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            failing: Arc::clone(&self.failing),
            commits: Arc::clone(&self.commits),
        }
    }
}

impl<S: Store> FailingStore<S> {
    /// Wraps `inner`; commits pass through until [`fail_commits`](Self::fail_commits).
    pub fn new(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            failing: Arc::new(AtomicBool::new(false)),
            commits: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Makes every following commit fail (`true`) or pass through again (`false`).
    pub fn fail_commits(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Commits passed through to the wrapped store and answered there.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for FailingStore<S> {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                backend: self.inner.backend(),
                op: "commit",
                source: Arc::new(std::io::Error::other("injected commit failure")),
            });
        }
        let result = self.inner.commit(ops).await;
        self.commits.fetch_add(1, Ordering::SeqCst);
        result
    }

    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key).await
    }

    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan(table, after, limit).await
    }

    async fn len(&self, table: Table) -> Result<u64, StoreError> {
        self.inner.len(table).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// Expands to one `#[tokio::test]` per conformance check, each on a fresh fixture made by the
/// given expression (evaluated once per test). The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! store_conformance {
    ($fixture:expr) => {
        $crate::store_conformance!(@checks $fixture;
            put_get_delete,
            scan_pages_in_key_order,
            scan_orders_bytes_lexicographically,
            delete_range_bounds,
            batches_are_atomic_and_ordered,
            readers_see_whole_batches,
            tables_are_independent,
            empty_keys_and_values,
            large_values_and_limits,
            reopen_persists,
            concurrent_commits,
            committer_orders_and_acks,
            committer_poisoning,
        );
    };
    (@checks $fixture:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture;
                $crate::store::conformance::$check(&fixture).await;
            }
        )*
    };
}

/// Runs every check in sequence, each on a fresh fixture from `make`.
pub async fn run_all<F: Fixture>(make: impl Fn() -> F) {
    put_get_delete(&make()).await;
    scan_pages_in_key_order(&make()).await;
    scan_orders_bytes_lexicographically(&make()).await;
    delete_range_bounds(&make()).await;
    batches_are_atomic_and_ordered(&make()).await;
    readers_see_whole_batches(&make()).await;
    tables_are_independent(&make()).await;
    empty_keys_and_values(&make()).await;
    large_values_and_limits(&make()).await;
    reopen_persists(&make()).await;
    concurrent_commits(&make()).await;
    committer_orders_and_acks(&make()).await;
    committer_poisoning(&make()).await;
}

pub(super) fn v(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

pub(super) async fn keys(store: &impl Store, table: Table) -> Vec<Vec<u8>> {
    let all = store.scan(table, None, usize::MAX).await.unwrap();
    all.into_iter().map(|(k, _)| k).collect()
}

pub(super) fn keys_of(page: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    page.iter().map(|(k, _)| k.clone()).collect()
}
