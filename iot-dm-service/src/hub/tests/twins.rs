//! The hub's tests of twin reads and service-side writes, and what the device is told of them.

use super::*;

#[tokio::test]
async fn twin_updates_with_etags() {
    let (hub, _) = hub_with_clock().await;
    device(&hub, "d1").await;
    let twin = hub.get_twin("d1").unwrap();
    let patch: TwinPatch = serde_json::from_value(
        json!({"tags": {"site": "n"}, "properties": {"desired": {"fan": 1}}}),
    )
    .unwrap();
    let t2 = hub
        .update_twin("d1", &patch, Some(twin.etag().as_str()))
        .await
        .unwrap();
    assert_eq!(t2.desired().version(), 2);
    let err = hub
        .update_twin("d1", &patch, Some(twin.etag().as_str()))
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed(), "{err}");
    let bad: TwinPatch = serde_json::from_value(json!({"tags": {"a b": 1}})).unwrap();
    let err = hub.update_twin("d1", &bad, None).await.unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert_eq!(hub.get_twin("d1").unwrap(), t2);
}

#[tokio::test]
async fn desired_patches_reach_the_device_in_order() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    // make sure the subscription was processed
    dev.get_twin().await;
    for i in 0..10 {
        let p: TwinPatch =
            serde_json::from_value(json!({"properties": {"desired": {"step": i}}})).unwrap();
        hub.update_twin("d1", &p, None).await.unwrap();
    }
    for i in 0..10u64 {
        let m = dev.recv().await;
        assert_eq!(
            m.topic,
            format!("$iothub/twin/PATCH/properties/desired/?$version={}", i + 2)
        );
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body, json!({"step": i, "$version": i + 2}));
    }
    // a replace sends the whole desired document
    let p: TwinPatch =
        serde_json::from_value(json!({"properties": {"desired": {"only": true}}})).unwrap();
    hub.replace_twin("d1", &p, None).await.unwrap();
    let body: Value = serde_json::from_slice(&dev.recv().await.payload).unwrap();
    assert_eq!(body, json!({"only": true, "$version": 12}));
}

/// A desired patch whose commit fails is never told to the device, nor emitted as an event:
/// after a restart the hub serves the last durable version, and the device never saw a
/// greater one.
#[tokio::test]
async fn a_desired_change_that_is_not_durable_is_never_told() {
    let failing = crate::store::conformance::FailingStore::new(crate::store::MemoryStore::new());
    let hub = Hub::builder()
        .store(Arc::new(failing.clone()))
        .clock(Arc::new(ManualClock::new(Timestamp::from_unix_secs(T0))))
        .host_name("hub.example")
        .open()
        .await
        .unwrap();
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    dev.get_twin().await;
    let mut events = hub.events();
    let patch = |i: u32| -> TwinPatch {
        serde_json::from_value(json!({"properties": {"desired": {"step": i}}})).unwrap()
    };
    hub.update_twin("d1", &patch(1), None).await.unwrap();
    let m = dev.recv().await;
    assert_eq!(m.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");

    failing.fail_commits(true);
    let err = hub.update_twin("d1", &patch(2), None).await.unwrap_err();
    assert!(matches!(&err, HubError::Store(e) if e.is_io()), "{err}");
    // nothing reaches the device or the event stream for the failed write
    let quiet = tokio::time::timeout(Duration::from_millis(300), dev.link.rx.recv()).await;
    assert!(
        quiet.is_err(),
        "the device was told {:?}",
        quiet.ok().flatten().map(|m| m.topic)
    );
    let mut versions = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let HubEvent::TwinChanged {
            desired_version, ..
        } = e
        {
            versions.push(desired_version);
        }
    }
    assert_eq!(versions, vec![2], "events: {versions:?}");
    // nor to a back end reading through the API: the write it would show is not durable
    let read = crate::api::TwinApi::get_twin(&hub, "d1").await;
    assert!(
        read.is_err(),
        "a read showed a write whose commit failed: {read:?}"
    );

    // after a restart on what is durable, the hub serves version 2: what the device holds
    failing.fail_commits(false);
    drop(dev);
    let reopened = Hub::builder()
        .store(Arc::new(failing.inner().clone()))
        .open()
        .await
        .unwrap();
    let twin = reopened.get_twin("d1").unwrap();
    assert_eq!(twin.desired().version(), 2);
    assert_eq!(twin.desired().doc().to_value(), json!({"step": 1}));
}

/// Concurrent service writers to one device: the device is told every desired version once,
/// in version order, and the events follow the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_desired_changes_are_told_in_version_order() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    let mut dev = Raw::connect(&hub, &d).await;
    dev.get_twin().await;
    let mut events = hub.events();
    let writers: Vec<_> = (0..8u32)
        .map(|w| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..25u32 {
                    let p: TwinPatch = serde_json::from_value(
                        json!({"properties": {"desired": {format!("w{w}"): i}}}),
                    )
                    .unwrap();
                    hub.update_twin("d1", &p, None).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for want in 2..202u64 {
        let m = dev.recv().await;
        assert_eq!(
            m.topic,
            format!("$iothub/twin/PATCH/properties/desired/?$version={want}")
        );
    }
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let HubEvent::TwinChanged {
            desired_version, ..
        } = e
        {
            seen.push(desired_version);
        }
    }
    assert_eq!(seen, (2..202).collect::<Vec<u64>>());
}
