//! The hub's side of the firmware artifact store: the [`ArtifactApi`] of the embedded hub, and
//! the device authentication of downloads.

use async_trait::async_trait;
use tokio::io::AsyncRead;

use iot_dm_core::identity::DeviceId;
use iot_dm_core::link::{ConnectRequest, Credentials};
use iot_dm_core::wire::SasToken;

use crate::access::{Grant, Rights};
use crate::api::{ArtifactApi, ArtifactUpload};
use crate::artifacts::{ArtifactInfo, ArtifactStore, Sha256Digest};
use crate::hub::{Hub, HubError};

impl Hub {
    /// The hub's artifact store.
    pub fn artifact_store(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    /// Checks a device's own SAS token (`sr={host}/devices/{id}`, signed with either of the
    /// device's keys, not expired), exactly as the device endpoint does when the device
    /// connects; the device must be enabled. The grant names the device
    /// (`devices/{id}`) with [`Rights::DEVICE_CONNECT`].
    pub fn authorize_device(&self, authorization: Option<&str>) -> Result<Grant, HubError> {
        let unauthorized = |message: String| HubError::Unauthorized { message };
        let header = authorization
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                unauthorized(
                    "no Authorization header; send the device's SharedAccessSignature token".into(),
                )
            })?;
        let token = SasToken::parse(header).map_err(|e| unauthorized(e.to_string()))?;
        let device = token
            .resource_uri()
            .split_once('/')
            .and_then(|(_, rest)| rest.strip_prefix("devices/"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| {
                unauthorized("a device token's sr must be {host}/devices/{deviceId}".into())
            })?;
        let device_id: DeviceId = device
            .parse()
            .map_err(|_| unauthorized(format!("{device:?} is not a device id")))?;
        let request = ConnectRequest {
            device_id,
            module_id: None,
            credentials: Credentials::Sas(header.to_string()),
            clean_session: true,
        };
        self.authenticate(&request)
            .map_err(|e| unauthorized(e.to_string()))?;
        Ok(Grant {
            policy: format!("devices/{device}"),
            rights: Rights::DEVICE_CONNECT,
        })
    }
}

#[async_trait]
impl ArtifactApi for Hub {
    async fn upload_artifact(
        &self,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        upload: ArtifactUpload,
    ) -> Result<ArtifactInfo, HubError> {
        if let Some(size) = upload.size {
            if size > self.inner.artifacts.max_size() {
                return Err(crate::artifacts::ArtifactError::TooLarge {
                    size,
                    limit: self.inner.artifacts.max_size(),
                }
                .into());
            }
        }
        Ok(self
            .inner
            .artifacts
            .upload_from(reader, upload.sha256, upload.meta, self.now())
            .await?)
    }

    async fn artifacts(&self) -> Result<Vec<ArtifactInfo>, HubError> {
        Ok(self.inner.artifacts.list().await?)
    }

    async fn artifact(&self, sha256: &Sha256Digest) -> Result<ArtifactInfo, HubError> {
        Ok(self.inner.artifacts.info(sha256).await?)
    }

    async fn delete_artifact(&self, sha256: &Sha256Digest) -> Result<(), HubError> {
        Ok(self.inner.artifacts.delete(sha256).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use iot_dm_core::clock::Timestamp;
    use iot_dm_core::wire::{self, SymmetricKey};

    use crate::api::prelude::*;
    use crate::hub::DeviceSpec;
    use crate::Hub;

    fn token(hub: &Hub, id: &str, key: &str, expiry: Timestamp) -> String {
        let uri = wire::device_resource_uri(hub.host_name(), &id.parse().unwrap());
        let key = SymmetricKey::new(key.to_string()).unwrap();
        wire::SasToken::generate(&uri, &key, expiry, None)
            .as_str()
            .to_string()
    }

    #[tokio::test]
    async fn devices_download_with_their_own_token_only() {
        let hub = Hub::builder().host_name("hub.test").open().await.unwrap();
        let d = hub
            .create_device(DeviceSpec::new("pump-1".parse().unwrap()))
            .await
            .unwrap();
        let key = d.symmetric_key.primary_key.clone().unwrap();
        let later = Timestamp::now() + Duration::from_secs(600);
        let grant = hub
            .authorize_device(Some(&token(&hub, "pump-1", &key, later)))
            .unwrap();
        assert_eq!(grant.policy, "devices/pump-1");
        let earlier = Timestamp::from_unix_secs(Timestamp::now().unix_secs() - 5);
        for bad in [
            None,
            Some("SharedAccessSignature nope".to_string()),
            Some(token(&hub, "pump-1", &key, earlier)),
            Some(token(&hub, "pump-2", &key, later)),
            Some(token(
                &hub,
                "pump-1",
                "c29tZSBvdGhlciBrZXkgdGhhdCBpcyBub3QgaXQ=",
                later,
            )),
        ] {
            let e = hub.authorize_device(bad.as_deref()).unwrap_err();
            assert!(e.is_unauthorized(), "{bad:?}: {e}");
        }
        hub.disable_device("pump-1", "test").await.unwrap();
        let e = hub
            .authorize_device(Some(&token(&hub, "pump-1", &key, later)))
            .unwrap_err();
        assert!(e.is_unauthorized(), "{e}");
    }
}
