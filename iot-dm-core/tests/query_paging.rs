//! Paging through a store that changes between pages.

use std::collections::{BTreeMap, HashMap, HashSet};

use iot_dm_core::query::{PageRequest, Query, QueryError, TwinKey, MAX_PAGE_SIZE};
use iot_dm_core::twin::Twin;
use serde_json::{json, Value};

type Store = BTreeMap<TwinKey, Twin>;

fn twin(id: &str, module: Option<&str>, group: u64) -> Twin {
    let mut v = json!({"deviceId": id, "tags": {"group": group}});
    if let Some(m) = module {
        v["moduleId"] = json!(m);
    }
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn insert(store: &mut Store, t: Twin) {
    store.insert(TwinKey::of(&t), t);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn page(
    q: &Query,
    store: &Store,
    req: &PageRequest,
    from_start: bool,
) -> Result<(Vec<Value>, Option<String>), QueryError> {
    let p = if from_start {
        // A naive store passes everything; the query skips to the resume point.
        q.page(store.values(), req)?
    } else {
        match q.resume_key(req)? {
            Some(k) => q.page(store.range(k..).map(|(_, t)| t), req)?,
            None => q.page(store.values(), req)?,
        }
    };
    Ok((p.items, p.continuation))
}

fn id_of(row: &Value) -> String {
    row["deviceId"].as_str().unwrap_or_default().to_string()
}

/// Pages through a store while twins are inserted, deleted and changed between pages: every
/// twin that matched at the start and was never touched comes back exactly once, and no twin
/// comes back twice.
fn run_mutating(seed: u64, from_start: bool) {
    let mut rng = Rng(seed);
    let mut store = Store::new();
    for i in 0..1000u64 {
        insert(&mut store, twin(&format!("d{i:05}"), None, i % 3));
    }
    let q = Query::parse("SELECT deviceId FROM devices WHERE tags.group = 0")
        .unwrap_or_else(|e| panic!("{e}"));
    let initially: HashSet<String> = store
        .values()
        .filter(|t| q.matches(t))
        .map(|t| t.device_id.to_string())
        .collect();
    let mut touched: HashSet<String> = HashSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut req = PageRequest::new().size(1 + rng.below(60) as usize);
    let mut pages = 0;
    loop {
        let (rows, token) = page(&q, &store, &req, from_start).unwrap_or_else(|e| panic!("{e}"));
        pages += 1;
        assert!(rows.len() <= req.page_size());
        for r in &rows {
            *seen.entry(id_of(r)).or_default() += 1;
        }
        let Some(token) = token else { break };
        // Mutate: inserts (some matching), deletes, and group changes anywhere in the key space.
        for _ in 0..rng.below(20) {
            let i = rng.below(1200);
            let id = format!("d{i:05}");
            match rng.below(3) {
                0 => {
                    insert(&mut store, twin(&format!("{id}x"), None, rng.below(2) * 3));
                    touched.insert(format!("{id}x"));
                }
                1 => {
                    store.retain(|k, _| k.device_id.as_str() != id);
                    touched.insert(id);
                }
                _ => {
                    if store.values().any(|t| t.device_id.as_str() == id) {
                        insert(&mut store, twin(&id, None, rng.below(3)));
                        touched.insert(id);
                    }
                }
            }
        }
        req = PageRequest::new()
            .size(1 + rng.below(60) as usize)
            .continuation(token);
        assert!(pages < 10_000, "paging does not end");
    }
    let dupes: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dupes.is_empty(), "seed {seed}: returned twice: {dupes:?}");
    for id in initially.difference(&touched) {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "seed {seed}: unchanged twin {id} skipped"
        );
    }
    // Nothing that never matched is returned.
    for id in seen.keys() {
        assert!(
            initially.contains(id) || touched.contains(id),
            "seed {seed}: {id} never matched"
        );
    }
}

#[test]
fn unchanged_twins_are_never_repeated_or_skipped() {
    for seed in 1..=25 {
        run_mutating(seed * 7919, false);
        run_mutating(seed * 104_729, true);
    }
}

#[test]
fn pages_of_an_unchanged_store_concatenate_to_execute() {
    let mut store = Store::new();
    for i in 0..300u64 {
        insert(&mut store, twin(&format!("d{i:03}"), None, i % 4));
        if i % 5 == 0 {
            insert(&mut store, twin(&format!("d{i:03}"), Some("m"), i % 4));
        }
    }
    for text in [
        "SELECT * FROM devices",
        "SELECT deviceId FROM devices WHERE tags.group IN [1, 2]",
        "SELECT TOP 57 deviceId FROM devices WHERE tags.group != 3",
        "SELECT * FROM devices.modules WHERE tags.group = 0",
        "SELECT TOP 7 deviceId, moduleId FROM devices.modules",
    ] {
        let q = Query::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let all = q.execute(store.values()).unwrap_or_else(|e| panic!("{e}"));
        for size in [1, 10, 100, 1000] {
            let mut req = PageRequest::new().size(size);
            let mut got = Vec::new();
            loop {
                let (rows, token) = page(&q, &store, &req, false).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    !rows.is_empty() || got.is_empty(),
                    "{text}: empty page before the end"
                );
                got.extend(rows);
                match token {
                    Some(t) => req = PageRequest::new().size(size).continuation(t),
                    None => break,
                }
            }
            assert_eq!(got, all, "{text} in pages of {size}");
        }
    }
}

#[test]
fn top_limits_the_pages() {
    let mut store = Store::new();
    for i in 0..100u64 {
        insert(&mut store, twin(&format!("d{i:03}"), None, 0));
    }
    let q = Query::parse("SELECT TOP 50 deviceId FROM devices").unwrap_or_else(|e| panic!("{e}"));
    let (p1, t1) = page(&q, &store, &PageRequest::new().size(20), false).unwrap_or_default();
    let t1 = t1.unwrap_or_default();
    let (p2, t2) = page(
        &q,
        &store,
        &PageRequest::new().size(20).continuation(t1),
        false,
    )
    .unwrap_or_default();
    let t2 = t2.unwrap_or_default();
    let (p3, t3) = page(
        &q,
        &store,
        &PageRequest::new().size(20).continuation(t2),
        false,
    )
    .unwrap_or_default();
    assert_eq!((p1.len(), p2.len(), p3.len()), (20, 20, 10));
    assert_eq!(t3, None);
    assert_eq!(id_of(&p3[9]), "d049");
    // An exactly full last page has no token.
    let q = Query::parse("SELECT TOP 20 deviceId FROM devices").unwrap_or_else(|e| panic!("{e}"));
    let (p, t) = page(&q, &store, &PageRequest::new().size(20), false).unwrap_or_default();
    assert_eq!((p.len(), t), (20, None));
}

#[test]
fn aggregate_queries_page_over_sorted_groups() {
    let mut store = Store::new();
    for i in 0..90u64 {
        insert(&mut store, twin(&format!("d{i:03}"), None, i % 9));
    }
    let q = Query::parse("SELECT tags.group AS g, COUNT() AS n FROM devices GROUP BY tags.group")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(q.resume_key(&PageRequest::new()), Ok(None));
    let mut req = PageRequest::new().size(4);
    let mut got = Vec::new();
    loop {
        let (rows, token) = page(&q, &store, &req, false).unwrap_or_else(|e| panic!("{e}"));
        got.extend(rows);
        match token {
            Some(t) => {
                assert_eq!(
                    q.resume_key(&PageRequest::new().continuation(t.clone())),
                    Ok(None)
                );
                req = PageRequest::new().size(4).continuation(t);
            }
            None => break,
        }
    }
    let want: Vec<Value> = (0..9).map(|g| json!({"g": g, "n": 10})).collect();
    assert_eq!(got, want);
}

#[test]
fn bad_requests_are_typed_errors() {
    let mut store = Store::new();
    for i in 0..10u64 {
        insert(&mut store, twin(&format!("d{i}"), None, 0));
    }
    let q = Query::parse("SELECT * FROM devices").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        q.page(store.values(), &PageRequest::new().size(MAX_PAGE_SIZE + 1)),
        Err(QueryError::PageSize {
            requested: 1001,
            limit: 1000
        })
    );
    assert!(matches!(
        q.page(store.values(), &PageRequest::new().size(0)),
        Err(QueryError::PageSize { requested: 0, .. })
    ));
    let (_, token) = page(&q, &store, &PageRequest::new().size(3), false).unwrap_or_default();
    let token = token.unwrap_or_default();
    let other = Query::parse("SELECT deviceId FROM devices").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        other.page(
            store.values(),
            &PageRequest::new().continuation(token.clone())
        ),
        Err(QueryError::InvalidContinuation { .. })
    ));
    assert!(matches!(
        q.resume_key(&PageRequest::new().continuation("garbage!")),
        Err(QueryError::InvalidContinuation { .. })
    ));
    // Twins out of key order.
    let reversed: Vec<&Twin> = store.values().rev().collect();
    assert!(matches!(
        q.page(reversed, &PageRequest::new()),
        Err(QueryError::UnorderedTwins { .. })
    ));
    let jobs = Query::parse("SELECT * FROM devices.jobs").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        jobs.page(store.values(), &PageRequest::new()),
        Err(QueryError::UnsupportedCollection { .. })
    ));
}
