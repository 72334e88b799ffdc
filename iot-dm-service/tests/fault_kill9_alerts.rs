//! Fault injection: a real hub process serving REST, with alert rules, one alert raised and
//! acknowledged and another raised and cleared, is killed with SIGKILL and started again on
//! its store. The rules, the active alert with its acknowledgement and the history are all
//! there after the restart; the active alert is resumed, not raised twice, and clears when
//! its condition stops holding.
//!
//! The hub process is this test binary run again as a child (as `hub_crash.rs` does): it
//! opens the hub on the store's folder, serves it over HTTPS on an ephemeral port, prints
//! the port and the owner's connection string, and serves until killed. The parent drives it
//! through `ServiceClient`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use iot_dm_core::alert::{Alert, AlertRule, AlertState};
use iot_dm_core::twin::TwinPatch;
use iot_dm_service::api::prelude::*;
use iot_dm_service::client::ServiceClient;
use iot_dm_service::hub::{DeviceSpec, Hub};
use iot_dm_service::rest::RestServer;
use iot_dm_service::tls::dev_certs::DevCerts;

const CHILD_ENV: &str = "IOT_DM_ALERTS_KILL9_CHILD_DIR";
const TEST: &str = "alert_rules_alerts_and_acknowledgements_survive_kill9";

/// The child: the hub on `dir`, served until killed.
async fn child(dir: &str) {
    let hub = Hub::builder()
        .host_name("localhost")
        .path(format!("{dir}/hub.redb"))
        .open()
        .await
        .expect("open hub");
    let certs = DevCerts::load_or_create(format!("{dir}/certs")).expect("certificates");
    let server = RestServer::builder(hub.clone())
        .listen("127.0.0.1:0".parse().unwrap())
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
        .start()
        .await
        .expect("serve");
    println!("hub-port {}", server.local_addr().port());
    println!(
        "hub-cs {}",
        hub.service_connection_string("iothubowner").unwrap()
    );
    std::future::pending::<()>().await;
}

/// A running hub process and a client of it.
struct HubChild {
    process: Child,
    client: ServiceClient,
}

impl HubChild {
    fn start(dir: &Path) -> HubChild {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let (mut port, mut cs) = (None, None);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // the harness's "test ... " may precede the first line
            if let Some((_, p)) = line.rsplit_once("hub-port ") {
                port = Some(p.trim().parse::<u16>().unwrap());
            } else if let Some((_, c)) = line.split_once("hub-cs ") {
                cs = Some(c.trim().to_string());
            }
            if port.is_some() && cs.is_some() {
                break;
            }
        }
        let (Some(port), Some(cs)) = (port, cs) else {
            panic!("the hub process did not start")
        };
        let certs = DevCerts::load_or_create(dir.join("certs")).unwrap();
        let client = ServiceClient::builder(&cs)
            .unwrap()
            .ca_pem(certs.ca_pem())
            .port(port)
            .build()
            .unwrap();
        HubChild { process, client }
    }

    fn kill9(mut self) {
        self.process.kill().unwrap(); // SIGKILL
        self.process.wait().unwrap();
    }
}

impl Drop for HubChild {
    /// A failing test leaves no hub process behind.
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn rule(id: &str, tag: &str) -> AlertRule {
    AlertRule::from_json(&json!({
        "id": id, "condition": format!("tags.{tag} = 'bad'"),
        "threshold": {"count": 0}, "severity": "critical",
    }))
    .unwrap()
}

async fn tag(client: &ServiceClient, device: &str, tag: &str, value: &str) {
    let patch: TwinPatch = serde_json::from_value(json!({"tags": {tag: value}})).unwrap();
    client.update_twin(device, &patch, None).await.unwrap();
}

/// Every alert, once `ok` holds of them (at most 20 s).
async fn alerts_until(client: &ServiceClient, ok: impl Fn(&[Alert]) -> bool) -> Vec<Alert> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = client.list_alerts(None).await.unwrap();
        if ok(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "alerts never got there: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of<'a>(alerts: &'a [Alert], rule: &str) -> Vec<&'a Alert> {
    alerts.iter().filter(|a| a.rule_id == rule).collect()
}

#[test]
fn alert_rules_alerts_and_acknowledgements_survive_kill9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(child(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = HubChild::start(dir.path());
    let (rules, before) = rt.block_on(async {
        let c = &hub.client;
        for id in ["d1", "d2", "d3"] {
            c.create_device(DeviceSpec::new(id.parse().unwrap()))
                .await
                .unwrap();
        }
        c.put_alert_rule(&rule("health", "health")).await.unwrap();
        c.put_alert_rule(&rule("power", "power")).await.unwrap();
        // "health" raised and acknowledged, and still holding
        tag(c, "d1", "health", "bad").await;
        let raised = alerts_until(c, |a| of(a, "health").len() == 1).await;
        let id = of(&raised, "health")[0].id.clone();
        let acked = c.acknowledge_alert(&id, "ops@example.com").await.unwrap();
        assert!(acked.acknowledged.is_some());
        // "power" raised and cleared
        tag(c, "d2", "power", "bad").await;
        alerts_until(c, |a| of(a, "power").len() == 1).await;
        tag(c, "d2", "power", "ok").await;
        let before = alerts_until(c, |a| {
            of(a, "power")
                .first()
                .is_some_and(|p| p.state() == AlertState::Cleared)
        })
        .await;
        (c.list_alert_rules().await.unwrap(), before)
    });
    assert_eq!(before.len(), 2, "{before:?}");
    hub.kill9();

    let hub = HubChild::start(dir.path());
    rt.block_on(async {
        let c = &hub.client;
        assert_eq!(c.list_alert_rules().await.unwrap(), rules);
        assert_eq!(c.list_alerts(None).await.unwrap(), before);
        // the alert task has counted every rule afresh: the active alert is resumed, not
        // raised again, and the cleared one stays cleared
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(c.list_alerts(None).await.unwrap(), before);
        let active = c.list_alerts(Some(AlertState::Active)).await.unwrap();
        assert_eq!(active.len(), 1, "{active:?}");
        let health = active[0].clone();
        assert_eq!(health.rule_id, "health");
        assert_eq!(
            health.acknowledged.as_ref().map(|(_, by)| by.as_str()),
            Some("ops@example.com")
        );
        // the condition stops holding: the resumed alert clears, acknowledgement kept
        tag(c, "d1", "health", "ok").await;
        let after = alerts_until(c, |a| a.iter().all(|x| x.state() == AlertState::Cleared)).await;
        assert_eq!(after.len(), 2, "{after:?}");
        let cleared = c.get_alert(&health.id).await.unwrap();
        assert_eq!(cleared.raised_at, health.raised_at);
        assert_eq!(cleared.acknowledged, health.acknowledged);
        assert_eq!(cleared.cleared.map(|(_, counts)| counts.matching), Some(0));
        let power = of(&before, "power")[0];
        assert_eq!(c.get_alert(&power.id).await.unwrap(), *power);
    });
    hub.kill9();
}
