//! `iot-dm hub`: a hub on the embedded store, MQTT/TLS for devices, REST for back ends.

use std::io::Write;
use std::path::Path;

use iot_dm::service::access::Rights;
use iot_dm::service::mqtt::Listener;
use iot_dm::service::tls::dev_certs::DevCerts;
use iot_dm::service::{Hub, HubServer, HubServerError};

use crate::cli::HubArgs;
use crate::error::{CliError, CliResult};
use crate::output::Out;

/// The hub's operational log on stderr: `--log`, else `RUST_LOG`, else `info`; text, or JSON
/// lines with `--log-json`. The hub logs no keys, tokens or signatures.
fn install_log(args: &HubArgs) -> CliResult {
    use tracing_subscriber::EnvFilter;
    let filter = match &args.log {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|e| CliError::usage(format!("--log {directives:?}: {e}")))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if args.log_json {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    // a subscriber installed already (by an embedding program) keeps its place
    let _ = installed;
    Ok(())
}

/// Runs until Ctrl-C (or SIGTERM), then shuts down cleanly.
pub async fn run(args: &HubArgs, out: &mut Out<'_>) -> CliResult {
    install_log(args)?;
    let data = &args.data;
    std::fs::create_dir_all(data)
        .map_err(|e| CliError::io(format!("creating {}", data.display()), e))?;
    let certs_dir = data.join("certs");
    let certs = DevCerts::load_or_create(&certs_dir).map_err(|e| {
        CliError::Partial(format!(
            "development certificates in {}: {e}",
            certs_dir.display()
        ))
    })?;
    let ca_path = certs_dir.join("ca.pem");
    std::fs::write(&ca_path, certs.ca_pem())
        .map_err(|e| CliError::io(format!("writing {}", ca_path.display()), e))?;

    let hub = Hub::builder()
        .path(data.join("hub.redb"))
        .host_name(&args.host)
        .max_artifact_size(args.max_artifact_size)
        .open()
        .await?;
    let server = HubServer::builder(hub.clone())
        .mqtt_listen(Listener::Tls, args.mqtt)
        .rest_listen(args.rest)
        .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
        .start()
        .await
        .map_err(|e| CliError::Partial(e.to_string()))?;

    let owner = owner_policy(&hub)?;
    let cs = hub.service_connection_string(&owner)?;
    let rest_addr = server
        .rest_addr()
        .ok_or_else(|| CliError::Partial("the REST API is not running".into()))?;
    let rest_url = format!("https://{rest_addr}");
    let mqtt_addrs: Vec<String> = server
        .mqtt_addrs()
        .iter()
        .map(|(_, a)| a.to_string())
        .collect();
    out.line(format!(
        "hub {}: {} device(s), store {}",
        args.host,
        hub.device_count(),
        data.join("hub.redb").display()
    ))?;
    out.line(format!("REST API (back ends, iot-dm): {rest_url}"))?;
    out.line(format!(
        "MQTT over TLS (devices):      {}",
        mqtt_addrs.join(", ")
    ))?;
    out.line(format!(
        "CA certificate:               {}",
        ca_path.display()
    ))?;
    match &args.owner_connection_string_file {
        Some(file) => {
            write_secret(file, &cs)?;
            out.line(format!(
                "owner ({owner}) connection string written to {}",
                file.display()
            ))?;
        }
        None => {
            out.line(format!("owner ({owner}) connection string:"))?;
            out.line(format!("  {cs}"))?;
        }
    }
    out.line("manage it from another shell:")?;
    let shown_cs = match &args.owner_connection_string_file {
        Some(file) => format!("$(cat {})", file.display()),
        None => format!("'{cs}'"),
    };
    out.line(format!("  export IOT_DM_CONNECTION_STRING={shown_cs}"))?;
    out.line(format!(
        "  export IOT_DM_URL={rest_url} IOT_DM_CA={}",
        ca_path.display()
    ))?;
    out.line("  iot-dm device create my-device")?;
    out.line("Ctrl-C to stop")?;
    out.flush()?;

    wait_for_stop().await;
    server.shutdown().await.map_err(|e| match e {
        HubServerError::Hub(e) => CliError::Hub(e),
        e => CliError::Partial(e.to_string()),
    })?;
    out.line("hub stopped")
}

/// `iothubowner`, or the first policy with every right when that one was deleted.
fn owner_policy(hub: &Hub) -> CliResult<String> {
    let policies = hub.access_policies();
    policies
        .iter()
        .find(|p| p.key_name == "iothubowner")
        .or_else(|| policies.iter().find(|p| p.rights == Rights::ALL))
        .map(|p| p.key_name.clone())
        .ok_or_else(|| CliError::Partial("the hub has no policy with every right".into()))
}

/// Writes a secret file readable by its owner only, atomically (a reader never sees half).
fn write_secret(path: &Path, text: &str) -> CliResult {
    let tmp = path.with_extension("tmp");
    let io = |e| CliError::io(format!("writing {}", path.display()), e);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
