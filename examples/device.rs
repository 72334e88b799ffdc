//! One simulated device with every device-management pattern enabled (reboot, factory reset,
//! configuration acknowledgements, firmware update), connected over MQTT/TLS until Ctrl-C.
//! It prints one line per pattern event; the handlers' own log goes to stderr
//! (`RUST_LOG=iot_dm_device=debug` for more).
//!
//! ```text
//! cargo run --example device -- --connection-string 'HostName=...;DeviceId=...;SharedAccessKey=...' \
//!     [--ca FILE] [--port PORT] [--state-dir DIR] [--firmware-version VERSION]
//! ```
//!
//! - `--connection-string` (or `IOT_DM_DEVICE_CONNECTION_STRING`): the device's connection
//!   string; the device connects to its `HostName`.
//! - `--ca FILE`: trust only this CA (PEM) for MQTT and for firmware downloads, e.g. a
//!   self-hosted hub's development CA. Without it, the platform's trust store, which is what
//!   Azure IoT Hub and public download servers chain to.
//! - `--port PORT`: the MQTT/TLS port (8883).
//! - `--state-dir DIR`: keep the patterns' state, the downloads and the simulated firmware
//!   version there, so a device stopped in the middle of a reboot or an update reports how it
//!   ended when it is started again. Without it, state lives in memory and downloads in the
//!   system temp directory.
//! - `--firmware-version VERSION`: the version the device runs at first (1.0.0).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use serde_json::Value;

use iot_dm::core::patterns::FirmwareUpdateRequest;
use iot_dm::device::patterns::{
    ConfigurationHooks, FactoryResetHooks, FilePatternState, FirmwareHooks, FirmwareOptions,
    HookError, MemoryPatternState, PatternState, PatternsError, RebootHooks, Rejection,
    SimulatedDevice,
};
use iot_dm::device::{DeviceClient, DeviceCredentials, MqttTransport};

/// A simulated device with every device-management pattern enabled.
#[derive(Debug, Parser)]
struct Args {
    /// The device connection string: HostName=...;DeviceId=...;SharedAccessKey=...
    #[arg(long, env = "IOT_DM_DEVICE_CONNECTION_STRING", hide_env_values = true)]
    connection_string: String,
    /// Trust only this CA certificate (PEM) for MQTT and firmware downloads.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The MQTT/TLS port.
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// Where the patterns' state, the downloads and the firmware version are kept.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The firmware version the device runs at first.
    #[arg(long, default_value = "1.0.0")]
    firmware_version: String,
}

/// Why the device could not start.
#[derive(Debug, thiserror::Error)]
enum DeviceError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the connection string has no HostName")]
    NoHost,
    #[error(transparent)]
    Client(#[from] iot_dm::device::Error),
    #[error(transparent)]
    Patterns(#[from] PatternsError),
    #[error("waiting for Ctrl-C: {0}")]
    Signal(std::io::Error),
}

/// The simulated device's hooks, printing a line for each pattern event; the version it
/// runs is saved in `version_file` (with `--state-dir`) after every firmware reboot.
#[derive(Debug, Clone)]
struct Narrated {
    sim: SimulatedDevice,
    version_file: Option<PathBuf>,
}

#[async_trait::async_trait]
impl RebootHooks for Narrated {
    async fn reboot(&self, client: &DeviceClient) -> Result<(), HookError> {
        println!("reboot: rebooting");
        RebootHooks::reboot(&self.sim, client).await?;
        println!("reboot: back online");
        Ok(())
    }
}

#[async_trait::async_trait]
impl FactoryResetHooks for Narrated {
    async fn factory_reset(&self, client: &DeviceClient, keep: bool) -> Result<(), HookError> {
        println!("factory reset: resetting (keep network configuration: {keep})");
        self.sim.factory_reset(client, keep).await?;
        println!("factory reset: back online with factory settings");
        Ok(())
    }
}

#[async_trait::async_trait]
impl ConfigurationHooks for Narrated {
    async fn apply(&self, name: &str, value: &Value) -> Result<(), Rejection> {
        ConfigurationHooks::apply(&self.sim, name, value).await?;
        println!("configuration: {name} = {value} applied");
        Ok(())
    }
}

#[async_trait::async_trait]
impl FirmwareHooks for Narrated {
    fn current_version(&self) -> String {
        self.sim.current_version()
    }

    async fn downloaded(&self, image: &Path) -> Result<(), HookError> {
        println!("firmware: downloaded {}; verifying", image.display());
        self.sim.downloaded(image).await
    }

    async fn apply(&self, image: &Path, request: &FirmwareUpdateRequest) -> Result<(), HookError> {
        println!(
            "firmware: verified; installing {}",
            request.target_version()
        );
        FirmwareHooks::apply(&self.sim, image, request).await
    }

    async fn reboot(&self, client: &DeviceClient) -> Result<(), HookError> {
        println!("firmware: rebooting into the new image");
        FirmwareHooks::reboot(&self.sim, client).await?;
        let version = self.sim.current_version();
        if let Some(file) = &self.version_file {
            if let Err(e) = std::fs::write(file, &version) {
                eprintln!(
                    "cannot save the firmware version in {}: {e}",
                    file.display()
                );
            }
        }
        println!("firmware: back online, running {version}");
        Ok(())
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, DeviceError> {
    std::fs::read(path).map_err(|source| DeviceError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

async fn run(args: Args) -> Result<(), DeviceError> {
    let credentials = DeviceCredentials::from_connection_string(args.connection_string.trim())?;
    let host = credentials
        .host_name()
        .ok_or(DeviceError::NoHost)?
        .to_string();
    let id = credentials.device_id().to_string();
    let ca = args.ca.as_deref().map(|p| read("reading", p)).transpose()?;

    let (state, download_dir, version_file): (Arc<dyn PatternState>, PathBuf, Option<PathBuf>) =
        match &args.state_dir {
            Some(dir) => (
                Arc::new(FilePatternState::open(dir.join("patterns"))?),
                dir.join("downloads"),
                Some(dir.join("firmware-version")),
            ),
            None => (
                Arc::new(MemoryPatternState::new()),
                std::env::temp_dir().join(format!("iot-dm-device-{id}")),
                None,
            ),
        };
    let version = match &version_file {
        Some(file) if file.exists() => String::from_utf8_lossy(&read("reading", file)?)
            .trim()
            .to_string(),
        _ => args.firmware_version.clone(),
    };
    let device = Narrated {
        sim: SimulatedDevice::new(version.clone()),
        version_file,
    };

    let mut transport = MqttTransport::builder(host.as_str()).port(args.port);
    let mut firmware = FirmwareOptions::new(download_dir);
    if let Some(pem) = &ca {
        transport = transport.ca_pem(pem.clone());
        firmware = firmware.trusted_ca_pem(pem)?;
    }
    let client = DeviceClient::builder(credentials, transport.build()?)
        .connect()
        .await?;
    println!(
        "{id}: connected to {host}:{}, running firmware {version}",
        args.port
    );

    client.enable_reboot(device.clone(), state.clone()).await?;
    client
        .enable_factory_reset(device.clone(), state.clone())
        .await?;
    client.enable_configuration(device.clone()).await?;
    client.enable_firmware(device, state, firmware).await?;
    println!(
        "{id}: reboot, factory reset, configuration and firmware update enabled; Ctrl-C to stop"
    );

    let waited = tokio::signal::ctrl_c().await;
    client.close().await;
    println!("{id}: closed");
    waited.map_err(DeviceError::Signal)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("iot_dm_device=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
