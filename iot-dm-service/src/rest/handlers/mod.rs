//! The handlers, one file per route group. Each group has a `routes()` listing its routes; the
//! router's table collects the groups.

pub(crate) mod alerts;
pub(crate) mod artifacts;
pub(crate) mod certificates;
pub(crate) mod configurations;
pub(crate) mod devices;
pub(crate) mod events;
pub(crate) mod jobs;
pub(crate) mod lifecycle;
pub(crate) mod messages;
pub(crate) mod policies;
pub(crate) mod query;
pub(crate) mod statistics;
pub(crate) mod twins;

use serde::Deserialize;

use iot_dm_core::query::{PageRequest, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

use super::context::Ctx;
use super::error::ApiError;
use crate::hub::KeyKind;

/// `{"key": "primary" | "secondary" | "swap"}`, the body of the key regeneration routes.
#[derive(Debug, Deserialize)]
pub(crate) struct WhichKey {
    key: String,
}

impl WhichKey {
    pub(crate) fn kind(&self) -> Result<KeyKind, ApiError> {
        match self.key.to_ascii_lowercase().as_str() {
            "primary" => Ok(KeyKind::Primary),
            "secondary" => Ok(KeyKind::Secondary),
            "swap" => Ok(KeyKind::Swap),
            other => Err(ApiError::argument(
                "key",
                format!("{other:?} is not one of primary, secondary, swap"),
            )),
        }
    }
}

/// The body as a JSON value whose `field` names the resource of the path's `param`: filled in
/// when absent or `null`, a 400 naming `field` when it names another.
pub(crate) fn body_with_path_id(
    cx: &Ctx,
    param: &str,
    field: &str,
    what: &str,
) -> Result<serde_json::Value, ApiError> {
    use serde_json::Value;
    let id = cx.param(param);
    let mut body: Value = cx.json(what)?;
    if let Some(obj) = body.as_object_mut() {
        match obj.get(field) {
            None | Some(Value::Null) => {
                obj.insert(field.into(), Value::String(id.to_string()));
            }
            Some(Value::String(b)) if b == id => {}
            Some(other) => {
                return Err(ApiError::argument(
                    field,
                    format!("the body names {other} but the path names {id:?}"),
                ))
            }
        }
    }
    Ok(body)
}

/// The page a request asks for: `x-ms-max-item-count` and `x-ms-continuation`.
pub(crate) fn page_request(cx: &Ctx) -> Result<PageRequest, ApiError> {
    let size = cx.count_header("x-ms-max-item-count", 1..=MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)?;
    Ok(PageRequest::new().size(size).continuation_opt(
        cx.header("x-ms-continuation")?
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    ))
}
