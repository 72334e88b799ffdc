//! TEMPORARY stand-in for the storage layer, replaced by the real one at merge.
#![allow(missing_docs, clippy::all, clippy::unwrap_used)]
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    Devices,
    Archive,
    Log,
    Meta,
    Policies,
    Jobs,
    Configurations,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
    DeleteRange {
        table: Table,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("store failed: {0}")]
    Failed(String),
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;
    async fn len(&self, table: Table) -> Result<u64, StoreError>;
    fn backend(&self) -> &'static str;
}

#[derive(Debug, Clone, Default)]
pub struct MemoryStore(Arc<Mutex<BTreeMap<(Table, Vec<u8>), Vec<u8>>>>);
impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut m = self.0.lock().unwrap();
        for op in ops {
            match op {
                Op::Put { table, key, value } => {
                    m.insert((table, key), value);
                }
                Op::Delete { table, key } => {
                    m.remove(&(table, key));
                }
                Op::DeleteRange { table, start, end } => {
                    m.retain(|(t, k), _| !(*t == table && *k >= start && *k < end));
                }
            }
        }
        Ok(())
    }
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.lock().unwrap().get(&(table, key.to_vec())).cloned())
    }
    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let m = self.0.lock().unwrap();
        Ok(m.iter()
            .filter(|((t, k), _)| *t == table && after.map_or(true, |a| k.as_slice() > a))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
    async fn len(&self, table: Table) -> Result<u64, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|(t, _)| *t == table)
            .count() as u64)
    }
    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[derive(Debug, Clone)]
pub struct Committer {
    store: Arc<dyn Store>,
}
impl Committer {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Committer { store }
    }
    pub fn submit(
        &self,
        ops: Vec<Op>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let store = self.store.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(store.commit(ops).await);
        });
        async move { rx.await.unwrap_or(Err(StoreError::Failed("gone".into()))) }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RedbStore(MemoryStore);
impl RedbStore {
    pub async fn open(_p: std::path::PathBuf) -> Result<Self, StoreError> {
        Ok(Self::default())
    }
}
#[async_trait::async_trait]
impl Store for RedbStore {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.0.commit(ops).await
    }
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(table, key).await
    }
    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.0.scan(table, after, limit).await
    }
    async fn len(&self, table: Table) -> Result<u64, StoreError> {
        self.0.len(table).await
    }
    fn backend(&self) -> &'static str {
        "redb"
    }
}
