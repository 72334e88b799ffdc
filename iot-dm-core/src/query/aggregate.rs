//! `GROUP BY` and the aggregates `COUNT`, `SUM`, `AVG`, `MIN`, `MAX`.
//!
//! Groups are found through a hash of the borrowed key values, so a twin whose key is a string
//! or number costs a lookup and no allocation. Rows come out sorted by key (`undefined` first,
//! then `null`, Booleans, numbers, strings, and objects or arrays by their JSON text), which
//! gives paging a stable order.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use serde_json::{Map, Value};

use super::compile::CExpr;
use super::eval::{doc_of, eval, path};
use super::paths::Resolved;
use super::value::Val;
use crate::doc::{NodeRef, Raw};
use crate::twin::Twin;

/// What a select item of an aggregate query computes.
#[derive(Debug, Clone)]
pub(crate) enum GroupItem {
    /// The value of the `i`-th GROUP BY path.
    Key(usize),
    Count,
    Sum(CExpr),
    Avg(CExpr),
    Min(CExpr),
    Max(CExpr),
}

/// The compiled aggregate part of a query.
#[derive(Debug, Clone)]
pub(crate) struct GroupPlan {
    pub keys: Vec<Resolved>,
    pub items: Vec<(String, GroupItem)>,
}

/// One component of a group key.
#[derive(Debug, Clone, PartialEq)]
enum Part<'a> {
    Undefined,
    Null,
    Bool(bool),
    /// Integral numbers (also integral floats in range), so `1` and `1.0` group together.
    Int(i64),
    /// Other finite numbers.
    Float(f64),
    /// A string's UTF-8 bytes (as stored, so reading a key needs no validation).
    Str(Cow<'a, [u8]>),
    /// An object or array, by its JSON text.
    Json(String),
}

impl<'a> Part<'a> {
    fn new(v: Val<'a>) -> Part<'a> {
        match v {
            Val::Undefined => Part::Undefined,
            Val::Null => Part::Null,
            Val::Bool(b) => Part::Bool(b),
            Val::Int(i) => Part::Int(i),
            Val::Float(f) => {
                if f.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                {
                    Part::Int(f as i64)
                } else {
                    Part::Float(f)
                }
            }
            Val::Str(s) => Part::Str(Cow::Borrowed(s.as_bytes())),
            Val::Owned(s) => Part::Str(Cow::Owned(s.into_bytes())),
            v @ (Val::Node(_) | Val::Json(_)) => {
                Part::Json(v.into_json().map(|j| j.to_string()).unwrap_or_default())
            }
        }
    }

    /// The part for a stored value; `node` is only read for objects and arrays.
    fn from_raw(raw: Raw<'a>, node: impl FnOnce() -> Option<NodeRef<'a>>) -> Part<'a> {
        match raw {
            Raw::Null => Part::Null,
            Raw::Bool(b) => Part::Bool(b),
            Raw::Int(i) => Part::Int(i),
            Raw::Float(f) => Part::new(Val::Float(f)),
            Raw::Str(b) => Part::Str(Cow::Borrowed(b)),
            Raw::Array | Raw::Object => node().map_or(Part::Undefined, |n| Part::new(Val::Node(n))),
        }
    }

    /// The part of GROUP BY path `k` for `twin`.
    fn of(k: &'a Resolved, twin: &'a Twin) -> Part<'a> {
        match doc_of(&k.root, twin) {
            Some(doc) if k.probes.len() == k.rest.len() => match doc.probe_raw(&k.probes) {
                Some(raw) => Part::from_raw(raw, || doc.probe_path(&k.probes)),
                None => Part::Undefined,
            },
            _ => Part::new(path(k, twin)),
        }
    }

    fn into_owned(self) -> Part<'static> {
        match self {
            Part::Undefined => Part::Undefined,
            Part::Null => Part::Null,
            Part::Bool(b) => Part::Bool(b),
            Part::Int(i) => Part::Int(i),
            Part::Float(f) => Part::Float(f),
            Part::Str(s) => Part::Str(Cow::Owned(s.into_owned())),
            Part::Json(s) => Part::Json(s),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Part::Undefined => 0,
            Part::Null => 1,
            Part::Bool(_) => 2,
            Part::Int(_) | Part::Float(_) => 3,
            Part::Str(_) => 4,
            Part::Json(_) => 5,
        }
    }

    /// Whether MIN and MAX consider this value (primitives only).
    fn is_primitive(&self) -> bool {
        matches!(self.rank(), 1..=4)
    }

    fn to_json(&self) -> Option<Value> {
        Some(match self {
            Part::Undefined => return None,
            Part::Null => Value::Null,
            Part::Bool(b) => Value::Bool(*b),
            Part::Int(i) => Value::from(*i),
            Part::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Part::Str(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
            Part::Json(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        })
    }
}

// Parts are never NaN: documents hold JSON numbers and arithmetic gives `undefined` for
// non-finite results, so equality is an equivalence.
impl Eq for Part<'_> {}

impl Hash for Part<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.rank().hash(h);
        match self {
            Part::Undefined | Part::Null => {}
            Part::Bool(b) => b.hash(h),
            Part::Int(i) => i.hash(h),
            Part::Float(f) => f.to_bits().hash(h),
            Part::Str(s) => s.hash(h),
            Part::Json(s) => s.hash(h),
        }
    }
}

/// Whether the key part read from the stored value equals the plain evaluation's.
#[cfg(test)]
pub(super) fn key_parts_agree(k: &Resolved, twin: &Twin) -> bool {
    let plain = k.clone().plain();
    Part::of(k, twin) == Part::new(path(&plain, twin))
}

/// The order of group rows and of MIN/MAX.
fn cmp_part(a: &Part<'_>, b: &Part<'_>) -> Ordering {
    a.rank().cmp(&b.rank()).then_with(|| match (a, b) {
        (Part::Bool(x), Part::Bool(y)) => x.cmp(y),
        (Part::Int(x), Part::Int(y)) => x.cmp(y),
        (Part::Int(x), Part::Float(y)) => (*x as f64).total_cmp(y),
        (Part::Float(x), Part::Int(y)) => x.total_cmp(&(*y as f64)),
        (Part::Float(x), Part::Float(y)) => x.total_cmp(y),
        (Part::Str(x), Part::Str(y)) => x.cmp(y),
        (Part::Json(x), Part::Json(y)) => x.cmp(y),
        _ => Ordering::Equal,
    })
}

/// A running aggregate.
#[derive(Debug, Clone)]
enum Acc {
    Count(u64),
    Sum {
        int: i64,
        float: f64,
        floating: bool,
    },
    Avg {
        sum: f64,
        n: u64,
    },
    Min(Option<Part<'static>>),
    Max(Option<Part<'static>>),
}

impl Acc {
    fn new(item: &GroupItem) -> Option<Acc> {
        Some(match item {
            GroupItem::Key(_) => return None,
            GroupItem::Count => Acc::Count(0),
            GroupItem::Sum(_) => Acc::Sum {
                int: 0,
                float: 0.0,
                floating: false,
            },
            GroupItem::Avg(_) => Acc::Avg { sum: 0.0, n: 0 },
            GroupItem::Min(_) => Acc::Min(None),
            GroupItem::Max(_) => Acc::Max(None),
        })
    }

    fn add(&mut self, v: Val<'_>) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                float,
                floating,
            } => match v {
                Val::Int(i) if !*floating => match int.checked_add(i) {
                    Some(s) => *int = s,
                    None => {
                        *floating = true;
                        *float = *int as f64 + i as f64;
                    }
                },
                Val::Int(i) => *float += i as f64,
                Val::Float(f) => {
                    if !*floating {
                        *floating = true;
                        *float = *int as f64;
                    }
                    *float += f;
                }
                _ => {}
            },
            Acc::Avg { sum, n } => match v {
                Val::Int(i) => {
                    *sum += i as f64;
                    *n += 1;
                }
                Val::Float(f) => {
                    *sum += f;
                    *n += 1;
                }
                _ => {}
            },
            Acc::Min(best) => keep(best, v, Ordering::Less),
            Acc::Max(best) => keep(best, v, Ordering::Greater),
        }
    }

    fn result(&self) -> Option<Value> {
        match self {
            Acc::Count(n) => Some(Value::from(*n)),
            Acc::Sum {
                int,
                float,
                floating,
            } => Some(if *floating {
                serde_json::Number::from_f64(*float).map_or(Value::Null, Value::Number)
            } else {
                Value::from(*int)
            }),
            Acc::Avg { sum, n } => {
                if *n == 0 {
                    None
                } else {
                    serde_json::Number::from_f64(*sum / *n as f64).map(Value::Number)
                }
            }
            Acc::Min(best) | Acc::Max(best) => best.as_ref().and_then(Part::to_json),
        }
    }
}

/// Replaces `best` by `v` when `v` is a primitive and compares `want` to it.
fn keep(best: &mut Option<Part<'static>>, v: Val<'_>, want: Ordering) {
    let p = Part::new(v);
    if !p.is_primitive() {
        return;
    }
    if best.as_ref().is_none_or(|b| cmp_part(&p, b) == want) {
        *best = Some(p.into_owned());
    }
}

struct Group {
    key: Vec<Part<'static>>,
    accs: Vec<Option<Acc>>,
}

/// Hashes group keys: folded multiplications with a random key per run (keys come from
/// devices, so the hash must not be predictable), much cheaper than SipHash on short keys.
struct KeyHasher {
    h: u64,
    k: u64,
}

/// The high and low halves of a 128-bit product, folded.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

impl KeyHasher {
    #[inline(always)]
    fn mix(&mut self, x: u64) {
        self.h = fold(self.h ^ x, self.k);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        fold(self.h, self.k.rotate_left(29))
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            if let Some(w) = w.first_chunk::<8>() {
                self.mix(u64::from_le_bytes(*w));
            }
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
    fn write_i64(&mut self, n: i64) {
        self.mix(n as u64);
    }
}

/// Builds [`KeyHasher`]s with one random key.
struct KeyState(u64);

impl KeyState {
    fn new() -> KeyState {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        KeyState(seed | 1)
    }
}

impl BuildHasher for KeyState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            h: self.0.rotate_left(17),
            k: self.0,
        }
    }
}

/// Groups the twins and computes one row per group, sorted by key.
pub(crate) fn run<'p, 't>(
    plan: &'p GroupPlan,
    twins: impl Iterator<Item = &'t Twin>,
) -> Vec<Value> {
    // Group index by key; keys borrow from the twins, so looking one up allocates nothing.
    let mut index: HashMap<Vec<Part<'_>>, usize, KeyState> = HashMap::with_hasher(KeyState::new());
    let mut groups: Vec<Group> = Vec::new();
    let mut parts: Vec<Part<'_>> = Vec::with_capacity(plan.keys.len());
    let new_accs = || {
        plan.items
            .iter()
            .map(|(_, i)| Acc::new(i))
            .collect::<Vec<_>>()
    };
    if plan.keys.is_empty() {
        // Aggregates over the whole collection: one row even when no twin matches.
        groups.push(Group {
            key: Vec::new(),
            accs: new_accs(),
        });
        index.insert(Vec::new(), 0);
    }
    for twin in twins {
        parts.clear();
        parts.extend(plan.keys.iter().map(|k| Part::of(k, twin)));
        let gi = match index.get(parts.as_slice()) {
            Some(&g) => g,
            None => {
                groups.push(Group {
                    key: parts.iter().cloned().map(Part::into_owned).collect(),
                    accs: new_accs(),
                });
                index.insert(parts.clone(), groups.len() - 1);
                groups.len() - 1
            }
        };
        let Some(group) = groups.get_mut(gi) else {
            continue;
        };
        for ((_, item), acc) in plan.items.iter().zip(group.accs.iter_mut()) {
            let Some(acc) = acc else { continue };
            match item {
                GroupItem::Key(_) => {}
                GroupItem::Count => acc.add(Val::Undefined),
                GroupItem::Sum(e) | GroupItem::Avg(e) | GroupItem::Min(e) | GroupItem::Max(e) => {
                    acc.add(eval(e, twin))
                }
            }
        }
    }
    groups.sort_by(|a, b| {
        a.key
            .iter()
            .zip(&b.key)
            .map(|(x, y)| cmp_part(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    groups
        .into_iter()
        .map(|g| {
            let mut row = Map::new();
            for ((name, item), acc) in plan.items.iter().zip(&g.accs) {
                let value = match (item, acc) {
                    (GroupItem::Key(i), _) => g.key.get(*i).and_then(Part::to_json),
                    (_, Some(acc)) => acc.result(),
                    (_, None) => None,
                };
                if let Some(v) = value {
                    row.insert(name.clone(), v);
                }
            }
            Value::Object(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parts_normalise_numbers() {
        assert_eq!(Part::new(Val::Float(1.0)), Part::Int(1));
        assert_eq!(Part::new(Val::Float(-0.0)), Part::Int(0));
        assert_eq!(Part::new(Val::Float(1.5)), Part::Float(1.5));
        assert_eq!(
            Part::new(Val::Owned("x".into())),
            Part::Str(Cow::Borrowed(b"x"))
        );
        let v = json!({"b": 1, "a": [2]});
        assert_eq!(
            Part::new(Val::from_json(&v)),
            Part::Json(r#"{"a":[2],"b":1}"#.into())
        );
    }

    #[test]
    fn order_of_parts() {
        let mut v = vec![
            Part::Str(Cow::Borrowed(b"b")),
            Part::Json("[]".into()),
            Part::Int(2),
            Part::Float(1.5),
            Part::Bool(true),
            Part::Null,
            Part::Undefined,
            Part::Bool(false),
            Part::Str(Cow::Borrowed(b"a")),
        ];
        v.sort_by(cmp_part);
        assert_eq!(
            v,
            vec![
                Part::Undefined,
                Part::Null,
                Part::Bool(false),
                Part::Bool(true),
                Part::Float(1.5),
                Part::Int(2),
                Part::Str(Cow::Borrowed(b"a")),
                Part::Str(Cow::Borrowed(b"b")),
                Part::Json("[]".into()),
            ]
        );
    }

    #[test]
    fn accumulators() {
        let mut sum = Acc::new(&GroupItem::Sum(CExpr::Const(
            super::super::compile::Const::Null,
        )))
        .unwrap_or(Acc::Count(0));
        sum.add(Val::Int(i64::MAX));
        sum.add(Val::Int(1));
        assert_eq!(sum.result(), Some(json!(9.223372036854776e18)));
        let mut sum = Acc::Sum {
            int: 0,
            float: 0.0,
            floating: false,
        };
        assert_eq!(sum.result(), Some(json!(0)));
        sum.add(Val::Int(2));
        sum.add(Val::Str("x"));
        sum.add(Val::Int(3));
        assert_eq!(sum.result(), Some(json!(5)));
        sum.add(Val::Float(0.5));
        assert_eq!(sum.result(), Some(json!(5.5)));
        let mut avg = Acc::Avg { sum: 0.0, n: 0 };
        assert_eq!(avg.result(), None);
        avg.add(Val::Int(1));
        avg.add(Val::Int(2));
        avg.add(Val::Null);
        assert_eq!(avg.result(), Some(json!(1.5)));
        let mut min = Acc::Min(None);
        let mut max = Acc::Max(None);
        for v in [
            Val::Int(3),
            Val::Str("a"),
            Val::Undefined,
            Val::Null,
            Val::Float(-1.5),
        ] {
            min.add(v.clone());
            max.add(v);
        }
        assert_eq!(min.result(), Some(json!(null)));
        assert_eq!(max.result(), Some(json!("a")));
    }
}
