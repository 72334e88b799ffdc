use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::doc::merge_value;
use crate::twin::Twin;

fn base() -> Value {
    json!({
        "id": "cfg-1",
        "content": {"deviceContent": {"properties.desired.fan": {"speed": 3}}},
        "targetCondition": "tags.site = 'north'",
        "priority": 10,
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut v = base();
    v[field] = value;
    v
}

fn err(v: Value) -> ConfigurationError {
    match Configuration::from_json(&v) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_full_configuration_round_trips_through_its_stored_form() {
    let mut v = base();
    v["labels"] = json!({"HostPlatform": "Linux"});
    v["metrics"] = json!({"queries": {"ok": "SELECT deviceId FROM devices WHERE properties.reported.fan.speed = 3"}});
    let cfg = Configuration::from_json(&v)
        .unwrap()
        .created(Timestamp::from_unix_secs(1_700_000_000));
    assert_eq!(cfg.schema_version, SCHEMA_VERSION);
    let stored = cfg.to_json();
    assert_eq!(
        stored["systemMetrics"]["queries"][APPLIED_COUNT],
        json!("SELECT deviceId FROM devices WHERE configurations.[[cfg-1]].status = 'Applied'")
    );
    assert_eq!(
        stored["systemMetrics"]["queries"][TARGETED_COUNT],
        json!("SELECT deviceId FROM devices WHERE tags.site = 'north'")
    );
    let back = Configuration::from_stored(&stored).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(back.etag, cfg.etag);
    assert!(!cfg.etag.is_empty());
}

#[test]
fn every_malformed_field_is_named() {
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "configuration"),
        (with("id", json!(null)), "id"),
        (with("id", json!("Upper")), "id"),
        (with("id", json!("a/b")), "id"),
        (with("id", json!("x".repeat(129))), "id"),
        (with("id", json!(7)), "id"),
        (with("labels", json!({"a": 1})), "labels.a"),
        (with("labels", json!("x")), "labels"),
        (with("content", json!(null)), "content"),
        (with("content", json!({})), "content.deviceContent"),
        (
            with("content", json!({"deviceContent": {}})),
            "content.deviceContent",
        ),
        (
            with("content", json!({"deviceContent": {"tags.x": 1}})),
            "content.deviceContent.tags.x",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desiredx": 1}}),
            ),
            "content.deviceContent.properties.desiredx",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desired.a..b": 1}}),
            ),
            "content.deviceContent.properties.desired.a..b",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desired.$version": 1}}),
            ),
            "content.deviceContent.properties.desired.$version",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desired.a": 1, "properties.desired.a.b": 2}}),
            ),
            "content.deviceContent",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desired.a": 1}, "modulesContent": {"m": {}}}),
            ),
            "content.modulesContent",
        ),
        (
            with(
                "content",
                json!({"deviceContent": {"properties.desired.a": 1}, "moduleContent": {"m": {}}}),
            ),
            "content.moduleContent",
        ),
        (with("targetCondition", json!(null)), "targetCondition"),
        (with("targetCondition", json!("")), "targetCondition"),
        (
            with("targetCondition", json!("tags.x = ")),
            "targetCondition",
        ),
        (with("priority", json!(-1)), "priority"),
        (with("priority", json!(1.5)), "priority"),
        (with("priority", json!("1")), "priority"),
        (with("metrics", json!([])), "metrics"),
        (with("metrics", json!({"queries": []})), "metrics.queries"),
        (
            with("metrics", json!({"queries": {"a": 1}})),
            "metrics.queries.a",
        ),
        (
            with(
                "metrics",
                json!({"queries": {"a b": "SELECT * FROM devices"}}),
            ),
            "metrics.queries.a b",
        ),
        (
            with("metrics", json!({"queries": {"a": "SELECT FROM"}})),
            "metrics.queries.a",
        ),
        (
            with(
                "metrics",
                json!({"queries": {"a": "SELECT COUNT() FROM devices"}}),
            ),
            "metrics.queries.a",
        ),
        (
            with(
                "metrics",
                json!({"queries": {"a": "SELECT * FROM devices.jobs"}}),
            ),
            "metrics.queries.a",
        ),
        (
            with(
                "metrics",
                json!({"queries": {"a": "SELECT TOP 1 * FROM devices"}}),
            ),
            "metrics.queries.a",
        ),
        (
            with(
                "metrics",
                json!({"queries": {
            "a": "SELECT * FROM devices", "b": "SELECT * FROM devices", "c": "SELECT * FROM devices",
            "d": "SELECT * FROM devices", "e": "SELECT * FROM devices", "f": "SELECT * FROM devices"}}),
            ),
            "metrics.queries",
        ),
    ];
    for (v, field) in cases {
        let e = err(v.clone());
        assert_eq!(e.field(), field, "{v}: {e}");
        assert!(
            e.to_string()
                .contains(field.split('.').next().unwrap_or(field)),
            "{e}"
        );
    }
}

#[test]
fn ids_take_every_allowed_character_and_star_targets_every_twin() {
    let cfg = Configuration::from_json(&json!({
        "id": "a-+%_*!'9", "targetCondition": " * ",
        "content": {"deviceContent": {"properties.desired": {"a": 1, "b": {"c": 2}}}},
    }))
    .unwrap();
    assert!(cfg.target.is_none());
    assert!(cfg.targets(&Twin::new("d".parse().unwrap())));
    assert_eq!(cfg.content.paths().len(), 2);
    assert_eq!(cfg.priority, 0);
}

#[test]
fn an_update_keeps_id_content_and_creation_and_moves_the_etag() {
    let t0 = Timestamp::from_unix_secs(100);
    let cfg = Configuration::from_json(&base()).unwrap().created(t0);
    let mut v = base();
    v["priority"] = json!(50);
    v["labels"] = json!({"k": "v"});
    let next = cfg
        .updated(
            Configuration::from_json(&v).unwrap(),
            Timestamp::from_unix_secs(200),
        )
        .unwrap();
    assert_eq!(next.priority, 50);
    assert_eq!(next.created_time_utc, t0);
    assert_eq!(next.last_updated_time_utc, Timestamp::from_unix_secs(200));
    assert_ne!(next.etag, cfg.etag);
    let third = next
        .updated(
            Configuration::from_json(&v).unwrap(),
            Timestamp::from_unix_secs(300),
        )
        .unwrap();
    assert_ne!(third.etag, next.etag);

    let mut changed = base();
    changed["content"] = json!({"deviceContent": {"properties.desired.fan": {"speed": 4}}});
    let e = cfg
        .updated(Configuration::from_json(&changed).unwrap(), t0)
        .unwrap_err();
    assert!(
        matches!(e, ConfigurationError::ImmutableContent { .. }),
        "{e}"
    );
    let mut other = base();
    other["id"] = json!("cfg-2");
    let e = cfg
        .check_update(&Configuration::from_json(&other).unwrap())
        .unwrap_err();
    assert_eq!(e.field(), "id");
}

#[test]
fn applied_status_is_found_whatever_its_case() {
    assert_eq!(
        applied_in(&json!({"a": {"status": "targeted"}, "b": {"status": "Applied"}})),
        Some("b")
    );
    assert_eq!(applied_in(&json!({})), None);
    assert_eq!(applied_in(&json!(null)), None);
}

#[test]
fn a_winner_that_stays_leaves_desired_alone_and_a_lost_target_removes_its_paths() {
    let a = Configuration::from_json(&base())
        .unwrap()
        .created(Timestamp::EPOCH);
    let statuses = json!({"cfg-1": {"status": "applied"}});
    let desired = json!({"fan": {"speed": 9}});
    let same = plan_twin(&statuses, || desired.clone(), &[a.contender()], |_| None);
    assert_eq!(same.desired, None);
    assert_eq!(same.statuses, statuses);
    let gone = plan_twin(&statuses, || desired.clone(), &[], |_| Some(&a.content));
    assert_eq!(gone.desired, Some(json!({"fan": null})));
    assert_eq!(gone.statuses, json!({}));
    assert_eq!(gone.applied, None);
}

#[test]
fn status_comparisons_in_queries_ignore_case() {
    let twin: Twin = serde_json::from_value(json!({
        "deviceId": "d1", "configurations": {"cfg-1": {"status": "applied"}}}))
    .unwrap();
    for q in [
        "SELECT * FROM devices WHERE configurations.[[cfg-1]].status = 'Applied'",
        "SELECT * FROM devices WHERE configurations.[[cfg-1]].status = 'applied'",
        "SELECT * FROM devices WHERE 'APPLIED' = configurations.[[cfg-1]].status",
        "SELECT * FROM devices WHERE configurations.[[cfg-1]].status IN ['Applied', 'x']",
    ] {
        assert!(crate::query::Query::parse(q).unwrap().matches(&twin), "{q}");
    }
    let q = "SELECT * FROM devices WHERE configurations.[[cfg-1]].status = 'Targeted'";
    assert!(!crate::query::Query::parse(q).unwrap().matches(&twin));
    // a twin written elsewhere with IoT Hub's capitalised spelling matches as well
    let upper: Twin = serde_json::from_value(json!({
        "deviceId": "d2", "configurations": {"cfg-1": {"status": "Applied"}}}))
    .unwrap();
    for q in [
        "SELECT * FROM devices WHERE configurations.[[cfg-1]].status = 'applied'",
        "SELECT * FROM devices WHERE configurations.[[cfg-1]].status != 'targeted'",
        "SELECT * FROM devices WHERE configurations.[[cfg-1]].status IN ['APPLIED']",
    ] {
        assert!(
            crate::query::Query::parse(q).unwrap().matches(&upper),
            "{q}"
        );
    }
}

fn content_of(paths: &[(Vec<&str>, Value)]) -> DeviceContent {
    let raw = paths
        .iter()
        .map(|(p, v)| (format!("properties.desired.{}", p.join(".")), v.clone()))
        .collect::<serde_json::Map<_, _>>();
    let cfg = Configuration::from_json(&json!({
        "id": "x", "targetCondition": "*", "content": {"deviceContent": raw}}));
    cfg.map(|c| c.content).unwrap_or_default()
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..5).prop_map(Value::from),
        Just(json!({"k": 1})),
        Just(json!({"k": 2, "j": {"z": true}})),
        Just(Value::Null),
    ]
}

fn seg() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("k")]
}

fn paths() -> impl Strategy<Value = Vec<(Vec<&'static str>, Value)>> {
    prop::collection::vec((prop::collection::vec(seg(), 1..3), leaf()), 0..4)
}

fn desired_doc() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(seg(), leaf(), 0..3).prop_map(|m| {
        let v = json!(m);
        let mut clean = json!({});
        merge_value(&mut clean, &v);
        clean
    })
}

fn read<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |at, s| at.get(s))
}

proptest! {
    /// The winner precedes every other contender, whatever their order.
    #[test]
    fn the_winner_is_the_greatest_in_any_order(
        list in prop::collection::vec((0i64..3, 0i64..3, 0usize..4), 1..6),
        rotate in 0usize..6,
    ) {
        let content = DeviceContent::default();
        let ids = ["a", "b", "c", "d"];
        let mut cs: Vec<Contender<'_>> = list.iter().map(|(p, t, i)| Contender {
            id: ids[*i], priority: *p, created: Timestamp::from_unix_secs(*t), content: &content,
        }).collect();
        let w = winner(&cs).unwrap();
        for c in &cs {
            prop_assert!((w.priority, w.created) >= (c.priority, c.created));
            if (w.priority, w.created) == (c.priority, c.created) {
                prop_assert!(w.id <= c.id);
            }
        }
        let n = cs.len();
        cs.rotate_left(rotate % n);
        let again = winner(&cs).unwrap();
        prop_assert_eq!((again.id, again.priority, again.created), (w.id, w.priority, w.created));
    }

    /// Applying the change as a merge patch leaves every set path at its value, every removed
    /// path that is not set again absent, and leaves the rest alone.
    #[test]
    fn the_desired_change_does_what_it_says(
        desired in desired_doc(),
        removed in paths(),
        set in paths(),
    ) {
        let old = content_of(&removed);
        let new = content_of(&set);
        let removed: Vec<&DesiredPath> = old.paths().iter().map(|(p, _)| p).collect();
        let patch = desired_change(&desired, &removed, new.paths());
        let mut after = desired.clone();
        if let Some(p) = &patch {
            merge_value(&mut after, p);
        } else {
            prop_assert!(new.paths().iter().all(|(p, v)| read(&desired, p) == Some(v) || (v.is_null() && read(&desired, p).is_none())));
        }
        for (p, v) in new.paths() {
            let mut expect = json!({});
            merge_value(&mut expect, v);
            match v {
                Value::Null => prop_assert!(read(&after, p).is_none()),
                Value::Object(_) => prop_assert_eq!(read(&after, p), Some(&expect)),
                _ => prop_assert_eq!(read(&after, p), Some(v)),
            }
        }
        for p in &removed {
            let covered = new.paths().iter().any(|(q, _)| p.starts_with(q) || q.starts_with(p));
            if !covered {
                prop_assert!(read(&after, p).is_none(), "{:?} still in {}", p, after);
            }
        }
        // untouched top-level members stay
        if let Some(m) = desired.as_object() {
            for (k, v) in m {
                let touched = removed.iter().any(|p| p[0] == *k) || new.paths().iter().any(|(q, _)| q[0] == *k);
                if !touched {
                    prop_assert_eq!(after.get(k), Some(v));
                }
            }
        }
    }
}

fn with_metric(policy: Value) -> Value {
    let mut v = with("rolloutPolicy", policy);
    v["metrics"] = json!({"queries": {"failed":
        "SELECT deviceId FROM devices WHERE properties.reported.update.state = 'failed'"}});
    v
}

#[test]
fn a_rollout_policy_round_trips_with_its_metric_criteria() {
    let v = with_metric(json!({
        "rate": {"maxPerMinute": 10},
        "maintenanceWindows": [{"daysOfWeek": ["sat"], "startTime": "02:00", "durationMinutes": 60}],
        "gate": "properties.reported.battery > 30",
        "abort": {"criteria": [
            {"failureType": "timedOut", "thresholdPercentage": 10, "minFinishedDevices": 5},
            {"metric": "failed", "thresholdPercentage": 5, "minAppliedDevices": 20},
        ]},
        "successCondition": "properties.reported.update.state = 'done'",
    }));
    let cfg = Configuration::from_json(&v).unwrap();
    let r = cfg.rollout.clone().unwrap();
    assert_eq!(r.metric_aborts.len(), 1);
    assert_eq!(r.policy.abort.as_ref().unwrap().criteria.len(), 1);
    let again = Configuration::from_json(&cfg.to_json()).unwrap();
    assert_eq!(again.rollout, cfg.rollout);
    // no policy: no member
    let plain = Configuration::from_json(&base()).unwrap();
    assert!(plain.rollout.is_none());
    assert!(plain.to_json().get("rolloutPolicy").is_none());
}

#[test]
fn a_bad_rollout_policy_is_refused_naming_the_field() {
    let cases = [
        (with_metric(json!([])), "rolloutPolicy"),
        (
            with_metric(json!({"retries": {"failed": 1}})),
            "rolloutPolicy.retries",
        ),
        (
            with_metric(json!({"timeout": {"inProgressTimeoutSeconds": 5}})),
            "rolloutPolicy.timeout",
        ),
        (with_metric(json!({"bogus": 1})), "rolloutPolicy"),
        (
            with_metric(json!({"rate": {"maxPerMinute": 0}})),
            "rolloutPolicy.rate.maxPerMinute",
        ),
        (
            with_metric(json!({"gate": "tags.x ="})),
            "rolloutPolicy.gate",
        ),
        (
            with_metric(
                json!({"abort": {"criteria": [{"metric": "nope", "thresholdPercentage": 5}]}}),
            ),
            "rolloutPolicy.abort.criteria[0].metric",
        ),
        (
            with_metric(
                json!({"abort": {"criteria": [{"metric": "failed", "thresholdPercentage": 101}]}}),
            ),
            "rolloutPolicy.abort.criteria[0].thresholdPercentage",
        ),
        (
            with_metric(json!({"abort": {"criteria": [
                {"metric": "failed", "thresholdPercentage": 1, "minAppliedDevices": 0}]}})),
            "rolloutPolicy.abort.criteria[0].minAppliedDevices",
        ),
        (
            with_metric(json!({"abort": {"criteria": [
                {"metric": "failed", "thresholdPercentage": 1, "failureType": "any"}]}})),
            "rolloutPolicy.abort.criteria[0].failureType",
        ),
    ];
    for (v, field) in cases {
        assert_eq!(err(v.clone()).field(), field, "{v}");
    }
}

#[test]
fn a_metric_criterion_holds_above_its_share_of_the_applied_twins() {
    let cfg = Configuration::from_json(&with_metric(json!({"abort": {"criteria": [
        {"metric": "failed", "thresholdPercentage": 5, "minAppliedDevices": 20}]}})))
    .unwrap();
    let c = &cfg.rollout.unwrap().metric_aborts[0];
    assert!(!c.holds(19, 19), "below the minimum");
    assert!(!c.holds(1, 20), "exactly 5% is not more than 5%");
    assert!(c.holds(2, 20));
    assert!(c.holds(6, 100) && !c.holds(5, 100));
}
