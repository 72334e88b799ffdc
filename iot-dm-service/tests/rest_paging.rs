//! Paging over HTTPS: `POST /devices/query` with `x-ms-max-item-count` and
//! `x-ms-continuation`, and `GET /devices?top=` with `x-ms-continuation`, never repeat or
//! skip a device.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::collections::HashSet;

use http::Method;
use serde_json::json;

use iot_dm_service::hub::DeviceSpec;
use rest_support::{Served, API};

async fn create(s: &Served, id: &str) {
    s.hub
        .create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
}

#[tokio::test]
async fn query_and_list_pages_never_repeat_or_skip() {
    let s = Served::start().await;
    let n = 25;
    for i in 0..n {
        create(&s, &format!("dev-{i:03}")).await;
    }
    let token = s.token("registryRead");
    for (sql, expect_type) in [
        ("SELECT * FROM devices", "twin"),
        ("SELECT deviceId FROM devices", "raw"),
    ] {
        let mut seen = Vec::new();
        let mut continuation: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut headers = vec![
                ("authorization", token.as_str()),
                ("content-type", "application/json"),
                ("x-ms-max-item-count", "7"),
            ];
            let c = continuation.clone();
            if let Some(c) = c.as_deref() {
                headers.push(("x-ms-continuation", c));
            }
            let a = s
                .raw(
                    Method::POST,
                    &format!("/devices/query?{API}"),
                    &headers,
                    json!({ "query": sql }).to_string(),
                )
                .await;
            assert_eq!(a.status, 200, "{a:?}");
            assert_eq!(a.header("x-ms-item-type"), Some(expect_type));
            let rows = a.json();
            let rows = rows.as_array().unwrap();
            assert!(rows.len() <= 7);
            seen.extend(
                rows.iter()
                    .map(|r| r["deviceId"].as_str().unwrap().to_string()),
            );
            pages += 1;
            continuation = a.header("x-ms-continuation").map(str::to_string);
            if continuation.is_none() {
                break;
            }
            assert!(pages < 10, "paging does not end");
        }
        assert_eq!(pages, 4);
        let expected: Vec<String> = (0..n).map(|i| format!("dev-{i:03}")).collect();
        assert_eq!(seen, expected, "{sql}");
    }
    // the registry listing pages the same way
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let mut headers = vec![("authorization", token.as_str())];
        let c = continuation.clone();
        if let Some(c) = c.as_deref() {
            headers.push(("x-ms-continuation", c));
        }
        let a = s
            .raw(Method::GET, &format!("/devices?top=10&{API}"), &headers, "")
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        seen.extend(
            a.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["deviceId"].as_str().unwrap().to_string()),
        );
        continuation = a.header("x-ms-continuation").map(str::to_string);
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), n);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), n);
    // out-of-range page sizes are refused, naming the header
    let a = s
        .raw(
            Method::POST,
            &format!("/devices/query?{API}"),
            &[("authorization", &token), ("x-ms-max-item-count", "5000")],
            json!({ "query": "SELECT * FROM devices" }).to_string(),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.message().contains("x-ms-max-item-count"),
        "{}",
        a.message()
    );
}
