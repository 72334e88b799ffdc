//! Helpers for the command tests: an in-memory hub, and running a command into a string.

use iot_dm::service::Hub;

use crate::error::CliResult;
use crate::output::Out;

/// The host name of test hubs.
pub const HOST: &str = "hub.example";

/// An in-memory hub.
#[allow(clippy::unwrap_used)]
pub async fn hub() -> Hub {
    Hub::builder().host_name(HOST).open().await.unwrap()
}

/// Runs a command writing to a buffer; returns what it printed.
#[allow(clippy::unwrap_used)]
pub async fn run<F>(json: bool, f: F) -> CliResult<String>
where
    F: AsyncFnOnce(&mut Out<'_>) -> CliResult,
{
    let mut buf = Vec::new();
    {
        let mut out = Out::new(&mut buf, json);
        f(&mut out).await?;
    }
    Ok(String::from_utf8(buf).unwrap())
}
