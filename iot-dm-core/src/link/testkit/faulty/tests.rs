use std::time::Duration;

use super::*;
use crate::link::{channel, Credentials, HubSide};

/// Answers every publish with a message on `re/{topic}` and closes the session on a publish
/// to `close`; keeps a sender per session so tests can push, and learns when a session ends.
#[derive(Default)]
struct Echo {
    sides: Mutex<Vec<tokio::sync::oneshot::Receiver<()>>>,
    pushers: Mutex<Vec<crate::link::Sender<Message>>>,
}

impl Echo {
    fn pusher(&self, n: usize) -> crate::link::Sender<Message> {
        locked(&self.pushers)[n].clone()
    }
}

async fn serve(mut hub: HubSide, done: tokio::sync::oneshot::Sender<()>) {
    while let Some(f) = hub.frames.recv().await {
        if let DeviceFrame::Publish(m) = f {
            if m.topic == "close" {
                break;
            }
            let reply = Message::new(format!("re/{}", m.topic), m.payload);
            if hub.messages.send(reply).await.is_err() {
                break;
            }
        }
    }
    let _ = done.send(());
}

#[async_trait::async_trait]
impl Endpoint for Echo {
    async fn connect(&self, _: ConnectRequest) -> Result<Link, ConnectRefused> {
        let (link, hub) = channel(8);
        let (done, ended) = tokio::sync::oneshot::channel();
        locked(&self.pushers).push(hub.messages.clone());
        locked(&self.sides).push(ended);
        tokio::spawn(serve(hub, done));
        Ok(link)
    }
}

fn request() -> ConnectRequest {
    ConnectRequest {
        device_id: "dev-1".parse().unwrap(),
        module_id: None,
        credentials: Credentials::None,
        clean_session: false,
    }
}

async fn publish(link: &mut Link, topic: &str) -> Result<(), LinkClosed> {
    link.tx
        .send(DeviceFrame::Publish(Message::new(topic.to_string(), "x")))
        .await
}

async fn next(link: &mut Link) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), link.rx.recv())
        .await
        .expect("a message or the end within 5 s")
        .map(|m| m.topic)
}

async fn nothing_for(link: &mut Link, d: Duration) -> bool {
    tokio::time::timeout(d, link.rx.recv()).await.is_err()
}

#[tokio::test]
async fn passes_everything_through_and_records_it() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let mut link = faulty.connect(request()).await.unwrap();
    link.tx
        .send(DeviceFrame::Subscribe(vec!["a".into(), "b".into()]))
        .await
        .unwrap();
    link.tx
        .send(DeviceFrame::Unsubscribe(vec!["a".into()]))
        .await
        .unwrap();
    publish(&mut link, "t1").await.unwrap();
    link.tx.send(DeviceFrame::Ack(9)).await.unwrap();
    assert_eq!(next(&mut link).await.as_deref(), Some("re/t1"));
    assert_eq!(faulty.subscriptions(), ["b"]);
    assert_eq!(faulty.frames().len(), 4);
    assert_eq!(faulty.publishes(1, "t").len(), 1);
    assert!(faulty.publishes(2, "t").is_empty());
    assert_eq!(faulty.acks(), [9]);
    assert_eq!(faulty.delivered(1, "re/").len(), 1);
    assert_eq!(faulty.current_session(), Some(1));
    assert_eq!(faulty.connects(), [request()]);
}

#[tokio::test]
async fn refusals_use_up_a_session_number() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let refusal = ConnectRefused::NotAuthorized {
        reason: "no".into(),
    };
    faulty.refuse(Some(refusal.clone()));
    assert_eq!(faulty.connect(request()).await.unwrap_err(), refusal);
    assert!(locked(&faulty.inner().pushers).is_empty(), "not passed on");
    faulty.refuse(None);
    let _link = faulty.connect(request()).await.unwrap();
    assert_eq!(faulty.current_session(), Some(2));
    assert_eq!(faulty.connects().len(), 2);
}

#[tokio::test]
async fn a_dropped_link_ends_for_the_device_then_for_the_endpoint() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let mut link = faulty.connect(request()).await.unwrap();
    let waiting = tokio::spawn(async move {
        let end = link.rx.recv().await;
        (link, end)
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    faulty.drop_link();
    let (mut link, end) = waiting.await.unwrap();
    assert_eq!(end, None, "a waiting receiver wakes up to the end");
    assert_eq!(faulty.sessions_ended(), 1);
    assert_eq!(faulty.current_session(), None);
    let mut ended = locked(&faulty.inner().sides).remove(0);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut ended)
            .await
            .is_err(),
        "the endpoint's session lives until the device sends or lets go"
    );
    assert_eq!(publish(&mut link, "t").await, Err(LinkClosed));
    tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the endpoint saw the session end")
        .unwrap();
    assert!(
        faulty.publishes(1, "t").is_empty(),
        "not recorded after the cut"
    );
    assert_eq!(faulty.sessions_ended(), 1, "counted once");
}

#[tokio::test]
async fn the_device_letting_go_or_the_endpoint_closing_ends_a_session() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let link = faulty.connect(request()).await.unwrap();
    drop(link);
    assert_eq!(faulty.sessions_ended(), 1);
    let mut link = faulty.connect(request()).await.unwrap();
    assert_eq!(faulty.current_session(), Some(2));
    // the endpoint closes its side while the device still holds the link
    locked(&faulty.inner().pushers).clear();
    publish(&mut link, "close").await.unwrap();
    assert_eq!(next(&mut link).await, None);
    assert_eq!(faulty.sessions_ended(), 2);
}

#[tokio::test]
async fn a_silent_endpoint_records_frames_but_gets_none() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let mut link = faulty.connect(request()).await.unwrap();
    faulty.set_silent(true);
    publish(&mut link, "lost").await.unwrap();
    assert!(nothing_for(&mut link, Duration::from_millis(50)).await);
    assert_eq!(faulty.publishes(1, "lost").len(), 1);
    faulty.set_silent(false);
    publish(&mut link, "heard").await.unwrap();
    assert_eq!(next(&mut link).await.as_deref(), Some("re/heard"));
}

#[tokio::test]
async fn held_messages_wait_and_injected_ones_pass() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let mut link = faulty.connect(request()).await.unwrap();
    faulty.hold(true);
    publish(&mut link, "a").await.unwrap();
    assert!(nothing_for(&mut link, Duration::from_millis(50)).await);
    assert!(faulty.inject(Message::new("injected", "")));
    assert_eq!(next(&mut link).await.as_deref(), Some("injected"));
    faulty.hold(false);
    assert_eq!(next(&mut link).await.as_deref(), Some("re/a"));
}

#[tokio::test]
async fn injected_messages_come_after_what_the_endpoint_queued() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let mut link = faulty.connect(request()).await.unwrap();
    faulty
        .inner()
        .pusher(0)
        .try_send(Message::new("queued", ""))
        .unwrap();
    assert!(faulty.inject(Message::new("injected", "")));
    assert_eq!(next(&mut link).await.as_deref(), Some("queued"));
    assert_eq!(next(&mut link).await.as_deref(), Some("injected"));
    drop(link);
    assert!(!faulty.inject(Message::new("nobody", "")), "no session");
}

#[tokio::test]
async fn drop_next_drops_one_matching_message() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let mut link = faulty.connect(request()).await.unwrap();
    faulty.drop_next("re/b");
    for t in ["a", "b", "b"] {
        publish(&mut link, t).await.unwrap();
    }
    assert_eq!(next(&mut link).await.as_deref(), Some("re/a"));
    assert_eq!(next(&mut link).await.as_deref(), Some("re/b"));
    let dropped = faulty.dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        (dropped[0].session, dropped[0].message.topic.as_str()),
        (1, "re/b")
    );
    assert_eq!(faulty.delivered(1, "re/b").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn delayed_messages_arrive_late_and_survive_a_cancelled_recv() {
    let faulty = FaultyEndpoint::new(Echo::default());
    let mut link = faulty.connect(request()).await.unwrap();
    faulty.delay(Duration::from_secs(3));
    let sent = Instant::now();
    publish(&mut link, "slow").await.unwrap();
    assert!(nothing_for(&mut link, Duration::from_secs(2)).await);
    assert_eq!(next(&mut link).await.as_deref(), Some("re/slow"));
    assert!(sent.elapsed() >= Duration::from_secs(3));
    faulty.delay(Duration::ZERO);
    publish(&mut link, "fast").await.unwrap();
    assert_eq!(next(&mut link).await.as_deref(), Some("re/fast"));
}
