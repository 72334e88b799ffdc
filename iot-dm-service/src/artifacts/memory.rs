//! [`MemoryBlobStore`]: artifacts in memory, for an in-memory hub and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{ArtifactError, ArtifactInfo, BlobReader, BlobStore, BlobWriter, Sha256Digest, CHUNK};

type Blobs = HashMap<Sha256Digest, (ArtifactInfo, Bytes)>;

/// Artifacts in memory: nothing survives the process. Clones share the artifacts.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<Blobs>>,
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> MemoryBlobStore {
        MemoryBlobStore::default()
    }

    fn blobs(&self) -> MutexGuard<'_, Blobs> {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found(sha256: &Sha256Digest) -> ArtifactError {
    ArtifactError::NotFound {
        sha256: sha256.to_string(),
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn create(&self) -> Result<Box<dyn BlobWriter>, ArtifactError> {
        Ok(Box::new(MemoryWriter {
            store: self.clone(),
            chunks: Vec::new(),
        }))
    }

    async fn info(&self, sha256: &Sha256Digest) -> Result<ArtifactInfo, ArtifactError> {
        self.blobs()
            .get(sha256)
            .map(|(info, _)| info.clone())
            .ok_or_else(|| not_found(sha256))
    }

    async fn list(&self) -> Result<Vec<ArtifactInfo>, ArtifactError> {
        Ok(self.blobs().values().map(|(i, _)| i.clone()).collect())
    }

    async fn open(
        &self,
        sha256: &Sha256Digest,
        start: u64,
        end: u64,
    ) -> Result<Box<dyn BlobReader>, ArtifactError> {
        let bytes = self
            .blobs()
            .get(sha256)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| not_found(sha256))?;
        let len = bytes.len() as u64;
        let end = usize::try_from(end.min(len)).unwrap_or(bytes.len());
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(end);
        Ok(Box::new(MemoryReader {
            rest: bytes.slice(start..end),
        }))
    }

    async fn delete(&self, sha256: &Sha256Digest) -> Result<(), ArtifactError> {
        self.blobs()
            .remove(sha256)
            .map(|_| ())
            .ok_or_else(|| not_found(sha256))
    }
}

#[derive(Debug)]
struct MemoryWriter {
    store: MemoryBlobStore,
    chunks: Vec<Bytes>,
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ArtifactError> {
        self.chunks.push(chunk);
        Ok(())
    }

    async fn commit(self: Box<Self>, info: &ArtifactInfo) -> Result<(), ArtifactError> {
        let mut all = BytesMut::with_capacity(self.chunks.iter().map(Bytes::len).sum());
        for c in &self.chunks {
            all.extend_from_slice(c);
        }
        self.store
            .blobs()
            .insert(info.sha256, (info.clone(), all.freeze()));
        Ok(())
    }
}

#[derive(Debug)]
struct MemoryReader {
    rest: Bytes,
}

#[async_trait]
impl BlobReader for MemoryReader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ArtifactError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let n = self.rest.len().min(CHUNK);
        Ok(Some(self.rest.split_to(n)))
    }
}

#[cfg(test)]
mod tests {
    use crate::artifacts::conformance::MemoryFixture;

    crate::artifact_conformance!(MemoryFixture::new());
}
