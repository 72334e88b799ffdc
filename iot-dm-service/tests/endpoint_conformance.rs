//! The `Endpoint` conformance suite against the in-process hub, and against the hub behind
//! a fault-injecting wrapper with no faults set (the wrapper must be transparent). Faults set
//! on the wrapper show that the checks catch a broken endpoint.

#![allow(clippy::unwrap_used)]

mod conformance_support;

use std::time::Duration;

use conformance_support::{hub, HubFixture};
use iot_dm_core::link::testkit::{checks, Failure, FaultyEndpoint};
use iot_dm_core::link::ConnectRefused;
use iot_dm_service::hub::Hub;

async fn in_process() -> HubFixture<Hub> {
    let hub = hub("hub.example").await;
    HubFixture::new(hub.clone(), hub)
}

async fn wrapped() -> HubFixture<FaultyEndpoint<Hub>> {
    let hub = hub("hub.example").await;
    HubFixture::new(hub.clone(), FaultyEndpoint::new(hub))
}

mod hub_endpoint {
    iot_dm_core::endpoint_conformance!(super::in_process().await);
}

mod faulty_endpoint_without_faults {
    iot_dm_core::endpoint_conformance!(super::wrapped().await);
}

#[tokio::test]
async fn the_checks_catch_a_silent_endpoint() {
    let mut f = wrapped().await;
    f.patience = Duration::from_millis(200);
    f.endpoint.set_silent(true);
    let timed_out = |r: Result<(), Failure>| matches!(r, Err(Failure::Timeout { .. }));
    assert!(timed_out(checks::twin_get_returns_the_twin(&f).await));
    assert!(timed_out(
        checks::reported_patch_is_acknowledged_and_visible(&f).await
    ));
    assert!(timed_out(
        checks::desired_notifications_arrive_in_version_order(&f).await
    ));
    assert!(timed_out(checks::direct_method_round_trip(&f).await));
    assert!(timed_out(
        checks::refused_subscription_closes_the_link(&f).await
    ));
}

#[tokio::test]
async fn the_checks_catch_a_lost_notification() {
    let f = wrapped().await;
    f.endpoint
        .drop_next("$iothub/twin/PATCH/properties/desired/");
    let lost = checks::desired_notifications_arrive_in_version_order(&f).await;
    assert!(matches!(lost, Err(Failure::Mismatch { .. })), "{lost:?}");
}

#[tokio::test]
async fn the_checks_catch_a_wrong_refusal() {
    let f = wrapped().await;
    f.endpoint.refuse(Some(ConnectRefused::ServerUnavailable {
        reason: "maintenance".into(),
    }));
    let wrong = checks::unknown_device_is_not_authorized(&f).await;
    assert!(matches!(wrong, Err(Failure::Mismatch { .. })), "{wrong:?}");
    let wrong = checks::wrong_key_is_not_authorized(&f).await;
    assert!(matches!(wrong, Err(Failure::Mismatch { .. })), "{wrong:?}");
}
