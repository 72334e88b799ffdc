//! [`FsBlobStore`]: artifacts as files in a directory.
//!
//! ```text
//! {dir}/blobs/{sha256}        the bytes
//! {dir}/blobs/{sha256}.json   the metadata (size, upload time, name, version)
//! {dir}/tmp/{random}.part     uploads in progress (removed when the store opens)
//! ```

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::{ArtifactError, ArtifactInfo, BlobReader, BlobStore, BlobWriter, Sha256Digest, CHUNK};

/// What identifies one version of a file: when any of it changes, the bytes are hashed again
/// before they are served. File times tick with the kernel's clock, a few milliseconds: a
/// same-length change within that of the upload's commit goes unseen until the next restart,
/// and so does a change that no file time records (a failing disk): the first download after
/// a restart hashes every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: u64,
}

#[cfg(unix)]
fn stamp(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    Stamp {
        len: m.len(),
        modified: (m.mtime(), m.mtime_nsec()),
        changed: (m.ctime(), m.ctime_nsec()),
        inode: m.ino(),
    }
}

#[cfg(not(unix))]
fn stamp(m: &std::fs::Metadata) -> Stamp {
    let nanos = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    Stamp {
        len: m.len(),
        modified: (nanos, 0),
        changed: (0, 0),
        inode: 0,
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Artifacts as files under a directory; see the [module docs](super) for the contract.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    blobs: PathBuf,
    tmp: PathBuf,
    /// Files whose bytes were hashed and matched their name, as they were then.
    verified: Mutex<HashMap<Sha256Digest, Stamp>>,
    /// One file hashed at a time: many downloads starting at once hash it once.
    verifying: tokio::sync::Mutex<()>,
}

async fn blocking<T: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ArtifactError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| ArtifactError::io(operation, &e)),
        Err(e) => Err(ArtifactError::Io {
            operation,
            message: e.to_string(),
            disk_full: false,
        }),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn not_found(sha256: &Sha256Digest) -> ArtifactError {
    ArtifactError::NotFound {
        sha256: sha256.to_string(),
    }
}

impl FsBlobStore {
    /// Opens (creating when missing) the store in `dir`, and removes what interrupted uploads
    /// left.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<FsBlobStore, ArtifactError> {
        let dir: PathBuf = dir.into();
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        let (b, t) = (blobs.clone(), tmp.clone());
        let removed = blocking("opening the artifact directory", move || {
            std::fs::create_dir_all(&b)?;
            std::fs::create_dir_all(&t)?;
            let mut removed = 0usize;
            for entry in std::fs::read_dir(&t)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
            // metadata whose blob never arrived (a crash between the two renames)
            for entry in std::fs::read_dir(&b)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "json")
                    && !path.with_extension("").exists()
                {
                    std::fs::remove_file(&path)?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await?;
        if removed > 0 {
            tracing::info!(removed, dir = %dir.display(), "removed leftovers of interrupted uploads");
        }
        Ok(FsBlobStore {
            inner: Arc::new(Inner {
                blobs,
                tmp,
                verified: Mutex::new(HashMap::new()),
                verifying: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn verified(&self) -> MutexGuard<'_, HashMap<Sha256Digest, Stamp>> {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn blob_path(&self, sha256: &Sha256Digest) -> PathBuf {
        self.inner.blobs.join(sha256.to_string())
    }

    /// Hashes the open file unless it was hashed as it is now.
    async fn verify(
        &self,
        sha256: &Sha256Digest,
        file: &Arc<std::fs::File>,
        now: Stamp,
    ) -> Result<(), ArtifactError> {
        if self.verified().get(sha256) == Some(&now) {
            return Ok(());
        }
        let _one = self.inner.verifying.lock().await;
        if self.verified().get(sha256) == Some(&now) {
            return Ok(());
        }
        let f = file.clone();
        let actual = blocking("verifying an artifact", move || {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 4 * CHUNK];
            let mut offset = 0u64;
            loop {
                let n = read_at(&f, &mut buf, offset)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
        })
        .await?;
        if actual != *sha256 {
            self.verified().remove(sha256);
            tracing::error!(%sha256, %actual, "stored artifact does not match its digest; not served");
            return Err(ArtifactError::Corrupt {
                sha256: sha256.to_string(),
                actual: actual.to_string(),
            });
        }
        self.verified().insert(*sha256, now);
        Ok(())
    }
}

fn read_info(blob: &Path, sha256: &Sha256Digest) -> std::io::Result<Option<ArtifactInfo>> {
    let meta = match std::fs::metadata(blob) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let json = std::fs::read(blob.with_extension("json"));
    let parsed = json
        .ok()
        .and_then(|j| serde_json::from_slice::<ArtifactInfo>(&j).ok())
        .filter(|i| i.sha256 == *sha256);
    Ok(Some(match parsed {
        Some(mut i) => {
            i.size = meta.len();
            i
        }
        // metadata lost: what the file itself says
        None => ArtifactInfo {
            sha256: *sha256,
            size: meta.len(),
            uploaded_time: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(iot_dm_core::clock::Timestamp::from_unix_secs(0), |d| {
                    iot_dm_core::clock::Timestamp::from_unix_millis(d.as_millis() as i64)
                }),
            name: None,
            version: None,
        },
    }))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn backend(&self) -> &'static str {
        "fs"
    }

    async fn create(&self) -> Result<Box<dyn BlobWriter>, ArtifactError> {
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).map_err(|e| ArtifactError::Io {
            operation: "naming a temporary file",
            message: e.to_string(),
            disk_full: false,
        })?;
        let name: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.inner.tmp.join(format!("{name}.part"));
        let p = path.clone();
        let file = blocking("creating a temporary file", move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
        })
        .await?;
        Ok(Box::new(FsWriter {
            store: self.clone(),
            file: Some(file),
            path,
            committed: false,
        }))
    }

    async fn info(&self, sha256: &Sha256Digest) -> Result<ArtifactInfo, ArtifactError> {
        let path = self.blob_path(sha256);
        let d = *sha256;
        blocking("reading an artifact's metadata", move || {
            read_info(&path, &d)
        })
        .await?
        .ok_or_else(|| not_found(sha256))
    }

    async fn list(&self) -> Result<Vec<ArtifactInfo>, ArtifactError> {
        let dir = self.inner.blobs.clone();
        blocking("listing artifacts", move || {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                let Some(d) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<Sha256Digest>().ok())
                else {
                    continue;
                };
                if let Some(info) = read_info(&path, &d)? {
                    all.push(info);
                }
            }
            Ok(all)
        })
        .await
    }

    async fn open(
        &self,
        sha256: &Sha256Digest,
        start: u64,
        end: u64,
    ) -> Result<Box<dyn BlobReader>, ArtifactError> {
        let path = self.blob_path(sha256);
        let opened = blocking("opening an artifact", move || {
            match std::fs::File::open(path) {
                Ok(f) => {
                    let m = f.metadata()?;
                    Ok(Some((f, stamp(&m))))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
        let (file, now) = opened.ok_or_else(|| not_found(sha256))?;
        let file = Arc::new(file);
        self.verify(sha256, &file, now).await?;
        let end = end.min(now.len);
        Ok(Box::new(FsReader {
            file,
            pos: start.min(end),
            end,
        }))
    }

    async fn delete(&self, sha256: &Sha256Digest) -> Result<(), ArtifactError> {
        let path = self.blob_path(sha256);
        let dir = self.inner.blobs.clone();
        let existed = blocking("deleting an artifact", move || {
            let existed = match std::fs::remove_file(&path) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            match std::fs::remove_file(path.with_extension("json")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            sync_dir(&dir)?;
            Ok(existed)
        })
        .await?;
        self.verified().remove(sha256);
        if existed {
            Ok(())
        } else {
            Err(not_found(sha256))
        }
    }
}

#[derive(Debug)]
struct FsWriter {
    store: FsBlobStore,
    /// `None` only while a write is under way on the blocking pool.
    file: Option<std::fs::File>,
    path: PathBuf,
    committed: bool,
}

impl FsWriter {
    fn file(&mut self) -> Result<std::fs::File, ArtifactError> {
        self.file.take().ok_or_else(|| ArtifactError::Io {
            operation: "writing an upload",
            message: "an earlier write failed".into(),
            disk_full: false,
        })
    }
}

#[async_trait]
impl BlobWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ArtifactError> {
        let mut file = self.file()?;
        let file = blocking("writing an upload", move || {
            file.write_all(&chunk)?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok(())
    }

    async fn commit(mut self: Box<Self>, info: &ArtifactInfo) -> Result<(), ArtifactError> {
        let file = self.file()?;
        let tmp = self.path.clone();
        let blobs = self.store.inner.blobs.clone();
        let final_path = self.store.blob_path(&info.sha256);
        let json = serde_json::to_vec(info).map_err(|e| ArtifactError::Io {
            operation: "writing an artifact's metadata",
            message: e.to_string(),
            disk_full: false,
        })?;
        let meta_tmp = tmp.with_extension("json");
        let placed = final_path.clone();
        let now = blocking("committing an upload", move || {
            file.sync_all()?;
            drop(file);
            let mut m = std::fs::File::create(&meta_tmp)?;
            let written = m.write_all(&json).and_then(|()| m.sync_all());
            if let Err(e) = written {
                let _ = std::fs::remove_file(&meta_tmp);
                return Err(e);
            }
            std::fs::rename(&meta_tmp, final_path.with_extension("json"))?;
            std::fs::rename(&tmp, &final_path)?;
            sync_dir(&blobs)?;
            Ok(stamp(&std::fs::metadata(&placed)?))
        })
        .await?;
        self.committed = true;
        // the bytes were hashed on their way in: the file as it is now needs no second pass
        self.store.verified().insert(info.sha256, now);
        Ok(())
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.committed {
            // an abandoned upload leaves nothing behind
            self.file.take();
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(self.path.with_extension("json"));
        }
    }
}

#[derive(Debug)]
struct FsReader {
    file: Arc<std::fs::File>,
    pos: u64,
    end: u64,
}

#[async_trait]
impl BlobReader for FsReader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ArtifactError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let want = usize::try_from(self.end - self.pos).map_or(CHUNK, |n| n.min(CHUNK));
        let (file, pos) = (self.file.clone(), self.pos);
        let chunk = blocking("reading an artifact", move || {
            let mut buf = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                let n = read_at(&file, &mut buf[filled..], pos + filled as u64)?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the artifact file is shorter than when it was opened",
                    ));
                }
                filled += n;
            }
            Ok(buf)
        })
        .await?;
        self.pos += chunk.len() as u64;
        Ok(Some(Bytes::from(chunk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::conformance::Fixture;
    use crate::artifacts::{ArtifactMeta, ArtifactStore};
    use iot_dm_core::clock::Timestamp;

    /// A store in a temporary directory, removed with the fixture.
    struct FsFixture {
        dir: tempfile::TempDir,
    }

    impl FsFixture {
        fn new() -> Self {
            FsFixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }
    }

    #[async_trait]
    impl Fixture for FsFixture {
        async fn open(&self) -> Arc<dyn BlobStore> {
            Arc::new(FsBlobStore::open(self.dir.path()).await.unwrap())
        }
    }

    crate::artifact_conformance!(FsFixture::new());

    #[tokio::test]
    async fn a_file_changed_on_disk_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobStore::open(dir.path()).await.unwrap();
        let store = ArtifactStore::new(Arc::new(blobs.clone()), 1 << 20);
        let image = vec![1u8; 3 * CHUNK + 5];
        let info = store
            .upload_from(&image[..], None, ArtifactMeta::default(), Timestamp::now())
            .await
            .unwrap();
        // served once (verified), then changed in place with the same length
        store.open(&info.sha256, 0, u64::MAX).await.unwrap();
        let path = dir.path().join("blobs").join(info.sha256.to_string());
        // file times tick with the kernel's clock (a few milliseconds)
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[CHUNK] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = store.open(&info.sha256, 0, u64::MAX).await.unwrap_err();
        assert!(matches!(e, ArtifactError::Corrupt { .. }), "{e}");
        // and after a restart
        let reopened = ArtifactStore::new(
            Arc::new(FsBlobStore::open(dir.path()).await.unwrap()),
            1 << 20,
        );
        let e = reopened.open(&info.sha256, 0, 1).await.unwrap_err();
        assert!(matches!(e, ArtifactError::Corrupt { .. }), "{e}");
    }

    #[tokio::test]
    async fn leftovers_of_interrupted_uploads_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobStore::open(dir.path()).await.unwrap();
        let mut w = blobs.create().await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        // a crash: the writer is never dropped
        std::mem::forget(w);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            1
        );
        let reopened = FsBlobStore::open(dir.path()).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert!(reopened.list().await.unwrap().is_empty());
    }
}
