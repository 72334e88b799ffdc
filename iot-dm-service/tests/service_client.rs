//! `ServiceClient` against a served hub: credentials and rights, trust, connection reuse, and
//! a hub that closes idle connections or goes away.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::time::Duration;

use iot_dm_service::api::prelude::*;
use iot_dm_service::client::ServiceClient;
use iot_dm_service::hub::DeviceSpec;
use iot_dm_service::rest::RestServer;
use iot_dm_service::tls::dev_certs::DevCerts;
use iot_dm_service::HubError;
use rest_support::{Served, HOST};

#[tokio::test]
async fn rights_and_credentials_map_to_errors() {
    let s = Served::start().await;
    // registryRead reads the registry but may not write it or touch twins' desired properties
    let reader = s.client("registryRead");
    assert_eq!(reader.policy(), "registryRead");
    assert_eq!(
        reader
            .registry_statistics()
            .await
            .unwrap()
            .total_device_count,
        0
    );
    let e = reader
        .create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(e.is_forbidden(), "{e:?}");
    assert!(e.to_string().contains("registryRead"), "{e}");
    // a key that is not the policy's
    let wrong = ServiceClient::builder(&format!(
        "HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=c29tZSBvdGhlciBrZXkgdGhhdCBpcyBub3QgdGhlIGh1YnM="
    ))
    .unwrap()
    .ca_pem(s.certs.ca_pem())
    .port(s.port())
    .build()
    .unwrap();
    let e = wrong.registry_statistics().await.unwrap_err();
    assert!(matches!(e, HubError::Unauthorized { .. }), "{e:?}");
    // a deleted policy's tokens stop working at once
    let owner = s.client("iothubowner");
    owner
        .create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    let service = s.client("service");
    service.get_twin("d1").await.unwrap();
    s.hub.delete_access_policy("service").await.unwrap();
    assert!(service.get_twin("d1").await.unwrap_err().is_unauthorized());
}

#[tokio::test]
async fn trust_is_checked() {
    let s = Served::start().await;
    let cs = s.hub.service_connection_string("iothubowner").unwrap();
    // another CA
    let other = DevCerts::generate().unwrap();
    let c = ServiceClient::builder(&cs)
        .unwrap()
        .ca_pem(other.ca_pem())
        .port(s.port())
        .build()
        .unwrap();
    let e = c.registry_statistics().await.unwrap_err();
    assert!(e.is_transport(), "{e:?}");
    assert!(e.to_string().contains("TLS"), "{e}");
    // the public roots do not include the development CA
    let c = ServiceClient::builder(&cs)
        .unwrap()
        .port(s.port())
        .build()
        .unwrap();
    assert!(c.registry_statistics().await.unwrap_err().is_transport());
    // garbage CA PEM is a typed error at build time
    let e = ServiceClient::builder(&cs)
        .unwrap()
        .ca_pem("not pem")
        .build()
        .unwrap_err();
    assert!(e.is_invalid_input(), "{e:?}");
}

#[tokio::test]
async fn connections_are_reused_and_replaced_when_the_hub_closes_them() {
    let s = Served::start().await;
    let client = s.client("iothubowner");
    let clone = client.clone();
    for i in 0..20 {
        client
            .create_device(DeviceSpec::new(format!("d{i}").parse().unwrap()))
            .await
            .unwrap();
    }
    // sequential requests share one connection; clones share the pool
    assert_eq!(client.idle_connections(), 1);
    assert_eq!(
        clone
            .registry_statistics()
            .await
            .unwrap()
            .total_device_count,
        20
    );
    assert_eq!(client.idle_connections(), 1);
    // concurrent requests open more, up to the idle limit kept afterwards
    let calls = (0..8).map(|i| {
        let c = client.clone();
        async move { c.get_device(&format!("d{i}")).await }
    });
    for r in futures_join_all(calls).await {
        r.unwrap();
    }
    assert!((1..=4).contains(&client.idle_connections()));

    // the hub restarts on the same port: pooled connections are dead, requests still succeed
    let port = s.port();
    let mut s = s;
    s.server.take().unwrap().shutdown().await;
    let server = RestServer::builder(s.hub.clone())
        .listen(format!("127.0.0.1:{port}").parse().unwrap())
        .tls_pem(s.certs.server_cert_pem(), s.certs.server_key_pem())
        .start()
        .await
        .unwrap();
    assert_eq!(
        client.get_device("d3").await.unwrap().device_id.as_str(),
        "d3"
    );
    server.shutdown().await;
    // and with no hub at all, a transport error
    let e = client.get_device("d3").await.unwrap_err();
    assert!(e.is_transport(), "{e:?}");
}

#[tokio::test]
async fn unreachable_hub_fails_fast() {
    let hub = iot_dm_service::Hub::builder()
        .host_name(HOST)
        .open()
        .await
        .unwrap();
    // a port nothing listens on
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = ServiceClient::builder(&hub.service_connection_string("iothubowner").unwrap())
        .unwrap()
        .base_url(&format!("https://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let e = client.get_device("d").await.unwrap_err();
    assert!(e.is_transport(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_owner_manages_access_policies_remotely() {
    use iot_dm_service::access::{AccessPolicy, RateLimit, Rights};
    use iot_dm_service::hub::KeyKind;

    let s = Served::start().await;
    let owner = s.client("iothubowner");
    let names: Vec<String> = owner
        .access_policies()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key_name)
        .collect();
    assert!(names.contains(&"registryRead".to_string()), "{names:?}");

    // a new policy: keys generated by the hub, the rate limit kept, usable at once
    let mut dashboards = AccessPolicy::new("dashboards", Rights::REGISTRY_READ);
    dashboards.rate_limit = Some(RateLimit {
        per_second: 50,
        burst: 100,
    });
    let stored = owner.put_access_policy(dashboards.clone()).await.unwrap();
    assert!(!stored.primary_key.is_empty() && stored.primary_key != stored.secondary_key);
    assert_eq!(stored.rate_limit, dashboards.rate_limit);
    assert_eq!(s.hub.access_policy("dashboards").unwrap(), stored);
    assert_eq!(owner.access_policy("dashboards").await.unwrap(), stored);
    assert_eq!(
        owner.service_connection_string("dashboards").await.unwrap(),
        s.hub.service_connection_string("dashboards").unwrap()
    );
    assert!(owner
        .access_policy("nope")
        .await
        .unwrap_err()
        .is_invalid_input());
    let reader = s.client("dashboards");
    reader.registry_statistics().await.unwrap();

    // a regenerated key invalidates the old one's tokens
    let fresh = owner
        .regenerate_policy_key("dashboards", KeyKind::Primary)
        .await
        .unwrap();
    assert_ne!(fresh.primary_key, stored.primary_key);
    assert_eq!(fresh.secondary_key, stored.secondary_key);
    assert!(reader
        .registry_statistics()
        .await
        .unwrap_err()
        .is_unauthorized());

    // only the owner manages policies
    let e = s
        .client("registryReadWrite")
        .access_policies()
        .await
        .unwrap_err();
    assert!(e.is_forbidden(), "{e:?}");

    owner.delete_access_policy("dashboards").await.unwrap();
    assert!(s.hub.access_policy("dashboards").is_err());
    // the last policy with every right stays
    let e = owner.delete_access_policy("iothubowner").await.unwrap_err();
    assert!(e.is_invalid_input(), "{e:?}");
}
