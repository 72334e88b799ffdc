//! The OpenAPI document (`openapi/iot-dm.yaml` at the repository root) describes exactly the
//! routes the REST server serves, with the rights each needs.
//!
//! The YAML is read with a minimal line parser that relies on the document's layout: paths at
//! two spaces under `paths:`, operations at four, `x-rights` at six.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use iot_dm_service::rest;

fn document() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/iot-dm.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(METHOD, path) -> x-rights` for every operation under `paths:`.
fn operations(doc: &str) -> BTreeMap<(String, String), Option<String>> {
    let mut ops = BTreeMap::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    let mut op: Option<(String, String)> = None;
    for line in doc.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            let p = p
                .strip_suffix(':')
                .unwrap_or_else(|| panic!("path line {line:?}"));
            path = Some(p.to_string());
        } else if let Some(m) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let m = m
                .strip_suffix(':')
                .unwrap_or_else(|| panic!("operation line {line:?}"));
            let key = (m.to_ascii_uppercase(), path.clone().unwrap());
            assert!(ops.insert(key.clone(), None).is_none(), "{key:?} twice");
            op = Some(key);
        } else if let Some(r) = line.strip_prefix("      x-rights: ") {
            let key = op.clone().unwrap();
            ops.insert(key, Some(r.trim().to_string()));
        }
    }
    ops
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = document();
    assert!(doc.starts_with("openapi: 3."));
    let documented = operations(&doc);
    let served: BTreeMap<(String, String), String> = rest::routes()
        .into_iter()
        .map(|r| {
            (
                (r.method.to_string(), r.path.to_string()),
                r.need.to_string(),
            )
        })
        .collect();
    for (key, rights) in &served {
        match documented.get(key) {
            None => panic!("{key:?} is served but not in openapi/iot-dm.yaml"),
            Some(r) => assert_eq!(r.as_deref(), Some(rights.as_str()), "x-rights of {key:?}"),
        }
    }
    for key in documented.keys() {
        assert!(
            served.contains_key(key),
            "{key:?} is documented but not served"
        );
    }
    assert_eq!(documented.len(), served.len());
}

#[test]
fn api_versions_match() {
    let doc = document();
    for v in rest::API_VERSIONS {
        assert!(
            doc.contains(&format!("- \"{v}\"")),
            "{v} missing from the ApiVersion enum"
        );
    }
    let listed = doc.matches("          - \"20").count();
    assert_eq!(listed, rest::API_VERSIONS.len());
}
