//! One request from start to finish: route, api-version, authorization, body limit, handler,
//! and the response with `x-ms-request-id` (and IoT Hub's error body on failure).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;

use super::context::{Ctx, Reply};
use super::error::ApiError;
use super::router::Router;
use super::stream::{ResponseBody, Streams};
use super::API_VERSIONS;
use crate::{Hub, HubError};

/// The most of a refused (too large) body still read, so that the client sees the 413; past
/// it the connection is closed at once.
const DRAIN_LIMIT: usize = 4 << 20;

/// The body length a request declares (`Content-Length`), if any.
fn declared_length(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// The JSON content type of every body.
pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// What every request of a server shares.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) hub: Hub,
    pub(crate) router: Router,
    pub(crate) max_body: usize,
    body_read_timeout: std::time::Duration,
    request_prefix: u64,
    requests: AtomicU64,
    /// Refused credentials and rights, logged once a minute per source address.
    refusals: crate::admission::PerSourceLog,
    /// What streaming answers need of the server.
    streams: Streams,
}

impl Service {
    pub(crate) fn new(
        hub: Hub,
        router: Router,
        max_body: usize,
        body_read_timeout: std::time::Duration,
        streams: Streams,
    ) -> Service {
        let mut seed = [0u8; 8];
        // a predictable prefix only makes request ids guessable, which they may be
        let _ = getrandom::fill(&mut seed);
        Service {
            hub,
            router,
            max_body,
            body_read_timeout,
            request_prefix: u64::from_le_bytes(seed),
            requests: AtomicU64::new(0),
            refusals: crate::admission::PerSourceLog::new(std::time::Duration::from_secs(60), 4096),
            streams,
        }
    }

    /// A request id unique per request (per server: a random prefix and a counter), shaped as
    /// a UUID like IoT Hub's.
    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let p = self.request_prefix;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (p >> 32) as u32,
            (p >> 16) as u16,
            p as u16,
            (n >> 48) as u16,
            n & 0xffff_ffff_ffff
        )
    }

    /// Serves one request; never fails (errors become IoT Hub error responses).
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        peer: std::net::SocketAddr,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let request_id = self.request_id();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        // nothing a client is shown may be rolled back by a crash: answer once everything
        // the reply may show is durable
        let outcome = match self.dispatch(request).await {
            Ok(reply) => match self.hub.inner.settled().await {
                Ok(()) => Ok(reply),
                Err(e) => Err(ApiError::from(HubError::from(e))),
            },
            Err(e) => Err(e),
        };
        let response = match outcome {
            Ok(reply) => success(reply),
            Err(e) => self.failure(&e, &request_id),
        };
        let mut response = response;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-ms-request-id", v);
        }
        let status = response.status().as_u16();
        if matches!(status, 401 | 403) {
            // a back end with a wrong key retries for ever: one line a minute per address
            if let Some(held_back) = self.refusals.admit(peer.ip(), tokio::time::Instant::now()) {
                tracing::warn!(%peer, %method, path, status, held_back, "rest request refused");
            }
        }
        tracing::debug!(
            %method,
            path,
            status,
            request_id,
            micros = started.elapsed().as_micros() as u64,
            "rest request"
        );
        Ok(response)
    }

    async fn dispatch(&self, request: Request<Incoming>) -> Result<Reply, ApiError> {
        let (parts, mut body) = request.into_parts();
        let checked = (|| {
            let (route, params) = self.router.find(&parts.method, parts.uri.path())?;
            let query = parse_query(parts.uri.query());
            check_api_version(&query)?;
            let authorization = parts
                .headers
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or(""));
            let grant = if route.devices_too && is_device_token(authorization) {
                self.hub.authorize_device(authorization)
            } else {
                self.hub.authorize(authorization, route.need)
            }
            .map_err(ApiError::from)?;
            Ok::<_, ApiError>((route, params, query, grant))
        })();
        let (route, params, query, grant) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                // refused before its body was read: read it anyway, so the answer arrives
                self.drain(&parts.headers, &mut body).await;
                return Err(e);
            }
        };
        let (body, upload) = if route.streams_body {
            let upload = super::context::UploadBody {
                body,
                idle_timeout: self.body_read_timeout,
            };
            (Bytes::new(), Some(upload))
        } else {
            (self.read_body(&parts.headers, body).await?, None)
        };
        (route.handler)(Ctx {
            hub: self.hub.clone(),
            params,
            query,
            headers: parts.headers,
            body,
            grant,
            streams: self.streams.clone(),
            upload,
        })
        .await
    }

    /// The body, at most `max_body` bytes (413 past it, before reading when Content-Length
    /// says so).
    async fn read_body(
        &self,
        headers: &http::HeaderMap,
        mut body: Incoming,
    ) -> Result<Bytes, ApiError> {
        let too_large = |size: usize| {
            ApiError::from(HubError::RequestTooLarge {
                size,
                limit: self.max_body,
            })
        };
        if let Some(len) = declared_length(headers) {
            if len > self.max_body {
                self.drain(headers, &mut body).await;
                return Err(too_large(len));
            }
        }
        let collected = tokio::time::timeout(
            self.body_read_timeout,
            Limited::new(&mut body, self.max_body).collect(),
        )
        .await
        .map_err(|_| {
            ApiError::new(
                408_000,
                "RequestTimeout",
                format!(
                    "the request body did not arrive within {} s",
                    self.body_read_timeout.as_secs_f64()
                ),
            )
        })?;
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                self.drain(headers, &mut body).await;
                Err(too_large(self.max_body + 1))
            }
            Err(e) => Err(ApiError::new(
                400_000,
                "GenericBadRequest",
                format!("reading the request body: {e}"),
            )),
        }
    }

    /// Reads and throws away the rest of a refused body, up to [`DRAIN_LIMIT`] bytes and
    /// within the body read timeout, so that a client still sending it reads the 413 instead
    /// of finding its connection reset.
    /// A body declared longer than that is not read at all.
    async fn drain(&self, headers: &http::HeaderMap, body: &mut Incoming) {
        if declared_length(headers).is_some_and(|n| n > DRAIN_LIMIT) {
            return;
        }
        let discard = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > DRAIN_LIMIT {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.body_read_timeout, discard).await;
    }

    fn failure(&self, e: &ApiError, request_id: &str) -> Response<ResponseBody> {
        let body = e.body(request_id, iot_dm_core::clock::Timestamp::now());
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = e.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
        headers.insert("iothub-errorcode", HeaderValue::from_static(e.name));
        if let Some(secs) = e.retry_after_secs {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = e
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            headers.insert(ALLOW, allow);
        }
        response
    }
}

fn success(reply: Reply) -> Response<ResponseBody> {
    let has_body = reply.body.is_some();
    let body = match reply.stream {
        Some(rx) => ResponseBody::Stream(rx),
        None => ResponseBody::full(reply.body.unwrap_or_default()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if has_body && reply.status != StatusCode::NO_CONTENT {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    }
    for (name, value) in reply.headers {
        headers.insert(name, value);
    }
    response
}

/// A SAS token without `skn`: a device's own token, not a shared access policy's.
fn is_device_token(authorization: Option<&str>) -> bool {
    authorization
        .and_then(|a| iot_dm_core::wire::SasToken::parse(a.trim()).ok())
        .is_some_and(|t| t.key_name().is_none())
}

/// Query parameters, percent-decoded (`+` is a space).
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// 400004 naming `api-version` and the accepted list when it is missing or unknown.
pub(crate) fn check_api_version(query: &[(String, String)]) -> Result<(), ApiError> {
    let version = query
        .iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.as_str());
    match version {
        Some(v) if API_VERSIONS.contains(&v) => Ok(()),
        Some(v) => Err(ApiError::argument(
            "api-version",
            format!(
                "{v:?} is not supported; use one of {}",
                API_VERSIONS.join(", ")
            ),
        )),
        None => Err(ApiError::argument(
            "api-version",
            format!(
                "the query parameter is missing; use one of {}",
                API_VERSIONS.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = parse_query(Some("api-version=2021-04-12&top=5&x=a%20b+c&flag"));
        assert_eq!(q[0], ("api-version".into(), "2021-04-12".into()));
        assert_eq!(q[2], ("x".into(), "a b c".into()));
        assert_eq!(q[3], ("flag".into(), String::new()));
        assert!(parse_query(None).is_empty());
    }

    #[test]
    fn api_versions_are_checked_and_named() {
        assert!(check_api_version(&parse_query(Some("api-version=2021-04-12"))).is_ok());
        let e = check_api_version(&parse_query(Some("api-version=1999-01-01"))).unwrap_err();
        assert_eq!(e.code, 400_004);
        assert!(e.message.contains("api-version") && e.message.contains("2020-09-30"));
        let e = check_api_version(&[]).unwrap_err();
        assert!(e.message.contains("missing"), "{}", e.message);
    }

    #[tokio::test]
    async fn request_ids_are_unique() {
        let hub = Hub::builder().in_memory().open().await.unwrap();
        let s = Service::new(
            hub,
            Router::new(Vec::new()),
            10,
            std::time::Duration::from_secs(1),
            Streams::never(),
        );
        let a = s.request_id();
        let b = s.request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }
}
