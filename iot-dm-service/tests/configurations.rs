//! Automatic device configurations end to end: targeting, priorities, metrics, twin changes
//! moving devices in and out, deletes, a restart, and refused input, on the embedded hub and
//! over REST.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{json, Value};

use iot_dm_core::configuration::Configuration;
use iot_dm_service::api::prelude::*;
use iot_dm_service::hub::{DeviceSpec, Hub};

use rest_support::Served;

fn cfg(v: Value) -> Configuration {
    Configuration::from_json(&v).unwrap()
}

fn fan(id: &str, target: &str, priority: i64, speed: i64) -> Configuration {
    cfg(json!({
        "id": id, "targetCondition": target, "priority": priority,
        "content": {"deviceContent": {"properties.desired.fan": {"speed": speed}}},
        "metrics": {"queries": {
            "applied": format!("SELECT deviceId FROM devices WHERE configurations.[[{id}]].status = 'Applied'"),
            "reportedFast": "SELECT deviceId FROM devices WHERE properties.reported.fan.speed > 5",
        }},
    }))
}

async fn device(hub: &Hub, id: &str, site: &str) {
    hub.create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
    tag(hub, id, site).await;
}

async fn tag(hub: &Hub, id: &str, site: &str) {
    let patch = serde_json::from_value(json!({"tags": {"site": site}})).unwrap();
    hub.update_twin(id, &patch, None).await.unwrap();
}

fn desired(hub: &Hub, id: &str) -> Value {
    hub.get_twin(id).unwrap().desired().doc().to_value()
}

fn status(hub: &Hub, id: &str) -> Value {
    hub.get_twin(id).unwrap().configurations().to_value()
}

/// `(targetedCount, appliedCount, [custom metrics in name order])`.
async fn counts(hub: &Hub, id: &str) -> (u64, u64, Vec<u64>) {
    let c = hub.get_configuration(id).await.unwrap();
    (
        c.system_metrics.results["targetedCount"],
        c.system_metrics.results["appliedCount"],
        c.metrics.results.values().copied().collect(),
    )
}

/// Waits (at most 1 s, checking every 10 ms) until `check` holds; the last answer otherwise.
async fn within_a_second(mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    for _ in 0..100 {
        if check() {
            return true;
        }
        if start.elapsed() > Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

async fn fleet() -> Hub {
    let hub = Hub::builder().open().await.unwrap();
    for (id, site) in [
        ("n1", "north"),
        ("n2", "north"),
        ("s1", "south"),
        ("s2", "south"),
    ] {
        device(&hub, id, site).await;
    }
    device(&hub, "w1", "west").await;
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_higher_priority_wins_on_the_overlap_only_and_metrics_follow_every_step() {
    let hub = fleet().await;
    // low: north and south; high: south only
    hub.put_configuration(&fan("low", "tags.site IN ['north', 'south']", 10, 1), None)
        .await
        .unwrap();
    hub.configurations_applied().await.unwrap();
    for id in ["n1", "n2", "s1", "s2"] {
        assert_eq!(desired(&hub, id), json!({"fan": {"speed": 1}}), "{id}");
        assert_eq!(status(&hub, id), json!({"low": {"status": "applied"}}));
    }
    assert_eq!(desired(&hub, "w1"), json!({}));
    assert_eq!(counts(&hub, "low").await, (4, 4, vec![4, 0]));

    hub.put_configuration(&fan("high", "tags.site = 'south'", 20, 9), None)
        .await
        .unwrap();
    hub.configurations_applied().await.unwrap();
    for id in ["n1", "n2"] {
        assert_eq!(desired(&hub, id), json!({"fan": {"speed": 1}}), "{id}");
    }
    for id in ["s1", "s2"] {
        assert_eq!(desired(&hub, id), json!({"fan": {"speed": 9}}), "{id}");
        assert_eq!(
            status(&hub, id),
            json!({"high": {"status": "applied"}, "low": {"status": "targeted"}})
        );
    }
    assert_eq!(counts(&hub, "low").await, (4, 2, vec![2, 0]));
    assert_eq!(counts(&hub, "high").await, (2, 2, vec![2, 0]));

    // a device reports: the custom metric moves without any configuration change
    hub.patch_reported("s1", &json!({"fan": {"speed": 9}}))
        .await
        .unwrap();
    let mut seen = (0, 0, vec![]);
    for _ in 0..100 {
        seen = counts(&hub, "high").await;
        if seen.2 == vec![2, 1] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, (2, 2, vec![2, 1]));

    // the winner lowers its priority under the other: the other takes over
    let high = hub.get_configuration("high").await.unwrap();
    let lowered = fan("high", "tags.site = 'south'", 5, 9);
    let updated = hub
        .put_configuration(&lowered, Some(&high.etag))
        .await
        .unwrap();
    assert_ne!(updated.etag, high.etag);
    hub.configurations_applied().await.unwrap();
    for id in ["s1", "s2"] {
        assert_eq!(desired(&hub, id), json!({"fan": {"speed": 1}}), "{id}");
    }
    // s1 reports a fast fan: both count it in their second metric
    assert_eq!(counts(&hub, "low").await, (4, 4, vec![4, 1]));
    assert_eq!(counts(&hub, "high").await, (2, 0, vec![0, 1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_changes_move_a_device_in_and_out_and_a_new_device_gets_the_content_within_a_second() {
    let hub = fleet().await;
    hub.put_configuration(&fan("north", "tags.site = 'north'", 10, 4), None)
        .await
        .unwrap();
    hub.configurations_applied().await.unwrap();
    assert_eq!(counts(&hub, "north").await.0, 2);

    tag(&hub, "w1", "north").await;
    assert!(within_a_second(|| desired(&hub, "w1") == json!({"fan": {"speed": 4}})).await);
    tag(&hub, "w1", "west").await;
    assert!(within_a_second(|| desired(&hub, "w1") == json!({})).await);
    assert!(within_a_second(|| status(&hub, "w1") == json!({})).await);

    device(&hub, "n3", "north").await;
    assert!(within_a_second(|| desired(&hub, "n3") == json!({"fan": {"speed": 4}})).await);
    let mut c = (0, 0, vec![]);
    for _ in 0..100 {
        c = counts(&hub, "north").await;
        if c.0 == 3 && c.1 == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(c, (3, 3, vec![3, 0]));

    hub.delete_device("n3", None).await.unwrap();
    let mut c = (0, 0, vec![]);
    for _ in 0..100 {
        c = counts(&hub, "north").await;
        if c.0 == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(c, (2, 2, vec![2, 0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_winner_lets_the_next_apply_and_the_last_delete_removes_the_settings() {
    let hub = fleet().await;
    // a setting the configurations never touch stays
    let patch = serde_json::from_value(json!({"properties": {"desired": {"keep": 1}}})).unwrap();
    hub.update_twin("s1", &patch, None).await.unwrap();
    hub.put_configuration(&fan("low", "*", 1, 1), None)
        .await
        .unwrap();
    let extra = cfg(json!({
        "id": "high", "targetCondition": "tags.site = 'south'", "priority": 2,
        "content": {"deviceContent": {"properties.desired.fan.speed": 7, "properties.desired.mode": "eco"}},
    }));
    hub.put_configuration(&extra, None).await.unwrap();
    hub.configurations_applied().await.unwrap();
    assert_eq!(
        desired(&hub, "s1"),
        json!({"keep": 1, "fan": {"speed": 7}, "mode": "eco"})
    );

    hub.delete_configuration("high", Some("*")).await.unwrap();
    hub.configurations_applied().await.unwrap();
    assert_eq!(desired(&hub, "s1"), json!({"keep": 1, "fan": {"speed": 1}}));
    assert_eq!(status(&hub, "s1"), json!({"low": {"status": "applied"}}));
    assert_eq!(counts(&hub, "low").await, (5, 5, vec![5, 0]));
    assert!(hub.get_configuration("high").await.unwrap_err().code() == 404_301);

    hub.delete_configuration("low", None).await.unwrap();
    hub.configurations_applied().await.unwrap();
    assert_eq!(desired(&hub, "s1"), json!({"keep": 1}));
    assert_eq!(desired(&hub, "n1"), json!({}));
    assert_eq!(status(&hub, "n1"), json!({}));
    assert!(hub.list_configurations(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_and_metrics_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    {
        let hub = Hub::builder().path(&path).open().await.unwrap();
        for (id, site) in [("n1", "north"), ("n2", "north"), ("s1", "south")] {
            device(&hub, id, site).await;
        }
        hub.put_configuration(&fan("north", "tags.site = 'north'", 10, 4), None)
            .await
            .unwrap();
        hub.put_configuration(&fan("all", "*", 1, 2), None)
            .await
            .unwrap();
        hub.configurations_applied().await.unwrap();
        assert_eq!(counts(&hub, "north").await, (2, 2, vec![2, 0]));
        assert_eq!(counts(&hub, "all").await, (3, 1, vec![1, 0]));
        hub.shutdown().await.unwrap();
    }
    let hub = Hub::builder().path(&path).open().await.unwrap();
    let all = hub.list_configurations(None).await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["all", "north"]
    );
    assert_eq!(counts(&hub, "north").await, (2, 2, vec![2, 0]));
    assert_eq!(counts(&hub, "all").await, (3, 1, vec![1, 0]));
    assert_eq!(desired(&hub, "s1"), json!({"fan": {"speed": 2}}));
    // and it goes on applying after the restart
    tag(&hub, "s1", "north").await;
    assert!(within_a_second(|| desired(&hub, "s1") == json!({"fan": {"speed": 4}})).await);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_updates_and_deletes_keep_their_rules() {
    let hub = Hub::builder().max_configurations(2).open().await.unwrap();
    device(&hub, "n1", "north").await;
    let first = hub
        .put_configuration(&fan("a", "*", 1, 1), None)
        .await
        .unwrap();
    let e = hub
        .put_configuration(&fan("a", "*", 1, 1), None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.code_name()),
        (409_401, "ConfigurationAlreadyExists")
    );
    let e = hub
        .put_configuration(&fan("a", "*", 2, 1), Some("\"stale\""))
        .await
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    let e = hub
        .put_configuration(&fan("a", "*", 2, 5), Some("*"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.code_name()),
        (400_403, "CannotModifyImmutableConfigurationContent")
    );
    let e = hub
        .put_configuration(&fan("nope", "*", 2, 5), Some("*"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 404_301);
    hub.put_configuration(&fan("b", "*", 1, 1), None)
        .await
        .unwrap();
    let e = hub
        .put_configuration(&fan("c", "*", 1, 1), None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.code_name(), e.http_status()),
        (413_101, "ConfigurationCountLimitExceeded", 413)
    );
    assert!(e.to_string().contains("limit is 2"), "{e}");
    let e = hub
        .delete_configuration("a", Some("\"stale\""))
        .await
        .unwrap_err();
    assert!(e.is_precondition_failed());
    hub.delete_configuration("a", Some(&first.etag))
        .await
        .unwrap();
    assert_eq!(
        hub.delete_configuration("a", None)
            .await
            .unwrap_err()
            .code(),
        404_301
    );
    assert_eq!(hub.list_configurations(Some(1)).await.unwrap().len(), 1);
}

/// Each bad field over REST: 400 naming the field, and no twin touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_named_and_no_twin_changes() {
    let served = Served::start().await;
    let hub = &served.hub;
    device(hub, "n1", "north").await;
    let before = hub.get_twin("n1").unwrap();
    let good = json!({
        "id": "ok", "targetCondition": "*", "priority": 1,
        "content": {"deviceContent": {"properties.desired.fan": 1}},
    });
    let with = |field: &str, v: Value| {
        let mut b = good.clone();
        b[field] = v;
        b
    };
    let deep = (0..12).fold(json!(1), |acc, _| json!({"x": acc}));
    let cases: Vec<(Value, u64, &str)> = vec![
        (with("id", json!("Bad")), 400_004, "id"),
        (
            with("targetCondition", json!("tags.x = ")),
            400_401,
            "targetCondition",
        ),
        (
            with("targetCondition", json!("")),
            400_004,
            "targetCondition",
        ),
        (with("priority", json!(-3)), 400_004, "priority"),
        (with("labels", json!({"a": 1})), 400_004, "labels.a"),
        (
            with("content", json!({"deviceContent": {"tags.x": 1}})),
            400_402,
            "content.deviceContent",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desired.a": 1}, "modulesContent": {"m": {"x": 1}}}),
            ),
            400_402,
            "content.modulesContent",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desired.a": deep}}),
            ),
            400_402,
            "content.deviceContent",
        ),
        (
            with(
                "metrics",
                json!({"queries": {"m": "SELECT COUNT() FROM devices"}}),
            ),
            400_404,
            "metrics.queries.m",
        ),
        (
            with(
                "metrics",
                json!({"queries": {"a": "SELECT * FROM devices", "b": "SELECT * FROM devices",
            "c": "SELECT * FROM devices", "d": "SELECT * FROM devices", "e": "SELECT * FROM devices",
            "f": "SELECT * FROM devices"}}),
            ),
            400_404,
            "metrics.queries",
        ),
    ];
    for (body, code, field) in cases {
        let id = body["id"].as_str().unwrap_or("ok").to_string();
        let a = served
            .call(
                "registryReadWrite",
                Method::PUT,
                &format!("/configurations/{id}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {a:?}");
        assert_eq!(a.code(), code, "{body}: {a:?}");
        assert!(a.message().contains(field), "{body}: {}", a.message());
    }
    // the path and the body disagree
    let a = served
        .call(
            "registryReadWrite",
            Method::PUT,
            "/configurations/other",
            Some(good.clone()),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
    // read-only credentials cannot write
    let a = served
        .call(
            "registryRead",
            Method::PUT,
            "/configurations/ok",
            Some(good.clone()),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a:?}");
    hub.configurations_applied().await.unwrap();
    assert!(hub.list_configurations(None).await.unwrap().is_empty());
    let after = hub.get_twin("n1").unwrap();
    assert_eq!(after.to_json(), before.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_routes_create_read_list_update_test_and_delete() {
    let served = Served::start().await;
    device(&served.hub, "n1", "north").await;
    let body = json!({
        "id": "fan", "schemaVersion": "1.0", "labels": {"team": "a"}, "targetCondition": "tags.site = 'north'",
        "priority": 3, "content": {"deviceContent": {"properties.desired.fan": {"speed": 2}}},
        "metrics": {"queries": {"ok": "SELECT deviceId FROM devices WHERE configurations.[[fan]].status = 'Applied'"}},
    });
    let a = served
        .call(
            "registryReadWrite",
            Method::PUT,
            "/configurations/fan",
            Some(body.clone()),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let created = a.json();
    assert_eq!(created["labels"], json!({"team": "a"}));
    let etag = created["etag"].as_str().unwrap().to_string();
    served.hub.configurations_applied().await.unwrap();

    let got = served
        .call("registryRead", Method::GET, "/configurations/fan", None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    let got = got.json();
    assert_eq!(
        got["systemMetrics"]["results"],
        json!({"targetedCount": 1, "appliedCount": 1})
    );
    assert_eq!(got["metrics"]["results"], json!({"ok": 1}));

    let list = served
        .call("registryRead", Method::GET, "/configurations?top=10", None)
        .await;
    assert_eq!(list.json().as_array().map(Vec::len), Some(1));
    let bad_top = served
        .call("registryRead", Method::GET, "/configurations?top=x", None)
        .await;
    assert_eq!(bad_top.status, StatusCode::BAD_REQUEST);

    let mut update = got.clone();
    update["priority"] = json!(30);
    let token = served.token("registryReadWrite");
    let path = format!("/configurations/fan?{}", rest_support::API);
    let quoted = format!("\"{etag}\"");
    let headers = [
        ("authorization", token.as_str()),
        ("content-type", "application/json"),
        ("if-match", quoted.as_str()),
    ];
    let a = served
        .raw(Method::PUT, &path, &headers, update.to_string())
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.json()["priority"], json!(30));
    // the same etag again is stale now
    let a = served
        .raw(Method::PUT, &path, &headers, update.to_string())
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED, "{a:?}");
    let a = served
        .call(
            "registryReadWrite",
            Method::PUT,
            "/configurations/fan",
            Some(body),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::CONFLICT, 409_401),
        "{a:?}"
    );

    let t = served
        .call(
            "registryRead",
            Method::POST,
            "/configurations/testQueries",
            Some(
                json!({"targetCondition": "tags.x = ", "customMetricQueries": {
                "good": "SELECT deviceId FROM devices", "bad": "SELECT COUNT() FROM devices"}}),
            ),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{t:?}");
    let t = t.json();
    assert!(!t["targetConditionError"].as_str().unwrap().is_empty());
    assert_eq!(t["customMetricQueryErrors"]["good"], json!(""));
    assert!(!t["customMetricQueryErrors"]["bad"]
        .as_str()
        .unwrap()
        .is_empty());

    let a = served
        .call(
            "registryReadWrite",
            Method::DELETE,
            "/configurations/fan",
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
    served.hub.configurations_applied().await.unwrap();
    assert_eq!(desired(&served.hub, "n1"), json!({}));
    let a = served
        .call("registryRead", Method::GET, "/configurations/fan", None)
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, 404_301),
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_client_speaks_the_same_api() {
    let served = Served::start().await;
    device(&served.hub, "n1", "north").await;
    let client = served.client("registryReadWrite");
    let created = client
        .put_configuration(&fan("fan", "*", 1, 3), None)
        .await
        .unwrap();
    served.hub.configurations_applied().await.unwrap();
    let got = client.get_configuration("fan").await.unwrap();
    assert_eq!(got.etag, created.etag);
    assert_eq!(got.system_metrics.results["appliedCount"], 1);
    let e = client
        .put_configuration(&fan("fan", "*", 1, 3), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), 409_401);
    client
        .put_configuration(&fan("fan", "*", 9, 3), Some(&got.etag))
        .await
        .unwrap();
    assert_eq!(
        client.list_configurations(Some(5)).await.unwrap()[0].priority,
        9
    );
    client.delete_configuration("fan", None).await.unwrap();
    let e = client.get_configuration("fan").await.unwrap_err();
    assert!(
        matches!(e, iot_dm_service::HubError::ConfigurationNotFound { .. }),
        "{e}"
    );
}
