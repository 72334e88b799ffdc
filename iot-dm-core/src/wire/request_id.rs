//! Request ids (`$rid`) that pair twin and method requests with their responses.
//!
//! A `$rid` is opaque: the C SDK sends a small decimal (`$rid=3`), Node a UUID, Python a
//! URL-quoted UUID. Whoever answers echoes it byte-for-byte, so [`RequestId`] keeps the exact
//! text found in the topic and never decodes it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::topic::TopicError;

/// A `$rid` value, exactly as it appears in a topic.
///
/// It is non-empty and free of `&` (the query separator), `#` and `+` (MQTT wildcards, which a
/// topic name may not contain) and NUL.
///
/// ```
/// use iot_dm_core::wire::RequestId;
/// let rid = RequestId::new("9f2b%2D1")?;
/// assert_eq!(rid.as_str(), "9f2b%2D1"); // kept verbatim, never decoded
/// assert!(RequestId::new("a&b").is_err());
/// # Ok::<(), iot_dm_core::wire::TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(String);

/// Characters a request id may not contain.
pub const REQUEST_ID_FORBIDDEN: &[char] = &['&', '#', '+', '\0'];

impl RequestId {
    /// Validates `rid` and wraps it.
    pub fn new(rid: impl Into<String>) -> Result<RequestId, TopicError> {
        let rid = rid.into();
        if rid.is_empty() {
            return Err(TopicError::EmptyRequestId);
        }
        if let Some(ch) = rid.chars().find(|c| REQUEST_ID_FORBIDDEN.contains(c)) {
            return Err(TopicError::InvalidRequestId { rid, ch });
        }
        Ok(RequestId(rid))
    }

    /// The id as written in the topic.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RequestId {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        RequestId::new(s)
    }
}

/// A source of distinct request ids: decimal numbers counting up from 1.
///
/// Plain decimals are safe for every SDK: Node decodes a `$rid` with `querystring.parse`
/// (turning `+` into a space) before echoing it, and the C SDK reads it with `atol` for twin
/// responses, so anything fancier might not come back intact. The counter is shared through
/// `&self`, so one instance can serve several tasks.
///
/// ```
/// use iot_dm_core::wire::RequestIds;
/// let ids = RequestIds::new();
/// let a = ids.next_id();
/// let b = ids.next_id();
/// assert_eq!(a.as_str(), "1");
/// assert_ne!(a, b);
/// ```
#[derive(Debug, Default)]
pub struct RequestIds {
    next: AtomicU64,
}

impl RequestIds {
    /// A counter whose first id is `1`.
    pub fn new() -> RequestIds {
        RequestIds::starting_at(1)
    }

    /// A counter whose first id is `first` (e.g. a random start, so ids differ across
    /// reconnects).
    pub fn starting_at(first: u64) -> RequestIds {
        RequestIds {
            next: AtomicU64::new(first),
        }
    }

    /// The next id. After `u64::MAX` it wraps to 0, long after any request it could collide
    /// with has completed.
    pub fn next_id(&self) -> RequestId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // a decimal number is never empty and never contains a forbidden character
        RequestId(n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_distinct_and_decimal() {
        let ids = RequestIds::new();
        let all: HashSet<_> = (0..1000).map(|_| ids.next_id()).collect();
        assert_eq!(all.len(), 1000);
        assert!(all
            .iter()
            .all(|r| r.as_str().bytes().all(|b| b.is_ascii_digit())));
        assert!(all.contains(&RequestId::new("1").unwrap()));
        assert!(all.contains(&RequestId::new("1000").unwrap()));
    }

    #[test]
    fn starting_at_and_wrap() {
        let ids = RequestIds::starting_at(u64::MAX);
        assert_eq!(ids.next_id().as_str(), u64::MAX.to_string());
        assert_eq!(ids.next_id().as_str(), "0");
    }

    #[test]
    fn validation() {
        assert_eq!(RequestId::new(""), Err(TopicError::EmptyRequestId));
        for (bad, ch) in [("a&b", '&'), ("a#", '#'), ("+", '+'), ("a\0", '\0')] {
            assert_eq!(
                RequestId::new(bad),
                Err(TopicError::InvalidRequestId {
                    rid: bad.to_string(),
                    ch
                })
            );
        }
        for good in [
            "3",
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "abc%20def",
            "a=b",
            "a/b",
        ] {
            assert_eq!(RequestId::new(good).unwrap().as_str(), good);
        }
    }
}
