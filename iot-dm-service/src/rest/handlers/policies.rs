//! Shared access policies (ours; IoT Hub manages them through Azure Resource Manager):
//! `GET /policies`, `GET/PUT/DELETE /policies/{name}`, `POST /policies/{name}/keys/regenerate`.

use serde::{Deserialize, Serialize};

use crate::access::{AccessPolicy, RateLimit, Rights};
use crate::api::prelude::*;
use crate::rest::context::{Ctx, Reply};
use crate::rest::error::ApiError;
use crate::rest::router::{owner, route, Route};

use super::WhichKey;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        route!(GET "/policies", owner(), list),
        route!(GET "/policies/{name}", owner(), get),
        route!(PUT "/policies/{name}", owner(), put),
        route!(DELETE "/policies/{name}", owner(), delete),
        route!(POST "/policies/{name}/keys/regenerate", owner(), regenerate_key),
    ]
}

/// A policy as JSON: IoT Hub's shape (`keyName`, `primaryKey`, `secondaryKey`, `rights` as
/// `"RegistryRead, RegistryWrite"`) plus `rateLimit`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyBody {
    #[serde(default)]
    key_name: Option<String>,
    #[serde(default)]
    primary_key: Option<String>,
    #[serde(default)]
    secondary_key: Option<String>,
    rights: String,
    /// Absent: the default limit; `null`: unlimited.
    #[serde(default = "default_limit")]
    rate_limit: Option<RateLimit>,
}

fn default_limit() -> Option<RateLimit> {
    Some(crate::access::DEFAULT_RATE_LIMIT)
}

impl From<AccessPolicy> for PolicyBody {
    fn from(p: AccessPolicy) -> PolicyBody {
        PolicyBody {
            rights: p.rights.to_string(),
            key_name: Some(p.key_name),
            primary_key: Some(p.primary_key),
            secondary_key: Some(p.secondary_key),
            rate_limit: p.rate_limit,
        }
    }
}

async fn list(cx: Ctx) -> Result<Reply, ApiError> {
    let policies: Vec<PolicyBody> = cx
        .hub
        .access_policies()
        .into_iter()
        .map(PolicyBody::from)
        .collect();
    Reply::json(&policies)
}

async fn get(cx: Ctx) -> Result<Reply, ApiError> {
    Reply::json(&PolicyBody::from(cx.hub.access_policy(cx.param("name"))?))
}

async fn put(cx: Ctx) -> Result<Reply, ApiError> {
    let name = cx.param("name");
    let body: PolicyBody = cx.json("access policy")?;
    if let Some(n) = &body.key_name {
        if n != name {
            return Err(ApiError::argument(
                "keyName",
                format!("the body names {n:?} but the path names {name:?}"),
            ));
        }
    }
    let rights: Rights = body
        .rights
        .parse()
        .map_err(|e| ApiError::argument("rights", e))?;
    let mut policy = AccessPolicy::new(name, rights);
    policy.primary_key = body.primary_key.unwrap_or_default();
    policy.secondary_key = body.secondary_key.unwrap_or_default();
    policy.rate_limit = body.rate_limit;
    Reply::json(&PolicyBody::from(cx.hub.put_access_policy(policy).await?))
}

async fn delete(cx: Ctx) -> Result<Reply, ApiError> {
    cx.hub.delete_access_policy(cx.param("name")).await?;
    Ok(Reply::no_content())
}

async fn regenerate_key(cx: Ctx) -> Result<Reply, ApiError> {
    let which: WhichKey = cx.json("key choice")?;
    let policy = cx
        .hub
        .regenerate_policy_key(cx.param("name"), which.kind()?)
        .await?;
    Reply::json(&PolicyBody::from(policy))
}
