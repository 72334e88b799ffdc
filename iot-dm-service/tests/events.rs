//! End to end: the hub's event stream, `GET /events`, over a real socket on 127.0.0.1: what a
//! reader sees (twin changes with their actors, an MQTT device's connect, telemetry and
//! disconnect, identities, job progress), resuming with `Last-Event-ID` without gaps or
//! duplicates while events keep flowing, the `lost` signal (a resume older than the retention,
//! a slow reader), the `types` and `devices` filters, the bounds, keep-alives, access rights
//! and bad parameters.

#![allow(clippy::unwrap_used)]

mod events_support;
mod mqtt_support;

use std::time::Duration;

use rumqttc::{MqttOptions, QoS, Transport};
use serde_json::json;

use events_support::{env, open, open_with, owner, token_for, token_with, Ev, HOST, WAIT};
use iot_dm_core::events::sse::SseItem;
use iot_dm_service::access::Rights;
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::DeviceSpec;

async fn device(hub: &iot_dm_service::Hub, id: &str) {
    hub.create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
}

async fn tag(hub: &iot_dm_service::Hub, id: &str, tags: serde_json::Value) {
    hub.update_twin(
        id,
        &serde_json::from_value(json!({ "tags": tags })).unwrap(),
        None,
    )
    .await
    .unwrap();
}

fn consecutive(events: &[Ev]) {
    for w in events.windows(2) {
        assert_eq!(w[1].id, w[0].id + 1, "{:?} then {:?}", w[0], w[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_twins_sessions_identities_telemetry_and_jobs() {
    let env = env(|b| b, |r| r).await;
    let hub = &env.hub;
    let mut sse = open(env.rest, &owner(hub), "", None).await;

    // an identity, a service twin write
    let created = hub
        .create_device(DeviceSpec::new("m1".parse().unwrap()))
        .await
        .unwrap();
    tag(hub, "m1", json!({"site": "north"})).await;
    let seen = sse
        .until(|s| s.iter().any(|e| e.event == "twin.changed"))
        .await;
    assert_eq!(seen[0].event, "identity.created");
    assert_eq!(seen[0].device(), "m1");
    let twin = seen.iter().find(|e| e.event == "twin.changed").unwrap();
    assert_eq!(twin.data["actor"], json!({"kind": "service"}));
    assert_eq!(twin.data["version"], 2);

    // an MQTT device connects, reports, sends telemetry, disconnects
    let key = created.symmetric_key.primary_key.unwrap();
    let mut o = MqttOptions::new("m1", "127.0.0.1", env.mqtt.port());
    o.set_credentials(
        format!("{HOST}/m1/?api-version=2021-04-12"),
        mqtt_support::token("m1", &key),
    )
    .set_keep_alive(Duration::from_secs(30))
    .set_transport(Transport::Tcp);
    let mut dev = mqtt_support::Dev::start(o);
    dev.connack().await.unwrap();
    dev.client
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=1",
            QoS::AtMostOnce,
            false,
            r#"{"temp": 21}"#,
        )
        .await
        .unwrap();
    dev.client
        .publish(
            "devices/m1/messages/events/kind=reading",
            QoS::AtLeastOnce,
            false,
            r#"{"t": 21.5}"#,
        )
        .await
        .unwrap();
    let more = sse
        .until(|s| {
            s.iter().any(|e| e.event == "telemetry")
                && s.iter()
                    .any(|e| e.event == "twin.changed" && e.data["actor"]["kind"] == "device")
        })
        .await;
    assert_eq!(more[0].event, "device.connected", "{more:#?}");
    let t = more.iter().find(|e| e.event == "telemetry").unwrap();
    assert_eq!(t.device(), "m1");
    assert_eq!(t.data["body"], r#"{"t": 21.5}"#);
    assert_eq!(t.data["properties"]["kind"], "reading");
    assert_eq!(
        (t.data["size"].as_u64(), t.data["truncated"].as_bool()),
        (Some(11), Some(false))
    );
    let reported = more
        .iter()
        .find(|e| e.event == "twin.changed" && e.data["actor"]["kind"] == "device")
        .unwrap();
    assert_eq!(reported.data["reportedVersion"], 2);

    // a twin job: changes with the job as actor, and its progress up to completed
    let job = serde_json::from_value(json!({
        "jobId": "tag-m1", "type": "scheduleUpdateTwin", "queryCondition": "deviceId = 'm1'",
        "startTime": null, "updateTwin": {"etag": "*", "tags": {"fw": "2"}}
    }))
    .unwrap();
    hub.create_job(&job).await.unwrap();
    let jobs = sse
        .until(|s| {
            s.iter()
                .any(|e| e.event == "job.progress" && e.data["status"] == "completed")
        })
        .await;
    assert!(
        jobs.iter().any(|e| e.event == "twin.changed"
            && e.data["actor"] == json!({"kind": "job", "id": "tag-m1"})),
        "{jobs:#?}"
    );
    let done = jobs.last().unwrap();
    assert_eq!(done.data["jobId"], "tag-m1");
    assert_eq!(done.data["statistics"]["succeededCount"], 1);
    assert!(done.data.get("deviceId").is_none());

    dev.client.disconnect().await.unwrap();
    let gone = sse
        .until(|s| s.iter().any(|e| e.event == "device.disconnected"))
        .await;
    hub.delete_device("m1", None).await.unwrap();
    let deleted = sse
        .until(|s| {
            s.iter()
                .any(|e| e.event == "lifecycle.changed" && e.data["to"].is_null())
        })
        .await;
    assert!(
        deleted.iter().any(|e| e.event == "identity.deleted"),
        "{deleted:#?}"
    );
    let end = [gone, deleted].concat();

    // one stream, one numbering: every id follows the one before
    let all: Vec<Ev> = [seen, more, jobs, end].concat();
    consecutive(&all);
    env.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_reconnects_with_last_event_id_misses_nothing_and_repeats_nothing() {
    let env = env(|b| b, |r| r).await;
    let hub = env.hub.clone();
    device(&hub, "d1").await;
    let token = owner(&hub);
    let start = {
        let mut sse = open(env.rest, &token, "", None).await;
        tag(&hub, "d1", json!({"n": 0})).await;
        sse.next().await.unwrap().id - 1
    };
    // events keep flowing while the reader comes and goes
    const N: u64 = 300;
    let writer = tokio::spawn({
        let hub = hub.clone();
        async move {
            for n in 1..=N {
                tag(&hub, "d1", json!({ "n": n })).await;
                if n % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    });
    let mut got: Vec<Ev> = Vec::new();
    let mut last = start;
    let mut reconnections = 0;
    while got.last().is_none_or(|e| e.data["version"] != N + 2) {
        let mut sse = open(env.rest, &token, "types=twin.changed", Some(last)).await;
        // read a few, then drop the connection
        for _ in 0..37 {
            let Some(e) = sse.next().await else { break };
            assert_ne!(e.event, "lost", "{e:?}");
            last = e.id;
            let done = e.data["version"] == N + 2;
            got.push(e);
            if done {
                break;
            }
        }
        reconnections += 1;
    }
    writer.await.unwrap();
    assert!(reconnections > 3, "{reconnections}");
    consecutive(&got);
    assert_eq!(got[0].id, start + 1);
    let versions: Vec<u64> = got
        .iter()
        .map(|e| e.data["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (2..=N + 2).collect::<Vec<_>>());
    env.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_resume_older_than_the_retention_is_told_what_was_lost() {
    let env = env(|b| b.event_retention(10, usize::MAX), |r| r).await;
    let hub = &env.hub;
    device(hub, "d1").await;
    let token = owner(hub);
    let first = {
        let mut sse = open(env.rest, &token, "", None).await;
        tag(hub, "d1", json!({"n": 0})).await;
        sse.next().await.unwrap().id
    };
    for n in 1..30 {
        tag(hub, "d1", json!({ "n": n })).await;
    }
    // retained: the last 10 (first + 20 ..= first + 29)
    let mut sse = open(env.rest, &token, "limit=11", Some(first)).await;
    let lost = sse.next().await.unwrap();
    assert_eq!(lost.event, "lost");
    assert_eq!(
        lost.data,
        json!({"after": first, "next": first + 20, "reason": "retention"})
    );
    assert_eq!(
        lost.id,
        first + 19,
        "a resume after the signal asks for no lost event"
    );
    let mut rest = Vec::new();
    while let Some(e) = sse.next().await {
        rest.push(e);
    }
    assert_eq!(rest.len(), 10, "the limit counts the signal: {rest:#?}");
    assert_eq!(rest[0].id, first + 20);
    consecutive(&rest);
    // an id the hub never handed out
    let mut sse = open(env.rest, &token, "limit=1", Some(first + 10_000)).await;
    let lost = sse.next().await.unwrap();
    assert_eq!(lost.data["reason"], "unknown");
    assert_eq!(lost.data["next"], first + 20);
    env.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_lost_instead_of_a_silent_gap() {
    let env = env(|b| b.event_retention(50, usize::MAX), |r| r).await;
    let hub = &env.hub;
    device(hub, "d1").await;
    let token = owner(hub);
    let mut sse = open_with(env.rest, Some(&token), "", None, true)
        .await
        .unwrap();
    // the reader reads nothing while the hub goes far ahead of it: 40,000 events (some 10 MB)
    // are more than the socket buffers between them hold (4 KiB to read, at most 4 MiB to
    // send), so the server's reader of the ring falls behind its 50 events for certain
    for n in 0..40_000 {
        tag(hub, "d1", json!({ "n": n })).await;
    }
    let mut seen: Vec<Ev> = Vec::new();
    while seen
        .last()
        .is_none_or(|e| e.data["tags"].is_null() && e.data["version"] != 40_001)
    {
        match sse.next().await {
            Some(e) => seen.push(e),
            None => panic!("ended"),
        }
    }
    let lost: Vec<&Ev> = seen.iter().filter(|e| e.event == "lost").collect();
    assert!(!lost.is_empty(), "no lost signal in {} events", seen.len());
    for (i, e) in seen.iter().enumerate() {
        if e.event == "lost" {
            assert_eq!(e.data["reason"], "lagged");
            let next = e.data["next"].as_u64().unwrap();
            // the signal names the gap exactly
            if i > 0 {
                assert_eq!(e.data["after"].as_u64().unwrap(), seen[i - 1].id);
            }
            assert_eq!(seen[i + 1].id, next);
        } else if i > 0 && seen[i - 1].event != "lost" {
            assert_eq!(e.id, seen[i - 1].id + 1, "a silent gap");
        }
    }
    env.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn types_and_devices_filter_what_is_delivered() {
    let env = env(|b| b, |r| r).await;
    let hub = &env.hub;
    let token = owner(hub);
    let mut by_type = open(env.rest, &token, "types=identity.created", None).await;
    let mut by_device = open(
        env.rest,
        &token,
        "types=twin.changed,%20identity.updated&devices=tags.site%20%3D%20%27north%27",
        None,
    )
    .await;
    device(hub, "n1").await;
    device(hub, "s1").await;
    tag(hub, "n1", json!({"site": "north"})).await;
    tag(hub, "s1", json!({"site": "south"})).await;
    tag(hub, "s1", json!({"x": 1})).await;
    tag(hub, "n1", json!({"x": 1})).await;
    let created = by_type.until(|s| s.len() == 2).await;
    assert!(created.iter().all(|e| e.event == "identity.created"));
    assert_eq!((created[0].device(), created[1].device()), ("n1", "s1"));
    let north = by_device.until(|s| s.len() == 2).await;
    assert!(
        north
            .iter()
            .all(|e| e.event == "twin.changed" && e.device() == "n1"),
        "{north:#?}"
    );
    assert_eq!(
        (
            north[0].data["version"].as_u64(),
            north[1].data["version"].as_u64()
        ),
        (Some(2), Some(3))
    );
    env.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn limits_timeouts_and_keep_alives() {
    let env = env(|b| b, |r| r.event_keep_alive(Duration::from_millis(50))).await;
    let hub = &env.hub;
    let token = owner(hub);
    // an idle stream sends keep-alive comments, and ends at its timeout
    let started = tokio::time::Instant::now();
    let mut idle = open(env.rest, &token, "timeout=1", None).await;
    let mut pings = 0;
    while let Some(item) = idle.item().await {
        match item {
            SseItem::Comment(c) => {
                assert_eq!(c, "ping");
                pings += 1;
            }
            SseItem::Frame(f) => panic!("{f:?}"),
        }
    }
    let took = started.elapsed();
    assert!(pings >= 3, "{pings}");
    assert!(took >= Duration::from_secs(1) && took < WAIT, "{took:?}");
    // a limit ends the stream after that many events
    let mut two = open(env.rest, &token, "limit=2", None).await;
    for id in ["a", "b", "c"] {
        device(hub, id).await;
    }
    let a = two.next().await.unwrap();
    let b = two.next().await.unwrap();
    assert_eq!((a.device(), b.device()), ("a", "a"));
    assert!(two.next().await.is_none());
    env.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let env = env(|b| b, |r| r).await;
    let started = tokio::time::Instant::now();
    let mut sse = open(env.rest, &token_for(&env.hub, "iothubowner", 2), "", None).await;
    device(&env.hub, "d1").await;
    assert_eq!(sse.next().await.unwrap().event, "identity.created");
    while let Some(e) = sse.next().await {
        assert_ne!(e.event, "lost");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < WAIT,
        "{took:?}"
    );
    env.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusals_name_the_right_or_the_parameter() {
    let env = env(|b| b, |r| r).await;
    let hub = &env.hub;
    let device_only = token_with(hub, "devices-only", Rights::DEVICE_CONNECT).await;
    let reader = token_with(hub, "reader", Rights::REGISTRY_READ).await;
    let owner = owner(hub);

    let r = open_with(env.rest, None, "", None, false)
        .await
        .err()
        .unwrap();
    assert_eq!(r.status, 401);
    let r = open_with(env.rest, Some(&device_only), "", None, false)
        .await
        .err()
        .unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let r = open_with(env.rest, Some(&reader), "types=telemetry", None, false)
        .await
        .err()
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("ServiceConnect"), "{r:?}");

    for (query, last, name) in [
        ("types=twin.changed,nope", None, "types"),
        ("devices=tags.x%20%3D", None, "devices"),
        ("limit=0", None, "limit"),
        ("limit=lots", None, "limit"),
        ("timeout=-1", None, "timeout"),
        ("", Some("abc"), "Last-Event-ID"),
    ] {
        let r = if let Some(bad) = last {
            raw_last_event_id(env.rest, &owner, bad).await
        } else {
            open_with(env.rest, Some(&owner), query, None, false)
                .await
                .err()
                .unwrap()
        };
        assert_eq!(r.status, 400, "{query}: {r:?}");
        assert!(
            r.body.contains(&format!("invalid {name}")),
            "{query}: {}",
            r.body
        );
    }
    let r = open_with(env.rest, Some(&owner), "types=nope", None, false)
        .await
        .err()
        .unwrap();
    assert!(
        r.body.contains("nope") && r.body.contains("twin.changed"),
        "{}",
        r.body
    );

    // a reader without ServiceConnect reads every other type, but no telemetry
    let mut sse = open(env.rest, &reader, "", None).await;
    hub.create_device(DeviceSpec::new("t1".parse().unwrap()))
        .await
        .unwrap();
    let seen = sse
        .until(|s| s.iter().any(|e| e.event == "identity.created"))
        .await;
    assert!(seen.iter().all(|e| e.event != "telemetry"));
    env.server.shutdown().await.unwrap();
}

/// `GET /events` with a `Last-Event-ID` that is not a number.
async fn raw_last_event_id(
    addr: std::net::SocketAddr,
    token: &str,
    bad: &str,
) -> events_support::Refused {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/events?{}", events_support::API))
        .header("host", HOST)
        .header("authorization", token)
        .header("last-event-id", bad)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    events_support::Refused {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn configuration_metrics_follow_the_counts() {
    let env = env(|b| b, |r| r).await;
    let hub = &env.hub;
    for id in ["n1", "n2", "s1"] {
        device(hub, id).await;
    }
    tag(hub, "n1", json!({"site": "north"})).await;
    tag(hub, "n2", json!({"site": "north"})).await;
    let token = owner(hub);
    let mut sse = open(env.rest, &token, "types=configuration.metrics", None).await;
    let cfg = iot_dm_core::configuration::Configuration::from_json(&json!({
        "id": "fan", "targetCondition": "tags.site = 'north'", "priority": 1,
        "content": {"deviceContent": {"properties.desired.fan": 3}},
        "metrics": {"queries": {"north": "SELECT deviceId FROM devices WHERE tags.site = 'north'"}},
    }))
    .unwrap();
    hub.put_configuration(&cfg, None).await.unwrap();
    let counts = |e: &Ev| {
        (
            e.data["systemMetrics"]["targetedCount"].as_u64(),
            e.data["systemMetrics"]["appliedCount"].as_u64(),
            e.data["metrics"]["north"].as_u64(),
        )
    };
    let seen = sse
        .until(|s| {
            s.last()
                .is_some_and(|e| counts(e) == (Some(2), Some(2), Some(2)))
        })
        .await;
    assert!(seen.iter().all(|e| e.event == "configuration.metrics"
        && e.data["configurationId"] == "fan"
        && e.device().is_empty()));
    // a device moving into the target moves every count
    tag(hub, "s1", json!({"site": "north"})).await;
    sse.until(|s| {
        s.last()
            .is_some_and(|e| counts(e) == (Some(3), Some(3), Some(3)))
    })
    .await;
    env.server.shutdown().await.unwrap();
}
