//! The firmware artifact store over real HTTPS on 127.0.0.1: uploads through `ServiceClient`,
//! device downloads with their own SAS token (ranges, resuming, HEAD), refusals (401, 404,
//! 413, a digest mismatch), an upload cut mid-body, a file corrupted on disk, and a restart.

#![allow(clippy::unwrap_used)]

mod rest_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use iot_dm_core::clock::Timestamp;
use iot_dm_core::wire::{self, SasToken, SymmetricKey};
use iot_dm_service::api::prelude::*;
use iot_dm_service::api::ArtifactUpload;
use iot_dm_service::artifacts::{ArtifactError, Sha256Digest};
use iot_dm_service::hub::DeviceSpec;
use iot_dm_service::{Hub, HubError};
use rest_support::{Answer, Served, API, HOST};

/// Bytes that differ from one offset to the next.
fn image(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn durable_hub(dir: &Path, max: Option<u64>) -> Hub {
    let mut b = Hub::builder().host_name(HOST).path(dir.join("hub.redb"));
    if let Some(m) = max {
        b = b.max_artifact_size(m);
    }
    b.open().await.unwrap()
}

fn blobs(dir: &Path) -> PathBuf {
    dir.join("hub.artifacts").join("blobs")
}

fn temps(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("hub.artifacts").join("tmp"))
        .unwrap()
        .count()
}

/// Creates `id` and returns its own SAS token, valid for an hour.
async fn device_token(hub: &Hub, id: &str) -> String {
    let d = hub
        .create_device(DeviceSpec::new(id.parse().unwrap()))
        .await
        .unwrap();
    let key = SymmetricKey::new(d.symmetric_key.primary_key.unwrap()).unwrap();
    let uri = wire::device_resource_uri(HOST, &d.device_id);
    SasToken::generate(
        &uri,
        &key,
        Timestamp::now() + Duration::from_secs(3600),
        None,
    )
    .as_str()
    .to_string()
}

async fn fetch(
    s: &Served,
    method: Method,
    sha: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> Answer {
    let mut headers = Vec::new();
    if let Some(t) = token {
        headers.push(("authorization", t));
    }
    if let Some(r) = range {
        headers.push(("range", r));
    }
    s.raw(method, &format!("/artifacts/{sha}?{API}"), &headers, "")
        .await
}

async fn upload(
    s: &Served,
    bytes: &[u8],
    with: ArtifactUpload,
) -> Result<iot_dm_service::artifacts::ArtifactInfo, HubError> {
    s.client("registryReadWrite")
        .upload_artifact(&mut &bytes[..], with)
        .await
}

async fn restart(s: Served, dir: &Path) -> Served {
    let Served {
        hub, mut server, ..
    } = s;
    server.take().unwrap().shutdown().await;
    hub.shutdown().await.unwrap();
    drop(hub);
    Served::start_with(durable_hub(dir, None).await, None).await
}

#[tokio::test]
async fn upload_download_ranges_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with(durable_hub(dir.path(), None).await, None).await;
    let bytes = image(1_000_003);
    let sha = Sha256Digest::of(&bytes);
    let info = upload(
        &s,
        &bytes,
        ArtifactUpload::new()
            .sha256(sha)
            .size(bytes.len() as u64)
            .name("pump-fw")
            .version("2.1.0"),
    )
    .await
    .unwrap();
    assert_eq!((info.sha256, info.size), (sha, bytes.len() as u64));
    let listed = s.client("registryRead").artifacts().await.unwrap();
    assert_eq!(listed, vec![info.clone()]);
    assert_eq!(listed[0].name.as_deref(), Some("pump-fw"));
    assert_eq!(listed[0].version.as_deref(), Some("2.1.0"));
    let raw_list = s
        .call("registryRead", Method::GET, "/artifacts", None)
        .await;
    assert_eq!(raw_list.json()[0]["sha256"], sha.to_string());
    assert_eq!(raw_list.json()[0]["size"], 1_000_003);
    assert!(raw_list.json()[0]["uploadedTime"].is_string());

    let token = device_token(&s.hub, "pump-1").await;
    let sha = sha.to_string();
    // whole
    let a = fetch(&s, Method::GET, &sha, Some(&token), None).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-length"), Some("1000003"));
    assert_eq!(a.header("accept-ranges"), Some("bytes"));
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    assert!(a.body == bytes, "the downloaded bytes differ");
    // HEAD gives the length and no body
    let a = fetch(&s, Method::HEAD, &sha, Some(&token), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("1000003"));
    assert!(a.body.is_empty());
    // a range, and a download resumed from an offset
    let a = fetch(&s, Method::GET, &sha, Some(&token), Some("bytes=100-299")).await;
    assert_eq!(a.status, 206, "{a:?}");
    assert_eq!(a.header("content-range"), Some("bytes 100-299/1000003"));
    assert!(a.body[..] == bytes[100..300]);
    let cut = 700_001;
    let a = fetch(
        &s,
        Method::GET,
        &sha,
        Some(&token),
        Some(&format!("bytes={cut}-")),
    )
    .await;
    assert_eq!(a.status, 206);
    assert_eq!(
        a.header("content-range"),
        Some("bytes 700001-1000002/1000003")
    );
    let mut resumed = bytes[..cut].to_vec();
    resumed.extend_from_slice(&a.body);
    assert!(resumed == bytes, "a resumed download differs");
    let a = fetch(&s, Method::GET, &sha, Some(&token), Some("bytes=-10")).await;
    assert!(a.status == 206 && a.body[..] == bytes[bytes.len() - 10..]);
    // unsatisfiable
    let a = fetch(&s, Method::GET, &sha, Some(&token), Some("bytes=1000003-")).await;
    assert_eq!(a.status, 416);
    assert_eq!(a.header("content-range"), Some("bytes */1000003"));
    // back ends with RegistryRead download too; ServiceConnect alone does not
    let a = fetch(
        &s,
        Method::GET,
        &sha,
        Some(&s.token("registryRead")),
        Some("bytes=0-0"),
    )
    .await;
    assert!(a.status == 206 && a.body[..] == bytes[..1]);
    let a = fetch(&s, Method::GET, &sha, Some(&s.token("service")), None).await;
    assert_eq!(a.status, 403);

    // 401: no token, another device's key, a wrong signature, an expired token
    let other = device_token(&s.hub, "pump-2").await;
    let forged = other.replace("pump-2", "pump-1");
    let d = s.hub.get_device("pump-1").unwrap();
    let key = SymmetricKey::new(
        d.authentication()
            .symmetric_key
            .primary_key
            .clone()
            .unwrap(),
    )
    .unwrap();
    let expired = SasToken::generate(
        &wire::device_resource_uri(HOST, &"pump-1".parse().unwrap()),
        &key,
        Timestamp::from_unix_secs(Timestamp::now().unix_secs() - 5),
        None,
    );
    for bad in [
        None,
        Some(forged.as_str()),
        Some("SharedAccessSignature sr=x&sig=y&se=1"),
        Some(expired.as_str()),
    ] {
        for method in [Method::GET, Method::HEAD] {
            let a = fetch(&s, method.clone(), &sha, bad, None).await;
            assert_eq!(a.status, 401, "{method} with {bad:?}: {a:?}");
            if method == Method::GET {
                assert_eq!(a.code(), 401_003);
            }
        }
    }
    // a disabled device is refused
    s.hub.disable_device("pump-2", "test").await.unwrap();
    assert_eq!(
        fetch(&s, Method::GET, &sha, Some(&other), None)
            .await
            .status,
        401
    );

    // 404: an unknown digest; 400: not a digest
    let unknown = Sha256Digest::of(b"never uploaded").to_string();
    let a = fetch(&s, Method::GET, &unknown, Some(&token), None).await;
    assert_eq!((a.status.as_u16(), a.code()), (404, 404_601), "{a:?}");
    assert_eq!(
        fetch(&s, Method::HEAD, &unknown, Some(&token), None)
            .await
            .status,
        404
    );
    let a = fetch(&s, Method::GET, "not-a-digest", Some(&token), None).await;
    assert_eq!((a.status.as_u16(), a.code()), (400, 400_004), "{a:?}");

    // a mismatched digest is refused, typed, and stores nothing
    let e = upload(
        &s,
        b"other bytes",
        ArtifactUpload::new().sha256(Sha256Digest::of(b"x")),
    )
    .await
    .unwrap_err();
    match e {
        HubError::Artifact(ArtifactError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, Sha256Digest::of(b"x").to_string());
            assert_eq!(actual, Sha256Digest::of(b"other bytes").to_string());
        }
        other => panic!("{other:?}"),
    }
    // the server computes the digest when none is given
    let computed = upload(&s, b"tiny", ArtifactUpload::new()).await.unwrap();
    assert_eq!(computed.sha256, Sha256Digest::of(b"tiny"));
    assert_eq!(s.hub.artifacts().await.unwrap().len(), 2);

    // delete
    let client = s.client("registryReadWrite");
    client.delete_artifact(&computed.sha256).await.unwrap();
    let e = client.delete_artifact(&computed.sha256).await.unwrap_err();
    assert!(
        matches!(e, HubError::Artifact(ArtifactError::NotFound { .. })),
        "{e:?}"
    );
    assert_eq!(
        fetch(
            &s,
            Method::GET,
            &computed.sha256.to_string(),
            Some(&token),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(temps(dir.path()), 0);
}

#[tokio::test]
async fn the_size_cap_is_a_typed_413() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 1 << 20;
    let s = Served::start_with(durable_hub(dir.path(), Some(cap)).await, None).await;
    let over = image(cap as usize + 1);
    for with in [
        ArtifactUpload::new().size(over.len() as u64),
        ArtifactUpload::new(),
    ] {
        let e = upload(&s, &over, with.clone()).await.unwrap_err();
        match e {
            HubError::Artifact(ArtifactError::TooLarge { limit, .. }) => assert_eq!(limit, cap),
            other => panic!("{with:?}: {other:?}"),
        }
    }
    let a = s
        .raw(
            Method::POST,
            &format!("/artifacts?{API}"),
            &[("authorization", &s.token("registryReadWrite"))],
            over.clone(),
        )
        .await;
    assert_eq!((a.status.as_u16(), a.code()), (413, 413_601), "{a:?}");
    assert!(a.message().contains("1048576"), "{}", a.message());
    assert!(s.hub.artifacts().await.unwrap().is_empty());
    assert_eq!(temps(dir.path()), 0);
    // exactly the cap is fine
    upload(&s, &over[..cap as usize], ArtifactUpload::new())
        .await
        .unwrap();
}

/// Sends the headers of a 4 MiB upload and half its body, then drops the connection.
async fn cut_upload(s: &Served, dir: &Path, sha: &str) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port()))
        .await
        .unwrap();
    let config = s.certs.client_config().unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "PUT /artifacts/{sha}?{API} HTTP/1.1\r\nhost: {HOST}\r\nauthorization: {}\r\ncontent-length: {}\r\n\r\n",
        s.token("registryReadWrite"),
        4 << 20
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&image(2 << 20)).await.unwrap();
    tls.flush().await.unwrap();
    // the hub is writing the upload to a temporary file
    let mut seen = false;
    for _ in 0..200 {
        if temps(dir) == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "no temporary file while the upload was under way");
    drop(tls);
}

#[tokio::test]
async fn an_upload_cut_mid_body_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with(durable_hub(dir.path(), None).await, None).await;
    let whole = image(4 << 20);
    let sha = Sha256Digest::of(&whole).to_string();
    cut_upload(&s, dir.path(), &sha).await;
    // the hub sees the connection end and drops the upload's temporary file
    for _ in 0..200 {
        if temps(dir.path()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        temps(dir.path()),
        0,
        "the interrupted upload's temporary file is left"
    );
    assert!(s.hub.artifacts().await.unwrap().is_empty());
    let token = device_token(&s.hub, "d").await;
    assert_eq!(
        fetch(&s, Method::GET, &sha, Some(&token), None)
            .await
            .status,
        404
    );
    let s = restart(s, dir.path()).await;
    assert!(s.hub.artifacts().await.unwrap().is_empty());
    assert_eq!(temps(dir.path()), 0);
    assert_eq!(std::fs::read_dir(blobs(dir.path())).unwrap().count(), 0);
    // and the same upload, whole, then works
    let info = upload(
        &s,
        &whole,
        ArtifactUpload::new().sha256(sha.parse().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(info.size, 4 << 20);
}

#[tokio::test]
async fn a_corrupted_file_is_not_served_and_artifacts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with(durable_hub(dir.path(), None).await, None).await;
    let good = image(600_000);
    let kept = upload(&s, &good, ArtifactUpload::new().version("1"))
        .await
        .unwrap();
    let bad = image(300_000);
    let spoiled = upload(&s, &bad[..], ArtifactUpload::new().version("2"))
        .await
        .unwrap();
    let token = device_token(&s.hub, "d").await;
    let spoiled_sha = spoiled.sha256.to_string();
    assert_eq!(
        fetch(&s, Method::GET, &spoiled_sha, Some(&token), None)
            .await
            .status,
        200
    );
    // one byte changed in place, same length
    let path = blobs(dir.path()).join(&spoiled_sha);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[123_456] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    for range in [None, Some("bytes=0-9")] {
        let a = fetch(&s, Method::GET, &spoiled_sha, Some(&token), range).await;
        assert_eq!((a.status.as_u16(), a.code()), (500, 500_601), "{a:?}");
        assert!(a.message().contains(&spoiled_sha), "{}", a.message());
    }

    let s = restart(s, dir.path()).await;
    let listed = s.hub.artifacts().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&kept));
    let a = fetch(
        &s,
        Method::GET,
        &kept.sha256.to_string(),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.body == good);
    let a = fetch(&s, Method::GET, &spoiled_sha, Some(&token), None).await;
    assert_eq!(
        a.status, 500,
        "a corrupted file is served after a restart: {a:?}"
    );
}

#[tokio::test]
async fn a_download_starts_with_its_length_and_a_stalled_reader_blocks_nothing() {
    // a 40 MiB image read by a client that stops reading after the first bytes
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with(durable_hub(dir.path(), None).await, None).await;
    let bytes = image(40 << 20);
    let info = upload(&s, &bytes, ArtifactUpload::new()).await.unwrap();
    let token = device_token(&s.hub, "d").await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port()))
        .await
        .unwrap();
    let config = s.certs.client_config().unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(rustls::pki_types::ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "GET /artifacts/{}?{API} HTTP/1.1\r\nhost: {HOST}\r\nauthorization: {token}\r\n\r\n",
        info.sha256
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = tls.read(&mut first).await.unwrap();
    let text = String::from_utf8_lossy(&first[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains(&format!("content-length: {}", 40 << 20)));
    // the client stops reading; the download stays open and the hub is not blocked
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = s
        .call("registryRead", Method::GET, "/artifacts", None)
        .await;
    assert_eq!(a.status, 200);
    drop(tls);
}
