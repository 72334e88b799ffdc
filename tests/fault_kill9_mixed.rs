//! kill -9 of a real `iot-dm hub` process under mixed load, a few times on the same store.
//!
//! Devices connect over MQTT/TLS with the device client and patch their reported properties
//! (acknowledged by the twin response 204 to a QoS 1 PUBLISH); back ends write over REST with
//! `ServiceClient` (twin tags and desired properties, device creates), invoke direct methods
//! (each carries a unique id in its payload and each device counts how many times it ran each
//! id) and send cloud-to-device messages (each with a unique message id). A ledger keeps every
//! acknowledged write and every value someone was shown: desired versions and values a device
//! was told, twin versions and reported values a reader was served.
//!
//! Each trial kills the hub with SIGKILL after a random number of acknowledgements, restarts
//! it on the same data directory and ports (the devices reconnect by themselves), and checks
//! the whole ledger so far: no acknowledged write and no observed value is lost, every
//! acknowledged message reaches its device, and no method ran twice.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use iot_dm::core::method::{MethodRequest, MethodResponse};
use iot_dm::core::twin::TwinPatch;
use iot_dm::device::{DeviceClient, DeviceCredentials, LinkState, MqttTransport};
use iot_dm::service::api::prelude::*;
use iot_dm::service::client::ServiceClient;
use iot_dm::service::hub::{CloudMessage, DeviceSpec};

use hub_process::HubProcess;

const DEVICES: usize = 3;
const TRIALS: usize = 6;

/// What was acknowledged and what was shown, across every trial.
#[derive(Default, Clone)]
struct Ledger {
    /// Acknowledgements, in all.
    acks: usize,
    /// Acknowledgements by kind.
    kinds: HashMap<&'static str, usize>,
    /// Values shown to a device or a reader, in all.
    observed: usize,
    /// Per device: the greatest reported `r` acknowledged and its reported version.
    reported: HashMap<String, (u64, u64)>,
    /// Per device: the greatest `w` written to tags and desired properties and acknowledged.
    twin_writes: HashMap<String, u64>,
    /// Devices whose creation was acknowledged.
    created: Vec<String>,
    /// Method ids whose call was answered 200.
    methods_acked: Vec<String>,
    /// Method ids sent (answered or not).
    methods_sent: usize,
    /// Per device: message ids the hub accepted.
    c2d_acked: HashMap<String, Vec<String>>,
    /// Per device: the greatest desired version and `w` value the device was told.
    told: HashMap<String, (u64, u64)>,
    /// Per device: the greatest twin version and reported `r` a reader was served.
    seen: HashMap<String, (u64, u64)>,
}

/// What the devices did; kept by the test process, so it outlives every hub.
#[derive(Default)]
struct DeviceSide {
    /// How many times each method id ran.
    runs: HashMap<String, u32>,
    /// How many times each message id arrived.
    received: HashMap<String, u32>,
}

type Shared<T> = Arc<Mutex<T>>;

impl Ledger {
    fn ack(&mut self, kind: &'static str) {
        self.acks += 1;
        *self.kinds.entry(kind).or_default() += 1;
    }
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

fn patch(v: Value) -> TwinPatch {
    serde_json::from_value(v).unwrap()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Connects `id` over MQTT/TLS; it answers method `count` (counting each payload id) and
/// records every desired change and message it is given.
async fn connect_device(
    hub: &HubProcess,
    id: &str,
    key: &str,
    ledger: &Shared<Ledger>,
    side: &Shared<DeviceSide>,
) -> DeviceClient {
    let creds = DeviceCredentials::symmetric_key("localhost", id.parse().unwrap(), key).unwrap();
    let transport = MqttTransport::builder("localhost")
        .port(hub.mqtt_port)
        .ca_pem(std::fs::read(&hub.ca).unwrap())
        .build()
        .unwrap();
    let client = DeviceClient::builder(creds, transport)
        .connect_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(10))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let runs = side.clone();
    client.on_method("count", move |call| {
        let runs = runs.clone();
        async move {
            let rid = call.payload["id"].as_str().unwrap_or_default().to_string();
            *runs.lock().unwrap().runs.entry(rid.clone()).or_default() += 1;
            MethodResponse::new(200, json!({ "id": rid })).unwrap()
        }
    });
    let mut desired = client.desired_updates();
    let (l, dev) = (ledger.clone(), id.to_string());
    tokio::spawn(async move {
        while let Some(p) = desired.recv().await {
            let mut l = l.lock().unwrap();
            l.observed += 1;
            let w = num(&p.patch, "w");
            let told = l.told.entry(dev.clone()).or_default();
            *told = (told.0.max(p.version), told.1.max(w));
        }
    });
    let mut messages = client.cloud_messages();
    let s = side.clone();
    tokio::spawn(async move {
        while let Some(m) = messages.recv().await {
            let mid = m.properties.message_id().unwrap_or_default().to_string();
            *s.lock().unwrap().received.entry(mid).or_default() += 1;
        }
    });
    client
}

/// Starts the load of trial `trial`; every task writes until aborted.
fn start_load(
    trial: usize,
    api: &Arc<ServiceClient>,
    devices: &[(String, DeviceClient)],
    ledger: &Shared<Ledger>,
) -> tokio::task::JoinSet<()> {
    let mut load = tokio::task::JoinSet::new();
    for (d, (id, client)) in devices.iter().enumerate() {
        // reported patches over MQTT
        let (c, l, id2) = (client.clone(), ledger.clone(), id.clone());
        load.spawn(async move {
            let start = l.lock().unwrap().reported.get(&id2).map_or(0, |r| r.0);
            for r in start + 1.. {
                if let Ok(v) = c.update_reported(json!({ "r": r })).await {
                    let mut l = l.lock().unwrap();
                    l.ack("reported");
                    l.reported.insert(id2.clone(), (r, v));
                }
            }
        });
        // tags and desired properties over REST
        let (a, l, id2) = (api.clone(), ledger.clone(), id.clone());
        load.spawn(async move {
            let start = l
                .lock()
                .unwrap()
                .twin_writes
                .get(&id2)
                .copied()
                .unwrap_or(0);
            for w in start + 1.. {
                let p = patch(json!({"tags": {"w": w}, "properties": {"desired": {"w": w}}}));
                if a.update_twin(&id2, &p, None).await.is_ok() {
                    let mut l = l.lock().unwrap();
                    l.ack("twin");
                    l.twin_writes.insert(id2.clone(), w);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        // direct methods, each with an id of its own
        let (a, l, id2) = (api.clone(), ledger.clone(), id.clone());
        load.spawn(async move {
            for i in 0.. {
                let mid = format!("t{trial}-d{d}-m{i}");
                l.lock().unwrap().methods_sent += 1;
                let req = MethodRequest::builder("count")
                    .payload(json!({ "id": mid }))
                    .response_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                match a.invoke_method(&id2, &req).await {
                    Ok(resp) if resp.status == 200 && resp.payload["id"] == json!(mid) => {
                        let mut l = l.lock().unwrap();
                        l.ack("method");
                        l.methods_acked.push(mid);
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        // cloud-to-device messages, each with a message id of its own
        let (a, l, id2) = (api.clone(), ledger.clone(), id.clone());
        load.spawn(async move {
            for i in 0.. {
                let mid = format!("t{trial}-d{d}-c{i}");
                let msg = CloudMessage::new(format!("message {i}")).message_id(mid.clone());
                if a.send_c2d(&id2, msg).await.is_ok() {
                    let mut l = l.lock().unwrap();
                    l.ack("c2d");
                    l.c2d_acked.entry(id2.clone()).or_default().push(mid);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    // device creates over REST
    let (a, l) = (api.clone(), ledger.clone());
    load.spawn(async move {
        for i in 0.. {
            let id = format!("t{trial}-new-{i}");
            if a.create_device(DeviceSpec::new(id.parse().unwrap()))
                .await
                .is_ok()
            {
                let mut l = l.lock().unwrap();
                l.ack("create");
                l.created.push(id);
            }
        }
    });
    // a reader: what it is served is observed
    let (a, l) = (api.clone(), ledger.clone());
    let ids: Vec<String> = devices.iter().map(|(id, _)| id.clone()).collect();
    load.spawn(async move {
        loop {
            for id in &ids {
                if let Ok(twin) = a.get_twin(id).await {
                    let r = num(&twin.reported().doc().to_value(), "r");
                    let mut l = l.lock().unwrap();
                    l.observed += 1;
                    let seen = l.seen.entry(id.clone()).or_default();
                    *seen = (seen.0.max(twin.version()), seen.1.max(r));
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    });
    load
}

/// Waits until every device is connected again.
async fn until_connected(devices: &[(String, DeviceClient)]) {
    for (id, c) in devices {
        let mut state = c.link_state();
        tokio::time::timeout(Duration::from_secs(15), async {
            while !matches!(*state.borrow_and_update(), LinkState::Connected) {
                state.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id} did not reconnect to the restarted hub in 15 s"));
    }
}

/// Checks the whole ledger against the restarted hub; returns how many writes were lost
/// (always 0: it panics first, naming the write).
async fn check(api: &ServiceClient, ledger: &Ledger, side: &Shared<DeviceSide>) -> usize {
    for (id, &(r, v)) in &ledger.reported {
        let twin = api.get_twin(id).await.unwrap();
        let doc = twin.reported().doc().to_value();
        assert!(
            num(&doc, "r") >= r,
            "{id}: reported r={r} was acknowledged, the hub has {doc}"
        );
        assert!(
            twin.reported().version() >= v,
            "{id}: reported version {v} lost"
        );
    }
    for (id, &w) in &ledger.twin_writes {
        let twin = api.get_twin(id).await.unwrap();
        let (tags, desired) = (twin.tags().to_value(), twin.desired().doc().to_value());
        assert!(
            num(&tags, "w") >= w,
            "{id}: tag w={w} acknowledged, the hub has {tags}"
        );
        assert!(
            num(&desired, "w") >= w,
            "{id}: desired w={w} acknowledged, hub: {desired}"
        );
    }
    for (id, &(version, w)) in &ledger.told {
        let twin = api.get_twin(id).await.unwrap();
        assert!(
            twin.desired().version() >= version,
            "{id} was told desired version {version}, the hub serves {}",
            twin.desired().version()
        );
        assert!(
            num(&twin.desired().doc().to_value(), "w") >= w,
            "{id}: told w={w}, lost"
        );
    }
    for (id, &(version, r)) in &ledger.seen {
        let twin = api.get_twin(id).await.unwrap();
        assert!(
            twin.version() >= version,
            "{id}: a reader saw twin version {version}, lost"
        );
        let doc = twin.reported().doc().to_value();
        assert!(
            num(&doc, "r") >= r,
            "{id}: a reader saw reported r={r}, the hub has {doc}"
        );
    }
    for id in &ledger.created {
        api.get_device(id)
            .await
            .unwrap_or_else(|e| panic!("the creation of {id} was acknowledged: {e}"));
    }
    // every acknowledged message arrives (at least once), on the reconnected session
    let deadline = Instant::now() + Duration::from_secs(15);
    for mids in ledger.c2d_acked.values() {
        for mid in mids {
            while !side.lock().unwrap().received.contains_key(mid) {
                assert!(
                    Instant::now() < deadline,
                    "message {mid} was accepted, never arrived"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let side = side.lock().unwrap();
    for mid in &ledger.methods_acked {
        assert_eq!(side.runs.get(mid), Some(&1), "method {mid} answered 200");
    }
    if let Some((mid, n)) = side.runs.iter().find(|(_, &n)| n > 1) {
        panic!("method {mid} ran {n} times");
    }
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_mixed_load_loses_nothing_and_runs_no_method_twice() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut hub = tokio::task::block_in_place(|| HubProcess::start(dir.path()));
    let (mqtt, rest) = (hub.mqtt_port, hub.rest_port);
    let ledger: Shared<Ledger> = Shared::default();
    let side: Shared<DeviceSide> = Shared::default();

    let api = hub.service_client();
    let mut devices = Vec::new();
    for d in 0..DEVICES {
        let id = format!("dev-{d}");
        let device = api
            .create_device(DeviceSpec::new(id.parse().unwrap()))
            .await
            .unwrap();
        let key = device.symmetric_key.primary_key.unwrap();
        let client = connect_device(&hub, &id, &key, &ledger, &side).await;
        devices.push((id, client));
    }

    let mut lost = 0;
    for trial in 0..TRIALS {
        let api = Arc::new(hub.service_client());
        let before = ledger.lock().unwrap().acks;
        // kill after 100 to 599 more acknowledgements, at a moment no one chose
        let kill_after = 100 + (random_u64() % 500) as usize;
        let mut load = start_load(trial, &api, &devices, &ledger);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ledger.lock().unwrap().acks < before + kill_after {
            assert!(hub.is_running(), "the hub exited under load");
            assert!(
                Instant::now() < deadline,
                "trial {trial}: only {} acknowledgements in 10 s",
                ledger.lock().unwrap().acks - before
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        hub.kill9();
        load.abort_all();
        while load.join_next().await.is_some() {}
        let acks = ledger.lock().unwrap().acks - before;
        hub = tokio::task::block_in_place(|| HubProcess::start_on(dir.path(), mqtt, rest));
        until_connected(&devices).await;
        let api = hub.service_client();
        let snapshot = ledger.lock().unwrap().clone();
        lost += check(&api, &snapshot, &side).await;
        println!("trial {trial}: killed after {acks} acknowledgements (target {kill_after})");
    }

    // a method after the last restart runs once, and nothing older ran again meanwhile
    let api = hub.service_client();
    for (id, _) in &devices {
        let req = MethodRequest::builder("count")
            .payload(json!({"id": format!("final-{id}")}))
            .response_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        assert_eq!(api.invoke_method(id, &req).await.unwrap().status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, c) in &devices {
        c.close().await;
    }
    let l = ledger.lock().unwrap();
    let side = side.lock().unwrap();
    let twice = side.runs.values().filter(|&&n| n > 1).count();
    assert_eq!(twice, 0, "methods ran twice");
    let kind = |k: &str| l.kinds.get(k).copied().unwrap_or(0);
    let duplicates: u32 = side.received.values().map(|n| n - 1).sum();
    println!(
        "{TRIALS} trials in {:.1} s: {} acknowledged writes ({} reported patches, {} twin \
         updates, {} creates, {} methods of {} sent, {} messages, {duplicates} delivered \
         again), {} observed values, lost {lost}, methods run twice {twice}",
        started.elapsed().as_secs_f64(),
        l.acks,
        kind("reported"),
        kind("twin"),
        kind("create"),
        kind("method"),
        l.methods_sent,
        kind("c2d"),
        l.observed,
    );
}
