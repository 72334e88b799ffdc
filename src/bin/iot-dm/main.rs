//! `iot-dm`: run a hub, and manage its devices, twins, queries, direct methods, jobs,
//! configurations and alerts from the command line. Run `iot-dm --help` for the commands.
//!
//! Exit codes: 0 success, 1 failure (also: a followed job that did not complete), 2 bad usage
//! or input, 3 refused access (401/403), 4 not found.

mod alert;
mod bulk;
mod cli;
mod configuration;
mod connstr;
mod device;
mod error;
mod events;
mod firmware;
mod hub;
mod input;
mod job;
mod output;
mod policy;
mod remote;
mod twin;

#[cfg(test)]
mod test_util;

use std::io::IsTerminal;

use clap::Parser;

use iot_dm::service::api::ServiceApi;

use cli::{
    Cli, Command, ConnectionStringCommand, DeviceCommand, KeysCommand, MethodCommand,
    PolicyCommand, TwinCommand,
};
use error::{CliError, CliResult};
use output::Out;

/// mimalloc, not the system allocator: a hub holds millions of small twin documents, and
/// under glibc's malloc a twin job over a million of them spent about half its time in malloc,
/// free and consolidation (see `docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(error::EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(cli));
    if let Err(e) = result {
        eprintln!("error: {e}");
        if let Some(hint) = e.hint() {
            eprintln!("hint: {hint}");
        }
        std::process::exit(e.exit_code());
    }
}

async fn run(cli: Cli) -> CliResult {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let mut out = Out::new(&mut lock, cli.json);
    if let Command::Hub(args) = &cli.command {
        return hub::run(args, &mut out).await;
    }
    let remote = remote::Remote::connect(&cli.remote)?;
    operate(&remote, remote.api(), &mut out, cli.command).await
}

/// Runs an operator command against `api`.
async fn operate(
    remote: &remote::Remote,
    api: &dyn ServiceApi,
    out: &mut Out<'_>,
    command: Command,
) -> CliResult {
    match command {
        Command::Hub(_) => Err(CliError::usage(
            "`hub` runs a hub; it is not an operator command",
        )),
        Command::Device(cmd) => match cmd {
            DeviceCommand::Create(args) => match &args.from {
                Some(path) => {
                    let lines = bulk::parse_file(path)?;
                    bulk::create_all(api, out, lines, std::io::stderr().is_terminal()).await
                }
                None => device::create(api, out, &args).await,
            },
            DeviceCommand::Show(a) => device::show(api, out, &a.device_id).await,
            DeviceCommand::List(a) => device::list(api, out, &a).await,
            DeviceCommand::Update(a) => device::update(api, out, &a).await,
            DeviceCommand::Disable(a) => device::disable(api, out, &a).await,
            DeviceCommand::Enable(a) => device::enable(api, out, &a.device_id).await,
            DeviceCommand::Retire(a) => device::retire(api, out, &a.device_id).await,
            DeviceCommand::Delete(a) => device::delete(api, out, &a).await,
            DeviceCommand::Keys(KeysCommand::Show(a)) => {
                device::keys_show(api, out, &a.device_id).await
            }
            DeviceCommand::Keys(KeysCommand::Regenerate(a)) => {
                device::keys_regenerate(api, out, &a.device_id, a.which).await
            }
        },
        Command::Twin(TwinCommand::Show(a)) => twin::show(api, out, &a.device_id).await,
        Command::Twin(TwinCommand::Update(a)) => twin::update(api, out, &a).await,
        Command::Query(a) => twin::query(api, out, &a).await,
        Command::Method(MethodCommand::Invoke(a)) => twin::invoke(api, out, &a).await,
        Command::ConnectionString(ConnectionStringCommand::Device(a)) => {
            connstr::device(api, out, remote.host_name(), &a.device_id).await
        }
        Command::ConnectionString(ConnectionStringCommand::Service(a)) => {
            remote
                .service_connection_string(out, a.policy.as_deref())
                .await
        }
        Command::Job(cmd) => job::run(api, out, cmd).await,
        Command::Configuration(cmd) => configuration::run(api, out, cmd).await,
        Command::Alert(cmd) => {
            let cx = alert::Context {
                default_by: remote.client().policy(),
                terminal: std::io::stdout().is_terminal(),
            };
            alert::run(api, out, cmd, cx).await
        }
        Command::Events(a) => events::run(remote.client(), out, &a).await,
        Command::Firmware(cmd) => firmware::run(remote.client(), out, cmd).await,
        Command::Policy(cmd) => {
            let client = remote.client();
            match cmd {
                PolicyCommand::List => policy::list(client, out).await,
                PolicyCommand::Create(a) => policy::create(client, out, &a).await,
                PolicyCommand::Delete(a) => policy::delete(client, out, &a.name).await,
                PolicyCommand::Regenerate(a) => {
                    policy::regenerate(client, out, &a.name, a.which).await
                }
            }
        }
    }
}
