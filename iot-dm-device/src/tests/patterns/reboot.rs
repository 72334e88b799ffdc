//! Reboot and factory reset: answered first, then the hook, then the report after the
//! reconnect; and across a real restart through the saved state.

use serde_json::json;

use super::*;
use crate::patterns::{FilePatternState, MemoryPatternState, PatternState, SimulatedDevice};

#[tokio::test(start_paused = true)]
async fn reboot_is_answered_then_reconnects_and_reports_success() {
    let hub = TestHub::new().await;
    let client = connect_ticking(&hub).await;
    let device = SimulatedDevice::new("1.0.0");
    let state = Arc::new(MemoryPatternState::new());
    client
        .enable_reboot(device.clone(), state.clone())
        .await
        .unwrap();
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    assert_eq!(pattern(&hub, "reboot")["state"], "idle");

    let (status, body) = hub.invoke("reboot", json!({"delayInSeconds": 5})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "scheduled");
    assert!(body["scheduledFor"].is_string(), "{body}");
    // refused while one is scheduled, with the reason
    let (status, body) = hub.invoke("reboot", json!({})).await;
    assert_eq!(status, 409);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already scheduled"),
        "{body}"
    );
    let (status, _) = hub.invoke("reboot", json!({"delayInSeconds": -1})).await;
    assert_eq!(status, 400);

    let done = within(wait_pattern(&hub, "reboot", "succeeded")).await;
    assert!(done["lastReboot"].is_string(), "{done}");
    assert_eq!(device.reboots(), 1);
    assert!(hub.connects().len() >= 2, "the device reconnected");
    assert_eq!(
        states(&hub, "reboot"),
        ["idle", "scheduled", "rebooting", "succeeded"]
    );
    let saved = state.load("reboot").unwrap().unwrap();
    assert_eq!(saved["state"], "succeeded");
    // a new reboot is accepted again
    assert_eq!(hub.invoke("reboot", json!(null)).await.0, 202);
}

#[tokio::test(start_paused = true)]
async fn a_failing_reboot_is_reported_with_its_reason() {
    let hub = TestHub::new().await;
    let client = connect_ticking(&hub).await;
    let device = SimulatedDevice::new("1.0.0");
    device.fail_reboot(Some("battery below 10%"));
    client
        .enable_reboot(device.clone(), Arc::new(MemoryPatternState::new()))
        .await
        .unwrap();
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    assert_eq!(hub.invoke("reboot", json!({})).await.0, 202);
    let failed = within(wait_pattern(&hub, "reboot", "failed")).await;
    assert_eq!(failed["reason"], "battery below 10%");
    assert_eq!(device.reboots(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_device_that_restarts_for_real_reports_the_reboot_from_its_saved_state() {
    let hub = TestHub::new().await;
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(FilePatternState::open(dir.path()).unwrap());
    let device = SimulatedDevice::new("1.0.0");
    device.hang_on_restart(true); // the hook never returns: the process goes down
    let client = connect_ticking(&hub).await;
    client
        .enable_reboot(device.clone(), state.clone())
        .await
        .unwrap();
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    assert_eq!(hub.invoke("reboot", json!({})).await.0, 202);
    within(wait_pattern(&hub, "reboot", "rebooting")).await;
    client.close().await;
    drop(client);

    // the new process, on the same state directory
    device.hang_on_restart(false);
    let state = Arc::new(FilePatternState::open(dir.path()).unwrap());
    assert_eq!(state.load("reboot").unwrap().unwrap()["state"], "rebooting");
    let client = connect_ticking(&hub).await;
    client
        .enable_reboot(device.clone(), state.clone())
        .await
        .unwrap();
    let done = within(wait_pattern(&hub, "reboot", "succeeded")).await;
    assert!(done["lastReboot"].is_string(), "{done}");
    assert_eq!(state.load("reboot").unwrap().unwrap()["state"], "succeeded");
}

#[tokio::test(start_paused = true)]
async fn factory_reset_wipes_settings_and_reports_after_the_reconnect() {
    let hub = TestHub::new().await;
    let client = connect_ticking(&hub).await;
    let device = SimulatedDevice::new("1.0.0");
    let state = Arc::new(MemoryPatternState::new());
    client.enable_configuration(device.clone()).await.unwrap();
    client
        .enable_factory_reset(device.clone(), state.clone())
        .await
        .unwrap();
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    hub.set_desired(json!({"fan": 2, "networkSsid": "lab"}))
        .await;
    eventually("applied", || device.setting("networkSsid").is_some()).await;

    let (status, body) = hub
        .invoke("factoryReset", json!({"keepNetworkConfig": true}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "resetting");
    let (status, _) = hub.invoke("factoryReset", json!({})).await;
    assert_eq!(status, 409, "refused while resetting");
    let done = within(wait_pattern(&hub, "factoryReset", "succeeded")).await;
    assert_eq!(done["keepNetworkConfig"], true);
    assert!(done["lastReset"].is_string(), "{done}");
    assert_eq!(device.resets(), 1);
    assert_eq!(device.setting("fan"), None);
    assert_eq!(device.setting("networkSsid"), Some(json!("lab")));
    assert!(hub.connects().len() >= 2, "the device reconnected");

    device.fail_factory_reset(Some("flash is write-protected"));
    assert_eq!(hub.invoke("factoryReset", json!(null)).await.0, 202);
    let failed = within(wait_pattern(&hub, "factoryReset", "failed")).await;
    assert_eq!(failed["reason"], "flash is write-protected");
    assert_eq!(
        failed["lastReset"], done["lastReset"],
        "kept from the last success"
    );
}

#[tokio::test(start_paused = true)]
async fn a_factory_reset_cut_by_a_restart_is_reported_after_it() {
    let hub = TestHub::new().await;
    let state = Arc::new(MemoryPatternState::new());
    let device = SimulatedDevice::new("1.0.0");
    device.hang_on_restart(true);
    let client = connect_ticking(&hub).await;
    client
        .enable_factory_reset(device.clone(), state.clone())
        .await
        .unwrap();
    eventually("subscribed", || !hub.subscriptions().is_empty()).await;
    assert_eq!(hub.invoke("factoryReset", json!({})).await.0, 202);
    within(wait_pattern(&hub, "factoryReset", "resetting")).await;
    client.close().await;
    drop(client);

    let client = connect_ticking(&hub).await;
    client
        .enable_factory_reset(device, state.clone())
        .await
        .unwrap();
    let done = within(wait_pattern(&hub, "factoryReset", "succeeded")).await;
    assert_eq!(done["keepNetworkConfig"], false);
    assert!(done["lastReset"].is_string());
}
