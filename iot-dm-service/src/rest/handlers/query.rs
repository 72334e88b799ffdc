//! Queries and the archive: `POST /devices/query`, `POST /archive/query`,
//! `GET /archive/twins/{id}`.

use serde::Deserialize;

use iot_dm_core::query::{Collection, Query, Select};

use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{route, twin_read, Route};
use crate::HubError;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(POST "/devices/query", twin_read(), query_live),
        route!(POST "/archive/query", twin_read(), query_archive),
        route!(GET "/archive/twins/{id}", twin_read(), get_archived_twin),
    ]
}

/// The body of a query request, `{"query": "SELECT ..."}`.
#[derive(Debug, Deserialize)]
struct QueryBody {
    query: String,
}

/// IoT Hub's `x-ms-item-type`: `twin` for whole twins (`SELECT *` over devices or modules),
/// `deviceJob` for whole job records, `raw` for projections and aggregates.
pub(crate) fn item_type(query: &Query) -> &'static str {
    match (&query.statement().select, query.collection()) {
        (Select::All, Collection::Jobs) => "deviceJob",
        (Select::All, _) => "twin",
        _ => "raw",
    }
}

async fn run(cx: Ctx, archive: bool) -> Result<Reply, ApiError> {
    let body: QueryBody = cx.json("query specification")?;
    let parsed = Query::parse(&body.query).map_err(HubError::from)?;
    let request = super::page_request(&cx)?;
    let page = if archive {
        cx.hub.query_archive_page(&body.query, &request)?
    } else if parsed.collection() == Collection::Jobs {
        cx.hub.query_device_jobs(&parsed, &request).await?
    } else {
        cx.hub.query_page(&body.query, &request)?
    };
    let reply = Reply::json(&page.items)?.header("x-ms-item-type", item_type(&parsed));
    Ok(match &page.continuation {
        Some(c) => reply.header("x-ms-continuation", c),
        None => reply,
    })
}

async fn query_live(cx: Ctx) -> Result<Reply, ApiError> {
    run(cx, false).await
}

async fn query_archive(cx: Ctx) -> Result<Reply, ApiError> {
    run(cx, true).await
}

async fn get_archived_twin(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&cx.hub.get_archived_twin(cx.param("id"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_types() {
        let t = |s: &str| item_type(&Query::parse(s).unwrap());
        assert_eq!(t("SELECT * FROM devices"), "twin");
        assert_eq!(t("SELECT * FROM devices.modules"), "twin");
        assert_eq!(t("SELECT * FROM devices.jobs"), "deviceJob");
        assert_eq!(t("SELECT deviceId FROM devices"), "raw");
        assert_eq!(t("SELECT COUNT() AS n FROM devices"), "raw");
    }
}
