//! The `iot-dm hub` process on free 127.0.0.1 ports (redb store, MQTT/TLS, REST/TLS with
//! development certificates), operator commands run against it with the owner connection
//! string it wrote, and devices connected to it over MQTT/TLS.

// each test uses what it needs of this
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use iot_dm::device::{DeviceClient, DeviceCredentials, MqttTransport};

/// The tool under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_iot-dm");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The hub process; killed when dropped (a failing test leaves nothing behind).
pub struct HubProcess {
    child: Child,
    /// Where devices connect (MQTT over TLS).
    pub mqtt_port: u16,
    /// Where the REST API listens.
    pub rest_port: u16,
    /// The owner (iothubowner) connection string.
    pub owner_cs: String,
    /// The REST API.
    pub url: String,
    /// The development CA.
    pub ca: PathBuf,
}

impl HubProcess {
    /// Starts a hub keeping its data under `dir`.
    pub fn start(dir: &Path) -> HubProcess {
        HubProcess::start_on(dir, free_port(), free_port())
    }

    /// Starts a hub keeping its data under `dir`, serving MQTT and REST on these 127.0.0.1
    /// ports (a restart on the ports of a hub that was killed: its devices reconnect by
    /// themselves).
    pub fn start_on(dir: &Path, mqtt: u16, rest: u16) -> HubProcess {
        HubProcess::spawn(dir, mqtt, rest, &["--log", "warn"], Stdio::inherit())
    }

    /// Starts a hub with `extra` arguments (they replace the default `--log warn`), its
    /// stderr (the operational log) going to `log`.
    pub fn start_with(dir: &Path, extra: &[&str], log: Stdio) -> HubProcess {
        HubProcess::spawn(dir, free_port(), free_port(), extra, log)
    }

    fn spawn(dir: &Path, mqtt: u16, rest: u16, extra: &[&str], log: Stdio) -> HubProcess {
        let cs_file = dir.join("owner.cs");
        // the file a killed hub wrote is no sign that this one is up
        let _ = std::fs::remove_file(&cs_file);
        let child = Command::new(BIN)
            .args(["hub", "--data"])
            .arg(dir.join("data"))
            .args(["--mqtt", &format!("127.0.0.1:{mqtt}")])
            .args(["--rest", &format!("127.0.0.1:{rest}")])
            .args(["--host", "localhost", "--owner-connection-string-file"])
            .arg(&cs_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut hub = HubProcess {
            child,
            mqtt_port: mqtt,
            rest_port: rest,
            owner_cs: String::new(),
            url: format!("https://127.0.0.1:{rest}"),
            ca: dir.join("data").join("certs").join("ca.pem"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cs_file.exists() {
            if let Some(status) = hub.child.try_wait().unwrap() {
                panic!("the hub exited early: {status}");
            }
            assert!(Instant::now() < deadline, "the hub did not start in 30 s");
            std::thread::sleep(Duration::from_millis(25));
        }
        hub.owner_cs = std::fs::read_to_string(&cs_file).unwrap();
        hub
    }

    /// Kills the hub with SIGKILL (no shutdown, no flush) and reaps it.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A back-end client for the REST API, as the owner.
    pub fn service_client(&self) -> iot_dm::service::client::ServiceClient {
        iot_dm::service::client::ServiceClient::builder(self.owner_cs.trim())
            .unwrap()
            .ca_pem(std::fs::read(&self.ca).unwrap())
            .base_url(&self.url)
            .unwrap()
            .request_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    /// Runs `iot-dm ARGS` against this hub with `cs` as the connection string (stdout and
    /// stderr are pipes).
    pub fn run_as(&self, cs: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("IOT_DM_CONNECTION_STRING", cs)
            .env("IOT_DM_URL", &self.url)
            .env("IOT_DM_CA", &self.ca)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `iot-dm ARGS` against this hub as the owner (stdout and stderr are pipes).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.owner_cs, args)
    }

    /// Sends SIGTERM and expects a clean exit within 10 s.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        if sent.map(|s| s.success()).unwrap_or(false) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(status) = self.child.try_wait().unwrap() {
                    assert!(status.success(), "the hub exited with {status}");
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            panic!("the hub did not stop within 10 s of SIGTERM");
        }
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "iot-dm {args:?} failed: {}\n{}",
            out.status,
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--json` and expects success; returns the parsed stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Connects device `id` (created with `iot-dm device create`) over MQTT/TLS with the
    /// connection string the tool prints.
    pub async fn connect(&self, id: &str) -> DeviceClient {
        let cs = self.ok(&["connection-string", "device", id]);
        let creds = DeviceCredentials::from_connection_string(cs.trim()).unwrap();
        let transport = MqttTransport::builder("localhost")
            .port(self.mqtt_port)
            .ca_pem(std::fs::read(&self.ca).unwrap())
            .build()
            .unwrap();
        DeviceClient::builder(creds, transport)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exit code (-1 when killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
