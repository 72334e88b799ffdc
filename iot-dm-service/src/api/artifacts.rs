//! [`ArtifactApi`]: the firmware artifact store.

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::artifacts::{ArtifactInfo, ArtifactMeta, Sha256Digest};
use crate::hub::HubError;

/// What an upload says of itself: the SHA-256 the bytes must have (checked; the hub computes
/// it when not given), their size (refused at once when over the hub's cap; a remote client
/// sends it as `Content-Length`), and an optional name and version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArtifactUpload {
    /// The digest the bytes must have.
    pub sha256: Option<Sha256Digest>,
    /// The number of bytes the reader gives.
    pub size: Option<u64>,
    /// The name and version to keep with the artifact.
    pub meta: ArtifactMeta,
}

impl ArtifactUpload {
    /// An upload whose digest the hub computes.
    pub fn new() -> ArtifactUpload {
        ArtifactUpload::default()
    }

    /// The digest the bytes must have; an upload whose bytes hash otherwise is refused with
    /// [`ArtifactError::DigestMismatch`](crate::artifacts::ArtifactError::DigestMismatch).
    pub fn sha256(mut self, sha256: Sha256Digest) -> Self {
        self.sha256 = Some(sha256);
        self
    }

    /// The size of the image.
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }

    /// A name to list with the artifact.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.meta.name = Some(name.into());
        self
    }

    /// A version to list with the artifact.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.meta.version = Some(version.into());
        self
    }
}

/// Firmware images, uploaded once and addressed by their SHA-256 (our routes, `/artifacts`;
/// Azure IoT Hub has no such store). Devices download them at `GET /artifacts/{sha256}` with
/// their own SAS token; see [`crate::artifacts`] for the store's guarantees.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use iot_dm_service::api::{ArtifactApi, ArtifactUpload};
/// use iot_dm_service::Hub;
///
/// let hub = Hub::builder().open().await?;
/// let image = vec![0x5au8; 4096];
/// let info = hub
///     .upload_artifact(&mut &image[..], ArtifactUpload::new().name("pump-fw").version("2.1.0"))
///     .await?;
/// assert_eq!(hub.artifacts().await?, vec![info.clone()]);
/// assert_eq!(hub.artifact(&info.sha256).await?.size, 4096);
/// hub.delete_artifact(&info.sha256).await?;
/// assert!(hub.artifacts().await?.is_empty());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait ArtifactApi: Send + Sync + std::fmt::Debug {
    /// Stores what `reader` gives, streamed (`PUT /artifacts/{sha256}` when the digest is
    /// given, `POST /artifacts` when the hub computes it). Nothing is visible unless the
    /// whole upload succeeds.
    async fn upload_artifact(
        &self,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        upload: ArtifactUpload,
    ) -> Result<ArtifactInfo, HubError>;
    /// Every stored artifact, oldest first (`GET /artifacts`).
    async fn artifacts(&self) -> Result<Vec<ArtifactInfo>, HubError>;
    /// One artifact's size and metadata (`HEAD /artifacts/{sha256}` gives the size).
    async fn artifact(&self, sha256: &Sha256Digest) -> Result<ArtifactInfo, HubError>;
    /// Removes an artifact (`DELETE /artifacts/{sha256}`).
    async fn delete_artifact(&self, sha256: &Sha256Digest) -> Result<(), HubError>;
}
