//! [`QueryApi`]: twin queries.

use async_trait::async_trait;

use iot_dm_core::query::{Page, PageRequest};

use crate::hub::HubError;

/// Queries over twins in IoT Hub's SQL dialect, one page at a time: pass the returned
/// continuation in the next request.
#[async_trait]
pub trait QueryApi: Send + Sync + std::fmt::Debug {
    /// One page of a query over live twins (`POST /devices/query`).
    async fn query_page(&self, sql: &str, request: &PageRequest) -> Result<Page, HubError>;
    /// One page of a query over the archive of retired devices (`POST /archive/query`).
    async fn query_archive_page(&self, sql: &str, request: &PageRequest) -> Result<Page, HubError>;
}
