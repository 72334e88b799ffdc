//! One session: a select loop over the link's receive half, the send in progress, the
//! handles' commands, the method handlers' answers and the timers.
//!
//! Sending never blocks receiving: the link's send half is moved into a future that the loop
//! polls next to `rx.recv()`, one frame at a time, and comes back when the frame is taken.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use iot_dm_core::link::{DeviceFrame, Link, LinkClosed, LinkRx, LinkTx, Message, QoS};
use iot_dm_core::method::{decode_payload, MethodResponse};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::desired::Next;
use super::ops::{parse_twin, Op, OpKind};
use super::{Driver, SessionEnd};
use crate::backoff::Backoff;
use iot_dm_core::wire::{topic, HubTopic, RequestId};

use crate::methods::{MethodReply, BAD_REQUEST, HANDLER_FAILED};
use crate::types::{CloudMessage, DisconnectReason, LinkState, MethodCall};

type SendOutput = (Box<dyn LinkTx<DeviceFrame>>, Result<(), LinkClosed>);
type SendFuture = Pin<Box<dyn Future<Output = SendOutput> + Send>>;

/// Frames the session sends before queued operations.
enum Control {
    /// Subscriptions and method answers.
    Frame(DeviceFrame),
    /// The twin GET of a desired-property resync.
    ResyncGet,
}

/// A twin request awaiting its answer.
enum Pending {
    User(Op),
    Resync,
}

struct Inflight {
    pending: Pending,
    deadline: Instant,
}

pub(super) struct ClientSession {
    epoch: u64,
    /// The send half, when no send is in progress.
    tx: Option<Box<dyn LinkTx<DeviceFrame>>>,
    rx: Box<dyn LinkRx<Message>>,
    sending: Option<SendFuture>,
    /// Telemetry being sent: settled when the send completes.
    sending_op: Option<Op>,
    control: VecDeque<Control>,
    /// Twin requests sent, by request id.
    inflight: HashMap<RequestId, Inflight>,
    resync_retry: Option<Instant>,
    resync_backoff: Backoff,
}

impl ClientSession {
    /// User operations sent and not settled.
    fn unsettled(&self) -> usize {
        self.inflight
            .values()
            .filter(|i| matches!(i.pending, Pending::User(_)))
            .count()
            + usize::from(self.sending_op.is_some())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.inflight
            .values()
            .map(|i| i.deadline)
            .chain(self.resync_retry)
            .min()
    }

    /// Nothing of the user's is left to send or to settle (a resync does not count).
    fn drained(&self) -> bool {
        self.sending.is_none()
            && self.unsettled() == 0
            && self.control.iter().all(|c| matches!(c, Control::ResyncGet))
    }

    /// The user operations sent but not settled.
    fn into_unsettled(self) -> impl Iterator<Item = Op> {
        self.sending_op
            .into_iter()
            .chain(self.inflight.into_values().filter_map(|i| match i.pending {
                Pending::User(op) => Some(op),
                Pending::Resync => None,
            }))
    }
}

/// The send in progress, or never if there is none.
async fn send_done(sending: &mut Option<SendFuture>) -> SendOutput {
    match sending {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn publish(topic: String, payload: Bytes) -> DeviceFrame {
    DeviceFrame::Publish(Message::new(topic, payload))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl Driver {
    pub(super) async fn run_session(&mut self, link: Link) -> SessionEnd {
        self.epoch += 1;
        let Link {
            tx,
            rx,
            session_present,
        } = link;
        tracing::info!(epoch = self.epoch, session_present, "session up");
        let mut s = ClientSession {
            epoch: self.epoch,
            tx: Some(tx),
            rx,
            sending: None,
            sending_op: None,
            control: VecDeque::new(),
            inflight: HashMap::new(),
            resync_retry: None,
            resync_backoff: Backoff::new(self.opts.backoff_min, self.opts.backoff_max),
        };
        // Subscribe on every session (the hub may have lost the old one's subscriptions),
        // then GET the twin to catch up on desired changes missed while offline.
        s.control
            .push_back(Control::Frame(DeviceFrame::Subscribe(self.filters.clone())));
        s.control.push_back(Control::ResyncGet);
        self.desired.begin_resync();
        self.set_state(LinkState::Connected);
        for waiter in self.reconnect_waiters.drain(..) {
            let _ = waiter.send(());
        }
        let end = self.session_loop(&mut s).await;
        self.requeue(s.into_unsettled());
        end
    }

    async fn session_loop(&mut self, s: &mut ClientSession) -> SessionEnd {
        loop {
            self.pump(s);
            let close_deadline = self.closing.as_ref().map(|c| c.deadline);
            if close_deadline.is_some() && self.queue.is_empty() && s.drained() {
                return SessionEnd::Close;
            }
            let deadline = s.next_deadline();
            let renew_in = self.renew_at.map(|t| t.since(self.opts.clock.now()));
            let unsettled = s.unsettled();
            // Unbiased: a busy receive half cannot starve the send in progress.
            tokio::select! {
                msg = s.rx.recv() => match msg {
                    Some(m) => self.on_message(s, m),
                    None => return SessionEnd::Lost(DisconnectReason::SessionEnded),
                },
                (tx, res) = send_done(&mut s.sending) => {
                    s.sending = None;
                    if res.is_err() {
                        return SessionEnd::Lost(DisconnectReason::LinkBroken);
                    }
                    s.tx = Some(tx);
                    if let Some(op) = s.sending_op.take() {
                        op.sent();
                    }
                }
                cmd = self.cmd_rx.recv(), if self.cmd_open => {
                    self.on_command(cmd, Some(unsettled));
                    if self.restart && self.closing.is_none() {
                        return SessionEnd::Restart;
                    }
                }
                Some(reply) = self.method_rx.recv() => self.on_method_reply(s, reply),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    self.expire(s);
                }
                _ = tokio::time::sleep(renew_in.unwrap_or_default()), if renew_in.is_some() => {
                    if self.renew_at.is_some_and(|t| self.opts.clock.now() >= t) {
                        return SessionEnd::Renew;
                    }
                }
                _ = tokio::time::sleep_until(close_deadline.unwrap_or_else(far_future)), if close_deadline.is_some() => {
                    tracing::warn!("closing before every queued operation was settled");
                    return SessionEnd::Close;
                }
            }
        }
    }

    /// Starts sending the next frame if no send is in progress: control frames first, then
    /// queued operations in issue order (skipping withdrawn ones).
    fn pump(&mut self, s: &mut ClientSession) {
        if s.sending.is_some() {
            return;
        }
        let Some(tx) = s.tx.take() else { return };
        let deadline = Instant::now() + self.opts.operation_timeout;
        let frame = loop {
            if let Some(c) = s.control.pop_front() {
                match c {
                    Control::Frame(f) => break Some(f),
                    Control::ResyncGet => {
                        let rid = self.next_rid();
                        let topic = topic::twin_get(&rid);
                        let pending = Pending::Resync;
                        s.inflight.insert(rid, Inflight { pending, deadline });
                        break Some(publish(topic, Bytes::new()));
                    }
                }
            }
            let Some(op) = self.queue.pop_front() else {
                break None;
            };
            if op.is_withdrawn() {
                tracing::debug!(operation = %op.operation(), "dropping an operation its caller gave up on");
                continue;
            }
            match &op.kind {
                OpKind::GetTwin(_) => {
                    let rid = self.next_rid();
                    let frame = publish(topic::twin_get(&rid), Bytes::new());
                    let pending = Pending::User(op);
                    s.inflight.insert(rid, Inflight { pending, deadline });
                    break Some(frame);
                }
                OpKind::UpdateReported { body, .. } => {
                    let rid = self.next_rid();
                    let frame = publish(topic::twin_patch_reported(&rid), body.clone());
                    let pending = Pending::User(op);
                    s.inflight.insert(rid, Inflight { pending, deadline });
                    break Some(frame);
                }
                OpKind::Telemetry { topic, payload, .. } => {
                    let message =
                        Message::new(topic.clone(), payload.clone()).with_qos(QoS::AtLeastOnce);
                    s.sending_op = Some(op);
                    break Some(DeviceFrame::Publish(message));
                }
            }
        };
        match frame {
            Some(frame) => {
                s.sending = Some(Box::pin(async move {
                    let mut tx = tx;
                    let result = tx.send(frame).await;
                    (tx, result)
                }));
            }
            None => s.tx = Some(tx),
        }
    }

    fn on_message(&mut self, s: &mut ClientSession, m: Message) {
        self.dispatch(s, &m);
        // At-least-once messages are acknowledged once handled (handed to their consumer).
        if let Some(id) = m.ack_id {
            s.control.push_back(Control::Frame(DeviceFrame::Ack(id)));
        }
    }

    fn dispatch(&mut self, s: &mut ClientSession, m: &Message) {
        let parsed = match HubTopic::parse(&m.topic) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(topic = %m.topic, error = %e, "ignoring a message on an unknown topic");
                return;
            }
        };
        match parsed {
            HubTopic::TwinResponse {
                status,
                rid,
                version,
            } => match s.inflight.remove(&rid) {
                Some(Inflight {
                    pending: Pending::User(op),
                    ..
                }) => op.answered(status, version, &m.payload),
                Some(Inflight {
                    pending: Pending::Resync,
                    ..
                }) => self.on_resync_answer(s, status, &m.payload),
                None => {
                    tracing::debug!(%rid, status, "twin response for an unknown or expired request")
                }
            },
            HubTopic::DesiredPatch { version } => {
                let next = match serde_json::from_slice::<Value>(&m.payload) {
                    Ok(body) => self.desired.on_notification(version, body),
                    Err(e) => {
                        tracing::warn!(error = %e, "desired notification is not JSON; resyncing");
                        self.desired.lost_notification()
                    }
                };
                if next == Next::Resync {
                    s.control.push_back(Control::ResyncGet);
                }
            }
            HubTopic::MethodRequest { name, rid } => {
                let immediate = match decode_payload(&m.payload) {
                    Ok(payload) => {
                        let call = MethodCall {
                            name,
                            payload,
                            request_id: rid.as_str().to_string(),
                        };
                        self.methods
                            .dispatch(call, rid.clone(), s.epoch, &self.method_tx)
                    }
                    Err(e) => Some(MethodResponse {
                        status: BAD_REQUEST,
                        payload: json!({"message": e.to_string()}),
                    }),
                };
                if let Some(response) = immediate {
                    s.control.push_back(method_answer(&rid, &response));
                }
            }
            HubTopic::CloudToDevice { bag } => self.deliver_cloud(CloudMessage {
                payload: m.payload.clone(),
                properties: bag,
                input: None,
            }),
            HubTopic::ModuleInput { input, bag } => self.deliver_cloud(CloudMessage {
                payload: m.payload.clone(),
                properties: bag,
                input: Some(input),
            }),
            other => {
                tracing::debug!(topic = ?other, "ignoring a hub message this client does not handle")
            }
        }
    }

    fn on_resync_answer(&mut self, s: &mut ClientSession, status: u16, body: &[u8]) {
        let twin = if (200..300).contains(&status) {
            parse_twin(body)
        } else {
            Err(super::ops::hub_error(
                crate::error::Operation::GetTwin,
                status,
                body,
            ))
        };
        match twin {
            Ok(twin) => {
                s.resync_backoff.reset();
                if self.desired.on_snapshot(twin.desired_version, twin.desired) == Next::Resync {
                    s.control.push_back(Control::ResyncGet);
                }
            }
            Err(e) => self.retry_resync(s, &e.to_string()),
        }
    }

    fn retry_resync(&mut self, s: &mut ClientSession, why: &str) {
        let delay = s.resync_backoff.next_delay();
        tracing::warn!(error = why, ?delay, "twin resync failed; retrying");
        s.resync_retry = Some(Instant::now() + delay);
    }

    fn on_method_reply(&mut self, s: &mut ClientSession, reply: MethodReply) {
        if reply.epoch == s.epoch {
            s.control
                .push_back(method_answer(&reply.rid, &reply.response));
        } else {
            super::drop_stale(reply);
        }
    }

    /// Fails twin requests past their deadline, and starts a due resync retry.
    fn expire(&mut self, s: &mut ClientSession) {
        let now = Instant::now();
        let expired: Vec<RequestId> = s
            .inflight
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(rid, _)| rid.clone())
            .collect();
        for rid in expired {
            match s.inflight.remove(&rid).map(|i| i.pending) {
                Some(Pending::User(op)) => {
                    tracing::debug!(%rid, operation = %op.operation(), "operation timed out");
                    let operation = op.operation();
                    op.fail(crate::error::Error::Timeout {
                        operation,
                        after: self.opts.operation_timeout,
                    });
                }
                Some(Pending::Resync) => self.retry_resync(s, "twin GET timed out"),
                None => {}
            }
        }
        if s.resync_retry.is_some_and(|t| t <= now) {
            s.resync_retry = None;
            s.control.push_back(Control::ResyncGet);
        }
    }
}

/// The frame answering method request `rid`. A payload over the size limit turns into a 500
/// answer saying so.
fn method_answer(rid: &RequestId, response: &MethodResponse) -> Control {
    let (status, body) = match response.device_body() {
        Ok(body) => (response.status, body),
        Err(e) => (
            HANDLER_FAILED,
            serde_json::to_vec(&json!({"message": e.to_string()})).unwrap_or_default(),
        ),
    };
    Control::Frame(publish(
        topic::method_response(status, rid),
        Bytes::from(body),
    ))
}
