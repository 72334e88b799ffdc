//! Durable named records: shared access policies, CA certificates, the fleet's automatic
//! device configurations (`configuration/`), alert rules (`alert-rule/`) and alerts (`alert/`).
//!
//! A [`MetaCollection`] keeps every record of one kind in memory, sorted by name, and stores
//! each under `{prefix}{name}` in [`Table::Meta`]. A change is checked and written under the
//! collection's writer lock, and becomes visible only once it is durable.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::hub::error::HubError;
use crate::store::{Committer, Op, Store, Table};

/// Records per page read while loading.
const LOAD_PAGE: usize = 256;

/// A kind of record a [`MetaCollection`] holds: its key prefix and its stored form. The value
/// in memory may carry more than it stores (parsed keys, a rate limiter, DER bytes).
pub(crate) trait MetaRecord: Sized + Send + Sync {
    /// The key prefix of this kind, ending in `/` (e.g. `policy/`).
    const PREFIX: &'static str;
    /// What the record is, for error messages (e.g. `access policy`).
    const WHAT: &'static str;
    /// The record's name (its key without the prefix).
    fn name(&self) -> &str;
    /// The stored bytes.
    fn encode(&self) -> Result<Vec<u8>, HubError>;
    /// The record from its stored bytes.
    fn decode(name: &str, bytes: &[u8]) -> Result<Self, HubError>;
}

/// Every record of one kind, by name.
#[derive(Debug)]
pub(crate) struct MetaCollection<T> {
    items: RwLock<BTreeMap<String, T>>,
    /// Held while a change is checked and made durable, so that checks that look at the
    /// whole collection (a count, the last owner) and the write happen as one step.
    writer: tokio::sync::Mutex<()>,
}

impl<T> Default for MetaCollection<T> {
    fn default() -> Self {
        MetaCollection {
            items: RwLock::new(BTreeMap::new()),
            writer: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: MetaRecord> MetaCollection<T> {
    /// Loads every stored record of this kind.
    pub(crate) async fn load(store: &dyn Store) -> Result<MetaCollection<T>, HubError> {
        let prefix = T::PREFIX.as_bytes();
        // the greatest key that sorts before every key with the prefix
        let mut after = prefix.to_vec();
        after.pop();
        let mut items = BTreeMap::new();
        'pages: loop {
            let page = store.scan(Table::Meta, Some(&after), LOAD_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (key, value) in page {
                let Some(name) = key.strip_prefix(prefix) else {
                    if key.as_slice() > prefix {
                        break 'pages;
                    }
                    continue;
                };
                let name = std::str::from_utf8(name).map_err(|_| HubError::Internal {
                    message: format!(
                        "stored {} {:?} has a name that is not UTF-8",
                        T::WHAT,
                        String::from_utf8_lossy(name)
                    ),
                })?;
                let item = T::decode(name, &value).map_err(|e| HubError::Internal {
                    message: format!("stored {} {name} is unreadable: {e}", T::WHAT),
                })?;
                items.insert(name.to_string(), item);
            }
        }
        Ok(MetaCollection {
            items: RwLock::new(items),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The op that stores `item`.
    pub(crate) fn put_op(item: &T) -> Result<Op, HubError> {
        Ok(Op::Put {
            table: Table::Meta,
            key: key(T::PREFIX, item.name()),
            value: item.encode()?,
        })
    }

    /// Makes `items` visible without writing them: for records the caller has just committed
    /// itself, before the hub takes requests (a new hub's built-in records).
    pub(crate) fn insert_committed(&self, items: impl IntoIterator<Item = T>) {
        let mut map = write(&self.items);
        for item in items {
            map.insert(item.name().to_string(), item);
        }
    }

    /// Builds a record from the current collection with `f` (which may refuse), stores it
    /// durably under its name, replacing a record of the same name, and then makes it
    /// visible. Returns what `view` makes of the stored record.
    pub(crate) async fn put_with<R>(
        &self,
        committer: &Committer,
        f: impl FnOnce(&BTreeMap<String, T>) -> Result<T, HubError>,
        view: impl FnOnce(&T) -> R,
    ) -> Result<R, HubError> {
        let _writer = self.writer.lock().await;
        let item = f(&read(&self.items))?;
        committer.submit(vec![Self::put_op(&item)?]).await?;
        let r = view(&item);
        write(&self.items).insert(item.name().to_string(), item);
        Ok(r)
    }

    /// Deletes the record `name` durably, if `check` (given the record, if any, and the whole
    /// collection) allows, and returns the removed record; `Ok(None)` when there was none.
    pub(crate) async fn delete_with(
        &self,
        committer: &Committer,
        name: &str,
        check: impl FnOnce(Option<&T>, &BTreeMap<String, T>) -> Result<(), HubError>,
    ) -> Result<Option<T>, HubError> {
        let _writer = self.writer.lock().await;
        let exists = {
            let items = read(&self.items);
            check(items.get(name), &items)?;
            items.contains_key(name)
        };
        if !exists {
            return Ok(None);
        }
        committer
            .submit(vec![Op::Delete {
                table: Table::Meta,
                key: key(T::PREFIX, name),
            }])
            .await?;
        Ok(write(&self.items).remove(name))
    }

    /// Reads the collection (sorted by name) without copying it.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, T>> {
        read(&self.items)
    }
}

fn key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}{name}").into_bytes()
}

/// A poisoned lock is safe to use: the map only ever holds whole records.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::FailingStore;
    use crate::store::MemoryStore;

    #[derive(Debug, Clone, PartialEq)]
    struct Note {
        name: String,
        text: String,
    }

    impl MetaRecord for Note {
        const PREFIX: &'static str = "note/";
        const WHAT: &'static str = "note";
        fn name(&self) -> &str {
            &self.name
        }
        fn encode(&self) -> Result<Vec<u8>, HubError> {
            Ok(self.text.as_bytes().to_vec())
        }
        fn decode(name: &str, bytes: &[u8]) -> Result<Self, HubError> {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| HubError::invalid("text", "not UTF-8"))?
                .to_string();
            Ok(Note {
                name: name.to_string(),
                text,
            })
        }
    }

    fn note(name: &str, text: &str) -> Note {
        Note {
            name: name.into(),
            text: text.into(),
        }
    }

    fn list(c: &MetaCollection<Note>) -> Vec<Note> {
        c.read().values().cloned().collect()
    }

    async fn put(c: &MetaCollection<Note>, committer: &Committer, n: Note) {
        c.put_with(committer, |_| Ok(n), |_| ()).await.unwrap();
    }

    #[tokio::test]
    async fn records_survive_a_reload_and_other_prefixes_are_left_alone() {
        let store = MemoryStore::new();
        // neighbours on both sides of the prefix
        store
            .commit(vec![
                Op::put(Table::Meta, "nota", "x"),
                Op::put(Table::Meta, "note", "y"),
                Op::put(Table::Meta, "notf/a", "z"),
            ])
            .await
            .unwrap();
        let committer = Committer::new(store.clone());
        let c = MetaCollection::<Note>::load(&store).await.unwrap();
        assert!(list(&c).is_empty());
        put(&c, &committer, note("b", "two")).await;
        put(&c, &committer, note("a", "one")).await;
        put(&c, &committer, note("a", "uno")).await;
        assert_eq!(c.read().get("a"), Some(&note("a", "uno")));
        let removed = c.delete_with(&committer, "b", |_, _| Ok(())).await.unwrap();
        assert_eq!(removed, Some(note("b", "two")));
        assert_eq!(
            c.delete_with(&committer, "b", |_, _| Ok(())).await.unwrap(),
            None
        );

        let again = MetaCollection::<Note>::load(&store).await.unwrap();
        assert_eq!(list(&again), vec![note("a", "uno")]);
    }

    #[tokio::test]
    async fn a_refused_or_failed_change_is_neither_stored_nor_visible() {
        let store = FailingStore::new(MemoryStore::new());
        let committer = Committer::new(store.clone());
        let c = MetaCollection::<Note>::load(&store).await.unwrap();
        put(&c, &committer, note("a", "one")).await;

        let refused = c
            .put_with(
                &committer,
                |items| {
                    if !items.is_empty() {
                        Err(HubError::invalid("name", "full"))
                    } else {
                        Ok(note("b", "two"))
                    }
                },
                |_| (),
            )
            .await;
        assert!(refused.is_err());
        let kept = c
            .delete_with(&committer, "a", |_, _| {
                Err(HubError::invalid("name", "kept"))
            })
            .await;
        assert!(kept.is_err());

        store.fail_commits(true);
        let failed = c
            .put_with(&committer, |_| Ok(note("a", "lost")), |_| ())
            .await;
        assert!(failed.is_err());
        assert_eq!(list(&c), vec![note("a", "one")]);
        store.fail_commits(false);
        let again = MetaCollection::<Note>::load(&store).await.unwrap();
        assert_eq!(list(&again), vec![note("a", "one")]);
    }

    #[tokio::test]
    async fn an_unreadable_record_is_named() {
        let store = MemoryStore::new();
        store
            .commit(vec![Op::put(Table::Meta, "note/bad", vec![0xff, 0xfe])])
            .await
            .unwrap();
        let err = MetaCollection::<Note>::load(&store).await.unwrap_err();
        assert!(err.to_string().contains("note bad"), "{err}");
    }
}
