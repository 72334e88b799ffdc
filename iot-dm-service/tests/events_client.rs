//! `ServiceClient::events`: the hub's event stream as an async `Stream` over a real socket on
//! 127.0.0.1, resumed by itself after the server went away and came back, with `lost`
//! surfaced as an item, and refusals as errors.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use iot_dm_core::events::{EventType, EventTypes, LostReason};
use iot_dm_service::api::prelude::*;
use iot_dm_service::client::{EventItem, EventStream, EventsRequest, ServiceClient};
use iot_dm_service::hub::DeviceSpec;
use iot_dm_service::rest::RestServer;
use iot_dm_service::Hub;

const WAIT: Duration = Duration::from_secs(10);

async fn serve(hub: &Hub, addr: SocketAddr) -> RestServer {
    RestServer::builder(hub.clone())
        .listen(addr)
        .start()
        .await
        .unwrap()
}

fn client(hub: &Hub, policy: &str, addr: SocketAddr) -> ServiceClient {
    ServiceClient::builder(&hub.service_connection_string(policy).unwrap())
        .unwrap()
        .base_url(&format!("http://{addr}"))
        .unwrap()
        .build()
        .unwrap()
}

async fn next(events: &mut EventStream) -> EventItem {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an item in time")
        .expect("the stream goes on")
        .unwrap()
}

async fn tag(hub: &Hub, n: u64) {
    hub.update_twin(
        "d1",
        &serde_json::from_value(json!({"tags": {"n": n}})).unwrap(),
        None,
    )
    .await
    .unwrap();
}

fn version(item: &EventItem) -> u64 {
    match item {
        EventItem::Event(e) => {
            assert_eq!(e.event_type, "twin.changed");
            assert_eq!(e.device_id(), Some("d1"));
            assert!(e.time().is_some());
            e.data["version"].as_u64().unwrap()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_after_the_server_comes_back() {
    let hub = Hub::builder().open().await.unwrap();
    hub.create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    let server = serve(&hub, "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.local_addr();
    let c = client(&hub, "iothubowner", addr);
    let mut events =
        c.events(EventsRequest::new().types(EventTypes::none().with(EventType::TwinChanged)));
    // the stream is open once the first event of a write after it arrives
    let mut n = 0;
    let first = loop {
        n += 1;
        tag(&hub, n).await;
        if let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(200), events.next()).await
        {
            break version(&item.unwrap());
        }
    };
    for _ in 0..3 {
        n += 1;
        tag(&hub, n).await;
    }
    let mut versions = vec![first];
    while versions.len() < (n as usize + 2 - first as usize) {
        versions.push(version(&next(&mut events).await));
    }
    let last_before = events.last_event_id().unwrap();

    // the server goes away (its streams end) and comes back on the same port; what
    // happened meanwhile arrives, then what follows
    server.shutdown().await;
    for _ in 0..5 {
        n += 1;
        tag(&hub, n).await;
    }
    let server = serve(&hub, addr).await;
    n += 1;
    tag(&hub, n).await;
    while versions.len() < (n as usize + 2 - first as usize) {
        versions.push(version(&next(&mut events).await));
    }
    assert_eq!(versions, (first..=n + 1).collect::<Vec<_>>());
    assert_eq!(events.last_event_id(), Some(last_before + 6));
    server.shutdown().await;
}

#[tokio::test]
async fn lost_is_an_item_and_bounds_end_the_stream() {
    let hub = Hub::builder()
        .event_retention(4, usize::MAX)
        .open()
        .await
        .unwrap();
    hub.create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    let server = serve(&hub, "127.0.0.1:0".parse().unwrap()).await;
    let c = client(&hub, "iothubowner", server.local_addr());
    let mut events = c.events(EventsRequest::new().after(1).limit(3));
    let EventItem::Lost(lost) = next(&mut events).await else {
        panic!("no lost signal")
    };
    assert_eq!(lost.reason, LostReason::Retention);
    assert_eq!(lost.after, 1);
    // two retained events, then the limit
    assert!(matches!(next(&mut events).await, EventItem::Event(_)));
    assert!(matches!(next(&mut events).await, EventItem::Event(_)));
    let end = tokio::time::timeout(WAIT, events.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");

    // a timeout ends an idle stream
    let mut idle = c.events(EventsRequest::new().timeout(Duration::from_millis(300)));
    let end = tokio::time::timeout(WAIT, idle.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_are_errors_that_end_the_stream() {
    let hub = Hub::builder().open().await.unwrap();
    let server = serve(&hub, "127.0.0.1:0".parse().unwrap()).await;
    let reader = client(&hub, "registryRead", server.local_addr());
    let mut events =
        reader.events(EventsRequest::new().types(EventTypes::none().with(EventType::Telemetry)));
    let e = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.is_forbidden(), "{e:?}");
    assert!(tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .is_none());
    let owner = client(&hub, "iothubowner", server.local_addr());
    let mut events = owner.events(EventsRequest::new().devices("tags.x ="));
    let e = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("devices"), "{e}");
    server.shutdown().await;
}
