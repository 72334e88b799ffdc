//! The REST endpoint over real HTTPS on 127.0.0.1: request validation (api-version, malformed
//! JSON, body size), ETags, throttling and the response headers. The authorization matrix is
//! in `rest_authorization.rs`, paging in `rest_paging.rs`.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use iot_dm_service::access::{AccessPolicy, RateLimit, Rights};
use iot_dm_service::api::prelude::*;
use iot_dm_service::rest;
use rest_support::{create_device, Served, API, HOST};

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
    create_device(&s, "d1").await;
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
    create_device(&s, "d1").await;
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
