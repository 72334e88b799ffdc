//! The REST endpoint over real HTTPS on 127.0.0.1: the authorization matrix, every built-in
//! policy against every route (with a bad signature and no token too).

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::collections::HashSet;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::JobRequest;
use iot_dm_core::wire::ServiceConnectionString;
use iot_dm_service::access::{AccessPolicy, Rights};
use iot_dm_service::api::prelude::*;
use iot_dm_service::api::ArtifactUpload;
use iot_dm_service::artifacts::Sha256Digest;
use iot_dm_service::hub::DeviceSpec;
use iot_dm_service::rest;
use iot_dm_service::tls::dev_certs::DevCerts;
use rest_support::{create_device as create, Served, API, HOST};

const POLICIES: [&str; 5] = [
    "iothubowner",
    "service",
    "registryRead",
    "registryReadWrite",
    "device",
];

/// What to send to a route so that it succeeds when authorized, and the statuses that count
/// as success.
struct Case {
    path: String,
    body: Option<Value>,
    ok: &'static [u16],
}

async fn prepare(s: &Served, method: &Method, pattern: &str, n: usize) -> Case {
    let id = format!("m{n}");
    let at = |p: &str| {
        p.replace("{id}", &id)
            .replace("{name}", &format!("p{n}"))
            .replace("{jobId}", &format!("j{n}"))
    };
    let case = |body: Option<Value>, ok: &'static [u16]| Case {
        path: at(pattern),
        body,
        ok,
    };
    match (method.as_str(), pattern) {
        ("PUT", "/devices/{id}") => case(Some(json!({ "deviceId": id })), &[200]),
        ("GET", "/devices/{id}") | ("GET", "/twins/{id}") => {
            create(s, &id).await;
            case(None, &[200])
        }
        ("DELETE", "/devices/{id}") => {
            create(s, &id).await;
            case(None, &[204])
        }
        ("GET", "/devices")
        | ("GET", "/statistics/devices")
        | ("GET", "/statistics/service")
        | ("GET", "/policies")
        | ("GET", "/certificates") => case(None, &[200]),
        ("POST", "/devices") => case(Some(json!([{ "id": id, "importMode": "create" }])), &[200]),
        ("POST", "/devices/{id}/plan") => case(Some(json!({ "tags": { "a": 1 } })), &[200]),
        ("POST", "/devices/{id}/provision") => {
            s.hub
                .plan_device(DeviceSpec::new(id.parse().unwrap()))
                .await
                .unwrap();
            case(None, &[200])
        }
        ("POST", "/devices/{id}/enable") => {
            s.hub
                .create_device(DeviceSpec::new(id.parse().unwrap()).disabled("test"))
                .await
                .unwrap();
            case(None, &[200])
        }
        ("POST", "/devices/{id}/disable") => {
            create(s, &id).await;
            case(Some(json!({ "reason": "maintenance" })), &[200])
        }
        ("POST", "/devices/{id}/retire") => {
            create(s, &id).await;
            case(None, &[200])
        }
        ("POST", "/devices/{id}/replace") => {
            create(s, &id).await;
            s.hub.retire_device(&id).await.unwrap();
            case(Some(json!({ "deviceId": format!("{id}-next") })), &[200])
        }
        ("POST", "/devices/{id}/keys/regenerate") => {
            create(s, &id).await;
            case(Some(json!({ "key": "swap" })), &[200])
        }
        ("PATCH", "/twins/{id}") | ("PUT", "/twins/{id}") => {
            create(s, &id).await;
            case(Some(json!({ "tags": { "a": 1 } })), &[200])
        }
        // a connected device that echoes
        ("POST", "/twins/{id}/methods") => {
            rest_support::echo_device(&s.hub, &id).await;
            case(
                Some(json!({ "methodName": "reboot", "payload": { "n": n } })),
                &[200],
            )
        }
        ("POST", "/devices/query") | ("POST", "/archive/query") => {
            case(Some(json!({ "query": "SELECT * FROM devices" })), &[200])
        }
        ("GET", "/archive/twins/{id}") => {
            create(s, &id).await;
            s.hub.retire_device(&id).await.unwrap();
            case(None, &[200])
        }
        ("PUT", "/policies/{name}") => case(Some(json!({ "rights": "RegistryRead" })), &[200]),
        ("DELETE", "/policies/{name}") | ("POST", "/policies/{name}/keys/regenerate") => {
            s.hub
                .put_access_policy(AccessPolicy::new(format!("p{n}"), Rights::REGISTRY_READ))
                .await
                .unwrap();
            let body = (method == Method::POST).then(|| json!({ "key": "primary" }));
            case(
                body,
                if method == Method::POST {
                    &[200]
                } else {
                    &[204]
                },
            )
        }
        ("GET", "/policies/{name}") => {
            s.hub
                .put_access_policy(AccessPolicy::new(format!("p{n}"), Rights::REGISTRY_READ))
                .await
                .unwrap();
            case(None, &[200])
        }
        ("POST", "/devices/{id}/commands") => {
            create(s, &id).await;
            case(Some(json!({ "body": "aGk=" })), &[200])
        }
        ("DELETE", "/devices/{id}/commands") => {
            create(s, &id).await;
            case(None, &[200])
        }
        ("PUT", "/certificates/{name}") => {
            let certs = DevCerts::generate().unwrap();
            case(Some(json!({ "certificate": certs.ca_pem() })), &[200])
        }
        ("DELETE", "/certificates/{name}") => {
            let certs = DevCerts::generate().unwrap();
            s.hub
                .add_ca_certificate(&format!("p{n}"), certs.ca_pem())
                .await
                .unwrap();
            case(None, &[204])
        }
        // a stream: bounded, so that the answer ends (an idle second)
        ("GET", "/events") => Case {
            path: "/events?timeout=1".into(),
            body: None,
            ok: &[200],
        },
        ("PUT", "/jobs/v2/{jobId}") => case(Some(nobody_job(n)), &[200]),
        ("GET", "/jobs/v2/query") => case(None, &[200]),
        ("GET", "/jobs/v2/{jobId}")
        | ("POST", "/jobs/v2/{jobId}/cancel")
        | ("POST", "/jobs/v2/{jobId}/pause")
        | ("POST", "/jobs/v2/{jobId}/resume")
        | ("GET", "/jobs/v2/{jobId}/devices") => {
            let request = JobRequest::from_json(&nobody_job(n)).unwrap();
            s.hub.create_job(&request).await.unwrap();
            case(None, &[200])
        }
        ("GET", "/configurations") => case(None, &[200]),
        ("POST", "/configurations/testQueries") => {
            case(Some(json!({ "targetCondition": "*" })), &[200])
        }
        ("PUT", "/configurations/{id}") => case(Some(nobody_configuration()), &[201]),
        ("GET", "/configurations/{id}") | ("DELETE", "/configurations/{id}") => {
            let mut body = nobody_configuration();
            body["id"] = json!(id);
            let cfg = iot_dm_core::configuration::Configuration::from_json(&body).unwrap();
            s.hub.put_configuration(&cfg, None).await.unwrap();
            case(None, &[200, 204])
        }
        ("POST", "/configurations/{id}/pause") | ("POST", "/configurations/{id}/resume") => {
            let mut body = nobody_configuration();
            body["id"] = json!(id);
            body["rolloutPolicy"] = json!({"rate": {"maxPerMinute": 10}});
            let cfg = iot_dm_core::configuration::Configuration::from_json(&body).unwrap();
            s.hub.put_configuration(&cfg, None).await.unwrap();
            case(None, &[200])
        }
        ("GET", "/alerts") | ("GET", "/alerts/rules") => case(None, &[200]),
        ("PUT", "/alerts/rules/{id}") => case(Some(nobody_rule()), &[200]),
        ("GET", "/alerts/rules/{id}") | ("DELETE", "/alerts/rules/{id}") => {
            let mut body = nobody_rule();
            body["id"] = json!(id);
            let rule = iot_dm_core::alert::AlertRule::from_json(&body).unwrap();
            s.hub.put_alert_rule(&rule).await.unwrap();
            case(None, &[200, 204])
        }
        ("GET", "/alerts/{id}") | ("POST", "/alerts/{id}/acknowledge") => {
            let alert = raised_alert(s, &id).await;
            Case {
                path: pattern.replace("{id}", &alert),
                body: None,
                ok: &[200],
            }
        }
        ("GET", "/artifacts") => case(None, &[200]),
        ("POST", "/artifacts") => case(Some(json!({ "image": n })), &[201]),
        ("PUT", "/artifacts/{sha256}") => {
            let body = json!({ "image": n });
            let sha = Sha256Digest::of(body.to_string().as_bytes());
            Case {
                path: format!("/artifacts/{sha}"),
                body: Some(body),
                ok: &[201],
            }
        }
        ("GET", "/artifacts/{sha256}")
        | ("HEAD", "/artifacts/{sha256}")
        | ("DELETE", "/artifacts/{sha256}") => {
            let image = format!("image {n}");
            let info = s
                .hub
                .upload_artifact(&mut image.as_bytes(), ArtifactUpload::new())
                .await
                .unwrap();
            Case {
                path: format!("/artifacts/{}", info.sha256),
                body: None,
                ok: &[200, 204],
            }
        }
        (m, p) => panic!("route {m} {p} has no case in the authorization matrix: add one"),
    }
}

/// An alert rule no device matches.
fn nobody_rule() -> Value {
    json!({"condition": "tags.nobody = true", "threshold": {"count": 0}, "severity": "info"})
}

/// Creates device `id` and a rule that raises an alert on it alone; the alert's id (waits
/// at most 5 s).
async fn raised_alert(s: &Served, id: &str) -> String {
    let rule = iot_dm_core::alert::AlertRule::from_json(&json!({
        "id": format!("r-{id}"), "condition": format!("deviceId = '{id}'"),
        "threshold": {"count": 0}, "severity": "info",
    }))
    .unwrap();
    s.hub.put_alert_rule(&rule).await.unwrap();
    create(s, id).await;
    for _ in 0..500 {
        let found = s
            .hub
            .alerts(None)
            .into_iter()
            .find(|a| a.rule_id == rule.id);
        if let Some(a) = found {
            return a.id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("rule {} raised no alert", rule.id)
}

/// A configuration that targets no device.
fn nobody_configuration() -> Value {
    json!({"targetCondition": "deviceId = 'nobody'",
           "content": {"deviceContent": {"properties.desired.a": 1}}})
}

/// A twin job that targets no device.
fn nobody_job(n: usize) -> Value {
    json!({"jobId": format!("j{n}"), "type": "scheduleUpdateTwin",
           "queryCondition": "deviceId = 'nobody'", "updateTwin": {"tags": {"a": 1}}})
}

fn bad_signature_token() -> String {
    let cs = ServiceConnectionString::parse(&format!(
        "HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
        "c29tZSBvdGhlciBrZXkgdGhhdCBpcyBub3QgdGhlIGh1YnM="
    ))
    .unwrap();
    cs.sas_token(Timestamp::now() + Duration::from_secs(3600))
        .as_str()
        .to_string()
}

#[tokio::test]
async fn authorization_matrix_every_policy_against_every_route() {
    let s = Served::start().await;
    let mut request_ids = HashSet::new();
    let mut n = 0;
    let routes = rest::routes();
    assert_eq!(routes.len(), 59, "the contract has 59 routes");
    for route in &routes {
        // 401: no token, a token signed with another key, an expired token
        let expired = s.token_until(
            "iothubowner",
            Timestamp::from_unix_secs(Timestamp::now().unix_secs() - 5),
        );
        let bad = bad_signature_token();
        let placeholder = route
            .path
            .replace("{id}", "nobody")
            .replace("{name}", "nobody")
            .replace("{jobId}", "nobody")
            .replace("{sha256}", &"0".repeat(64));
        for auth in [None, Some(bad.as_str()), Some(expired.as_str())] {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            let a = s
                .raw(
                    route.method.clone(),
                    &format!("{placeholder}?{API}"),
                    &headers,
                    "{}",
                )
                .await;
            assert_eq!(
                a.status, 401,
                "{} {} with {auth:?}: {a:?}",
                route.method, route.path
            );
            // an answer to HEAD has no body: its code is in the header
            assert_eq!(
                a.header("iothub-errorcode"),
                Some("IotHubUnauthorizedAccess")
            );
            if route.method != Method::HEAD {
                assert_eq!(a.code(), 401_003);
            }
            assert!(request_ids.insert(a.header("x-ms-request-id").unwrap().to_string()));
        }
        for policy in POLICIES {
            let rights = s.hub.access_policy(policy).unwrap().rights;
            let allowed = route.need.is_met_by(rights);
            n += 1;
            let a = if allowed {
                let case = prepare(&s, &route.method, route.path, n).await;
                let a = s
                    .call(policy, route.method.clone(), &case.path, case.body)
                    .await;
                assert!(
                    case.ok.contains(&a.status.as_u16()),
                    "{policy} on {} {} should succeed: {a:?}",
                    route.method,
                    case.path
                );
                a
            } else {
                let a = s
                    .call(policy, route.method.clone(), &placeholder, Some(json!({})))
                    .await;
                assert_eq!(
                    a.status, 403,
                    "{policy} on {} {} should be forbidden: {a:?}",
                    route.method, route.path
                );
                assert_eq!(a.header("iothub-errorcode"), Some("Forbidden"));
                if route.method != Method::HEAD {
                    assert_eq!(a.code(), 403_000);
                    assert!(a.message().contains(policy), "{}", a.message());
                }
                a
            };
            assert!(request_ids.insert(a.header("x-ms-request-id").unwrap().to_string()));
        }
    }
    // the rights table of the contract, spot-checked
    let need = |m: &str, p: &str| {
        routes
            .iter()
            .find(|r| r.method.as_str() == m && r.path == p)
            .unwrap()
            .need
    };
    let rr = Rights::REGISTRY_READ;
    let sc = Rights::SERVICE_CONNECT;
    assert!(need("GET", "/twins/{id}").is_met_by(rr) && need("GET", "/twins/{id}").is_met_by(sc));
    assert!(!need("PATCH", "/twins/{id}").is_met_by(rr));
    assert!(!need("GET", "/devices/{id}").is_met_by(sc));
    assert!(need("GET", "/devices/{id}").is_met_by(Rights::REGISTRY_WRITE));
    assert!(!need("GET", "/policies").is_met_by(rr | sc | Rights::REGISTRY_WRITE));
    assert!(need("GET", "/artifacts/{sha256}").is_met_by(rr));
    assert!(!need("GET", "/artifacts/{sha256}").is_met_by(sc | Rights::DEVICE_CONNECT));
    assert!(!need("PUT", "/artifacts/{sha256}").is_met_by(rr));
}
