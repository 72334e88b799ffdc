//! The firmware download: HTTPS GETs (hyper over tokio-rustls) from the bytes already on
//! disk, with retries and rate-limited progress reports.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_RANGE, HOST, RANGE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use iot_dm_core::patterns::FirmwareResultCode;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use std::path::Path;

use http_body_util::BodyExt as _;
use iot_dm_core::patterns::{FirmwareEvent, FirmwareUpdateRequest};
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

use super::{Failure, Firmware};
use crate::client::DeviceClient;

/// How long connecting (TCP, TLS and the response head) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an attempt failed.
#[derive(Debug)]
pub(super) enum FetchError {
    /// Worth another attempt, from the bytes on disk.
    Retry(String),
    /// The bytes on disk are useless (the server does not resume them): start over.
    Restart(String),
    /// Another attempt cannot help.
    Fail(Failure),
}

fn fail(code: FirmwareResultCode, message: impl Into<String>) -> FetchError {
    FetchError::Fail(Failure::new(code, message))
}

/// An `https://host[:port]/path?query` URI, split.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub(super) authority: String,
    pub(super) path: String,
}

pub(super) fn parse_uri(uri: &str) -> Result<Target, Failure> {
    let bad = |why: &str| Failure::new(FirmwareResultCode::InvalidUri, format!("{uri}: {why}"));
    let Some(rest) = uri.strip_prefix("https://") else {
        return Err(Failure::new(
            FirmwareResultCode::UnsupportedProtocol,
            format!("{uri}: only https is supported"),
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let mut path = rest[end..].split('#').next().unwrap_or("").to_string();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if authority.contains('@') {
        return Err(bad("user information is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok(Target {
        host,
        port,
        authority: authority.to_string(),
        path,
    })
}

/// Whether an I/O error is a certificate the configured roots do not trust.
fn certificate_error(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::InvalidCertificate(c) => {
            Some(format!("untrusted server certificate: {c:?}"))
        }
        _ => None,
    }
}

/// Sends `GET` for the package from byte `from` (with `Range: bytes=from-` when `from > 0`)
/// and returns where the body starts and the body. A server that answers 200 to a range
/// request sends the whole package: the body then starts at 0.
pub(super) async fn open(
    target: &Target,
    tls: Arc<ClientConfig>,
    token: Option<&str>,
    from: u64,
) -> Result<(u64, Incoming), FetchError> {
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| FetchError::Retry(format!("connect: {e}")))?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| fail(FirmwareResultCode::InvalidUri, format!("host name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| match certificate_error(&e) {
                Some(why) => fail(FirmwareResultCode::InvalidUri, why),
                None => FetchError::Retry(format!("TLS: {e}")),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FetchError::Retry(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "firmware download connection ended");
            }
        });
        let mut request = Request::get(target.path.as_str()).header(HOST, &target.authority);
        if from > 0 {
            request = request.header(RANGE, format!("bytes={from}-"));
        }
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, token);
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| fail(FirmwareResultCode::InvalidUri, e.to_string()))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| FetchError::Retry(format!("HTTP: {e}")))
    };
    let response = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| FetchError::Retry("no response within the connect timeout".into()))??;
    let status = response.status();
    match status {
        StatusCode::OK => Ok((0, response.into_body())),
        StatusCode::PARTIAL_CONTENT => {
            let start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range_start);
            match start {
                Some(start) if start == from => Ok((start, response.into_body())),
                _ => Err(FetchError::Restart(format!(
                    "206 with a Content-Range that does not start at byte {from}"
                ))),
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            Err(FetchError::Restart("416: the server cannot resume".into()))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(fail(
            FirmwareResultCode::InvalidUri,
            format!("the server refused the device's credentials ({status})"),
        )),
        s if s.is_client_error() => Err(fail(
            FirmwareResultCode::InvalidUri,
            format!("the server answered {status}"),
        )),
        _ => Err(FetchError::Retry(format!("the server answered {status}"))),
    }
}

/// The first byte of `bytes start-end/total`.
fn content_range_start(v: &str) -> Option<u64> {
    let range = v.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

impl Firmware {
    /// Downloads the package to `image`, resuming from the bytes already there, with up to
    /// [`FirmwareOptions::download_attempts`] attempts.
    pub(super) async fn download(
        &self,
        client: &DeviceClient,
        request: &FirmwareUpdateRequest,
        image: &Path,
    ) -> Result<(), Failure> {
        let target = parse_uri(request.package_uri())?;
        let tls = self.opts.tls_config()?;
        let storage = |e: std::io::Error| {
            Failure::new(
                FirmwareResultCode::OutOfStorage,
                format!("cannot write the image: {e}"),
            )
        };
        let mut last_error = String::new();
        for attempt in 1..=self.opts.attempts() {
            if attempt > 1 {
                tokio::time::sleep(self.opts.retry_delay()).await;
            }
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(image)
                .await
                .map_err(storage)?;
            let mut have = file.metadata().await.map_err(storage)?.len();
            if have > request.size() {
                file.set_len(0).await.map_err(storage)?;
                have = 0;
            }
            if have == request.size() {
                return Ok(());
            }
            let token = client.sas_token().map_err(|e| {
                Failure::new(
                    FirmwareResultCode::UpdateFailed,
                    format!("no download token: {e}"),
                )
            })?;
            tracing::debug!(attempt, from = have, "downloading firmware");
            let result = match open(&target, tls.clone(), token.as_deref(), have).await {
                Ok((start, body)) => {
                    if start < have {
                        file.set_len(start).await.map_err(storage)?;
                        have = start;
                    }
                    self.receive(client, request, &mut file, have, body).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(FetchError::Fail(f)) => return Err(f),
                Err(FetchError::Retry(why)) => last_error = why,
                Err(FetchError::Restart(why)) => {
                    file.set_len(0).await.map_err(storage)?;
                    last_error = why;
                }
            }
            tracing::warn!(attempt, error = %last_error, "firmware download interrupted");
        }
        Err(Failure::new(
            FirmwareResultCode::ConnectionLost,
            format!(
                "the download failed {} times; last: {last_error}",
                self.opts.attempts()
            ),
        ))
    }

    /// Appends the body to `file` from offset `have`, reporting progress.
    async fn receive(
        &self,
        client: &DeviceClient,
        request: &FirmwareUpdateRequest,
        file: &mut tokio::fs::File,
        mut have: u64,
        mut body: hyper::body::Incoming,
    ) -> Result<(), FetchError> {
        let storage = |e: std::io::Error| {
            FetchError::Fail(Failure::new(
                FirmwareResultCode::OutOfStorage,
                format!("cannot write the image: {e}"),
            ))
        };
        loop {
            let frame = tokio::time::timeout(CONNECT_TIMEOUT, body.frame())
                .await
                .map_err(|_| FetchError::Retry("the download stalled".into()))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| FetchError::Retry(format!("download cut: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
            if have.saturating_add(len) > request.size() {
                return Err(FetchError::Fail(Failure::new(
                    FirmwareResultCode::IntegrityFailure,
                    format!(
                        "the server sent more than the {} bytes of the package",
                        request.size()
                    ),
                )));
            }
            file.write_all(&data).await.map_err(storage)?;
            have += len;
            self.progress(client, file, have).await.map_err(storage)?;
        }
        file.flush().await.map_err(storage)?;
        file.sync_data().await.map_err(storage)?;
        if have < request.size() {
            return Err(FetchError::Retry(format!(
                "the body ended after {have} of {} bytes",
                request.size()
            )));
        }
        Ok(())
    }

    /// Reports `bytes` downloaded, at most once per progress interval (the file is synced
    /// first, so the saved count never runs ahead of the disk).
    async fn progress(
        &self,
        client: &DeviceClient,
        file: &mut tokio::fs::File,
        bytes: u64,
    ) -> std::io::Result<()> {
        {
            let mut job = self.job.lock().await;
            let due = job
                .last_progress
                .is_none_or(|t| t.elapsed() >= self.opts.interval());
            if !due {
                return Ok(());
            }
            job.last_progress = Some(Instant::now());
        }
        file.flush().await?;
        file.sync_data().await?;
        self.step(client, FirmwareEvent::Progress { bytes }).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_host_port_and_path() {
        let t = parse_uri("https://127.0.0.1:8443/artifacts/ab?x=1#frag").unwrap();
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 8443,
                authority: "127.0.0.1:8443".into(),
                path: "/artifacts/ab?x=1".into()
            }
        );
        let t = parse_uri("https://[::1]/fw").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 443, "/fw")
        );
        assert_eq!(parse_uri("https://h").unwrap().path, "/");
        assert_eq!(
            parse_uri("http://h/fw").unwrap_err().code,
            FirmwareResultCode::UnsupportedProtocol
        );
        for bad in [
            "https://h:x/",
            "https://u@h/",
            "https://[::1/",
            "https://:1/",
        ] {
            assert_eq!(
                parse_uri(bad).unwrap_err().code,
                FirmwareResultCode::InvalidUri,
                "{bad}"
            );
        }
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
