//! What a handler gets ([`Ctx`]: the hub, path parameters, query parameters, headers, body) and
//! what it returns ([`Reply`]).

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use crate::Hub;

/// One request, as a handler sees it once routing, the api-version check, authorization and the
/// body limit have passed.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) hub: Hub,
    pub(crate) params: Vec<(&'static str, String)>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Who the request was authorized as.
    pub(crate) grant: crate::access::Grant,
    /// What a streaming answer needs of the server.
    pub(crate) streams: super::stream::Streams,
    /// The unread request body, for the routes that stream it (`body` is then empty).
    pub(crate) upload: Option<UploadBody>,
}

/// A request body a handler reads itself.
#[derive(Debug)]
pub(crate) struct UploadBody {
    pub(crate) body: hyper::body::Incoming,
    /// The longest wait for the next part of the body.
    pub(crate) idle_timeout: std::time::Duration,
}

impl Ctx {
    /// A path parameter (`{id}` in the route's pattern), percent-decoded.
    pub(crate) fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    /// A query parameter, percent-decoded.
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header as text; a value that is not visible ASCII is a 400 naming the header.
    pub(crate) fn header(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim()))
                .map_err(|_| ApiError::argument(name, "the header value is not visible ASCII")),
        }
    }

    /// The `If-Match` header: `*` or ETags, quoted or not (the official SDKs quote everything
    /// they send, the wildcard too; see [`ETag::matches`](iot_dm_core::twin::ETag::matches)),
    /// the same for devices, twins and every other resource with an ETag. An empty header is
    /// refused (400) rather than taken as no precondition: a client that sends one meant a
    /// precondition and lost its ETag.
    pub(crate) fn if_match(&self) -> Result<Option<&str>, ApiError> {
        match self.header("if-match")? {
            None => Ok(None),
            Some("") => Err(ApiError::argument(
                "If-Match",
                "the header is empty; send the ETag to match, or * for any",
            )),
            Some(v) => Ok(Some(v)),
        }
    }

    /// A numeric header within `range`, or `default` when absent.
    pub(crate) fn count_header(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<usize>,
        default: usize,
    ) -> Result<usize, ApiError> {
        match self.header(name)? {
            None | Some("") => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(ApiError::argument(
                    name,
                    format!(
                        "{v:?} is not a whole number in {}..={}",
                        range.start(),
                        range.end()
                    ),
                )),
            },
        }
    }

    /// The body as JSON of type `T`. Text that is not JSON is a 400012 with serde's line and
    /// column; JSON of the wrong shape (a missing field, a value out of range) is a 400004
    /// naming `what` and serde's explanation.
    pub(crate) fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, ApiError> {
        let value: serde_json::Value =
            serde_json::from_slice(&self.body).map_err(|e| ApiError::deserialization(what, &e))?;
        serde_json::from_value(value).map_err(|e| ApiError::argument(what, e))
    }

    /// Like [`Ctx::json`], but an empty body (or only whitespace) gives `None`.
    pub(crate) fn optional_json<T: DeserializeOwned>(
        &self,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.json(what).map(Some)
    }
}

/// A handler's successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Option<Bytes>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// A body streamed by a task instead (its content type in `headers`).
    pub(crate) stream: Option<tokio::sync::mpsc::Receiver<Bytes>>,
}

impl Reply {
    /// 200 with `value` as JSON.
    pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<Reply, ApiError> {
        Reply::json_status(StatusCode::OK, value)
    }

    /// `status` with `value` as JSON.
    pub(crate) fn json_status<T: Serialize + ?Sized>(
        status: StatusCode,
        value: &T,
    ) -> Result<Reply, ApiError> {
        let body = serde_json::to_vec(value).map_err(|e| {
            ApiError::new(
                500_001,
                "ServerError",
                format!("serializing the answer: {e}"),
            )
        })?;
        Ok(Reply {
            status,
            body: Some(Bytes::from(body)),
            headers: Vec::new(),
            stream: None,
        })
    }

    /// 204 without a body.
    pub(crate) fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: Vec::new(),
            stream: None,
        }
    }

    /// 200 with a body a task streams through `rx`, of `content_type`.
    pub(crate) fn stream(
        content_type: &'static str,
        rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: None,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            )],
            stream: Some(rx),
        }
    }

    /// Adds a header whose value is known to be visible ASCII (continuation tokens, item
    /// types); a value that is not is dropped with a warning rather than failing the request.
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Reply {
        match HeaderValue::from_str(value) {
            Ok(v) => self.headers.push((HeaderName::from_static(name), v)),
            Err(_) => tracing::warn!(header = name, "header value is not visible ASCII; dropped"),
        }
        self
    }
}
