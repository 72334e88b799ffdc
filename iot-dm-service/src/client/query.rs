//! [`QueryApi`] over `POST /devices/query` and `POST /archive/query`.

use async_trait::async_trait;
use http::Method;
use serde_json::json;

use iot_dm_core::query::{Page as QueryPage, PageRequest};

use super::codec::{body, continuation, paging, parse};
use super::errors::About;
use super::{path, ServiceClient};
use crate::api::QueryApi;
use crate::hub::HubError;

impl ServiceClient {
    async fn query(
        &self,
        route: &[&str],
        sql: &str,
        request: &PageRequest,
    ) -> Result<QueryPage, HubError> {
        let headers = paging(request);
        let answer = self
            .call(
                Method::POST,
                &path(route, &[]),
                &headers,
                body(&json!({ "query": sql }))?,
                About::default(),
            )
            .await?;
        Ok(QueryPage {
            items: parse(&answer, "query page")?,
            continuation: continuation(&answer),
        })
    }
}

#[async_trait]
impl QueryApi for ServiceClient {
    async fn query_page(&self, sql: &str, request: &PageRequest) -> Result<QueryPage, HubError> {
        self.query(&["devices", "query"], sql, request).await
    }

    async fn query_archive_page(
        &self,
        sql: &str,
        request: &PageRequest,
    ) -> Result<QueryPage, HubError> {
        self.query(&["archive", "query"], sql, request).await
    }
}
