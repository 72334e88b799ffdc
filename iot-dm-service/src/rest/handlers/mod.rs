//! The handlers, one file per route group. Each group has a `routes()` listing its routes; the
//! router's table collects the groups.

pub(crate) mod certificates;
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

/// The page a request asks for: `x-ms-max-item-count` and `x-ms-continuation`.
pub(crate) fn page_request(cx: &Ctx) -> Result<PageRequest, ApiError> {
    let size = cx.count_header("x-ms-max-item-count", 1..=MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)?;
    Ok(PageRequest::new().size(size).continuation_opt(
        cx.header("x-ms-continuation")?
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    ))
}
