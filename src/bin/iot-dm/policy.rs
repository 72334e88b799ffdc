//! `iot-dm policy ...`: the hub's shared access policies, for the owner.

use iot_dm::service::access::{AccessPolicy, RateLimit, Rights};
use iot_dm::service::api::prelude::*;
use iot_dm::service::client::ServiceClient;

use crate::cli::{PolicyCreateArgs, Which};
use crate::error::{CliError, CliResult};
use crate::output::Out;

fn limit_cell(p: &AccessPolicy) -> String {
    match p.rate_limit {
        Some(l) => format!("{}/s, burst {}", l.per_second, l.burst),
        None => "unlimited".into(),
    }
}

/// `policy list`: names, rights and limits (keys only with `--json`).
pub async fn list(client: &ServiceClient, out: &mut Out<'_>) -> CliResult {
    let policies = client.access_policies().await?;
    if out.json {
        return out.json_value(&policies);
    }
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| vec![p.key_name.clone(), p.rights.to_string(), limit_cell(p)])
        .collect();
    out.table(&["policy", "rights", "rate limit"], &rows)
}

/// The rate limit asked for: the hub's default when neither flag is given, none for
/// `--per-second 0`.
fn rate_limit(args: &PolicyCreateArgs) -> CliResult<Option<RateLimit>> {
    match (args.per_second, args.burst) {
        (None, None) => Ok(Some(iot_dm::service::access::DEFAULT_RATE_LIMIT)),
        (Some(0), _) => Ok(None),
        (Some(per_second), burst) => Ok(Some(RateLimit {
            per_second,
            burst: burst.unwrap_or(per_second.saturating_mul(2)),
        })),
        (None, Some(_)) => Err(CliError::usage("--burst needs --per-second")),
    }
}

/// `policy create NAME --rights ...`.
pub async fn create(
    client: &ServiceClient,
    out: &mut Out<'_>,
    args: &PolicyCreateArgs,
) -> CliResult {
    let rights: Rights = args
        .rights
        .parse()
        .map_err(|e| CliError::usage(format!("--rights: {e}")))?;
    let mut policy = AccessPolicy::new(args.name.clone(), rights);
    policy.rate_limit = rate_limit(args)?;
    let stored = client.put_access_policy(policy).await?;
    print_policy(client, out, &stored)
}

/// `policy delete NAME`.
pub async fn delete(client: &ServiceClient, out: &mut Out<'_>, name: &str) -> CliResult {
    client.delete_access_policy(name).await?;
    if out.json {
        out.json_value(&serde_json::json!({ "deleted": name }))
    } else {
        out.line(format!("deleted policy {name}"))
    }
}

/// `policy regenerate NAME primary|secondary|swap`.
pub async fn regenerate(
    client: &ServiceClient,
    out: &mut Out<'_>,
    name: &str,
    which: Which,
) -> CliResult {
    let stored = client.regenerate_policy_key(name, which.into()).await?;
    print_policy(client, out, &stored)
}

fn print_policy(client: &ServiceClient, out: &mut Out<'_>, p: &AccessPolicy) -> CliResult {
    if out.json {
        return out.json_value(p);
    }
    out.fields(&[
        ("policy", p.key_name.clone()),
        ("rights", p.rights.to_string()),
        ("rate limit", limit_cell(p)),
        (
            "connection string",
            format!(
                "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
                client.host_name(),
                p.key_name,
                p.primary_key
            ),
        ),
    ])
}
