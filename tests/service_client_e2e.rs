//! One back-end scenario, run through `&dyn ServiceApi` against the embedded `Hub` and against
//! a `ServiceClient` talking HTTPS to a served hub: both runs must observe the same things
//! (statuses, versions, ETags, query rows, error codes), which is what makes the two
//! implementations interchangeable. A real device client (in-memory transport) answers the
//! direct methods. Every area trait is exercised: registry, twins, queries, direct methods,
//! cloud-to-device messages, shared access policies and CA certificates.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use iot_dm::core::method::{MethodRequest, MethodResponse};
use iot_dm::core::query::PageRequest;
use iot_dm::core::twin::TwinPatch;
use iot_dm::device::{DeviceClient, DeviceCredentials, InMemoryTransport};
use iot_dm::service::access::{AccessPolicy, Rights};
use iot_dm::service::api::ServiceApi;
use iot_dm::service::client::ServiceClient;
use iot_dm::service::hub::{
    Authentication, CloudMessage, DeviceSpec, Hub, ImportDevice, ImportMode, KeyKind,
};
use iot_dm::service::tls::dev_certs::DevCerts;
use iot_dm::service::{HubError, HubServer};

const HOST: &str = "localhost";

fn spec(id: &str) -> DeviceSpec {
    DeviceSpec::new(id.parse().unwrap())
}

fn patch(v: Value) -> TwinPatch {
    serde_json::from_value(v).unwrap()
}

/// What an error is, the same way for both implementations: IoT Hub's code and name (the
/// client maps codes back to variants; the hub's lifecycle, twin and query errors arrive as
/// `InvalidInput` with the same code).
fn err(e: HubError) -> String {
    format!("{} {}", e.code(), e.code_name())
}

/// The field an `InvalidInput` names.
fn field(e: HubError) -> String {
    match e {
        HubError::InvalidInput { field, .. } => field,
        other => panic!("not an InvalidInput: {other:?}"),
    }
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["deviceId"].as_str().unwrap().to_string())
        .collect()
}

async fn device_client(hub: &Hub, id: &str, key: &str) -> DeviceClient {
    let creds = DeviceCredentials::symmetric_key(HOST, id.parse().unwrap(), key).unwrap();
    DeviceClient::builder(creds, InMemoryTransport::new(Arc::new(hub.clone())))
        .connect()
        .await
        .unwrap()
}

/// The scenario. `devices_hub` is the hub the API manages (devices connect to it directly);
/// `ca_pem` is a CA certificate to register.
async fn scenario(api: &dyn ServiceApi, devices_hub: &Hub, ca_pem: &str) -> Vec<String> {
    let mut log = Vec::new();
    macro_rules! note {
        ($($t:tt)*) => { log.push(format!($($t)*)) };
    }

    // identity registry
    let d1 = api
        .create_device(
            spec("d1")
                .tags(json!({"region": "eu"}))
                .desired(json!({"fw": 1})),
        )
        .await
        .unwrap();
    note!(
        "create d1: {:?} {} etag={}",
        d1.identity.status,
        d1.state().as_str(),
        d1.etag()
    );
    let twin = api.get_twin("d1").await.unwrap();
    note!(
        "twin d1: v{} tags={}",
        twin.version(),
        serde_json::to_value(&twin).unwrap()["tags"]
    );
    note!(
        "create d1 again: {}",
        err(api.create_device(spec("d1")).await.unwrap_err())
    );
    note!(
        "get ghost: {}",
        err(api.get_device("ghost").await.unwrap_err())
    );
    note!(
        "bad id: {}",
        err(api
            .create_device(spec("x").authentication(Authentication::sas("short", "key")))
            .await
            .unwrap_err())
    );
    for id in ["d2", "d3"] {
        api.create_device(spec(id).tags(json!({"region": "eu"})))
            .await
            .unwrap();
    }
    let d2 = api
        .create_device(spec("d2b").disabled("not installed"))
        .await
        .unwrap();
    note!(
        "d2b: {:?} {:?}",
        d2.identity.status,
        d2.identity.status_reason
    );

    // update with ETags
    let mut update = api.get_device("d1").await.unwrap();
    update.identity_mut().status = iot_dm::core::twin::DeviceStatus::Disabled;
    update.identity_mut().status_reason = Some("maintenance".into());
    note!(
        "update stale: {}",
        err(api
            .update_device(update.clone(), Some("\"bogus\""))
            .await
            .unwrap_err())
    );
    let etag = update.etag().to_string();
    let updated = api.update_device(update, Some(&etag)).await.unwrap();
    note!(
        "update: {:?} {:?} etag={}",
        updated.identity.status,
        updated.identity.status_reason,
        updated.etag()
    );
    let enabled = api.enable_device("d1").await.unwrap();
    note!("enable d1: {:?}", enabled.identity.status);

    // keys
    let before = api.get_device("d1").await.unwrap().symmetric_key;
    let swapped = api.regenerate_key("d1", KeyKind::Swap).await.unwrap();
    note!(
        "swap: {}",
        swapped.symmetric_key.primary_key == before.secondary_key
            && swapped.symmetric_key.secondary_key == before.primary_key
    );
    let fresh = api.regenerate_key("d1", KeyKind::Primary).await.unwrap();
    note!(
        "regenerate primary: changed={}",
        fresh.symmetric_key.primary_key != swapped.symmetric_key.primary_key
    );

    // listing in pages
    let mut pages = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let page = api.list_devices(cont.as_deref(), 2).await.unwrap();
        pages.push(
            page.items
                .iter()
                .map(|d| d.device_id.to_string())
                .collect::<Vec<_>>(),
        );
        cont = page.continuation;
        if cont.is_none() {
            break;
        }
    }
    note!("list pages: {pages:?}");
    note!(
        "list top 0: {}",
        field(api.list_devices(None, 0).await.unwrap_err())
    );

    // bulk: two creates and a duplicate
    let mut dup = ImportDevice::new("d1".parse().unwrap());
    dup.import_mode = ImportMode::Create;
    let mut b4 = ImportDevice::new("b4".parse().unwrap());
    b4.import_mode = ImportMode::Create;
    let b5 = ImportDevice::new("b5".parse().unwrap());
    let result = api.bulk(vec![b4, b5, dup]).await.unwrap();
    note!(
        "bulk: ok={} errors={:?}",
        result.is_successful,
        result
            .errors
            .iter()
            .map(|e| (e.device_id.clone(), e.error_code.clone()))
            .collect::<Vec<_>>()
    );
    note!(
        "bulk too many: {}",
        err(api
            .bulk(
                (0..101)
                    .map(|i| ImportDevice::new(format!("x{i}").parse().unwrap()))
                    .collect()
            )
            .await
            .unwrap_err())
    );

    // lifecycle
    let planned = api
        .plan_device(spec("p1").tags(json!({"site": "north"})))
        .await
        .unwrap();
    note!("plan p1: v{}", planned.version());
    note!(
        "planned state: {}",
        api.get_device("p1").await.unwrap().state().as_str()
    );
    let provisioned = api.provision_device("p1", None).await.unwrap();
    note!(
        "provision p1: {:?} {}",
        provisioned.identity.status,
        provisioned.state().as_str()
    );
    let disabled = api.disable_device("d2", "maintenance").await.unwrap();
    note!(
        "disable d2: {:?} {:?}",
        disabled.identity.status,
        disabled.identity.status_reason
    );
    note!(
        "enable d2: {:?}",
        api.enable_device("d2").await.unwrap().identity.status
    );
    let retired = api.retire_device("d3").await.unwrap();
    note!("retire d3: {}", retired.state().as_str());
    note!(
        "twin of retired: {}",
        err(api.get_twin("d3").await.unwrap_err())
    );
    let archived = api.get_archived_twin("d3").await.unwrap();
    note!(
        "archived d3: tags={}",
        serde_json::to_value(&archived).unwrap()["tags"]
    );
    let archive = api
        .query_archive_page("SELECT deviceId FROM devices", &PageRequest::new())
        .await
        .unwrap();
    note!("archive query: {:?}", ids(&archive.items));
    let successor = api.replace_device("d3", spec("r3")).await.unwrap();
    note!(
        "replace d3 -> {}: {}",
        successor.device_id,
        successor.state().as_str()
    );
    note!(
        "r3 tags: {}",
        serde_json::to_value(api.get_twin("r3").await.unwrap()).unwrap()["tags"]
    );
    note!(
        "retire twice: {}",
        err(api.retire_device("d3").await.unwrap_err())
    );

    // twins
    let t = api
        .update_twin(
            "d1",
            &patch(json!({"tags": {"rack": 7}, "properties": {"desired": {"fw": 2}}})),
            None,
        )
        .await
        .unwrap();
    note!(
        "update twin: v{} {}",
        t.version(),
        serde_json::to_value(&t).unwrap()["properties"]["desired"]["fw"]
    );
    note!(
        "stale twin: {}",
        err(api
            .update_twin(
                "d1",
                &patch(json!({"tags": {"a": 1}})),
                Some("\"AAAAAAAAAAE=\"")
            )
            .await
            .unwrap_err())
    );
    let etag = serde_json::to_value(&t).unwrap()["etag"]
        .as_str()
        .unwrap()
        .to_string();
    let t = api
        .replace_twin("d1", &patch(json!({"tags": {"only": true}})), Some(&etag))
        .await
        .unwrap();
    note!(
        "replace twin: v{} tags={}",
        t.version(),
        serde_json::to_value(&t).unwrap()["tags"]
    );
    note!(
        "bad patch: {}",
        err(api
            .update_twin("d1", &patch(json!({"tags": 5})), None)
            .await
            .unwrap_err())
    );

    // queries, in pages
    let mut rows = Vec::new();
    let mut request = PageRequest::new().size(1);
    let mut n = 0;
    loop {
        let page = api
            .query_page(
                "SELECT deviceId, tags.region AS region FROM devices WHERE tags.region = 'eu'",
                &request,
            )
            .await
            .unwrap();
        rows.extend(page.items);
        n += 1;
        match page.continuation {
            Some(c) => request = PageRequest::new().size(1).continuation(c),
            None => break,
        }
    }
    note!("query: {n} pages {rows:?}");
    note!(
        "bad query: {}",
        err(api
            .query_page("SELEC *", &PageRequest::new())
            .await
            .unwrap_err())
    );

    // direct methods on a connected device
    let key = api
        .get_device("d1")
        .await
        .unwrap()
        .symmetric_key
        .primary_key
        .unwrap();
    let device = device_client(devices_hub, "d1", &key).await;
    device.on_method("echo", |call| async move {
        MethodResponse::new(201, json!({"echo": call.payload})).unwrap()
    });
    let req = MethodRequest::builder("echo")
        .payload(json!({"n": 5}))
        .response_timeout_secs(5)
        .build()
        .unwrap();
    let mut answer = None;
    for _ in 0..100 {
        match api.invoke_method("d1", &req).await {
            Err(e) if e.is_not_online() => tokio::time::sleep(Duration::from_millis(20)).await,
            other => {
                answer = Some(other);
                break;
            }
        }
    }
    let answer = answer.expect("the device listens within 2 s").unwrap();
    note!("method: {} {}", answer.status, answer.payload);
    note!(
        "method offline: {}",
        err(api.invoke_method("d2", &req).await.unwrap_err())
    );
    note!(
        "method ghost: {}",
        err(api.invoke_method("ghost", &req).await.unwrap_err())
    );
    note!(
        "connected: {}",
        api.service_statistics()
            .await
            .unwrap()
            .connected_device_count
    );
    device.close().await;

    // cloud-to-device messages, to a device that is not connected
    let id = api
        .send_c2d(
            "d2",
            CloudMessage::new("reboot")
                .property("priority", "high")
                .message_id("m-1")
                .ttl(Duration::from_millis(1500)),
        )
        .await
        .unwrap();
    note!("c2d: {id}");
    let id = api
        .send_c2d("d2", CloudMessage::new(vec![0u8, 255]))
        .await
        .unwrap();
    note!("c2d generated id: {}", !id.is_empty());
    note!(
        "c2d pending: {}",
        api.get_device("d2")
            .await
            .unwrap()
            .identity
            .cloud_to_device_message_count
    );
    note!(
        "c2d ghost: {}",
        err(api
            .send_c2d("ghost", CloudMessage::new("x"))
            .await
            .unwrap_err())
    );
    note!(
        "c2d ttl 0: {}",
        field(
            api.send_c2d("d2", CloudMessage::new("x").ttl(Duration::ZERO))
                .await
                .unwrap_err()
        )
    );
    note!(
        "c2d too large: {}",
        field(
            api.send_c2d("d2", CloudMessage::new(vec![7u8; 64 * 1024 + 1]))
                .await
                .unwrap_err()
        )
    );
    note!("purge: {}", api.purge_c2d("d2").await.unwrap());
    note!("purge again: {}", api.purge_c2d("d2").await.unwrap());
    note!(
        "c2d pending after purge: {}",
        api.get_device("d2")
            .await
            .unwrap()
            .identity
            .cloud_to_device_message_count
    );
    note!(
        "purge ghost: {}",
        err(api.purge_c2d("ghost").await.unwrap_err())
    );

    // shared access policies
    let names = |ps: Vec<AccessPolicy>| ps.into_iter().map(|p| p.key_name).collect::<Vec<_>>();
    note!(
        "policies: {:?}",
        names(api.access_policies().await.unwrap())
    );
    let stored = api
        .put_access_policy(AccessPolicy::new("dash", Rights::REGISTRY_READ))
        .await
        .unwrap();
    note!(
        "put dash: {} keys generated={}",
        stored.rights,
        !stored.primary_key.is_empty() && !stored.secondary_key.is_empty()
    );
    note!(
        "get dash: same={}",
        api.access_policy("dash").await.unwrap() == stored
    );
    let cs = api.service_connection_string("dash").await.unwrap();
    note!(
        "connection string: {}",
        cs == format!(
            "HostName={HOST};SharedAccessKeyName=dash;SharedAccessKey={}",
            stored.primary_key
        )
    );
    let swapped = api
        .regenerate_policy_key("dash", KeyKind::Swap)
        .await
        .unwrap();
    note!(
        "swap policy keys: {}",
        swapped.primary_key == stored.secondary_key && swapped.secondary_key == stored.primary_key
    );
    note!(
        "no rights: {}",
        field(
            api.put_access_policy(AccessPolicy::new("none", Rights::NONE))
                .await
                .unwrap_err()
        )
    );
    api.delete_access_policy("dash").await.unwrap();
    note!(
        "get deleted policy: {}",
        field(api.access_policy("dash").await.unwrap_err())
    );
    note!(
        "delete last owner: {}",
        field(api.delete_access_policy("iothubowner").await.unwrap_err())
    );

    // CA certificates
    let ca = api.add_ca_certificate("fleet-ca", ca_pem).await.unwrap();
    note!(
        "add CA: {} thumbprint={} pem kept={}",
        ca.name,
        ca.sha256_thumbprint.len(),
        ca.pem == ca_pem
    );
    let listed = api.ca_certificates().await.unwrap();
    note!(
        "CAs: {:?} same={}",
        listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        listed == vec![ca.clone()]
    );
    note!(
        "bad CA: {}",
        field(
            api.add_ca_certificate("bad", "not a pem")
                .await
                .unwrap_err()
        )
    );
    note!(
        "bad CA name: {}",
        field(api.add_ca_certificate("a b", ca_pem).await.unwrap_err())
    );
    api.remove_ca_certificate("fleet-ca").await.unwrap();
    note!(
        "CAs after remove: {}",
        api.ca_certificates().await.unwrap().len()
    );
    note!(
        "remove again: {}",
        field(api.remove_ca_certificate("fleet-ca").await.unwrap_err())
    );

    // statistics and deletes
    let stats = api.registry_statistics().await.unwrap();
    note!("stats: {stats:?}");
    note!(
        "delete stale: {}",
        err(api
            .delete_device("d2", Some("\"bogus\""))
            .await
            .unwrap_err())
    );
    api.delete_device("d2", Some("*")).await.unwrap();
    api.delete_device("b5", None).await.unwrap();
    note!("deleted: {}", err(api.get_device("d2").await.unwrap_err()));
    note!(
        "stats after: {:?}",
        api.registry_statistics().await.unwrap()
    );
    log
}

#[tokio::test]
async fn hub_and_service_client_behave_alike() {
    // embedded
    let ca = DevCerts::generate().unwrap();
    let local = Hub::builder().host_name(HOST).open().await.unwrap();
    let embedded = scenario(&local, &local, ca.ca_pem()).await;

    // remote, over HTTPS
    let remote = Hub::builder().host_name(HOST).open().await.unwrap();
    let certs = DevCerts::generate().unwrap();
    let server = HubServer::builder(remote.clone())
        .rest_listen("127.0.0.1:0".parse().unwrap())
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
        .start()
        .await
        .unwrap();
    let client = ServiceClient::builder(&remote.service_connection_string("iothubowner").unwrap())
        .unwrap()
        .ca_pem(certs.ca_pem())
        .port(server.rest_addr().unwrap().port())
        .build()
        .unwrap();
    let over_https = scenario(&client, &remote, ca.ca_pem()).await;

    assert_eq!(embedded.len(), over_https.len());
    for (a, b) in embedded.iter().zip(&over_https) {
        assert_eq!(a, b);
    }
    // the client reused its connections
    assert!(client.idle_connections() >= 1);
    server.shutdown().await.unwrap();
}
