//! The requests the official service SDKs send (Python azure-iot-hub 2.7.0, Node
//! azure-iothub 1.16.6), replayed verbatim over HTTPS: bodies, quoted `If-Match` values,
//! optional and null fields, and what the SDKs need back (statuses, content type, paging
//! headers).

#![allow(clippy::unwrap_used)]

mod rest_support;

use http::Method;

use iot_dm_service::hub::DeviceSpec;
use rest_support::{Served, API};

const JSON: &str = "application/json; charset=utf-8";

async fn send(
    s: &Served,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> rest_support::Answer {
    let token = s.token("iothubowner");
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend_from_slice(extra);
    s.raw(method, &format!("{path}?{API}"), &headers, body.to_string())
        .await
}

#[tokio::test]
async fn device_creation_as_python_and_node_send_it() {
    let s = Served::start().await;
    // Python create_device_with_sas with keys
    let a = send(
        &s,
        Method::PUT,
        "/devices/py1",
        &[("content-type", JSON), ("accept", "application/json")],
        r#"{"deviceId": "py1", "status": "enabled", "authentication": {"symmetricKey": {"primaryKey": "a2V5a2V5a2V5a2V5a2V5a2V5", "secondaryKey": "a2V5a2V5a2V5a2V5a2V5a2V5"}, "type": "sas"}, "capabilities": {"iotEdge": false}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some(JSON));
    let d = a.json();
    assert_eq!(d["deviceId"], "py1");
    assert_eq!(
        d["authentication"]["symmetricKey"]["primaryKey"],
        "a2V5a2V5a2V5a2V5a2V5a2V5"
    );
    // Python with no keys: "symmetricKey": {} -> generated
    let a = send(
        &s,
        Method::PUT,
        "/devices/py2",
        &[("content-type", JSON)],
        r#"{"deviceId": "py2", "status": "enabled", "authentication": {"symmetricKey": {}, "type": "sas"}, "capabilities": {"iotEdge": false}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.json()["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .len()
            >= 24
    );
    // Node Registry.create({deviceId}): empty-string keys -> generated, enabled
    let a = send(
        &s,
        Method::PUT,
        "/devices/node1",
        &[("content-type", JSON)],
        r#"{"deviceId":"node1","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let d = a.json();
    assert_eq!(d["status"], "enabled");
    let k1 = d["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let k2 = d["authentication"]["symmetricKey"]["secondaryKey"]
        .as_str()
        .unwrap();
    assert!(k1.len() >= 24 && k2.len() >= 24 && k1 != k2);
    // timestamps the Python model parses as iso-8601 (or null)
    for f in [
        "statusUpdatedTime",
        "connectionStateUpdatedTime",
        "lastActivityTime",
    ] {
        let v = &d[f];
        assert!(
            v.is_null() || v.as_str().unwrap().ends_with('Z'),
            "{f}: {v}"
        );
    }
    // duplicate -> 409
    let a = send(
        &s,
        Method::PUT,
        "/devices/node1",
        &[("content-type", JSON)],
        r#"{"deviceId":"node1"}"#,
    )
    .await;
    assert_eq!(a.status, 409, "{a:?}");
    assert!(a.message().starts_with("ErrorCode:DeviceAlreadyExists;"));
}

#[tokio::test]
async fn quoted_if_match_values_and_deletes() {
    let s = Served::start().await;
    s.hub
        .create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    s.hub
        .create_device(DeviceSpec::new("d2".parse().unwrap()))
        .await
        .unwrap();
    let twin = send(
        &s,
        Method::GET,
        "/twins/d1",
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(twin.status, 200);
    let etag = twin.json()["etag"].as_str().unwrap().to_string();
    assert!(!etag.contains('"'));
    // Python update_twin with the etag, quoted
    let quoted = format!("\"{etag}\"");
    let a = send(
        &s,
        Method::PATCH,
        "/twins/d1",
        &[("content-type", JSON), ("if-match", &quoted)],
        r#"{"properties": {"desired": {"x": 1}}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["properties"]["desired"]["x"], 1);
    // the same etag again is stale
    let a = send(
        &s,
        Method::PATCH,
        "/twins/d1",
        &[("content-type", JSON), ("if-match", &quoted)],
        r#"{"properties":{"desired":{"x":2}}}"#,
    )
    .await;
    assert_eq!(a.status, 412, "{a:?}");
    // "*" quoted, as both SDKs send it when they have no etag
    let a = send(
        &s,
        Method::PUT,
        "/twins/d1",
        &[("content-type", JSON), ("if-match", "\"*\"")],
        r#"{"tags": {"a": 1}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    // Python delete: quoted star, Content-Length 0
    let a = send(
        &s,
        Method::DELETE,
        "/devices/d1",
        &[("if-match", "\"*\""), ("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(a.status, 204, "{a:?}");
    let a = send(&s, Method::GET, "/devices/d1", &[], "").await;
    assert_eq!(a.status, 404);
    assert!(a.message().starts_with("ErrorCode:DeviceNotFound;"));
    // Node delete: quoted star, no body headers at all
    let a = send(
        &s,
        Method::DELETE,
        "/devices/d2",
        &[("if-match", "\"*\"")],
        "",
    )
    .await;
    assert_eq!(a.status, 204, "{a:?}");
}

#[tokio::test]
async fn method_bodies_with_missing_null_and_empty_payloads() {
    let s = Served::start().await;
    s.hub
        .create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap();
    for body in [
        // Python: None fields omitted, a None payload sent as ""
        r#"{"methodName": "echo", "payload": "", "responseTimeoutInSeconds": 10}"#,
        r#"{"methodName": "echo", "payload": {"a": 1}}"#,
        // Node defaults
        r#"{"methodName":"echo","responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0,"payload":null}"#,
    ] {
        let a = send(
            &s,
            Method::POST,
            "/twins/d1/methods",
            &[("content-type", JSON)],
            body,
        )
        .await;
        // not connected: the right error, not a deserialization failure
        assert_eq!(a.status, 404, "{body}: {a:?}");
        assert!(
            a.message().starts_with("ErrorCode:DeviceNotOnline;"),
            "{}",
            a.message()
        );
    }
    // what does not parse is still refused as such
    let a = send(
        &s,
        Method::POST,
        "/twins/d1/methods",
        &[("content-type", JSON)],
        r#"{"payload": 1}"#,
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.message().contains("methodName"), "{}", a.message());
}

#[tokio::test]
async fn query_paging_as_the_sdks_page() {
    let s = Served::start().await;
    for i in 0..5 {
        s.hub
            .create_device(DeviceSpec::new(format!("d{i}").parse().unwrap()))
            .await
            .unwrap();
    }
    let mut token: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let mut headers = vec![("content-type", JSON), ("x-ms-max-item-count", "2")];
        let t = token.clone();
        if let Some(t) = t.as_deref() {
            headers.push(("x-ms-continuation", t));
        }
        let a = send(
            &s,
            Method::POST,
            "/devices/query",
            &headers,
            r#"{"query": "SELECT * FROM devices"}"#,
        )
        .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.header("content-type"), Some(JSON));
        assert_eq!(a.header("x-ms-item-type"), Some("twin"));
        for row in a.json().as_array().unwrap() {
            // Node's nextAsTwin needs deviceId in every row; Python reads etag and version
            ids.push(row["deviceId"].as_str().unwrap().to_string());
            assert!(row["etag"].is_string() && row["version"].is_u64(), "{row}");
        }
        // on the last page the header is absent, never empty
        match a.headers.get("x-ms-continuation") {
            Some(v) => {
                assert!(!v.is_empty());
                token = Some(v.to_str().unwrap().to_string());
            }
            None => break,
        }
    }
    assert_eq!(ids, ["d0", "d1", "d2", "d3", "d4"]);
}

/// Every form of `If-Match` means the same on devices and twins: the current ETag quoted (as
/// the SDKs send it), unquoted or weak, `*` quoted or not, or a list holding it, match; a
/// stale ETag gets 412; an empty header gets 400 and changes nothing.
#[tokio::test]
async fn if_match_forms_are_consistent_across_devices_and_twins() {
    let s = Served::start().await;
    let a = s
        .call(
            "iothubowner",
            Method::PUT,
            "/devices/d1",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let token = s.token("iothubowner");
    let send = |method: Method, path: &'static str, if_match: String, body: serde_json::Value| {
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
    let forms = |etag: &str| {
        vec![
            format!("\"{etag}\""),
            etag.to_string(),
            format!("W/\"{etag}\""),
            "\"*\"".to_string(),
            "*".to_string(),
            format!("\"stale\", \"{etag}\""),
        ]
    };
    for (i, _) in forms("x").iter().enumerate() {
        // the device: its etag changes with every update
        let device = s
            .call("iothubowner", Method::GET, "/devices/d1", None)
            .await
            .json();
        let etag = device["etag"].as_str().unwrap().to_string();
        let form = forms(&etag)[i].clone();
        let body = serde_json::json!({"deviceId": "d1", "status": "enabled", "statusReason": format!("r{i}")});
        let a = send(Method::PUT, "/devices/d1", form.clone(), body).await;
        assert_eq!(a.status, 200, "device If-Match {form}: {a:?}");
        // the twin
        let twin = s
            .call("iothubowner", Method::GET, "/twins/d1", None)
            .await
            .json();
        let etag = twin["etag"].as_str().unwrap().to_string();
        let form = forms(&etag)[i].clone();
        let patch = serde_json::json!({"tags": {"step": i}});
        let a = send(Method::PATCH, "/twins/d1", form.clone(), patch).await;
        assert_eq!(a.status, 200, "twin If-Match {form}: {a:?}");
        assert_eq!(a.json()["tags"]["step"], i);
    }
    for (method, path, body) in [
        (
            Method::PUT,
            "/devices/d1",
            serde_json::json!({"deviceId": "d1", "status": "disabled"}),
        ),
        (
            Method::PATCH,
            "/twins/d1",
            serde_json::json!({"tags": {"step": "never"}}),
        ),
    ] {
        let a = send(
            method.clone(),
            path,
            "\"AAAAAAAAAAA=\"".into(),
            body.clone(),
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (412, 412_001),
            "{path}: {a:?}"
        );
        let a = send(method.clone(), path, String::new(), body).await;
        assert_eq!(a.status, 400, "{path} with an empty If-Match: {a:?}");
        assert!(
            a.json()["Message"]
                .as_str()
                .unwrap_or_default()
                .contains("If-Match"),
            "{a:?}"
        );
    }
    let device = s
        .call("iothubowner", Method::GET, "/devices/d1", None)
        .await
        .json();
    assert_eq!(device["status"], "enabled");
    let twin = s
        .call("iothubowner", Method::GET, "/twins/d1", None)
        .await
        .json();
    assert_eq!(twin["tags"]["step"], 5);
}
