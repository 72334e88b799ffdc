use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::clock::{Clock, ManualClock, Timestamp};

fn base() -> Value {
    json!({
        "id": "update-failures",
        "condition": "properties.reported.update.state = 'failed'",
        "scope": {"configuration": "fw-2-1"},
        "threshold": {"percent": 5},
        "forSeconds": 60,
        "severity": "critical",
        "description": "updates fail",
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut v = base();
    if value.is_null() {
        v.as_object_mut().map(|m| m.remove(field));
    } else {
        v[field] = value;
    }
    v
}

fn err(v: Value) -> AlertRuleError {
    match AlertRule::from_json(&v) {
        Ok(r) => panic!("accepted {v}: {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_rule_reads_and_writes_back() {
    let r = AlertRule::from_json(&base()).unwrap();
    assert_eq!(r.threshold, Threshold::Percent(5.0));
    assert_eq!(r.for_seconds, 60);
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(AlertRule::from_json(&r.to_json()).unwrap(), r);
    let all = AlertRule::from_json(&with("scope", Value::Null)).unwrap();
    assert_eq!(all.scope, Scope::All);
    assert!(all.to_json().get("scope").is_none());
    let mut job = with("scope", json!({"job": "fw-rollout"}));
    job["condition"] = json!("status = 'failed'");
    let job = AlertRule::from_json(&job).unwrap();
    assert_eq!(job.scope, Scope::Job("fw-rollout".into()));
    let zero = AlertRule::from_json(&with("forSeconds", Value::Null)).unwrap();
    assert_eq!(zero.for_seconds, 0);
}

#[test]
fn every_bad_field_is_named() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (with("id", Value::Null), "id", "required"),
        (with("id", json!("Bad")), "id", "not allowed"),
        (with("id", json!("a".repeat(129))), "id", "limit is 128"),
        (with("id", json!(7)), "id", "expected a string"),
        (with("condition", Value::Null), "condition", "required"),
        (
            with("condition", json!("state = ")),
            "condition",
            "not a valid",
        ),
        (with("scope", json!({"group": "x"})), "scope", "not a scope"),
        (
            with("scope", json!({"configuration": "X"})),
            "scope.configuration",
            "invalid",
        ),
        (
            with("scope", json!({"job": 3})),
            "scope.job",
            "expected an id",
        ),
        (
            with("scope", json!({"job": "a", "configuration": "b"})),
            "scope",
            "exactly one",
        ),
        (with("threshold", Value::Null), "threshold", "required"),
        (
            with("threshold", json!({"count": -1})),
            "threshold.count",
            "whole number",
        ),
        (
            with("threshold", json!({"percent": 100})),
            "threshold.percent",
            "0 <= p < 100",
        ),
        (
            with("threshold", json!({"percent": -0.5})),
            "threshold.percent",
            "0 <= p < 100",
        ),
        (
            with("threshold", json!({"ratio": 1})),
            "threshold",
            "not a threshold",
        ),
        (with("forSeconds", json!(1.5)), "forSeconds", "whole number"),
        (
            with("forSeconds", json!(MAX_FOR_SECONDS + 1)),
            "forSeconds",
            "limit is 604800",
        ),
        (with("severity", Value::Null), "severity", "required"),
        (with("severity", json!("fatal")), "severity", "not one of"),
        (
            with("description", json!("x".repeat(1025))),
            "description",
            "limit is 1024",
        ),
        (with("colour", json!("red")), "colour", "unknown field"),
        (json!([1]), "rule", "JSON object"),
    ];
    for (v, field, text) in cases {
        let e = err(v.clone());
        assert_eq!(e.field(), field, "{v}: {e}");
        assert!(e.to_string().contains(text), "{v}: {e}");
    }
}

#[test]
fn the_condition_error_names_its_position() {
    let e = err(with("condition", json!("properties.reported.x = ")));
    assert!(matches!(e, AlertRuleError::Condition { .. }));
    assert!(e
        .to_string()
        .starts_with("condition is not a valid condition"));
}

#[test]
fn thresholds_are_strict() {
    let c = |matching, scope| Counts { matching, scope };
    assert!(!Threshold::Count(5).exceeded(c(5, 10)));
    assert!(Threshold::Count(5).exceeded(c(6, 10)));
    assert!(!Threshold::Percent(0.0).exceeded(c(0, 0)));
    assert!(Threshold::Percent(0.0).exceeded(c(1, 1000)));
    assert!(!Threshold::Percent(5.0).exceeded(c(1, 20)));
    assert!(Threshold::Percent(5.0).exceeded(c(2, 20)));
}

#[test]
fn raise_waits_for_seconds_and_clear_waits_too() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_000));
    let secs = |s| std::time::Duration::from_secs(s);
    let mut ev = Evaluator::with(Threshold::Count(0), 30);
    let bad = Counts {
        matching: 1,
        scope: 4,
    };
    let good = Counts {
        matching: 0,
        scope: 4,
    };
    assert_eq!(ev.update(bad, clock.now()), None);
    assert_eq!(ev.wake_at(), Some(Timestamp::from_unix_secs(1_030)));
    clock.advance(secs(29));
    assert_eq!(ev.tick(clock.now()), None);
    // a dip resets the wait
    assert_eq!(ev.update(good, clock.now()), None);
    assert_eq!(ev.phase(), Phase::Normal);
    assert_eq!(ev.wake_at(), None);
    assert_eq!(ev.update(bad, clock.now()), None);
    clock.advance(secs(30));
    let raised = ev.tick(clock.now());
    assert_eq!(
        raised,
        Some(Transition::Raised {
            at: Timestamp::from_unix_secs(1_059),
            counts: bad
        })
    );
    assert!(ev.is_active());
    assert_eq!(ev.wake_at(), None);
    clock.advance(secs(5));
    assert_eq!(ev.update(good, clock.now()), None);
    assert!(matches!(ev.phase(), Phase::Clearing { .. }));
    assert!(ev.is_active());
    clock.advance(secs(10));
    // back above the threshold: still the same alert
    assert_eq!(ev.update(bad, clock.now()), None);
    assert_eq!(
        ev.phase(),
        Phase::Raised {
            at: Timestamp::from_unix_secs(1_059)
        }
    );
    assert_eq!(ev.update(good, clock.now()), None);
    clock.advance(secs(30));
    assert_eq!(
        ev.tick(clock.now()),
        Some(Transition::Cleared {
            at: Timestamp::from_unix_secs(1_104),
            counts: good,
            raised_at: Timestamp::from_unix_secs(1_059),
        })
    );
    assert_eq!(ev.phase(), Phase::Normal);
}

#[test]
fn a_resumed_alert_clears_on_its_next_update() {
    let t = Timestamp::from_unix_secs(5);
    let mut ev = Evaluator::with(Threshold::Count(3), 0).resume_raised(t);
    assert!(ev.is_active());
    let cleared = ev.update(
        Counts {
            matching: 0,
            scope: 9,
        },
        Timestamp::from_unix_secs(9),
    );
    assert!(matches!(cleared, Some(Transition::Cleared { raised_at, .. }) if raised_at == t));
}

#[test]
fn an_alert_record_acknowledges_once_and_round_trips() {
    let rule = AlertRule::from_json(&base()).unwrap();
    let t = Timestamp::from_unix_secs(100);
    let mut a = Alert::raised(
        "a-1",
        &rule,
        t,
        Counts {
            matching: 6,
            scope: 100,
        },
    );
    assert_eq!(Alert::from_json(&a.to_json()), Some(a.clone()));
    assert_eq!(a.to_json()["clearedAt"], Value::Null);
    assert!(a.acknowledge("alice", t));
    assert!(!a.acknowledge("bob", Timestamp::from_unix_secs(200)));
    assert_eq!(a.acknowledged, Some((t, "alice".to_string())));
    a.clear(
        Timestamp::from_unix_secs(300),
        Counts {
            matching: 1,
            scope: 100,
        },
    );
    a.clear(Timestamp::from_unix_secs(400), Counts::default());
    assert_eq!(a.cleared.map(|c| c.0), Some(Timestamp::from_unix_secs(300)));
    assert_eq!(a.to_json()["state"], json!("cleared"));
    assert_eq!(Alert::from_json(&a.to_json()), Some(a));
    assert_eq!(Alert::from_json(&json!({"id": "x"})), None);
    assert_eq!(AlertState::parse("active"), Some(AlertState::Active));
}

proptest! {
    /// Raise only after the rule held, without a break, for forSeconds; clear only after it
    /// failed, without a break, for forSeconds; raises and clears alternate; and a raise or
    /// clear that is due is never missed by a caller that ticks at wake_at.
    #[test]
    fn raise_and_clear_only_after_holding_for_seconds(
        hold in 0u64..20,
        steps in prop::collection::vec((0u64..15, 0u64..6, any::<bool>()), 1..60),
    ) {
        let threshold = Threshold::Count(2);
        let mut ev = Evaluator::with(threshold, hold);
        let mut now = Timestamp::from_unix_secs(0);
        // when the condition last switched (holding or failing), by the updates fed
        let mut switched = now;
        let mut holding = false;
        let mut active = false;
        let mut counts = Counts::default();
        let check = |t: Transition, switched: Timestamp, holding: bool, active: &mut bool| {
            match t {
                Transition::Raised { at, .. } => {
                    prop_assert!(holding && !*active);
                    prop_assert!(at.since(switched).as_secs() >= hold);
                    *active = true;
                }
                Transition::Cleared { at, .. } => {
                    prop_assert!(!holding && *active);
                    prop_assert!(at.since(switched).as_secs() >= hold);
                    *active = false;
                }
            }
            Ok(())
        };
        for (dt, matching, tick_only) in steps {
            let next = now.saturating_add(std::time::Duration::from_secs(dt));
            // a caller wakes the evaluator when it asks
            if let Some(w) = ev.wake_at() {
                if w <= next {
                    if let Some(t) = ev.tick(w) {
                        check(t, switched, holding, &mut active)?;
                    }
                }
            }
            now = next;
            let out = if tick_only {
                ev.tick(now)
            } else {
                counts = Counts { matching, scope: 5 };
                let h = threshold.exceeded(counts);
                if h != holding {
                    holding = h;
                    switched = now;
                }
                ev.update(counts, now)
            };
            if let Some(t) = out {
                check(t, switched, holding, &mut active)?;
            }
            prop_assert_eq!(ev.is_active(), active);
            // nothing due is left waiting
            let overdue = ev.wake_at().is_some_and(|w| w <= now);
            prop_assert!(!overdue);
            // settled: active exactly when the condition held long enough
            if now.since(switched).as_secs() >= hold {
                prop_assert_eq!(active, holding);
            }
            prop_assert_eq!(ev.counts(), counts);
        }
    }
}

fn twin(id: &str, state: &str, connected: bool) -> crate::twin::Twin {
    let mut t: crate::twin::Twin = serde_json::from_value(json!({
        "deviceId": id,
        "properties": {"reported": {"update": {"state": state}}},
    }))
    .unwrap();
    t.identity_mut().connection_state = if connected {
        crate::twin::ConnectionState::Connected
    } else {
        crate::twin::ConnectionState::Disconnected
    };
    t
}

#[test]
fn a_watch_raises_over_five_percent_of_its_scope_and_clears_on_recovery() {
    let rule = AlertRule::from_json(&base()).unwrap();
    let mut w = RuleWatch::new(rule);
    let t0 = Timestamp::from_unix_secs(0);
    let fleet: Vec<_> = (0..100)
        .map(|i| twin(&format!("d{i}"), "ok", true))
        .collect();
    for t in &fleet {
        assert_eq!(w.observe(&t.device_id, Some(t), true, t0), None);
    }
    // a device outside the scope never counts, failed or not
    let outside = twin("x", "failed", true);
    assert_eq!(
        w.observe(&outside.device_id, Some(&outside), false, t0),
        None
    );
    assert_eq!(
        w.counts(),
        Counts {
            matching: 0,
            scope: 100
        }
    );
    for t in &fleet[..5] {
        let failed = twin(t.device_id.as_str(), "failed", true);
        assert_eq!(w.observe(&failed.device_id, Some(&failed), true, t0), None);
    }
    // exactly 5%: not more than 5%
    assert_eq!(w.wake_at(), None);
    let sixth = twin("d5", "failed", true);
    assert_eq!(w.observe(&sixth.device_id, Some(&sixth), true, t0), None);
    assert_eq!(w.wake_at(), Some(Timestamp::from_unix_secs(60)));
    let at = Timestamp::from_unix_secs(60);
    assert_eq!(
        w.tick(at),
        Some(Transition::Raised {
            at,
            counts: Counts {
                matching: 6,
                scope: 100
            }
        })
    );
    // one recovers; a device leaving the scope also takes its match with it
    let t1 = Timestamp::from_unix_secs(70);
    assert_eq!(
        w.observe(&fleet[0].device_id, Some(&fleet[0]), true, t1),
        None
    );
    assert_eq!(w.observe(&sixth.device_id, Some(&sixth), false, t1), None);
    assert_eq!(
        w.counts(),
        Counts {
            matching: 4,
            scope: 99
        }
    );
    assert!(!w.is_matching(&sixth.device_id));
    let cleared = w.tick(Timestamp::from_unix_secs(130));
    assert!(matches!(cleared, Some(Transition::Cleared { raised_at, .. }) if raised_at == at));
}

#[test]
fn a_watch_sees_connection_state() {
    let rule = AlertRule::from_json(&json!({
        "id": "offline", "condition": "connectionState = 'Disconnected'",
        "threshold": {"count": 2}, "severity": "info",
    }))
    .unwrap();
    let mut w = RuleWatch::new(rule);
    let t = Timestamp::from_unix_secs(0);
    for i in 0..2 {
        let d = twin(&format!("d{i}"), "ok", false);
        assert_eq!(w.observe(&d.device_id, Some(&d), true, t), None);
    }
    let d = twin("d2", "ok", false);
    assert!(matches!(
        w.observe(&d.device_id, Some(&d), true, t),
        Some(Transition::Raised { .. })
    ));
    let back = twin("d2", "ok", true);
    assert!(matches!(
        w.observe(&back.device_id, Some(&back), true, t),
        Some(Transition::Cleared { .. })
    ));
}

proptest! {
    /// Kept device by device, the counts are those counted afresh over the fleet as it ends.
    #[test]
    fn a_watch_counts_what_a_fresh_count_finds(
        steps in prop::collection::vec((0usize..8, 0u8..4, any::<bool>(), any::<bool>()), 0..80),
    ) {
        let rule = AlertRule::from_json(&with("forSeconds", json!(0))).unwrap();
        let mut w = RuleWatch::new(rule.clone());
        // per device: its twin (None when deleted) and whether it is in scope
        let mut fleet: std::collections::BTreeMap<String, (Option<crate::twin::Twin>, bool)> =
            Default::default();
        for (i, (d, what, connected, in_scope)) in steps.into_iter().enumerate() {
            let id = format!("d{d}");
            let t = match what {
                0 => None,
                1 => Some(twin(&id, "failed", connected)),
                _ => Some(twin(&id, "ok", connected)),
            };
            let now = Timestamp::from_unix_secs(i as i64);
            let dev = crate::identity::DeviceId::new(id.clone()).unwrap();
            w.observe(&dev, t.as_ref(), in_scope, now);
            fleet.insert(id, (t, in_scope));
        }
        let counted = fleet.values().filter(|(t, s)| *s && t.is_some());
        let scope = counted.clone().count() as u64;
        let matching = counted
            .filter(|(t, _)| t.as_ref().is_some_and(|t| rule.condition.matches(t)))
            .count() as u64;
        prop_assert_eq!(w.counts(), Counts { matching, scope });
        prop_assert_eq!(w.evaluator().is_active(), rule.threshold.exceeded(w.counts()));
    }
}
