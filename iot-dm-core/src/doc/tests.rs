use super::*;
use proptest::prelude::*;
use serde_json::json;
use serde_json::{Map, Value};

#[test]
fn round_trips_and_looks_up() {
    let v = json!({"b": [1, 2.5, "x", null, {"k": true}], "a": {"z": 1, "y": {"x": "deep"}}, "n": null, "e": {}});
    let d = Doc::from_value(&v).unwrap();
    assert_eq!(d.to_value(), v);
    assert_eq!(
        d.get_path(&["a", "y", "x"]).unwrap().value(),
        ValueRef::Str("deep")
    );
    assert_eq!(d.get_path(&["n"]).unwrap().value(), ValueRef::Null);
    assert!(d.get_path(&["a", "missing"]).is_none());
    assert!(d.get_path(&["b", "k"]).is_none());
    let keys: Vec<_> = d.root().members().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a", "b", "e", "n"]);
    assert_eq!(d.get_path(&["b"]).unwrap().elements().count(), 5);
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        v,
        "Serialize matches to_value"
    );
}

#[test]
fn rejects_non_objects() {
    assert_eq!(
        Doc::from_value(&json!([1])),
        Err(DocError::NotAnObject { found: "array" })
    );
    assert_eq!(
        Doc::empty().merge(&json!("x")),
        Err(DocError::NotAnObject { found: "string" })
    );
}

#[test]
fn merge_follows_rfc7386_examples() {
    // the examples of RFC 7386 appendix A whose target and patch are objects
    let cases = [
        (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
        (json!({"a":"b"}), json!({"a":null}), json!({})),
        (
            json!({"a":"b","b":"c"}),
            json!({"a":null}),
            json!({"b":"c"}),
        ),
        (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
        (
            json!({"a":{"b":"c"}}),
            json!({"a":{"b":"d","c":null}}),
            json!({"a":{"b":"d"}}),
        ),
        (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
        (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        (
            json!({}),
            json!({"a":{"bb":{"ccc":null}}}),
            json!({"a":{"bb":{}}}),
        ),
    ];
    for (target, patch, expected) in cases {
        let d = Doc::from_value(&target).unwrap().merge(&patch).unwrap();
        assert_eq!(d.to_value(), expected, "{target} + {patch}");
    }
}

#[test]
fn metadata_stamps_touched_nodes_only() {
    let t0 = Meta {
        last_updated: Timestamp::from_unix_secs(100),
        version: 1,
    };
    let t1 = Meta {
        last_updated: Timestamp::from_unix_secs(200),
        version: 2,
    };
    let d = Doc::from_value_with_meta(&json!({"a": {"x": 1, "y": 2}, "b": 3}), t0).unwrap();
    let d2 = d.merge_with_meta(&json!({"a": {"x": 5}}), t1).unwrap();
    assert_eq!(d2.root_meta(), Some(t1));
    assert_eq!(d2.get_path(&["a"]).unwrap().meta(), Some(t1));
    assert_eq!(d2.get_path(&["a", "x"]).unwrap().meta(), Some(t1));
    assert_eq!(d2.get_path(&["a", "y"]).unwrap().meta(), Some(t0));
    assert_eq!(d2.get_path(&["b"]).unwrap().meta(), Some(t0));
    // a delete touches the parent
    let d3 = d2.merge_with_meta(&json!({"a": {"y": null}}), t0).unwrap();
    assert_eq!(d3.get_path(&["a"]).unwrap().meta(), Some(t0));
    assert_eq!(d3.get_path(&["a", "x"]).unwrap().meta(), Some(t1));
}

fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-d]{1,2}", arb_json(3), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #[test]
    fn from_value_round_trips(v in arb_object()) {
        prop_assert_eq!(Doc::from_value(&v).unwrap().to_value(), v);
    }

    #[test]
    fn merge_agrees_with_reference_model(target in arb_object(), patch in arb_object()) {
        let mut expected = target.clone();
        merge_value(&mut expected, &patch);
        let got = Doc::from_value(&target).unwrap().merge(&patch).unwrap();
        prop_assert_eq!(got.to_value(), expected);
    }
}

#[test]
fn strings_of_every_short_length_round_trip() {
    // up to 8 bytes live inside the node record, longer ones next to the keys
    let mut m = Map::new();
    for len in 0..=12 {
        m.insert(format!("s{len:02}"), json!("x".repeat(len)));
    }
    for (k, s) in [("u2", "é"), ("u6", "日本"), ("u8", "ééé€"), ("u9", "€€€")] {
        m.insert(k.to_string(), json!(s));
    }
    let v = Value::Object(m);
    let d = Doc::from_value(&v).unwrap();
    assert_eq!(d.to_value(), v);
    assert_eq!(d.get_path(&["u9"]).unwrap().value(), ValueRef::Str("€€€"));
    assert_eq!(
        d.get_path(&["s08"]).unwrap().value(),
        ValueRef::Str("xxxxxxxx")
    );
    assert_eq!(d.get_path(&["s00"]).unwrap().value(), ValueRef::Str(""));
}

#[test]
fn numbers_and_literals_keep_their_exact_values() {
    let v = json!({"min": i64::MIN, "max": i64::MAX, "f": -0.5, "e": 1.5e300,
                   "t": true, "no": false, "n": null, "zero": 0});
    let d = Doc::from_value(&v).unwrap();
    assert_eq!(d.to_value(), v);
    // integers past the i64 range are kept as floats
    let d = d.merge(&json!({"big": u64::MAX})).unwrap();
    assert_eq!(
        d.get_path(&["min"]).unwrap().value(),
        ValueRef::Int(i64::MIN)
    );
    assert_eq!(
        d.get_path(&["max"]).unwrap().value(),
        ValueRef::Int(i64::MAX)
    );
    assert_eq!(
        d.get_path(&["big"]).unwrap().value(),
        ValueRef::Float(u64::MAX as f64)
    );
    assert_eq!(d.get_path(&["no"]).unwrap().value(), ValueRef::Bool(false));
}

#[test]
fn lookups_in_large_objects_use_every_key() {
    // more members than the linear search handles, keys of many lengths and shared prefixes
    let mut m = Map::new();
    for i in 0..200 {
        m.insert(format!("k{i}"), json!(i));
        m.insert(format!("abcdefgh{i}"), json!({"i": i}));
    }
    m.insert(String::new(), json!("empty key"));
    let v = Value::Object(m);
    let d = Doc::from_value(&v).unwrap();
    assert_eq!(d.to_value(), v);
    for i in 0..200 {
        assert_eq!(
            d.get_path(&[format!("k{i}")]).unwrap().value(),
            ValueRef::Int(i)
        );
        let n = d
            .get_path(&[format!("abcdefgh{i}"), "i".to_string()])
            .unwrap();
        assert_eq!(n.value(), ValueRef::Int(i));
    }
    assert_eq!(
        d.get_path(&[""]).unwrap().value(),
        ValueRef::Str("empty key")
    );
    for absent in ["k", "k200", "abcdefgh", "abcdefgh1999", "l0", "a"] {
        assert!(d.get_path(&[absent]).is_none(), "{absent}");
    }
    let keys: Vec<&str> = d.root().members().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
}

#[test]
fn lookups_in_small_objects_compare_whole_keys() {
    // same lengths, same first 8 bytes, keys at the very end of the buffer
    let d = Doc::from_value(&json!({"abcdefgh1": 1, "abcdefgh2": 2, "b": 3, "c": 4})).unwrap();
    assert_eq!(
        d.get_path(&["abcdefgh2"]).unwrap().value(),
        ValueRef::Int(2)
    );
    assert_eq!(
        d.get_path(&["abcdefgh1"]).unwrap().value(),
        ValueRef::Int(1)
    );
    assert!(d.get_path(&["abcdefgh3"]).is_none());
    assert_eq!(d.get_path(&["c"]).unwrap().value(), ValueRef::Int(4));
    assert!(d.get_path(&["d"]).is_none());
    let single = Doc::from_value(&json!({"a": 1})).unwrap();
    assert_eq!(single.get_path(&["a"]).unwrap().value(), ValueRef::Int(1));
    assert!(single.get_path(&["b"]).is_none());
    assert!(single.get_path(&["a", "b"]).is_none());
    assert!(single.root().get("a").unwrap().get("a").is_none());
}

#[test]
fn empty_documents_are_shared_and_small() {
    let e = Doc::empty();
    assert!(e.is_empty());
    assert!(!e.has_meta());
    assert_eq!(e, Doc::default());
    assert_eq!(e.to_value(), json!({}));
    assert!(e.heap_size() <= 64, "{}", e.heap_size());
    assert_eq!(Doc::from_value(&json!({})).unwrap(), e);
    let bigger = Doc::from_value(&json!({"a": "a string longer than eight bytes"})).unwrap();
    assert!(bigger.heap_size() > e.heap_size() + 32);
}

#[test]
fn overlong_keys_are_refused() {
    let key = "k".repeat(layout::MAX_KEY + 1);
    let mut m = Map::new();
    m.insert(key, json!(1));
    assert_eq!(
        Doc::from_value(&Value::Object(m)),
        Err(DocError::KeyTooLong {
            len: layout::MAX_KEY + 1,
            limit: layout::MAX_KEY
        })
    );
}

fn stamp(secs: i64, version: u64) -> Meta {
    Meta {
        last_updated: Timestamp::from_unix_secs(secs),
        version,
    }
}

#[test]
fn many_distinct_metadata_values_are_kept() {
    // more distinct values than a one-byte, then a two-byte, index can address
    for n in [300usize, 70_000] {
        let mut m = Map::new();
        for i in 0..n {
            m.insert(format!("k{i}"), json!(i));
        }
        let d = Doc::from_value(&Value::Object(m)).unwrap();
        let d = d.with_meta(stamp(0, 0), |path| {
            let i: i64 = path.first()?.strip_prefix('k')?.parse().ok()?;
            Some(stamp(i, i as u64 * 3))
        });
        for i in [0, 1, 255, 256, 299, n - 1] {
            let got = d.get_path(&[format!("k{i}")]).unwrap().meta();
            assert_eq!(got, Some(stamp(i as i64, i as u64 * 3)), "{n} {i}");
        }
        assert_eq!(d.root_meta(), Some(stamp(0, 0)));
        // a merge copies them
        let d2 = d.merge(&json!({"new": 1})).unwrap();
        assert_eq!(
            d2.get_path(&[format!("k{}", n - 1)]).unwrap().meta(),
            Some(stamp(n as i64 - 1, (n as u64 - 1) * 3))
        );
        assert_eq!(d2.get_path(&["new"]).unwrap().meta(), Some(Meta::default()));
    }
}

#[test]
fn with_meta_replaces_existing_metadata() {
    let d = Doc::from_value_with_meta(&json!({"a": {"b": [1, {"c": 2}]}}), stamp(1, 1)).unwrap();
    let d2 = d.with_meta(stamp(2, 2), |path| (path == ["a"]).then_some(stamp(3, 3)));
    assert_eq!(d2.root_meta(), Some(stamp(2, 2)));
    assert_eq!(d2.get_path(&["a"]).unwrap().meta(), Some(stamp(3, 3)));
    let b = d2.get_path(&["a", "b"]).unwrap();
    assert_eq!(b.meta(), Some(stamp(3, 3)));
    for e in b.elements() {
        assert_eq!(e.meta(), Some(stamp(3, 3)));
    }
    assert_eq!(d2, d, "content is unchanged");
    assert_eq!(d.get_path(&["a"]).unwrap().meta(), Some(stamp(1, 1)));
}

/// Every path to an object member in `v`, with its value.
fn member_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.clone());
            out.push((prefix.clone(), child.clone()));
            member_paths(child, prefix, out);
            prefix.pop();
        }
    }
}

proptest! {
    #[test]
    fn lookups_agree_with_the_json(v in arb_object(), probe in "[a-e]{0,3}") {
        let d = Doc::from_value(&v).unwrap();
        let mut paths = Vec::new();
        member_paths(&v, &mut Vec::new(), &mut paths);
        for (path, expected) in &paths {
            let n = d.get_path(path);
            prop_assert_eq!(n.map(|n| n.to_value()), Some(expected.clone()));
            prop_assert_eq!(n.map(|n| n.key()), path.last().map(String::as_str));
        }
        prop_assert_eq!(d.get_path(&[&probe]).map(|n| n.to_value()), v.get(&probe).cloned());
    }

    #[test]
    fn stamped_merges_keep_untouched_metadata(target in arb_object(), patch in arb_object()) {
        let before = Doc::from_value_with_meta(&target, stamp(1, 1)).unwrap();
        let after = before.merge_with_meta(&patch, stamp(2, 2)).unwrap();
        prop_assert_eq!(after.root_meta(), Some(stamp(2, 2)));
        let mut paths = Vec::new();
        member_paths(&after.to_value(), &mut Vec::new(), &mut paths);
        for (path, _) in &paths {
            // a node the patch does not mention keeps the stamp of the original document
            let mut p = &patch;
            let mut touched = true;
            for seg in path {
                match p.get(seg) {
                    Some(next) => p = next,
                    None => {
                        touched = false;
                        break;
                    }
                }
            }
            let expected = if touched { stamp(2, 2) } else { stamp(1, 1) };
            prop_assert_eq!(after.get_path(path).unwrap().meta(), Some(expected), "{:?}", path);
        }
    }
}

#[test]
fn uniform_metadata_needs_no_index() {
    let mut m = Map::new();
    for i in 0..20 {
        m.insert(format!("k{i}"), json!(i));
    }
    let v = Value::Object(m);
    let plain = Doc::from_value(&v).unwrap();
    let stamped = Doc::from_value_with_meta(&v, stamp(5, 5)).unwrap();
    // the region's header and the one value
    assert_eq!(stamped.heap_size(), plain.heap_size() + 8 + 16);
    assert_eq!(stamped.get_path(&["k7"]).unwrap().meta(), Some(stamp(5, 5)));
    // two values: a one-byte index per node (21 nodes)
    let touched = stamped
        .merge_with_meta(&json!({"k3": 0}), stamp(6, 6))
        .unwrap();
    assert_eq!(touched.heap_size(), plain.heap_size() + 8 + 32 + 21);
    assert_eq!(touched.get_path(&["k3"]).unwrap().meta(), Some(stamp(6, 6)));
    assert_eq!(touched.get_path(&["k4"]).unwrap().meta(), Some(stamp(5, 5)));
    assert_eq!(touched.root_meta(), Some(stamp(6, 6)));
}

proptest! {
    #[test]
    fn compact_form_round_trips(target in arb_object(), patch in arb_object(), secs in 0i64..1000) {
        let plain = Doc::from_value(&target).unwrap();
        let stamped = plain.merge_with_meta(&patch, stamp(secs, 7)).unwrap();
        for doc in [&plain, &stamped, &Doc::empty()] {
            let back = Doc::from_bytes(doc.as_bytes()).unwrap();
            prop_assert_eq!(back.as_bytes(), doc.as_bytes());
            prop_assert_eq!(back.to_value(), doc.to_value());
        }
        let mut paths = Vec::new();
        member_paths(&stamped.to_value(), &mut Vec::new(), &mut paths);
        let back = Doc::from_bytes(stamped.as_bytes()).unwrap();
        for (path, _) in &paths {
            prop_assert_eq!(back.get_path(path).unwrap().meta(), stamped.get_path(path).unwrap().meta());
        }
    }

    #[test]
    fn damaged_compact_forms_are_refused_or_harmless(
        v in arb_object(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let doc = Doc::from_value_with_meta(&v, stamp(1, 1)).unwrap();
        let bytes = doc.as_bytes();
        let cut = cut.index(bytes.len());
        prop_assert!(Doc::from_bytes(&bytes[..cut]).is_err());
        let mut damaged = bytes.to_vec();
        for (at, x) in flips {
            let i = at.index(damaged.len());
            damaged[i] ^= x | 1;
        }
        // whatever is accepted can be walked without panicking or looping
        if let Ok(d) = Doc::from_bytes(&damaged) {
            let _ = d.to_value();
            let _ = serde_json::to_vec(&d);
        }
    }
}

#[test]
fn compact_form_checks_name_the_problem() {
    let doc = Doc::from_value(&json!({"a": {"b": [1, "long string value"]}})).unwrap();
    let bytes = doc.as_bytes().to_vec();
    assert!(matches!(
        Doc::from_bytes(&bytes[..HEADER - 1]),
        Err(DocError::Malformed {
            problem: "shorter than the header"
        })
    ));
    // a block pointing back at the root would loop
    let mut cyclic = bytes.clone();
    let root = layout::rec_at(&cyclic, 0);
    let first_child = root.lo() as usize;
    let mut child = layout::rec_at(&cyclic, first_child);
    child.payload = root.payload;
    layout::put_rec(&mut cyclic, first_child, &child);
    assert!(Doc::from_bytes(&cyclic).is_err());
    // a wrong node count
    let mut counted = bytes.clone();
    layout::put_u32(&mut counted, layout::NODE_COUNT, 99);
    assert!(Doc::from_bytes(&counted).is_err());
}
