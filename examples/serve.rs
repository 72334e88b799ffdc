//! Serves a hub that devices built with the official Azure IoT device SDKs (or our Rust client)
//! connect to over MQTT/TLS, until Ctrl-C.
//!
//! ```text
//! cargo run --example serve -- [--data DIR] [--listen ADDR] [--wss ADDR] [--dev-certs] [--device ID]
//! ```
//!
//! - `--data DIR`: where the store and certificates live (default `./iot-dm-data`).
//! - `--listen ADDR`: MQTT over TLS (default `127.0.0.1:8883`, the port the SDKs use).
//! - `--wss ADDR`: also serve MQTT over WebSocket/TLS at `/$iothub/websocket`.
//! - `--dev-certs`: create (first run) or reuse a development CA and a server certificate for
//!   `localhost` and `127.0.0.1` in `DIR/certs`, so no one needs openssl; devices trust
//!   `DIR/certs/ca.pem`.
//! - `--device ID`: make sure a device exists and print its connection string (default
//!   `demo-device`).

use std::net::SocketAddr;

use iot_dm::service::hub::{DeviceSpec, Hub};
use iot_dm::service::mqtt::Listener;
use iot_dm::service::tls::dev_certs::DevCerts;
use iot_dm::service::HubServer;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

#[tokio::main]
async fn main() -> Result<()> {
    let data = std::path::PathBuf::from(arg("--data").unwrap_or_else(|| "iot-dm-data".into()));
    let listen: SocketAddr = arg("--listen")
        .unwrap_or_else(|| "127.0.0.1:8883".into())
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let wss: Option<SocketAddr> = arg("--wss")
        .map(|a| a.parse().map_err(|e| format!("--wss: {e}")))
        .transpose()?;
    let device = arg("--device").unwrap_or_else(|| "demo-device".into());
    if !std::env::args().any(|a| a == "--dev-certs") {
        return Err(
            "only development certificates are supported by this example: pass --dev-certs".into(),
        );
    }
    std::fs::create_dir_all(&data)?;
    let certs = DevCerts::load_or_create(data.join("certs"))?;
    let ca_path = data.join("certs").join("ca.pem");
    std::fs::write(&ca_path, certs.ca_pem())?;

    let hub = Hub::builder()
        .path(data.join("hub.redb"))
        .host_name("localhost")
        .open()
        .await?;
    let mut builder = HubServer::builder(hub.clone())
        .mqtt_listen(Listener::Tls, listen)
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem());
    if let Some(addr) = wss {
        builder = builder.mqtt_listen(Listener::Wss, addr);
    }
    let server = builder.start().await?;

    let d = match hub.get_device(&device) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => hub.create_device(DeviceSpec::new(device.parse()?)).await?,
        Err(e) => return Err(e.into()),
    };
    let key = d.symmetric_key.primary_key.unwrap_or_default();
    println!(
        "hub: {} devices, store {}",
        hub.device_count(),
        data.join("hub.redb").display()
    );
    for (kind, addr) in server.mqtt_addrs() {
        println!("listening: {} on {addr}", kind.as_str());
    }
    println!("devices trust: {}", ca_path.display());
    println!("connection string for {device}:");
    println!("  HostName=localhost;DeviceId={device};SharedAccessKey={key}");
    println!("Ctrl-C to stop");

    tokio::signal::ctrl_c().await?;
    server.shutdown().await?;
    Ok(())
}
