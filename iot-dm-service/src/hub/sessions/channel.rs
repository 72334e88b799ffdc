//! The queues between a device's connection and its session: bounded, many senders, one
//! receiver, and nothing allocated while empty.
//!
//! A hub holds tens of thousands of idle sessions, each with queues in both directions. A
//! tokio `mpsc` channel allocates a block of 32 slots when it is created and keeps it for its
//! lifetime (about 3 KiB for a message queue); these queues keep a `VecDeque` that is released
//! whenever it drains, so an idle session costs a few words per queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

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
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why [`Sender::try_send`] did not queue the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// The queue holds `capacity` items.
    Full,
    /// The receiver is gone.
    Closed,
}

/// The receiver is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// A queue of at most `capacity` items.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
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

/// The sending side; clone it for more senders.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
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
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError> {
        {
            let mut s = self.shared.state();
            if !s.receiver_alive {
                return Err(TrySendError::Closed);
            }
            if s.items.len() >= self.shared.capacity {
                return Err(TrySendError::Full);
            }
            s.items.push_back(item);
        }
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room.
    pub(crate) async fn send(&self, item: T) -> Result<(), Closed> {
        let mut item = Some(item);
        loop {
            let room = self.shared.writable.notified();
            tokio::pin!(room);
            // registered before the check, so a wake-up between the check and the await
            // is not lost
            room.as_mut().enable();
            {
                let mut s = self.shared.state();
                if !s.receiver_alive {
                    return Err(Closed);
                }
                if s.items.len() < self.shared.capacity {
                    if let Some(item) = item.take() {
                        s.items.push_back(item);
                    }
                    drop(s);
                    self.shared.readable.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }
}

/// The receiving side.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
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
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut s = self.shared.state();
                if let Some(item) = s.items.pop_front() {
                    if s.items.is_empty() {
                        // an idle queue holds no buffer
                        s.items = VecDeque::new();
                    }
                    drop(s);
                    self.shared.writable.notify_waiters();
                    return Some(item);
                }
                if s.senders == 0 {
                    return None;
                }
            }
            self.shared.readable.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn delivers_in_order_and_ends_when_senders_leave() {
        let (tx, mut rx) = bounded(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        tx2.send(2).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        drop(tx2);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn full_and_closed_are_told_apart() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full));
        drop(rx);
        assert_eq!(tx.try_send(4), Err(TrySendError::Closed));
        assert_eq!(tx.send(5).await, Err(Closed));
    }

    #[tokio::test]
    async fn send_waits_for_room() {
        let (tx, mut rx) = bounded(1);
        tx.try_send(1).unwrap();
        let writer = tokio::spawn(async move {
            tx.send(2).await.unwrap();
            tx.send(3).await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!writer.is_finished());
        for want in 1..=3 {
            assert_eq!(rx.recv().await, Some(want));
        }
        writer.await.unwrap();
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_sender_learns_the_receiver_left() {
        let (tx, rx) = bounded(1);
        tx.try_send(1).unwrap();
        let writer = tokio::spawn(async move { tx.send(2).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(rx);
        assert_eq!(writer.await.unwrap(), Err(Closed));
    }

    #[tokio::test]
    async fn an_idle_queue_releases_its_buffer() {
        let (tx, mut rx) = bounded(64);
        for i in 0..40 {
            tx.try_send(i).unwrap();
        }
        for _ in 0..40 {
            rx.recv().await.unwrap();
        }
        assert_eq!(rx.shared.state().items.capacity(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_lose_nothing() {
        let (tx, mut rx) = bounded(8);
        let mut writers = Vec::new();
        for w in 0..4u32 {
            let tx = tx.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..1000u32 {
                    tx.send(w * 1000 + i).await.unwrap();
                }
            }));
        }
        drop(tx);
        let mut seen = Vec::new();
        while let Some(v) = rx.recv().await {
            seen.push(v);
        }
        for w in writers {
            w.await.unwrap();
        }
        // per sender, order is kept
        for w in 0..4u32 {
            let mine: Vec<u32> = seen.iter().copied().filter(|v| v / 1000 == w).collect();
            assert_eq!(mine, (w * 1000..w * 1000 + 1000).collect::<Vec<_>>());
        }
    }
}
