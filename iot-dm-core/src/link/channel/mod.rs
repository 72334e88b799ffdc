//! In-process links: bounded queues in both directions.
//!
//! [`channel`] opens a [`Link`] for a device and hands the other ends, a [`HubSide`], to
//! whatever serves the session (an in-process hub, a test double, a transport bridging to
//! a network connection). The queues underneath ([`bounded`]) keep at most `capacity`
//! items, allow many senders and one receiver, and hold no buffer while empty: a hub keeps
//! tens of thousands of idle sessions, each with a queue in both directions, and an idle
//! queue costs a few words (a `VecDeque` is released whenever it drains, unlike channels
//! that allocate a block of slots up front and keep it).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use iot_dm_core::link::{channel, DeviceFrame, Message, TrySendError};
//!
//! let (mut link, mut hub) = channel(2);
//! // the device publishes; the hub side receives the frame
//! link.tx.send(DeviceFrame::Subscribe(vec!["$iothub/twin/res/#".into()])).await.unwrap();
//! assert!(matches!(hub.frames.recv().await, Some(DeviceFrame::Subscribe(_))));
//!
//! // the hub pushes without waiting, and learns when the device is not keeping up
//! hub.messages.try_send(Message::new("$iothub/twin/res/200/?$rid=1", "{}")).unwrap();
//! hub.messages.try_send(Message::new("$iothub/twin/res/200/?$rid=2", "{}")).unwrap();
//! let full = hub.messages.try_send(Message::new("$iothub/twin/res/200/?$rid=3", "{}"));
//! assert!(matches!(full, Err(TrySendError::Full(_))));
//! assert_eq!(link.rx.recv().await.unwrap().topic, "$iothub/twin/res/200/?$rid=1");
//!
//! // the device goes away: the hub side sees the end of its frames
//! drop(link);
//! assert!(hub.frames.recv().await.is_none());
//! assert!(matches!(hub.messages.try_send(Message::new("t", "")), Err(TrySendError::Closed(_))));
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::{DeviceFrame, Link, LinkClosed, LinkRx, LinkTx, Message};

/// Opens an in-process link whose queues hold at most `capacity` items each way.
///
/// The device gets the [`Link`] (with `session_present` false: set it before handing the link
/// out if the session kept state); whatever serves the session keeps the [`HubSide`].
pub fn channel(capacity: usize) -> (Link, HubSide) {
    channel_with(capacity, capacity)
}

/// Like [`channel`], with a capacity per direction: `frames` from the device, `messages` to
/// it.
pub fn channel_with(frames: usize, messages: usize) -> (Link, HubSide) {
    let (frame_tx, frame_rx) = bounded(frames);
    let (message_tx, message_rx) = bounded(messages);
    let link = Link {
        tx: Box::new(frame_tx),
        rx: Box::new(message_rx),
        session_present: false,
    };
    let hub = HubSide {
        frames: frame_rx,
        messages: message_tx,
    };
    (link, hub)
}

/// The ends of an in-process link that serve the session: the device's frames come in on
/// `frames`, messages for the device go out on `messages` (clone it to push from elsewhere).
///
/// `frames` ends once the device dropped its [`Link`] (or its `tx`); `messages` fails with
/// `Closed` once the device dropped its `rx`.
#[derive(Debug)]
pub struct HubSide {
    /// Frames from the device, in the order it sent them.
    pub frames: Receiver<DeviceFrame>,
    /// Messages to the device.
    pub messages: Sender<Message>,
}

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver_alive: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Woken when an item arrives or the last sender leaves (one receiver: `notify_one`
    /// keeps a permit when it is not waiting).
    readable: Notify,
    /// Woken when an item leaves or the receiver goes away.
    writable: Notify,
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        // the state stays consistent under every panic (no user code runs under the lock)
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct(name)
            .field("queued", &s.items.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Why [`Sender::try_send`] did not queue the item; either way the item comes back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The queue holds `capacity` items.
    #[error("queue full")]
    Full(T),
    /// The receiver is gone.
    #[error("queue closed")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The item that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(t) | TrySendError::Closed(t) => t,
        }
    }

    /// Whether the queue was full (the receiver is still there).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySendError::Closed(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "Full(..)",
            TrySendError::Closed(_) => "Closed(..)",
        })
    }
}

/// [`Sender::send`] found the receiver gone; the item comes back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue closed")]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The item that was not queued.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

/// A queue of at most `capacity` items (at least one): many senders, one receiver, no buffer
/// while empty.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use iot_dm_core::link::bounded;
/// let (tx, mut rx) = bounded(8);
/// let tx2 = tx.clone();
/// tx.try_send(1).unwrap();
/// tx2.send(2).await.unwrap();
/// drop((tx, tx2));
/// assert_eq!(rx.recv().await, Some(1));
/// assert_eq!(rx.recv().await, Some(2));
/// assert_eq!(rx.recv().await, None); // every sender is gone
/// # }
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver_alive: true,
        }),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending side of a [`bounded`] queue; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.debug("Sender", f)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut s = self.shared.state();
            s.senders -= 1;
            s.senders == 0
        };
        if last {
            self.shared.readable.notify_one();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or the receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        {
            let mut s = self.shared.state();
            if !s.receiver_alive {
                return Err(TrySendError::Closed(item));
            }
            if s.items.len() >= self.shared.capacity {
                return Err(TrySendError::Full(item));
            }
            s.items.push_back(item);
        }
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room; fails once the receiver is gone. Cancel-safe: a
    /// dropped future queued nothing.
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        loop {
            let mut room = pin!(self.shared.writable.notified());
            // registered before the check, so a wake-up between the check and the await
            // is not lost
            room.as_mut().enable();
            {
                let mut s = self.shared.state();
                if !s.receiver_alive {
                    return Err(SendError(item));
                }
                if s.items.len() < self.shared.capacity {
                    s.items.push_back(item);
                    drop(s);
                    self.shared.readable.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.shared.state().receiver_alive
    }

    /// The most items the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

/// The receiving side of a [`bounded`] queue.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.debug("Receiver", f)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = {
            let mut s = self.shared.state();
            s.receiver_alive = false;
            std::mem::take(&mut s.items)
        };
        // dropped outside the lock: an item's drop may touch other queues
        drop(dropped);
        self.shared.writable.notify_waiters();
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty. Cancel-safe:
    /// a dropped future took nothing.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(next) = self.take() {
                return next;
            }
            self.shared.readable.notified().await;
        }
    }

    /// The next item if one is queued now; `None` when the queue is empty (whether or not
    /// senders remain).
    pub fn try_recv(&mut self) -> Option<T> {
        self.take().flatten()
    }

    /// `Some(Some(item))`, `Some(None)` at the end, `None` when it must wait.
    fn take(&mut self) -> Option<Option<T>> {
        let mut s = self.shared.state();
        if let Some(item) = s.items.pop_front() {
            if s.items.is_empty() {
                // an idle queue holds no buffer
                s.items = VecDeque::new();
            }
            drop(s);
            self.shared.writable.notify_waiters();
            return Some(Some(item));
        }
        (s.senders == 0).then_some(None)
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.shared.state().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl<T: Send + 'static> LinkTx<T> for Sender<T> {
    async fn send(&mut self, item: T) -> Result<(), LinkClosed> {
        Sender::send(self, item).await.map_err(|_| LinkClosed)
    }
}

#[async_trait::async_trait]
impl<T: Send + 'static> LinkRx<T> for Receiver<T> {
    async fn recv(&mut self) -> Option<T> {
        Receiver::recv(self).await
    }
}

#[cfg(test)]
mod tests;
