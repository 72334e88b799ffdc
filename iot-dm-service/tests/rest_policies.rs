//! The access-policy routes over HTTPS: listing, creating with a rate limit, key regeneration
//! (old tokens refused at once), deletion, and what is refused.

#![allow(clippy::unwrap_used)]

mod rest_support;

use http::Method;
use serde_json::json;

use rest_support::Served;

#[tokio::test]
async fn policies_are_administered_over_rest() {
    let s = Served::start().await;
    let a = s.call("iothubowner", Method::GET, "/policies", None).await;
    assert_eq!(a.status, 200, "{a:?}");
    let names: Vec<String> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["keyName"].as_str().unwrap().to_string())
        .collect();
    for built_in in [
        "device",
        "iothubowner",
        "registryRead",
        "registryReadWrite",
        "service",
    ] {
        assert!(names.contains(&built_in.to_string()), "{names:?}");
    }
    let owner = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["keyName"] == "iothubowner")
        .unwrap()
        .clone();
    assert_eq!(
        owner["rights"],
        "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"
    );

    // create with generated keys and a rate limit
    let a = s
        .call(
            "iothubowner",
            Method::PUT,
            "/policies/dashboard",
            Some(json!({"rights": "RegistryRead, ServiceConnect", "rateLimit": {"perSecond": 5, "burst": 10}})),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let p = a.json();
    assert_eq!(p["keyName"], "dashboard");
    assert_eq!(p["rights"], "RegistryRead, ServiceConnect");
    assert_eq!(p["rateLimit"], json!({"perSecond": 5, "burst": 10}));
    assert!(p["primaryKey"].as_str().unwrap().len() >= 24);
    let a = s
        .call("dashboard", Method::GET, "/statistics/service", None)
        .await;
    assert_eq!(a.status, 200, "{a:?}");

    // regenerating the primary key refuses tokens signed with the old one
    let old = s.token("dashboard");
    let a = s
        .call(
            "iothubowner",
            Method::POST,
            "/policies/dashboard/keys/regenerate",
            Some(json!({"key": "primary"})),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_ne!(a.json()["primaryKey"], p["primaryKey"]);
    let a = s
        .raw(
            Method::GET,
            &format!("/statistics/service?{}", rest_support::API),
            &[("authorization", &old)],
            "",
        )
        .await;
    assert_eq!(a.status, 401, "{a:?}");

    // refused: a name that disagrees, unknown rights, deleting the last owner
    let a = s
        .call(
            "iothubowner",
            Method::PUT,
            "/policies/x",
            Some(json!({"keyName": "y", "rights": "RegistryRead"})),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.message().contains("keyName"), "{}", a.message());
    let a = s
        .call(
            "iothubowner",
            Method::PUT,
            "/policies/x",
            Some(json!({"rights": "EverythingPlease"})),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.message().contains("rights"), "{}", a.message());
    let a = s
        .call("iothubowner", Method::DELETE, "/policies/iothubowner", None)
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    let a = s
        .call(
            "iothubowner",
            Method::POST,
            "/policies/dashboard/keys/regenerate",
            Some(json!({"key": "tertiary"})),
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.message().contains("key"), "{}", a.message());

    // delete: its tokens stop working
    let token = s.token("dashboard");
    let a = s
        .call("iothubowner", Method::DELETE, "/policies/dashboard", None)
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    let a = s
        .raw(
            Method::GET,
            &format!("/statistics/service?{}", rest_support::API),
            &[("authorization", &token)],
            "",
        )
        .await;
    assert_eq!(a.status, 401, "{a:?}");
}
