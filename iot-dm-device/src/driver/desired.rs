//! Desired-property delivery: version ordering, de-duplication and resync.
//!
//! The tracker keeps the last version it delivered and the full desired document at that
//! version. Notifications arrive with a version; the next one in sequence is applied and
//! delivered, older or repeated ones are dropped, and a gap (a version skipped) starts a resync:
//! the driver GETs the twin, and the tracker delivers the whole document as a `full` patch
//! when it differs from what was delivered, then the notifications it buffered meanwhile.

use std::collections::BTreeMap;

use iot_dm_core::doc::merge_value;
use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::types::DesiredPatch;

/// What the driver must do after feeding the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Next {
    /// Nothing.
    Done,
    /// GET the twin and hand the result to [`DesiredTracker::on_snapshot`].
    Resync,
}

#[derive(Debug, Default)]
pub(crate) struct DesiredTracker {
    /// The last version delivered (None before the first snapshot).
    delivered: Option<u64>,
    /// The desired document at `delivered`.
    doc: Value,
    /// A resync is under way: notifications are buffered until the snapshot.
    resyncing: bool,
    /// Notifications received while resyncing, by version.
    buffer: BTreeMap<u64, Value>,
    subscribers: Vec<UnboundedSender<DesiredPatch>>,
}

impl DesiredTracker {
    pub(crate) fn new() -> DesiredTracker {
        DesiredTracker {
            doc: Value::Object(Map::new()),
            ..DesiredTracker::default()
        }
    }

    /// A session started: the driver GETs the twin right after subscribing, and notifications
    /// wait for that snapshot.
    pub(crate) fn begin_resync(&mut self) {
        self.resyncing = true;
    }

    /// A new consumer. It first gets the whole document, if one is known yet (otherwise the
    /// first snapshot brings it).
    pub(crate) fn subscribe(&mut self, tx: UnboundedSender<DesiredPatch>) {
        if let Some(version) = self.delivered {
            let first = DesiredPatch {
                version,
                patch: self.doc.clone(),
                full: true,
            };
            if tx.send(first).is_err() {
                return;
            }
        }
        self.subscribers.push(tx);
    }

    /// Drops every consumer (the client closed): their streams end.
    pub(crate) fn close(&mut self) {
        self.subscribers.clear();
    }

    /// A desired-property notification: `version` from the topic (or the body), `body` the
    /// patch with or without `$version`.
    pub(crate) fn on_notification(&mut self, version: Option<u64>, body: Value) -> Next {
        let version = version.or_else(|| body.get("$version").and_then(Value::as_u64));
        let patch = match &body {
            Value::Object(m) => crate::types::strip_meta(m),
            _ => body,
        };
        let Some(version) = version else {
            tracing::warn!("desired notification without a $version; resyncing the twin");
            return self.start_resync();
        };
        if self.delivered.is_some_and(|d| version <= d) {
            tracing::debug!(version, delivered = ?self.delivered, "dropping stale desired notification");
            return Next::Done;
        }
        if self.resyncing {
            self.buffer.insert(version, patch);
            return Next::Done;
        }
        match self.delivered {
            Some(d) if version == d + 1 => {
                self.apply(version, patch);
                Next::Done
            }
            _ => {
                tracing::info!(version, delivered = ?self.delivered, "desired version gap; resyncing the twin");
                self.buffer.insert(version, patch);
                self.start_resync()
            }
        }
    }

    /// The desired section from a twin GET (`doc` without `$version`), ending a resync.
    pub(crate) fn on_snapshot(&mut self, version: u64, doc: Value) -> Next {
        self.resyncing = false;
        if self.delivered != Some(version) || self.doc != doc {
            self.delivered = Some(version);
            self.doc = doc;
            self.deliver(DesiredPatch {
                version,
                patch: self.doc.clone(),
                full: true,
            });
        }
        let buffered = std::mem::take(&mut self.buffer);
        let mut rest = buffered.into_iter();
        while let Some((v, patch)) = rest.next() {
            let Some(d) = self.delivered else { break };
            if v <= d {
                continue;
            }
            if v != d + 1 {
                tracing::info!(
                    version = v,
                    delivered = d,
                    "desired version gap after resync; resyncing again"
                );
                self.buffer.insert(v, patch);
                self.buffer.extend(rest);
                return self.start_resync();
            }
            self.apply(v, patch);
        }
        Next::Done
    }

    /// Whether notifications are held until a snapshot arrives.
    #[cfg(test)]
    pub(crate) fn is_resyncing(&self) -> bool {
        self.resyncing
    }

    /// A notification arrived that cannot be read: only a resync can tell what it changed.
    pub(crate) fn lost_notification(&mut self) -> Next {
        self.start_resync()
    }

    fn start_resync(&mut self) -> Next {
        if self.resyncing {
            Next::Done
        } else {
            self.resyncing = true;
            Next::Resync
        }
    }

    fn apply(&mut self, version: u64, patch: Value) {
        merge_value(&mut self.doc, &patch);
        self.delivered = Some(version);
        self.deliver(DesiredPatch {
            version,
            patch,
            full: false,
        });
    }

    fn deliver(&mut self, p: DesiredPatch) {
        self.subscribers.retain(|s| s.send(p.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::sync::mpsc;

    fn tracker() -> (DesiredTracker, mpsc::UnboundedReceiver<DesiredPatch>) {
        let mut t = DesiredTracker::new();
        let (tx, rx) = mpsc::unbounded_channel();
        t.subscribe(tx);
        (t, rx)
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<DesiredPatch>) -> Vec<(u64, Value, bool)> {
        let mut out = Vec::new();
        while let Ok(p) = rx.try_recv() {
            out.push((p.version, p.patch, p.full));
        }
        out
    }

    #[test]
    fn notifications_wait_for_the_first_snapshot() {
        let (mut t, mut rx) = tracker();
        t.begin_resync();
        assert_eq!(
            t.on_notification(Some(4), json!({"b": 2, "$version": 4})),
            Next::Done
        );
        assert_eq!(t.on_notification(Some(3), json!({"a": 9})), Next::Done);
        assert!(drain(&mut rx).is_empty());
        assert_eq!(t.on_snapshot(3, json!({"a": 9})), Next::Done);
        assert_eq!(
            drain(&mut rx),
            [(3, json!({"a": 9}), true), (4, json!({"b": 2}), false)]
        );
        assert_eq!(t.doc, json!({"a": 9, "b": 2}));
    }

    #[test]
    fn in_order_delivery_and_dedupe() {
        let (mut t, mut rx) = tracker();
        t.begin_resync();
        let _ = t.on_snapshot(1, json!({}));
        for (v, body) in [
            (2, json!({"x": 1})),
            (2, json!({"x": 1})),
            (1, json!({"old": 1})),
            (3, json!({"x": null})),
        ] {
            assert_eq!(t.on_notification(Some(v), body), Next::Done);
        }
        assert_eq!(
            drain(&mut rx),
            [
                (1, json!({}), true),
                (2, json!({"x": 1}), false),
                (3, json!({"x": null}), false)
            ]
        );
        assert_eq!(t.doc, json!({}));
    }

    #[test]
    fn a_gap_resyncs_and_delivers_the_whole_document() {
        let (mut t, mut rx) = tracker();
        t.begin_resync();
        let _ = t.on_snapshot(1, json!({"a": 1}));
        assert_eq!(t.on_notification(Some(3), json!({"c": 3})), Next::Resync);
        // while resyncing, no second GET is asked for
        assert_eq!(t.on_notification(Some(4), json!({"d": 4})), Next::Done);
        assert_eq!(
            t.on_snapshot(3, json!({"a": 1, "b": 2, "c": 3})),
            Next::Done
        );
        assert_eq!(
            drain(&mut rx),
            [
                (1, json!({"a": 1}), true),
                (3, json!({"a": 1, "b": 2, "c": 3}), true),
                (4, json!({"d": 4}), false)
            ]
        );
    }

    #[test]
    fn unchanged_snapshot_delivers_nothing_and_late_subscribers_get_the_document() {
        let (mut t, mut rx) = tracker();
        t.begin_resync();
        let _ = t.on_snapshot(5, json!({"a": 1}));
        t.begin_resync();
        let _ = t.on_snapshot(5, json!({"a": 1}));
        assert_eq!(drain(&mut rx).len(), 1);
        let (tx, mut late) = mpsc::unbounded_channel();
        t.subscribe(tx);
        assert_eq!(drain(&mut late), [(5, json!({"a": 1}), true)]);
    }

    #[test]
    fn version_from_body_and_missing_version() {
        let (mut t, mut rx) = tracker();
        t.begin_resync();
        let _ = t.on_snapshot(1, json!({}));
        assert_eq!(
            t.on_notification(None, json!({"a": 1, "$version": 2})),
            Next::Done
        );
        assert_eq!(t.on_notification(None, json!({"a": 2})), Next::Resync);
        assert!(t.is_resyncing());
        assert_eq!(drain(&mut rx).last(), Some(&(2, json!({"a": 1}), false)));
    }

    #[test]
    fn gap_inside_the_buffer_resyncs_again() {
        let (mut t, mut rx) = tracker();
        t.begin_resync();
        let _ = t.on_notification(Some(5), json!({"e": 5}));
        assert_eq!(t.on_snapshot(3, json!({})), Next::Resync);
        assert_eq!(t.on_snapshot(5, json!({"e": 5})), Next::Done);
        assert_eq!(
            drain(&mut rx),
            [(3, json!({}), true), (5, json!({"e": 5}), true)]
        );
    }
}
