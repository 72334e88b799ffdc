//! [`RedbStore`]: the embedded, durable backend on a single redb file.

use std::collections::btree_map::{BTreeMap, Entry};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::{validate_batch, Op, Store, StoreError, Table};

const BACKEND: &str = "redb";

/// The default memory redb may use to cache pages. The hub keeps its state in memory itself, so
/// the cache serves start-up scans and writes more than repeated reads.
const DEFAULT_CACHE_SIZE: usize = 32 * 1024 * 1024;

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn definition(table: Table) -> Def {
    TableDefinition::new(table.name())
}

/// A durable store in one redb file.
///
/// Every commit is a redb write transaction with [`Durability::Immediate`]: it is fsynced before
/// [`Store::commit`] returns. redb's copy-on-write tree with checksummed double commit slots
/// means that after a crash the file opens at the last completed commit. Every blocking redb
/// call runs on tokio's blocking pool, so the store needs a tokio runtime and never stalls its
/// workers.
///
/// Only one [`RedbStore`] may have a file open at a time, in this process or any other: a second
/// open fails with [`StoreError::Locked`]. Clones share the open file; it is closed when the last
/// clone is dropped and its pending operations have finished.
///
/// # Example
///
/// ```
/// use iot_dm_service::store::{Op, RedbStore, Store, Table};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("hub.redb");
/// let store = RedbStore::open(&path).await?;
/// store.commit(vec![Op::put(Table::Devices, "dev-01", "{}")]).await?;
/// drop(store);
///
/// let store = RedbStore::open(&path).await?;
/// assert_eq!(store.get(Table::Devices, b"dev-01").await?, Some(b"{}".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Options for opening a [`RedbStore`].
///
/// ```
/// use iot_dm_service::store::RedbStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = RedbStore::builder()
///     .cache_size(16 * 1024 * 1024)
///     .check_integrity(true)
///     .open(dir.path().join("hub.redb"))
///     .await?;
/// assert_eq!(store.path(), dir.path().join("hub.redb"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedbStoreBuilder {
    cache_size: usize,
    check_integrity: bool,
}

impl Default for RedbStoreBuilder {
    fn default() -> Self {
        Self {
            cache_size: DEFAULT_CACHE_SIZE,
            check_integrity: false,
        }
    }
}

impl RedbStoreBuilder {
    /// Bytes of memory redb may use to cache pages (default 32 MiB).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Verifies every page's checksum on each open, not only after a crash (default off).
    ///
    /// A file altered outside redb then fails to open with [`StoreError::Corrupt`] instead of
    /// being trusted. The check reads the whole file.
    pub fn check_integrity(mut self, enabled: bool) -> Self {
        self.check_integrity = enabled;
        self
    }

    /// Opens the store at `path`, creating the file and every [`Table`] if needed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process or handle has the file open,
    /// [`StoreError::Incompatible`] for a file of another format version, [`StoreError::Io`] and
    /// [`StoreError::Corrupt`] as their names say.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let log_path = path.clone();
        let inner = blocking("open", move || {
            let mut builder = Database::builder();
            builder
                .set_cache_size(self.cache_size)
                .set_check_integrity_on_open(self.check_integrity);
            let db = builder
                .create(&path)
                .map_err(|e| map_err(e.into(), "open", &path))?;
            let txn = db
                .begin_write()
                .map_err(|e| map_err(e.into(), "open", &path))?;
            for table in Table::ALL {
                txn.open_table(definition(table))
                    .map_err(|e| map_err(e.into(), "open", &path))?;
            }
            txn.commit().map_err(|e| map_err(e.into(), "open", &path))?;
            Ok(Inner { db, path })
        })
        .await?;
        tracing::debug!(path = %log_path.display(), "opened redb store");
        Ok(RedbStore {
            inner: Arc::new(inner),
        })
    }
}

impl RedbStore {
    /// Opens the store at `path` with default options; see [`RedbStoreBuilder::open`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder().open(path).await
    }

    /// Options for opening a store.
    pub fn builder() -> RedbStoreBuilder {
        RedbStoreBuilder::default()
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |e| map_err(e, op, &self.path)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let err = self.err("commit");
        let mut txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| err(e.into()))?;
        {
            // Declared after `txn`, so dropped (closing the tables) before it on every path.
            let mut tables = BTreeMap::new();
            for op in ops {
                let table = match tables.entry(op.table()) {
                    Entry::Occupied(open) => open.into_mut(),
                    Entry::Vacant(slot) => slot.insert(
                        txn.open_table(definition(op.table()))
                            .map_err(|e| err(e.into()))?,
                    ),
                };
                match op {
                    Op::Put { key, value, .. } => {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(|e| err(e.into()))?;
                    }
                    Op::Delete { key, .. } => {
                        table.remove(key.as_slice()).map_err(|e| err(e.into()))?;
                    }
                    Op::DeleteRange { start, end, .. } => {
                        if start < end {
                            table
                                .retain_in::<&[u8], _>(start.as_slice()..end.as_slice(), |_, _| {
                                    false
                                })
                                .map_err(|e| err(e.into()))?;
                        }
                    }
                }
            }
        }
        // On any error above, dropping `txn` aborts it: nothing of the batch is applied.
        txn.commit().map_err(|e| err(e.into()))
    }

    fn read<T>(
        &self,
        op: &'static str,
        table: Table,
        empty: T,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let err = self.err(op);
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        match txn.open_table(definition(table)) {
            Ok(t) => f(&t).map_err(err),
            // Every table is created on open; a file written by someone else may lack one.
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(err(e.into())),
        }
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        validate_batch(&ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        blocking("commit", move || inner.commit(ops)).await
    }

    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_vec();
        blocking("get", move || {
            inner.read("get", table, None, |t| {
                Ok(t.get(key.as_slice())?.map(|v| v.value().to_vec()))
            })
        })
        .await
    }

    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let after = after.map(<[u8]>::to_vec);
        blocking("scan", move || {
            inner.read("scan", table, Vec::new(), |t| {
                let lower = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut out = Vec::new();
                for entry in t.range::<&[u8]>((lower, Bound::Unbounded))?.take(limit) {
                    let (k, v) = entry?;
                    out.push((k.value().to_vec(), v.value().to_vec()));
                }
                Ok(out)
            })
        })
        .await
    }

    async fn len(&self, table: Table) -> Result<u64, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking("len", move || inner.read("len", table, 0, |t| Ok(t.len()?))).await
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

/// Runs a blocking redb call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(op, %detail, "redb call panicked");
            // redb panics only on states it cannot explain, e.g. a file damaged outside redb.
            Err(StoreError::Corrupt {
                backend: BACKEND,
                op,
                detail: format!("redb panicked: {detail}"),
            })
        }
        Err(_) => Err(StoreError::Closed {
            what: "redb store (its runtime is shutting down)",
        }),
    }
}

fn map_err(e: redb::Error, op: &'static str, path: &Path) -> StoreError {
    match e {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        redb::Error::UpgradeRequired(version) => StoreError::Incompatible {
            path: path.to_path_buf(),
            detail: format!("file format version {version} needs an upgrade"),
        },
        redb::Error::Io(source) => StoreError::Io {
            backend: BACKEND,
            op,
            source: Arc::new(source),
        },
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            backend: BACKEND,
            op,
            detail,
        },
        redb::Error::DatabaseClosed => StoreError::Closed { what: "redb store" },
        e @ (redb::Error::PreviousIo | redb::Error::LockPoisoned(_)) => StoreError::Poisoned {
            what: "redb store",
            cause: Arc::new(StoreError::Backend {
                backend: BACKEND,
                op,
                detail: e.to_string(),
            }),
        },
        e => StoreError::Backend {
            backend: BACKEND,
            op,
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::conformance::Fixture;

    /// A redb file in a temporary directory, removed with the fixture.
    pub(crate) struct RedbFixture {
        dir: tempfile::TempDir,
    }

    impl RedbFixture {
        pub(crate) fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
    }

    #[async_trait::async_trait]
    impl Fixture for RedbFixture {
        type Store = RedbStore;

        async fn open(&self) -> RedbStore {
            RedbStore::open(self.dir.path().join("store.redb"))
                .await
                .unwrap()
        }
    }

    crate::store_conformance!(RedbFixture::new());

    #[tokio::test]
    async fn a_second_open_of_the_same_file_is_locked() {
        let fx = RedbFixture::new();
        let first = fx.open().await;
        let err = RedbStore::open(first.path()).await.unwrap_err();
        assert!(err.is_locked(), "{err}");
        assert!(err.to_string().contains("store.redb"), "{err}");
        drop(first);
        let again = fx.open().await;
        assert_eq!(again.backend(), "redb");
    }

    #[tokio::test]
    async fn open_creates_every_table() {
        let fx = RedbFixture::new();
        let store = fx.open().await;
        let inner = Arc::clone(&store.inner);
        let names = tokio::task::spawn_blocking(move || {
            let txn = inner.db.begin_read().unwrap();
            txn.list_tables()
                .unwrap()
                .map(|h| redb::TableHandle::name(&h).to_owned())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        for table in Table::ALL {
            assert!(names.iter().any(|n| n == table.name()), "{table} missing");
        }
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = RedbStore::open(&path).await.unwrap_err();
        assert!(err.is_io() || err.is_corrupt(), "{err}");
    }

    #[tokio::test]
    async fn opening_in_a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = RedbStore::open(dir.path().join("no/such/dir/store.redb"))
            .await
            .unwrap_err();
        assert!(err.is_io(), "{err}");
        assert_eq!(
            err.io_error().map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn redb_errors_map_to_typed_kinds() {
        let path = Path::new("x.redb");
        assert!(map_err(redb::Error::DatabaseAlreadyOpen, "open", path).is_locked());
        assert!(map_err(redb::Error::UpgradeRequired(2), "open", path).is_incompatible());
        assert!(map_err(redb::Error::Corrupted("bad page".into()), "get", path).is_corrupt());
        assert!(map_err(redb::Error::PreviousIo, "commit", path).is_poisoned());
        assert!(map_err(redb::Error::DatabaseClosed, "get", path).is_closed());
        let other = map_err(redb::Error::TransactionInProgress, "commit", path);
        assert!(
            matches!(other, StoreError::Backend { op: "commit", .. }),
            "{other}"
        );
    }
}
