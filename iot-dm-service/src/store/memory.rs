//! [`MemoryStore`]: the in-memory backend.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{validate_batch, Op, Store, StoreError, Table};

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

/// A store held in ordered maps in memory. Nothing survives the process.
///
/// Every batch is applied under one write lock, so readers see all of it or none. Clones share
/// the data, which makes "reopening" a clone: tests use that to stand in for a durable backend.
///
/// # Example
///
/// ```
/// use iot_dm_service::store::{MemoryStore, Op, Store, Table};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), iot_dm_service::store::StoreError> {
/// let store = MemoryStore::new();
/// store
///     .commit(vec![
///         Op::put(Table::Devices, "b", "2"),
///         Op::put(Table::Devices, "a", "1"),
///         Op::delete(Table::Devices, "missing"),
///     ])
///     .await?;
/// let shared = store.clone();
/// assert_eq!(shared.get(Table::Devices, b"a").await?, Some(b"1".to_vec()));
/// let page = shared.scan(Table::Devices, Some(b"a"), 10).await?;
/// assert_eq!(page, vec![(b"b".to_vec(), b"2".to_vec())]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    tables: Arc<RwLock<Tables>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self, op: &'static str) -> Result<RwLockReadGuard<'_, Tables>, StoreError> {
        self.tables.read().map_err(|_| poisoned(op))
    }

    fn write(&self, op: &'static str) -> Result<RwLockWriteGuard<'_, Tables>, StoreError> {
        self.tables.write().map_err(|_| poisoned(op))
    }
}

fn poisoned(op: &'static str) -> StoreError {
    StoreError::Poisoned {
        what: "memory store",
        cause: Arc::new(StoreError::Backend {
            backend: "memory",
            op,
            detail: "a thread panicked while holding the store's lock".to_owned(),
        }),
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("MemoryStore");
        match self.tables.try_read() {
            Ok(tables) => {
                for (table, entries) in tables.iter() {
                    s.field(table.name(), &entries.len());
                }
            }
            Err(_) => {
                s.field("tables", &"<locked>");
            }
        }
        s.finish()
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        validate_batch(&ops)?;
        let mut tables = self.write("commit")?;
        for op in ops {
            match op {
                Op::Put { table, key, value } => {
                    tables.entry(table).or_default().insert(key, value);
                }
                Op::Delete { table, key } => {
                    if let Some(entries) = tables.get_mut(&table) {
                        entries.remove(&key);
                    }
                }
                Op::DeleteRange { table, start, end } => {
                    // validate_batch guarantees start <= end, so the split points are ordered.
                    if let Some(entries) = tables.get_mut(&table) {
                        let mut tail = entries.split_off(&start);
                        let mut kept = tail.split_off(&end);
                        entries.append(&mut kept);
                    }
                }
            }
        }
        Ok(())
    }

    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tables = self.read("get")?;
        Ok(tables.get(&table).and_then(|t| t.get(key)).cloned())
    }

    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let tables = self.read("scan")?;
        let Some(entries) = tables.get(&table) else {
            return Ok(Vec::new());
        };
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(entries
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn len(&self, table: Table) -> Result<u64, StoreError> {
        let tables = self.read("len")?;
        let len = tables.get(&table).map_or(0, BTreeMap::len);
        Ok(u64::try_from(len).unwrap_or(u64::MAX))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::MemoryFixture;

    crate::store_conformance!(MemoryFixture::new());

    #[tokio::test]
    async fn debug_lists_table_sizes() {
        let store = MemoryStore::new();
        store
            .commit(vec![
                Op::put(Table::Jobs, "a", "1"),
                Op::put(Table::Jobs, "b", ""),
            ])
            .await
            .unwrap();
        assert_eq!(format!("{store:?}"), "MemoryStore { jobs: 2 }");
    }

    #[tokio::test]
    async fn a_panicking_writer_poisons_the_store() {
        let store = MemoryStore::new();
        let clone = store.clone();
        let _ = std::thread::spawn(move || {
            let _guard = clone.tables.write();
            panic!("writer dies holding the lock");
        })
        .join();
        let err = store
            .commit(vec![Op::put(Table::Log, "k", "v")])
            .await
            .unwrap_err();
        assert!(err.is_poisoned(), "{err}");
        assert!(store.get(Table::Log, b"k").await.unwrap_err().is_poisoned());
    }
}
