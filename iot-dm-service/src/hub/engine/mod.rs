//! The engine: the twin store proper.
//!
//! Every device is one [`Entry`] (identity + twin, sharing one identity record) behind its own mutex, in a lock-free ordered
//! map keyed by device id ([`State`]). Twins are copy-on-write (`Arc<Twin>`): a query clones the
//! `Arc`s it needs under each entry's lock for a few nanoseconds and evaluates without holding
//! anything, so a long scan never blocks writers.
//!
//! This is the only code that locks entries for writing, submits writes to the group
//! committer, and knows the stored formats: a twin or registry operation elsewhere only says
//! what changes.
//!
//! | file | what it holds |
//! |---|---|
//! | `entry.rs` | [`Entry`], [`Slot`], locking, the record and delete ops of an entry |
//! | `state.rs` | [`State`]: the map of entries and how it is loaded (and upgraded) from the store |
//! | `write.rs` | the write paths: whole-record writes and logged reported patches |
//! | `record/` | the binary format of a device record (and the earlier formats it upgrades) |
//! | `log.rs` | the write sequence, the reported-patch log, checkpoints and replay after a crash |
//! | `meta.rs` | [`MetaCollection`]: durable named records (policies, CA certificates, ...) |
//! | `space.rs` | the free space a write needs on the disk holding the store |
//!
//! **Durable before visible.** A write runs on a copy of the entry under the entry's lock; on
//! success the copy replaces the entry and its record is handed to the group committer
//! *before the lock is released*, so the store sees the writes to one device in the order they
//! were applied. Everything a device or a back end can observe of a write (a desired-property
//! notification, a twin-change event, a response) leaves only once the committer reports it
//! durable: responses by awaiting the [`Ack`], notifications and events through the write's
//! [`OnDurable`](crate::store::OnDurable) hook, which the committer runs in submission order,
//! and so in version order for one device.

mod entry;
pub(crate) mod log;
mod meta;
mod record;
pub(crate) mod space;
mod state;
mod write;

pub(crate) use entry::{delete_op, lock, locked, put_op, Ack, Entry, Slot};
pub(crate) use meta::{MetaCollection, MetaRecord};
pub(crate) use state::State;
