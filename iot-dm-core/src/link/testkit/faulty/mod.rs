//! [`FaultyEndpoint`]: a real endpoint behind a link that fails on demand.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::link::{
    ConnectRefused, ConnectRequest, DeviceFrame, Endpoint, Link, LinkClosed, LinkRx, LinkTx,
    Message,
};

/// A frame a device sent, with the session (numbered from 1 by connect attempt) it came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFrame {
    /// The session: the number of the connect attempt that opened it.
    pub session: usize,
    /// The frame.
    pub frame: DeviceFrame,
}

impl SessionFrame {
    /// The message, for a publish.
    pub fn publish(&self) -> Option<&Message> {
        match &self.frame {
            DeviceFrame::Publish(m) => Some(m),
            _ => None,
        }
    }
}

/// A message that reached a device (or was dropped on its way), with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMessage {
    /// The session: the number of the connect attempt that opened it.
    pub session: usize,
    /// The message.
    pub message: Message,
}

/// Wraps an [`Endpoint`] and injects faults into the links it opens: refused connects, a
/// dropped link, a silent endpoint (frames swallowed), held or delayed delivery, dropped or
/// injected messages. It records what passes: connect attempts, the frames devices sent and
/// the messages they got.
///
/// Sessions are numbered by connect attempt, from 1 (a refused attempt uses up its number).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use iot_dm_core::link::testkit::FaultyEndpoint;
/// use iot_dm_core::link::{
///     channel, ConnectRefused, ConnectRequest, Credentials, DeviceFrame, Endpoint, Link,
/// };
///
/// // an endpoint that accepts everything and never answers
/// struct Quiet;
/// #[async_trait::async_trait]
/// impl Endpoint for Quiet {
///     async fn connect(&self, _: ConnectRequest) -> Result<Link, ConnectRefused> {
///         let (link, hub) = channel(8);
///         std::mem::forget(hub); // keep the session open
///         Ok(link)
///     }
/// }
/// let faulty = FaultyEndpoint::new(Quiet);
/// let request = ConnectRequest {
///     device_id: "dev-1".parse().unwrap(),
///     module_id: None,
///     credentials: Credentials::None,
///     clean_session: true,
/// };
/// let mut link = faulty.connect(request.clone()).await.unwrap();
/// link.tx.send(DeviceFrame::Subscribe(vec!["$iothub/twin/res/#".into()])).await.unwrap();
/// assert_eq!(faulty.subscriptions(), ["$iothub/twin/res/#"]);
///
/// faulty.drop_link();
/// assert!(link.rx.recv().await.is_none());
/// assert_eq!(faulty.sessions_ended(), 1);
///
/// faulty.refuse(Some(ConnectRefused::ServerUnavailable { reason: "maintenance".into() }));
/// assert!(faulty.connect(request).await.is_err());
/// assert_eq!(faulty.connects().len(), 2);
/// # }
/// ```
pub struct FaultyEndpoint<E> {
    inner: E,
    shared: Arc<Shared>,
}

impl<E> std::fmt::Debug for FaultyEndpoint<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyEndpoint")
            .field("current_session", &self.current_session())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    refuse: Option<ConnectRefused>,
    silent: bool,
    held: bool,
    delay: Duration,
    drop_next: Vec<String>,
    connects: Vec<ConnectRequest>,
    frames: Vec<SessionFrame>,
    delivered: Vec<SessionMessage>,
    dropped: Vec<SessionMessage>,
    current: Option<Arc<Session>>,
    ended: usize,
}

/// One session's switches, shared by its two halves and the endpoint.
struct Session {
    n: usize,
    subscriptions: Mutex<Vec<String>>,
    injected: Mutex<VecDeque<Message>>,
    cut: AtomicBool,
    ended: AtomicBool,
    /// Wakes the receiving half (one waiter: `notify_one` keeps a permit).
    wake: Notify,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        locked(&self.state)
    }

    /// Counts `session` as ended, once.
    fn end(&self, session: &Arc<Session>) {
        if session.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut st = self.state();
        st.ended += 1;
        if st.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session)) {
            st.current = None;
        }
    }

    fn wake_current(&self) {
        if let Some(s) = &self.state().current {
            s.wake.notify_one();
        }
    }
}

impl<E> FaultyEndpoint<E> {
    /// Wraps `inner`, with no faults.
    pub fn new(inner: E) -> FaultyEndpoint<E> {
        FaultyEndpoint {
            inner,
            shared: Arc::default(),
        }
    }

    /// The wrapped endpoint.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Refuses every connect with this (`None`: passes them on again).
    pub fn refuse(&self, refusal: Option<ConnectRefused>) {
        self.shared.state().refuse = refusal;
    }

    /// Ends the current session: the device's receiver ends and its sends fail at once. The
    /// wrapped endpoint sees the session end when the device next sends or lets go of the
    /// link, as with a broken connection.
    pub fn drop_link(&self) {
        let current = self.shared.state().current.clone();
        if let Some(s) = current {
            s.cut.store(true, Ordering::SeqCst);
            s.wake.notify_one();
            self.shared.end(&s);
        }
    }

    /// While set, frames from devices are recorded but swallowed: the endpoint stays silent.
    pub fn set_silent(&self, silent: bool) {
        self.shared.state().silent = silent;
    }

    /// While set, messages from the wrapped endpoint are not delivered (they wait in its
    /// queues; injected messages still pass).
    pub fn hold(&self, held: bool) {
        self.shared.state().held = held;
        self.shared.wake_current();
    }

    /// Delivers each message to a device this much after it left the wrapped endpoint (zero:
    /// at once).
    pub fn delay(&self, delay: Duration) {
        self.shared.state().delay = delay;
    }

    /// Drops the next message to a device whose topic starts with `prefix`.
    pub fn drop_next(&self, prefix: &str) {
        self.shared.state().drop_next.push(prefix.to_string());
    }

    /// Delivers `message` to the current session's device as if the endpoint had sent it,
    /// after what the endpoint has already queued; false when no session is open.
    pub fn inject(&self, message: Message) -> bool {
        let Some(s) = self.shared.state().current.clone() else {
            return false;
        };
        locked(&s.injected).push_back(message);
        s.wake.notify_one();
        true
    }

    /// Every connect request, refused ones included.
    pub fn connects(&self) -> Vec<ConnectRequest> {
        self.shared.state().connects.clone()
    }

    /// Every frame devices sent (swallowed ones included).
    pub fn frames(&self) -> Vec<SessionFrame> {
        self.shared.state().frames.clone()
    }

    /// The publishes sent on `session` whose topic starts with `prefix`.
    pub fn publishes(&self, session: usize, prefix: &str) -> Vec<Message> {
        self.shared
            .state()
            .frames
            .iter()
            .filter(|f| f.session == session)
            .filter_map(SessionFrame::publish)
            .filter(|m| m.topic.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The acknowledgements devices sent, in order.
    pub fn acks(&self) -> Vec<u64> {
        self.shared
            .state()
            .frames
            .iter()
            .filter_map(|f| match f.frame {
                DeviceFrame::Ack(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// The messages delivered on `session` whose topic starts with `prefix`.
    pub fn delivered(&self, session: usize, prefix: &str) -> Vec<Message> {
        let st = self.shared.state();
        matching(&st.delivered, session, prefix)
    }

    /// The messages [`drop_next`](Self::drop_next) dropped.
    pub fn dropped(&self) -> Vec<SessionMessage> {
        self.shared.state().dropped.clone()
    }

    /// The topic filters the current session subscribed to (and did not unsubscribe from).
    pub fn subscriptions(&self) -> Vec<String> {
        let current = self.shared.state().current.clone();
        current
            .map(|s| locked(&s.subscriptions).clone())
            .unwrap_or_default()
    }

    /// The number of the open session, if one is open.
    pub fn current_session(&self) -> Option<usize> {
        self.shared.state().current.as_ref().map(|s| s.n)
    }

    /// Sessions that ended: dropped with [`drop_link`](Self::drop_link), let go of by the
    /// device, or closed by the wrapped endpoint.
    pub fn sessions_ended(&self) -> usize {
        self.shared.state().ended
    }
}

fn matching(list: &[SessionMessage], session: usize, prefix: &str) -> Vec<Message> {
    list.iter()
        .filter(|m| m.session == session && m.message.topic.starts_with(prefix))
        .map(|m| m.message.clone())
        .collect()
}

#[async_trait::async_trait]
impl<E: Endpoint> Endpoint for FaultyEndpoint<E> {
    async fn connect(&self, request: ConnectRequest) -> Result<Link, ConnectRefused> {
        let n = {
            let mut st = self.shared.state();
            st.connects.push(request.clone());
            if let Some(r) = &st.refuse {
                return Err(r.clone());
            }
            st.connects.len()
        };
        let link = self.inner.connect(request).await?;
        let session = Arc::new(Session {
            n,
            subscriptions: Mutex::default(),
            injected: Mutex::default(),
            cut: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            wake: Notify::new(),
        });
        self.shared.state().current = Some(session.clone());
        Ok(Link {
            tx: Box::new(FaultyTx {
                inner: Some(link.tx),
                session: session.clone(),
                shared: self.shared.clone(),
            }),
            rx: Box::new(FaultyRx {
                inner: Some(link.rx),
                session,
                shared: self.shared.clone(),
                due: None,
            }),
            session_present: link.session_present,
        })
    }
}

struct FaultyTx {
    inner: Option<Box<dyn LinkTx<DeviceFrame>>>,
    session: Arc<Session>,
    shared: Arc<Shared>,
}

impl Drop for FaultyTx {
    fn drop(&mut self) {
        self.shared.end(&self.session);
    }
}

#[async_trait::async_trait]
impl LinkTx<DeviceFrame> for FaultyTx {
    async fn send(&mut self, frame: DeviceFrame) -> Result<(), LinkClosed> {
        if self.session.cut.load(Ordering::SeqCst) {
            self.inner = None;
            return Err(LinkClosed);
        }
        let silent = {
            let mut st = self.shared.state();
            st.frames.push(SessionFrame {
                session: self.session.n,
                frame: frame.clone(),
            });
            st.silent
        };
        {
            let mut subs = locked(&self.session.subscriptions);
            match &frame {
                DeviceFrame::Subscribe(f) => subs.extend(f.iter().cloned()),
                DeviceFrame::Unsubscribe(f) => subs.retain(|s| !f.contains(s)),
                _ => {}
            }
        }
        if silent {
            return Ok(());
        }
        match self.inner.as_mut() {
            Some(tx) => tx.send(frame).await,
            None => Err(LinkClosed),
        }
    }
}

struct FaultyRx {
    inner: Option<Box<dyn LinkRx<Message>>>,
    session: Arc<Session>,
    shared: Arc<Shared>,
    /// A delayed message and when it is due (kept here, so a cancelled `recv` loses nothing).
    due: Option<(Instant, Message)>,
}

enum Event {
    Inner(Option<Message>),
    Injected(Message),
    Wake,
}

impl FaultyRx {
    /// Whether `m` is to be dropped (and records it), else when it is due.
    fn admit(&self, m: &Message) -> Option<Duration> {
        let mut st = self.shared.state();
        if let Some(i) = st.drop_next.iter().position(|p| m.topic.starts_with(p)) {
            st.drop_next.remove(i);
            st.dropped.push(SessionMessage {
                session: self.session.n,
                message: m.clone(),
            });
            return None;
        }
        Some(st.delay)
    }

    fn deliver(&self, message: Message) -> Message {
        self.shared.state().delivered.push(SessionMessage {
            session: self.session.n,
            message: message.clone(),
        });
        message
    }
}

#[async_trait::async_trait]
impl LinkRx<Message> for FaultyRx {
    async fn recv(&mut self) -> Option<Message> {
        loop {
            let session = self.session.clone();
            if session.cut.load(Ordering::SeqCst) {
                self.inner = None;
                self.due = None;
                return None;
            }
            if let Some((at, _)) = &self.due {
                tokio::select! {
                    _ = tokio::time::sleep_until(*at) => {
                        let (_, m) = self.due.take()?;
                        return Some(self.deliver(m));
                    }
                    _ = session.wake.notified() => continue,
                }
            }
            let held = self.shared.state().held;
            let inner = self.inner.as_mut()?;
            let mut next = inner.recv();
            let mut wake = pin!(session.wake.notified());
            // what the wrapped endpoint has queued goes first, then injected messages
            let event = poll_fn(|cx| {
                if !held {
                    if let Poll::Ready(m) = next.as_mut().poll(cx) {
                        return Poll::Ready(Event::Inner(m));
                    }
                }
                if let Some(m) = locked(&session.injected).pop_front() {
                    return Poll::Ready(Event::Injected(m));
                }
                match wake.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Event::Wake),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            drop(next);
            let m = match event {
                Event::Wake => continue,
                Event::Inner(None) => {
                    self.inner = None;
                    self.shared.end(&session);
                    return None;
                }
                Event::Inner(Some(m)) | Event::Injected(m) => m,
            };
            match self.admit(&m) {
                None => continue,
                Some(d) if d.is_zero() => return Some(self.deliver(m)),
                Some(d) => self.due = Some((Instant::now() + d, m)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
