//! Firmware artifacts (ours): `POST /artifacts` and `PUT /artifacts/{sha256}` upload (the body
//! streamed to disk, never held whole), `GET /artifacts` lists, `GET|HEAD
//! /artifacts/{sha256}` download (with `Range`, so downloads resume) and `DELETE
//! /artifacts/{sha256}` removes. Devices download with their own SAS token; back ends with
//! RegistryRead; uploading and deleting take RegistryWrite.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use http_body_util::BodyExt as _;

use crate::artifacts::{ArtifactError, ArtifactMeta, Sha256Digest};
use crate::rest::context::{Ctx, Reply, UploadBody};
use crate::rest::error::ApiError;
use crate::rest::router::{registry_read, registry_write, route, Route};
use crate::HubError;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(GET "/artifacts", registry_read(), list),
        route!(POST "/artifacts", registry_write(), post).streaming_body(),
        route!(PUT "/artifacts/{sha256}", registry_write(), put).streaming_body(),
        route!(GET "/artifacts/{sha256}", registry_read(), get).devices_too(),
        route!(HEAD "/artifacts/{sha256}", registry_read(), head).devices_too(),
        route!(DELETE "/artifacts/{sha256}", registry_write(), delete),
    ]
}

/// The most of a refused upload still read, so that a client still sending sees the answer.
const DRAIN_LIMIT: usize = 4 << 20;

/// How many chunks a download reads ahead of the connection.
const READ_AHEAD: usize = 4;

const OCTETS: &str = "application/octet-stream";

fn digest(cx: &Ctx) -> Result<Sha256Digest, ApiError> {
    cx.param("sha256")
        .parse()
        .map_err(|e: ArtifactError| ApiError::from(HubError::from(e)))
}

fn artifact_error(e: ArtifactError) -> ApiError {
    ApiError::from(HubError::from(e))
}

async fn list(cx: Ctx) -> Result<Reply, ApiError> {
    let all = cx
        .hub
        .artifact_store()
        .list()
        .await
        .map_err(artifact_error)?;
    Reply::json(&all)
}

async fn post(cx: Ctx) -> Result<Reply, ApiError> {
    upload(cx, None).await
}

async fn put(cx: Ctx) -> Result<Reply, ApiError> {
    let expected = digest(&cx)?;
    upload(cx, Some(expected)).await
}

/// Reads what is left of a refused body (at most [`DRAIN_LIMIT`], waiting at most `idle` for
/// each part), so that the client reads the refusal instead of a reset connection.
async fn drain(upload: &mut UploadBody, declared: Option<u64>) {
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return;
    }
    let mut seen = 0usize;
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(upload.idle_timeout, upload.body.frame()).await
    {
        seen += frame.data_ref().map_or(0, Bytes::len);
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

async fn upload(mut cx: Ctx, expected: Option<Sha256Digest>) -> Result<Reply, ApiError> {
    let meta = ArtifactMeta {
        name: cx.query("name").map(str::to_string),
        version: cx.query("version").map(str::to_string),
    };
    let declared = match cx.header("content-length")? {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::argument("Content-Length", "not a whole number"))?,
        ),
    };
    let mut body = cx.upload.take().ok_or_else(|| {
        ApiError::new(500_001, "ServerError", "the upload's body was already read")
    })?;
    let store = cx.hub.artifact_store().clone();
    let mut upload = match store.begin(expected, declared, meta).await {
        Ok(u) => u,
        Err(e) => {
            drain(&mut body, declared).await;
            return Err(artifact_error(e));
        }
    };
    loop {
        let frame = match tokio::time::timeout(body.idle_timeout, body.body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    408_000,
                    "RequestTimeout",
                    format!(
                        "no part of the upload arrived for {} s",
                        body.idle_timeout.as_secs_f64()
                    ),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::info!(received = upload.size(), error = %e, "artifact upload interrupted");
                return Err(artifact_error(ArtifactError::Interrupted {
                    message: e.to_string(),
                }));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Err(e) = upload.write(data).await {
            drop(upload);
            drain(&mut body, declared).await;
            return Err(artifact_error(e));
        }
    }
    if let Some(n) = declared.filter(|n| *n != upload.size()) {
        return Err(artifact_error(ArtifactError::Interrupted {
            message: format!("Content-Length said {n} bytes, {} arrived", upload.size()),
        }));
    }
    let info = upload.finish(cx.hub.now()).await.map_err(artifact_error)?;
    Reply::json_status(StatusCode::CREATED, &info)
}

/// What a `Range` header asks of an artifact of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    /// No range, or one that is not a single `bytes=` range: the whole artifact (RFC 9110
    /// lets a server ignore a range it does not take).
    Whole,
    /// Bytes `start..end`.
    Part(u64, u64),
    /// A range that starts past the end.
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> Ask {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ask::Whole;
    };
    if spec.contains(',') {
        return Ask::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ask::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        // bytes=-n: the last n bytes
        (None, Some(n), _) if first.trim().is_empty() => {
            if n == 0 || len == 0 {
                Ask::Unsatisfiable
            } else {
                Ask::Part(len.saturating_sub(n), len)
            }
        }
        (Some(a), None, true) => {
            if a >= len {
                Ask::Unsatisfiable
            } else {
                Ask::Part(a, len)
            }
        }
        (Some(a), Some(b), _) if a <= b => {
            if a >= len {
                Ask::Unsatisfiable
            } else {
                Ask::Part(a, b.saturating_add(1).min(len))
            }
        }
        _ => Ask::Whole,
    }
}

fn header(name: &'static str, value: String) -> Option<(HeaderName, HeaderValue)> {
    HeaderValue::from_str(&value)
        .ok()
        .map(|v| (HeaderName::from_static(name), v))
}

/// The headers every answer about an artifact has.
fn common(sha256: &Sha256Digest, length: u64) -> Vec<(HeaderName, HeaderValue)> {
    [
        header("content-type", OCTETS.to_string()),
        header("content-length", length.to_string()),
        header("accept-ranges", "bytes".to_string()),
        header("etag", format!("\"{sha256}\"")),
    ]
    .into_iter()
    .flatten()
    .collect()
}

async fn head(cx: Ctx) -> Result<Reply, ApiError> {
    let sha256 = digest(&cx)?;
    let info = cx
        .hub
        .artifact_store()
        .info(&sha256)
        .await
        .map_err(artifact_error)?;
    Ok(Reply {
        status: StatusCode::OK,
        body: None,
        headers: common(&sha256, info.size),
        stream: None,
    })
}

async fn get(cx: Ctx) -> Result<Reply, ApiError> {
    let sha256 = digest(&cx)?;
    let store = cx.hub.artifact_store().clone();
    let len = store.info(&sha256).await.map_err(artifact_error)?.size;
    let (status, start, end) = match parse_range(cx.header("range")?, len) {
        Ask::Whole => (StatusCode::OK, 0, len),
        Ask::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
        Ask::Unsatisfiable => {
            return Ok(Reply {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                body: None,
                headers: header("content-range", format!("bytes */{len}"))
                    .into_iter()
                    .collect(),
                stream: None,
            })
        }
    };
    // checked against its name before a byte is sent
    let mut reader = store
        .open(&sha256, start, end)
        .await
        .map_err(artifact_error)?;
    let mut headers = common(&sha256, end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        headers.extend(header(
            "content-range",
            format!("bytes {start}-{}/{len}", end - 1),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).await.is_err() {
                        // the client went away
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // the body ends short of its Content-Length: the client sees a failed
                    // download, not a complete one
                    tracing::warn!(%sha256, error = %e, "artifact download failed");
                    break;
                }
            }
        }
    });
    Ok(Reply {
        status,
        body: None,
        headers,
        stream: Some(rx),
    })
}

async fn delete(cx: Ctx) -> Result<Reply, ApiError> {
    let sha256 = digest(&cx)?;
    cx.hub
        .artifact_store()
        .delete(&sha256)
        .await
        .map_err(artifact_error)?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), Ask::Whole);
        assert_eq!(r("bytes=0-9"), Ask::Part(0, 10));
        assert_eq!(r("bytes=90-"), Ask::Part(90, 100));
        assert_eq!(r("bytes=90-1000"), Ask::Part(90, 100));
        assert_eq!(r("bytes=-10"), Ask::Part(90, 100));
        assert_eq!(r("bytes=-1000"), Ask::Part(0, 100));
        assert_eq!(r("bytes=100-"), Ask::Unsatisfiable);
        assert_eq!(r("bytes=200-300"), Ask::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Ask::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Ask::Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(r(ignored), Ask::Whole, "{ignored}");
        }
    }
}
