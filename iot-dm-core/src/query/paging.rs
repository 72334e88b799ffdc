//! Paged execution with opaque continuation tokens.
//!
//! A store that keeps twins in key order (`BTreeMap<(DeviceId, Option<ModuleId>), Twin>` or a
//! database index) serves a page like this: ask [`Query::resume_key`] where to start, iterate
//! its twins in ascending key order from there, and hand them to [`Query::page`].
//!
//! For row queries the token records the key of the first matching twin that did not fit in the
//! page, and how many rows `TOP` still allows. The next page starts at that key, so twins that
//! stayed unchanged are returned exactly once even when other twins are inserted, deleted or
//! changed between pages (a changed twin is returned if it matches when its turn comes). For
//! aggregate queries every page recomputes the groups and the token holds the offset into the
//! sorted group rows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::error::QueryError;
use super::Query;
use crate::identity::{DeviceId, ModuleId};
use crate::twin::Twin;

/// Page size used when a request names none (IoT Hub's default).
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Largest page size a request may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Version tag inside continuation tokens.
const TOKEN_VERSION: u64 = 1;

/// A page request: size and continuation token.
///
/// ```
/// use iot_dm_core::query::PageRequest;
/// let first = PageRequest::new().size(50);
/// assert_eq!(first.page_size(), 50);
/// assert_eq!(PageRequest::new().page_size(), 100);
/// let next = first.clone().continuation("opaque-token");
/// assert_eq!(next.continuation_token(), Some("opaque-token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    size: Option<usize>,
    continuation: Option<String>,
}

impl PageRequest {
    /// The first page, [`DEFAULT_PAGE_SIZE`] rows.
    pub fn new() -> PageRequest {
        PageRequest::default()
    }

    /// Sets the page size (checked against [`MAX_PAGE_SIZE`] when the page is computed).
    pub fn size(mut self, size: usize) -> PageRequest {
        self.size = Some(size);
        self
    }

    /// Continues after the page that returned `token`.
    pub fn continuation(mut self, token: impl Into<String>) -> PageRequest {
        self.continuation = Some(token.into());
        self
    }

    /// Continues after `token` when there is one (convenient in paging loops).
    pub fn continuation_opt(mut self, token: Option<String>) -> PageRequest {
        self.continuation = token;
        self
    }

    /// The requested page size.
    pub fn page_size(&self) -> usize {
        self.size.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// The continuation token, if any.
    pub fn continuation_token(&self) -> Option<&str> {
        self.continuation.as_deref()
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The rows.
    pub items: Vec<Value>,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// The store key of a twin: device id, then module id (device twins first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TwinKey {
    /// The device id.
    pub device_id: DeviceId,
    /// The module id, `None` for the device twin.
    pub module_id: Option<ModuleId>,
}

impl TwinKey {
    /// The key of `twin`.
    pub fn of(twin: &Twin) -> TwinKey {
        TwinKey {
            device_id: twin.device_id.clone(),
            module_id: twin.module_id.clone(),
        }
    }

    fn cmp_twin(&self, twin: &Twin) -> std::cmp::Ordering {
        key_of(twin).cmp(&(
            self.device_id.as_str(),
            self.module_id.as_ref().map(ModuleId::as_str),
        ))
    }
}

impl std::fmt::Display for TwinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.module_id {
            Some(m) => write!(f, "{}/{}", self.device_id, m),
            None => write!(f, "{}", self.device_id),
        }
    }
}

fn key_of(t: &Twin) -> (&str, Option<&str>) {
    (
        t.device_id.as_str(),
        t.module_id.as_ref().map(ModuleId::as_str),
    )
}

/// A decoded continuation token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cursor {
    /// The first page.
    Start,
    /// Row queries: resume at this key; `remaining` rows left under TOP.
    At {
        key: TwinKey,
        remaining: Option<u64>,
    },
    /// Aggregate queries: resume at this row offset.
    Offset(u64),
}

fn invalid(reason: impl Into<String>) -> QueryError {
    QueryError::InvalidContinuation {
        reason: reason.into(),
    }
}

/// 64-bit FNV-1a: a stable fingerprint of the canonical query text, so a token cannot be
/// replayed against another query.
pub(crate) fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn encode(fingerprint: &str, body: Value) -> String {
    let mut v = body;
    if let Value::Object(m) = &mut v {
        m.insert("v".into(), Value::from(TOKEN_VERSION));
        m.insert("q".into(), Value::from(fingerprint));
    }
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode(fingerprint: &str, token: &str) -> Result<Cursor, QueryError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| invalid("not base64url"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not a token"))?;
    if v.get("v").and_then(Value::as_u64) != Some(TOKEN_VERSION) {
        return Err(invalid(format!(
            "unknown token version, expected {TOKEN_VERSION}"
        )));
    }
    if v.get("q").and_then(Value::as_str) != Some(fingerprint) {
        return Err(invalid("token was issued for another query"));
    }
    if let Some(o) = v.get("o") {
        return o
            .as_u64()
            .map(Cursor::Offset)
            .ok_or_else(|| invalid("offset is not a non-negative integer"));
    }
    let k = v
        .get("k")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("missing resume key"))?;
    let device_id = k
        .first()
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("missing device id"))?;
    let device_id = DeviceId::new(device_id).map_err(|e| invalid(e.to_string()))?;
    let module_id = match k.get(1) {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => {
            Some(ModuleId::new(m.as_str()).map_err(|e| invalid(e.to_string()))?)
        }
        Some(_) => return Err(invalid("module id is not a string")),
    };
    let remaining = match v.get("n") {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .ok_or_else(|| invalid("remaining count is not a non-negative integer"))?,
        ),
    };
    Ok(Cursor::At {
        key: TwinKey {
            device_id,
            module_id,
        },
        remaining,
    })
}

fn check_size(request: &PageRequest) -> Result<usize, QueryError> {
    let size = request.page_size();
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(QueryError::PageSize {
            requested: size,
            limit: MAX_PAGE_SIZE,
        });
    }
    Ok(size)
}

impl Query {
    fn cursor(&self, request: &PageRequest) -> Result<Cursor, QueryError> {
        let Some(token) = request.continuation_token() else {
            return Ok(Cursor::Start);
        };
        let c = decode(&fingerprint(&self.statement.to_string()), token)?;
        match (&c, self.is_aggregate()) {
            (Cursor::Offset(_), false) | (Cursor::At { .. }, true) => {
                Err(invalid("token was issued for another query"))
            }
            _ => Ok(c),
        }
    }

    /// Where a store should start iterating for `request`: `None` for the beginning (and for
    /// aggregate queries, which read every twin on every page).
    ///
    /// Fails on a malformed token or one issued for another query.
    pub fn resume_key(&self, request: &PageRequest) -> Result<Option<TwinKey>, QueryError> {
        Ok(match self.cursor(request)? {
            Cursor::At { key, .. } => Some(key),
            _ => None,
        })
    }

    /// Computes one page.
    ///
    /// `twins` must come in ascending [`TwinKey`] order and may start anywhere at or before
    /// [`Query::resume_key`] (twins before it are skipped). A store that keeps twins in a
    /// `BTreeMap` passes `map.range(key..)`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use iot_dm_core::query::{PageRequest, Query, TwinKey};
    /// use iot_dm_core::twin::Twin;
    ///
    /// let mut store = BTreeMap::new();
    /// for i in 0..250 {
    ///     let twin = Twin::new(format!("dev-{i:03}").parse()?);
    ///     store.insert(TwinKey::of(&twin), twin);
    /// }
    /// let query = Query::parse("SELECT deviceId FROM devices")?;
    /// let mut request = PageRequest::new();
    /// let mut seen = 0;
    /// loop {
    ///     let page = match query.resume_key(&request)? {
    ///         Some(key) => query.page(store.range(key..).map(|(_, t)| t), &request)?,
    ///         None => query.page(store.values(), &request)?,
    ///     };
    ///     seen += page.items.len();
    ///     match page.continuation {
    ///         Some(token) => request = request.continuation(token),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, 250);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The items may be `&Twin` or anything that borrows as a [`Twin`] (such as `Arc<Twin>`),
    /// so a store can hand out snapshots one at a time: a page stops reading as soon as it is
    /// full.
    pub fn page<I>(&self, twins: I, request: &PageRequest) -> Result<Page, QueryError>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<Twin>,
    {
        use std::borrow::Borrow;
        let size = check_size(request)?;
        self.check_collection()?;
        let cursor = self.cursor(request)?;
        let fp = fingerprint(&self.statement.to_string());
        if self.is_aggregate() {
            let offset = match cursor {
                Cursor::Offset(o) => usize::try_from(o).unwrap_or(usize::MAX),
                _ => 0,
            };
            // aggregates read every twin whatever the page
            let all: Vec<I::Item> = twins.into_iter().collect();
            let rows = self.execute(all.iter().map(|t| t.borrow()))?;
            let more = rows.len() > offset.saturating_add(size);
            let items: Vec<Value> = rows.into_iter().skip(offset).take(size).collect();
            let continuation = more.then(|| encode(&fp, json!({"o": offset + items.len()})));
            return Ok(Page {
                items,
                continuation,
            });
        }
        let (resume, remaining) = match cursor {
            Cursor::At { key, remaining } => (Some(key), remaining),
            _ => (None, self.statement.top),
        };
        if remaining == Some(0) {
            return Ok(Page {
                items: Vec::new(),
                continuation: None,
            });
        }
        let limit = remaining.map_or(size, |r| usize::try_from(r).unwrap_or(usize::MAX).min(size));
        let mut items = Vec::with_capacity(limit.min(DEFAULT_PAGE_SIZE));
        let mut previous: Option<TwinKey> = None;
        for item in twins {
            let twin: &Twin = item.borrow();
            if let Some(p) = &previous {
                if p.cmp_twin(twin).is_le() {
                    return Err(QueryError::UnorderedTwins {
                        previous: p.to_string(),
                        key: TwinKey::of(twin).to_string(),
                    });
                }
            }
            previous = Some(TwinKey::of(twin));
            if resume.as_ref().is_some_and(|k| k.cmp_twin(twin).is_lt()) {
                continue;
            }
            if !self.selects(twin) {
                continue;
            }
            if items.len() == limit {
                let left = remaining.map(|r| r - limit as u64);
                let token = encode(
                    &fp,
                    json!({"k": [twin.device_id.as_str(), twin.module_id.as_ref().map(ModuleId::as_str)], "n": left}),
                );
                return Ok(Page {
                    items,
                    continuation: Some(token),
                });
            }
            items.push(self.row(twin));
            if remaining.is_some_and(|r| items.len() as u64 == r) {
                break;
            }
        }
        Ok(Page {
            items,
            continuation: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable() {
        assert_eq!(fingerprint(""), "cbf29ce484222325");
        assert_eq!(fingerprint("a"), "af63dc4c8601ec8c");
        assert_ne!(
            fingerprint("SELECT * FROM devices"),
            fingerprint("SELECT * FROM devices.modules")
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let fp = fingerprint("q");
        let t = encode(&fp, json!({"k": ["d1", "m1"], "n": 5}));
        assert_eq!(
            decode(&fp, &t),
            Ok(Cursor::At {
                key: TwinKey {
                    device_id: DeviceId::new("d1").unwrap_or_else(|_| unreachable!()),
                    module_id: ModuleId::new("m1").ok(),
                },
                remaining: Some(5)
            })
        );
        assert_eq!(
            decode(&fp, &encode(&fp, json!({"o": 7}))),
            Ok(Cursor::Offset(7))
        );
        assert!(matches!(
            decode(&fingerprint("other"), &t),
            Err(QueryError::InvalidContinuation { .. })
        ));
        assert!(matches!(
            decode(&fp, "***"),
            Err(QueryError::InvalidContinuation { .. })
        ));
        assert!(matches!(
            decode(&fp, &URL_SAFE_NO_PAD.encode("[1]")),
            Err(QueryError::InvalidContinuation { .. })
        ));
        let bad_id = encode(&fp, json!({"k": ["bad id!"]}));
        assert!(matches!(
            decode(&fp, &bad_id),
            Err(QueryError::InvalidContinuation { .. })
        ));
        let bad_n = encode(&fp, json!({"k": ["d"], "n": -1}));
        assert!(matches!(
            decode(&fp, &bad_n),
            Err(QueryError::InvalidContinuation { .. })
        ));
    }

    #[test]
    fn page_size_limits() {
        assert_eq!(check_size(&PageRequest::new()), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(check_size(&PageRequest::new().size(1000)), Ok(1000));
        assert_eq!(
            check_size(&PageRequest::new().size(1001)),
            Err(QueryError::PageSize {
                requested: 1001,
                limit: MAX_PAGE_SIZE
            })
        );
        assert!(check_size(&PageRequest::new().size(0)).is_err());
    }
}
