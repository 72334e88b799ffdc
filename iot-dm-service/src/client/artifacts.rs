//! [`ArtifactApi`] over our `/artifacts` routes (Azure IoT Hub has no artifact store, so
//! these calls work against our hub only). Uploads are streamed on a connection of their own:
//! the image is read in chunks of [`CHUNK`] bytes and never held whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::mpsc;

use super::codec::parse;
use super::errors::{self, About};
use super::{path, Answer, ServiceClient, MAX_RESPONSE};
use crate::api::{ArtifactApi, ArtifactUpload};
use crate::artifacts::{ArtifactError, ArtifactInfo, Sha256Digest, CHUNK};
use crate::HubError;

/// An upload's body: chunks a reading task sends, or the reader's error.
struct Streamed {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    size: Option<u64>,
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.size
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

fn transport(message: String) -> HubError {
    HubError::Transport { message }
}

/// The 64-hex-digit words of a message, in order.
fn digests(message: &str) -> Vec<String> {
    message
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .map(str::to_string)
        .collect()
}

fn numbers(message: &str) -> Vec<u64> {
    message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The typed error of an artifact answer; other answers as every route maps them.
fn error_of(answer: &Answer, sha256: Option<&Sha256Digest>) -> HubError {
    let json: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let code = json
        .as_ref()
        .and_then(|j| j.get("errorCode"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let message = json
        .as_ref()
        .and_then(|j| j.get("Message"))
        .and_then(serde_json::Value::as_str)
        .and_then(|m| m.split_once(';'))
        .map(|(_, m)| m.to_string())
        .unwrap_or_default();
    let named = || sha256.map(ToString::to_string).unwrap_or_default();
    let found = digests(&message);
    let e = match code {
        404_601 => ArtifactError::NotFound { sha256: named() },
        400_601 => ArtifactError::DigestMismatch {
            expected: found.get(1).cloned().unwrap_or_else(named),
            actual: found.first().cloned().unwrap_or_default(),
        },
        413_601 => {
            let n = numbers(&message);
            ArtifactError::TooLarge {
                size: n.first().copied().unwrap_or(0),
                limit: n.get(1).copied().unwrap_or(0),
            }
        }
        500_601 => ArtifactError::Corrupt {
            sha256: named(),
            actual: found.get(1).cloned().unwrap_or_default(),
        },
        _ => {
            return errors::from_response(
                answer.status,
                &answer.headers,
                &answer.body,
                About::default(),
            )
        }
    };
    HubError::Artifact(e)
}

impl ServiceClient {
    async fn artifact_call(
        &self,
        method: Method,
        segments: &[&str],
        sha256: Option<&Sha256Digest>,
    ) -> Result<Answer, HubError> {
        let answer = self
            .send(method, &path(segments, &[]), &[], None, Default::default())
            .await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(error_of(&answer, sha256))
        }
    }
}

#[async_trait]
impl ArtifactApi for ServiceClient {
    async fn upload_artifact(
        &self,
        reader: &mut (dyn AsyncRead + Send + Unpin),
        upload: ArtifactUpload,
    ) -> Result<ArtifactInfo, HubError> {
        let mut query = Vec::new();
        if let Some(n) = &upload.meta.name {
            query.push(("name", n.clone()));
        }
        if let Some(v) = &upload.meta.version {
            query.push(("version", v.clone()));
        }
        let (method, target) = match &upload.sha256 {
            Some(d) => (Method::PUT, path(&["artifacts", &d.to_string()], &query)),
            None => (Method::POST, path(&["artifacts"], &query)),
        };
        let (tx, rx) = mpsc::channel(4);
        let mut request = self.request(method, &target, &[], None)?.map(|_| Streamed {
            rx,
            size: upload.size,
        });
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        if let Some(size) = upload.size {
            headers.insert(CONTENT_LENGTH, http::HeaderValue::from(size));
        }
        let mut sender = self.inner.target.connect_with::<Streamed>().await?;
        sender
            .ready()
            .await
            .map_err(|e| transport(format!("upload connection: {e}")))?;
        let pump = async move {
            loop {
                let mut buf = BytesMut::with_capacity(CHUNK);
                while buf.len() < CHUNK {
                    match reader.read_buf(&mut buf).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            let message = e.to_string();
                            let _ = tx.send(Err(e)).await;
                            return Some(message);
                        }
                    }
                }
                if buf.is_empty() || tx.send(Ok(buf.freeze())).await.is_err() {
                    return None;
                }
            }
        };
        let send = sender.send_request(request);
        tokio::pin!(pump, send);
        let mut pumping = true;
        let mut read_error = None;
        let response = loop {
            tokio::select! {
                r = &mut send => break r,
                e = &mut pump, if pumping => {
                    pumping = false;
                    read_error = e;
                }
            }
        };
        if let Some(e) = read_error {
            return Err(transport(format!("reading the image to upload: {e}")));
        }
        let response = response.map_err(|e| transport(format!("uploading: {e}")))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the response body: {e}")))?
            .to_bytes();
        let answer = Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        if answer.status == StatusCode::CREATED || answer.status.is_success() {
            parse(&answer, "artifact")
        } else {
            Err(error_of(&answer, upload.sha256.as_ref()))
        }
    }

    async fn artifacts(&self) -> Result<Vec<ArtifactInfo>, HubError> {
        let answer = self
            .artifact_call(Method::GET, &["artifacts"], None)
            .await?;
        parse(&answer, "artifact list")
    }

    /// One artifact, from the list (`GET /artifacts`): the hub has no route for one
    /// artifact's metadata.
    async fn artifact(&self, sha256: &Sha256Digest) -> Result<ArtifactInfo, HubError> {
        self.artifacts()
            .await?
            .into_iter()
            .find(|a| a.sha256 == *sha256)
            .ok_or_else(|| {
                HubError::Artifact(ArtifactError::NotFound {
                    sha256: sha256.to_string(),
                })
            })
    }

    async fn delete_artifact(&self, sha256: &Sha256Digest) -> Result<(), HubError> {
        self.artifact_call(
            Method::DELETE,
            &["artifacts", &sha256.to_string()],
            Some(sha256),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_errors_come_back_typed() {
        let answer = |code: u32, message: &str| Answer {
            status: StatusCode::from_u16((code / 1000) as u16).unwrap(),
            headers: http::HeaderMap::new(),
            body: Bytes::from(
                serde_json::json!({"Message": format!("ErrorCode:X;{message}"), "errorCode": code})
                    .to_string(),
            ),
        };
        let a = Sha256Digest::of(b"a");
        let b = Sha256Digest::of(b"b");
        let e = error_of(
            &answer(
                400_601,
                &ArtifactError::DigestMismatch {
                    expected: a.to_string(),
                    actual: b.to_string(),
                }
                .to_string(),
            ),
            Some(&a),
        );
        match e {
            HubError::Artifact(ArtifactError::DigestMismatch { expected, actual }) => {
                assert_eq!((expected, actual), (a.to_string(), b.to_string()));
            }
            other => panic!("{other:?}"),
        }
        let e = error_of(
            &answer(
                413_601,
                &ArtifactError::TooLarge {
                    size: 11,
                    limit: 10,
                }
                .to_string(),
            ),
            None,
        );
        assert!(
            matches!(
                e,
                HubError::Artifact(ArtifactError::TooLarge {
                    size: 11,
                    limit: 10
                })
            ),
            "{e:?}"
        );
        let e = error_of(&answer(404_601, "gone"), Some(&a));
        assert!(
            matches!(e, HubError::Artifact(ArtifactError::NotFound { .. })),
            "{e:?}"
        );
        let e = error_of(&answer(401_003, "no"), None);
        assert!(e.is_unauthorized(), "{e:?}");
    }
}
