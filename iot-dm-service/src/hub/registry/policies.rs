//! The hub's shared access policies: kept durably in a [`MetaCollection`] under
//! `policy/{name}` (as JSON, keys included), loaded at open, created on a hub's first open,
//! and checked by [`Hub::authorize`] for every service API request.

use std::collections::BTreeMap;
use std::sync::Arc;

use iot_dm_core::clock::Timestamp;
use iot_dm_core::wire::{SasToken, SymmetricKey};

use async_trait::async_trait;

use super::device::generate_key;
use super::spec::KeyKind;
use crate::access::{
    validate_policy_name, AccessPolicy, Grant, Need, Rights, TokenBucket, BUILT_IN_POLICIES,
    DEFAULT_RATE_LIMIT, MAX_POLICIES,
};
use crate::api::AccessApi;
use crate::hub::engine::{MetaCollection, MetaRecord};
use crate::hub::error::HubError;
use crate::hub::Hub;
use crate::store::Store;

/// One policy with its parsed keys and its rate limiter.
#[derive(Debug)]
pub(crate) struct PolicyEntry {
    policy: AccessPolicy,
    primary: SymmetricKey,
    secondary: SymmetricKey,
    bucket: Option<Arc<TokenBucket>>,
}

impl PolicyEntry {
    fn new(policy: AccessPolicy, now: Timestamp) -> Result<PolicyEntry, HubError> {
        let primary = parse_key("primaryKey", &policy.primary_key)?;
        let secondary = parse_key("secondaryKey", &policy.secondary_key)?;
        let bucket = policy
            .rate_limit
            .map(|limit| Arc::new(TokenBucket::new(limit, now)));
        Ok(PolicyEntry {
            policy,
            primary,
            secondary,
            bucket,
        })
    }
}

impl MetaRecord for PolicyEntry {
    const PREFIX: &'static str = "policy/";
    const WHAT: &'static str = "access policy";

    fn name(&self) -> &str {
        &self.policy.key_name
    }

    fn encode(&self) -> Result<Vec<u8>, HubError> {
        serde_json::to_vec(&self.policy).map_err(|e| HubError::Internal {
            message: format!("cannot encode access policy: {e}"),
        })
    }

    fn decode(_: &str, bytes: &[u8]) -> Result<Self, HubError> {
        let policy: AccessPolicy =
            serde_json::from_slice(bytes).map_err(|e| HubError::Internal {
                message: e.to_string(),
            })?;
        // a bucket starts full whenever it starts
        PolicyEntry::new(policy, Timestamp::from_ticks(0))
    }
}

/// The policy set, sorted by name.
pub(crate) type PolicyRegistry = MetaCollection<PolicyEntry>;

/// A policy key: base64 of 16 to 64 bytes.
fn parse_key(field: &str, key: &str) -> Result<SymmetricKey, HubError> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if (16..=64).contains(&bytes.len()) => SymmetricKey::new(key)
            .map_err(|e| HubError::invalid(field, format!("unusable key: {e}"))),
        Ok(bytes) => Err(HubError::invalid(
            field,
            format!("key decodes to {} bytes, expected 16 to 64", bytes.len()),
        )),
        Err(_) => Err(HubError::invalid(field, "key is not valid base64")),
    }
}

fn no_such_policy(name: &str) -> HubError {
    HubError::invalid("keyName", format!("no access policy named {name:?}"))
}

/// Loads the stored policies; a store with none gets the built-in policies (durably) before
/// this returns.
pub(crate) async fn load_policies(
    store: &dyn Store,
    now: Timestamp,
) -> Result<PolicyRegistry, HubError> {
    let policies = PolicyRegistry::load(store).await?;
    if policies.read().is_empty() {
        let mut ops = Vec::new();
        let mut entries = Vec::new();
        for (name, rights) in BUILT_IN_POLICIES {
            let policy = AccessPolicy {
                key_name: name.to_string(),
                primary_key: generate_key()?,
                secondary_key: generate_key()?,
                rights,
                rate_limit: Some(DEFAULT_RATE_LIMIT),
            };
            let entry = PolicyEntry::new(policy, now)?;
            ops.push(PolicyRegistry::put_op(&entry)?);
            entries.push(entry);
        }
        store.commit(ops).await?;
        tracing::info!(
            policies = entries.len(),
            "created the built-in access policies"
        );
        policies.insert_committed(entries);
    }
    Ok(policies)
}

impl Hub {
    /// The shared access policies, sorted by name (keys included: this is for the owner).
    pub fn access_policies(&self) -> Vec<AccessPolicy> {
        self.inner
            .policies
            .read()
            .values()
            .map(|e| e.policy.clone())
            .collect()
    }

    /// One shared access policy.
    pub fn access_policy(&self, name: &str) -> Result<AccessPolicy, HubError> {
        self.inner
            .policies
            .read()
            .get(name)
            .map(|e| e.policy.clone())
            .ok_or_else(|| no_such_policy(name))
    }

    /// Checks the `Authorization` header of a service request and returns who it is.
    ///
    /// The value must be a `SharedAccessSignature` token with `skn` naming a policy, a
    /// resource (`sr`) that covers the hub host name, a signature made with the policy's
    /// primary or secondary key, and an expiry after the hub clock's now. Then the policy's
    /// rights must meet `need`, and the policy's rate limit must have room for the request.
    ///
    /// Errors: [`HubError::Unauthorized`] (no, malformed, wrongly signed or expired token;
    /// unknown policy), [`HubError::Forbidden`] (the policy lacks the rights: the message
    /// names both), [`HubError::Throttled`] (over the rate limit).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use iot_dm_core::clock::Timestamp;
    /// use iot_dm_core::wire::ServiceConnectionString;
    /// use iot_dm_service::access::{Need, Rights};
    /// use iot_dm_service::Hub;
    /// let hub = Hub::builder().host_name("hub.example").open().await?;
    /// let cs = ServiceConnectionString::parse(&hub.service_connection_string("registryRead")?)?;
    /// let token = cs.sas_token(Timestamp::now() + std::time::Duration::from_secs(3600));
    /// let grant = hub.authorize(Some(token.as_str()), Need::AnyOf(Rights::REGISTRY_READ))?;
    /// assert_eq!(grant.policy, "registryRead");
    /// assert!(hub.authorize(Some(token.as_str()), Need::AllOf(Rights::REGISTRY_WRITE)).unwrap_err().is_forbidden());
    /// assert!(hub.authorize(None, Need::AnyOf(Rights::REGISTRY_READ)).unwrap_err().is_unauthorized());
    /// # Ok(()) }
    /// ```
    pub fn authorize(&self, authorization: Option<&str>, need: Need) -> Result<Grant, HubError> {
        let unauthorized = |message: String| HubError::Unauthorized { message };
        let header = authorization
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| unauthorized("no Authorization header; send a SharedAccessSignature token signed with a shared access policy key".into()))?;
        let token = SasToken::parse(header).map_err(|e| unauthorized(e.to_string()))?;
        let name = token.key_name().ok_or_else(|| {
            unauthorized(
                "the SAS token has no skn (policy name); the service API takes shared access policy tokens, not device tokens".into(),
            )
        })?;
        token
            .check_resource(&self.inner.host_name)
            .map_err(|e| unauthorized(e.to_string()))?;
        let now = self.now();
        let (grant, bucket) = {
            let entries = self.inner.policies.read();
            let entry = entries
                .get(name)
                .ok_or_else(|| unauthorized(format!("no access policy named {name:?}")))?;
            token
                .verify_signature(&entry.primary)
                .or_else(|_| token.verify_signature(&entry.secondary))
                .map_err(|_| {
                    unauthorized(format!(
                        "the SAS token signature does not match either key of policy {name:?}"
                    ))
                })?;
            token
                .check_expiry(now)
                .map_err(|e| unauthorized(e.to_string()))?;
            (
                Grant {
                    policy: entry.policy.key_name.clone(),
                    rights: entry.policy.rights,
                },
                entry.bucket.clone(),
            )
        };
        if !need.is_met_by(grant.rights) {
            return Err(HubError::Forbidden {
                message: format!(
                    "this operation needs {need}; policy {:?} has [{}]",
                    grant.policy, grant.rights
                ),
            });
        }
        if let Some(bucket) = bucket {
            bucket
                .try_acquire(now)
                .map_err(|wait| HubError::Throttled {
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })?;
        }
        Ok(grant)
    }

    /// `HostName={host};SharedAccessKeyName={name};SharedAccessKey={primary key}` for a
    /// policy.
    pub fn service_connection_string(&self, policy: &str) -> Result<String, HubError> {
        let policy = self.access_policy(policy)?;
        Ok(format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.inner.host_name, policy.key_name, policy.primary_key
        ))
    }
}

/// The policies of the embedded hub. Reading them (and the connection string) stays
/// synchronous for in-process callers; the trait's methods call those.
#[async_trait]
impl AccessApi for Hub {
    async fn access_policies(&self) -> Result<Vec<AccessPolicy>, HubError> {
        Ok(Hub::access_policies(self))
    }

    async fn access_policy(&self, name: &str) -> Result<AccessPolicy, HubError> {
        Hub::access_policy(self, name)
    }

    /// Creates or replaces a shared access policy, durably, and returns it as stored. Empty
    /// keys are generated. Refused: a bad name, no rights, a key that is not base64 of 16 to
    /// 64 bytes, a rate limit of 0, a 17th policy ([`MAX_POLICIES`]), and taking the last
    /// policy with every right away from [`Rights::ALL`] (that would lock the owner out).
    ///
    /// The change takes effect at once: tokens signed with a replaced key stop working. A
    /// policy replaced with the same rate limit keeps its limiter's state.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use iot_dm_service::access::{AccessPolicy, Rights};
    /// use iot_dm_service::api::prelude::*;
    /// use iot_dm_service::Hub;
    /// let hub = Hub::builder().host_name("hub.example").open().await?;
    /// let stored = hub.put_access_policy(AccessPolicy::new("dashboard", Rights::REGISTRY_READ)).await?;
    /// assert!(!stored.primary_key.is_empty());
    /// let cs = hub.service_connection_string("dashboard")?;
    /// assert!(cs.starts_with("HostName=hub.example;SharedAccessKeyName=dashboard;SharedAccessKey="));
    /// # Ok(()) }
    /// ```
    async fn put_access_policy(&self, policy: AccessPolicy) -> Result<AccessPolicy, HubError> {
        let mut policy = policy;
        validate_policy_name(&policy.key_name)?;
        if policy.rights.is_empty() {
            return Err(HubError::invalid(
                "rights",
                "a policy needs at least one of RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect",
            ));
        }
        if let Some(limit) = &policy.rate_limit {
            limit.validate()?;
        }
        if policy.primary_key.is_empty() {
            policy.primary_key = generate_key()?;
        }
        if policy.secondary_key.is_empty() {
            policy.secondary_key = generate_key()?;
        }
        let mut entry = PolicyEntry::new(policy, self.now())?;
        let stored = self
            .inner
            .policies
            .put_with(
                &self.inner.committer,
                |entries| {
                    let existing = entries.get(&entry.policy.key_name);
                    if existing.is_none() && entries.len() >= MAX_POLICIES {
                        return Err(HubError::invalid(
                            "keyName",
                            format!(
                                "the hub already has {MAX_POLICIES} access policies, the most it holds"
                            ),
                        ));
                    }
                    if let Some(old) = existing {
                        if old.policy.rights == Rights::ALL && entry.policy.rights != Rights::ALL {
                            check_not_last_owner(entries, &old.policy.key_name)?;
                        }
                        if old.policy.rate_limit == entry.policy.rate_limit {
                            entry.bucket = old.bucket.clone();
                        }
                    }
                    Ok(entry)
                },
                |e| e.policy.clone(),
            )
            .await?;
        tracing::info!(policy = %stored.key_name, rights = %stored.rights, "access policy stored");
        Ok(stored)
    }

    /// Deletes a shared access policy, durably; its tokens stop working at once. Refuses to
    /// delete the last policy with every right.
    async fn delete_access_policy(&self, name: &str) -> Result<(), HubError> {
        self.inner
            .policies
            .delete_with(&self.inner.committer, name, |entry, entries| {
                let entry = entry.ok_or_else(|| no_such_policy(name))?;
                if entry.policy.rights == Rights::ALL {
                    check_not_last_owner(entries, name)?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(policy = %name, "access policy deleted");
        Ok(())
    }

    /// Regenerates the primary or secondary key of a policy, or swaps the two.
    async fn regenerate_policy_key(
        &self,
        name: &str,
        which: KeyKind,
    ) -> Result<AccessPolicy, HubError> {
        let mut policy = self.access_policy(name)?;
        match which {
            KeyKind::Primary => policy.primary_key = generate_key()?,
            KeyKind::Secondary => policy.secondary_key = generate_key()?,
            KeyKind::Swap => std::mem::swap(&mut policy.primary_key, &mut policy.secondary_key),
        }
        self.put_access_policy(policy).await
    }

    async fn service_connection_string(&self, policy: &str) -> Result<String, HubError> {
        Hub::service_connection_string(self, policy)
    }
}

/// Refuses when `name` is the only policy with every right.
fn check_not_last_owner(
    entries: &BTreeMap<String, PolicyEntry>,
    name: &str,
) -> Result<(), HubError> {
    let others = entries
        .values()
        .filter(|e| e.policy.rights == Rights::ALL && e.policy.key_name != name)
        .count();
    if others == 0 {
        Err(HubError::invalid(
            "keyName",
            format!("{name:?} is the last policy with every right; create another one first"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[path = "policies_tests.rs"]
mod tests;
