//! The REST endpoint over real HTTPS on 127.0.0.1: the authorization matrix (every built-in
//! policy against every route), request validation (api-version, malformed JSON, body size),
//! ETags, throttling and the response headers. Paging is in `rest_paging.rs`.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::collections::HashSet;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::job::JobRequest;
use iot_dm_core::wire::ServiceConnectionString;
use iot_dm_service::access::{AccessPolicy, RateLimit, Rights};
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::DeviceSpec;
use iot_dm_service::rest;
use iot_dm_service::tls::dev_certs::DevCerts;
use rest_support::{Served, API, HOST};

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

async fn create(s: &Served, id: &str) {
    s.hub
        .create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
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
    assert_eq!(routes.len(), 51, "the contract has 51 routes");
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
            .replace("{jobId}", "nobody");
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
            assert_eq!(a.code(), 401_003);
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
                assert_eq!(a.code(), 403_000);
                assert!(a.message().contains(policy), "{}", a.message());
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
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let s = Served::start().await;
    let token = s.token("iothubowner");
    for url in [
        "/statistics/devices",
        "/statistics/devices?api-version=1999-01-01",
    ] {
        let a = s
            .raw(Method::GET, url, &[("authorization", &token)], "")
            .await;
        assert_eq!(a.status, 400, "{a:?}");
        assert_eq!(a.code(), 400_004);
        let m = a.message();
        assert!(m.starts_with("ErrorCode:ArgumentInvalid;"), "{m}");
        assert!(m.contains("api-version") && m.contains("2021-04-12"), "{m}");
    }
    for v in rest::API_VERSIONS {
        let a = s
            .raw(
                Method::GET,
                &format!("/statistics/devices?api-version={v}"),
                &[("authorization", &token)],
                "",
            )
            .await;
        assert_eq!(a.status, 200, "{v}: {a:?}");
        assert_eq!(
            a.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
}

#[tokio::test]
async fn malformed_and_misshapen_bodies() {
    let s = Served::start().await;
    create(&s, "d1").await;
    let token = s.token("iothubowner");
    let send = |method: Method, path: &'static str, body: &'static str| {
        let token = token.clone();
        let s = &s;
        async move {
            s.raw(
                method,
                &format!("{path}?{API}"),
                &[
                    ("authorization", &token),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let a = send(Method::PUT, "/devices/d2", "{\n  \"deviceId\": ").await;
    assert_eq!((a.status.as_u16(), a.code()), (400, 400_012), "{a:?}");
    let m = a.message();
    assert!(m.starts_with("ErrorCode:DeserializationError;"), "{m}");
    assert!(m.contains("line 2 column"), "{m}");
    // JSON, but not the expected shape
    let a = send(Method::POST, "/devices/query", r#"{"sql": "SELECT *"}"#).await;
    assert_eq!((a.status.as_u16(), a.code()), (400, 400_004), "{a:?}");
    assert!(a.message().contains("query"), "{}", a.message());
    let a = send(Method::PATCH, "/twins/d1", r#"{"tags": 5}"#).await;
    assert_eq!((a.status.as_u16(), a.code()), (400, 400_004), "{a:?}");
    let a = send(
        Method::POST,
        "/devices/query",
        r#"{"query": "SELEC * FROM devices"}"#,
    )
    .await;
    assert_eq!((a.status.as_u16(), a.code()), (400, 400_004), "{a:?}");
    // a body naming another device than the path
    let a = send(Method::PUT, "/devices/d3", r#"{"deviceId": "d4"}"#).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.message().contains("deviceId"), "{}", a.message());
    // nothing was created by the failures
    assert!(s.hub.get_device("d2").unwrap_err().is_not_found());
    assert!(s.hub.get_device("d3").unwrap_err().is_not_found());
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let s = Served::start().await;
    create(&s, "d1").await;
    let big = json!({ "tags": { "blob": "x".repeat(rest::MAX_REQUEST_BODY) } }).to_string();
    let token = s.token("iothubowner");
    let a = s
        .raw(
            Method::PATCH,
            &format!("/twins/d1?{API}"),
            &[
                ("authorization", &token),
                ("content-type", "application/json"),
            ],
            big,
        )
        .await;
    assert_eq!((a.status.as_u16(), a.code()), (413, 413_001), "{a:?}");
    assert!(a.message().starts_with("ErrorCode:MessageTooLarge;"));
    // the connection may be closed after a refused body; the next request still works
    let a = s.call("iothubowner", Method::GET, "/twins/d1", None).await;
    assert_eq!(a.status, 200, "{a:?}");

    // a chunked body (no Content-Length) is cut off at the limit too
    let status = chunked_request(
        &s,
        &format!("/twins/d1?{API}"),
        &token,
        rest::MAX_REQUEST_BODY + 1,
    )
    .await;
    assert_eq!(status, 413);
    // and one under the limit goes through
    let status = chunked_request(&s, &format!("/twins/d1?{API}"), &token, 1000).await;
    assert_eq!(status, 200);
}

/// Sends a PATCH with a chunked JSON body of `size` bytes and a little over a new TLS connection,
/// by hand, and returns the response status.
async fn chunked_request(s: &Served, path: &str, token: &str, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port()))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(s.certs.client_config().unwrap())
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let body = format!("{{\"tags\": {{\"blob\": \"{}\"}}}}", "x".repeat(size));
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.as_bytes().chunks(16 * 1024) {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before a response");
        response.extend_from_slice(&buf[..n]);
    }
    // the server may stop reading the body early; the writer's errors do not matter
    let _ = writer.await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn etag_mismatches_are_412() {
    let s = Served::start().await;
    let a = s
        .call("iothubowner", Method::PUT, "/devices/d1", Some(json!({})))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let etag = a.json()["etag"].as_str().unwrap().to_string();
    let token = s.token("iothubowner");
    let with_if_match = |method: Method, path: &'static str, if_match: String, body: Value| {
        let token = token.clone();
        let s = &s;
        async move {
            s.raw(
                method,
                &format!("{path}?{API}"),
                &[
                    ("authorization", &token),
                    ("content-type", "application/json"),
                    ("if-match", &if_match),
                ],
                body.to_string(),
            )
            .await
        }
    };
    let disable = json!({ "deviceId": "d1", "status": "disabled", "statusReason": "x" });
    let a = with_if_match(
        Method::PUT,
        "/devices/d1",
        "\"bogus\"".into(),
        disable.clone(),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.code()), (412, 412_001), "{a:?}");
    let a = with_if_match(Method::PUT, "/devices/d1", format!("\"{etag}\""), disable).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["status"], "disabled");
    let a = with_if_match(
        Method::PATCH,
        "/twins/d1",
        "\"AAAAAAAAAAk=\"".into(),
        json!({"tags": {"a": 1}}),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.code()), (412, 412_001), "{a:?}");
    let twin_etag = s.hub.get_twin("d1").unwrap();
    let twin_etag = serde_json::to_value(&twin_etag).unwrap()["etag"]
        .as_str()
        .unwrap()
        .to_string();
    let a = with_if_match(
        Method::PATCH,
        "/twins/d1",
        twin_etag,
        json!({"tags": {"a": 1}}),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = with_if_match(
        Method::DELETE,
        "/devices/d1",
        "\"bogus\"".into(),
        Value::Null,
    )
    .await;
    assert_eq!((a.status.as_u16(), a.code()), (412, 412_001), "{a:?}");
    let a = with_if_match(Method::DELETE, "/devices/d1", "*".into(), Value::Null).await;
    assert_eq!(a.status, 204, "{a:?}");
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn a_small_rate_limit_gets_429_with_retry_after() {
    let s = Served::start().await;
    s.hub
        .put_access_policy(
            AccessPolicy::new("slow", Rights::REGISTRY_READ).with_rate_limit(Some(RateLimit {
                per_second: 1,
                burst: 2,
            })),
        )
        .await
        .unwrap();
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..4 {
        let a = s
            .call("slow", Method::GET, "/statistics/devices", None)
            .await;
        statuses.push(a.status.as_u16());
        if a.status == 429 {
            throttled = Some(a);
        }
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    let a = throttled.expect("a throttled request");
    assert_eq!(a.code(), 429_001);
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // other policies are not affected
    let a = s
        .call("registryRead", Method::GET, "/statistics/devices", None)
        .await;
    assert_eq!(a.status, 200);
    // the client maps it back
    let e = iot_dm_service::api::RegistryApi::registry_statistics(&s.client("slow"))
        .await
        .unwrap_err();
    assert!(e.is_throttled(), "{e:?}");
}

#[tokio::test]
async fn unknown_routes_and_methods_and_error_body_shape() {
    let s = Served::start().await;
    let a = s.call("iothubowner", Method::GET, "/nothing", None).await;
    assert_eq!(a.status, 404, "{a:?}");
    let a = s
        .call("iothubowner", Method::PATCH, "/devices/d1", None)
        .await;
    assert_eq!(a.status, 405, "{a:?}");
    assert!(a.header("allow").unwrap().contains("GET"));
    let a = s
        .call("iothubowner", Method::GET, "/devices/ghost", None)
        .await;
    assert_eq!(a.status, 404);
    let body = a.json();
    assert_eq!(body["errorCode"], 404_001);
    assert!(body["Message"]
        .as_str()
        .unwrap()
        .starts_with("ErrorCode:DeviceNotFound;"));
    let tracking = body["ExceptionMessage"].as_str().unwrap();
    let rid = a.header("x-ms-request-id").unwrap();
    assert!(
        tracking.starts_with(&format!("Tracking ID:{rid}-TimeStamp:")),
        "{tracking}"
    );
    assert_eq!(a.header("iothub-errorcode"), Some("DeviceNotFound"));
}

#[tokio::test]
async fn plain_tcp_and_shutdown() {
    let hub = iot_dm_service::Hub::builder()
        .host_name(HOST)
        .open()
        .await
        .unwrap();
    let server = rest::RestServer::builder(hub.clone())
        .start()
        .await
        .unwrap();
    let addr = server.local_addr();
    let client = iot_dm_service::client::ServiceClient::builder(
        &hub.service_connection_string("iothubowner").unwrap(),
    )
    .unwrap()
    .base_url(&format!("http://{addr}"))
    .unwrap()
    .build()
    .unwrap();
    let stats = iot_dm_service::api::RegistryApi::registry_statistics(&client)
        .await
        .unwrap();
    assert_eq!(stats.total_device_count, 0);
    server.shutdown().await;
    let e = iot_dm_service::api::RegistryApi::registry_statistics(&client)
        .await
        .unwrap_err();
    assert!(e.is_transport(), "{e:?}");
}
