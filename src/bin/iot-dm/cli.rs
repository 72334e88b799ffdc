//! The command line, as clap types.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run an iot-dm hub, and manage its devices, twins, queries, methods, jobs, configurations
/// and alerts.
#[derive(Debug, Parser)]
#[command(
    name = "iot-dm",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 success, 1 failure, 2 bad usage or input, 3 refused access (401/403), 4 not found.\nStart with `iot-dm hub`: it prints the connection string the other commands take."
)]
pub struct Cli {
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// How to reach the hub (not used by `iot-dm hub`).
    #[command(flatten)]
    pub remote: Remote,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a hub: the embedded store, MQTT over TLS for devices, the REST API for back ends.
    Hub(HubArgs),
    /// Device identities: create, show, list, update, lifecycle, keys.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Device twins.
    #[command(subcommand)]
    Twin(TwinCommand),
    /// Query twins with IoT Hub's SQL dialect; pages through every result.
    Query(QueryArgs),
    /// Direct methods.
    #[command(subcommand)]
    Method(MethodCommand),
    /// Print connection strings.
    #[command(subcommand, name = "connection-string")]
    ConnectionString(ConnectionStringCommand),
    /// Shared access policies (the owner's: needs a policy with every right).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Jobs: twin updates and direct methods over many devices, with a rollout policy.
    #[command(subcommand)]
    Job(crate::job::args::JobCommand),
    /// Automatic device configurations: desired properties for every device a target
    /// selects, by priority, with live metrics.
    #[command(subcommand)]
    Configuration(crate::configuration::args::ConfigurationCommand),
    /// Fleet alerts: rules over a scope's devices, the alerts they raise, acknowledgements,
    /// and a live table of alerts.
    #[command(subcommand)]
    Alert(crate::alert::args::AlertCommand),
    /// The hub's event stream: twin changes, connections, identities, telemetry, job
    /// progress; one line per event, or one JSON object per line with --json.
    Events(crate::events::EventsArgs),
    /// Firmware images in the hub's artifact store: upload, list, delete.
    #[command(subcommand)]
    Firmware(crate::firmware::FirmwareCommand),
}

/// `iot-dm hub`.
#[derive(Debug, Args)]
pub struct HubArgs {
    /// Where the store and the development certificates live.
    #[arg(long, default_value = "iot-dm-data")]
    pub data: PathBuf,
    /// MQTT over TLS for devices.
    #[arg(long, default_value = "127.0.0.1:8883")]
    pub mqtt: SocketAddr,
    /// The REST API (HTTPS) for back ends and this tool.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub rest: SocketAddr,
    /// The host name devices and back ends put in their tokens.
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Write the owner (iothubowner) connection string to this file (mode 0600) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    pub owner_connection_string_file: Option<PathBuf>,
    /// What the hub logs on stderr: a level (error, warn, info, debug, trace) or per-module
    /// directives such as `info,iot_dm_service::mqtt=debug`. Without it, `RUST_LOG` is read,
    /// then `info`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log JSON lines (one object per event) instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// The largest firmware image `iot-dm firmware upload` (or `POST /artifacts`) may store,
    /// in bytes (1 GiB by default). Images live in `{data}/hub.artifacts/`.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub max_artifact_size: u64,
}

/// How to reach a hub.
#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// A service connection string: HostName=...;SharedAccessKeyName=...;SharedAccessKey=...
    #[arg(
        long,
        env = "IOT_DM_CONNECTION_STRING",
        hide_env_values = true,
        global = true
    )]
    pub connection_string: Option<String>,
    /// The hub's REST API address. Default: `https://{HostName}` (port 443), or, for a
    /// `localhost` hub, `https://127.0.0.1:8443` where `iot-dm hub` listens by default.
    #[arg(long, env = "IOT_DM_URL", global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The CA certificate (PEM) of a self-hosted hub (`iot-dm hub` prints its path). Default
    /// for a `localhost` hub: `iot-dm-data/certs/ca.pem` when it exists.
    #[arg(long, env = "IOT_DM_CA", global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// `iot-dm device ...`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Create a device (generated keys), or many from a file with --from.
    Create(CreateArgs),
    /// Show a device identity.
    Show(DeviceIdArgs),
    /// List device identities.
    List(ListArgs),
    /// Change a device's capabilities or keys.
    Update(UpdateArgs),
    /// Disable a device (it is disconnected and refused on connect).
    Disable(DisableArgs),
    /// Enable a disabled device.
    Enable(DeviceIdArgs),
    /// Retire a device: credentials revoked, twin archived.
    Retire(DeviceIdArgs),
    /// Delete a device and its twin.
    Delete(DeleteArgs),
    /// Show or regenerate a device's symmetric keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// A device id and the hub.
#[derive(Debug, Args)]
pub struct DeviceIdArgs {
    /// The device id.
    pub device_id: String,
}

/// `device create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The device id (omit with --from).
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub device_id: Option<String>,
    /// Create the devices listed in a file: JSON lines (a string id, or an object with
    /// `deviceId` or `id` and optionally tags and properties) or CSV (device id in the first
    /// column; a `deviceId` header is skipped). Sent 100 at a time.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Initial tags (JSON object).
    #[arg(long, value_name = "JSON", conflicts_with = "from")]
    pub tags: Option<String>,
    /// Initial desired properties (JSON object).
    #[arg(long, value_name = "JSON", conflicts_with = "from")]
    pub desired: Option<String>,
    /// Create it disabled, with this reason.
    #[arg(long, value_name = "REASON", conflicts_with = "from")]
    pub disabled: Option<String>,
}

/// `device list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Stop after this many devices (all by default).
    #[arg(long)]
    pub top: Option<usize>,
}

/// `device update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The device id.
    pub device_id: String,
    /// Whether the device is an IoT Edge gateway.
    #[arg(long, value_name = "BOOL")]
    pub iot_edge: Option<bool>,
    /// A new primary key (base64, 16 to 64 bytes).
    #[arg(long, value_name = "KEY")]
    pub primary_key: Option<String>,
    /// A new secondary key (base64, 16 to 64 bytes).
    #[arg(long, value_name = "KEY")]
    pub secondary_key: Option<String>,
    /// Only if the identity's ETag is still this.
    #[arg(long)]
    pub etag: Option<String>,
}

/// `device disable`.
#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The device id.
    pub device_id: String,
    /// Why (kept as the status reason).
    #[arg(long, default_value = "disabled by an operator")]
    pub reason: String,
}

/// `device delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The device id.
    pub device_id: String,
    /// Only if the identity's ETag is still this.
    #[arg(long)]
    pub etag: Option<String>,
}

/// `device keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the device's keys.
    Show(DeviceIdArgs),
    /// Regenerate the primary or secondary key, or swap the two (the device is disconnected).
    Regenerate(RegenerateArgs),
}

/// Which key.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    /// The primary key.
    Primary,
    /// The secondary key.
    Secondary,
    /// Swap primary and secondary.
    Swap,
}

impl From<Which> for iot_dm::service::hub::KeyKind {
    fn from(which: Which) -> Self {
        match which {
            Which::Primary => Self::Primary,
            Which::Secondary => Self::Secondary,
            Which::Swap => Self::Swap,
        }
    }
}

/// `device keys regenerate`.
#[derive(Debug, Args)]
pub struct RegenerateArgs {
    /// The device id.
    pub device_id: String,
    /// Which key.
    #[arg(value_enum)]
    pub which: Which,
}

/// `iot-dm twin ...`.
#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Show a twin.
    Show(DeviceIdArgs),
    /// Merge a patch of tags and desired properties into a twin.
    Update(TwinUpdateArgs),
}

/// `twin update`.
#[derive(Debug, Args)]
pub struct TwinUpdateArgs {
    /// The device id.
    pub device_id: String,
    /// The patch: `{"tags":{...},"properties":{"desired":{...}}}`; `@FILE` reads a file, `-`
    /// standard input.
    pub patch: String,
    /// Only if the twin's ETag is still this.
    #[arg(long)]
    pub etag: Option<String>,
}

/// `iot-dm query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The query, e.g. "SELECT * FROM devices WHERE tags.site = 'north'".
    pub sql: String,
    /// Rows fetched per request (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Stop after this many rows (all by default).
    #[arg(long)]
    pub top: Option<usize>,
    /// Query the archive of retired devices instead of live twins.
    #[arg(long)]
    pub archive: bool,
}

/// `iot-dm method ...`.
#[derive(Debug, Subcommand)]
pub enum MethodCommand {
    /// Invoke a direct method on a connected device and print its answer.
    Invoke(InvokeArgs),
}

/// `method invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The device id.
    pub device_id: String,
    /// The method name.
    pub name: String,
    /// The payload (JSON; `@FILE` reads a file).
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// Seconds to wait for the device's answer (5 to 300).
    #[arg(long, default_value_t = 30)]
    pub timeout: u32,
    /// Seconds to wait for a disconnected device to come online (0 to 300).
    #[arg(long, default_value_t = 0)]
    pub connect_timeout: u32,
}

/// `iot-dm connection-string ...`.
#[derive(Debug, Subcommand)]
pub enum ConnectionStringCommand {
    /// A device's connection string (with its primary key).
    Device(DeviceIdArgs),
    /// The service connection string of a shared access policy.
    Service(ServiceCsArgs),
}

/// `connection-string service`.
#[derive(Debug, Args)]
pub struct ServiceCsArgs {
    /// The policy (default: the one of the connection string in use).
    #[arg(long)]
    pub policy: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_needs_an_id_or_a_file_but_not_both() {
        assert!(Cli::try_parse_from(["iot-dm", "device", "create"]).is_err());
        assert!(Cli::try_parse_from(["iot-dm", "device", "create", "d1", "--from", "f"]).is_err());
        Cli::try_parse_from(["iot-dm", "device", "create", "--from", "f.csv"]).unwrap();
        let cli = Cli::try_parse_from(["iot-dm", "--json", "device", "create", "d1"]).unwrap();
        assert!(cli.json);
    }
}

/// `iot-dm policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List the policies with their rights and rate limits (keys with `--json`).
    List,
    /// Create or replace a policy; the hub generates its keys.
    Create(PolicyCreateArgs),
    /// Delete a policy (its tokens stop working at once).
    Delete(PolicyNameArgs),
    /// Regenerate a policy's key (tokens signed with the old key stop working).
    Regenerate(PolicyRegenerateArgs),
}

/// `policy create`.
#[derive(Debug, Args)]
pub struct PolicyCreateArgs {
    /// The policy name.
    pub name: String,
    /// Its rights, IoT Hub's names: e.g. "RegistryRead, ServiceConnect".
    #[arg(long)]
    pub rights: String,
    /// Requests per second the policy may make (with --burst); 0 for unlimited. Default: the
    /// hub's default limit.
    #[arg(long)]
    pub per_second: Option<u32>,
    /// Requests the policy may make at once.
    #[arg(long)]
    pub burst: Option<u32>,
}

/// A policy name.
#[derive(Debug, Args)]
pub struct PolicyNameArgs {
    /// The policy name.
    pub name: String,
}

/// `policy regenerate`.
#[derive(Debug, Args)]
pub struct PolicyRegenerateArgs {
    /// The policy name.
    pub name: String,
    /// Which key.
    #[arg(value_enum)]
    pub which: Which,
}
