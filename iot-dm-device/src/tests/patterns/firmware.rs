//! Firmware updates against a real HTTPS server on 127.0.0.1 (real time: the download is
//! real network I/O).

use std::time::Duration;

use iot_dm_core::patterns::FirmwareUpdateRequest;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::json;

use super::https::FileServer;
use super::*;
use crate::patterns::{
    FirmwareOptions, MemoryPatternState, PatternState, SigningKey, SimulatedDevice,
};

const SIZE: usize = 300_000;

struct Rig {
    hub: TestHub,
    server: FileServer,
    device: SimulatedDevice,
    state: Arc<MemoryPatternState>,
    dir: tempfile::TempDir,
    sha: String,
}

impl Rig {
    async fn new() -> Rig {
        let image: Vec<u8> = (0..SIZE)
            .map(|i| u8::try_from(i * 31 % 251).unwrap())
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, &image);
        let sha = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Rig {
            hub: TestHub::new().await,
            server: FileServer::start(image).await,
            device: SimulatedDevice::new("1.0.0"),
            state: Arc::new(MemoryPatternState::new()),
            dir: tempfile::tempdir().unwrap(),
            sha,
        }
    }

    fn opts(&self) -> FirmwareOptions {
        FirmwareOptions::new(self.dir.path())
            .trusted_ca_pem(self.server.ca_pem().as_bytes())
            .unwrap()
            .progress_interval(Duration::from_millis(100))
            .download_attempts(3, Duration::from_millis(100))
    }

    fn request(&self, version: &str) -> FirmwareUpdateRequest {
        let size = u64::try_from(SIZE).unwrap();
        FirmwareUpdateRequest::new(version, self.server.url(&self.sha), &self.sha, size).unwrap()
    }

    fn image_path(&self) -> std::path::PathBuf {
        self.dir.path().join(format!("{}.part", self.sha))
    }

    async fn start(&self, opts: FirmwareOptions) -> DeviceClient {
        let client = connect_ticking(&self.hub).await;
        client
            .enable_firmware(self.device.clone(), self.state.clone(), opts)
            .await
            .unwrap();
        eventually("subscribed", || !self.hub.subscriptions().is_empty()).await;
        client
    }

    fn firmware(&self) -> Value {
        pattern(&self.hub, "firmware")
    }
}

#[tokio::test]
async fn a_download_cut_midway_resumes_from_the_bytes_on_disk() {
    let rig = Rig::new().await;
    let _client = rig.start(rig.opts()).await;
    assert_eq!(rig.firmware()["state"], "idle");
    assert_eq!(rig.firmware()["currentVersion"], "1.0.0");

    rig.server.cut_next_after(100_000);
    rig.hub
        .set_desired(rig.request("2.0.0").to_desired_patch())
        .await;
    let done = wait_pattern(&rig.hub, "firmware", "succeeded").await;
    assert_eq!(done["currentVersion"], "2.0.0");
    assert_eq!(done["targetVersion"], "2.0.0");
    assert_eq!(rig.device.firmware_version(), "2.0.0");

    let served = rig.server.served();
    assert_eq!(served.len(), 2, "{served:?}");
    assert_eq!(
        (served[0].range.as_deref(), served[0].sent),
        (None, 100_000)
    );
    assert_eq!(served[1].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(
        (served[1].status, served[1].from, served[1].sent),
        (206, 100_000, 200_000)
    );
    for s in &served {
        assert_eq!(s.path, format!("/artifacts/{}", rig.sha));
        let auth = s.authorization.as_deref().unwrap_or_default();
        assert!(
            auth.starts_with("SharedAccessSignature sr=hub.test%2Fdevices%2Fdev-1"),
            "{auth}"
        );
    }
    let seen = states(&rig.hub, "firmware");
    for state in [
        "downloading",
        "downloaded",
        "verifying",
        "applying",
        "rebooting",
        "succeeded",
    ] {
        assert!(
            seen.iter().any(|s| s == state),
            "{state} missing from {seen:?}"
        );
    }
    assert!(rig.hub.connects().len() >= 2, "rebooted: reconnected");
    assert!(
        !rig.image_path().exists(),
        "the image is removed once installed"
    );
    // the same desired request again (a reconnect's resync) does not run it again
    rig.hub.drop_link();
    eventually("reconnected", || rig.hub.current_session() == Some(3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.server.served().len(), 2);
}

#[tokio::test]
async fn a_corrupted_image_fails_verification_and_is_not_installed() {
    let rig = Rig::new().await;
    let _client = rig.start(rig.opts()).await;
    rig.device.corrupt_download(true);
    rig.hub
        .set_desired(rig.request("2.0.0").to_desired_patch())
        .await;
    let failed = wait_pattern(&rig.hub, "firmware", "failed").await;
    assert_eq!(failed["result"]["code"], "integrityFailure");
    let message = failed["result"]["message"].as_str().unwrap();
    assert!(message.contains("sha256 mismatch"), "{message}");
    assert_eq!(failed["currentVersion"], "1.0.0");
    assert_eq!(rig.device.firmware_version(), "1.0.0");
    assert!(!states(&rig.hub, "firmware").iter().any(|s| s == "applying"));
    assert!(!rig.image_path().exists(), "a corrupt image is deleted");
}

#[tokio::test]
async fn signatures_are_checked_with_the_configured_key() {
    let rig = Rig::new().await;
    let rng = SystemRandom::new();
    let pair = |_: ()| {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    };
    let (trusted, other) = (pair(()), pair(()));
    let key = SigningKey::ed25519(trusted.public_key().as_ref()).unwrap();
    let client = rig.start(rig.opts().signing_key(key)).await;
    let digest = hex_decode(&rig.sha);
    let b64 = |sig: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(sig)
    };

    let forged = rig
        .request("2.0.0")
        .with_signature(&b64(other.sign(&digest).as_ref()))
        .unwrap();
    let (status, _) = rig.hub.invoke("firmwareUpdate", forged.to_json()).await;
    assert_eq!(status, 202);
    let failed = wait_pattern(&rig.hub, "firmware", "failed").await;
    assert_eq!(failed["result"]["code"], "integrityFailure");
    assert!(
        failed["result"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{failed}"
    );
    assert_eq!(rig.device.firmware_version(), "1.0.0");

    let unsigned = rig.request("2.0.0");
    assert_eq!(
        rig.hub.invoke("firmwareUpdate", unsigned.to_json()).await.0,
        202
    );
    eventually("unsigned refused", || {
        rig.firmware()["result"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no signature"))
    })
    .await;

    let signed = rig
        .request("2.0.0")
        .with_signature(&b64(trusted.sign(&digest).as_ref()))
        .unwrap();
    assert_eq!(
        rig.hub.invoke("firmwareUpdate", signed.to_json()).await.0,
        202
    );
    let done = wait_pattern(&rig.hub, "firmware", "succeeded").await;
    assert_eq!(done["currentVersion"], "2.0.0");
    // a bad request is refused with the reason
    let (status, body) = rig
        .hub
        .invoke("firmwareUpdate", json!({"targetVersion": "3"}))
        .await;
    assert_eq!(status, 400, "{body}");
    drop(client);
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn a_device_killed_mid_download_resumes_after_the_restart() {
    let rig = Rig::new().await;
    let client = rig.start(rig.opts()).await;
    rig.server.stall_next_after(120_000);
    rig.hub
        .set_desired(rig.request("2.0.0").to_desired_patch())
        .await;
    eventually("120000 bytes on disk", || {
        std::fs::metadata(rig.image_path()).is_ok_and(|m| m.len() == 120_000)
    })
    .await;
    eventually("progress reported", || {
        rig.firmware()["bytesDownloaded"].as_u64() > Some(0)
    })
    .await;
    client.close().await; // the process dies
    drop(client);
    let saved = rig.state.load("firmware").unwrap().unwrap();
    assert_eq!(saved["status"]["state"], "downloading");

    let _client = rig.start(rig.opts()).await;
    let done = wait_pattern(&rig.hub, "firmware", "succeeded").await;
    assert_eq!(done["currentVersion"], "2.0.0");
    let served = rig.server.served();
    assert_eq!(served.len(), 2, "{served:?}");
    assert_eq!(served[1].range.as_deref(), Some("bytes=120000-"));
    assert_eq!(served[1].sent, 180_000);
}

#[tokio::test]
async fn a_device_killed_while_rebooting_reports_the_running_version_after_the_restart() {
    let rig = Rig::new().await;
    rig.device.hang_on_restart(true);
    let client = rig.start(rig.opts()).await;
    rig.hub
        .set_desired(rig.request("2.0.0").to_desired_patch())
        .await;
    wait_pattern(&rig.hub, "firmware", "rebooting").await;
    client.close().await;
    drop(client);
    rig.device.hang_on_restart(false);
    rig.device.power_cycle(); // boots the staged image

    let _client = rig.start(rig.opts()).await;
    let done = wait_pattern(&rig.hub, "firmware", "succeeded").await;
    assert_eq!(done["currentVersion"], "2.0.0");
    assert_eq!(rig.server.served().len(), 1);
}

#[tokio::test]
async fn a_device_that_comes_back_on_the_old_version_reports_a_roll_back() {
    let rig = Rig::new().await;
    rig.device.roll_back_on_reboot(true);
    let _client = rig.start(rig.opts()).await;
    rig.hub
        .set_desired(rig.request("2.0.0").to_desired_patch())
        .await;
    let rolled = wait_pattern(&rig.hub, "firmware", "rolledBack").await;
    assert_eq!(rolled["result"]["code"], "updateFailed");
    assert_eq!(rolled["currentVersion"], "1.0.0");
}

#[tokio::test]
async fn already_on_the_target_version_succeeds_without_a_download() {
    let rig = Rig::new().await;
    let _client = rig.start(rig.opts()).await;
    let (status, body) = rig
        .hub
        .invoke("firmwareUpdate", rig.request("1.0.0").to_json())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "succeeded");
    let done = wait_pattern(&rig.hub, "firmware", "succeeded").await;
    assert_eq!(done["currentVersion"], "1.0.0");
    assert!(rig.server.served().is_empty());
}

#[tokio::test]
async fn a_failing_install_and_an_unreachable_package_are_reported_with_their_codes() {
    let rig = Rig::new().await;
    let _client = rig.start(rig.opts()).await;
    rig.device
        .fail_firmware_apply(Some("the inactive slot is bad"));
    assert_eq!(
        rig.hub
            .invoke("firmwareUpdate", rig.request("2.0.0").to_json())
            .await
            .0,
        202
    );
    let failed = wait_pattern(&rig.hub, "firmware", "failed").await;
    assert_eq!(
        failed["result"],
        json!({"code": "updateFailed", "message": "the inactive slot is bad"})
    );

    // plain http is not a supported protocol
    let size = u64::try_from(SIZE).unwrap();
    let http =
        FirmwareUpdateRequest::new("3.0.0", "http://127.0.0.1:1/fw", &rig.sha, size).unwrap();
    assert_eq!(
        rig.hub.invoke("firmwareUpdate", http.to_json()).await.0,
        202
    );
    eventually("unsupportedProtocol", || {
        rig.firmware()["result"]["code"] == "unsupportedProtocol"
    })
    .await;
    // nothing listens there: every attempt fails, then connectionLost (never stuck downloading)
    let gone =
        FirmwareUpdateRequest::new("3.0.0", "https://127.0.0.1:1/fw", &rig.sha, size).unwrap();
    assert_eq!(
        rig.hub.invoke("firmwareUpdate", gone.to_json()).await.0,
        202
    );
    eventually("connectionLost", || {
        rig.firmware()["result"]["code"] == "connectionLost"
    })
    .await;
    assert_eq!(rig.firmware()["state"], "failed");
}

#[tokio::test]
async fn progress_is_reported_at_most_once_per_interval() {
    let rig = Rig::new().await;
    let opts = rig.opts().progress_interval(Duration::from_secs(3600));
    let _client = rig.start(opts).await;
    rig.server.cut_next_after(50_000); // two attempts, still one progress interval
    rig.hub
        .set_desired(rig.request("2.0.0").to_desired_patch())
        .await;
    wait_pattern(&rig.hub, "firmware", "succeeded").await;
    let downloading: Vec<Value> = reported_patches(&rig.hub)
        .into_iter()
        .map(|p| p["deviceManagement"]["firmware"].clone())
        .filter(|f| f["state"] == "downloading")
        .collect();
    // the start, then the first chunk; nothing more within the hour
    assert_eq!(downloading.len(), 2, "{downloading:?}");
    assert_eq!(downloading[0]["bytesDownloaded"], 0);
    assert!(downloading[1]["bytesDownloaded"].as_u64() > Some(0));
    assert_eq!(rig.server.served().len(), 2);
}
