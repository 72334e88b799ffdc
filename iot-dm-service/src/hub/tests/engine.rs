//! The hub's tests of durability: restart, log replay, checkpoints racing writers, shutdown.

use super::*;

#[tokio::test]
async fn restart_reloads_everything_acknowledged() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let hub = Hub::builder().store(store.clone()).open().await.unwrap();
    let d = device(&hub, "d1").await;
    hub.plan_device(DeviceSpec::new("p".parse().unwrap()))
        .await
        .unwrap();
    hub.patch_reported("d1", &json!({"x": 1})).await.unwrap();
    let p: TwinPatch = serde_json::from_value(json!({"tags": {"t": 1}})).unwrap();
    hub.update_twin("d1", &p, None).await.unwrap();
    let before = hub.get_twin("d1").unwrap();
    drop(hub);
    let hub = Hub::builder().store(store).open().await.unwrap();
    assert_eq!(
        hub.get_device("d1").unwrap().authentication(),
        d.authentication()
    );
    let after = hub.get_twin("d1").unwrap();
    assert_eq!(after.to_json(), {
        let mut b = before.to_json();
        b["connectionState"] = json!("Disconnected");
        b
    });
    assert_eq!(hub.get_device("p").unwrap().state().as_str(), "planned");
}

#[tokio::test]
async fn reported_patches_replay_from_the_log() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let open = || {
        Hub::builder()
            .store(store.clone())
            .checkpoint_interval(Duration::from_secs(3600))
            .open()
    };
    let hub = open().await.unwrap();
    device(&hub, "a").await;
    device(&hub, "b").await;
    for i in 0..50 {
        hub.patch_reported("a", &json!({"n": i})).await.unwrap();
    }
    let log_len = store.len(crate::store::Table::Log).await.unwrap();
    assert_eq!(log_len, 50, "patches go to the log, not the record");
    let before = hub.get_twin("a").unwrap();
    drop(hub);

    // no checkpoint ran: the record is old, the log brings it up to date
    let hub = open().await.unwrap();
    let after = hub.get_twin("a").unwrap();
    assert_eq!(after.reported(), before.reported());
    assert_eq!(after.version(), before.version());

    // a checkpoint folds the log into records
    assert_eq!(hub.checkpoint().await.unwrap(), 1);
    assert_eq!(store.len(crate::store::Table::Log).await.unwrap(), 0);
    hub.patch_reported("a", &json!({"after": true}))
        .await
        .unwrap();
    // a record write after logged patches supersedes them
    hub.patch_reported("b", &json!({"x": 1})).await.unwrap();
    let p: TwinPatch = serde_json::from_value(json!({"tags": {"t": 1}})).unwrap();
    hub.update_twin("b", &p, None).await.unwrap();
    hub.patch_reported("b", &json!({"y": 2})).await.unwrap();
    // logged patches of a deleted device must not reach a new device with the same id
    hub.patch_reported("a", &json!({"old": 1})).await.unwrap();
    hub.delete_device("a", None).await.unwrap();
    device(&hub, "a").await;
    let (a, b) = (hub.get_twin("a").unwrap(), hub.get_twin("b").unwrap());
    drop(hub);
    let hub = open().await.unwrap();
    assert_eq!(hub.get_twin("a").unwrap().reported(), a.reported());
    assert!(hub.get_twin("a").unwrap().reported().doc().is_empty());
    let b2 = hub.get_twin("b").unwrap();
    assert_eq!(b2.reported(), b.reported());
    assert_eq!(b2.tags(), b.tags());
    assert_eq!(b2.reported().doc().to_value(), json!({"x": 1, "y": 2}));
}

#[tokio::test]
async fn a_write_racing_a_checkpoint_is_not_lost() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let open = || {
        Hub::builder()
            .store(store.clone())
            .checkpoint_interval(Duration::from_secs(3600))
            .open()
    };
    let hub = open().await.unwrap();
    device(&hub, "a").await;
    device(&hub, "b").await;
    hub.patch_reported("a", &json!({"n": 1})).await.unwrap();
    // the checkpoint has taken its watermark and its dirty set ...
    let plan = crate::hub::engine::log::plan_checkpoint(&hub.inner);
    // ... when b reports and a reports again
    hub.patch_reported("b", &json!({"late": true}))
        .await
        .unwrap();
    hub.patch_reported("a", &json!({"n": 2})).await.unwrap();
    crate::hub::engine::log::finish_checkpoint(&hub.inner, plan)
        .await
        .unwrap();
    drop(hub);
    let hub = open().await.unwrap();
    assert_eq!(
        hub.get_twin("b").unwrap().reported().doc().to_value(),
        json!({"late": true})
    );
    assert_eq!(
        hub.get_twin("a").unwrap().reported().doc().to_value(),
        json!({"n": 2})
    );
}

#[tokio::test]
async fn shutdown_closes_sessions_and_releases_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let hub = builder_at_t0().0.path(&path).open().await.unwrap();
    let d = device(&hub, "d1").await;
    let token = token_for(&d, None, 3600);
    let mut dev = Raw::connect(&hub, &d).await;
    hub.patch_reported("d1", &json!({"x": 1})).await.unwrap();
    let keep = hub.clone();
    hub.shutdown().await.unwrap();
    assert!(dev.closed().await);
    assert!(matches!(
        keep.patch_reported("d1", &json!({"x": 2})).await,
        Err(HubError::Closed)
    ));
    assert!(keep.connect(request(&d, token)).await.is_err());
    // the file is free at once, with the other handle still alive
    let again = Hub::builder().path(&path).open().await.unwrap();
    assert_eq!(
        again.get_twin("d1").unwrap().reported().doc().to_value(),
        json!({"x": 1})
    );
    again.shutdown().await.unwrap();
}

/// Whether the entry of `id` holds one identity record, shared by its device and its twin, and
/// what the device and twin views show of it.
fn shares_one_identity(hub: &Hub, id: &str) -> bool {
    let slot = hub.inner.state.slot(id).unwrap();
    let e = crate::hub::engine::lock(&slot);
    Arc::ptr_eq(&e.device.identity, &e.twin.identity)
}

#[tokio::test]
async fn device_and_twin_share_one_identity_through_every_write() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let hub = builder_at_t0().0.store(store.clone()).open().await.unwrap();
    let d = device(&hub, "d1").await;
    assert!(shares_one_identity(&hub, "d1"));
    // a session: connection state and last activity
    let mut dev = Raw::connect(&hub, &d).await;
    assert!(shares_one_identity(&hub, "d1"));
    assert_eq!(
        hub.get_twin("d1").unwrap().identity.connection_state,
        ConnectionState::Connected
    );
    // the logged reported patch moves lastActivityTime in both views
    let before = hub.get_device("d1").unwrap().identity.last_activity_time;
    dev.patch_reported(json!({"fw": "1.0"})).await;
    assert!(shares_one_identity(&hub, "d1"));
    let (device, twin) = (hub.get_device("d1").unwrap(), hub.get_twin("d1").unwrap());
    assert!(device.identity.last_activity_time >= before);
    assert_eq!(device.identity, twin.identity);
    // queued messages count in both views
    hub.send_c2d("d1", CloudMessage::new("hi")).await.unwrap();
    assert!(shares_one_identity(&hub, "d1"));
    assert_eq!(
        hub.get_twin("d1")
            .unwrap()
            .identity
            .cloud_to_device_message_count,
        1
    );
    // a registry update: status, reason, capabilities and the identity's ETag
    let mut update = hub.get_device("d1").unwrap();
    update.identity_mut().capabilities.iot_edge = true;
    let updated = hub.update_device(update, None).await.unwrap();
    assert!(shares_one_identity(&hub, "d1"));
    let twin = hub.get_twin("d1").unwrap();
    assert!(twin.identity.capabilities.iot_edge);
    assert_eq!(twin.to_json()["deviceEtag"], json!(updated.etag().as_str()));
    hub.disable_device("d1", "stolen").await.unwrap();
    assert!(shares_one_identity(&hub, "d1"));
    assert_eq!(
        hub.get_twin("d1").unwrap().to_json()["status"],
        json!("disabled")
    );
    // a twin write keeps the pointer
    let p: TwinPatch = serde_json::from_value(json!({"tags": {"t": 1}})).unwrap();
    hub.update_twin("d1", &p, None).await.unwrap();
    assert!(shares_one_identity(&hub, "d1"));
    let device = hub.get_device("d1").unwrap();
    drop(dev);
    hub.checkpoint().await.unwrap();
    drop(hub);
    // and a reload from the store
    let hub = Hub::builder().store(store).open().await.unwrap();
    assert!(shares_one_identity(&hub, "d1"));
    let reloaded = hub.get_device("d1").unwrap();
    assert_eq!(
        reloaded.identity.status_reason,
        device.identity.status_reason
    );
    assert_eq!(reloaded.etag(), device.etag());
    assert_eq!(
        reloaded.identity.connection_state,
        ConnectionState::Disconnected
    );
}
