use std::time::Duration;

use super::*;

fn buffer_capacity<T>(rx: &Receiver<T>) -> usize {
    rx.shared.state().items.capacity()
}

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
async fn full_and_closed_are_told_apart_and_give_the_item_back() {
    let (tx, mut rx) = bounded(2);
    assert_eq!(tx.capacity(), 2);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    let full = tx.try_send(3).unwrap_err();
    assert!(full.is_full() && !full.is_closed());
    assert_eq!(full.into_inner(), 3);
    assert_eq!(rx.len(), 2);
    assert_eq!(rx.try_recv(), Some(1));
    tx.try_send(3).unwrap();
    assert!(!tx.is_closed());
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.try_send(4), Err(TrySendError::Closed(4)));
    assert_eq!(tx.send(5).await, Err(SendError(5)));
}

#[tokio::test]
async fn a_zero_capacity_holds_one_item() {
    let (tx, _rx) = bounded(0);
    assert_eq!(tx.capacity(), 1);
    tx.try_send(1).unwrap();
    assert!(tx.try_send(2).unwrap_err().is_full());
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
async fn a_waiting_receiver_wakes_for_an_item_and_for_the_last_sender() {
    let (tx, mut rx) = bounded::<u32>(4);
    let reader = tokio::spawn(async move {
        let first = rx.recv().await;
        let end = rx.recv().await;
        (first, end)
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!reader.is_finished());
    tx.try_send(7).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!reader.is_finished(), "one sender is still there");
    drop(tx);
    assert_eq!(reader.await.unwrap(), (Some(7), None));
}

#[tokio::test]
async fn a_waiting_sender_learns_the_receiver_left() {
    let (tx, rx) = bounded(1);
    tx.try_send(1).unwrap();
    let writer = tokio::spawn(async move { tx.send(2).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(rx);
    assert_eq!(writer.await.unwrap(), Err(SendError(2)));
}

#[tokio::test]
async fn dropping_the_receiver_drops_queued_items() {
    let item = std::sync::Arc::new(());
    let (tx, rx) = bounded(4);
    tx.try_send(item.clone()).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&item), 2);
    drop(rx);
    assert_eq!(std::sync::Arc::strong_count(&item), 1);
}

#[tokio::test]
async fn a_cancelled_recv_loses_nothing() {
    let (tx, mut rx) = bounded(4);
    let waited = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
    assert!(waited.is_err());
    tx.try_send(1).unwrap();
    assert_eq!(rx.recv().await, Some(1));
}

#[tokio::test]
async fn nothing_is_allocated_while_empty() {
    let (tx, mut rx) = bounded(64);
    assert_eq!(buffer_capacity(&rx), 0, "a new queue holds no buffer");
    for i in 0..40 {
        tx.try_send(i).unwrap();
    }
    assert!(buffer_capacity(&rx) >= 40);
    for _ in 0..39 {
        rx.recv().await.unwrap();
    }
    assert!(buffer_capacity(&rx) > 0, "not empty yet");
    rx.recv().await.unwrap();
    assert_eq!(
        buffer_capacity(&rx),
        0,
        "a drained queue released its buffer"
    );
    tx.try_send(1).unwrap();
    assert_eq!(rx.try_recv(), Some(1));
    assert_eq!(buffer_capacity(&rx), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_lose_nothing_and_keep_their_order() {
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
    assert_eq!(seen.len(), 4000);
    for w in 0..4u32 {
        let mine: Vec<u32> = seen.iter().copied().filter(|v| v / 1000 == w).collect();
        assert_eq!(mine, (w * 1000..w * 1000 + 1000).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_channel_link_carries_both_directions() {
    let (mut link, mut hub) = channel_with(1, 2);
    assert!(!link.session_present);
    assert_eq!(hub.messages.capacity(), 2);
    link.tx.send(DeviceFrame::Ack(1)).await.unwrap();
    // one frame of room: the second send waits until the hub side reads
    let second = link.tx.send(DeviceFrame::Ack(2));
    let read = async { hub.frames.recv().await };
    let (sent, first) = tokio::join!(second, read);
    sent.unwrap();
    assert_eq!(first, Some(DeviceFrame::Ack(1)));
    assert_eq!(hub.frames.recv().await, Some(DeviceFrame::Ack(2)));

    let pusher = hub.messages.clone();
    pusher.try_send(Message::new("a", "1")).unwrap();
    hub.messages.send(Message::new("b", "2")).await.unwrap();
    assert!(pusher
        .try_send(Message::new("c", "3"))
        .unwrap_err()
        .is_full());
    assert_eq!(link.rx.recv().await.unwrap().topic, "a");
    assert_eq!(link.rx.recv().await.unwrap().topic, "b");

    // the hub side drops its senders: the device's receiver ends
    drop(pusher);
    drop(hub.messages);
    assert_eq!(link.rx.recv().await, None);
    // the hub side drops its receiver: the device's sends fail
    drop(hub.frames);
    assert_eq!(link.tx.send(DeviceFrame::Ack(3)).await, Err(LinkClosed));
}

#[tokio::test]
async fn dropping_the_link_ends_the_hub_side() {
    let (link, mut hub) = channel(4);
    let (tx, rx) = (link.tx, link.rx);
    drop(rx);
    assert!(hub.messages.is_closed());
    assert!(hub
        .messages
        .try_send(Message::new("t", ""))
        .unwrap_err()
        .is_closed());
    drop(tx);
    assert_eq!(hub.frames.recv().await, None);
}
