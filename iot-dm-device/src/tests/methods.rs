//! Direct methods.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::{MethodResponse, METHOD_NOT_IMPLEMENTED};

#[tokio::test(start_paused = true)]
async fn method_round_trip() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    client.on_method("reboot", |call| async move {
        assert_eq!(call.name, "reboot");
        assert!(!call.request_id.is_empty());
        MethodResponse {
            status: 200,
            payload: json!({"delay": call.payload["delay"]}),
        }
    });
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    assert_eq!(
        hub.invoke("reboot", json!({"delay": 5})).await,
        (200, json!({"delay": 5}))
    );
    // an empty body is a null payload, and a null answer is sent as `null`
    client.on_method("ping", |call| async move {
        MethodResponse {
            status: 204,
            payload: call.payload,
        }
    });
    assert_eq!(hub.invoke_raw("ping", "").await, (204, json!(null)));
    assert!(client.remove_method("ping"));
    assert_eq!(hub.invoke_raw("ping", "").await.0, METHOD_NOT_IMPLEMENTED);
}

#[tokio::test(start_paused = true)]
async fn unknown_methods_and_the_default_handler() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    let (status, body) = hub.invoke("selfDestruct", json!({})).await;
    assert_eq!(status, 501);
    assert_eq!(
        body,
        json!({"message": "method \"selfDestruct\" is not implemented by this device"})
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    client.on_default_method(move |call| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            MethodResponse {
                status: 404,
                payload: json!({"unknown": call.name}),
            }
        }
    });
    client.on_method("known", |_| async {
        MethodResponse {
            status: 200,
            payload: json!("known"),
        }
    });
    assert_eq!(
        hub.invoke("selfDestruct", json!({})).await,
        (404, json!({"unknown": "selfDestruct"}))
    );
    assert_eq!(hub.invoke("known", json!({})).await, (200, json!("known")));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn failing_handlers_and_bad_payloads() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    client.on_method("boom", |_| async { panic!("handler bug") });
    client.on_method("echo", |call| async move {
        MethodResponse {
            status: 200,
            payload: call.payload,
        }
    });
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    let (status, body) = hub.invoke("boom", json!({})).await;
    assert_eq!(status, 500);
    assert!(body["message"].as_str().unwrap().contains("boom"), "{body}");
    let (status, body) = hub.invoke_raw("echo", "{not json").await;
    assert_eq!(status, 400);
    assert!(body["message"].is_string(), "{body}");
    // the client keeps serving
    assert_eq!(hub.invoke("echo", json!([1])).await, (200, json!([1])));
}

#[tokio::test(start_paused = true)]
async fn slow_handlers_do_not_block_the_session() {
    let hub = TestHub::new().await;
    let client = connect(&hub).await;
    client.on_method("slow", |_| async {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        MethodResponse {
            status: 200,
            payload: json!("done"),
        }
    });
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    let invoke = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.invoke("slow", json!(null)).await })
    };
    // twin traffic flows while the handler sleeps
    let started = tokio::time::Instant::now();
    assert_eq!(
        within(client.update_reported(json!({"a": 1})))
            .await
            .unwrap(),
        2
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(within(invoke).await.unwrap(), (200, json!("done")));
}
