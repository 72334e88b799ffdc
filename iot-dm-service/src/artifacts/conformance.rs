//! The conformance suite every [`BlobStore`] backend must pass.
//!
//! Available in this crate's tests and, for other crates, behind the `testkit` feature. A
//! backend provides a [`Fixture`] (how to open, and reopen, one store) and expands
//! [`artifact_conformance!`](crate::artifact_conformance) inside a test module; the macro
//! writes one `#[tokio::test]` per check, each on a fresh fixture:
//!
//! ```
//! #[cfg(test)]
//! mod tests {
//!     use iot_dm_service::artifacts::conformance::MemoryFixture;
//!
//!     // A real backend passes its own fixture, e.g. one over a temporary directory.
//!     iot_dm_service::artifact_conformance!(MemoryFixture::new());
//! }
//! # fn main() {}
//! ```
//!
//! Each check panics, like `assert!`, when the backend breaks the contract.
#![allow(clippy::unwrap_used)] // A failed check panics with the error: that is the report.

use std::sync::Arc;

use bytes::Bytes;
use iot_dm_core::clock::Timestamp;

use super::{
    ArtifactError, ArtifactMeta, ArtifactStore, BlobStore, MemoryBlobStore, Sha256Digest, CHUNK,
};

/// How a check opens the backend under test.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    /// Opens the fixture's store. Every call opens the same data: a check drops the previous
    /// store before opening it again, and expects to find every committed artifact.
    async fn open(&self) -> Arc<dyn BlobStore>;
}

/// A [`Fixture`] for [`MemoryBlobStore`]: reopening returns a clone sharing the data.
#[derive(Debug, Clone, Default)]
pub struct MemoryFixture {
    store: MemoryBlobStore,
}

impl MemoryFixture {
    /// A fixture over an empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Fixture for MemoryFixture {
    async fn open(&self) -> Arc<dyn BlobStore> {
        Arc::new(self.store.clone())
    }
}

/// Writes one check per name, each a `#[tokio::test]` on a fresh fixture; see the
/// [module docs](crate::artifacts::conformance).
#[macro_export]
macro_rules! artifact_conformance {
    ($fixture:expr) => {
        $crate::artifact_conformance!(@checks $fixture;
            round_trip_in_bounded_chunks,
            ranges_are_clamped,
            uploads_are_invisible_until_committed,
            list_info_and_delete,
            same_bytes_twice_is_one_artifact,
            reopen_persists,
            concurrent_reads,
        );
    };
    (@checks $fixture:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture;
                $crate::artifacts::conformance::$check(&fixture).await;
            }
        )*
    };
}

/// Bytes that differ from chunk to chunk: `n` of them, seeded.
pub fn image(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn store(blobs: Arc<dyn BlobStore>) -> ArtifactStore {
    ArtifactStore::new(blobs, 64 << 20)
}

async fn read(store: &ArtifactStore, d: &Sha256Digest, start: u64, end: u64) -> Vec<u8> {
    let mut reader = store.open(d, start, end).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk().await.unwrap() {
        assert!(
            !chunk.is_empty() && chunk.len() <= CHUNK,
            "chunk of {}",
            chunk.len()
        );
        out.extend_from_slice(&chunk);
    }
    out
}

/// An image of several chunks comes back whole, in chunks of at most [`CHUNK`] bytes, under
/// its SHA-256.
pub async fn round_trip_in_bounded_chunks<F: Fixture>(f: &F) {
    let s = store(f.open().await);
    let bytes = image(3 * CHUNK + 17, 1);
    let info = s
        .upload_from(&bytes[..], None, ArtifactMeta::default(), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(info.sha256, Sha256Digest::of(&bytes));
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(read(&s, &info.sha256, 0, u64::MAX).await, bytes);
    let empty = s
        .upload_from(&b""[..], None, ArtifactMeta::default(), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(empty.size, 0);
    assert!(read(&s, &empty.sha256, 0, u64::MAX).await.is_empty());
}

/// A range gives exactly its bytes; an end past the size is clamped, a start past it is
/// empty.
pub async fn ranges_are_clamped<F: Fixture>(f: &F) {
    let s = store(f.open().await);
    let bytes = image(CHUNK + 100, 2);
    let d = s
        .upload_from(&bytes[..], None, ArtifactMeta::default(), Timestamp::now())
        .await
        .unwrap()
        .sha256;
    let len = bytes.len() as u64;
    assert_eq!(read(&s, &d, 10, 20).await, bytes[10..20]);
    assert_eq!(
        read(&s, &d, CHUNK as u64 - 1, len).await,
        bytes[CHUNK - 1..]
    );
    assert_eq!(read(&s, &d, 5, len + 1000).await, bytes[5..]);
    assert!(read(&s, &d, len, len + 5).await.is_empty());
    assert!(read(&s, &d, len + 5, len + 9).await.is_empty());
    let missing = Sha256Digest::of(b"never stored");
    assert!(s.open(&missing, 0, 1).await.unwrap_err().is_not_found());
}

/// Bytes written but not committed are seen nowhere, before or after the writer is dropped
/// and the store reopened.
pub async fn uploads_are_invisible_until_committed<F: Fixture>(f: &F) {
    let blobs = f.open().await;
    let s = store(blobs.clone());
    let bytes = image(CHUNK + 1, 3);
    let d = Sha256Digest::of(&bytes);
    let mut upload = s
        .begin(Some(d), None, ArtifactMeta::default())
        .await
        .unwrap();
    upload
        .write(Bytes::copy_from_slice(&bytes[..CHUNK]))
        .await
        .unwrap();
    assert!(s.info(&d).await.unwrap_err().is_not_found());
    assert!(s.list().await.unwrap().is_empty());
    drop(upload);
    // a refused upload (wrong digest) leaves nothing either
    let e = s
        .upload_from(
            &bytes[..10],
            Some(d),
            ArtifactMeta::default(),
            Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ArtifactError::DigestMismatch { .. }), "{e}");
    drop((s, blobs));
    let s = store(f.open().await);
    assert!(s.list().await.unwrap().is_empty());
    assert!(s.open(&d, 0, 1).await.unwrap_err().is_not_found());
}

/// Listing shows each artifact's digest, size, time and metadata; deleting removes it, and
/// deleting it again is not found.
pub async fn list_info_and_delete<F: Fixture>(f: &F) {
    let s = store(f.open().await);
    let t = Timestamp::from_unix_secs(1_700_000_000);
    let a = s
        .upload_from(
            &b"first"[..],
            None,
            ArtifactMeta::default().name("fw").version("1.0"),
            t,
        )
        .await
        .unwrap();
    let b = s
        .upload_from(&b"second"[..], None, ArtifactMeta::default(), t)
        .await
        .unwrap();
    let listed = s.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    let got = listed.iter().find(|i| i.sha256 == a.sha256).unwrap();
    assert_eq!(got, &a);
    assert_eq!(got.name.as_deref(), Some("fw"));
    assert_eq!(got.version.as_deref(), Some("1.0"));
    assert_eq!(got.uploaded_time, t);
    assert_eq!(s.info(&b.sha256).await.unwrap(), b);
    s.delete(&a.sha256).await.unwrap();
    assert!(s.info(&a.sha256).await.unwrap_err().is_not_found());
    assert!(s.delete(&a.sha256).await.unwrap_err().is_not_found());
    assert!(s.open(&a.sha256, 0, 1).await.unwrap_err().is_not_found());
    assert_eq!(s.list().await.unwrap(), vec![b]);
}

/// The same bytes uploaded twice are one artifact, with the second upload's metadata.
pub async fn same_bytes_twice_is_one_artifact<F: Fixture>(f: &F) {
    let s = store(f.open().await);
    let now = Timestamp::now();
    s.upload_from(
        &b"same"[..],
        None,
        ArtifactMeta::default().version("1"),
        now,
    )
    .await
    .unwrap();
    let second = s
        .upload_from(
            &b"same"[..],
            None,
            ArtifactMeta::default().version("2"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(s.list().await.unwrap(), vec![second.clone()]);
    assert_eq!(read(&s, &second.sha256, 0, u64::MAX).await, b"same");
}

/// What was committed is there, with its metadata, after the store is reopened.
pub async fn reopen_persists<F: Fixture>(f: &F) {
    let bytes = image(2 * CHUNK, 4);
    let info = {
        let s = store(f.open().await);
        s.upload_from(
            &bytes[..],
            None,
            ArtifactMeta::default().name("n"),
            Timestamp::now(),
        )
        .await
        .unwrap()
    };
    let s = store(f.open().await);
    assert_eq!(s.list().await.unwrap(), vec![info.clone()]);
    assert_eq!(read(&s, &info.sha256, 0, u64::MAX).await, bytes);
}

/// Many readers of one artifact at once each get the right bytes.
pub async fn concurrent_reads<F: Fixture>(f: &F) {
    let s = store(f.open().await);
    let bytes = Arc::new(image(2 * CHUNK + 3, 5));
    let d = s
        .upload_from(&bytes[..], None, ArtifactMeta::default(), Timestamp::now())
        .await
        .unwrap()
        .sha256;
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let (s, bytes) = (s.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let start = i * 1000;
            let got = read(&s, &d, start, u64::MAX).await;
            assert_eq!(got, bytes[start as usize..]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
