//! End to end: `iot-dm firmware upload | list | delete` against a real `iot-dm hub` process on
//! 127.0.0.1, and the image downloaded back by a device with its own SAS token, after the hub
//! restarted.

#![allow(clippy::unwrap_used)]

#[path = "common/hub_process.rs"]
mod hub_process;

use hub_process::{code, stderr, stdout, HubProcess};

#[test]
fn upload_list_download_and_delete_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("pump-2.1.0.bin");
    std::fs::write(&file, &image).unwrap();
    let data = dir.path().join("hub");
    let hub = HubProcess::start(&data);

    let uploaded = hub.json(&[
        "firmware",
        "upload",
        file.to_str().unwrap(),
        "--version",
        "2.1.0",
        "--name",
        "pump-fw",
    ]);
    let sha = uploaded["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64);
    assert_eq!(uploaded["size"], 3_000_000);

    let text = hub.ok(&["firmware", "list"]);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("sha256"), "{text}");
    let row = lines.next().unwrap();
    assert!(row.starts_with(&sha), "{text}");
    assert!(
        row.contains("3000000") && row.contains("pump-fw") && row.contains("2.1.0"),
        "{text}"
    );

    // the same stored bytes come back to a device, after a restart
    let (mqtt, rest) = (hub.mqtt_port, hub.rest_port);
    hub.stop();
    let hub = HubProcess::start_on(&data, mqtt, rest);
    hub.ok(&["device", "create", "pump-1"]);
    let cs = hub.ok(&["connection-string", "device", "pump-1"]);
    let token = device_token(cs.trim());
    let body = download(&hub, &sha, &token);
    assert!(body == image, "the downloaded image differs");

    // bad input and a missing image
    let out = hub.run(&[
        "firmware",
        "upload",
        dir.path().join("missing.bin").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.bin"), "{}", stderr(&out));
    let out = hub.run(&["firmware", "delete", "not-a-digest"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    let out = hub.ok(&["firmware", "delete", &sha]);
    assert!(out.contains(&sha), "{out}");
    let out = hub.run(&["firmware", "delete", &sha]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(hub.json(&["firmware", "list"]), serde_json::json!([]));
    assert!(stdout(&hub.run(&["firmware", "list"])).starts_with("sha256"));
}

/// A device SAS token from a device connection string, valid for an hour.
fn device_token(cs: &str) -> String {
    use iot_dm_core::clock::Timestamp;
    use iot_dm_core::wire::{self, SasToken, SymmetricKey};
    let field = |name: &str| {
        cs.split(';')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {cs}"))
            .to_string()
    };
    let key = SymmetricKey::new(field("SharedAccessKey")).unwrap();
    let uri = wire::device_resource_uri(&field("HostName"), &field("DeviceId").parse().unwrap());
    let expiry = Timestamp::now() + std::time::Duration::from_secs(3600);
    SasToken::generate(&uri, &key, expiry, None)
        .as_str()
        .to_string()
}

/// `GET /artifacts/{sha}` over HTTPS with the device's token: the body.
fn download(hub: &HubProcess, sha: &str, token: &str) -> Vec<u8> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ca = std::fs::read(&hub.ca).unwrap();
    let port = hub.rest_port;
    let (sha, token) = (sha.to_string(), token.to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(&ca) {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let request = format!(
            "GET /artifacts/{sha}?api-version=2021-04-12 HTTP/1.1\r\nhost: localhost\r\nauthorization: {token}\r\nconnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut all = Vec::new();
        let _ = tls.read_to_end(&mut all).await;
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&all[..split]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        all[split + 4..].to_vec()
    })
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

#[test]
fn an_image_over_the_hubs_cap_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![1u8; 2_000_001]).unwrap();
    let hub = HubProcess::start_with(
        &dir.path().join("hub"),
        &["--log", "warn", "--max-artifact-size", "2000000"],
        std::process::Stdio::inherit(),
    );
    let out = hub.run(&["firmware", "upload", file.to_str().unwrap()]);
    // a refused input: exit 2, as every 400 and 413
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("2000001") && err.contains("2000000"), "{err}");
    assert_eq!(hub.json(&["firmware", "list"]), serde_json::json!([]));
    std::fs::write(&file, vec![1u8; 2_000_000]).unwrap();
    hub.ok(&["firmware", "upload", file.to_str().unwrap()]);
}
