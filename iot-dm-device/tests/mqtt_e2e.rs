//! The device client over [`MqttTransport`] against the hub's own MQTT endpoint, over real
//! TLS sockets on 127.0.0.1 with a development CA. Every wait is bounded.

#![cfg(feature = "mqtt")]
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions, unwrap

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::{ConnectRequest, Credentials, DeviceFrame};
use iot_dm_core::method::{MethodRequest, MethodResponse};
use iot_dm_core::twin::TwinPatch;
use iot_dm_core::wire::{SasToken, SymmetricKey};
use iot_dm_device::mqtt::MqttTransport;
use iot_dm_device::{
    DeviceClient, DeviceCredentials, LinkState, PropertyBag, Transport, TwinState,
};
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{Authentication, CloudMessage, DeviceSpec};
use iot_dm_service::mqtt::Listener;
use iot_dm_service::tls::dev_certs::{DevCerts, DeviceCertificate};
use iot_dm_service::Hub;
use iot_dm_service::HubServer;

const HOST: &str = "localhost";
const KEY: &str = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
const OTHER_KEY: &str = "b3RoZXIga2V5IGZvciB0aGUgc2Vjb25kIGRldmljZSE=";
const WAIT: Duration = Duration::from_secs(20);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `f` every 20 ms until it holds, for at most [`WAIT`].
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

/// A hub behind its MQTT endpoint (TLS and WebSocket over TLS).
struct Running {
    hub: Hub,
    server: HubServer,
}

impl Running {
    async fn start(store: Option<&Path>, certs: &DevCerts, tls_port: u16) -> Running {
        let hub = open_hub(store).await;
        let server = serve(&hub, certs, tls_port).await;
        Running { hub, server }
    }

    fn port(&self, kind: Listener) -> u16 {
        self.server.mqtt_addr(kind).unwrap().port()
    }

    /// Stops the endpoint, then the hub (which releases its store).
    async fn stop(self) {
        within("the endpoint and the hub to stop", self.server.shutdown())
            .await
            .unwrap();
    }
}

async fn open_hub(store: Option<&Path>) -> Hub {
    let b = Hub::builder().host_name(HOST);
    let b = match store {
        Some(dir) => b.path(dir.join("hub.redb")),
        None => b.in_memory(),
    };
    within("the hub to open", b.open()).await.unwrap()
}

async fn serve(hub: &Hub, certs: &DevCerts, tls_port: u16) -> HubServer {
    let tls: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    HubServer::builder(hub.clone())
        .mqtt_listen(Listener::Tls, tls)
        .mqtt_listen(Listener::Wss, any)
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
        .start()
        .await
        .unwrap()
}

async fn sas_device(hub: &Hub, device: &str, key: &str) {
    hub.create_device(DeviceSpec::new(id(device)).authentication(Authentication::sas(key, key)))
        .await
        .unwrap();
}

fn transport(certs: &DevCerts, port: u16) -> MqttTransport {
    MqttTransport::builder(HOST)
        .port(port)
        .ca_pem(certs.ca_pem())
        .keep_alive(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(10))
        .network_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn client_builder(
    device: &str,
    key: &str,
    transport: MqttTransport,
) -> iot_dm_device::DeviceClientBuilder {
    let creds = DeviceCredentials::symmetric_key(HOST, id(device), key).unwrap();
    DeviceClient::builder(creds, transport)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
}

fn reported(hub: &Hub, device: &str) -> Value {
    hub.get_twin(device).unwrap().to_json()["properties"]["reported"].clone()
}

fn desired_patch(desired: Value) -> TwinPatch {
    TwinPatch {
        tags: None,
        desired: Some(desired),
    }
}

async fn wait_connected(client: &DeviceClient) {
    let mut state = client.link_state();
    within(
        "the client to connect",
        state.wait_for(LinkState::is_connected),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_methods_telemetry_and_cloud_messages_over_tls() {
    let certs = DevCerts::generate().unwrap();
    let hub = Running::start(None, &certs, 0).await;
    sas_device(&hub.hub, "thermo-1", KEY).await;
    hub.hub
        .update_twin("thermo-1", &desired_patch(json!({"mode": "eco"})), None)
        .await
        .unwrap();

    let t = transport(&certs, hub.port(Listener::Tls));
    let client = within("connect", client_builder("thermo-1", KEY, t).connect())
        .await
        .unwrap();
    let mut desired = client.desired_updates();
    let mut c2d = client.cloud_messages();
    client.on_method("reboot", |call| async move {
        MethodResponse {
            status: 200,
            payload: json!({"rebooting_in": call.payload["delay"]}),
        }
    });

    // twin GET
    let twin: TwinState = within("twin get", client.get_twin()).await.unwrap();
    assert_eq!(twin.desired, json!({"mode": "eco"}));
    let first = within("first desired", desired.recv()).await.unwrap();
    assert!(first.full);
    assert_eq!(first.patch, json!({"mode": "eco"}));

    // reported patch, seen by the hub
    let version = within(
        "reported update",
        client.update_reported(json!({"firmware": "1.2.3"})),
    )
    .await
    .unwrap();
    assert_eq!(version, twin.reported_version + 1);
    assert_eq!(reported(&hub.hub, "thermo-1")["firmware"], "1.2.3");

    // desired patch from the back end, delivered live
    hub.hub
        .update_twin("thermo-1", &desired_patch(json!({"target": 21})), None)
        .await
        .unwrap();
    let patch = within("desired patch", desired.recv()).await.unwrap();
    assert!(!patch.full);
    assert_eq!(patch.patch, json!({"target": 21}));
    assert_eq!(patch.version, first.version + 1);

    // direct method
    let request = MethodRequest::builder("reboot")
        .payload(json!({"delay": 5}))
        .response_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answer = within("method", hub.hub.invoke_method("thermo-1", &request))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.payload, json!({"rebooting_in": 5}));

    // telemetry
    let mut telemetry = hub.hub.telemetry();
    let mut props = PropertyBag::new();
    props.set("$.ct", Some("application/json")).unwrap();
    props.set("alert", Some("high temp")).unwrap();
    within("telemetry", client.send_telemetry(r#"{"t":22.5}"#, &props))
        .await
        .unwrap();
    let got = within("telemetry at the hub", telemetry.recv())
        .await
        .unwrap();
    assert_eq!(got.device_id.as_str(), "thermo-1");
    assert_eq!(got.body, Bytes::from_static(br#"{"t":22.5}"#));
    assert_eq!(got.properties.get("alert"), Some(Some("high temp")));
    assert_eq!(got.properties.content_type(), Some("application/json"));

    // cloud-to-device: received, then acknowledged (it leaves the hub's queue)
    hub.hub
        .send_c2d(
            "thermo-1",
            CloudMessage::new("open the valve").property("valve", "2"),
        )
        .await
        .unwrap();
    let m = within("c2d", c2d.recv()).await.unwrap();
    assert_eq!(m.payload, Bytes::from_static(b"open the valve"));
    assert_eq!(m.properties.get("valve"), Some(Some("2")));
    eventually("the c2d message to be acknowledged", || {
        hub.hub
            .get_device("thermo-1")
            .unwrap()
            .identity
            .cloud_to_device_message_count
            == 0
    })
    .await;

    within("close", client.close()).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_restart_mid_session_reconnects_resyncs_and_keeps_order() {
    let certs = DevCerts::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hub = Running::start(Some(dir.path()), &certs, 0).await;
    let port = hub.port(Listener::Tls);
    sas_device(&hub.hub, "pump-1", KEY).await;
    let client = within(
        "connect",
        client_builder("pump-1", KEY, transport(&certs, port)).connect(),
    )
    .await
    .unwrap();
    let mut desired = client.desired_updates();
    let first = within("first desired", desired.recv()).await.unwrap();
    within("reported", client.update_reported(json!({"seq": 0})))
        .await
        .unwrap();

    // kill the hub: stop the endpoint and drop the hub (the store closes)
    hub.stop().await;
    let mut state = client.link_state();
    within(
        "the client to notice",
        state.wait_for(|s| !s.is_connected()),
    )
    .await
    .unwrap();

    // reported patches issued while offline wait in the queue
    let mut pending = Vec::new();
    for seq in 1..=3 {
        let c = client.clone();
        pending.push(tokio::spawn(async move {
            c.update_reported(json!({"seq": seq, (format!("k{seq}")): true}))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // the hub comes back on the same store; the back end changes desired properties before
    // the device can reconnect, then the endpoint opens on the same port
    let reopened = open_hub(Some(dir.path())).await;
    reopened
        .update_twin("pump-1", &desired_patch(json!({"speed": 3})), None)
        .await
        .unwrap();
    let server = serve(&reopened, &certs, port).await;
    wait_connected(&client).await;

    // the change made while offline arrives as a full document after the reconnect
    let resync = within("resync", desired.recv()).await.unwrap();
    assert!(resync.full);
    assert_eq!(resync.version, first.version + 1);
    assert_eq!(resync.patch, json!({"speed": 3}));

    // the offline patches were applied in issue order
    let mut versions = Vec::new();
    for p in pending {
        versions.push(within("offline patch", p).await.unwrap().unwrap());
    }
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "in order: {versions:?}"
    );
    let r = reported(&reopened, "pump-1");
    assert_eq!(r["seq"], 3, "{r}");
    assert_eq!(
        (r["k1"].clone(), r["k2"].clone(), r["k3"].clone()),
        (json!(true), json!(true), json!(true))
    );

    // live notifications flow on the new session
    reopened
        .update_twin("pump-1", &desired_patch(json!({"speed": 4})), None)
        .await
        .unwrap();
    let live = within("live patch", desired.recv()).await.unwrap();
    assert_eq!(
        (live.full, live.patch.clone()),
        (false, json!({"speed": 4}))
    );

    within("close", client.close()).await;
    server.shutdown().await.unwrap();
}

fn sas_request(device: &str, key: &str) -> ConnectRequest {
    let token = SasToken::generate(
        &format!("{HOST}/devices/{device}"),
        &SymmetricKey::new(key).unwrap(),
        iot_dm_core::clock::Timestamp::from_unix_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                + 3600,
        ),
        None,
    );
    ConnectRequest {
        device_id: id(device),
        module_id: None,
        credentials: Credentials::Sas(token.as_str().to_string()),
        clean_session: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_isolated_and_bad_credentials_refused() {
    let certs = DevCerts::generate().unwrap();
    let hub = Running::start(None, &certs, 0).await;
    sas_device(&hub.hub, "dev-a", KEY).await;
    sas_device(&hub.hub, "dev-b", OTHER_KEY).await;
    hub.hub
        .update_twin("dev-b", &desired_patch(json!({"secret": "b only"})), None)
        .await
        .unwrap();
    let t = transport(&certs, hub.port(Listener::Tls));

    // a wrong key is refused, and the client does not retry it
    let err = within(
        "refusal",
        client_builder("dev-a", OTHER_KEY, t.clone()).connect(),
    )
    .await
    .unwrap_err();
    assert!(err.is_refused() && !err.is_retryable(), "{err}");

    // dev-a's credentials do not open dev-b's session
    let mut as_b = sas_request("dev-a", KEY);
    as_b.device_id = id("dev-b");
    let err = within("refusal", t.connect(as_b)).await.unwrap_err();
    assert!(err.is_not_authorized(), "{err}");

    // dev-a's session serves dev-a's twin only, and cannot subscribe to dev-b's messages
    let client = within("connect", client_builder("dev-a", KEY, t.clone()).connect())
        .await
        .unwrap();
    let twin = within("twin get", client.get_twin()).await.unwrap();
    assert_eq!(twin.desired, json!({}), "dev-a sees its own twin");
    within("close", client.close()).await;

    let mut link = within("connect", t.connect(sas_request("dev-a", KEY)))
        .await
        .unwrap();
    let refused = link
        .tx
        .send(DeviceFrame::Subscribe(vec![
            "devices/dev-b/messages/devicebound/#".into(),
        ]))
        .await;
    assert!(refused.is_err(), "subscribing to dev-b's messages fails");
    assert!(within("link closed", link.rx.recv()).await.is_none());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_thumbprint_authentication() {
    let certs = DevCerts::generate().unwrap();
    let hub = Running::start(None, &certs, 0).await;
    let cert = DeviceCertificate::self_signed("cam-1").unwrap();
    hub.hub
        .create_device(
            DeviceSpec::new(id("cam-1"))
                .authentication(Authentication::self_signed(cert.sha256_thumbprint(), None)),
        )
        .await
        .unwrap();
    let port = hub.port(Listener::Tls);
    let with_cert = |c: &DeviceCertificate| {
        MqttTransport::builder(HOST)
            .port(port)
            .ca_pem(certs.ca_pem())
            .client_certificate_pem(c.cert_pem(), c.key_pem())
            .build()
            .unwrap()
    };
    let creds = |c: &DeviceCertificate| {
        DeviceCredentials::x509(id("cam-1"), c.sha1_thumbprint(), c.sha256_thumbprint())
    };

    let client = within(
        "connect",
        DeviceClient::builder(creds(&cert), with_cert(&cert)).connect(),
    )
    .await
    .unwrap();
    within("twin get", client.get_twin()).await.unwrap();
    within("reported", client.update_reported(json!({"lens": "wide"})))
        .await
        .unwrap();
    assert_eq!(reported(&hub.hub, "cam-1")["lens"], "wide");
    within("close", client.close()).await;

    // another certificate is refused
    let stranger = DeviceCertificate::self_signed("cam-1").unwrap();
    let err = within(
        "refusal",
        DeviceClient::builder(creds(&stranger), with_cert(&stranger)).connect(),
    )
    .await
    .unwrap_err();
    assert!(err.is_refused(), "{err}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls() {
    let certs = DevCerts::generate().unwrap();
    let hub = Running::start(None, &certs, 0).await;
    sas_device(&hub.hub, "ws-1", KEY).await;
    let t = MqttTransport::builder(HOST)
        .port(hub.port(Listener::Wss))
        .websocket(true)
        .ca_pem(certs.ca_pem())
        .build()
        .unwrap();
    assert!(t.endpoint().starts_with("wss://localhost:"));
    let client = within("connect", client_builder("ws-1", KEY, t).connect())
        .await
        .unwrap();
    within(
        "reported",
        client.update_reported(json!({"via": "websocket"})),
    )
    .await
    .unwrap();
    assert_eq!(reported(&hub.hub, "ws-1")["via"], "websocket");
    let mut telemetry = hub.hub.telemetry();
    within(
        "telemetry",
        client.send_telemetry("over ws", &PropertyBag::new()),
    )
    .await
    .unwrap();
    assert_eq!(
        within("telemetry at the hub", telemetry.recv())
            .await
            .unwrap()
            .body,
        Bytes::from_static(b"over ws")
    );
    within("close", client.close()).await;
    hub.stop().await;
}
