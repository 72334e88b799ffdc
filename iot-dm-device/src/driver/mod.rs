//! The driver: the one task that owns the link to the hub.
//!
//! It runs sessions one after the other. Between sessions it waits out the back-off and
//! reconnects, all the while accepting commands from the handles (operations queue up while
//! offline). See the crate docs for the guarantees.

mod desired;
pub(crate) mod ops;
mod session;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::identity::{DeviceId, ModuleId};
use iot_dm_core::link::{ConnectRefused, ConnectRequest, Link};
use iot_dm_core::wire::{topic, RequestId, RequestIds};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::Options;
use crate::credentials::DeviceCredentials as Credentials;
use crate::error::Error;
use crate::methods::{MethodRegistry, MethodReply};
use crate::transport::Transport;
use crate::types::{CloseReason, CloudMessage, DisconnectReason, LinkState};

use desired::DesiredTracker;
use ops::{Command, Op};

/// A session that lasted this long resets the reconnect back-off to its first step. Shorter
/// sessions keep climbing it, so a device whose sessions are cut at once (another connection
/// with the same identity, say) does not reconnect in a hot loop.
pub(crate) const STABLE_SESSION: Duration = Duration::from_secs(10);

/// How a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The link went away; reconnect after the back-off.
    Lost(DisconnectReason),
    /// The SAS token is due for renewal; reconnect now.
    Renew,
    /// A handle asked for a new session; reconnect now.
    Restart,
    /// The client is closing.
    Close,
}

/// A close under way.
struct Closing {
    waiters: Vec<oneshot::Sender<()>>,
    /// Queued operations may still be sent until then.
    deadline: Instant,
}

pub(crate) struct Driver {
    transport: Arc<dyn Transport>,
    credentials: Credentials,
    opts: Options,
    filters: Vec<String>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone.
    cmd_open: bool,
    state: watch::Sender<LinkState>,
    methods: Arc<MethodRegistry>,
    method_tx: mpsc::UnboundedSender<MethodReply>,
    method_rx: mpsc::UnboundedReceiver<MethodReply>,
    /// Operations not sent yet, in issue order.
    queue: VecDeque<Op>,
    next_seq: u64,
    rids: RequestIds,
    /// Sessions started so far; tags method requests with their session.
    epoch: u64,
    desired: DesiredTracker,
    /// Cloud-to-device message consumers.
    cloud: Vec<mpsc::UnboundedSender<CloudMessage>>,
    backoff: Backoff,
    /// When to reconnect with a fresh SAS token.
    renew_at: Option<Timestamp>,
    closing: Option<Closing>,
    /// A handle asked to end the current session.
    restart: bool,
    /// Who waits for the next session.
    reconnect_waiters: Vec<oneshot::Sender<()>>,
}

/// The channel ends the handles keep.
pub(crate) struct Handles {
    pub(crate) cmd_tx: mpsc::UnboundedSender<Command>,
    pub(crate) state_rx: watch::Receiver<LinkState>,
}

impl Driver {
    pub(crate) fn new(
        transport: Arc<dyn Transport>,
        credentials: Credentials,
        opts: Options,
        methods: Arc<MethodRegistry>,
    ) -> (Driver, Handles) {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (state, state_rx) = watch::channel(LinkState::Connecting);
        let (method_tx, method_rx) = mpsc::unbounded_channel();
        let filters = subscriptions(credentials.device_id(), credentials.module_id());
        let backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
        let driver = Driver {
            transport,
            credentials,
            opts,
            filters,
            cmd_rx,
            cmd_open: true,
            state,
            methods,
            method_tx,
            method_rx,
            queue: VecDeque::new(),
            next_seq: 0,
            rids: RequestIds::new(),
            epoch: 0,
            desired: DesiredTracker::new(),
            cloud: Vec::new(),
            backoff,
            renew_at: None,
            closing: None,
            restart: false,
            reconnect_waiters: Vec::new(),
        };
        (driver, Handles { cmd_tx, state_rx })
    }

    /// One connection attempt, bounded by the connect timeout.
    pub(crate) async fn connect_once(&mut self) -> Result<Link, Error> {
        let now = self.opts.clock.now();
        let (request, renew_at) = self.credentials.request(now, &self.opts)?;
        self.set_state(LinkState::Connecting);
        let link = attempt(self.transport.clone(), request, self.opts.connect_timeout).await?;
        self.renew_at = renew_at;
        // The session is up: the subscriptions go out first thing when the driver starts.
        self.set_state(LinkState::Connected);
        Ok(link)
    }

    /// Runs sessions until the client closes, starting with `first`.
    pub(crate) async fn run(mut self, first: Link) {
        let mut next = Some(first);
        loop {
            let link = match next.take() {
                Some(link) => link,
                None => match self.reconnect().await {
                    Ok(link) => link,
                    Err(reason) => return self.finish(reason),
                },
            };
            let started = Instant::now();
            let end = self.run_session(link).await;
            self.restart = false;
            match end {
                SessionEnd::Close => return self.finish(CloseReason::Requested),
                SessionEnd::Renew | SessionEnd::Restart => {
                    let reason = if matches!(end, SessionEnd::Renew) {
                        tracing::info!("reconnecting to renew the SAS token");
                        DisconnectReason::TokenRenewal
                    } else {
                        tracing::info!("reconnecting on request");
                        DisconnectReason::Requested
                    };
                    self.set_state(LinkState::Disconnected { reason });
                    match self.connect_now().await {
                        Ok(Some(link)) => next = Some(link),
                        Ok(None) => {}
                        Err(reason) => return self.finish(reason),
                    }
                }
                SessionEnd::Lost(reason) => {
                    tracing::warn!(%reason, "session lost");
                    if started.elapsed() >= STABLE_SESSION {
                        self.backoff.reset();
                    }
                    self.set_state(LinkState::Disconnected { reason });
                }
            }
        }
    }

    /// Reconnects after the back-off, serving commands meanwhile. `Err` means the client
    /// closes: on request, or because the hub refused the credentials.
    async fn reconnect(&mut self) -> Result<Link, CloseReason> {
        loop {
            let delay = self.backoff.next_delay();
            tracing::debug!(?delay, "waiting before reconnecting");
            let wake = Instant::now() + delay;
            while Instant::now() < wake {
                if self.closing.is_some() {
                    return Err(CloseReason::Requested);
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    cmd = self.cmd_rx.recv(), if self.cmd_open => self.on_command(cmd, None),
                    Some(stale) = self.method_rx.recv() => drop_stale(stale),
                }
            }
            if let Some(link) = self.connect_now().await? {
                return Ok(link);
            }
        }
    }

    /// One connection attempt, serving commands meanwhile. `Ok(None)`: it failed and may be
    /// retried (the state says why).
    async fn connect_now(&mut self) -> Result<Option<Link>, CloseReason> {
        if self.closing.is_some() {
            return Err(CloseReason::Requested);
        }
        let now = self.opts.clock.now();
        let (request, renew_at) = match self.credentials.request(now, &self.opts) {
            Ok(r) => r,
            Err(e) => {
                return Err(CloseReason::Refused {
                    reason: e.to_string(),
                })
            }
        };
        self.set_state(LinkState::Connecting);
        let fut = attempt(self.transport.clone(), request, self.opts.connect_timeout);
        tokio::pin!(fut);
        let result = loop {
            tokio::select! {
                r = &mut fut => break r,
                cmd = self.cmd_rx.recv(), if self.cmd_open => {
                    self.on_command(cmd, None);
                    if self.closing.is_some() {
                        return Err(CloseReason::Requested);
                    }
                }
                Some(stale) = self.method_rx.recv() => drop_stale(stale),
            }
        };
        match result {
            Ok(link) => {
                self.renew_at = renew_at;
                Ok(Some(link))
            }
            Err(Error::Refused(ConnectRefused::NotAuthorized { reason })) => {
                tracing::error!(%reason, "the hub refused the credentials; closing");
                Err(CloseReason::Refused { reason })
            }
            Err(e) => {
                tracing::warn!(error = %e, "connection attempt failed");
                self.set_state(LinkState::Disconnected {
                    reason: DisconnectReason::ConnectFailed {
                        error: e.to_string(),
                    },
                });
                Ok(None)
            }
        }
    }

    /// Handles a command. `inflight` is the number of operations the current session has
    /// sent and not settled (they count against the queue capacity).
    fn on_command(&mut self, cmd: Option<Command>, inflight: Option<usize>) {
        match cmd {
            None => {
                tracing::debug!("every client handle was dropped; closing");
                self.cmd_open = false;
                self.begin_close(None);
            }
            Some(Command::Close(waiter)) => self.begin_close(Some(waiter)),
            // Only a session in progress ends; between sessions the next one is on its way.
            Some(Command::Reconnect(waiter)) => {
                self.restart = inflight.is_some();
                self.reconnect_waiters.push(waiter);
            }
            Some(Command::SubscribeDesired(tx)) => self.desired.subscribe(tx),
            Some(Command::SubscribeCloud(tx)) => self.cloud.push(tx),
            Some(Command::Op(kind)) => {
                let op = Op {
                    seq: self.next_seq,
                    kind,
                };
                self.next_seq += 1;
                if self.closing.is_some() {
                    return op.fail(Error::Closed {
                        reason: CloseReason::Requested,
                    });
                }
                let waiting = self.queue.len() + inflight.unwrap_or(0);
                if waiting >= self.opts.queue_capacity {
                    return op.fail(Error::QueueFull {
                        capacity: self.opts.queue_capacity,
                    });
                }
                self.queue.push_back(op);
            }
        }
    }

    fn begin_close(&mut self, waiter: Option<oneshot::Sender<()>>) {
        let closing = self.closing.get_or_insert_with(|| Closing {
            waiters: Vec::new(),
            deadline: Instant::now() + self.opts.operation_timeout,
        });
        closing.waiters.extend(waiter);
    }

    /// Stops for good: fails what is left, ends the desired streams, wakes `close()` callers.
    fn finish(mut self, reason: CloseReason) {
        tracing::info!(%reason, "device client closed");
        for op in self.queue.drain(..) {
            op.fail(Error::Closed {
                reason: reason.clone(),
            });
        }
        self.desired.close();
        self.cloud.clear();
        self.set_state(LinkState::Closed {
            reason: reason.clone(),
        });
        // Commands that raced with the close fail too.
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            match cmd {
                Command::Op(kind) => Op { seq: 0, kind }.fail(Error::Closed {
                    reason: reason.clone(),
                }),
                Command::Close(w) => drop(w.send(())),
                Command::SubscribeDesired(_)
                | Command::SubscribeCloud(_)
                | Command::Reconnect(_) => {}
            }
        }
        if let Some(closing) = self.closing.take() {
            for w in closing.waiters {
                let _ = w.send(());
            }
        }
    }

    fn set_state(&self, state: LinkState) {
        self.state.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                *s = state;
                true
            }
        });
    }

    /// Hands a cloud-to-device message to every consumer (it is dropped, with a warning, when
    /// there is none).
    fn deliver_cloud(&mut self, message: CloudMessage) {
        self.cloud.retain(|c| !c.is_closed());
        if self.cloud.is_empty() {
            tracing::warn!(
                properties = ?message.properties,
                "cloud-to-device message dropped: no consumer (see DeviceClient::cloud_messages)"
            );
        }
        self.cloud.retain(|c| c.send(message.clone()).is_ok());
    }

    fn next_rid(&mut self) -> RequestId {
        self.rids.next_id()
    }

    /// Puts operations that were sent but not settled back in the queue, in issue order.
    fn requeue(&mut self, ops: impl IntoIterator<Item = Op>) {
        self.queue.extend(ops);
        self.queue.make_contiguous().sort_by_key(|op| op.seq);
    }
}

/// The subscription filters of every session: twin responses, desired patches, methods, and
/// cloud-to-device messages (module inputs for a module identity).
fn subscriptions(device: &DeviceId, module: Option<&ModuleId>) -> Vec<String> {
    vec![
        topic::TWIN_RESPONSE_FILTER.to_string(),
        topic::DESIRED_PATCH_FILTER.to_string(),
        topic::METHOD_REQUEST_FILTER.to_string(),
        match module {
            Some(m) => topic::module_input_filter(device, m),
            None => topic::c2d_filter(device),
        },
    ]
}

/// A connection attempt bounded by `timeout`.
async fn attempt(
    transport: Arc<dyn Transport>,
    request: ConnectRequest,
    timeout: Duration,
) -> Result<Link, Error> {
    match tokio::time::timeout(timeout, transport.connect(request)).await {
        Ok(r) => r.map_err(Error::from),
        Err(_) => Err(Error::Timeout {
            operation: crate::error::Operation::Connect,
            after: timeout,
        }),
    }
}

fn drop_stale(reply: MethodReply) {
    tracing::debug!(rid = %reply.rid, "dropping a method answer for a closed session");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_subscribe_to_c2d_and_modules_to_their_inputs() {
        let d = DeviceId::new("d1").unwrap();
        let m = ModuleId::new("m1").unwrap();
        let device = subscriptions(&d, None);
        assert_eq!(device.len(), 4);
        assert_eq!(device[3], "devices/d1/messages/devicebound/#");
        let module = subscriptions(&d, Some(&m));
        assert_eq!(module[..3], device[..3]);
        assert_eq!(module[3], "devices/d1/modules/m1/inputs/#");
    }
}
