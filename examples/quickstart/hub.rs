//! The quick start's hub: the embedded durable store in a directory, its MQTT/TLS endpoint and
//! its REST API (which serves firmware downloads) on loopback, with development certificates.

use std::path::{Path, PathBuf};

use iot_dm::service::mqtt::Listener;
use iot_dm::service::tls::dev_certs::DevCerts;
use iot_dm::service::{Hub, HubServer};

use crate::Result;

/// The host name devices use: the development server certificate is issued for it.
pub const HOST: &str = "localhost";

/// An api-version the REST API accepts, for the download URLs devices are given.
pub const API_VERSION: &str = "2021-04-12";

/// A hub opened on `dir/hub.redb`, serving on loopback.
pub struct RunningHub {
    pub hub: Hub,
    server: HubServer,
    pub mqtt_port: u16,
    pub rest_port: u16,
    /// The development CA devices trust, for MQTT and for downloads.
    pub ca_pem: Vec<u8>,
    pub store: PathBuf,
}

impl RunningHub {
    /// Opens the store (creating it) and starts serving on free loopback ports.
    pub async fn start(dir: &Path) -> Result<RunningHub> {
        let certs = DevCerts::load_or_create(dir.join("certs"))?;
        let store = dir.join("hub.redb");
        let hub = Hub::builder().path(&store).host_name(HOST).open().await?;
        let server = HubServer::builder(hub.clone())
            .mqtt_listen(Listener::Tls, "127.0.0.1:0".parse()?)
            .rest_listen("127.0.0.1:0".parse()?)
            .tls_pem(certs.server_cert_pem(), certs.server_key_pem())
            .start()
            .await?;
        let mqtt_port = server
            .mqtt_addrs()
            .first()
            .map(|(_, a)| a.port())
            .ok_or("the MQTT endpoint is not listening")?;
        let rest_port = server
            .rest_addr()
            .map(|a| a.port())
            .ok_or("the REST API is not listening")?;
        Ok(RunningHub {
            hub,
            server,
            mqtt_port,
            rest_port,
            ca_pem: certs.ca_pem().as_bytes().to_vec(),
            store,
        })
    }

    /// Where devices download the artifact `sha256` from.
    pub fn artifact_url(&self, sha256: &str) -> String {
        format!(
            "https://{HOST}:{}/artifacts/{sha256}?api-version={API_VERSION}",
            self.rest_port
        )
    }

    /// Stops serving and closes the store: everything acknowledged is on disk.
    pub async fn stop(self) -> Result<()> {
        self.server.shutdown().await?;
        self.hub.shutdown().await?;
        Ok(())
    }
}
