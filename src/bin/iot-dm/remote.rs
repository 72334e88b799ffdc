//! Reaching a hub: a [`ServiceClient`] from the connection string, URL and CA the user gave.

use std::path::Path;

use iot_dm::core::wire::ServiceConnectionString;
use iot_dm::service::api::prelude::*;
use iot_dm::service::client::ServiceClient;

use crate::cli;
use crate::connstr::print_service;
use crate::error::{CliError, CliResult};
use crate::output::Out;

/// Where `iot-dm hub` serves REST by default.
pub const DEFAULT_LOCAL_URL: &str = "https://127.0.0.1:8443";
/// Where `iot-dm hub` keeps its CA by default.
pub const DEFAULT_LOCAL_CA: &str = "iot-dm-data/certs/ca.pem";

/// A connected hub.
#[derive(Debug)]
pub struct Remote {
    client: ServiceClient,
    connection_string: String,
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1"
}

impl Remote {
    /// Builds the client (nothing is sent yet).
    pub fn connect(args: &cli::Remote) -> CliResult<Remote> {
        let cs = args.connection_string.as_deref().ok_or_else(|| {
            CliError::usage(
                "no hub given: pass --connection-string or set IOT_DM_CONNECTION_STRING (`iot-dm hub` prints the owner's)",
            )
        })?;
        let parsed = ServiceConnectionString::parse(cs)
            .map_err(|e| CliError::usage(format!("--connection-string: {e}")))?;
        let local = is_local(parsed.host_name());
        let mut builder = ServiceClient::builder(cs)?;
        let ca = match &args.ca {
            Some(path) => Some(path.clone()),
            None if local && Path::new(DEFAULT_LOCAL_CA).exists() => Some(DEFAULT_LOCAL_CA.into()),
            None => None,
        };
        if let Some(path) = ca {
            let pem = std::fs::read(&path).map_err(|e| {
                CliError::usage(format!("--ca: cannot read {}: {e}", path.display()))
            })?;
            builder = builder.ca_pem(pem);
        }
        let url = match &args.url {
            Some(url) => Some(url.as_str()),
            None if local => Some(DEFAULT_LOCAL_URL),
            None => None,
        };
        if let Some(url) = url {
            builder = builder
                .base_url(url)
                .map_err(|e| CliError::usage(format!("--url: {e}")))?;
        }
        Ok(Remote {
            client: builder.build()?,
            connection_string: cs.to_string(),
        })
    }

    /// The API.
    pub fn api(&self) -> &dyn ServiceApi {
        &self.client
    }

    /// The remote client itself (for what is not part of [`ServiceApi`]).
    pub fn client(&self) -> &ServiceClient {
        &self.client
    }

    /// The hub's host name.
    pub fn host_name(&self) -> &str {
        self.client.host_name()
    }

    /// `connection-string service [--policy NAME]`.
    pub async fn service_connection_string(
        &self,
        out: &mut Out<'_>,
        policy: Option<&str>,
    ) -> CliResult {
        match policy {
            Some(p) if p != self.client.policy() => {
                // only the owner may read another policy's keys
                let found = self
                    .client
                    .access_policies()
                    .await?
                    .into_iter()
                    .find(|q| q.key_name == p)
                    .ok_or_else(|| {
                        CliError::usage(format!("--policy: the hub has no policy {p:?}"))
                    })?;
                let cs = format!(
                    "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
                    self.client.host_name(),
                    found.key_name,
                    found.primary_key
                );
                print_service(out, &cs)
            }
            _ => print_service(out, &self.connection_string),
        }
    }
}
