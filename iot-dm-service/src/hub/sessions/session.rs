//! The task that serves one device's link: twin GET and reported PATCH (acknowledged in
//! order, once durable), method responses, telemetry, subscriptions and C2D completions.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::{DeviceFrame, Message};
use iot_dm_core::method::MethodResponse;
use iot_dm_core::twin::{ConnectionState, Twin};
use iot_dm_core::wire::{self, DeviceTopic, RequestId, Subscription};

use super::SessionHandle;
use crate::hub::engine::{locked, Ack};
use crate::hub::error::HubError;
use crate::hub::events::{Actor, HubEvent};
use crate::hub::Hub;
use iot_dm_core::link::Receiver;

fn error_body(e: &HubError) -> Bytes {
    Bytes::from(
        json!({"errorCode": e.code(), "message": e.to_string()})
            .to_string()
            .into_bytes(),
    )
}

pub(super) struct SessionTask {
    pub(super) hub: Hub,
    pub(super) id: DeviceId,
    pub(super) handle: SessionHandle,
    pub(super) keep: bool,
}

/// A twin response waiting for what it shows to be durable: the acknowledgement of a
/// reported patch, or the answer to a twin GET (which may show writes not yet durable).
struct PendingAck {
    rid: RequestId,
    answer: Answer,
    ack: Ack,
}

enum Answer {
    /// A reported patch: 204 with the new reported version, and the twin-change event.
    Reported(Arc<Twin>),
    /// A twin GET: 200 with the device's view of the twin.
    Twin(Bytes),
}

impl SessionTask {
    pub(super) async fn run(self, mut frames: Receiver<DeviceFrame>, expiry: Option<Timestamp>) {
        // reported patches waiting to be durable, acknowledged in order
        let mut acks: VecDeque<PendingAck> = VecDeque::new();
        let expires_in = expiry.map(|e| e.since(self.hub.now()));
        let expired = async {
            match expires_in {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let reason = loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    None => break "device closed the connection".to_string(),
                    Some(f) => {
                        if let Err(reason) = self.handle_frame(f, &mut acks) {
                            break reason;
                        }
                    }
                },
                durable = next_ack(&mut acks), if !acks.is_empty() => {
                    if let Some(p) = acks.pop_front() {
                        if let Some(msg) = self.acknowledgement(&p, durable) {
                            if let Err(reason) = self.send(msg) {
                                break reason;
                            }
                        }
                    }
                }
                _ = self.handle.shared.close.notified() => {
                    if let Some(reason) = locked(&self.handle.shared.close_reason).clone() {
                        break reason;
                    }
                }
                _ = &mut expired => break "SAS token expired".to_string(),
            }
        };
        // acknowledgements already queued still go out before the session is torn down
        while let Some(mut p) = acks.pop_front() {
            let durable = p.ack.as_mut().await;
            if let Some(msg) = self.acknowledgement(&p, durable) {
                if self.handle.outbound.send(msg).await.is_err() {
                    break;
                }
            }
        }
        self.finish(&reason);
    }

    fn finish(&self, reason: &str) {
        let sessions = &self.hub.inner.sessions;
        let was_current = {
            let mut live = locked(&sessions.live);
            match live.get(&self.id) {
                Some(h) if h.conn_id == self.handle.conn_id => {
                    live.remove(&self.id);
                    true
                }
                _ => false,
            }
        };
        if self.keep && was_current {
            locked(&sessions.kept).insert(
                self.id.clone(),
                (self.handle.shared.subs.snapshot(), self.handle.c2d_form()),
            );
        }
        // pending method calls see their sender dropped: the device went away
        locked(&self.handle.shared.pending).clear();
        if was_current {
            self.hub
                .set_connection(&self.id, ConnectionState::Disconnected);
        }
        tracing::debug!(device = %self.id, reason, "session ended");
        self.hub.emit(HubEvent::Disconnected {
            device_id: self.id.clone(),
            reason: reason.to_string(),
        });
    }

    fn send(&self, msg: Message) -> Result<(), String> {
        self.handle
            .outbound
            .try_send(msg)
            .map_err(|_| "device is not reading its messages".to_string())
    }

    /// Serves one frame; an `Err` closes the session with that reason.
    fn handle_frame(
        &self,
        frame: DeviceFrame,
        acks: &mut VecDeque<PendingAck>,
    ) -> Result<(), String> {
        match frame {
            DeviceFrame::Subscribe(filters) => {
                let mut c2d = false;
                for f in filters {
                    let sub = Subscription::classify(&f, &self.id, None)
                        .map_err(|e| format!("refused subscription: {e}"))?;
                    if let Subscription::CloudToDevice { id_form } = sub {
                        *locked(&self.handle.shared.c2d_form) = id_form;
                        c2d = true;
                    }
                    self.set_sub(&sub, true);
                }
                if c2d {
                    self.hub.pump_c2d(self.id.as_str());
                }
                Ok(())
            }
            DeviceFrame::Ack(seq) => {
                let hub = self.hub.clone();
                let id = self.id.clone();
                tokio::spawn(async move {
                    if let Err(e) = hub.complete_c2d(id.as_str(), seq).await {
                        tracing::warn!(device = %id, %e, "completing a cloud-to-device message failed");
                    }
                });
                Ok(())
            }
            DeviceFrame::Unsubscribe(filters) => {
                for f in filters {
                    if let Ok(sub) = Subscription::classify(&f, &self.id, None) {
                        self.set_sub(&sub, false);
                    }
                }
                Ok(())
            }
            DeviceFrame::Publish(msg) => self.handle_publish(msg, acks),
        }
    }

    fn set_sub(&self, sub: &Subscription, on: bool) {
        let s = &self.handle.shared.subs;
        match sub {
            Subscription::TwinResponses => s.twin_responses.store(on, Ordering::Relaxed),
            Subscription::DesiredPatches => s.desired.store(on, Ordering::Relaxed),
            Subscription::MethodRequests => {
                s.methods.store(on, Ordering::Relaxed);
                if on {
                    self.hub.inner.sessions.changed.notify_waiters();
                }
            }
            Subscription::CloudToDevice { .. } => s.c2d.store(on, Ordering::Relaxed),
            _ => {}
        }
    }

    fn twin_reply(
        &self,
        status: u16,
        rid: &RequestId,
        version: Option<u64>,
        body: Bytes,
    ) -> Result<(), String> {
        if !self
            .handle
            .shared
            .subs
            .twin_responses
            .load(Ordering::Relaxed)
        {
            // like MQTT: no subscription, no delivery
            return Ok(());
        }
        self.send(Message::new(
            wire::topic::twin_response(status, rid, version),
            body,
        ))
    }

    fn handle_publish(&self, msg: Message, acks: &mut VecDeque<PendingAck>) -> Result<(), String> {
        let topic = DeviceTopic::parse(&msg.topic, &self.id, None)
            .map_err(|e| format!("protocol violation: {e}"))?;
        match topic {
            DeviceTopic::TwinGet { rid } => {
                let twin = self
                    .hub
                    .get_twin(self.id.as_str())
                    .map_err(|e| e.to_string())?;
                let body = Bytes::from(twin.device_view().to_string());
                // answered once everything it shows is durable, in order with the
                // acknowledgements before it
                let ack = self.hub.inner.settled();
                acks.push_back(PendingAck {
                    rid,
                    answer: Answer::Twin(body),
                    ack,
                });
                Ok(())
            }
            DeviceTopic::TwinPatchReported { rid } => {
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&msg.payload);
                let result = match parsed {
                    Ok(patch) => self.hub.patch_reported_queued(self.id.as_str(), &patch),
                    Err(e) => Err(HubError::invalid("body", format!("not JSON: {e}"))),
                };
                match result {
                    Ok((twin, ack)) => {
                        acks.push_back(PendingAck {
                            rid,
                            answer: Answer::Reported(twin),
                            ack,
                        });
                        Ok(())
                    }
                    Err(e) => self.twin_reply(e.http_status(), &rid, None, error_body(&e)),
                }
            }
            DeviceTopic::MethodResponse { status, rid } => {
                let waiter = locked(&self.handle.shared.pending).remove(rid.as_str());
                if let Some(tx) = waiter {
                    let response =
                        MethodResponse::from_device(status, &msg.payload).map_err(HubError::from);
                    let _ = tx.send(response);
                }
                Ok(())
            }
            DeviceTopic::Telemetry { bag, .. } => {
                self.hub.publish_telemetry(&self.id, bag, msg.payload);
                Ok(())
            }
            _ => Err("protocol violation: unsupported topic".into()),
        }
    }
}

/// Waits until what the oldest pending response shows is durable (or failed).
async fn next_ack(acks: &mut VecDeque<PendingAck>) -> Result<(), crate::store::StoreError> {
    match acks.front_mut() {
        Some(p) => p.ack.as_mut().await,
        None => std::future::pending().await,
    }
}

impl SessionTask {
    /// The twin response once what it shows is durable (or failed), if the device subscribed
    /// to twin responses.
    fn acknowledgement(
        &self,
        p: &PendingAck,
        durable: Result<(), crate::store::StoreError>,
    ) -> Option<Message> {
        let (status, version, body) = match (durable, &p.answer) {
            (Ok(()), Answer::Reported(twin)) => {
                self.hub.emit_twin_changed(twin, Actor::Device);
                (204, Some(twin.reported().version()), Bytes::new())
            }
            (Ok(()), Answer::Twin(body)) => (200, None, body.clone()),
            (Err(e), _) => {
                let e = HubError::from(e);
                (e.http_status(), None, error_body(&e))
            }
        };
        self.handle
            .shared
            .subs
            .twin_responses
            .load(Ordering::Relaxed)
            .then(|| Message::new(wire::topic::twin_response(status, &p.rid, version), body))
    }
}
