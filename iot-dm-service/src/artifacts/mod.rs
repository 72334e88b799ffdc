//! The firmware artifact store: images uploaded once, addressed by their SHA-256, listed,
//! served to devices (in byte ranges, so downloads resume) and deleted.
//!
//! | item | what it is |
//! |---|---|
//! | [`BlobStore`] | a backend: where the bytes and their metadata live ([`FsBlobStore`], [`MemoryBlobStore`]) |
//! | [`ArtifactStore`] | the hub's front: the size cap, hashing while uploading, the digest check |
//! | [`Upload`] | one upload in progress: chunks in, [`Upload::finish`] makes it visible |
//! | [`Sha256Digest`], [`ArtifactInfo`], [`ArtifactMeta`] | an artifact's name, what is listed, what an upload says of itself |
//! | [`ArtifactError`] | why an operation failed, naming the artifact, the field or the limit |
//!
//! Every backend passes the one conformance suite (module `conformance`, feature `testkit`).
//!
//! # The contract
//!
//! * An upload is invisible until [`Upload::finish`] returns: an upload dropped part way (a
//!   client that disconnects, a size cap, a digest mismatch) leaves nothing behind. The
//!   filesystem backend writes to a temporary file, fsyncs it, renames it into place and
//!   fsyncs the directory; temporary files left by a crash are removed when the store opens.
//! * An artifact's bytes are checked against its name before they are served. The
//!   filesystem backend remembers, for each file whose bytes matched its name (hashed on
//!   their way in at upload, or hashed when first opened), the file's size, modification and
//!   change times and inode; when any of them has changed it hashes the file again before
//!   serving it, so a file changed on disk (even with its modification time put back) is
//!   refused with [`ArtifactError::Corrupt`] rather than served. Restarting the hub forgets
//!   what was checked: the first download of each artifact after a restart hashes it once
//!   (concurrent first downloads wait for that one pass).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use iot_dm_core::clock::Timestamp;
//! use iot_dm_service::artifacts::{ArtifactMeta, ArtifactStore, MemoryBlobStore};
//!
//! let store = ArtifactStore::new(Arc::new(MemoryBlobStore::new()), 1 << 20);
//! let image = vec![7u8; 1000];
//! let info = store
//!     .upload_from(&image[..], None, ArtifactMeta::default().version("1.2.0"), Timestamp::now())
//!     .await?;
//! assert_eq!(info.size, 1000);
//! let mut reader = store.open(&info.sha256, 10, 20).await?;
//! let mut read = Vec::new();
//! while let Some(chunk) = reader.next_chunk().await? {
//!     read.extend_from_slice(&chunk);
//! }
//! assert_eq!(read, image[10..20]);
//! # Ok(()) }
//! ```

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod fs;
mod memory;
mod types;

pub use fs::FsBlobStore;
pub use memory::MemoryBlobStore;
pub use types::{ArtifactError, ArtifactInfo, ArtifactMeta, Sha256Digest, MAX_META_LEN};

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use iot_dm_core::clock::Timestamp;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The size of the chunks artifacts are read and served in: 256 KiB. Memory use per download
/// is a few chunks, whatever the image's size.
pub const CHUNK: usize = 256 * 1024;

/// The default largest artifact: 1 GiB.
pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 1 << 30;

/// Where artifacts are kept. See the [module docs](self) for the contract every backend
/// keeps; the conformance suite checks it.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// The backend's name, for logs (`fs`, `memory`).
    fn backend(&self) -> &'static str;
    /// Starts writing a blob that nothing sees until it is committed.
    async fn create(&self) -> Result<Box<dyn BlobWriter>, ArtifactError>;
    /// What is stored under `sha256` ([`ArtifactError::NotFound`] if nothing).
    async fn info(&self, sha256: &Sha256Digest) -> Result<ArtifactInfo, ArtifactError>;
    /// Every stored artifact, by digest.
    async fn list(&self) -> Result<Vec<ArtifactInfo>, ArtifactError>;
    /// Bytes `start..end` of the blob (clamped to its size), checked against its name (see
    /// the module docs), in chunks of at most [`CHUNK`] bytes.
    async fn open(
        &self,
        sha256: &Sha256Digest,
        start: u64,
        end: u64,
    ) -> Result<Box<dyn BlobReader>, ArtifactError>;
    /// Removes the artifact ([`ArtifactError::NotFound`] if nothing is stored under it).
    /// Downloads already under way may finish.
    async fn delete(&self, sha256: &Sha256Digest) -> Result<(), ArtifactError>;
}

/// A blob being written. Dropped without [`commit`](Self::commit), it leaves nothing.
#[async_trait]
pub trait BlobWriter: Send + std::fmt::Debug {
    /// Appends bytes.
    async fn write(&mut self, chunk: Bytes) -> Result<(), ArtifactError>;
    /// Makes the bytes written visible, durably where the backend is durable, as
    /// `info.sha256` with `info`'s metadata (the caller has checked the digest and size); an
    /// artifact already stored under that digest is replaced.
    async fn commit(self: Box<Self>, info: &ArtifactInfo) -> Result<(), ArtifactError>;
}

/// A range of a stored blob, chunk by chunk.
#[async_trait]
pub trait BlobReader: Send + std::fmt::Debug {
    /// The next chunk (at most [`CHUNK`] bytes), or `None` at the end of the range.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ArtifactError>;
}

/// The hub's artifact store: a [`BlobStore`] with the size cap and the digest check.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    blobs: Arc<dyn BlobStore>,
    max_size: u64,
}

impl ArtifactStore {
    /// A store over `blobs` refusing artifacts over `max_size` bytes.
    pub fn new(blobs: Arc<dyn BlobStore>, max_size: u64) -> ArtifactStore {
        ArtifactStore { blobs, max_size }
    }

    /// The largest artifact accepted, in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// The backend.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Starts an upload; `expected` is the digest the uploader says the bytes have (checked
    /// by [`Upload::finish`]). A declared size over the cap is refused here, before any byte.
    pub async fn begin(
        &self,
        expected: Option<Sha256Digest>,
        declared_size: Option<u64>,
        meta: ArtifactMeta,
    ) -> Result<Upload, ArtifactError> {
        meta.validate()?;
        if let Some(size) = declared_size.filter(|s| *s > self.max_size) {
            return Err(ArtifactError::TooLarge {
                size,
                limit: self.max_size,
            });
        }
        Ok(Upload {
            writer: self.blobs.create().await?,
            hasher: Sha256::new(),
            size: 0,
            limit: self.max_size,
            expected,
            meta,
            pending: BytesMut::new(),
        })
    }

    /// Uploads everything `reader` gives, in chunks of [`CHUNK`] bytes (never the whole image
    /// in memory).
    pub async fn upload_from<R: AsyncRead + Unpin + Send>(
        &self,
        mut reader: R,
        expected: Option<Sha256Digest>,
        meta: ArtifactMeta,
        now: Timestamp,
    ) -> Result<ArtifactInfo, ArtifactError> {
        let mut upload = self.begin(expected, None, meta).await?;
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            while buf.len() < CHUNK {
                let n =
                    reader
                        .read_buf(&mut buf)
                        .await
                        .map_err(|e| ArtifactError::Interrupted {
                            message: e.to_string(),
                        })?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                break;
            }
            upload.write(buf.freeze()).await?;
        }
        upload.finish(now).await
    }

    /// What is stored under `sha256`.
    pub async fn info(&self, sha256: &Sha256Digest) -> Result<ArtifactInfo, ArtifactError> {
        self.blobs.info(sha256).await
    }

    /// Every stored artifact, sorted by upload time then digest.
    pub async fn list(&self) -> Result<Vec<ArtifactInfo>, ArtifactError> {
        let mut all = self.blobs.list().await?;
        all.sort_by(|a, b| {
            (a.uploaded_time, a.sha256.as_bytes()).cmp(&(b.uploaded_time, b.sha256.as_bytes()))
        });
        Ok(all)
    }

    /// Bytes `start..end` of an artifact, verified (see the module docs).
    pub async fn open(
        &self,
        sha256: &Sha256Digest,
        start: u64,
        end: u64,
    ) -> Result<Box<dyn BlobReader>, ArtifactError> {
        self.blobs.open(sha256, start, end).await
    }

    /// Removes an artifact.
    pub async fn delete(&self, sha256: &Sha256Digest) -> Result<(), ArtifactError> {
        self.blobs.delete(sha256).await?;
        tracing::info!(%sha256, "artifact deleted");
        Ok(())
    }
}

/// One upload in progress. Dropped before [`finish`](Self::finish), it leaves nothing.
#[derive(Debug)]
pub struct Upload {
    writer: Box<dyn BlobWriter>,
    hasher: Sha256,
    size: u64,
    limit: u64,
    expected: Option<Sha256Digest>,
    meta: ArtifactMeta,
    /// Small chunks (a network body's frames) gathered into writes of [`CHUNK`] bytes.
    pending: BytesMut,
}

impl Upload {
    /// Appends a chunk; past the size cap, [`ArtifactError::TooLarge`] (the upload is then
    /// to be dropped).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), ArtifactError> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.limit {
            return Err(ArtifactError::TooLarge {
                size: self.size,
                limit: self.limit,
            });
        }
        self.hasher.update(&chunk);
        if self.pending.is_empty() && chunk.len() >= CHUNK {
            return self.writer.write(chunk).await;
        }
        self.pending.extend_from_slice(&chunk);
        if self.pending.len() >= CHUNK {
            let full = self.pending.split().freeze();
            self.writer.write(full).await?;
        }
        Ok(())
    }

    /// The bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the digest and makes the artifact visible.
    pub async fn finish(mut self, now: Timestamp) -> Result<ArtifactInfo, ArtifactError> {
        if !self.pending.is_empty() {
            let rest = self.pending.split().freeze();
            self.writer.write(rest).await?;
        }
        let actual = Sha256Digest::from_bytes(self.hasher.finalize().into());
        if let Some(expected) = self.expected {
            if expected != actual {
                return Err(ArtifactError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let info = ArtifactInfo {
            sha256: actual,
            size: self.size,
            uploaded_time: now,
            name: self.meta.name,
            version: self.meta.version,
        };
        self.writer.commit(&info).await?;
        tracing::info!(sha256 = %info.sha256, size = info.size, "artifact stored");
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(limit: u64) -> ArtifactStore {
        ArtifactStore::new(Arc::new(MemoryBlobStore::new()), limit)
    }

    #[tokio::test]
    async fn the_cap_is_checked_before_and_while_reading() {
        let s = store(10);
        let e = s
            .begin(None, Some(11), ArtifactMeta::default())
            .await
            .unwrap_err();
        assert_eq!(
            e,
            ArtifactError::TooLarge {
                size: 11,
                limit: 10
            }
        );
        let e = s
            .upload_from(
                &[0u8; 11][..],
                None,
                ArtifactMeta::default(),
                Timestamp::now(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, ArtifactError::TooLarge { limit: 10, .. }),
            "{e}"
        );
        assert!(s.list().await.unwrap().is_empty());
        s.upload_from(
            &[0u8; 10][..],
            None,
            ArtifactMeta::default(),
            Timestamp::now(),
        )
        .await
        .unwrap();
        assert_eq!(s.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_wrong_expected_digest_is_refused_and_named() {
        let s = store(100);
        let wrong = Sha256Digest::of(b"other");
        let e = s
            .upload_from(
                &b"bytes"[..],
                Some(wrong),
                ArtifactMeta::default(),
                Timestamp::now(),
            )
            .await
            .unwrap_err();
        match e {
            ArtifactError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, wrong.to_string());
                assert_eq!(actual, Sha256Digest::of(b"bytes").to_string());
            }
            other => panic!("{other}"),
        }
        assert!(s.list().await.unwrap().is_empty());
        let right = Sha256Digest::of(b"bytes");
        let info = s
            .upload_from(
                &b"bytes"[..],
                Some(right),
                ArtifactMeta::default(),
                Timestamp::now(),
            )
            .await
            .unwrap();
        assert_eq!(info.sha256, right);
    }

    #[tokio::test]
    async fn bad_metadata_is_refused_before_any_byte() {
        let s = store(100);
        let e = s
            .begin(
                None,
                None,
                ArtifactMeta::default().name("x".repeat(MAX_META_LEN + 1)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, ArtifactError::InvalidMetadata { field: "name", .. }),
            "{e}"
        );
    }
}
