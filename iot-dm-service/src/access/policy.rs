//! [`AccessPolicy`] and its [`RateLimit`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Rights;
use crate::hub::HubError;

/// Most shared access policies a hub holds (IoT Hub's limit).
pub const MAX_POLICIES: usize = 16;

/// The rate limit of the built-in policies, and of a policy created without a `rateLimit`
/// field: 2000 requests a second, bursts of up to 4000. That is far above what IoT Hub allows
/// (its registry throttle is 100 to 5000 a minute per unit), so it only stops a runaway client,
/// never a well-behaved tool.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 2000,
    burst: 4000,
};

/// Longest policy name.
pub const MAX_POLICY_NAME: usize = 128;

/// A per-policy rate limit: a token bucket holding up to `burst` requests, refilled at
/// `per_second`.
///
/// ```
/// use iot_dm_service::access::RateLimit;
/// let limit: RateLimit = serde_json::from_str(r#"{"perSecond":10,"burst":20}"#)?;
/// assert_eq!(limit, RateLimit { per_second: 10, burst: 20 });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests added to the bucket each second (at least 1).
    pub per_second: u32,
    /// Most requests the bucket holds, so the largest burst (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// Checks both fields are at least 1.
    pub fn validate(&self) -> Result<(), HubError> {
        if self.per_second == 0 {
            return Err(HubError::invalid(
                "rateLimit.perSecond",
                "must be at least 1 (use null for no limit)",
            ));
        }
        if self.burst == 0 {
            return Err(HubError::invalid(
                "rateLimit.burst",
                "must be at least 1 (use null for no limit)",
            ));
        }
        Ok(())
    }
}

fn default_rate_limit() -> Option<RateLimit> {
    Some(DEFAULT_RATE_LIMIT)
}

/// A shared access policy: a name, two keys and the rights a token signed with either key
/// carries, plus (our addition) a rate limit.
///
/// The JSON shape is IoT Hub's (`keyName`, `primaryKey`, `secondaryKey`, `rights`) plus
/// `rateLimit`. Missing keys deserialize as empty, and the hub generates empty keys when the
/// policy is put. A missing `rateLimit` means [`DEFAULT_RATE_LIMIT`]; `"rateLimit": null`
/// means no limit. `Debug` never shows the keys.
///
/// ```
/// use iot_dm_service::access::{AccessPolicy, Rights, DEFAULT_RATE_LIMIT};
/// let policy = AccessPolicy::new("dashboard", Rights::REGISTRY_READ);
/// assert!(policy.primary_key.is_empty()); // generated when the hub stores it
/// assert_eq!(policy.rate_limit, Some(DEFAULT_RATE_LIMIT));
///
/// let json = serde_json::to_value(&policy)?;
/// assert_eq!(json["rights"], "RegistryRead");
/// let back: AccessPolicy = serde_json::from_value(json)?;
/// assert_eq!(back, policy);
/// assert!(!format!("{:?}", AccessPolicy { primary_key: "c2VjcmV0".into(), ..policy }).contains("c2VjcmV0"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    /// The policy name (`skn` in tokens, `SharedAccessKeyName` in connection strings).
    pub key_name: String,
    /// The primary key, base64 (empty: generate).
    #[serde(default)]
    pub primary_key: String,
    /// The secondary key, base64 (empty: generate).
    #[serde(default)]
    pub secondary_key: String,
    /// What a token of this policy may do.
    pub rights: Rights,
    /// The policy's rate limit (`None`: unlimited).
    #[serde(default = "default_rate_limit")]
    pub rate_limit: Option<RateLimit>,
}

impl AccessPolicy {
    /// A policy with no keys yet (the hub generates them when it stores the policy) and the
    /// [`DEFAULT_RATE_LIMIT`].
    pub fn new(name: impl Into<String>, rights: Rights) -> AccessPolicy {
        AccessPolicy {
            key_name: name.into(),
            primary_key: String::new(),
            secondary_key: String::new(),
            rights,
            rate_limit: Some(DEFAULT_RATE_LIMIT),
        }
    }

    /// Sets the rate limit (`None`: unlimited).
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> AccessPolicy {
        self.rate_limit = limit;
        self
    }
}

impl fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("key_name", &self.key_name)
            .field("primary_key", &"<redacted>")
            .field("secondary_key", &"<redacted>")
            .field("rights", &self.rights.to_string())
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// Checks a policy name: 1 to [`MAX_POLICY_NAME`] ASCII letters, digits, `-`, `_` or `.`
/// (so it fits in a connection string and a URL path unescaped).
pub fn validate_policy_name(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_POLICY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(HubError::invalid(
            "keyName",
            format!("{name:?} is not a policy name: 1 to {MAX_POLICY_NAME} ASCII letters, digits, '-', '_' or '.'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_shape_is_iot_hubs_plus_rate_limit() {
        let policy = AccessPolicy {
            key_name: "ops".into(),
            primary_key: "cA==".into(),
            secondary_key: "cw==".into(),
            rights: Rights::REGISTRY_READ | Rights::SERVICE_CONNECT,
            rate_limit: Some(RateLimit {
                per_second: 5,
                burst: 7,
            }),
        };
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            json!({"keyName":"ops","primaryKey":"cA==","secondaryKey":"cw==",
                   "rights":"RegistryRead, ServiceConnect","rateLimit":{"perSecond":5,"burst":7}})
        );
    }

    #[test]
    fn absent_rate_limit_is_the_default_and_null_is_none() {
        let absent: AccessPolicy =
            serde_json::from_value(json!({"keyName":"a","rights":"DeviceConnect"})).unwrap();
        assert_eq!(absent.rate_limit, Some(DEFAULT_RATE_LIMIT));
        assert!(absent.primary_key.is_empty() && absent.secondary_key.is_empty());
        let null: AccessPolicy = serde_json::from_value(
            json!({"keyName":"a","rights":"DeviceConnect","rateLimit":null}),
        )
        .unwrap();
        assert_eq!(null.rate_limit, None);
    }

    #[test]
    fn names_and_limits_are_validated() {
        validate_policy_name("registryReadWrite").unwrap();
        for bad in ["", "a b", "a;b", "a=b", &"x".repeat(MAX_POLICY_NAME + 1)] {
            let err = validate_policy_name(bad).unwrap_err();
            assert!(err.to_string().contains("keyName"), "{err}");
        }
        let zero = RateLimit {
            per_second: 0,
            burst: 1,
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("perSecond"));
        let zero = RateLimit {
            per_second: 1,
            burst: 0,
        };
        assert!(zero.validate().unwrap_err().to_string().contains("burst"));
    }
}
