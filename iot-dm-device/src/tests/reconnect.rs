//! Link loss, reconnection, resync, the offline queue, refusals, renewal and close.

use std::time::Duration;

use iot_dm_core::link::ConnectRefused;
use serde_json::json;

use super::*;
use crate::{CloseReason, DisconnectReason};
use iot_dm_core::wire::topic::DESIRED_PATCH_FILTER as DESIRED_FILTER;

fn unavailable() -> Option<ConnectRefused> {
    Some(ConnectRefused::ServerUnavailable {
        reason: "maintenance".into(),
    })
}

#[tokio::test(start_paused = true)]
async fn reconnect_resubscribes_and_delivers_a_change_missed_offline() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    assert_eq!(within(desired.recv()).await.unwrap().version, 1);
    hub.set_desired(json!({"a": 1})).await;
    assert_eq!(within(desired.recv()).await.unwrap().version, 2);

    hub.refuse(unavailable());
    hub.drop_link();
    wait_state(&client, |s| {
        *s == LinkState::Disconnected {
            reason: DisconnectReason::SessionEnded,
        }
    })
    .await;
    // changed while the device is away: no notification can reach it
    hub.set_desired(json!({"b": 2})).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = hub.connects().len();
    assert!(
        attempts > 2,
        "retried while unavailable ({attempts} connects)"
    );
    assert!(attempts < 12, "backs off ({attempts} connects in 5s)");

    hub.refuse(None);
    wait_state(&client, LinkState::is_connected).await;
    let full = within(desired.recv()).await.unwrap();
    assert_eq!((full.version, full.full), (3, true));
    assert_eq!(full.patch, json!({"a": 1, "b": 2}));
    // subscribed again on the new session: live notifications flow
    eventually("resubscribed", || {
        hub.subscriptions().iter().any(|f| f == DESIRED_FILTER)
    })
    .await;
    hub.set_desired(json!({"c": 3})).await;
    let next = within(desired.recv()).await.unwrap();
    assert_eq!((next.version, next.full), (4, false));
    assert_eq!(next.patch, json!({"c": 3}));
}

#[tokio::test(start_paused = true)]
async fn reconnect_without_a_change_delivers_nothing() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    assert_eq!(within(desired.recv()).await.unwrap().version, 1);
    hub.drop_link();
    eventually("reconnected", || hub.current_session() == Some(2)).await;
    eventually("resync GET", || {
        !hub.publishes(2, "$iothub/twin/GET/").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(desired.try_recv(), None);
    hub.set_desired(json!({"x": 1})).await;
    assert_eq!(within(desired.recv()).await.unwrap().version, 2);
}

#[tokio::test(start_paused = true)]
async fn offline_queue_keeps_issue_order_and_its_bound() {
    let hub = TestHub::new().await;
    let client = builder(&hub).queue_capacity(3).connect().await.unwrap();
    hub.refuse(unavailable());
    hub.drop_link();
    wait_state(&client, |s| !s.is_connected()).await;

    let mut tasks = Vec::new();
    for n in 1..=3 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.update_reported(json!({"n": n})).await
        }));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = within(client.update_reported(json!({"n": 4})))
        .await
        .unwrap_err();
    assert!(err.is_queue_full() && err.is_retryable(), "{err:?}");

    hub.refuse(None);
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(within(t).await.unwrap().unwrap());
    }
    assert_eq!(versions, [2, 3, 4]);
    let session = hub.current_session().unwrap();
    let sent: Vec<_> = hub
        .publishes(session, "$iothub/twin/PATCH/properties/reported/")
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(sent, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    assert_eq!(hub.twin().reported().doc().to_value(), json!({"n": 3}));
}

#[tokio::test(start_paused = true)]
async fn unanswered_patch_is_sent_again_after_reconnect() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    eventually("resynced", || {
        hub.publishes(1, "$iothub/twin/GET/").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    hub.set_silent(true);
    let pending = {
        let c = client.clone();
        tokio::spawn(async move { c.update_reported(json!({"fw": "2.0"})).await })
    };
    eventually("patch sent", || {
        !hub.publishes(1, "$iothub/twin/PATCH/").is_empty()
    })
    .await;
    hub.set_silent(false);
    hub.drop_link();
    assert_eq!(within(pending).await.unwrap().unwrap(), 2);
    assert_eq!(hub.publishes(2, "$iothub/twin/PATCH/").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_operation_is_not_sent() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    hub.refuse(unavailable());
    hub.drop_link();
    wait_state(&client, |s| !s.is_connected()).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        within(client.update_reported(json!({"a": 1}))),
    )
    .await;
    assert!(gave_up.is_err());
    hub.refuse(None);
    assert_eq!(
        within(client.update_reported(json!({"b": 2})))
            .await
            .unwrap(),
        2
    );
    assert_eq!(hub.twin().reported().doc().to_value(), json!({"b": 2}));
}

#[tokio::test(start_paused = true)]
async fn refused_reconnect_closes_the_client() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    assert!(within(desired.recv()).await.unwrap().full);
    hub.refuse(Some(ConnectRefused::NotAuthorized {
        reason: "device disabled".into(),
    }));
    hub.drop_link();
    wait_state(&client, LinkState::is_closed).await;
    assert_eq!(
        *client.link_state().borrow(),
        LinkState::Closed {
            reason: CloseReason::Refused {
                reason: "device disabled".into()
            }
        }
    );
    let err = within(client.get_twin()).await.unwrap_err();
    assert!(err.is_refused() && err.is_closed(), "{err:?}");
    assert_eq!(within(desired.recv()).await, None);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(hub.connects().len(), 2, "no retry after a refusal");
}

#[tokio::test(start_paused = true)]
async fn close_flushes_then_ends_everything() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    let pending = {
        let c = client.clone();
        tokio::spawn(async move { c.update_reported(json!({"bye": true})).await })
    };
    tokio::task::yield_now().await;
    within(client.close()).await;
    assert_eq!(
        within(pending).await.unwrap().unwrap(),
        2,
        "queued before close: sent"
    );
    assert_eq!(
        *client.link_state().borrow(),
        LinkState::Closed {
            reason: CloseReason::Requested
        }
    );
    let err = within(client.get_twin()).await.unwrap_err();
    assert!(err.is_closed() && !err.is_refused(), "{err:?}");
    while let Some(p) = within(desired.recv()).await {
        assert!(p.full);
    }
    eventually("hub saw the session end", || hub.sessions_ended() == 1).await;
    within(client.close()).await; // closing twice is fine
    assert_eq!(hub.connects().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_closes_the_session() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    let mut desired = client.desired_updates();
    let clone = client.clone();
    drop(client);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(hub.sessions_ended(), 0, "a clone keeps it open");
    drop(clone);
    eventually("session closed", || hub.sessions_ended() == 1).await;
    while within(desired.recv()).await.is_some() {}
}

#[tokio::test(start_paused = true)]
async fn sas_token_is_renewed_before_it_expires() {
    let hub = TestHub::new().await;
    let clock = clock();
    let client = builder_with_clock(&hub, clock.clone())
        .sas_ttl(Duration::from_secs(100))
        .connect()
        .await
        .unwrap();
    assert_eq!(token_expiry(&hub.connects()[0]), START + 100);
    clock.advance(Duration::from_secs(79));
    tokio::time::sleep(Duration::from_secs(79)).await;
    assert_eq!(hub.connects().len(), 1, "not yet due");
    clock.advance(Duration::from_secs(2));
    eventually("renewed", || hub.connects().len() == 2).await;
    assert_eq!(token_expiry(&hub.connects()[1]), START + 81 + 100);
    wait_state(&client, LinkState::is_connected).await;
    assert_eq!(
        within(client.update_reported(json!({"a": 1})))
            .await
            .unwrap(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn reconnect_on_request_opens_a_new_session_and_keeps_serving() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    within(client.reconnect()).await.unwrap();
    assert_eq!(hub.connects().len(), 2);
    assert!(client.link_state().borrow().is_connected());
    assert_eq!(
        within(client.update_reported(json!({"a": 1})))
            .await
            .unwrap(),
        2
    );
    client.close().await;
    assert!(client.reconnect().await.unwrap_err().is_closed());
}
