//! The hub the official-SDK conformance tests run against: a redb hub in a temporary
//! directory with development certificates (the CA also written as `ca.pem` for the SDKs),
//! serving MQTT over TLS on the port the SDKs use, and for the service SDKs the REST API.

// each test uses what it needs of this
#![allow(dead_code)]

use std::path::PathBuf;

use iot_dm::service::hub::Hub;
use iot_dm::service::mqtt::Listener;
use iot_dm::service::tls::dev_certs::DevCerts;
use iot_dm::service::HubServer;

/// The host name in the certificates and connection strings.
pub const HOST: &str = "localhost";
/// MQTT over TLS, where the SDKs connect.
pub const MQTT_ADDR: &str = "127.0.0.1:8883";

/// A running conformance hub; dropping it removes its directory.
pub struct SdkHub {
    /// Keeps the store and certificates for the hub's lifetime.
    pub _dir: tempfile::TempDir,
    /// The development CA and server certificate.
    pub certs: DevCerts,
    /// The CA certificate as a PEM file, for the SDKs.
    pub ca_path: PathBuf,
    /// The hub.
    pub hub: Hub,
    /// Its endpoints; shutting it down shuts the hub down too.
    pub server: HubServer,
}

impl SdkHub {
    /// Opens the hub and starts its MQTT endpoint on [`MQTT_ADDR`].
    pub async fn start() -> SdkHub {
        SdkHub::serve(None).await
    }

    /// Opens the hub and starts its MQTT endpoint on [`MQTT_ADDR`] and its REST API (HTTPS,
    /// same certificate) on `rest`.
    pub async fn start_with_rest(rest: &str) -> SdkHub {
        SdkHub::serve(Some(rest)).await
    }

    async fn serve(rest: Option<&str>) -> SdkHub {
        let dir = tempfile::tempdir().unwrap();
        let certs = DevCerts::load_or_create(dir.path().join("certs")).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, certs.ca_pem()).unwrap();
        let hub = Hub::builder()
            .path(dir.path().join("hub.redb"))
            .host_name(HOST)
            .open()
            .await
            .unwrap();
        let mut builder = HubServer::builder(hub.clone())
            .mqtt_listen(Listener::Tls, MQTT_ADDR.parse().unwrap())
            .tls_pem(certs.server_cert_pem(), certs.server_key_pem());
        if let Some(addr) = rest {
            builder = builder.rest_listen(addr.parse().unwrap());
        }
        let server = builder
            .start()
            .await
            .unwrap_or_else(|e| panic!("the conformance hub did not start: {e}"));
        SdkHub {
            _dir: dir,
            certs,
            ca_path,
            hub,
            server,
        }
    }
}

/// An SDK script running with its output piped: its stdout lines, where it reports its
/// steps, and its stderr collected in the background for failure messages.
pub struct Script {
    pub child: tokio::process::Child,
    pub stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pub stderr: tokio::task::JoinHandle<String>,
}

/// Starts `command` (the SDK's interpreter with its script and arguments) as a [`Script`],
/// killed when dropped.
pub fn spawn_script(sdk: &str, command: &mut tokio::process::Command) -> Script {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{sdk}: cannot start {:?}: {e}",
                command.as_std().get_program()
            )
        });
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    Script {
        child,
        stdout,
        stderr,
    }
}
