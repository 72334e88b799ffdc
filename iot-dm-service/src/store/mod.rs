//! Durable storage for the hub: a backend-neutral, ordered key-value store.
//!
//! The hub keeps every device and twin in memory. It uses this layer for two things only: to make
//! each write durable before it answers the client, and to reload its state on start. That is
//! all a [`Store`] offers: atomic batches of [`Op`]s, point reads, ordered scans and table sizes
//! over a fixed set of [`Table`]s whose keys and values are plain bytes. Encoding records is the
//! hub's business, so that a new backend (PostgreSQL for multi-node hubs, say) implements five
//! methods and passes the one conformance suite every backend runs (module `conformance`,
//! behind the `testkit` feature).
//!
//! | backend | durable | use |
//! |---|---|---|
//! | [`MemoryStore`] | no: it lives and dies with the process | tests, ephemeral hubs |
//! | [`RedbStore`] | yes: fsync before every commit returns | the embedded default |
//!
//! # The durability contract
//!
//! When [`Store::commit`] returns `Ok`, the whole batch is applied, in order, and durable: it
//! survives the process being killed (`kill -9`), and on a durable backend also a power loss.
//! When it returns `Err`, none of the batch is applied. (An I/O failure during the final flush
//! can leave a backend unable to tell; the [`Committer`] therefore stops accepting writes after
//! any failed commit, so that no write is ever acknowledged on top of an unknown state.)
//! Readers see either none or all of a batch.
//!
//! Every batch is checked before any of it is applied: keys are at most [`MAX_KEY_LEN`] bytes,
//! values at most [`MAX_VALUE_LEN`] bytes, and a [`Op::DeleteRange`] may not start after it
//! ends. A batch breaking a limit fails whole with a typed [`StoreError`], on every backend.
//!
//! # Group commit
//!
//! A durable commit costs an fsync, a few milliseconds whatever its size. The [`Committer`]
//! shares that cost: writers [`submit`](Committer::submit) their batches to one background task,
//! which takes everything queued (up to a configurable number of ops and bytes), concatenates
//! the batches in submission order into one [`Store::commit`], and then acknowledges each
//! writer. A writer's acknowledgement therefore means its batch, and every batch submitted
//! before it, is durable. Submitting enqueues synchronously, so a writer that submits while
//! holding a lock fixes its place in the commit order at that moment. After a failed commit
//! every writer of that batch gets the error and the committer is
//! [poisoned](StoreError::is_poisoned): the hub refuses writes rather than risk acknowledging
//! one that is lost.
//!
//! # Cancel safety
//!
//! Dropping the future of a commit or a submission does not withdraw the write: the batch is
//! already handed to the backend or queued, and may still become durable. Only an `Ok` is a
//! promise.
//!
//! # Example
//!
//! ```
//! use iot_dm_service::store::{Committer, MemoryStore, Op, Store, Table};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), iot_dm_service::store::StoreError> {
//! let store = MemoryStore::new();
//! let committer = Committer::new(store.clone());
//! committer
//!     .submit(vec![Op::put(Table::Devices, "dev-01", r#"{"status":"enabled"}"#)])
//!     .await?;
//! assert_eq!(store.len(Table::Devices).await?, 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

mod committer;
#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod memory;
#[cfg(feature = "store-redb")]
mod redb;

pub use self::committer::{CommitAck, Committer, CommitterBuilder, CommitterStats, OnDurable};
pub use self::memory::MemoryStore;
#[cfg(feature = "store-redb")]
pub use self::redb::{RedbStore, RedbStoreBuilder};

/// The largest key, in bytes, that any backend accepts.
pub const MAX_KEY_LEN: usize = 1024;

/// The largest value, in bytes, that any backend accepts.
pub const MAX_VALUE_LEN: usize = 16 * 1024 * 1024;

/// A table of the store: an independent, ordered map from byte keys to byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// Device identities and twins.
    Devices,
    /// Records of deleted devices.
    Archive,
    /// An append-style log of hub events.
    Log,
    /// Hub metadata: format versions, counters, settings.
    Meta,
    /// Shared access policies.
    Policies,
    /// Scheduled and finished jobs.
    Jobs,
    /// Automatic device configurations.
    Configurations,
}

impl Table {
    /// Every table, in declaration order.
    pub const ALL: [Table; 7] = [
        Table::Devices,
        Table::Archive,
        Table::Log,
        Table::Meta,
        Table::Policies,
        Table::Jobs,
        Table::Configurations,
    ];

    /// The table's stable name, as backends store it.
    ///
    /// ```
    /// use iot_dm_service::store::Table;
    /// assert_eq!(Table::Configurations.name(), "configurations");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Table::Devices => "devices",
            Table::Archive => "archive",
            Table::Log => "log",
            Table::Meta => "meta",
            Table::Policies => "policies",
            Table::Jobs => "jobs",
            Table::Configurations => "configurations",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One write of a batch given to [`Store::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`, replacing any previous value.
    Put {
        /// The table written.
        table: Table,
        /// The key, at most [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
        /// The value, at most [`MAX_VALUE_LEN`] bytes; may be empty.
        value: Vec<u8>,
    },
    /// Removes `key`; a no-op when it is absent.
    Delete {
        /// The table written.
        table: Table,
        /// The key, at most [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
    },
    /// Removes every key `k` with `start <= k < end`; empty when `start == end`.
    DeleteRange {
        /// The table written.
        table: Table,
        /// The first key removed (inclusive), at most [`MAX_KEY_LEN`] bytes.
        start: Vec<u8>,
        /// The bound where removal stops (exclusive), at most [`MAX_KEY_LEN`] bytes.
        end: Vec<u8>,
    },
}

impl Op {
    /// An [`Op::Put`].
    ///
    /// ```
    /// use iot_dm_service::store::{Op, Table};
    /// let op = Op::put(Table::Meta, "format", [1u8]);
    /// assert_eq!(op.table(), Table::Meta);
    /// assert_eq!(op.payload_len(), 7);
    /// ```
    pub fn put(table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            table,
            key: key.into(),
            value: value.into(),
        }
    }

    /// An [`Op::Delete`].
    pub fn delete(table: Table, key: impl Into<Vec<u8>>) -> Self {
        Op::Delete {
            table,
            key: key.into(),
        }
    }

    /// An [`Op::DeleteRange`] over `[start, end)`.
    pub fn delete_range(table: Table, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Op::DeleteRange {
            table,
            start: start.into(),
            end: end.into(),
        }
    }

    /// The table the op writes.
    pub fn table(&self) -> Table {
        match self {
            Op::Put { table, .. } | Op::Delete { table, .. } | Op::DeleteRange { table, .. } => {
                *table
            }
        }
    }

    /// The bytes the op carries: key and value, or both range bounds.
    pub fn payload_len(&self) -> usize {
        match self {
            Op::Put { key, value, .. } => key.len().saturating_add(value.len()),
            Op::Delete { key, .. } => key.len(),
            Op::DeleteRange { start, end, .. } => start.len().saturating_add(end.len()),
        }
    }
}

/// Checks a batch against the limits every backend enforces, before any of it is applied.
///
/// Backends call this at the start of [`Store::commit`]; it is public so that new backends
/// outside this crate enforce the same rules.
///
/// ```
/// use iot_dm_service::store::{validate_batch, Op, Table, MAX_KEY_LEN};
/// assert!(validate_batch(&[Op::put(Table::Devices, "a", "")]).is_ok());
/// let err = validate_batch(&[Op::delete(Table::Devices, vec![0u8; MAX_KEY_LEN + 1])]).unwrap_err();
/// assert!(err.is_too_large());
/// ```
pub fn validate_batch(ops: &[Op]) -> Result<(), StoreError> {
    let key_ok = |table: Table, index: usize, key: &[u8]| {
        if key.len() > MAX_KEY_LEN {
            Err(StoreError::KeyTooLarge {
                table,
                index,
                len: key.len(),
                limit: MAX_KEY_LEN,
            })
        } else {
            Ok(())
        }
    };
    for (index, op) in ops.iter().enumerate() {
        match op {
            Op::Put { table, key, value } => {
                key_ok(*table, index, key)?;
                if value.len() > MAX_VALUE_LEN {
                    return Err(StoreError::ValueTooLarge {
                        table: *table,
                        index,
                        len: value.len(),
                        limit: MAX_VALUE_LEN,
                    });
                }
            }
            Op::Delete { table, key } => key_ok(*table, index, key)?,
            Op::DeleteRange { table, start, end } => {
                key_ok(*table, index, start)?;
                key_ok(*table, index, end)?;
                if start > end {
                    return Err(StoreError::InvalidRange {
                        table: *table,
                        index,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The storage backend of the hub: atomic, durable batches over ordered byte tables.
///
/// Implementations are cheap to share (`Arc<dyn Store>` implements `Store` too) and must pass
/// the conformance suite (module `conformance`, feature `testkit`). See the [module docs](self) for the durability contract.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Applies all ops atomically, in order; when it returns Ok the whole batch is durable
    /// (survives kill -9 of the process; for durable backends also power loss).
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError>;

    /// The value of `key` in `table`, if any.
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries of `table` in ascending key order with key > `after` (all when None), at most `limit`.
    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// The number of entries in `table`.
    async fn len(&self, table: Table) -> Result<u64, StoreError>;

    /// The backend's name: `"memory"`, `"redb"`.
    fn backend(&self) -> &'static str;
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        (**self).commit(ops).await
    }

    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(table, key).await
    }

    async fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        (**self).scan(table, after, limit).await
    }

    async fn len(&self, table: Table) -> Result<u64, StoreError> {
        (**self).len(table).await
    }

    fn backend(&self) -> &'static str {
        (**self).backend()
    }
}

/// Why a store operation failed.
///
/// Act on the predicates (`is_io()`, `is_poisoned()`, ...): the message text is for people and
/// may change. The error is `Clone` because the [`Committer`] hands one failure to every writer
/// of the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation of the backend failed.
    #[error("i/o error in the {backend} store during {op}: {source}")]
    Io {
        /// The backend's name.
        backend: &'static str,
        /// The operation that failed (`open`, `commit`, `get`, ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The stored data failed an integrity check.
    #[error("the {backend} store is corrupt (found during {op}): {detail}")]
    Corrupt {
        /// The backend's name.
        backend: &'static str,
        /// The operation that found the corruption.
        op: &'static str,
        /// What the backend found.
        detail: String,
    },
    /// The store's file is held by another process, or another handle in this process.
    #[error("store file {} is locked by another process or handle", path.display())]
    Locked {
        /// The file that could not be locked.
        path: PathBuf,
    },
    /// The store's file is in a format this version cannot open.
    #[error("store file {} has an unsupported format: {detail}", path.display())]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// What the backend reported.
        detail: String,
    },
    /// The store, or the task or runtime serving it, is gone.
    #[error("the {what} is closed")]
    Closed {
        /// What is closed (`committer`, `redb store`, ...).
        what: &'static str,
    },
    /// An earlier failure left the store or committer refusing every write.
    #[error("the {what} is poisoned and refuses writes after an earlier failure: {cause}")]
    Poisoned {
        /// What is poisoned (`committer`, `memory store`).
        what: &'static str,
        /// The failure that poisoned it.
        #[source]
        cause: Arc<StoreError>,
    },
    /// A key of the batch is longer than [`MAX_KEY_LEN`].
    #[error("op {index} of the batch has a key of {len} bytes in table {table}, over the limit of {limit} bytes")]
    KeyTooLarge {
        /// The table written.
        table: Table,
        /// The op's position in the batch.
        index: usize,
        /// The key's length.
        len: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// A value of the batch is longer than [`MAX_VALUE_LEN`].
    #[error("op {index} of the batch puts a value of {len} bytes in table {table}, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The table written.
        table: Table,
        /// The op's position in the batch.
        index: usize,
        /// The value's length.
        len: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// An [`Op::DeleteRange`] of the batch starts after its end.
    #[error(
        "op {index} of the batch deletes a range of table {table} whose start is after its end"
    )]
    InvalidRange {
        /// The table written.
        table: Table,
        /// The op's position in the batch.
        index: usize,
    },
    /// The backend failed in a way none of the other variants describes.
    #[error("the {backend} store failed during {op}: {detail}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The operation that failed.
        op: &'static str,
        /// What the backend reported.
        detail: String,
    },
}

impl StoreError {
    /// An I/O operation failed ([`StoreError::Io`]).
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }

    /// The stored data is corrupt ([`StoreError::Corrupt`]).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }

    /// The store's file is held by someone else ([`StoreError::Locked`]).
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Locked { .. })
    }

    /// The store's file format is unsupported ([`StoreError::Incompatible`]).
    pub fn is_incompatible(&self) -> bool {
        matches!(self, StoreError::Incompatible { .. })
    }

    /// The store or its serving task is gone ([`StoreError::Closed`]).
    pub fn is_closed(&self) -> bool {
        matches!(self, StoreError::Closed { .. })
    }

    /// An earlier failure makes every write fail ([`StoreError::Poisoned`]).
    pub fn is_poisoned(&self) -> bool {
        matches!(self, StoreError::Poisoned { .. })
    }

    /// The disk is full: an I/O error of kind `StorageFull` (`ENOSPC`), or a poisoning it
    /// caused.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            StoreError::Poisoned { cause, .. } => cause.is_disk_full(),
            _ => false,
        }
    }

    /// A key or value broke a size limit.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            StoreError::KeyTooLarge { .. } | StoreError::ValueTooLarge { .. }
        )
    }

    /// The batch itself was invalid (too large, or a reversed range): retrying it cannot help,
    /// and the store is fine.
    pub fn is_invalid_batch(&self) -> bool {
        self.is_too_large() || matches!(self, StoreError::InvalidRange { .. })
    }

    /// The failure that poisoned the store or committer, for a [`StoreError::Poisoned`].
    pub fn poison_cause(&self) -> Option<&StoreError> {
        match self {
            StoreError::Poisoned { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// The underlying I/O error, for a [`StoreError::Io`].
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_distinct_and_stable() {
        let names: std::collections::BTreeSet<_> = Table::ALL.iter().map(Table::name).collect();
        assert_eq!(names.len(), Table::ALL.len());
        assert_eq!(Table::Devices.to_string(), "devices");
        assert_eq!(Table::Archive.name(), "archive");
        assert_eq!(Table::Log.name(), "log");
        assert_eq!(Table::Meta.name(), "meta");
        assert_eq!(Table::Policies.name(), "policies");
        assert_eq!(Table::Jobs.name(), "jobs");
    }

    #[test]
    fn validate_accepts_limits_and_rejects_past_them() {
        let at_limit = vec![
            Op::put(Table::Devices, vec![1; MAX_KEY_LEN], vec![2; 16]),
            Op::delete_range(Table::Log, "a", "a"),
        ];
        assert!(validate_batch(&at_limit).is_ok());

        let err = validate_batch(&[
            Op::put(Table::Devices, "ok", ""),
            Op::put(Table::Jobs, "big", vec![0; MAX_VALUE_LEN + 1]),
        ])
        .unwrap_err();
        assert!(matches!(
            err,
            StoreError::ValueTooLarge {
                table: Table::Jobs,
                index: 1,
                ..
            }
        ));
        assert!(err.is_too_large() && err.is_invalid_batch());
        assert_eq!(
            err.to_string(),
            format!(
                "op 1 of the batch puts a value of {} bytes in table jobs, over the limit of {} bytes",
                MAX_VALUE_LEN + 1,
                MAX_VALUE_LEN
            )
        );

        let err = validate_batch(&[Op::delete_range(Table::Log, vec![0; MAX_KEY_LEN + 1], "")])
            .unwrap_err();
        assert!(matches!(err, StoreError::KeyTooLarge { index: 0, .. }));

        let err = validate_batch(&[Op::delete_range(Table::Meta, "b", "a")]).unwrap_err();
        assert!(matches!(
            err,
            StoreError::InvalidRange {
                table: Table::Meta,
                index: 0
            }
        ));
        assert!(err.is_invalid_batch() && !err.is_too_large());
    }

    #[test]
    fn op_accessors() {
        assert_eq!(Op::delete(Table::Jobs, "abc").payload_len(), 3);
        assert_eq!(Op::delete_range(Table::Log, "ab", "abc").payload_len(), 5);
        assert_eq!(Op::delete_range(Table::Log, "a", "b").table(), Table::Log);
    }

    #[test]
    fn poisoned_error_names_its_cause() {
        let cause = StoreError::Io {
            backend: "redb",
            op: "commit",
            source: Arc::new(std::io::Error::other("disk gone")),
        };
        let err = StoreError::Poisoned {
            what: "committer",
            cause: Arc::new(cause),
        };
        assert!(err.is_poisoned() && !err.is_io());
        assert!(err.poison_cause().is_some_and(StoreError::is_io));
        assert_eq!(
            err.to_string(),
            "the committer is poisoned and refuses writes after an earlier failure: \
             i/o error in the redb store during commit: disk gone"
        );
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("disk gone")));
    }
}
