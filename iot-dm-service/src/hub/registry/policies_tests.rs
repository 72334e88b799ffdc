//! Tests of the hub's access policies and of `Hub::authorize`.

use std::sync::Arc;
use std::time::Duration;

use iot_dm_core::clock::{ManualClock, Timestamp};
use iot_dm_core::wire::{SasToken, SymmetricKey};

use super::*;
use crate::access::{RateLimit, Role};
use crate::api::prelude::*;

const T0: i64 = 1_700_000_000;
const HOST: &str = "hub.example";

async fn hub() -> (Hub, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let hub = Hub::builder()
        .clock(Arc::new(clock.clone()))
        .host_name(HOST)
        .open()
        .await
        .unwrap();
    (hub, clock)
}

fn token(sr: &str, key: &str, skn: Option<&str>, ttl: i64) -> String {
    let key = SymmetricKey::new(key).unwrap();
    SasToken::generate(sr, &key, Timestamp::from_unix_secs(T0 + ttl), skn)
        .as_str()
        .to_string()
}

fn policy_token(hub: &Hub, name: &str) -> String {
    let p = hub.access_policy(name).unwrap();
    token(HOST, &p.primary_key, Some(name), 3600)
}

const READ: Need = Need::AnyOf(Rights::REGISTRY_READ);

#[tokio::test]
async fn a_new_hub_has_the_built_in_policies() {
    let (hub, _) = hub().await;
    let policies = hub.access_policies();
    let names: Vec<_> = policies.iter().map(|p| p.key_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "device",
            "iothubowner",
            "registryRead",
            "registryReadWrite",
            "service"
        ]
    );
    for (name, rights) in BUILT_IN_POLICIES {
        let p = hub.access_policy(name).unwrap();
        assert_eq!(p.rights, rights, "{name}");
        assert_eq!(p.rate_limit, Some(DEFAULT_RATE_LIMIT));
        assert_ne!(p.primary_key, p.secondary_key);
    }
    for role in Role::ALL {
        assert_eq!(
            hub.access_policy(role.policy_name()).unwrap().rights,
            role.rights()
        );
    }
}

#[tokio::test]
async fn tokens_signed_with_either_key_are_accepted() {
    let (hub, _) = hub().await;
    let p = hub.access_policy("registryRead").unwrap();
    for key in [&p.primary_key, &p.secondary_key] {
        let t = token(HOST, key, Some("registryRead"), 60);
        let grant = hub.authorize(Some(&t), READ).unwrap();
        assert_eq!(
            grant,
            Grant {
                policy: "registryRead".into(),
                rights: Rights::REGISTRY_READ
            }
        );
    }
    // host compared case-insensitively, a trailing slash is fine
    let t = token("HUB.example/", &p.primary_key, Some("registryRead"), 60);
    hub.authorize(Some(&t), READ).unwrap();
}

#[tokio::test]
async fn bad_tokens_are_unauthorized() {
    let (hub, clock) = hub().await;
    let p = hub.access_policy("iothubowner").unwrap();
    let other = hub.access_policy("service").unwrap();
    let cases = [
        ("missing header", None),
        ("empty header", Some(String::new())),
        ("not a token", Some("Bearer abc".to_string())),
        (
            "wrong key",
            Some(token(HOST, &other.primary_key, Some("iothubowner"), 60)),
        ),
        (
            "unknown skn",
            Some(token(HOST, &p.primary_key, Some("nobody"), 60)),
        ),
        ("missing skn", Some(token(HOST, &p.primary_key, None, 60))),
        (
            "wrong sr",
            Some(token(
                "other.example",
                &p.primary_key,
                Some("iothubowner"),
                60,
            )),
        ),
        (
            "narrower sr",
            Some(token(
                "hub.example/devices/d1",
                &p.primary_key,
                Some("iothubowner"),
                60,
            )),
        ),
        (
            "expired",
            Some(token(HOST, &p.primary_key, Some("iothubowner"), -1)),
        ),
    ];
    for (what, header) in cases {
        let err = hub.authorize(header.as_deref(), READ).unwrap_err();
        assert!(
            matches!(err, HubError::Unauthorized { .. }),
            "{what}: {err:?}"
        );
        assert_eq!(err.code(), 401_003);
    }
    // expiry is checked against the hub's clock
    let t = token(HOST, &p.primary_key, Some("iothubowner"), 10);
    hub.authorize(Some(&t), READ).unwrap();
    clock.advance(Duration::from_secs(10));
    let err = hub.authorize(Some(&t), READ).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn lacking_rights_is_forbidden_and_says_what_was_needed() {
    let (hub, _) = hub().await;
    let t = policy_token(&hub, "registryRead");
    let err = hub
        .authorize(Some(&t), Need::AllOf(Rights::REGISTRY_WRITE))
        .unwrap_err();
    assert!(err.is_forbidden());
    assert_eq!(err.http_status(), 403);
    let msg = err.to_string();
    assert!(
        msg.contains("RegistryWrite") && msg.contains("[RegistryRead]"),
        "{msg}"
    );
    let t = policy_token(&hub, "service");
    hub.authorize(
        Some(&t),
        Need::AnyOf(Rights::REGISTRY_READ | Rights::SERVICE_CONNECT),
    )
    .unwrap();
}

#[tokio::test]
async fn a_deleted_policy_stops_working_at_once() {
    let (hub, _) = hub().await;
    let t = policy_token(&hub, "registryReadWrite");
    hub.authorize(Some(&t), READ).unwrap();
    hub.delete_access_policy("registryReadWrite").await.unwrap();
    assert!(hub.authorize(Some(&t), READ).unwrap_err().is_unauthorized());
    assert!(hub.access_policy("registryReadWrite").is_err());
    assert!(hub.delete_access_policy("registryReadWrite").await.is_err());
}

#[tokio::test]
async fn a_regenerated_key_invalidates_old_tokens() {
    let (hub, _) = hub().await;
    let before = hub.access_policy("service").unwrap();
    let old = policy_token(&hub, "service");
    let after = hub
        .regenerate_policy_key("service", KeyKind::Primary)
        .await
        .unwrap();
    assert_ne!(after.primary_key, before.primary_key);
    assert_eq!(after.secondary_key, before.secondary_key);
    let need = Need::AnyOf(Rights::SERVICE_CONNECT);
    assert!(hub
        .authorize(Some(&old), need)
        .unwrap_err()
        .is_unauthorized());
    hub.authorize(Some(&policy_token(&hub, "service")), need)
        .unwrap();
    let swapped = hub
        .regenerate_policy_key("service", KeyKind::Swap)
        .await
        .unwrap();
    assert_eq!(swapped.primary_key, after.secondary_key);
}

#[tokio::test]
async fn the_rate_limit_refuses_then_refills() {
    let (hub, clock) = hub().await;
    let limit = RateLimit {
        per_second: 2,
        burst: 3,
    };
    hub.put_access_policy(
        AccessPolicy::new("slow", Rights::REGISTRY_READ).with_rate_limit(Some(limit)),
    )
    .await
    .unwrap();
    let t = policy_token(&hub, "slow");
    // refused requests (lacking rights) are not charged
    for _ in 0..5 {
        let err = hub
            .authorize(Some(&t), Need::AllOf(Rights::REGISTRY_WRITE))
            .unwrap_err();
        assert!(err.is_forbidden());
    }
    for _ in 0..3 {
        hub.authorize(Some(&t), READ).unwrap();
    }
    let err = hub.authorize(Some(&t), READ).unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Throttled {
                retry_after_secs: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), 429_001);
    // half a second brings one token back
    clock.advance(Duration::from_millis(500));
    hub.authorize(Some(&t), READ).unwrap();
    assert!(hub.authorize(Some(&t), READ).unwrap_err().is_throttled());
    clock.advance(Duration::from_secs(60));
    for _ in 0..3 {
        hub.authorize(Some(&t), READ).unwrap();
    }
    assert!(hub.authorize(Some(&t), READ).unwrap_err().is_throttled());
    // other policies have their own buckets
    hub.authorize(Some(&policy_token(&hub, "registryRead")), READ)
        .unwrap();
    // no limit at all
    hub.put_access_policy(AccessPolicy::new("slow", Rights::REGISTRY_READ).with_rate_limit(None))
        .await
        .unwrap();
    let t = policy_token(&hub, "slow");
    for _ in 0..100 {
        hub.authorize(Some(&t), READ).unwrap();
    }
}

#[tokio::test]
async fn at_most_sixteen_policies() {
    let (hub, _) = hub().await;
    let have = hub.access_policies().len();
    for i in have..MAX_POLICIES {
        hub.put_access_policy(AccessPolicy::new(format!("p{i}"), Rights::REGISTRY_READ))
            .await
            .unwrap();
    }
    assert_eq!(hub.access_policies().len(), MAX_POLICIES);
    let err = hub
        .put_access_policy(AccessPolicy::new("one-too-many", Rights::REGISTRY_READ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("16"), "{err}");
    // replacing one is still fine
    hub.put_access_policy(AccessPolicy::new("p10", Rights::SERVICE_CONNECT))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_last_all_rights_policy_stays() {
    let (hub, _) = hub().await;
    let err = hub.delete_access_policy("iothubowner").await.unwrap_err();
    assert!(
        err.to_string().contains("last policy with every right"),
        "{err}"
    );
    let err = hub
        .put_access_policy(AccessPolicy::new("iothubowner", Rights::REGISTRY_READ))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input());
    assert_eq!(
        hub.access_policy("iothubowner").unwrap().rights,
        Rights::ALL
    );
    hub.put_access_policy(AccessPolicy::new("owner2", Rights::ALL))
        .await
        .unwrap();
    hub.delete_access_policy("iothubowner").await.unwrap();
    assert!(hub.delete_access_policy("owner2").await.is_err());
}

#[tokio::test]
async fn invalid_policies_are_refused_by_field() {
    let (hub, _) = hub().await;
    let cases = [
        (AccessPolicy::new("bad name", Rights::ALL), "keyName"),
        (AccessPolicy::new("none", Rights::NONE), "rights"),
        (
            AccessPolicy {
                primary_key: "not base64!".into(),
                ..AccessPolicy::new("k", Rights::ALL)
            },
            "primaryKey",
        ),
        (
            AccessPolicy {
                secondary_key: "c2hvcnQ=".into(),
                ..AccessPolicy::new("k", Rights::ALL)
            },
            "secondaryKey",
        ),
        (
            AccessPolicy::new("k", Rights::ALL).with_rate_limit(Some(RateLimit {
                per_second: 0,
                burst: 1,
            })),
            "rateLimit.perSecond",
        ),
    ];
    for (policy, field) in cases {
        match hub.put_access_policy(policy).await.unwrap_err() {
            HubError::InvalidInput { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // given keys are kept
    let key = generate_key().unwrap();
    let stored = hub
        .put_access_policy(AccessPolicy {
            primary_key: key.clone(),
            ..AccessPolicy::new("mine", Rights::SERVICE_CONNECT)
        })
        .await
        .unwrap();
    assert_eq!(stored.primary_key, key);
    assert!(!stored.secondary_key.is_empty());
}

#[tokio::test]
async fn service_connection_strings_name_the_policy_and_primary_key() {
    let (hub, _) = hub().await;
    let p = hub.access_policy("iothubowner").unwrap();
    assert_eq!(
        hub.service_connection_string("iothubowner").unwrap(),
        format!(
            "HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
            p.primary_key
        )
    );
    assert!(hub.service_connection_string("nobody").is_err());
}

#[tokio::test]
async fn policies_survive_a_reopen_of_a_redb_hub() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let open = || Hub::builder().host_name(HOST).path(path.clone()).open();
    let hub = open().await.unwrap();
    let owner = hub.access_policy("iothubowner").unwrap();
    hub.put_access_policy(
        AccessPolicy::new("ops", Rights::REGISTRY_READ | Rights::SERVICE_CONNECT).with_rate_limit(
            Some(RateLimit {
                per_second: 7,
                burst: 9,
            }),
        ),
    )
    .await
    .unwrap();
    hub.delete_access_policy("device").await.unwrap();
    let before = hub.access_policies();
    hub.shutdown().await.unwrap();
    drop(hub);

    let hub = open().await.unwrap();
    assert_eq!(hub.access_policies(), before);
    assert_eq!(hub.access_policy("iothubowner").unwrap(), owner);
    assert!(hub.access_policy("device").is_err());
    let t = SasToken::generate(
        HOST,
        &SymmetricKey::new(owner.primary_key).unwrap(),
        Timestamp::now() + Duration::from_secs(60),
        Some("iothubowner"),
    );
    hub.authorize(Some(t.as_str()), Need::AllOf(Rights::ALL))
        .unwrap();
    hub.shutdown().await.unwrap();
}
