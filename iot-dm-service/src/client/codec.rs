//! What the area implementations share: request bodies, response parsing, paging headers.

use http::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use iot_dm_core::query::PageRequest;

use super::errors::About;
use super::{path, Answer, ServiceClient};
use crate::hub::{HubError, KeyKind};

pub(crate) fn parse<T: DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, HubError> {
    serde_json::from_slice(&answer.body).map_err(|e| HubError::Transport {
        message: format!("the hub answered a {what} that does not parse: {e}"),
    })
}

pub(crate) fn body(value: &impl serde::Serialize) -> Result<Option<Vec<u8>>, HubError> {
    serde_json::to_vec(value)
        .map(Some)
        .map_err(|e| HubError::invalid("body", e.to_string()))
}

pub(crate) fn continuation(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get("x-ms-continuation")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The paging headers of a page request.
pub(crate) fn paging(request: &PageRequest) -> Vec<(&'static str, String)> {
    let mut headers = vec![("x-ms-max-item-count", request.page_size().to_string())];
    if let Some(c) = request.continuation_token() {
        headers.push(("x-ms-continuation", c.to_string()));
    }
    headers
}

pub(crate) fn device(id: &str) -> About<'_> {
    About {
        device_id: Some(id),
        ..About::default()
    }
}

/// `{"tags":..,"properties":{"desired":..}}` with only what is set.
pub(crate) fn twin_body(tags: Option<&Value>, desired: Option<&Value>) -> Value {
    let mut m = Map::new();
    if let Some(t) = tags {
        m.insert("tags".into(), t.clone());
    }
    if let Some(d) = desired {
        m.insert("properties".into(), json!({ "desired": d }));
    }
    Value::Object(m)
}

pub(crate) fn key_name(which: KeyKind) -> &'static str {
    match which {
        KeyKind::Primary => "primary",
        KeyKind::Secondary => "secondary",
        KeyKind::Swap => "swap",
    }
}

impl ServiceClient {
    /// `GET` of the route `segments`, its JSON answer parsed as a `what`.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        about: About<'_>,
        what: &str,
    ) -> Result<T, HubError> {
        let answer = self
            .call(Method::GET, &path(segments, &[]), &[], None, about)
            .await?;
        parse(&answer, what)
    }
}
