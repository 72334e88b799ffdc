//! The hub's tests of identities, the lifecycle, bulk operations, export and import, CA certificates.

use super::*;

#[tokio::test]
async fn registry_crud_and_typed_errors() {
    let (hub, _) = hub_with_clock().await;
    let d = device(&hub, "d1").await;
    assert_eq!(d.etag(), "MQ==");
    assert_eq!(hub.get_device("d1").unwrap(), d);
    let err = hub
        .create_device(DeviceSpec::new("d1".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(err.is_conflict() && err.code() == 409_001);
    assert!(hub.get_device("nope").unwrap_err().is_not_found());
    let err = hub
        .delete_device("d1", Some("\"wrong\""))
        .await
        .unwrap_err();
    assert!(err.is_precondition_failed());
    for i in 0..5 {
        device(&hub, &format!("e{i}")).await;
    }
    let p1 = hub.list_devices(None, 4).unwrap();
    assert_eq!(p1.items.len(), 4);
    let p2 = hub.list_devices(p1.continuation.as_deref(), 4).unwrap();
    assert_eq!(p2.items.len(), 2);
    assert!(p2.continuation.is_none());
    hub.delete_device("d1", Some(d.etag().as_str()))
        .await
        .unwrap();
    assert!(hub.get_device("d1").unwrap_err().is_not_found());
    assert!(hub.list_devices(None, 0).is_err());
}

#[tokio::test]
async fn lifecycle_plan_provision_retire_replace() {
    let (hub, _) = hub_with_clock().await;
    let mut events = hub.events();
    let twin = hub
        .plan_device(DeviceSpec::new("p1".parse().unwrap()).tags(json!({"site": "north"})))
        .await
        .unwrap();
    assert_eq!(twin.tags().to_value(), json!({"site": "north"}));
    let planned = hub.get_device("p1").unwrap();
    assert_eq!(planned.state().as_str(), "planned");
    assert!(hub.enable_device("p1").await.is_err());
    let d = hub.provision_device("p1", None).await.unwrap();
    let mut dev = Raw::connect(&hub, &d).await;
    dev.patch_reported(json!({"fw": "1"})).await;

    hub.retire_device("p1").await.unwrap();
    assert!(dev.closed().await);
    assert!(hub.get_twin("p1").unwrap_err().is_not_found());
    let archived = hub.get_archived_twin("p1").unwrap();
    assert_eq!(archived.reported().doc().to_value(), json!({"fw": "1"}));
    assert!(hub
        .connect(request(&d, token_for(&d, None, 60)))
        .await
        .is_err());

    let new = hub
        .replace_device("p1", DeviceSpec::new("p1b".parse().unwrap()))
        .await
        .unwrap();
    let t = hub.get_twin("p1b").unwrap();
    assert_eq!(t.tags().to_value(), json!({"site": "north"}));
    assert!(t.reported().doc().is_empty());
    assert_eq!(
        hub.get_device("p1").unwrap().lifecycle.successor(),
        Some(&new.device_id)
    );
    assert!(hub
        .replace_device("p1", DeviceSpec::new("p1c".parse().unwrap()))
        .await
        .is_err());
    hub.delete_device("p1", None).await.unwrap();
    assert!(hub.get_archived_twin("p1").is_err());

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(seen
        .iter()
        .any(|e| matches!(e, HubEvent::Lifecycle { to: Some(s), .. } if s.as_str() == "retired")));
    assert!(seen.iter().any(|e| matches!(
        e,
        HubEvent::TwinChanged {
            actor: Actor::Device,
            ..
        }
    )));
    assert!(seen
        .iter()
        .any(|e| matches!(e, HubEvent::IdentityDeleted { .. })));
}

fn import(id: &str, mode: ImportMode) -> ImportDevice {
    let mut d = ImportDevice::new(id.parse().unwrap());
    d.import_mode = mode;
    d
}

#[tokio::test]
async fn bulk_reports_per_device() {
    let (hub, _) = hub_with_clock().await;
    device(&hub, "exists").await;
    let mut with_tags = import("new-1", ImportMode::Create);
    with_tags.tags = Some(json!({"batch": 7}));
    let mut bad_tags = import("new-2", ImportMode::Create);
    bad_tags.tags = Some(json!({"bad key": 1}));
    let r = hub
        .bulk(vec![
            with_tags,
            bad_tags,
            import("exists", ImportMode::Create),
            import("missing", ImportMode::Update),
            import("exists", ImportMode::Delete).clone(),
        ])
        .await;
    // the same id twice in one call is refused whole
    assert!(matches!(r, Err(HubError::InvalidInput { .. })));
    let r = hub
        .bulk(vec![
            {
                let mut d = import("new-1", ImportMode::Create);
                d.tags = Some(json!({"batch": 7}));
                d
            },
            {
                let mut d = import("new-2", ImportMode::Create);
                d.tags = Some(json!({"bad key": 1}));
                d
            },
            import("exists", ImportMode::Create),
            import("missing", ImportMode::Update),
        ])
        .await
        .unwrap();
    assert!(!r.is_successful);
    let failed: Vec<_> = r
        .errors
        .iter()
        .map(|e| (e.device_id.as_str(), e.error_code.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("new-2", "400004"),
            ("exists", "409001"),
            ("missing", "404001")
        ]
    );
    assert_eq!(
        hub.get_twin("new-1").unwrap().tags().to_value(),
        json!({"batch": 7})
    );
    assert!(hub.get_device("new-2").is_err());
    let too_many: Vec<_> = (0..101)
        .map(|i| import(&format!("x{i}"), ImportMode::Create))
        .collect();
    assert!(matches!(
        hub.bulk(too_many).await,
        Err(HubError::TooManyDevices {
            count: 101,
            limit: 100
        })
    ));
    // etag-checked delete
    let etag = hub.get_device("exists").unwrap().etag().clone();
    let mut del = import("exists", ImportMode::DeleteIfMatchETag);
    del.etag = Some("wrong".into());
    assert!(!hub.bulk(vec![del.clone()]).await.unwrap().is_successful);
    del.etag = Some(etag.to_string());
    assert!(hub.bulk(vec![del]).await.unwrap().is_successful);
}

#[tokio::test]
async fn export_then_import_round_trips() {
    let (hub, _) = hub_with_clock().await;
    for i in 0..250 {
        let spec = DeviceSpec::new(format!("dev-{i:03}").parse().unwrap())
            .tags(json!({"n": i, "group": format!("g{}", i % 3)}))
            .desired(json!({"interval": i}));
        let spec = if i % 10 == 0 {
            spec.disabled("maintenance")
        } else {
            spec
        };
        hub.create_device(spec).await.unwrap();
    }
    hub.patch_reported("dev-001", &json!({"fw": "2.0"}))
        .await
        .unwrap();
    hub.plan_device(DeviceSpec::new("planned".parse().unwrap()).tags(json!({"p": 1})))
        .await
        .unwrap();
    hub.retire_device("dev-005").await.unwrap();
    let mut buf = Vec::new();
    let n = hub.export_devices(&mut buf, true).await.unwrap();
    assert_eq!(n, 251);
    assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 251);

    let (copy, _) = hub_with_clock().await;
    let mut chunks = Vec::new();
    let report = copy
        .import_devices(&buf[..], |lines| chunks.push(lines))
        .await
        .unwrap();
    assert_eq!(
        (report.succeeded, report.failed.len()),
        (251, 0),
        "{:?}",
        report.failed
    );
    assert_eq!(chunks.len(), 3);
    for id in ["dev-000", "dev-001", "dev-117", "planned", "dev-005"] {
        let a = hub.get_device(id).unwrap();
        let b = copy.get_device(id).unwrap();
        assert_eq!(a.authentication(), b.authentication(), "{id}");
        assert_eq!(
            (a.state(), a.identity.status, &a.identity.status_reason),
            (b.state(), b.identity.status, &b.identity.status_reason),
            "{id}"
        );
    }
    let (a, b) = (
        hub.get_twin("dev-001").unwrap(),
        copy.get_twin("dev-001").unwrap(),
    );
    assert_eq!(a.tags(), b.tags());
    assert_eq!(a.desired().doc(), b.desired().doc());
    assert_eq!(a.reported().doc(), b.reported().doc());
    assert!(copy.get_archived_twin("dev-005").is_ok());
    // exporting the copy gives the same content
    let mut again = Vec::new();
    copy.export_devices(&mut again, true).await.unwrap();
    let strip = |b: &[u8]| -> Vec<Value> {
        b.split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut v: Value = serde_json::from_slice(l).unwrap();
                for k in ["eTag", "twinETag"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&buf), strip(&again));
    // bad lines are reported, not fatal
    let report = copy
        .import_devices(
            &b"{\"id\":\"ok-1\"}\nnot json\n{\"id\":\"bad id\"}\n"[..],
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.succeeded, 1);
    assert_eq!(
        report.failed.iter().map(|f| f.0).collect::<Vec<_>>(),
        [2, 3]
    );
}

#[tokio::test]
async fn ca_certificates_are_validated_and_persist() {
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::MemoryStore::new());
    let hub = Hub::builder().store(store.clone()).open().await.unwrap();
    let certs = crate::tls::dev_certs::DevCerts::generate().unwrap();
    assert!(hub
        .add_ca_certificate("bad name", certs.ca_pem())
        .await
        .is_err());
    assert!(hub.add_ca_certificate("x", "not pem").await.is_err());
    let ca = hub
        .add_ca_certificate("root-1", certs.ca_pem())
        .await
        .unwrap();
    assert_eq!(ca.sha256_thumbprint.len(), 64);
    hub.shutdown().await.unwrap();
    let hub = Hub::builder().store(store).open().await.unwrap();
    assert_eq!(hub.ca_certificates(), [ca]);
    hub.remove_ca_certificate("root-1").await.unwrap();
    assert!(hub.ca_certificates().is_empty());
    assert!(hub.remove_ca_certificate("root-1").await.is_err());
}
