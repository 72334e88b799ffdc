//! End to end: the `iot-dm` binary runs a hub (redb store, MQTT/TLS, REST/TLS with development
//! certificates) on free 127.0.0.1 ports, and operator commands manage it over HTTPS with the
//! owner connection string the hub wrote. A device connects over MQTT/TLS with the connection
//! string the tool printed and answers a direct method the tool invokes. Exit codes are checked
//! for success, refused access, not found and bad input.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions, unwrap

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use iot_dm::core::method::MethodResponse;
use iot_dm::device::{DeviceClient, DeviceCredentials, MqttTransport};

#[path = "common/hub_process.rs"]
mod hub_process;

use hub_process::{code, stderr, HubProcess, BIN};

#[test]
fn operate_a_hub_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path());
    assert!(hub.owner_cs.contains("SharedAccessKeyName=iothubowner"));

    // create one, then 150 from a CSV file (two bulk requests)
    let created = hub.json(&["device", "create", "pump-1", "--tags", r#"{"kind":"pump"}"#]);
    assert_eq!(created["deviceId"], "pump-1");
    assert_eq!(created["status"], "enabled");
    let csv: String = std::iter::once("deviceId\n".to_string())
        .chain((0..150).map(|i| format!("sensor-{i:03}\n")))
        .collect();
    let file = dir.path().join("devices.csv");
    std::fs::write(&file, csv).unwrap();
    let text = hub.ok(&["device", "create", "--from", file.to_str().unwrap()]);
    assert!(text.contains("created 150 of 150"), "{text}");

    // list: a table for people, JSON for scripts
    let table = hub.ok(&["device", "list"]);
    assert!(table.starts_with("DEVICE ID"), "{table}");
    assert!(table.contains("151 device(s)"), "{table}");
    let list = hub.json(&["device", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 151);

    // twin update, then query it back
    let twin = hub.json(&[
        "twin",
        "update",
        "pump-1",
        r#"{"tags":{"site":"north"},"properties":{"desired":{"rate":5}}}"#,
    ]);
    assert_eq!(twin["tags"]["site"], "north");
    let rows = hub.json(&[
        "query",
        "SELECT deviceId, tags.site FROM devices WHERE tags.site = 'north'",
    ]);
    assert_eq!(
        rows,
        serde_json::json!([{"deviceId": "pump-1", "site": "north"}])
    );
    let rows = hub.json(&["query", "SELECT deviceId FROM devices", "--page-size", "40"]);
    assert_eq!(rows.as_array().unwrap().len(), 151);

    // a device connection string
    let cs = hub.ok(&["connection-string", "device", "sensor-007"]);
    assert!(
        cs.starts_with("HostName=localhost;DeviceId=sensor-007;SharedAccessKey="),
        "{cs}"
    );

    // a device connects over MQTT/TLS with that connection string and answers a method
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(async {
        let creds = DeviceCredentials::from_connection_string(cs.trim()).unwrap();
        let transport = MqttTransport::builder("localhost")
            .port(hub.mqtt_port)
            .ca_pem(std::fs::read(&hub.ca).unwrap())
            .build()
            .unwrap();
        let client = DeviceClient::builder(creds, transport)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        client.on_method("reboot", |call| async move {
            MethodResponse::new(
                200,
                serde_json::json!({"rebootingIn": call.payload["delay"]}),
            )
            .unwrap()
        });
        client
    });
    let answer = hub.json(&[
        "method",
        "invoke",
        "sensor-007",
        "reboot",
        "--payload",
        r#"{"delay":5}"#,
        "--timeout",
        "10",
    ]);
    assert_eq!(
        answer,
        serde_json::json!({"status": 200, "payload": {"rebootingIn": 5}})
    );
    let shown = hub.json(&["device", "show", "sensor-007"]);
    assert_eq!(shown["connectionState"], "Connected");
    // a device that is not connected: exit 1, with the hub's reason
    let out = hub.run(&["method", "invoke", "sensor-008", "reboot", "--timeout", "5"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("not online"), "{}", stderr(&out));
    runtime.block_on(client.close());

    // lifecycle
    let disabled = hub.json(&["device", "disable", "pump-1", "--reason", "maintenance"]);
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(
        hub.json(&["device", "show", "pump-1"])["statusReason"],
        "maintenance"
    );
    hub.ok(&["device", "delete", "pump-1"]);

    // not found: exit 4
    let out = hub.run(&["device", "show", "pump-1"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("pump-1"), "{}", stderr(&out));

    // a wrong key: refused, exit 3
    let other_key = "aW90LWRtIGtub3duLWFuc3dlciB0ZXN0IGtleSAzMmI=";
    let bad =
        format!("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey={other_key}");
    let out = hub.run_as(&bad, &["device", "list"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));

    // the service connection string in use
    let cs = hub.ok(&["connection-string", "service"]);
    assert_eq!(cs.trim(), hub.owner_cs);

    // access policies: a read-only one for a dashboard, its connection string, refused writes
    let created = hub.json(&["policy", "create", "dashboard", "--rights", "RegistryRead"]);
    assert_eq!(created["rights"], "RegistryRead");
    let listed = hub.ok(&["policy", "list"]);
    assert!(
        listed.contains("dashboard") && listed.contains("iothubowner"),
        "{listed}"
    );
    let dash_cs = hub.ok(&["connection-string", "service", "--policy", "dashboard"]);
    let dash_cs = dash_cs.trim();
    assert!(
        dash_cs.contains("SharedAccessKeyName=dashboard"),
        "{dash_cs}"
    );
    let out = hub.run_as(dash_cs, &["device", "show", "sensor-001"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = hub.run_as(dash_cs, &["device", "create", "intruder"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let out = hub.run_as(dash_cs, &["policy", "list"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let out = hub.run(&["policy", "create", "bad", "--rights", "Everything"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    hub.ok(&["policy", "delete", "dashboard"]);
    let out = hub.run_as(dash_cs, &["device", "show", "sensor-001"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));

    // bad JSON: exit 2, before anything is sent
    let out = hub.run(&["twin", "update", "sensor-001", "{\"tags\": }"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
    // bad usage: exit 2
    assert_eq!(code(&hub.run(&["device", "frobnicate"])), 2);

    hub.stop();
}

/// `iot-dm hub` logs to stderr: JSON lines with `--log-json`, filtered by `--log`, with no
/// key in it; a filter that does not parse is bad usage.
#[test]
fn the_hub_logs_json_lines_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("hub.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let hub = HubProcess::start_with(dir.path(), &["--log-json", "--log", "info"], log.into());
    // a refused request (a well-formed key that is not the policy's), so there is a warning
    let key = hub
        .owner_cs
        .split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .to_string();
    let wrong = hub
        .owner_cs
        .replace(&key, "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1mb3ItdGVzdHM=");
    for _ in 0..3 {
        let out = hub.run_as(&wrong, &["device", "list"]);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
    }
    hub.stop();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l}: {e}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"mqtt endpoint listening"),
        "{messages:?}"
    );
    assert!(messages.contains(&"hub opened"), "{messages:?}");
    assert!(lines.iter().all(|l| l["level"].is_string()), "{text}");
    // three refusals from one address within a minute: one warning
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "rest request refused")
        .collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(refused[0]["level"], "WARN");
    assert_eq!(refused[0]["fields"]["status"], 401);
    assert!(!text.contains(&key), "the log holds the owner key");

    let quiet_path = dir.path().join("quiet.log");
    let quiet = std::fs::File::create(&quiet_path).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let hub = HubProcess::start_with(dir2.path(), &["--log", "error"], quiet.into());
    hub.stop();
    let text = std::fs::read_to_string(&quiet_path).unwrap();
    assert!(!text.contains("INFO"), "{text}");

    let out = Command::new(BIN)
        .args(["hub", "--log", "info,=[bad"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--log"), "{}", stderr(&out));
}
