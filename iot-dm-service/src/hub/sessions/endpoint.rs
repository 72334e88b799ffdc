//! The hub's [`Endpoint`]: opening, replacing and closing device sessions, and pushing
//! desired-property changes to them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::{self, ConnectRefused, ConnectRequest, Endpoint, Link, Message};
use iot_dm_core::twin::ConnectionState;
use iot_dm_core::wire;

use super::session::SessionTask;
use super::{SessionHandle, INBOUND_CAPACITY, OUTBOUND_CAPACITY};
use crate::hub::engine::{lock, locked};
use crate::hub::events::HubEvent;
use crate::hub::twins::DesiredChange;
use crate::hub::Hub;

impl Hub {
    /// Closes a device's live session, if any.
    pub(crate) fn close_session(&self, id: &DeviceId, reason: &str) {
        if let Some(h) = self.inner.sessions.get(id.as_str()) {
            h.close(reason);
        }
        locked(&self.inner.sessions.kept).remove(id);
    }

    pub(crate) fn close_all_sessions(&self, reason: &str) {
        let live: Vec<SessionHandle> = locked(&self.inner.sessions.live)
            .values()
            .cloned()
            .collect();
        for h in live {
            h.close(reason);
        }
    }

    /// Number of live device sessions.
    pub fn connected_devices(&self) -> usize {
        self.inner.sessions.count()
    }

    /// Pushes a desired-property change to the device's session, if it listens.
    pub(crate) fn notify_desired(&self, id: &DeviceId, change: DesiredChange) {
        let Some(h) = self.inner.sessions.get(id.as_str()) else {
            return;
        };
        if !h.shared.subs.desired.load(Ordering::Relaxed) {
            return;
        }
        let body = iot_dm_core::twin::desired_notification(&change.body, change.version);
        let msg = Message::new(wire::topic::desired_patch(change.version), body.to_string());
        if h.outbound.try_send(msg).is_err() {
            h.close("device is not keeping up with desired-property notifications");
        }
    }

    pub(super) fn set_connection(&self, id: &DeviceId, state: ConnectionState) {
        let Ok(slot) = self.inner.state.slot(id.as_str()) else {
            return;
        };
        let now = self.now();
        let mut g = lock(&slot);
        if g.deleted {
            return;
        }
        let identity = g.device.identity_mut();
        identity.connection_state = state;
        identity.connection_state_updated_time = Some(now);
        identity.last_activity_time = Some(now);
        g.share_identity();
    }

    fn open_session(&self, req: ConnectRequest, expiry: Option<Timestamp>) -> Link {
        let (mut link, side) = link::channel_with(INBOUND_CAPACITY, OUTBOUND_CAPACITY);
        let sessions = &self.inner.sessions;
        let handle = SessionHandle {
            conn_id: sessions.next_conn.fetch_add(1, Ordering::Relaxed),
            outbound: side.messages,
            shared: Arc::default(),
        };
        let id = req.device_id.clone();
        let id_str = id.clone();
        let kept = if req.clean_session {
            locked(&sessions.kept).remove(&id);
            None
        } else {
            locked(&sessions.kept).get(&id).copied()
        };
        if let Some((s, form)) = kept {
            handle.shared.subs.restore(s);
            *locked(&handle.shared.c2d_form) = form;
        }
        let previous = locked(&sessions.live).insert(id.clone(), handle.clone());
        if let Some(old) = previous {
            old.close("replaced by a new connection");
        }
        self.set_connection(&id, ConnectionState::Connected);
        self.emit(HubEvent::Connected {
            device_id: id.clone(),
        });
        if handle.shared.subs.methods.load(Ordering::Relaxed) {
            sessions.changed.notify_waiters();
        }
        let pump = handle.shared.subs.c2d.load(Ordering::Relaxed);
        let task = SessionTask {
            hub: self.clone(),
            id,
            handle,
            keep: !req.clean_session,
        };
        tokio::spawn(task.run(side.frames, expiry));
        if pump {
            self.pump_c2d(id_str.as_str());
        }
        link.session_present = kept.is_some();
        link
    }
}

#[async_trait::async_trait]
impl Endpoint for Hub {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, ConnectRefused> {
        if self.is_closed() {
            return Err(ConnectRefused::ServerUnavailable {
                reason: "the hub is shut down".into(),
            });
        }
        let expiry = match self.authenticate(&request) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(device = %request.device_id, %e, "connection refused");
                return Err(e);
            }
        };
        Ok(self.open_session(request, expiry))
    }
}
