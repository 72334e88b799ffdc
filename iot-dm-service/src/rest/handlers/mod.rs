//! The handlers, one file per route group. Each group has a `routes()` listing its routes; the
//! router's table collects the groups.

pub(crate) mod certificates;
pub(crate) mod devices;
pub(crate) mod lifecycle;
pub(crate) mod messages;
pub(crate) mod policies;
pub(crate) mod query;
pub(crate) mod statistics;
pub(crate) mod twins;

use serde::Deserialize;

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
